import Foundation
import Testing
@testable import Recur

// Trivial baselines on data small enough to score by hand, and the baseline fields and warning
// of `recur train` and `recur evaluate`.

private func close(_ a: Double?, _ b: Double, tolerance: Double = 1e-9) -> Bool {
    guard let a else { return false }
    return abs(a - b) <= tolerance * max(1, abs(b))
}

private func labeled(_ labels: [Int32], classCount: Int) throws -> LabeledSequences {
    try LabeledSequences(sequences: try padSequences(labels.map { _ in [3, 4] }, maxLength: 2), labels: labels,
                         classCount: classCount)
}

@Suite("Baselines")
struct BaselineTests {
    // MARK: Baselines

    @Test func majorityClassOfTwoClasses() throws {
        // Training 1, 1, 1, 0: majority 1; add-one prior q₁ = 4/6, q₀ = 2/6.
        let baselines = Baseline.evaluate(task: .classify, classCount: 1, training: try labeled([1, 1, 1, 0], classCount: 2),
                                          on: try labeled([1, 0], classCount: 2))
        let baseline = try #require(baselines.first)
        #expect(baselines.count == 1 && baseline.name == "majority class" && baseline.comparedMetric == "accuracy")
        #expect(baseline.metrics["accuracy"] == 0.5)
        #expect(close(baseline.metrics["loss"], -(log(4.0 / 6) + log(2.0 / 6)) / 2))
        #expect(Set(baseline.fields.keys) == ["baseline_accuracy", "baseline_loss"])
    }

