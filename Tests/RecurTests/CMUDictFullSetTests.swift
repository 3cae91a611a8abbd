import Foundation
import Testing
@testable import Recur

/// The pair reader on the full g014b2b split, and the committed excerpt as the cut its README
/// describes, when a run names the full data's folder in RECUR_FULL_DATA (`FullDatasets`).
@Suite(.enabled(if: FullDatasets.root != nil, "no full data folder (set RECUR_FULL_DATA)"))
struct CMUDictFullSetTests {
    @Test("the full g014b2b split reads as its README counts it, and the excerpt is every 50th (40th) word whole")
    func fullSplit() throws {
        for (name, step, lines, words) in [("g014b2b.train", 50, 113_438, 106_837), ("g014b2b.test", 40, 12_753, 12_000)] {
            let full = try SequencePairs(contentsOf: FullDatasets.path("cmudict/" + name), targetTokenizer: .word)
            #expect(full.pairCount == lines && full.count == words, "\(name)")
            let kept = full.groups.enumerated().filter { $0.offset % step == 0 }.map(\.element)
            let excerpt = try SequencePairDataTests.excerpt(name)
            #expect(excerpt.groups == kept, "\(name)")
        }
    }
}
