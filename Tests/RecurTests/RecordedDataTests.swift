import Foundation
import Testing
@testable import Recur

// A checkpoint that `recur train` wrote, reopened through the library alone: its data metadata
// (the schema in Data/RecordedData.swift) names the source, vocabulary and classes, and reading
// the source with them gives back the examples the model was trained on.

@Suite("A CLI checkpoint's data, reopened through the library", .serialized)
struct RecordedDataTests {
    private func table(_ folder: TemporaryFolder) throws -> String {
        var random = SeededGenerator(seed: 11)
        let words = ["a", "quiet", "film", "with", "long", "scenes"]
        let lines = (0..<24).map { index -> String in
            let positive = index % 3 == 0
            let text = (0..<4).map { _ in words.randomElement(using: &random)! } + [positive ? "fine" : "dull"]
            return (positive ? "pos" : "neg") + "\t" + text.joined(separator: " ")
        }
        return try folder.write("reviews.tsv", lines.joined(separator: "\n") + "\n")
    }

    @Test func aTrainedCheckpointsDataReadsBackThroughTheLibrary() throws {
        let folder = try TemporaryFolder()
        let data = try table(folder)
        let runs = folder.path + "/run"
        let train = try runRecur([
            "train", "--device", "cpu", "--data", data, "--format", "tsv", "--no-header", "--max-length", "6",
            "--embedding", "4", "--hidden", "4", "--epochs", "1", "--batch-size", "8",
            "--validation-split", "0", "--monitor", "loss", "--checkpoint-dir", runs,
        ])
        #expect(train.status == 0, "\(train.stderr)")

        let checkpoint = try Checkpoint(contentsOf: runs + "/last.safetensors")
        let recorded = try checkpoint.recordedData()
        let source = try #require(recorded.source)
        #expect(source.format == .tsv)
        #expect(source.paths == [data])
        #expect(Set(try #require(recorded.classNames)) == ["neg", "pos"])
        let vocabulary = try #require(recorded.vocabulary)
        #expect(vocabulary.count == checkpoint.specification.vocabularySize)

        // The recorded source, read with the recorded vocabulary and classes, is the data the
        // model was trained on: the same examples (fingerprint) and a model input it accepts.
        let prepared = try recorded.prepareRecordedSource()
        #expect(prepared.training.fingerprint() == recorded.fingerprint)
        #expect(prepared.vocabulary == vocabulary)
        let trainer = try Trainer(resumingFrom: checkpoint, backend: TestBackends.cpu)
        let metrics = try trainer.evaluate(prepared.training, batchSize: 8)
        #expect(metrics["loss"].map(\.isFinite) == true, "\(metrics)")
    }

    @Test func aCheckpointWithoutASourceSaysWhichKeyIsMissing() throws {
        let recorded = try RecordedData(metadata: [:])
        #expect(recorded.source == nil)
        #expect(throws: RecurError.self) { try recorded.prepareRecordedSource() }
    }
}
