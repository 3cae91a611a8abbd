import Foundation
import Testing
@testable import Recur

// `recur predict` through the built executable: tiny models trained with `recur train` for an
// epoch on seeded files, then predicted from --input and from standard input, on the CPU.

/// Each line of `text` as a JSON object; records an issue for a line that is not one.
private func jsonLines(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> [[String: Any]] {
    text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().compactMap { line in
        let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        if object == nil { Issue.record("not a JSON object: '\(line)'", sourceLocation: sourceLocation) }
        return object
    }
}

/// Trains a tiny model in `folder` and returns its checkpoint's path.
private func train(_ arguments: [String], in folder: TemporaryFolder) throws -> String {
    let run = try runRecur(["train", "--device", "cpu", "--epochs", "1", "--hidden", "6", "--batch-size", "16",
                            "--seed", "1", "--checkpoint-dir", "run"] + arguments, in: folder.path)
    #expect(run.status == 0, "\(run.stderr)")
    return folder.path + "/run/last.safetensors"
}

@Suite("recur predict")
struct PredictCommandTests {
    @Test func classifierPrintsALabelAndProbabilitiesPerLine() throws {
        let folder = try TemporaryFolder()
        var random = SeededGenerator(seed: 21)
        let filler = ["the", "a", "film", "was", "it"]
        let rows = (0..<80).map { _ -> String in
            let positive = Bool.random(using: &random)
            let words = (0..<4).map { _ in filler.randomElement(using: &random)! } + [positive ? "good" : "bad"]
            return (positive ? "pos" : "neg") + "\t" + words.shuffled(using: &random).joined(separator: " ") + "\n"
        }
        try folder.write("reviews.tsv", rows.joined())
        let checkpoint = try train(["--data", "reviews.tsv", "--max-length", "6", "--embedding", "4"], in: folder)

        let texts = ["a good film", "", "it was bad", "unknown words only", "the film was good and not bad at all"]
        try folder.write("new.txt", texts.joined(separator: "\n") + "\n")
        let predict = ["predict", "--device", "cpu", "--checkpoint", checkpoint, "--batch-size", "2"]
        let fromFile = try runRecur(predict + ["--input", "new.txt"], in: folder.path)
        #expect(fromFile.status == 0, "\(fromFile.stderr)")
        let objects = jsonLines(fromFile.stdout)
        #expect(objects.count == texts.count, "\(fromFile.stdout)")
        for (index, object) in objects.enumerated() where index != 1 {
            let probabilities = object["probabilities"] as? [String: Double] ?? [:]
            #expect(Set(probabilities.keys) == ["neg", "pos"], "\(object)")
            #expect(abs(probabilities.values.reduce(0, +) - 1) < 1e-9, "\(object)")
            let label = object["label"] as? String ?? ""
            #expect(probabilities[label, default: 0] >= 0.5, "\(object)")
        }
        #expect(objects[1] as? [String: String] == ["error": "empty line"], "\(objects[1])")

        // Standard input, without a final newline and with CRLF: the same lines out.
        let fromInput = try runRecur(predict, in: folder.path, input: texts.joined(separator: "\r\n"))
        #expect(fromInput.status == 0, "\(fromInput.stderr)")
        #expect(fromInput.stdout == fromFile.stdout)
        let empty = try runRecur(predict, in: folder.path, input: "")
        #expect(empty.status == 0 && empty.stdout.isEmpty, "\(empty.stderr)")
    }

    @Test func taggerPrintsOneTagPerToken() throws {
        let folder = try TemporaryFolder()
        var random = SeededGenerator(seed: 22)
        let words = ["the": "DT", "a": "DT", "cat": "NN", "dog": "NN", "runs": "VB"]
        let keys = words.keys.sorted()
        let rows = (0..<60).map { _ -> String in
            let tokens = (0..<Int.random(in: 1...5, using: &random)).map { _ in keys.randomElement(using: &random)! }
            return tokens.joined(separator: " ") + "\t" + tokens.map { words[$0]! }.joined(separator: " ") + "\n"
        }
        try folder.write("tags.tagged", rows.joined())
        let checkpoint = try train(["--data", "tags.tagged", "--format", "tagged", "--text-column", "0",
                                    "--label-column", "1", "--max-length", "4", "--embedding", "4"], in: folder)
        let lines = ["the cat runs", "", "a dog runs the cat runs a dog", "zebra"]
        let run = try runRecur(["predict", "--device", "cpu", "--checkpoint", checkpoint], in: folder.path,
                               input: lines.joined(separator: "\n") + "\n")
        #expect(run.status == 0, "\(run.stderr)")
        let tags = jsonLines(run.stdout).map { $0["tags"] as? [String] }
        #expect(tags.map { $0?.count } == [3, 0, 8, 1], "\(run.stdout)")
        #expect(tags.compactMap { $0 }.joined().allSatisfy { ["DT", "NN", "VB"].contains($0) }, "\(run.stdout)")

        // --probabilities: every tag id's (padding, out-of-vocabulary, DT, NN, VB) at each token,
        // the printed tag the most probable real one.
        let withProbabilities = try runRecur(["predict", "--device", "cpu", "--checkpoint", checkpoint, "--probabilities"],
                                             in: folder.path, input: lines.joined(separator: "\n") + "\n")
        #expect(withProbabilities.status == 0, "\(withProbabilities.stderr)")
        let objects = jsonLines(withProbabilities.stdout)
        #expect(objects.map { $0["tags"] as? [String] } == tags)
        for object in objects {
            let steps = object["probabilities"] as? [[Double]] ?? []
            #expect(steps.count == (object["tags"] as? [String])?.count)
            for step in steps {
                #expect(step.count == 5 && abs(step.reduce(0, +) - 1) < 1e-9)
            }
        }
    }

    @Test func forecasterPrintsTheNextValuesAsCSV() throws {
        let folder = try TemporaryFolder()
        let values = (0..<150).map { step in 200 + 30 * sin(Double(step) / 3) }
        let csv = "month,passengers\n" + values.enumerated().map { "\($0),\($1)\n" }.joined()
        try folder.write("series.csv", csv)
        let checkpoint = try train(["--data", "series.csv", "--format", "series", "--max-length", "8",
                                    "--horizon", "3"], in: folder)
        let predict = ["predict", "--device", "cpu", "--checkpoint", checkpoint]
        let fromFile = try runRecur(predict + ["--input", "series.csv"], in: folder.path)
        #expect(fromFile.status == 0, "\(fromFile.stderr)")
        let lines = fromFile.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 4 && lines.first == "step,value", "\(fromFile.stdout)")
        for (index, line) in lines.dropFirst().enumerated() {
            let fields = line.split(separator: ",")
            #expect(fields.count == 2 && Int(fields[0]) == index + 1, "\(line)")
            // In the series' units, not standardised ones.
            #expect(Double(fields.last ?? "").map { (100...300).contains($0) } == true, "\(line)")
        }
        // The last 8 values alone, one per line from standard input, forecast the same.
        let lastValues = csv.split(separator: "\n").suffix(8).map { $0.split(separator: ",")[1] }
        let fromInput = try runRecur(predict, in: folder.path, input: lastValues.joined(separator: "\n"))
        #expect(fromInput.status == 0 && fromInput.stdout == fromFile.stdout, "\(fromInput.stderr)")

        let short = try runRecur(predict, in: folder.path, input: lastValues.dropFirst().joined(separator: "\n"))
        expectCleanFailure(short, "holds 7 values", "the last 8")
        #expect(short.status == 1 && short.stdout.isEmpty)
        let notANumber = try runRecur(predict, in: folder.path, input: "month,passengers\n1,112\n2,many\n")
        expectCleanFailure(notANumber, "stdin:3", "'many'")
        #expect(notANumber.status == 1)
    }

    @Test func languageModelGivesTheNextTokenAndRefusesAMissingFileAndBadArguments() throws {
        let folder = try TemporaryFolder()
        var random = SeededGenerator(seed: 23)
        let text = (0..<200).map { _ in ["ab", "cd", "ef"].randomElement(using: &random)! }.joined(separator: " ")
        try folder.write("text.txt", text + "\n")
        let checkpoint = try train(["--data", "text.txt", "--format", "text", "--max-length", "8", "--embedding", "4"],
                                   in: folder)
        // The next character after each text, with every vocabulary id's probability; a blank
        // line has nothing to continue.
        let languageModel = try runRecur(["predict", "--device", "cpu", "--checkpoint", checkpoint, "--probabilities"],
                                         in: folder.path, input: "ab cd\n\nef ab cd ef ab cd\n")
        #expect(languageModel.status == 0, "\(languageModel.stderr)")
        let lines = jsonLines(languageModel.stdout)
        #expect(lines.count == 3)
        #expect(lines[1]["error"] as? String == "empty line")
        for line in [lines[0], lines[2]] {
            let probabilities = line["probabilities"] as? [Double] ?? []
            // Padding, out-of-vocabulary, the six letters, space and the line break.
            #expect(probabilities.count == 10)
            #expect(abs(probabilities.reduce(0, +) - 1) < 1e-9)
            let next = line["next"] as? String ?? ""
            #expect(" abcdef\n".contains(next) && line["probability"] as? Double == probabilities.max())
        }

        let missing = try runRecur(["predict", "--device", "cpu", "--checkpoint", checkpoint, "--input", "absent.txt"],
                                   in: folder.path)
        expectCleanFailure(missing)
        #expect(missing.status == 1)
        let noCheckpoint = try runRecur(["predict", "--device", "cpu", "--checkpoint", "absent.safetensors"],
                                        in: folder.path, input: "x\n")
        expectCleanFailure(noCheckpoint, "absent.safetensors")
        #expect(noCheckpoint.status == 1)
        let batch = try runRecur(["predict", "--device", "cpu", "--checkpoint", checkpoint, "--batch-size", "0"],
                                 in: folder.path)
        expectCleanFailure(batch, "--batch-size must be at least 1")
        #expect(batch.status == 2)
    }
}