    @Test func majorityClassOfThreeClasses() throws {
        // Training 0, 2, 2, 1, 2: counts 1, 1, 3 of 5; q = 2/8, 2/8, 4/8; majority 2.
        let baseline = try #require(Baseline.evaluate(
            task: .classify, classCount: 3, training: try labeled([0, 2, 2, 1, 2], classCount: 3),
            on: try labeled([2, 0, 1, 2], classCount: 3)).first)
        #expect(baseline.metrics["accuracy"] == 0.5)
        // −(2 log ½ + 2 log ¼) / 4 = 1.5 ln 2
        #expect(close(baseline.metrics["loss"], 1.5 * log(2.0)))
    }

    @Test func unigramOfALanguageModel() throws {
        // Windows of 2 with stride 2 over 1 2 2 3 2: targets (2, 2) and (3, 2). Ids 1 ... 3 can be
        // predicted: q₁ = 1/7, q₂ = 4/7, q₃ = 2/7; the most frequent is 2.
        let windows = try LanguageModelWindows(ids: [1, 2, 2, 3, 2], length: 2, stride: 2)
        let baseline = try #require(Baseline.evaluate(task: .lm, classCount: 4, training: windows, on: windows).first)
        #expect(baseline.name == "unigram" && baseline.comparedMetric == "loss")
        #expect(baseline.metrics["accuracy"] == 0.75)
        #expect(close(baseline.metrics["loss"], -(3 * log(4.0 / 7) + log(2.0 / 7)) / 4))
    }

    @Test func unigramOfATaggerIgnoresPadding() throws {
        // Tags 1 2 1 and 2 (padded with 0 after): two of each; the tie goes to the lower id.
        let ids = try padSequences([[5, 6, 7], [5]], maxLength: 3, padding: .post)
        let tags = try padSequences([[1, 2, 1], [2]], maxLength: 3, padding: .post)
        let tagged = try TaggedSequences(sequences: ids, tags: tags)
        let baseline = try #require(Baseline.evaluate(task: .tag, classCount: 3, training: tagged, on: tagged).first)
        #expect(baseline.metrics["accuracy"] == 0.5)
        #expect(close(baseline.metrics["loss"], log(2.0)))
    }

    @Test func lastValueAndDriftForecasts() throws {
        // Windows (0 1 3 → 4 8) and (1 3 4 → 8 9), mean steps 1.5 and 1.5.
        // Last value errors: −1 −5 −4 −5; drift (3 + 1.5h, 4 + 1.5h) errors: 0.5 −2 −2.5 −2.
        let windows = SeriesWindows(try ForecastWindows(values: [0, 1, 3, 4, 8, 9], length: 3, horizon: 2))
        let baselines = Baseline.evaluate(task: .forecast, classCount: 0, training: windows, on: windows, scale: 2)
        #expect(baselines.map(\.name) == ["last value", "drift"])
        #expect(baselines[0].metrics["mae"] == 2 * 15.0 / 4)
        #expect(close(baselines[0].metrics["rmse"], 2 * (67.0 / 4).squareRoot()))
        #expect(baselines[1].metrics["mae"] == 2 * 7.0 / 4)
        #expect(close(baselines[1].metrics["rmse"], 2 * (14.5 / 4).squareRoot()))
        #expect(Set(baselines.flatMap(\.fields.keys)) ==
            ["baseline_mae_last_value", "baseline_rmse_last_value", "baseline_mae_drift", "baseline_rmse_drift"])
        #expect(baselines[1].isBeaten(by: ["mae": 3.4]) && !baselines[1].isBeaten(by: ["mae": 3.5]))
        #expect(!baselines[1].isBeaten(by: ["mae": .nan]) && !baselines[1].isBeaten(by: [:]))
    }

    @Test func seasonalNaiveForecasts() throws {
        // Season 2: ŷ_1 = x_{T−2}, ŷ_2 = x_{T−1}, ŷ_3 = x_{T−2}. Windows of T = 3, horizon 3:
        // (0 1 3 → 4 8 9): forecasts 1 3 1, errors −3 −5 −8; (1 3 4 → 8 9 7): forecasts 3 4 3,
        // errors −5 −5 −4.
        let windows = SeriesWindows(try ForecastWindows(values: [0, 1, 3, 4, 8, 9, 7], length: 3, horizon: 3))
        let baselines = Baseline.evaluate(task: .forecast, classCount: 0, training: windows, on: windows, scale: 1,
                                          season: 2)
        #expect(baselines.map(\.name) == ["last value", "drift", "seasonal naive"])
        #expect(baselines[2].metrics["mae"] == 30.0 / 6)
        #expect(close(baselines[2].metrics["rmse"], (164.0 / 6).squareRoot()))
        #expect(baselines[2].fields.keys.sorted() == ["baseline_mae_seasonal_naive", "baseline_rmse_seasonal_naive"])
        // A season longer than the windows has nothing to repeat: no seasonal baseline.
        let longer = Baseline.evaluate(task: .forecast, classCount: 0, training: windows, on: windows, season: 4)
        #expect(longer.map(\.name) == ["last value", "drift"])
    }

    // MARK: Commands

    @Test func trainAndEvaluateReportBaselinesAndWarnWhenTheModelLoses() throws {
        let folder = try TemporaryFolder()
        // 30 "pos" and 10 "neg" rows of the same text: no model can tell them apart, and one that
        // never learns predicts one class for all.
        let rows = (0..<40).map { index in (index % 4 == 3 ? "neg" : "pos") + "\tthe same words" }
        try folder.write("skewed.tsv", rows.joined(separator: "\n") + "\n")
        let train = try runRecur(
            ["train", "--device", "cpu", "--data", "skewed.tsv", "--embedding", "4", "--hidden", "4", "--epochs", "1",
             "--learning-rate", "0", "--batch-size", "8", "--test-split", "0.25", "--validation-split", "0.25",
             "--checkpoint-dir", "run", "--json"], in: folder.path)
        #expect(train.status == 0, "\(train.stderr)")
        let line = try #require(train.stdout.split(separator: "\n").last)
        let final = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(final["final"] as? Bool == true)
        for field in ["baseline_accuracy", "baseline_loss", "test_f1", "test_precision", "test_recall", "test_auc",
                      "test_precision_pos", "test_recall_neg", "test_f1_pos", "val_f1", "val_auc", "f1"] {
            #expect(final[field] is Double, "\(field) missing: \(line)")
        }
        // Every score ties: the AUC is one half.
        #expect(final["test_auc"] as? Double == 0.5, "\(line)")
        #expect(train.stderr.contains("warning: the model does not beat the majority class baseline on test (accuracy model "),
                "\(train.stderr)")

        let evaluate = try runRecur(
            ["evaluate", "--device", "cpu", "--checkpoint", folder.path + "/run/last.safetensors", "--split", "validation"],
            in: folder.path)
        #expect(evaluate.status == 0, "\(evaluate.stderr)")
        #expect(evaluate.stdout.contains("baselines on validation: majority class accuracy "), "\(evaluate.stdout)")
        #expect(evaluate.stdout.contains("f1_neg "), "\(evaluate.stdout)")
        #expect(evaluate.stderr.contains("warning: the model does not beat the majority class baseline on validation"),
                "\(evaluate.stderr)")
    }

    @Test func aForecastReportsLastValueAndDriftBaselines() throws {
        let folder = try TemporaryFolder()
        // A rising line in large units: the drift forecast is exact, so the model cannot beat it.
        let rows = (0..<60).map { "\($0),\(1000 + 50 * $0)" }
        try folder.write("line.csv", "t,value\n" + rows.joined(separator: "\n") + "\n")
        let train = try runRecur(
            ["train", "--device", "cpu", "--data", "line.csv", "--format", "series", "--max-length", "4",
             "--horizon", "2", "--embedding", "4", "--hidden", "4", "--epochs", "1", "--batch-size", "8",
             "--validation-split", "0.2"], in: folder.path)
        #expect(train.status == 0, "\(train.stderr)")
        let baselineLine = try #require(train.stdout.split(separator: "\n").last { $0.hasPrefix("baselines on validation:") },
                                        "\(train.stdout)")
        // Last value is off by 50 and 100 (mean 75) at every window; drift by nothing (but rounding).
        #expect(baselineLine.contains("last value mae 75.00") && baselineLine.contains("drift mae 0.00"),
                "\(baselineLine)")
        #expect(train.stderr.contains("warning: the model does not beat the drift baseline on validation (mae model "),
                "\(train.stderr)")

        // --season adds the seasonal naive forecast; one longer than the window is refused.
        let seasonal = try runRecur(
            ["train", "--device", "cpu", "--data", "line.csv", "--format", "series", "--max-length", "4",
             "--horizon", "2", "--hidden", "4", "--epochs", "1", "--validation-split", "0.2", "--season", "2", "--json"],
            in: folder.path)
        #expect(seasonal.status == 0, "\(seasonal.stderr)")
        #expect(seasonal.stdout.contains("\"baseline_mae_seasonal_naive\""), "\(seasonal.stdout)")
        expectCleanFailure(try runRecur(["train", "--device", "cpu", "--data", "line.csv", "--format", "series",
                                         "--max-length", "4", "--season", "5"], in: folder.path),
                           "--season must be 1 ... --max-length (4)")
    }
}
