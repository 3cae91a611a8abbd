import Foundation
@testable import Recur
import Testing

/// `recur train --format pairs`, `recur translate` and `recur evaluate` of an encoder-decoder,
/// end to end through the executable on small pair files.
@Suite("Pair commands")
struct PairCommandTests {
    /// `count` lines `word<TAB>reversed word` over letters a–f, lengths 1–4, from a seeded
    /// generator; every fifth word also gets a second reference (the word itself).
    static func reversalLines(count: Int, seed: UInt64) -> [String] {
        var random = SeededRandom(seed: seed)
        let letters = Array("abcdef")
        var lines: [String] = []
        for index in 0..<count {
            let length = 1 + Int(random.next() % 4)
            let word = String((0..<length).map { _ in letters[Int(random.next() % UInt64(letters.count))] })
            lines.append("\(word)\t\(String(word.reversed()))")
            if index % 5 == 0 { lines.append("\(word)\t\(word)") }
        }
        return lines
    }

    /// The JSON objects of a run's stdout, one a line.
    static func jsonLines(_ run: CommandRun) throws -> [[String: Any]] {
        try run.stdout.split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }

    static let model = ["--device", "cpu", "--hidden", "8", "--embedding", "6", "--batch-size", "16",
                        "--learning-rate", "0.02", "--clip-norm", "5", "--seed", "3"]

    @Test("train writes per-epoch metrics and checkpoints; translate and evaluate read them; test metrics agree")
    func trainTranslateEvaluate() throws {
        let folder = try TemporaryFolder()
        let data = try folder.write("pairs.tsv", Self.reversalLines(count: 240, seed: 1).joined(separator: "\n") + "\n")
        // 'z' is in no training source: it reads as <unk> when scored.
        let test = try folder.write("test.tsv", (Self.reversalLines(count: 30, seed: 2) + ["zab\tbaz"])
            .joined(separator: "\n") + "\n")
        let runs = folder.path + "/runs"
        let train = try runRecur(["train", "--format", "pairs", "--data", data, "--test-file", test, "--epochs", "2",
                                  "--checkpoint-dir", runs, "--json", "--beam", "2", "--teacher-forcing", "0.8",
                                  "--label-smoothing", "0.1", "--decoder-hidden", "10", "--attention", "general"]
                                 + Self.model)
        #expect(train.status == 0, "\(train.stderr)")
        let lines = try Self.jsonLines(train)
        #expect(lines.count == 3)
        for (index, line) in lines.prefix(2).enumerated() {
            #expect(line["epoch"] as? Int == index + 1)
            for name in ["loss", "val_loss", "val_token_accuracy", "val_sequence_error_rate",
                         "val_edit_distance_error_rate"] {
                #expect((line[name] as? Double)?.isFinite == true, "\(name) in \(line)")
            }
        }
        let final = try #require(lines.last)
        #expect(final["final"] as? Bool == true)
        for name in ["last", "best"] {
            #expect(FileManager.default.fileExists(atPath: "\(runs)/\(name).safetensors"))
        }

        let checkpoint = try SequencePairCheckpoint(contentsOf: runs + "/last.safetensors")
        #expect(checkpoint.specification.attention == .general)
        for index in 1...3 {
            let map = try String(contentsOfFile: "\(runs)/attention-\(index).svg", encoding: .utf8)
            #expect(map.hasPrefix("<svg") || map.hasPrefix("<?xml"), "attention-\(index).svg: \(map.prefix(80))")
        }

        let translate = try runRecur(["translate", "--checkpoint", runs + "/last.safetensors", "--device", "cpu"],
                                     input: "abc\n\nfed\n")
        #expect(translate.status == 0, "\(translate.stderr)")
        #expect(translate.stdout.split(separator: "\n", omittingEmptySubsequences: false).count == 4)

        let evaluate = try runRecur(["evaluate", "--checkpoint", runs + "/last.safetensors", "--data", test,
                                     "--beam", "2", "--json", "--device", "cpu"])
        #expect(evaluate.status == 0, "\(evaluate.stderr)")
        let scored = try #require(try Self.jsonLines(evaluate).first)
        #expect(scored["sources"] as? Int == (try SequencePairs(contentsOf: test)).count)
        for name in ["loss", "token_accuracy", "sequence_error_rate", "edit_distance_error_rate"] {
            let value = try #require(scored[name] as? Double, "\(name) in \(scored)")
            #expect(value == final["test_" + name] as? Double, "\(name): \(scored) against \(final)")
        }
    }

