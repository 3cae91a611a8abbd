import Foundation
import Testing
@testable import Recur

// DataSource reads each format from small generated files, splits without overlap, fits the
// vocabulary to the training part only, and its examples train every task's model.

private func write(_ text: String, _ name: String, in folder: TemporaryFolder) throws -> String {
    let path = folder.path + "/" + name
    try FileBytes.writeAtomically(Array(text.utf8), to: path)
    return path
}

@Suite("Data sources")
struct DataSourceTests {
    @Test func labelledTablesSplitWithoutOverlapAndFitTheVocabularyOnTraining() throws {
        let folder = try TemporaryFolder()
        var random = SeededGenerator(seed: 3)
        var rows: [String] = []
        for index in 0..<100 {
            let spam = Bool.random(using: &random)
            rows.append("\(spam ? "spam" : "ham")\t\(spam ? "win cash" : "see you") now message\(index)")
        }
        var source = DataSource(format: .tsv, paths: [try write(rows.joined(separator: "\n") + "\n", "sms.tsv", in: folder)])
        source.sequenceLength = 6
        source.validationFraction = 0.2
        source.testFraction = 0.1
        let prepared = try source.prepare()
        #expect(prepared.classNames == ["ham", "spam"])
        #expect(prepared.training.count == 70 && prepared.validation?.count == 20 && prepared.test?.count == 10)
        // Each row's unique word "messageN" is known only when the row is a training row.
        let vocabulary = try #require(prepared.vocabulary)
        let known = (0..<100).filter { vocabulary.id(of: "message\($0)") != Vocabulary.outOfVocabularyID }
        #expect(known.count == 70)
        // The same source read with the trained vocabulary and classes gives the same examples.
        let again = try source.prepare(vocabulary: vocabulary, classNames: ["ham", "spam"])
        let first = prepared.test!.batch([0, 1, 2])
        let second = again.test!.batch([0, 1, 2])
        guard case let .ids(a, _, _, _) = first.input, case let .ids(b, _, _, _) = second.input else {
            Issue.record("classification batches hold ids")
            return
        }
        #expect(a == b)
        // A model must know every class of the data it evaluates.
        #expect(throws: RecurError.self) { try source.prepare(classNames: ["ham", "eggs"]) }
    }

    @Test func everyTaskTrainsOnItsFormat() throws {
        let folder = try TemporaryFolder()
        var random = SeededGenerator(seed: 4)
        let words = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran"]
        // Tagging: tag N for nouns, X otherwise.
        var tagged: [String] = []
        for _ in 0..<60 {
            let sentence = (0..<Int.random(in: 2...6, using: &random)).map { _ in words.randomElement(using: &random)! }
            let tags = sentence.map { ["cat", "mat", "dog"].contains($0) ? "N" : "X" }
            tagged.append(sentence.joined(separator: " ") + "\t" + tags.joined(separator: " "))
        }
        let text = (0..<400).map { _ in words.randomElement(using: &random)! }.joined(separator: " ")
        let series = "t,v\n" + (0..<120).map { "\($0),\(sin(Double($0) / 5) * 10 + 20)" }.joined(separator: "\n")
        let cases: [(DataSource, Int)] = [
            ({ var s = DataSource(format: .tagged, paths: [try! write(tagged.joined(separator: "\n"), "tags.tsv", in: folder)])
               s.labelColumn = 1; s.textColumn = 0; s.sequenceLength = 6; return s }(), 3),
            ({ var s = DataSource(format: .text, paths: [try! write(text, "text.txt", in: folder)])
               s.tokenizer = .character; s.sequenceLength = 12; return s }(), 0),
            ({ var s = DataSource(format: .series, paths: [try! write(series, "series.csv", in: folder)])
               s.hasHeader = true; s.sequenceLength = 8; s.horizon = 2; return s }(), 0),
        ]
        for (source, tagCount) in cases {
            let prepared = try source.prepare()
            let task = source.task
            if task == .tag { #expect(prepared.tagVocabulary?.count == tagCount + 1) }  // pad, OOV, N, X
            let specification = ModelSpecification(
                task: task, vocabularySize: task == .forecast ? nil : prepared.vocabulary!.count,
                embeddingSize: task == .forecast ? nil : 4, inputFeatures: task == .forecast ? 1 : nil, cell: .gru,
                hiddenSize: 8, outputSize: prepared.outputSize(for: task, horizon: source.horizon), seed: 2)
            let trainer = try Trainer(
                specification: specification,
                configuration: TrainingConfiguration(epochs: 4, batchSize: 8, optimizer: .adam(learningRate: 0.02)),
                backend: TestBackends.cpu)
            let history = try trainer.fit(training: prepared.training, validation: prepared.validation)
            let (first, last) = (history.first!.metrics["loss"]!, history.last!.metrics["loss"]!)
            #expect(last < first, "\(task): loss \(first) → \(last)")
            #expect(history.last!.metrics["val_loss"]!.isFinite)
            switch task {
            case .tag, .lm: #expect(history.last!.metrics["accuracy"]! > 0)
            case .forecast: #expect(history.last!.metrics["mae"]!.isFinite)
            case .classify: break
            }
        }
    }

    @Test func malformedRowsNameTheFileAndLineOrAreCounted() throws {
        let folder = try TemporaryFolder()
        let path = try write("a b\tX X\nc d e\tX\n", "bad.tsv", in: folder)
        var source = DataSource(format: .tagged, paths: [path])
        source.labelColumn = 1
        source.textColumn = 0
        source.validationFraction = 0
        #expect {
            try source.prepare()
        } throws: { error in
            "\(error)".contains("bad.tsv:2")
        }
        source.skipsMalformed = true
        let prepared = try source.prepare()
        #expect(prepared.training.count == 1 && prepared.skippedCount == 1)
    }

    @Test func sourcesAndSpecificationsSurviveJSON() throws {
        var source = DataSource(format: .lines, paths: ["neg.txt", "pos.txt"])
        source.classNames = ["neg", "pos"]
        source.numWords = 500
        #expect(try DataSource(json: source.json()) == source)
        #expect(throws: RecurError.self) { try DataSource(json: "{\"format\": \"nope\"}") }
        let specification = ModelSpecification(
            task: .lm, vocabularySize: 40, embeddingSize: 8, cell: .gru, hiddenSize: 16, layerCount: 2,
            outputSize: 40, seed: 7)
        #expect(try ModelSpecification(json: specification.json(), source: "test") == specification)
        var wrong = specification
        wrong.outputSize = 41
        #expect(throws: RecurError.self) { try ModelSpecification(json: wrong.json(), source: "test") }
        #expect(throws: RecurError.self) { try ModelSpecification(json: "[1, 2]", source: "test") }
    }
}
