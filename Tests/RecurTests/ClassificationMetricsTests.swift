import Foundation
import Testing
@testable import Recur

// Classification metrics (precision, recall, F1 per class and macro, ROC AUC with ties) against
// hand-computed values, and monitoring of the higher-is-better metrics.

private func close(_ a: Double?, _ b: Double, tolerance: Double = 1e-9) -> Bool {
    guard let a else { return false }
    return abs(a - b) <= tolerance * max(1, abs(b))
}

@Suite("Classification metrics")
struct ClassificationMetricsTests {
    @Test func precisionRecallAndF1PerClassAndMacro() {
        // Targets 0 0 1 2 2 2, predictions 0 1 1 2 2 0, out of 4 classes (3 never seen).
        // Class 0: P 1/2, R 1/2, F1 1/2; class 1: P 1/2, R 1, F1 2/3; class 2: P 1, R 2/3, F1 4/5.
        let predictions = [0, 1, 1, 2, 2, 0]
        let outputs = predictions.flatMap { p in (0..<4).map { Float($0 == p ? 1 : 0) } }
        var sums = MetricSums()
        sums.add(loss: 0.5, outputs: outputs, targets: .classes([0, 0, 1, 2, 2, 2]), task: .classify)
        let scores = sums.classScores
        #expect(scores.map(\.precision) == [0.5, 0.5, 1, 0] && scores.map(\.recall) == [0.5, 1, 2.0 / 3, 0])
        #expect(close(scores[1].f1, 2.0 / 3) && close(scores[2].f1, 0.8) && scores[3].f1 == 0)
        let metrics = sums.values(for: .classify)
        // Macro over the three classes present: the absent fourth does not pull it down.
        #expect(close(metrics["precision"], 2.0 / 3) && close(metrics["recall"], 13.0 / 18))
        #expect(close(metrics["f1"], 59.0 / 90) && close(metrics["accuracy"], 4.0 / 6))
        let perClass = sums.perClassValues(names: ["a", "b", "c"])
        #expect(perClass["precision_a"] == 0.5 && perClass["recall_b"] == 1 && perClass["f1_3"] == 0)
        #expect(perClass.count == 12)
    }

    @Test func binaryConfusionFromOneLogit() throws {
        // Targets 1 1 0 0 1, logits above 0 for 1: predictions 1 0 0 1 1.
        var sums = MetricSums()
        sums.add(loss: 0.1, outputs: [2, -1, -3, 0.5, 1], targets: .values([1, 1, 0, 0, 1], outputs: 1), task: .classify)
        #expect(sums.confusion == [1, 1, 1, 2])
        let scores = sums.classScores
        #expect(close(scores[1].precision, 2.0 / 3) && close(scores[1].recall, 2.0 / 3) && scores[0].f1 == 0.5)
        #expect(close(sums.values(for: .classify)["f1"], (0.5 + 2.0 / 3) / 2))
        // Sums reduce across processes with their confusion matrices, one having none yet.
        var merged = MetricSums()
        merged.merge(sums)
        merged.merge(sums)
        #expect(merged.confusion == [2, 2, 2, 4] && merged.weight == 10)
    }

    @Test func rocAUCByRanksWithTies() {
        #expect(MetricSums.rocAUC(scores: [0.1, 0.4, 0.35, 0.8], positives: [false, false, true, true]) == 0.75)
        // Ranks 1, 2.5, 2.5, 4; positives 2.5 + 4 = 6.5; (6.5 − 3) / 4.
        #expect(MetricSums.rocAUC(scores: [1, 2, 2, 3], positives: [false, true, false, true]) == 0.875)
        #expect(MetricSums.rocAUC(scores: [5, 5, 5, 5], positives: [false, true, false, true]) == 0.5)
        #expect(MetricSums.rocAUC(scores: [1, 2], positives: [true, true]).isNaN)
        #expect(MetricSums.rocAUC(scores: [1, .nan], positives: [true, false]).isNaN)
    }

    @Test func sumsFromACheckpointWithoutAConfusionMatrixDecode() throws {
        let json = #"{"weightedLoss":1,"weight":2,"correct":1,"predicted":2,"absoluteError":0,"values":0}"#
        let sums = try RecurJSON.decode(MetricSums.self, from: json, source: "test", what: "sums")
        #expect(sums.confusion.isEmpty && sums.weight == 2)
        var counted = sums
        counted.add(loss: 1, outputs: [1], targets: .values([1], outputs: 1), task: .classify)
        #expect(try RecurJSON.decode(MetricSums.self, from: try RecurJSON.string(counted), source: "test",
                                     what: "sums") == counted)
    }

    // MARK: Monitoring

    @Test func higherIsBetterMetricsAreMonitored() throws {
        for name in ["f1", "val_f1", "val_precision", "recall", "val_auc", "test_precision_pos", "baseline_accuracy"] {
            #expect(MetricSums.higherIsBetter(name), "\(name)")
        }
        for name in ["baseline_loss", "baseline_mae_drift", "test_loss"] {
            #expect(!MetricSums.higherIsBetter(name), "\(name)")
        }
        let binary = ModelSpecification(
            task: .classify, vocabularySize: 10, embeddingSize: 4, cell: .gru, hiddenSize: 6, outputSize: 1, seed: 3)
        let multi = ModelSpecification(
            task: .classify, vocabularySize: 10, embeddingSize: 4, cell: .gru, hiddenSize: 6, outputSize: 3, seed: 3)
        for monitor in ["f1", "val_f1", "val_precision", "val_recall", "val_auc"] {
            try Trainer.checkMonitor(monitor, specification: binary)
        }
        // AUC needs every example's score: validation only, and two classes only.
        for (monitor, specification) in [("auc", binary), ("val_auc", multi)] {
            #expect(throws: RecurError.self) { try Trainer.checkMonitor(monitor, specification: specification) }
        }

        // Sequences whose label is whether they hold id 2: val_f1's best epoch is its highest.
        let (training, validation) = (try markerExamples(count: 48, vocabulary: 10, steps: 4, seed: 8),
                                      try markerExamples(count: 24, vocabulary: 10, steps: 4, seed: 9))
        let trainer = try Trainer(
            specification: binary,
            configuration: TrainingConfiguration(epochs: 4, batchSize: 8, optimizer: .adam(learningRate: 0.03), seed: 4,
                                                 monitor: "val_f1"),
            backend: TestBackends.cpu)
        let history = try trainer.fit(training: training, validation: validation)
        let f1s = history.map { $0.metrics["val_f1"] ?? .nan }
        #expect(trainer.progress.best == f1s.max() && f1s.allSatisfy(\.isFinite), "\(f1s)")
        #expect(trainer.progress.bestEpoch == f1s.firstIndex(of: f1s.max()!)! + 1)
        #expect(history.allSatisfy { $0.metrics["val_auc"] != nil && $0.metrics["auc"] == nil })

        // Trainer.evaluate's AUC is that of the predicted logits.
        let logits = try trainer.predict(validation)
        let auc = MetricSums.rocAUC(scores: logits, positives: validation.labels.map { $0 == 1 })
        #expect(try trainer.evaluate(validation)["auc"] == auc)
    }
}
