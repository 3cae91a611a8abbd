import Foundation
import Testing
@testable import Recur

// Predictor on tiny models trained for an epoch on seeded data, on the CPU backend: what it
// predicts for new input equals what the Trainer computes for the same examples read from the
// training file, so the input is encoded as in training and the outputs are read as the loss
// reads them.

/// Trains `specification` on `source` for one epoch and returns the checkpoint `recur train`
/// would write (the data recorded in its metadata), with the trainer and the prepared data.
private func trained(_ source: DataSource, _ specification: (PreparedData) -> ModelSpecification) throws
    -> (Checkpoint, Trainer, PreparedData) {
    let prepared = try source.prepare()
    let configuration = TrainingConfiguration(epochs: 1, batchSize: 16, optimizer: .adam(learningRate: 0.02), seed: 9,
                                              monitor: "loss")
    let trainer = try Trainer(specification: specification(prepared), configuration: configuration,
                              backend: TestBackends.cpu)
    try trainer.fit(training: prepared.training)
    let checkpoint = try Checkpoint(
        specification: trainer.specification, configuration: configuration, progress: trainer.progress,
        model: trainer.model, optimizer: trainer.optimizer,
        metadata: try RecordedData.metadata(source: source, prepared: prepared))
    return (checkpoint, trainer, prepared)
}

/// Texts of `classes` classes, each with a word of its own among shared filler words.
private func classifiedTexts(classes: Int, count: Int, seed: UInt64) -> [(label: String, text: String)] {
    var random = SeededGenerator(seed: seed)
    let filler = ["the", "a", "film", "was", "it", "and"]
    return (0..<count).map { _ in
        let label = Int.random(in: 0..<classes, using: &random)
        var words = (0..<Int.random(in: 1...9, using: &random)).map { _ in filler.randomElement(using: &random)! }
        words.insert("word\(label)", at: Int.random(in: 0...words.count, using: &random))
        return ("class\(label)", words.joined(separator: " "))
    }
}

@Suite("Predictor")
struct PredictorTests {
    /// Two classes (one sigmoid logit) and three (softmax).
    @Test(arguments: [2, 3]) func classifierProbabilitiesAreTheTrainersLogitsAsTheLossReadsThem(classes: Int) throws {
        let folder = try TemporaryFolder()
        let rows = classifiedTexts(classes: classes, count: 70, seed: UInt64(classes))
        let path = try folder.write("texts.tsv", rows.map { "\($0.label)\t\($0.text)\n" }.joined())
        var source = DataSource(format: .tsv, paths: [path])
        // Shorter than some texts, so truncation counts; no validation part, so the training
        // examples are every row in the split's shuffled order.
        source.sequenceLength = 6
        source.validationFraction = 0
        source.splitSeed = 4
        let (checkpoint, trainer, prepared) = try trained(source) { prepared in
            ModelSpecification(task: .classify, vocabularySize: prepared.vocabulary!.count, embeddingSize: 4,
                               cell: .gru, hiddenSize: 6, outputSize: prepared.outputSize(for: .classify, horizon: 1),
                               seed: 3)
        }
        let predictor = try Predictor(checkpoint: checkpoint, backend: TestBackends.cpu, batchSize: 16)
        let texts = seededPermutation(count: rows.count, seed: 4).map { rows[$0].text }
        let results = try predictor.predict(texts: texts)
        let logits = try trainer.predict(prepared.training)
        let k = classes == 2 ? 1 : classes
        #expect(results.count == texts.count && logits.count == texts.count * k)
        for (row, result) in results.enumerated() {
            let z = logits[row * k ..< (row + 1) * k].map(Double.init)
            let expected: [Double] = if k == 1 {
                [1 - 1 / (1 + exp(-z[0])), 1 / (1 + exp(-z[0]))]
            } else {
                z.map { exp($0) / z.map { exp($0) }.reduce(0, +) }
            }
            for (name, probability) in zip(prepared.classNames, expected) {
                #expect(abs(result.probabilities[name]! - probability) <= 1e-9, "row \(row) \(name)")
            }
            let best = expected.indices.max { expected[$0] < expected[$1] }!
            #expect(result.label == prepared.classNames[best], "row \(row): \(result)")
            #expect(abs(result.probabilities.values.reduce(0, +) - 1) <= 1e-9)
        }
        // A text of no known word (an empty one among them) is read as one unknown token, as
        // training reads it, not refused.
        let unknown = try predictor.predict(texts: ["", "...", "zzz"])
        #expect(unknown.count == 3 && unknown[0] == unknown[1] && unknown[1] == unknown[2], "\(unknown)")
        #expect(throws: RecurError.self) { try predictor.predict(tokenLines: ["a b"]) }
        #expect(throws: RecurError.self) { try predictor.predict(series: [1, 2, 3, 4, 5, 6]) }
    }

