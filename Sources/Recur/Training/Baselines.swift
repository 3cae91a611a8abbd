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
    public static func evaluate(task: ModelTask, classCount: Int, training: any TrainingExamples,
                                on evaluated: any TrainingExamples, scale: Double = 1,
                                season: Int? = nil) -> [Baseline] {
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
            return forecasts(evaluated, scale: scale, season: season)
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
    /// h = 1 … K:
    ///   last value: ŷ_h = x_{T−1}
    ///   drift:      ŷ_h = x_{T−1} + h · (x_{T−1} − x_0) / (T − 1)   (the mean step of the window;
    ///               the last value when T = 1)
    ///   seasonal naive (with a season of m ≤ T steps): ŷ_h = x_{T−1+h−m·(⌊(h−1)/m⌋+1)}, the value
    ///               one whole number of seasons before the target (Hyndman & Athanasopoulos,
    ///               Forecasting: Principles and Practice, §5.2)
    /// scored on the window's targets y_h:  MAE = mean |ŷ − y| · scale,
    /// RMSE = √(mean (ŷ − y)²) · scale, over every window and horizon step. Windows that carry
    /// their own scale s_n (`TrainingBatch.errorScales`) have each error multiplied by it first.
    /// Inputs and targets are read as the model reads them: as a window scaled by z = (x − c)/s
    /// (`SeriesTransform`) keeps its last value and mean step in proportion, both forecasts are
    /// the series' own ones, and s · |ŷ_z − y_z| = |ŷ − y| in the series' units.
    private static func forecasts(_ data: any TrainingExamples, scale: Double, season: Int?) -> [Baseline] {
        var absolute = [0.0, 0.0, 0.0]  // last value, drift, seasonal naive
        var squared = [0.0, 0.0, 0.0]
        var count = 0.0
        var seasonFits = season != nil
        for start in stride(from: 0, to: data.count, by: 1024) {
            let batch = data.batch(Array(start ..< min(start + 1024, data.count))[...])
            guard case let .values(inputs, steps, features) = batch.input,
                  case let .values(targets, horizon) = batch.targets, steps >= 1 else { continue }
            let b = batch.batchSize
            if let season, season < 1 || season > steps { seasonFits = false }
            for column in 0..<b {
                let windowScale = batch.errorScales.map { Double($0[column]) } ?? 1
                // Feature 0 of step t of this window: inputs are [T, B, F].
                let first = Double(inputs[column * features])
                let last = Double(inputs[((steps - 1) * b + column) * features])
                let meanStep = steps > 1 ? (last - first) / Double(steps - 1) : 0
                for h in 1...horizon {
                    let target = Double(targets[column * horizon + h - 1])
                    var forecasts = [last, last + Double(h) * meanStep]
                    if let season, seasonFits {
                        let t = steps - 1 + h - season * ((h - 1) / season + 1)
                        forecasts.append(Double(inputs[(t * b + column) * features]))
                    }
                    let errors = forecasts.map { ($0 - target) * windowScale }
                    for (index, error) in errors.enumerated() {
                        absolute[index] += abs(error)
                        squared[index] += error * error
                    }
                    count += 1
                }
            }
        }
        var names = [("last value", "last_value"), ("drift", "drift")]
        if seasonFits { names.append(("seasonal naive", "seasonal_naive")) }
        return names.enumerated().map { index, names in
            Baseline(name: names.0,
                     metrics: ["mae": count > 0 ? absolute[index] / count * scale : .nan,
                               "rmse": count > 0 ? (squared[index] / count).squareRoot() * scale : .nan],
                     comparedMetric: "mae", fieldSuffix: names.1)
        }
    }
}
