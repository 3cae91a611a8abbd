import Foundation
import Testing
@testable import Recur

// Series of several columns: windows of F features and J targets, per-column standardisation and
// transforms, a model that reads a leading column beating the naive forecasts, errors per target,
// the checkpoint round trip through recur train, evaluate and predict, and the refusals.

/// A seeded pair of columns where x leads y: x is a random walk, y_t = 2 x_{t−1} + 0.05 ε_t, so
/// y's next change is twice x's last one, which y's own past does not tell.
private func leadingColumns(count: Int, seed: UInt64) -> (y: [Float], x: [Float]) {
    var random = SeededGenerator(seed: seed)
    var x: [Float] = [Float.random(in: -1...1, using: &random)]
    var y: [Float] = [0]
    for _ in 1..<count {
        y.append(2 * x.last! + 0.05 * Float.random(in: -1...1, using: &random))
        x.append(x.last! + Float.random(in: -1...1, using: &random))
    }
    return (y.map { $0 + 50 }, x.map { $0 + 10 })
}

/// `t,y,x` rows of the two columns.
private func columnsFile(_ columns: (y: [Float], x: [Float]), in folder: TemporaryFolder) throws -> String {
    try folder.write("pair.csv", "t,y,x\n" + zip(columns.y, columns.x).enumerated().map { "\($0),\($1.0),\($1.1)\n" }.joined())
}

