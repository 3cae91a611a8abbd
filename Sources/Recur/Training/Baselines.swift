// Trivial baselines a model must beat to have learnt anything: the majority class for
// classifiers, the unigram distribution for taggers and language models, the last value and the
// drift forecast for series. Class and token statistics come from the training split; each
// baseline is scored on the targets of the split the model is scored on, in the units of the
// model's metrics.
//
// Shape legend: N examples, T time steps, B batch, K classes (or horizon steps).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One baseline's metrics on one split.
public struct Baseline: Sendable, Equatable {
    /// "majority class", "unigram", "last value", "drift".
    public var name: String
    /// Its metrics by the model's metric names: `accuracy` and `loss`, or `mae` and `rmse`.
    public var metrics: [String: Double]
    /// The metric the model is compared on (`accuracy`, `loss` or `mae`).
    public var comparedMetric: String
    /// The suffix of its report fields: nil gives `baseline_accuracy`, "drift" gives
    /// `baseline_mae_drift`.
    public var fieldSuffix: String?

    /// `baseline_<metric>[_<suffix>]` for every metric.
    public var fields: [String: Double] {
        Dictionary(uniqueKeysWithValues: metrics.map { name, value in
            ("baseline_" + name + (fieldSuffix.map { "_" + $0 } ?? ""), value)
        })
    }

    /// Whether `modelMetrics` (the model's metrics on the same split, without prefix) are
    /// strictly better on `comparedMetric`; false when either value is missing or not finite.
    public func isBeaten(by modelMetrics: [String: Double]) -> Bool {
        guard let model = modelMetrics[comparedMetric], let baseline = metrics[comparedMetric],
              model.isFinite, baseline.isFinite else { return false }
        return MetricSums.higherIsBetter(comparedMetric) ? model > baseline : model < baseline
    }

    /// The baselines of `task` on `evaluated`.
    /// - Parameters:
    ///   - task: the model's task, which decides the baselines.
    ///   - classCount: K, the model's output size for tag and lm (ids 1 ..< K, 0 being padding),
    ///     the number of classes for classify (2 for one logit); unused for forecast.
    ///   - training: where class and token frequencies come from.
    ///   - evaluated: `on:`, the split the baselines are scored on.
    ///   - scale: multiplies forecast errors, as `Trainer.errorScale` multiplies `mae`.
    ///   - season: forecast: the season length m in steps; adds the seasonal naive forecast
    ///     where the windows hold at least one season (T ≥ m).
    ///   - targetNames: forecast: the target columns' names, in output order; with more than one,
    ///     the metrics also hold `mae_<name>` and `rmse_<name>` of each.
    public static func evaluate(task: ModelTask, classCount: Int, training: any TrainingExamples,
                                on evaluated: any TrainingExamples, scale: Double = 1,
                                season: Int? = nil, targetNames: [String] = ["value"]) -> [Baseline] {
        switch task {
        case .classify:
            return [classPrior(training: training, evaluated: evaluated, classCount: max(classCount, 2),
                               ignoresPadding: false, name: "majority class", comparedMetric: "accuracy")]
        case .tag:
            return [classPrior(training: training, evaluated: evaluated, classCount: classCount,
                               ignoresPadding: true, name: "unigram", comparedMetric: "accuracy")]
        case .lm:
            return [classPrior(training: training, evaluated: evaluated, classCount: classCount,
                               ignoresPadding: true, name: "unigram", comparedMetric: "loss")]
        case .forecast:
            return forecasts(evaluated, scale: scale, season: season, targetNames: targetNames)
        }
    }

    /// Every class target of `data` (padding left out where it is ignored): a label 0/1 of a
    /// one-logit classifier, a class id otherwise.
    private static func classTargets(_ data: any TrainingExamples, ignoresPadding: Bool,
                                     _ body: (Int) -> Void) {
        for start in stride(from: 0, to: data.count, by: 1024) {
            let batch = data.batch(Array(start ..< min(start + 1024, data.count))[...])
            switch batch.targets {
            case let .values(values, _):
                for value in values { body(value >= 0.5 ? 1 : 0) }
            case let .classes(classes):
                for target in classes where !(ignoresPadding && target == Vocabulary.paddingID) { body(Int(target)) }
            }
        }
    }

