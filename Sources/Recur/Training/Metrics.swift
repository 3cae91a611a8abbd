// Running sums of a pass over data, turned into the metrics of a task at the end: loss (the
// training objective), accuracy for classifiers, taggers and language models, perplexity for
// language models, mean absolute error for forecasts; precision, recall and F1 (from a
// confusion matrix) for classifiers, and ROC AUC for two classes.
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
    /// Classifiers only: the confusion matrix `[K, K]` row-major, `confusion[target * K +
    /// predicted]` examples; empty until a batch is added (or for other tasks). Counting costs
    /// O(B) a batch, so the training pass keeps it too.
    public var confusion: [Double] = []

    public init() {}

    private enum CodingKeys: String, CodingKey {
        case weightedLoss, weight, correct, predicted, absoluteError, values, confusion
    }

    /// Checkpoints written before the confusion matrix existed have no `confusion`: their epoch
    /// restarts its counts from there (precision, recall and F1 of that epoch cover the batches
    /// after the resume).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        weightedLoss = try container.decode(Double.self, forKey: .weightedLoss)
        weight = try container.decode(Double.self, forKey: .weight)
        correct = try container.decode(Double.self, forKey: .correct)
        predicted = try container.decode(Double.self, forKey: .predicted)
        absoluteError = try container.decode(Double.self, forKey: .absoluteError)
        values = try container.decode(Double.self, forKey: .values)
        confusion = try container.decodeIfPresent([Double].self, forKey: .confusion) ?? []
    }

    /// Sizes the confusion matrix for `classCount` classes (keeping counts already there), so
    /// that every process reduces sums of one length even if it saw no batch.
    public mutating func reserveClasses(_ classCount: Int) {
        guard classCount > 0, confusion.count != classCount * classCount else { return }
        precondition(confusion.isEmpty, "MetricSums counts \(confusionClassCount) classes, not \(classCount)")
        confusion = Array(repeating: 0, count: classCount * classCount)
    }

    /// K of `confusion`.
    public var confusionClassCount: Int {
        var k = 0
        while k * k < confusion.count { k += 1 }
        return k
    }

    /// Adds one batch: its mean loss, and its outputs against its targets.
    /// - Parameters:
    ///   - loss: the batch's mean loss.
    ///   - outputs: the model's outputs: logits `[B, 1]` or `[B, K]`, `[T, B, K]` for tagging and
    ///     language models, forecasts `[B, K]`.
    ///   - targets: the batch's targets.
    ///   - task: the model's task, which decides how outputs are scored.
    ///   - lossWeight: the batch's total class weight Σ w_{y_i} when the loss is weighted by
    ///     class: the batch's loss then counts with it instead of its example count, so that the
    ///     pass's loss is Σ_b W_b L_b / Σ_b W_b = Σ w_{y_i} ℓ_i / Σ w_{y_i} over all its examples.
    ///   - errorScales: forecasts: each example's error scale `[B]`, or each output's `[B, K]`
    ///     (`TrainingBatch.errorScales`);
    ///     `absoluteError` then sums s_b · |prediction − target|, already in the series' units.
    public mutating func add(loss: Float, outputs: [Float], targets: TrainingBatch.Targets, task: ModelTask,
                             lossWeight: Double? = nil, errorScales: [Float]? = nil) {
        let lossCount = lossWeight ?? Self.lossCount(targets, task: task)
        weightedLoss += Double(loss) * lossCount
        weight += lossCount
        switch targets {
        case .values(let values, let outputCount):
            if task == .classify {
                // One logit: the positive class when it is above 0 (probability above 1/2).
                reserveClasses(2)
                for (logit, target) in zip(outputs, values) {
                    correct += (logit > 0) == (target >= 0.5) ? 1 : 0
                    confusion[(target >= 0.5 ? 2 : 0) + (logit > 0 ? 1 : 0)] += 1
                }
                predicted += Double(values.count)
            } else {
                for (index, (prediction, target)) in zip(outputs, values).enumerated() {
                    // Per example [B], or per output [B, K].
                    let scale = errorScales.map {
                        Double($0.count == values.count ? $0[index] : $0[index / max(outputCount, 1)])
                    } ?? 1
                    absoluteError += Double(abs(prediction - target)) * scale
                }
                self.values += Double(values.count)
            }
        case .classes(let classes):
            let classCount = outputs.count / max(classes.count, 1)
            let ignoresPadding = task == .tag || task == .lm
            if task == .classify { reserveClasses(classCount) }
            var counted = 0
            for (row, target) in classes.enumerated() where !(ignoresPadding && target == Vocabulary.paddingID) {
                counted += 1
                let logits = outputs[row * classCount ..< (row + 1) * classCount]
                // The first largest logit, as argmax does.
                var best = logits.startIndex
                for index in logits.indices where logits[index] > logits[best] { best = index }
                correct += best - logits.startIndex == Int(target) ? 1 : 0
                if task == .classify { confusion[Int(target) * classCount + best - logits.startIndex] += 1 }
            }
            predicted += Double(counted)
        }
    }

    /// The count `add` weighs a batch's loss with: its rows, or its targets that are not padding.
    private static func lossCount(_ targets: TrainingBatch.Targets, task: ModelTask) -> Double {
        switch targets {
        case .values(let values, let outputCount): return Double(values.count / max(outputCount, 1))
        case .classes(let classes):
            let ignoresPadding = task == .tag || task == .lm
            return Double(classes.count { !(ignoresPadding && $0 == Vocabulary.paddingID) })
        }
    }

    /// Adds another pass's sums (another process's shard).
    public mutating func merge(_ other: MetricSums) {
        var (mine, theirs) = (self, other)
        mine.reserveClasses(other.confusionClassCount)
        theirs.reserveClasses(confusionClassCount)
        self = MetricSums(array: zip(mine.array, theirs.array).map { $0 + $1 })
    }

    /// The sums in a fixed order, for reducing across processes: the six sums, then `confusion`.
    public var array: [Double] { [weightedLoss, weight, correct, predicted, absoluteError, values] + confusion }

    /// Sums from `array`'s order.
    public init(array: [Double]) {
        precondition(array.count >= 6, "MetricSums has six sums and a confusion matrix")
        (weightedLoss, weight, correct, predicted, absoluteError, values) =
            (array[0], array[1], array[2], array[3], array[4], array[5])
        confusion = Array(array[6...])
    }

    /// The names `values(for:)` gives for `task`, in a fixed order.
    public static func names(for task: ModelTask) -> [String] {
        switch task {
        case .classify: ["loss", "accuracy", "precision", "recall", "f1"]
        case .tag: ["loss", "accuracy"]
        case .lm: ["loss", "accuracy", "perplexity"]
        case .forecast: ["loss", "mae"]
        }
    }

    /// The names `Trainer.evaluate` gives beyond `names(for:)`: `auc` for a classifier of two
    /// classes (`outputSize` 1), which needs every example's score and so is computed on the
    /// validation and test data only, never on the training batches.
    public static func evaluationOnlyNames(for task: ModelTask, outputSize: Int) -> [String] {
        task == .classify && outputSize == 1 ? ["auc"] : []
    }

    /// Whether a larger value of `metric` (with or without the `val_`, `test_` or `baseline_`
    /// prefix) is better: accuracy, precision, recall, F1 and AUC are, the loss, perplexity and
    /// errors are not.
    public static func higherIsBetter(_ metric: String) -> Bool {
        var name = Substring(metric)
        for prefix in ["val_", "test_", "baseline_"] where name.hasPrefix(prefix) { name = name.dropFirst(prefix.count) }
        return ["accuracy", "precision", "recall", "f1", "auc"].contains { name == $0 || name.hasPrefix($0 + "_") }
    }

    /// The metrics of `task` by name: `loss` always; `accuracy` for classify, tag and lm;
    /// `precision`, `recall` and `f1` (macro averages, `classScores`) for classify;
    /// `perplexity` (e^loss, per token) for lm; `mae` for forecast (times `scale`, which turns a
    /// standardised series' error back into its own units).
    public func values(for task: ModelTask, scale: Double = 1) -> [String: Double] {
        var metrics: [String: Double] = ["loss": weight > 0 ? weightedLoss / weight : .nan]
        switch task {
        case .classify:
            metrics["accuracy"] = predicted > 0 ? correct / predicted : .nan
            let macro = macroScores
            (metrics["precision"], metrics["recall"], metrics["f1"]) = (macro.precision, macro.recall, macro.f1)
        case .tag:
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


/// Precision, recall and F1 of one class, from the confusion matrix.
public struct ClassScores: Sendable, Equatable {
    public var precision: Double
    public var recall: Double
    public var f1: Double
    /// Examples whose target is the class.
    public var support: Double
    /// Examples predicted as the class.
    public var predictedCount: Double
}

extension MetricSums {
    /// Every class's scores, in class order:
    ///   precision = TP / (TP + FP)   (0 for a class never predicted)
    ///   recall    = TP / (TP + FN)   (0 for a class without examples)
    ///   F1        = 2 · precision · recall / (precision + recall)   (0 when both are 0)
    /// the zero conventions being scikit-learn's `zero_division=0`.
    public var classScores: [ClassScores] {
        let k = confusionClassCount
        return (0..<k).map { c in
            let truePositives = confusion[c * k + c]
            let support = (0..<k).reduce(0) { $0 + confusion[c * k + $1] }
            let predictedCount = (0..<k).reduce(0) { $0 + confusion[$1 * k + c] }
            let precision = predictedCount > 0 ? truePositives / predictedCount : 0
            let recall = support > 0 ? truePositives / support : 0
            let f1 = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0
            return ClassScores(precision: precision, recall: recall, f1: f1, support: support,
                               predictedCount: predictedCount)
        }
    }

    /// The unweighted means of the classes' precision, recall and F1 over the classes that have
    /// examples or predictions (scikit-learn's `average="macro"` over the labels present); NaN
    /// when no example was counted.
    public var macroScores: (precision: Double, recall: Double, f1: Double) {
        let present = classScores.filter { $0.support > 0 || $0.predictedCount > 0 }
        guard !present.isEmpty else { return (.nan, .nan, .nan) }
        let n = Double(present.count)
        return (present.reduce(0) { $0 + $1.precision } / n, present.reduce(0) { $0 + $1.recall } / n,
                present.reduce(0) { $0 + $1.f1 } / n)
    }

    /// `precision_<name>`, `recall_<name>` and `f1_<name>` of every class, `names` in class
    /// order (the class index where a name is missing).
    public func perClassValues(names: [String]) -> [String: Double] {
        var values: [String: Double] = [:]
        for (c, scores) in classScores.enumerated() {
            let name = c < names.count && !names[c].isEmpty ? names[c] : "\(c)"
            values["precision_" + name] = scores.precision
            values["recall_" + name] = scores.recall
            values["f1_" + name] = scores.f1
        }
        return values
    }

    /// The area under the ROC curve of scores for two classes, by ranks (Mann–Whitney U):
    ///   AUC = (R₊ − n₊(n₊ + 1)/2) / (n₊ · n₋)
    /// where R₊ is the sum of the positives' 1-based ranks among all scores in increasing order,
    /// tied scores sharing the mean of their ranks (so a tie counts one half). It is the
    /// probability that a random positive scores above a random negative; NaN without examples
    /// of both classes.
    /// - Parameters:
    ///   - scores: one per example (a logit, or any increasing function of it).
    ///   - positives: whether each example is of the positive class.
    public static func rocAUC(scores: [Float], positives: [Bool]) -> Double {
        precondition(scores.count == positives.count, "one label per score")
        // NaN has no rank (and breaks the sort's ordering).
        guard !scores.contains(where: \.isNaN) else { return .nan }
        let order = scores.indices.sorted { scores[$0] < scores[$1] }
        var rankSum = 0.0
        var start = 0
        while start < order.count {
            var end = start + 1
            while end < order.count && scores[order[end]] == scores[order[start]] { end += 1 }
            // Ranks start + 1 ... end share their mean.
            let meanRank = Double(start + 1 + end) / 2
            for index in order[start..<end] where positives[index] { rankSum += meanRank }
            start = end
        }
        let positiveCount = Double(positives.filter { $0 }.count)
        let negativeCount = Double(positives.count) - positiveCount
        guard positiveCount > 0, negativeCount > 0 else { return .nan }
        return (rankSum - positiveCount * (positiveCount + 1) / 2) / (positiveCount * negativeCount)
    }
}