@Suite("Multivariate series")
struct MultivariateSeriesTests {
    /// Window n of F columns holds columns[f][n·stride + t] at [n, t, f] and the next H steps of
    /// the J first columns at [n, h, j]; a batch lays the inputs out as [T, B, F]. One column
    /// gives the same windows as the single-series initialiser.
    @Test func windowsOfSeveralColumns() throws {
        var random = SeededGenerator(seed: 11)
        let columns = (0..<3).map { _ in (0..<20).map { _ in Float.random(in: -5...5, using: &random) } }
        let windows = try ForecastWindows(columns: columns, targetCount: 2, length: 4, horizon: 3, stride: 2)
        #expect(windows.count == (20 - 4 - 3) / 2 + 1 && windows.features == 3 && windows.outputs == 6)
        for n in 0..<windows.count {
            for t in 0..<4 {
                for f in 0..<3 { #expect(windows.inputs[(n * 4 + t) * 3 + f] == columns[f][n * 2 + t]) }
            }
            for h in 0..<3 {
                for j in 0..<2 { #expect(windows.targets[(n * 3 + h) * 2 + j] == columns[j][n * 2 + 4 + h]) }
            }
        }
        let batch = windows.batch([4, 1])
        #expect(batch.features == 3 && batch.horizon == 6)
        for (b, n) in [4, 1].enumerated() {
            for t in 0..<4 {
                for f in 0..<3 { #expect(batch.inputs[(t * 2 + b) * 3 + f] == columns[f][n * 2 + t]) }
            }
            #expect(Array(batch.targets[b * 6 ..< (b + 1) * 6]) == Array(windows.targets[n * 6 ..< (n + 1) * 6]))
        }
        #expect(try ForecastWindows(columns: [columns[0]], targetCount: 1, length: 5, horizon: 2)
            == ForecastWindows(values: columns[0], length: 5, horizon: 2))
        #expect(throws: RecurError.self) { try ForecastWindows(columns: columns, targetCount: 4, length: 4) }
        #expect(throws: RecurError.self) { try ForecastWindows(columns: [[1, 2, 3], [1, 2]], targetCount: 1, length: 1) }
    }

    /// Each column is scaled by its own c and s (its standardisation fitted alone, its window
    /// alone), exactly as that column would be on its own, and the values come back through
    /// each scaling, for every transform and columns of very different magnitudes.
    @Test(arguments: SeriesTransform.allCases) func perColumnStandardizationRoundTrip(transform: SeriesTransform) throws {
        var random = SeededGenerator(seed: 12)
        let magnitudes: [Float] = [1e4, 1, 1e-2]
        let columns = magnitudes.map { m in (0..<50).map { _ in (Float.random(in: -1...1, using: &random) + 3) * m } }
        let fitted = try columns.map { try Standardization(fitting: $0.prefix(35)) }
        let raw = try ForecastWindows(columns: columns, targetCount: 2, length: 6, horizon: 2)
        let (scaled, scalings) = raw.transformed(transform, fitted: fitted)
        #expect(scalings.count == raw.count && scalings.allSatisfy { $0.count == 3 })
        for f in 0..<3 {
            let alone = try ForecastWindows(values: columns[f], length: 6, horizon: 2)
            let (aloneScaled, aloneScalings) = alone.transformed(transform, fitted: fitted[f])
            #expect(scalings.map { $0[f] } == aloneScalings, "column \(f)")
            let inputs = stride(from: f, to: scaled.inputs.count, by: 3).map { scaled.inputs[$0] }
            #expect(inputs == aloneScaled.inputs, "column \(f)")
            if f < 2 {
                let targets = stride(from: f, to: scaled.targets.count, by: 2).map { scaled.targets[$0] }
                #expect(targets == aloneScaled.targets, "target \(f)")
            }
            var back: [Float] = []
            for n in 0..<raw.count {
                back += scalings[n][f].invert((0..<6).map { scaled.inputs[(n * 6 + $0) * 3 + f] })
            }
            let original = stride(from: f, to: raw.inputs.count, by: 3).map { raw.inputs[$0] }
            assertClose(back, original, relativeTolerance: 1e-6, absoluteTolerance: 1e-6 * magnitudes[f],
                        "\(transform) column \(f)")
        }
    }

    /// Where a column leads the target, a small model that reads both beats the last value and
    /// drift forecasts of the target in MAE and RMSE; errors are in the target's units and the
    /// baselines are the target's own.
    @Test func aLeadingColumnBeatsTheNaiveForecasts() throws {
        let folder = try TemporaryFolder()
        var source = DataSource(format: .series, paths: [try columnsFile(leadingColumns(count: 300, seed: 3), in: folder)])
        source.valueColumns = ["y", "x"]
        source.sequenceLength = 4
        source.validationFraction = 0
        source.testFraction = 0.25
        let prepared = try source.prepare()
        #expect(prepared.seriesNames == ["y", "x"] && prepared.targetNames == ["y"] && prepared.featureCount == 2)
        let trainer = try Trainer(
            specification: ModelSpecification(task: .forecast, inputFeatures: 2, cell: .gru, hiddenSize: 8,
                                              outputSize: 1, seed: 1),
            configuration: TrainingConfiguration(epochs: 15, batchSize: 16, optimizer: .adam(learningRate: 0.01),
                                                 seed: 2, monitor: "loss"),
            backend: TestBackends.cpu)
        try trainer.fit(training: prepared.training)
        trainer.errorScale = prepared.errorScale
        let test = try #require(prepared.test)
        let model = ForecastErrors.of(try trainer.predict(test), on: test, targetNames: prepared.targetNames,
                                      scale: prepared.errorScale)
        let mae = try #require(try trainer.evaluate(test)["mae"])
        #expect(abs(model["mae"]! - mae) <= 1e-9 + 1e-9 * mae)
        let baselines = Baseline.evaluate(task: .forecast, classCount: 1, training: prepared.training, on: test,
                                          scale: prepared.errorScale, targetNames: prepared.targetNames)
        #expect(baselines.map(\.name) == ["last value", "drift"])
        for baseline in baselines {
            for metric in ["mae", "rmse"] {
                #expect(model[metric]! < baseline.metrics[metric]!, "\(baseline.name) \(metric): \(model) vs \(baseline.metrics)")
            }
        }
    }

    /// Two targets: the baselines and the model's errors per target, each in its own units, the
    /// overall ones their mean over every output. Checked against the errors computed from the
    /// raw values.
    @Test func errorsPerTargetInEachTargetsUnits() throws {
        let folder = try TemporaryFolder()
        let pair = leadingColumns(count: 60, seed: 4)
        var source = DataSource(format: .series, paths: [try columnsFile((pair.y, pair.x.map { $0 * 1000 }), in: folder)])
        source.valueColumns = ["2", "1"]
        source.targetColumns = ["x", "1"]
        source.sequenceLength = 5
        source.horizon = 2
        source.validationFraction = 0
        source.testFraction = 0.3
        let prepared = try source.prepare()
        #expect(prepared.targetNames == ["x", "y"] && prepared.errorScale == 1)
        let test = try #require(prepared.test)
        let baselines = Baseline.evaluate(task: .forecast, classCount: 4, training: prepared.training, on: test,
                                          scale: prepared.errorScale, targetNames: prepared.targetNames)
        let last = try #require(baselines.first)
        let testStart = 60 - 18
        for (name, values) in [("x", pair.x.map { $0 * 1000 }), ("y", pair.y)] {
            var absolute = 0.0, squared = 0.0, count = 0.0
            for end in testStart ... 60 - 2 {
                for h in 0..<2 {
                    let error = Double(values[end - 1]) - Double(values[end + h])
                    absolute += abs(error)
                    squared += error * error
                    count += 1
                }
            }
            let mae = try #require(last.metrics["mae_" + name]), rmse = try #require(last.metrics["rmse_" + name])
            #expect(abs(mae - absolute / count) <= 1e-4 * absolute / count, "\(name): \(mae) vs \(absolute / count)")
            #expect(abs(rmse - (squared / count).squareRoot()) <= 1e-4 * rmse, "\(name)")
        }
        #expect(abs(last.metrics["mae"]! - (last.metrics["mae_x"]! + last.metrics["mae_y"]!) / 2)
            <= 1e-9 * last.metrics["mae"]!)
    }

    /// recur train with two value columns and two targets records the columns and their
    /// standardisations; recur evaluate reports each target's errors; recur predict reads a CSV
    /// with the same columns and prints step,<target>,… rows equal to the Predictor's forecast.
    @Test func checkpointRoundTripThroughTrainEvaluateAndPredict() throws {
        let folder = try TemporaryFolder()
        let path = try columnsFile(leadingColumns(count: 80, seed: 5), in: folder)
        let trained = try runRecur(
            ["train", "--device", "cpu", "--data", path, "--format", "series", "--value-column", "x,y",
             "--target-column", "y,x", "--max-length", "5", "--horizon", "2", "--hidden", "4", "--epochs", "1",
             "--test-split", "0.2", "--seed", "1", "--checkpoint-dir", "run", "--json"], in: folder.path)
        #expect(trained.status == 0, "\(trained.stderr)")
        let final = try #require(trained.stdout.split(separator: "\n").last)
        for field in ["test_mae_y", "test_rmse_x", "test_rmse", "baseline_mae_y_last_value", "baseline_rmse_x_drift"] {
            #expect(final.contains("\"\(field)\""), "\(field) in \(final)")
        }
        let checkpoint = try Checkpoint(contentsOf: folder.path + "/run/last.safetensors")
        let recorded = try RecordedData(metadata: checkpoint.metadata)
        #expect(recorded.columnNames == ["y", "x"] && recorded.standardizations?.count == 2)
        #expect(checkpoint.specification.inputFeatures == 2 && checkpoint.specification.outputSize == 4)

        let evaluated = try runRecur(["evaluate", "--device", "cpu", "--checkpoint", "run/last.safetensors", "--json"],
                                     in: folder.path)
        #expect(evaluated.status == 0, "\(evaluated.stderr)")
        #expect(evaluated.stdout.contains("\"mae_x\"") && evaluated.stdout.contains("\"rmse_y\""), "\(evaluated.stdout)")

        let predicted = try runRecur(["predict", "--device", "cpu", "--checkpoint", "run/last.safetensors",
                                      "--input", path], in: folder.path)
        #expect(predicted.status == 0, "\(predicted.stderr)")
        let rows = predicted.stdout.split(separator: "\n").map { $0.split(separator: ",").map(String.init) }
        #expect(rows.first == ["step", "y", "x"] && rows.count == 3, "\(predicted.stdout)")
        let pair = leadingColumns(count: 80, seed: 5)
        let predictor = try Predictor(checkpoint: checkpoint, backend: TestBackends.cpu)
        let expected = try predictor.predict(steps: (75..<80).map { [pair.y[$0], pair.x[$0]] })
        for (row, values) in zip(rows.dropFirst(), expected) {
            assertClose(row.dropFirst().compactMap(Float.init), values, relativeTolerance: 1e-5, "predict rows")
        }
        let onnx = try runRecur(["export", "--checkpoint", "run/last.safetensors", "--format", "onnx",
                                 "--output", "m.onnx"], in: folder.path)
        expectCleanFailure(onnx, "only forecasters of one column export to ONNX")
    }

    /// A missing column, a non-numeric cell (with file:line), a target that is not a value
    /// column, the same column twice and a negative index are refused before training.
    @Test func refusals() throws {
        let folder = try TemporaryFolder()
        let path = try folder.write("bad.csv", "t,y,x\n0,1.5,2\n1,2.5,oops\n2,3,4\n")
        func message(_ values: [String], _ targets: [String]? = nil) -> String {
            var source = DataSource(format: .series, paths: [path])
            source.valueColumns = values
            source.targetColumns = targets
            source.sequenceLength = 1
            return recurError { _ = try source.prepare() }?.description ?? ""
        }
        #expect(message(["y", "nope"]).contains("no column named 'nope'"))
        #expect(message(["y", "x"]).contains("bad.csv:3") && message(["y", "x"]).contains("'oops'"))
        #expect(message(["y"], ["x"]).contains("target column 'x' of \(path) is not one of the value columns"))
        #expect(message(["y", "1"]).contains("asked for twice"))
        #expect(message(["y", "9"]).contains("outside the 3 columns"))
        let negative = try runRecur(["train", "--data", path, "--format", "series", "--value-column", "1,-2"],
                                    in: folder.path)
        expectCleanFailure(negative, "--value-column must be 0 or more, got -2")
    }
}