    /// The majority class (unigram) baseline. With n_k the training targets of class k among N,
    /// the K' classes it can predict (K, or K − 1 without padding), and the add-one estimate
    ///   q_k = (n_k + 1) / (N + K')
    /// (so a class unseen in training costs log(N + K'), not infinity):
    ///   accuracy = the fraction of evaluated targets equal to argmax_k n_k (the lowest id on a tie)
    ///   loss     = −(1/M) Σ_i log q_{y_i}   over the M evaluated targets y_i (nats per target),
    /// which for one logit is the binary cross-entropy of the constant probability q_1.
    private static func classPrior(training: any TrainingExamples, evaluated: any TrainingExamples, classCount: Int,
                                   ignoresPadding: Bool, name: String, comparedMetric: String) -> Baseline {
        var counts = [Double](repeating: 0, count: max(classCount, 1))
        classTargets(training, ignoresPadding: ignoresPadding) { target in
            if target < counts.count { counts[target] += 1 }
        }
        // Padding (id 0) is never a target where it is ignored, so it is no class to predict.
        let predictable = Double(ignoresPadding ? counts.count - 1 : counts.count)
        let total = counts.reduce(0, +)
        var majority = ignoresPadding && counts.count > 1 ? 1 : 0
        for k in counts.indices where counts[k] > counts[majority] { majority = k }
        var (correct, logLoss, seen) = (0.0, 0.0, 0.0)
        classTargets(evaluated, ignoresPadding: ignoresPadding) { target in
            seen += 1
            correct += target == majority ? 1 : 0
            let count = target < counts.count ? counts[target] : 0
            logLoss -= log((count + 1) / (total + predictable))
        }
        return Baseline(
            name: name, metrics: ["accuracy": seen > 0 ? correct / seen : .nan, "loss": seen > 0 ? logLoss / seen : .nan],
            comparedMetric: comparedMetric, fieldSuffix: nil)
    }

    /// The last value and drift forecasts of each window x_0 … x_{T−1}, for horizon steps
    /// h = 1 … H:
    ///   last value: ŷ_h = x_{T−1}
    ///   drift:      ŷ_h = x_{T−1} + h · (x_{T−1} − x_0) / (T − 1)   (the mean step of the window;
    ///               the last value when T = 1)
    ///   seasonal naive (with a season of m ≤ T steps): ŷ_h = x_{T−1+h−m·(⌊(h−1)/m⌋+1)}, the value
    ///               one whole number of seasons before the target (Hyndman & Athanasopoulos,
    ///               Forecasting: Principles and Practice, §5.2)
    /// scored on the window's targets y_h as `ForecastErrors` scores a model. With J target
    /// columns, output k = (h − 1) · J + j forecasts column j, which is input feature j, from
    /// that feature's window. Inputs and targets are read as the model reads them: as a window
    /// scaled by z = (x − c)/s (`SeriesTransform`) keeps its last value and mean step in
    /// proportion, both forecasts are the series' own ones, and s · |ŷ_z − y_z| = |ŷ − y| in the
    /// series' units.
    private static func forecasts(_ data: any TrainingExamples, scale: Double, season: Int?,
                                  targetNames: [String]) -> [Baseline] {
        let targetCount = max(targetNames.count, 1)
        var errors = [ForecastErrors](repeating: ForecastErrors(targetCount: targetCount), count: 3)
        var seasonFits = season != nil
        for start in stride(from: 0, to: data.count, by: 1024) {
            let batch = data.batch(Array(start ..< min(start + 1024, data.count))[...])
            guard case let .values(inputs, steps, features) = batch.input,
                  case let .values(targets, outputs) = batch.targets, steps >= 1 else { continue }
            let b = batch.batchSize
            if let season, season < 1 || season > steps { seasonFits = false }
            for column in 0..<b {
                for k in 0..<outputs {
                    let (h, j) = (k / targetCount + 1, k % targetCount)
                    // Feature j of step t of this window: inputs are [T, B, F].
                    func input(_ t: Int) -> Double { Double(inputs[(t * b + column) * features + j]) }
                    let (first, last) = (input(0), input(steps - 1))
                    let meanStep = steps > 1 ? (last - first) / Double(steps - 1) : 0
                    var forecasts = [last, last + Double(h) * meanStep]
                    if let season, seasonFits {
                        forecasts.append(input(steps - 1 + h - season * ((h - 1) / season + 1)))
                    }
                    let target = Double(targets[column * outputs + k])
                    let errorScale = ForecastErrors.errorScale(
                        batch.errorScales, example: column, output: k, outputs: outputs, batchSize: b)
                    for (index, forecast) in forecasts.enumerated() {
                        errors[index].add((forecast - target) * errorScale, target: j)
                    }
                }
            }
        }
        var names = [("last value", "last_value"), ("drift", "drift")]
        if seasonFits { names.append(("seasonal naive", "seasonal_naive")) }
        return names.enumerated().map { index, names in
            Baseline(name: names.0, metrics: errors[index].metrics(targetNames: targetNames, scale: scale),
                     comparedMetric: "mae", fieldSuffix: names.1)
        }
    }
}

