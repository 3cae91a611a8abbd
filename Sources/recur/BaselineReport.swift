import Recur

/// The trivial baselines of a model's task on one split, as `recur train` and `recur evaluate`
/// report them: `baseline_*` fields, a text line, and a warning for each baseline the model
/// does not beat.
struct BaselineReport {
    /// "test", "validation" or "training".
    var split: String
    var baselines: [Baseline]

    init(trainer: Trainer, prepared: PreparedData, split: String, examples: any TrainingExamples,
         season: Int? = nil) {
        self.split = split
        baselines = Baseline.evaluate(
            task: trainer.specification.task, classCount: trainer.specification.outputSize,
            training: prepared.training, on: examples, scale: trainer.errorScale, season: season,
            targetNames: prepared.targetNames)
    }

    /// A forecaster's `mae` and `rmse` on `examples` in the series' units, and with several
    /// targets each one's `mae_<name>` and `rmse_<name>`, as its baselines are scored.
    static func forecastErrors(trainer: Trainer, prepared: PreparedData, on examples: any TrainingExamples)
        throws -> [String: Double] {
        ForecastErrors.of(try trainer.predict(examples), on: examples, targetNames: prepared.targetNames,
                          scale: trainer.errorScale)
    }

    /// `baseline_<metric>[_<which>]` of every baseline.
    var fields: [(String, JSONScalar)] {
        let all = baselines.reduce(into: [String: Double]()) { $0.merge($1.fields) { first, _ in first } }
        return all.keys.sorted().map { ($0, .number(all[$0]!)) }
    }

    /// `baselines on test: majority class accuracy 0.9000, loss 0.3251`.
    var line: String {
        "baselines on \(split): " + baselines.map { baseline in
            baseline.name + " " + baseline.metrics.keys.sorted()
                .map { "\($0) \(metricText(baseline.metrics[$0]!))" }.joined(separator: ", ")
        }.joined(separator: "; ")
    }

    /// One line for each baseline that `modelMetrics` (the model's, on the same split, without
    /// prefix) do not beat: on the compared metric, and on each target's (`mae_<name>`) where
    /// both report one.
    func warnings(modelMetrics: [String: Double]) -> [String] {
        baselines.flatMap { baseline in
            let compared = baseline.comparedMetric
            let metrics = [compared] + baseline.metrics.keys.filter { $0.hasPrefix(compared + "_") }.sorted()
            return metrics.compactMap { metric -> String? in
                var single = baseline
                single.comparedMetric = metric
                guard modelMetrics[metric] != nil || metric == compared, !single.isBeaten(by: modelMetrics) else {
                    return nil
                }
                let model = modelMetrics[metric].map(metricText) ?? "none"
                let value = baseline.metrics[metric].map(metricText) ?? "none"
                return "warning: the model does not beat the \(baseline.name) baseline on \(split) "
                    + "(\(metric) model \(model) vs baseline \(value))"
            }
        }
    }
}
