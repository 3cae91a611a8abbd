import Recur

/// The pictures of a `recur train` run: learning curves by epoch, and (with --gradient-flow)
/// ‖dL/dh_t‖ against t for every recurrent layer-direction at several points in training.
final class TrainingPlots: @unchecked Sendable {
    /// The recorded gradient flows, by training step.
    private(set) var flows: [(step: Int, flows: [GradientFlow])] = []

    func record(step: Int, flows: [GradientFlow]) {
        self.flows.append((step, flows))
    }

    /// One line per recorded step: how much gradient survives from the loss end to the far end.
    static func summary(step: Int, flows: [GradientFlow]) -> String {
        let parts = flows.map { flow in
            let ratio = flow.endToEndRatio.map { scientific($0) } ?? "n/a"
            let rate = flow.decayRate().map { fixed($0, 4) } ?? "n/a"
            return "\(flow.name) far/near \(ratio), per-step factor \(rate)"
        }
        return "gradient flow at step \(step): " + parts.joined(separator: "; ")
    }

    /// `curves.svg`: training and validation loss, and the task's other metrics, by epoch.
    static func writeCurves(_ history: [EpochRecord], to path: String) throws {
        guard !history.isEmpty else { return }
        let names = Set(history.flatMap { $0.metrics.keys }).map { $0.hasPrefix("val_") ? String($0.dropFirst(4)) : $0 }
        var charts: [SVGLineChart] = []
        for metric in Set(names).sorted(by: { ($0 == "loss" ? "" : $0) < ($1 == "loss" ? "" : $1) }) {
            var chart = SVGLineChart(title: metric, xLabel: "epoch", yLabel: metric,
                                     logScaleY: metric == "loss" || metric == "perplexity", width: 480, height: 320)
            for (label, key) in [("training", metric), ("validation", "val_" + metric)] {
                let points = history.compactMap { record in record.metrics[key].map { (Double(record.epoch), $0) } }
                if !points.isEmpty { chart.addSeries(name: label, points: points) }
            }
            charts.append(chart)
        }
        try SVGChartGrid(title: "learning curves", columns: min(charts.count, 3), charts: charts).write(to: path)
    }

    /// `gradient_flow.svg`: one chart per layer-direction, one line per recorded step.
    func writeGradientFlow(to path: String) throws {
        guard let names = flows.first?.flows.map(\.name) else { return }
        var charts: [SVGLineChart] = []
        for name in names {
            var chart = SVGLineChart(title: name, xLabel: "time step t", yLabel: "‖dL/dh_t‖ (log)", logScaleY: true,
                                     width: 520, height: 340)
            for snapshot in flows {
                guard let flow = snapshot.flows.first(where: { $0.name == name }) else { continue }
                chart.addSeries(name: "step \(snapshot.step)",
                                points: flow.norms.enumerated().map { (Double($0), Double($1)) })
            }
            charts.append(chart)
        }
        try SVGChartGrid(title: "gradient flow", columns: min(charts.count, 2), charts: charts).write(to: path)
    }
}