    @Test func taggerGivesOneTagPerTokenAndTagsLongLinesInPieces() throws {
        let folder = try TemporaryFolder()
        var random = SeededGenerator(seed: 8)
        let words = ["the": "DT", "a": "DT", "cat": "NN", "dog": "NN", "runs": "VB", "sits": "VB"]
        let keys = words.keys.sorted()
        let rows = (0..<60).map { _ -> String in
            let tokens = (0..<Int.random(in: 1...5, using: &random)).map { _ in keys.randomElement(using: &random)! }
            return tokens.joined(separator: " ") + "\t" + tokens.map { words[$0]! }.joined(separator: " ") + "\n"
        }
        let path = try folder.write("tags.tagged", rows.joined())
        var source = DataSource(format: .tagged, paths: [path])
        source.labelColumn = 1
        source.textColumn = 0
        source.sequenceLength = 4
        source.padding = .post
        let (checkpoint, _, _) = try trained(source) { prepared in
            ModelSpecification(task: .tag, vocabularySize: prepared.vocabulary!.count, embeddingSize: 4, cell: .lstm,
                               hiddenSize: 6, outputSize: prepared.outputSize(for: .tag, horizon: 1), seed: 3)
        }
        let predictor = try Predictor(checkpoint: checkpoint, backend: TestBackends.cpu, batchSize: 3)
        let lines = ["the cat runs", "", "a dog sits the cat runs a dog sits", "unknown", "dog"]
        let tags = try predictor.predict(tokenLines: lines)
        #expect(tags.map(\.count) == [3, 0, 9, 1, 1], "\(tags)")
        let names = Set(words.values)
        #expect(tags.joined().allSatisfy { names.contains($0) }, "\(tags)")
        // Nine tokens with T = 4: pieces of 4, 4 and 1, each tagged as that piece alone.
        let pieces = try predictor.predict(tokenLines: ["a dog sits the", "cat runs a dog", "sits"])
        #expect(tags[2] == Array(pieces.joined()), "\(tags[2]) vs \(pieces)")
    }

    /// The forecast is the model's output for the window scaled as in training, read back with
    /// that window's c and s (ŷ = c + s · z'), for every transform.
    @Test(arguments: SeriesTransform.allCases) func forecastIsTheModelsOutputInTheSeriesUnits(transform: SeriesTransform) throws {
        let folder = try TemporaryFolder()
        let values: [Float] = (0..<120).map { step in
            let t = Double(step)
            return Float(500 + 40 * sin(t / 4) + t)
        }
        let path = try folder.write("series.csv", "t,v\n" + values.enumerated().map { "\($0),\($1)\n" }.joined())
        var source = DataSource(format: .series, paths: [path])
        source.sequenceLength = 8
        source.horizon = 3
        source.transform = transform
        let (checkpoint, trainer, prepared) = try trained(source) { _ in
            ModelSpecification(task: .forecast, inputFeatures: 1, cell: .gru, hiddenSize: 6, outputSize: 3, seed: 3)
        }
        let predictor = try Predictor(checkpoint: checkpoint, backend: TestBackends.cpu)
        let standardization = try #require(prepared.standardization)
        #expect(predictor.standardization == standardization)
        #expect(predictor.transform == transform)
        // The last window of the file: its 8 inputs and 3 targets, as training scales them.
        let raw = try ForecastWindows(values: values.suffix(11), length: 8, horizon: 3)
        let (window, scalings) = raw.transformed(transform, fitted: standardization)
        let expected = scalings[0].invert(try trainer.predict(SeriesWindows(window)))
        // Only the last 8 values are read: a longer history forecasts the same.
        for history in [Array(values.dropLast(3).suffix(8)), Array(values.dropLast(3))] {
            let forecast = try predictor.predict(series: history)
            #expect(forecast.count == 3)
            assertClose(forecast, expected, relativeTolerance: 1e-6, "forecast from \(history.count) values")
        }
        #expect(throws: RecurError.self) { try predictor.predict(series: Array(values.prefix(7))) }
        #expect(throws: RecurError.self) { try predictor.predict(series: [Float](repeating: .nan, count: 8)) }
        #expect(throws: RecurError.self) { try predictor.predict(texts: ["1 2 3"]) }
    }

    @Test func seriesLinesAreReadAsTheTrainingFileWas() throws {
        var source = DataSource(format: .series, paths: ["s.csv"])
        source.valueColumn = 2
        let checkpoint = try Checkpoint(
            specification: ModelSpecification(task: .forecast, inputFeatures: 1, cell: .gru, hiddenSize: 2,
                                              outputSize: 1, seed: 1),
            configuration: TrainingConfiguration(epochs: 1, batchSize: 1, optimizer: .sgd(learningRate: 0.1)),
            progress: TrainingProgress(),
            model: try ModelSpecification(task: .forecast, inputFeatures: 1, cell: .gru, hiddenSize: 2, outputSize: 1,
                                          seed: 1).makeModel(backend: TestBackends.cpu),
            optimizer: try OptimizerSpecification.sgd(learningRate: 0.1).makeOptimizer(backend: TestBackends.cpu),
            metadata: [RecordedData.sourceKey: try source.json()])
        let predictor = try Predictor(checkpoint: checkpoint, backend: TestBackends.cpu)
        var reader = Predictor.SeriesLineReader(for: predictor, source: "input")
        // Header (unsaid, its value is no number), a row, a blank line, a quoted row, one value.
        let read = try ["\u{FEFF}day,x,value", "1,a,2.5", "", "2,\"b,c\", 3", "7"].map { try reader.value(of: $0) }
        #expect(read == [nil, 2.5, nil, 3, 7])
        let error = recurError { _ = try reader.value(of: "3,c,NA") }
        #expect(error?.description.contains("input:6") == true && error?.description.contains("'NA'") == true,
                "\(String(describing: error))")
        #expect(recurError { _ = try reader.value(of: "3,4") }?.description.contains("no value column 2") == true)
    }
}
