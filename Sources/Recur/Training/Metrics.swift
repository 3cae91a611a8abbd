// Running sums of a pass over data, turned into the metrics of a task at the end: loss (the
// training objective), accuracy for classifiers, taggers and language models, perplexity for
// language models, mean absolute error for forecasts.
//
// Shape legend: B batch, T time steps, K outputs.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Sums over the batches of one pass; add batches, then read `values(for:)`.
///
/// The loss is averaged as the loss itself averages: over examples (classification,
/// forecasting) or over non-padding targets (tagging, language models), so a pass's loss is
/// the loss of one batch holding all of its examples.
public struct MetricSums: Sendable, Equatable, Codable {
    /// Σ batch loss × batch weight.
    public var weightedLoss: Double = 0
    /// Σ batch weight (examples, or counted targets).
    public var weight: Double = 0
    /// Predictions that matched their class.
    public var correct: Double = 0
    /// Predictions that had a class to match.
    public var predicted: Double = 0
    /// Σ |prediction − target| (forecasts), in the model's units.
    public var absoluteError: Double = 0
    /// Values in `absoluteError`.
    public var values: Double = 0

    public init() {}

    /// Adds one batch: its mean loss, and its outputs against its targets.
    /// - Parameters:
    ///   - outputs: the model's outputs: logits `[B, 1]` or `[B, K]`, `[T, B, K]` for tagging and
    ///     language models, forecasts `[B, K]`.
    public mutating func add(loss: Float, outputs: [Float], targets: TrainingBatch.Targets, task: ModelTask) {
        switch targets {
        case .values(let values, let outputCount):
            let batchSize = values.count / max(outputCount, 1)
            weightedLoss += Double(loss) * Double(batchSize)
            weight += Double(batchSize)
            if task == .classify {
                // One logit: the positive class when it is above 0 (probability above 1/2).
                for (logit, target) in zip(outputs, values) {
                    correct += (logit > 0) == (target >= 0.5) ? 1 : 0
                }
                predicted += Double(values.count)
            } else {
                for (prediction, target) in zip(outputs, values) {
                    absoluteError += Double(abs(prediction - target))
                }
                self.values += Double(values.count)
            }
        case .classes(let classes):
            let classCount = outputs.count / max(classes.count, 1)
            let ignoresPadding = task == .tag || task == .lm
            var counted = 0
            for (row, target) in classes.enumerated() where !(ignoresPadding && target == Vocabulary.paddingID) {
                counted += 1
                let logits = outputs[row * classCount ..< (row + 1) * classCount]
                // The first largest logit, as argmax does.
                var best = logits.startIndex
                for index in logits.indices where logits[index] > logits[best] { best = index }
                correct += best - logits.startIndex == Int(target) ? 1 : 0
            }
            predicted += Double(counted)
            weightedLoss += Double(loss) * Double(counted)
            weight += Double(counted)
        }
    }

    /// Adds another pass's sums (another process's shard).
    public mutating func merge(_ other: MetricSums) {
        let (mine, theirs) = (array, other.array)
        self = MetricSums(array: zip(mine, theirs).map { $0 + $1 })
    }

    /// The sums in a fixed order, for reducing across processes.
    public var array: [Double] { [weightedLoss, weight, correct, predicted, absoluteError, values] }

    /// Sums from `array`'s order.
    public init(array: [Double]) {
        precondition(array.count == 6, "MetricSums has six sums")
        (weightedLoss, weight, correct, predicted, absoluteError, values) =
            (array[0], array[1], array[2], array[3], array[4], array[5])
    }

    /// The names `values(for:)` gives for `task`, in a fixed order.
    public static func names(for task: ModelTask) -> [String] {
        switch task {
        case .classify, .tag: ["loss", "accuracy"]
        case .lm: ["loss", "accuracy", "perplexity"]
        case .forecast: ["loss", "mae"]
        }
    }

    /// Whether a larger value of `metric` (with or without the `val_` prefix) is better:
    /// accuracy is, the loss, perplexity and errors are not.
    public static func higherIsBetter(_ metric: String) -> Bool {
        let name = metric.hasPrefix("val_") ? String(metric.dropFirst(4)) : metric
        return name == "accuracy"
    }

    /// The metrics of `task` by name: `loss` always; `accuracy` for classify, tag and lm;
    /// `perplexity` (e^loss, per token) for lm; `mae` for forecast (times `scale`, which turns a
    /// standardised series' error back into its own units).
    public func values(for task: ModelTask, scale: Double = 1) -> [String: Double] {
        var metrics: [String: Double] = ["loss": weight > 0 ? weightedLoss / weight : .nan]
        switch task {
        case .classify, .tag:
            metrics["accuracy"] = predicted > 0 ? correct / predicted : .nan
        case .lm:
            metrics["accuracy"] = predicted > 0 ? correct / predicted : .nan
            metrics["perplexity"] = exp(metrics["loss"]!)
        case .forecast:
            metrics["mae"] = values > 0 ? absoluteError / values * scale : .nan
        }
        return metrics
    }
}