/// Forecast errors in the series' units, over every window and output, and per target column:
///   MAE = mean |ŷ − y| · scale,   RMSE = √(mean (ŷ − y)²) · scale,
/// where each error has already been multiplied by its window's or output's own scale
/// (`TrainingBatch.errorScales`) when there is one.
public struct ForecastErrors: Sendable {
    private var absolute: [Double]
    private var squared: [Double]
    private var counts: [Double]

    /// Errors of J target columns.
    public init(targetCount: Int) {
        absolute = Array(repeating: 0, count: max(targetCount, 1))
        squared = absolute
        counts = absolute
    }

    /// Adds one error ŷ − y of target column j.
    public mutating func add(_ error: Double, target j: Int) {
        absolute[j] += abs(error)
        squared[j] += error * error
        counts[j] += 1
    }

    /// `mae` and `rmse` over all errors; with several targets also `mae_<name>` and
    /// `rmse_<name>` of each (`targetNames` in target order). NaN where there are no errors.
    public func metrics(targetNames: [String], scale: Double = 1) -> [String: Double] {
        func mae(_ a: Double, _ n: Double) -> Double { n > 0 ? a / n * scale : .nan }
        func rmse(_ s: Double, _ n: Double) -> Double { n > 0 ? (s / n).squareRoot() * scale : .nan }
        let n = counts.reduce(0, +)
        var metrics = ["mae": mae(absolute.reduce(0, +), n), "rmse": rmse(squared.reduce(0, +), n)]
        if counts.count > 1 {
            for (j, name) in targetNames.enumerated() where j < counts.count {
                metrics["mae_" + name] = mae(absolute[j], counts[j])
                metrics["rmse_" + name] = rmse(squared[j], counts[j])
            }
        }
        return metrics
    }

    /// The scale of output k of example b of a batch of B: per output `[B, K]`, per example
    /// `[B]`, or 1.
    static func errorScale(_ scales: [Float]?, example b: Int, output k: Int, outputs: Int, batchSize: Int) -> Double {
        guard let scales else { return 1 }
        return Double(scales.count == batchSize * outputs ? scales[b * outputs + k] : scales[b])
    }

    /// The errors of `predictions` (`[N, K]` in the model's units, as `Trainer.predict` gives
    /// them) on the targets of `data`, in the series' units: `scale` as `Trainer.errorScale`.
    public static func of(_ predictions: [Float], on data: any TrainingExamples, targetNames: [String],
                          scale: Double = 1) -> [String: Double] {
        let targetCount = max(targetNames.count, 1)
        var errors = ForecastErrors(targetCount: targetCount)
        var offset = 0
        for start in stride(from: 0, to: data.count, by: 1024) {
            let batch = data.batch(Array(start ..< min(start + 1024, data.count))[...])
            guard case let .values(targets, outputs) = batch.targets else { continue }
            for (index, target) in targets.enumerated() where offset + index < predictions.count {
                let (b, k) = (index / outputs, index % outputs)
                let error = Double(predictions[offset + index]) - Double(target)
                let errorScale = errorScale(batch.errorScales, example: b, output: k, outputs: outputs,
                                            batchSize: batch.batchSize)
                errors.add(error * errorScale, target: k % targetCount)
            }
            offset += targets.count
        }
        return errors.metrics(targetNames: targetNames, scale: scale)
    }
}
