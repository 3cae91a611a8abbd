#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ArgumentParser
import Recur

/// `recur demo`: vanishing and exploding gradients made visible on the adding problem.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Train a simple RNN, an LSTM and a GRU on the adding problem and plot why plain RNNs fail.",
        discussion: """
            Trains each cell at each sequence length T for a fixed number of steps, with and \
            without global-norm gradient clipping, plus a simple RNN whose recurrent weights start \
            with spectral radius --explode-radius (the exploding case). Records the loss, the global \
            gradient norm of every step, and the gradient flow: the norm of dL/dh_t for every t at a \
            few points in training. A run is solved when its held-out MSE beats the trivial baseline \
            (always predicting 1: MSE 1/6) by --solved-factor. Writes SVG plots and summary.md into \
            --output and prints a summary table. Everything is generated from --seed. Without \
            --device or RECUR_DEVICE it runs on the first OpenCL GPU (or accelerator), else on the \
            CPU backend, as every command does.
            """
    )

    @OptionGroup var options: DeviceOptions

    @Option(help: "Folder for the plots and summary.md (created if missing).")
    var output = "demo-output"

    @Option(help: "Sequence lengths T, comma-separated.")
    var lengths = "50,100,200"

    @Option(help: "Training steps per run (one batch each); default 1000, 150 with --quick.")
    var steps: Int?

    @Option(help: "Hidden units H.") var hidden = 32
    @Option(help: "Batch size B.") var batch = 32
    @Option(help: "Adam learning rate.") var learningRate: Float = 1e-2
    @Option(help: "Global gradient norm the clipped runs clip to.") var clipNorm: Float = 1
    @Option(help: "Spectral radius of W_hh in the exploding run.") var explodeRadius: Float = 3
    @Option(help: "Solved: held-out MSE below baseline / this factor.") var solvedFactor: Double = 10
    @Option(help: "Seed of the parameters and the data.") var seed: UInt64 = 1

    @Flag(help: "A fast, smaller run: T = 20, 50 and 150 training steps unless given.")
    var quick = false

    func validate() throws {
        if (steps ?? 1) < 1 || hidden < 1 || batch < 1 { throw ValidationError("--steps, --hidden and --batch must be positive") }
        if !(clipNorm > 0) || !(explodeRadius > 0) || !(learningRate > 0) {
            throw ValidationError("--clip-norm, --explode-radius and --learning-rate must be positive")
        }
        _ = try parsedLengths()
    }

    private func parsedLengths() throws -> [Int] {
        if quick && lengths == "50,100,200" { return [20, 50] }
        let values = lengths.split(separator: ",").map { Int($0.trimmingPrefix(" ")) }
        guard !values.isEmpty, values.allSatisfy({ ($0 ?? 0) >= 2 }) else {
            throw ValidationError("--lengths must be comma-separated integers of at least 2, got '\(lengths)'")
        }
        return values.map { $0! }
    }

    /// One run of the grid and how to show it.
    private struct Run {
        var label: String
        var configuration: AddingProblemExperiment.Configuration
        var result: AddingProblemExperiment.Result?
    }

    static let cells: [(RecurrentCell, String)] = [(.rnnTanh, "RNN"), (.lstm, "LSTM"), (.gru, "GRU")]

    func run() throws {
        let backend = try options.makeBackend()
        let lengths = try parsedLengths()
        let trainingSteps = steps ?? (quick ? 150 : 1000)

        var runs: [Run] = []
        for length in lengths {
            for (cell, name) in Self.cells {
                for clip in [nil, clipNorm] {
                    let configuration = AddingProblemExperiment.Configuration(
                        cell: cell, steps: length, hiddenSize: hidden, batchSize: batch, trainingSteps: trainingSteps,
                        learningRate: learningRate, clipNorm: clip, seed: seed, solvedFactor: solvedFactor)
                    runs.append(Run(label: name + (clip == nil ? "" : " clip"), configuration: configuration))
                }
            }
        }
        // The exploding case: orthogonal W_hh scaled to spectral radius explodeRadius, at the shortest T.
        let explodingLength = lengths.min()!
        for clip in [nil, clipNorm] {
            let configuration = AddingProblemExperiment.Configuration(
                cell: .rnnTanh, steps: explodingLength, hiddenSize: hidden, batchSize: batch,
                trainingSteps: trainingSteps, learningRate: learningRate, clipNorm: clip, initialization: .keras,
                recurrentScale: explodeRadius, seed: seed, solvedFactor: solvedFactor)
            runs.append(Run(label: "RNN ρ=\(fixed(Double(explodeRadius), 1))" + (clip == nil ? "" : " clip"),
                            configuration: configuration))
        }

        // Every run is refused before the first starts when one needs more memory than there is
        // (each releases its buffers before the next).
        let availability = MemoryAvailability(backend)
        for run in runs {
            try run.configuration.memoryEstimate.check(
                against: availability, operation: "recur demo: \(run.label) T=\(run.configuration.steps)",
                advice: "lower --lengths, --hidden or --batch")
        }
        try ReportFile.createDirectory(output)

        print("recur demo: the adding problem (Hochreiter & Schmidhuber 1997) on \(backend.kind.rawValue) "
              + "'\(backend.deviceName)'")
        print("  \(runs.count) runs: T = \(lengths.map(String.init).joined(separator: ", ")), "
              + "H = \(hidden), B = \(batch), \(trainingSteps) steps of Adam (lr \(learningRate)), "
              + "clipping at global norm \(clipNorm) or none; seed \(seed)")
        print("  baseline (always predict 1): MSE 1/6 = 0.167; solved: held-out MSE < baseline / "
              + "\(fixed(solvedFactor, 0)) = \(fixed(AddingProblem.baselineMeanSquaredError / solvedFactor, 4))\n")

        let clock = ContinuousClock()
        let start = clock.now
        let live = isatty(1) != 0
        for index in runs.indices {
            let prefix = "[\(index + 1)/\(runs.count)] " + padded(runs[index].label, 17)
                + padded("T=\(runs[index].configuration.steps)", 7)
            var recent: [Float] = []
            let result = try AddingProblemExperiment.run(runs[index].configuration, on: backend) { step, loss, _ in
                recent.append(loss)
                guard live, step % 10 == 0 else { return }
                let line = prefix + "step \(step)/\(trainingSteps)  loss \(fixed(Double(loss), 4))  "
                    + Sparkline.render(recent, width: 24, logScale: true)
                print("\r" + line + "\u{1B}[K", terminator: "")
                fflush(nil)  // every output stream: the live line has no newline to flush it
            }
            runs[index].result = result
            if live { print("\r\u{1B}[K", terminator: "") }
            print(prefix + Self.outcome(result))
            for event in result.events { print("      " + event) }
            fflush(nil)  // one line per run also when the output is a pipe or a file
        }
        let elapsed = clock.now - start
        let seconds = elapsed.inSeconds

        print("\n" + Self.summaryTable(runs))
        let files = try writePlots(runs, lengths: lengths, explodingLength: explodingLength)
        try writeSummary(runs, files: files, seconds: seconds, backend: backend, trainingSteps: trainingSteps)
        print("\nwrote \(files.count + 1) files to \(output)/: "
              + (files.map(\.file) + ["summary.md"]).joined(separator: ", "))
        print("total \(fixed(seconds, 1)) s")
    }

    // MARK: Terminal output

    /// The one-line result of a run.
    private static func outcome(_ result: AddingProblemExperiment.Result) -> String {
        let mse = result.evaluationMeanSquaredError.map { "MSE \(fixed($0, 4))" } ?? "diverged"
        let ratio = result.baselineRatio.map { " (\(fixed($0, 1))x baseline)" } ?? ""
        let verdict = result.solved ? "  solved" : ""
        return mse + ratio + verdict + "  " + Sparkline.render(result.losses, width: 24, logScale: true)
            + "  \(fixed(result.seconds, 1)) s"
    }

    /// Model, T, clipping, MSE, baseline ratio, solved, gradient ratio and loss sparkline per run.
    private static func summaryTable(_ runs: [Run]) -> String {
        var lines = [padded("model", 16) + padded("T", 6) + padded("clip", 6) + padded("final MSE", 11)
                     + padded("x baseline", 12) + padded("solved", 8) + padded("|dL/dh_0|/|dL/dh_T-1|", 23)
                     + "loss (log)"]
        for run in runs {
            guard let result = run.result else { continue }
            let c = run.configuration
            let ratio = result.flows.last?.flow.endToEndRatio.map(scientific) ?? "-"
            lines.append(
                padded(run.label.replacingOccurrences(" clip", ""), 16) + padded("\(c.steps)", 6)
                + padded(c.clipNorm == nil ? "no" : "yes", 6)
                + padded(result.evaluationMeanSquaredError.map { fixed($0, 4) } ?? "diverged", 11)
                + padded(result.baselineRatio.map { fixed($0, 1) } ?? "-", 12)
                + padded(result.solved ? "yes" : "no", 8) + padded(ratio, 23)
                + Sparkline.render(result.losses, width: 30, logScale: true))
        }
        return lines.joined(separator: "\n")
    }

    // MARK: Files

    private struct PlotFile {
        var file: String
        var caption: String
    }

    private func writePlots(_ runs: [Run], lengths: [Int], explodingLength: Int) throws -> [PlotFile] {
        var files: [PlotFile] = []
        let baseline = AddingProblem.baselineMeanSquaredError
        let gridColumns = min(lengths.count, 3)
        let palette = SVGLineChart.palette

        // Loss curves: one panel per T, one line per model, dashed when clipped.
        var lossGrid = SVGChartGrid(title: "Adding problem: training loss (MSE) per step", columns: gridColumns)
        for length in lengths {
            var chart = SVGLineChart(title: "T = \(length)", xLabel: "training step", yLabel: "MSE (log)",
                                     logScaleY: true, width: 520, height: 340)
            for run in runs where run.configuration.steps == length && run.configuration.recurrentScale == nil {
                guard let result = run.result else { continue }
                let cellIndex = Self.cells.firstIndex { $0.0 == run.configuration.cell } ?? 0
                chart.addSeries(name: run.label, points: Self.smoothed(result.losses),
                                color: palette[cellIndex], dashed: run.configuration.clipNorm != nil)
            }
            chart.addReferenceLine(y: baseline, label: "baseline 1/6")
            chart.addReferenceLine(y: baseline / solvedFactor, label: "solved")
            lossGrid.charts.append(chart)
        }
        try lossGrid.write(to: output + "/loss.svg")
        files.append(PlotFile(file: "loss.svg", caption: "Training loss per step (moving average of 10), one panel "
                              + "per sequence length; dashed lines are the runs with gradient clipping."))

        // Gradient flow: one file per cell, one panel per T, one line per training point.
        for (cell, name) in Self.cells {
            var grid = SVGChartGrid(title: "\(name): gradient flow ‖dL/dh_t‖ over time steps (no clipping)",
                                    columns: gridColumns)
            for length in lengths {
                guard let run = runs.first(where: {
                    $0.configuration.cell == cell && $0.configuration.steps == length
                        && $0.configuration.clipNorm == nil && $0.configuration.recurrentScale == nil
                }), let result = run.result else { continue }
                grid.charts.append(Self.flowChart(result, title: "T = \(length)"))
            }
            let file = "gradient_flow_\(name.lowercased()).svg"
            try grid.write(to: output + "/" + file)
            files.append(PlotFile(file: file, caption: "\(name): the norm of dL/dh_t at every time step t (log "
                                  + "scale) at several points in training; the loss reads the last step."))
        }

        // The exploding case: gradient flow and gradient norms, with and without clipping.
        let exploding = runs.filter { $0.configuration.recurrentScale != nil }
        var explodingGrid = SVGChartGrid(
            title: "RNN with W_hh of spectral radius \(fixed(Double(explodeRadius), 1)), T = \(explodingLength)",
            columns: 3)
        var norms = SVGLineChart(title: "global gradient norm per step", xLabel: "training step",
                                 yLabel: "‖g‖ before clipping (log)", logScaleY: true, width: 520, height: 340)
        var losses = SVGLineChart(title: "training loss", xLabel: "training step", yLabel: "MSE (log)",
                                  logScaleY: true, width: 520, height: 340)
        for (index, run) in exploding.enumerated() {
            guard let result = run.result else { continue }
            let color = palette[index + 3]
            norms.addSeries(name: run.label, points: result.gradientNorms.enumerated().map { (Double($0 + 1), Double($1)) },
                            color: color)
            losses.addSeries(name: run.label, points: Self.smoothed(result.losses), color: color)
        }
        losses.addReferenceLine(y: baseline, label: "baseline 1/6")
        explodingGrid.charts = [norms, losses]
        if let first = exploding.first?.result {
            explodingGrid.charts.append(Self.flowChart(first, title: "gradient flow, no clipping"))
        }
        try explodingGrid.write(to: output + "/exploding.svg")
        files.append(PlotFile(file: "exploding.svg", caption: "A simple RNN started with recurrent weights of "
                              + "spectral radius \(fixed(Double(explodeRadius), 1)): gradient norms and loss with and "
                              + "without clipping, and how dL/dh_t grows with distance from the loss."))
        return files
    }

    /// ‖dL/dh_t‖ against t, one line per recorded training step.
    private static func flowChart(_ result: AddingProblemExperiment.Result, title: String) -> SVGLineChart {
        var chart = SVGLineChart(title: title, xLabel: "time step t", yLabel: "‖dL/dh_t‖ (log)", logScaleY: true,
                                 width: 520, height: 340)
        for snapshot in result.flows {
            chart.addSeries(name: "step \(snapshot.step)",
                            points: snapshot.flow.norms.enumerated().map { (Double($0), Double($1)) })
        }
        return chart
    }

    /// (step, moving average of the last 10 losses), 1-based steps; non-finite losses stay as
    /// they are so the chart shows the gap.
    private static func smoothed(_ losses: [Float]) -> [(x: Double, y: Double)] {
        var points: [(x: Double, y: Double)] = []
        var window: [Double] = []
        for (index, loss) in losses.enumerated() {
            window.append(Double(loss))
            if window.count > 10 { window.removeFirst() }
            points.append((Double(index + 1), window.reduce(0, +) / Double(window.count)))
        }
        return points
    }

    private func writeSummary(_ runs: [Run], files: [PlotFile], seconds: Double, backend: any Backend,
                              trainingSteps: Int) throws {
        var text = "# recur demo: vanishing and exploding gradients on the adding problem\n\n"
        text += "Device: \(backend.kind.rawValue) '\(backend.deviceName)'. H = \(hidden), B = \(batch), "
            + "\(trainingSteps) training steps of Adam (learning rate \(learningRate)), clipping at global norm "
            + "\(clipNorm) or none, seed \(seed). Total time \(fixed(seconds, 1)) s.\n\n"
        text += "Baseline (always predict 1): MSE 1/6 ≈ 0.167. Solved: held-out MSE below baseline / "
            + "\(fixed(solvedFactor, 0)).\n\n"
        text += "| model | T | clipping | final MSE | × baseline | solved | ‖dL/dh_0‖ / ‖dL/dh_T-1‖ | seconds |\n"
        text += "|---|---|---|---|---|---|---|---|\n"
        for run in runs {
            guard let result = run.result else { continue }
            let c = run.configuration
            text += "| \(run.label.replacingOccurrences(" clip", "")) | \(c.steps) | "
                + "\(c.clipNorm.map { "\($0)" } ?? "none") | "
                + "\(result.evaluationMeanSquaredError.map { fixed($0, 4) } ?? "diverged") | "
                + "\(result.baselineRatio.map { fixed($0, 1) } ?? "–") | \(result.solved ? "yes" : "no") | "
                + "\(result.flows.last?.flow.endToEndRatio.map(scientific) ?? "–") | \(fixed(result.seconds, 1)) |\n"
        }
        let events = runs.flatMap { run in (run.result?.events ?? []).map { "- \(run.label), T = \(run.configuration.steps): \($0)" } }
        if !events.isEmpty {
            text += "\n## Events\n\n" + events.joined(separator: "\n") + "\n"
        }
        text += "\n## Plots\n\n"
        for file in files {
            text += "### \(file.file)\n\n\(file.caption)\n\n![\(file.file)](\(file.file))\n\n"
        }
        try ReportFile.write(text, to: output + "/summary.md")
    }
}

extension String {
    /// The string with every occurrence of `target` replaced by `replacement` (no Foundation).
    fileprivate func replacingOccurrences(_ target: String, _ replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var result = ""
        var rest = self[...]
        while let range = rest.firstRange(of: target) {
            result += rest[..<range.lowerBound] + replacement
            rest = rest[range.upperBound...]
        }
        return result + rest
    }
}