    @Test("an unknown --attention is refused, naming the choices")
    func unknownAttention() throws {
        let folder = try TemporaryFolder()
        let data = try folder.write("pairs.tsv", Self.reversalLines(count: 20, seed: 7).joined(separator: "\n"))
        let run = try runRecur(["train", "--format", "pairs", "--data", data, "--epochs", "1", "--attention", "sideways",
                                "--validation-split", "0"] + Self.model)
        #expect(run.status != 0)
        #expect(run.stderr.contains("--attention is one of none, dot, general, additive"), "\(run.stderr)")
    }

    @Test("--input-feeding trains a model that feeds h̃ back, translate decodes it; without --attention it is refused")
    func inputFeeding() throws {
        let folder = try TemporaryFolder()
        let data = try folder.write("pairs.tsv", Self.reversalLines(count: 40, seed: 7).joined(separator: "\n"))
        let runs = folder.path + "/runs"
        let common = ["train", "--format", "pairs", "--data", data, "--epochs", "1", "--validation-split", "0"]
            + Self.model
        let refused = try runRecur(common + ["--input-feeding"])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("needs an attention"), "\(refused.stderr)")
        let train = try runRecur(common + ["--input-feeding", "--attention", "dot", "--checkpoint-dir", runs])
        #expect(train.status == 0, "\(train.stderr)")
        let checkpoint = try SequencePairCheckpoint(contentsOf: runs + "/last.safetensors")
        #expect(checkpoint.specification.inputFeeding && checkpoint.specification.attention == .dot)
        let translator = try Translator(checkpoint: checkpoint, backend: TestBackends.cpu)
        let translate = try runRecur(["translate", "--checkpoint", runs + "/last.safetensors", "--device", "cpu"],
                                     input: "abc\nfed\n")
        #expect(translate.status == 0, "\(translate.stderr)")
        #expect(translate.stdout == (try translator.translate(["abc", "fed"])).map { $0 + "\n" }.joined())
    }

    @Test("--schedule cosine trains a pair model; the plateau schedule is refused for pairs")
    func schedules() throws {
        let folder = try TemporaryFolder()
        let data = try folder.write("pairs.tsv", Self.reversalLines(count: 20, seed: 7).joined(separator: "\n"))
        let common = ["train", "--format", "pairs", "--data", data, "--epochs", "1", "--validation-split", "0"]
            + Self.model
        let cosine = try runRecur(common + ["--schedule", "cosine", "--warmup", "2"])
        #expect(cosine.status == 0, "\(cosine.stderr)")
        let plateau = try runRecur(common + ["--schedule", "plateau"])
        #expect(plateau.status != 0)
        #expect(plateau.stderr.contains("--schedule plateau does not apply to --format pairs"), "\(plateau.stderr)")
    }

    @Test("--resume continues a pair run exactly as if it had not stopped")
    func resume() throws {
        let folder = try TemporaryFolder()
        let data = try folder.write("pairs.tsv", Self.reversalLines(count: 120, seed: 5).joined(separator: "\n"))
        let common = ["train", "--format", "pairs", "--data", data, "--json", "--dropout", "0.2",
                      "--teacher-forcing", "0.7"] + Self.model
        let whole = try runRecur(common + ["--epochs", "2", "--checkpoint-dir", folder.path + "/whole"])
        #expect(whole.status == 0, "\(whole.stderr)")
        let first = try runRecur(common + ["--epochs", "1", "--checkpoint-dir", folder.path + "/parts"])
        #expect(first.status == 0, "\(first.stderr)")
        let second = try runRecur(common + ["--epochs", "2", "--checkpoint-dir", folder.path + "/parts", "--resume"])
        #expect(second.status == 0, "\(second.stderr)")
        let expected = try Self.jsonLines(whole)[1]
        let resumed = try #require(try Self.jsonLines(second).first)
        #expect(resumed["epoch"] as? Int == 2)
        for name in ["loss", "val_loss", "val_token_accuracy", "val_sequence_error_rate",
                     "val_edit_distance_error_rate", "step"] {
            #expect("\(resumed[name] ?? "absent")" == "\(expected[name] ?? "absent")", "\(name)")
        }
    }

    @Test("a malformed pair line is refused with its line number, or skipped and counted with --skip-malformed")
    func malformedLines() throws {
        let folder = try TemporaryFolder()
        var lines = Self.reversalLines(count: 40, seed: 9)
        lines.insert("no tab here", at: 2)
        lines.insert("abc\t", at: 5)
        let data = try folder.write("pairs.tsv", lines.joined(separator: "\n"))
        let arguments = ["train", "--format", "pairs", "--data", data, "--epochs", "1"] + Self.model
        expectCleanFailure(try runRecur(arguments), "pairs.tsv:3", "no tab")
        let skipped = try runRecur(arguments + ["--skip-malformed"])
        #expect(skipped.status == 0, "\(skipped.stderr)")
        #expect(skipped.stdout.contains("2 malformed lines skipped"), "\(skipped.stdout)")
    }
}
