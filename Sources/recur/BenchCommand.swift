import ArgumentParser
import Recur

/// `recur bench`: times recurrent layers (and GEMM) on a device.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Time simple RNN, LSTM and GRU layers and GEMM on a device.",
        discussion: """
            Without sizes, runs the default suite: every cell at (B, T, I, H) = \
            (32, 400, 32, 32), (32, 100, 128, 128), (64, 50, 256, 256), (64, 100, 512, 512), \
            (128, 50, 1024, 1024), (4, 256, 1024, 1024); the last three only on GPUs unless --all. \
            With --batch, --steps, --input and --hidden, times that configuration instead. \
            GFLOP/s count 2 T B G (I + H) per layer-direction for a forward pass, 3x that with backward. \
            OpenCL times come from profiling events; CPU times from the monotonic clock. \
            On OpenCL each row also counts what one run enqueued (kernel launches, CLBlast calls, \
            buffer fills) and how often the host waited for the device.
            """
    )

    @OptionGroup var options: DeviceOptions

    @Option(help: "Cells to time: \(RecurrentCell.names.joined(separator: ", ")) (repeatable).")
    var cell: [String] = ["rnn_tanh", "lstm", "gru"]

    @Option(help: "Batch size B.") var batch: Int?
    @Option(help: "Time steps T.") var steps: Int?
    @Option(help: "Input features I.") var input: Int?
    @Option(help: "Hidden units H.") var hidden: Int?
    @Option(help: "Stacked layers.") var layers = 1
    @Flag(help: "Bidirectional layers.") var bidirectional = false
    @Option(help: "Recurrent dropout probability (training passes).") var recurrentDropout: Float = 0
    @Option(help: "Project h to P < H features (PyTorch's proj_size; --cell lstm only); 0 for none.")
    var projection = 0

    @Option(help: "Passes: forward, forward+backward, train-step (repeatable).")
    var pass: [String] = BenchmarkPass.allCases.map(\.rawValue)

    @Option(help: "A fixed model instead of the layer suite: imdb (Embedding(5000, 32) -> LSTM(32, dropout 0.2, recurrent dropout 0.2) -> Dense(1), B=32, T=400, one training step).")
    var model: String?

    @Flag(help: "Include the large suite shapes on CPU devices too.") var all = false
    @Option(help: "Untimed runs before timing.") var warmup = 2
    @Option(help: "Timed runs; the median is reported.") var repetitions = 10
    @Option(help: "GEMM sizes n (n x n x n) to sweep; 0 for none.") var gemm: [Int] = [256, 512, 1024]
    @Flag(help: "One JSON object per measurement instead of a table.") var json = false
    @Flag(help: "Only the GEMM sweep, no recurrent layers.") var gemmOnly = false
    @Flag(help: "Only the attention ops (dot and additive scores, every --pass but train-step) at B = 64, Ty = Tx = 20, D = Dv = 256, or at --batch, --steps (Ty = Tx) and --hidden (D = Dv).")
    var attention = false

    func validate() throws {
        let sizes = [batch, steps, input, hidden]
        if !attention, sizes.contains(where: { $0 != nil }) && sizes.contains(where: { $0 == nil }) {
            throw ValidationError("give all of --batch, --steps, --input and --hidden, or none")
        }
        if sizes.contains(where: { ($0 ?? 1) < 1 }) || layers < 1 || repetitions < 1 || warmup < 0 {
            throw ValidationError("sizes, --layers and --repetitions must be positive")
        }
        if !(recurrentDropout >= 0 && recurrentDropout < 1) {
            throw ValidationError("--recurrent-dropout must lie in [0, 1)")
        }
        // Names are checked here too, so a typo fails before a device is opened or anything runs.
        for name in cell { _ = try projected(try Self.parseCell(name)) }
        for name in pass where BenchmarkPass(rawValue: name) == nil {
            throw ValidationError("unknown pass '\(name)': forward, forward+backward or train-step")
        }
        if let model, model != "imdb" { throw ValidationError("unknown model '\(model)': imdb") }
        if gemm.contains(where: { $0 < 0 }) { throw ValidationError("--gemm sizes must be 0 (none) or positive") }
    }

    func run() throws {
        let backend = try options.makeBackend()
        let cells = try cell.map { try projected(try Self.parseCell($0)) }
        let passes = try pass.map { name in
            guard let parsed = BenchmarkPass(rawValue: name) else {
                throw ValidationError("unknown pass '\(name)': forward, forward+backward or train-step")
            }
            return parsed
        }
        let benchmark = Benchmark(backend: backend, warmup: warmup, repetitions: repetitions)
        let configurations = try gemmOnly || model != nil || attention ? [] : configurations(cells, backend: backend)
        try checkMemory(configurations, passes: passes, backend: backend)
        if !json {
            print("device: \(backend.kind.rawValue) '\(backend.deviceName)', median of \(repetitions) after \(warmup) warm-up runs"
                  + (backend.kind == .cpu ? ", OpenBLAS kernels \(BLASCoreType.current)" : ""))
            print(Self.header)
        }
        if attention {
            for score in AttentionScore.allCases {
                for pass in passes where pass != .trainStep {
                    emit(try benchmark.measureAttention(
                        score: score, batch: batch ?? 64, targetSteps: steps ?? 20, sourceSteps: steps ?? 20,
                        features: hidden ?? 256, valueFeatures: hidden ?? 256, pass: pass))
                }
            }
            return
        }
        if let model {
            guard model == "imdb" else { throw ValidationError("unknown model '\(model)': imdb") }
            emit(try benchmark.measureIMDBRecipe())
            return
        }
        let openCL = backend as? OpenCLBackend
        for configuration in configurations {
            for pass in passes {
                let before = openCL?.persistentScanStatistics
                var measurement = try benchmark.measure(configuration, pass: pass)
                if let before, let after = openCL?.persistentScanStatistics {
                    measurement.persistentScans = after.persistentScans - before.persistentScans
                }
                emit(measurement)
            }
        }
        for n in gemm where n > 0 {
            emit(try benchmark.measureGEMM(size: n))
        }
    }

    /// Refuses, before anything runs, every measurement the device or the host has too little
    /// memory for (each runs alone: what one allocates is released before the next).
    private func checkMemory(_ configurations: [BenchmarkConfiguration], passes: [BenchmarkPass],
                             backend: any Backend) throws {
        let availability = MemoryAvailability(backend)
        for configuration in configurations {
            for pass in passes {
                try configuration.memoryEstimate(pass).check(
                    against: availability, operation: "recur bench: \(configuration) \(pass.rawValue)",
                    advice: "lower --batch, --steps, --input, --hidden or --layers")
            }
        }
        for n in gemm where n > 0 {
            try MemoryEstimate.gemm(size: n).check(against: availability, operation: "recur bench: gemm \(n)",
                                                   advice: "lower --gemm")
        }
    }

    private func configurations(_ cells: [RecurrentCell], backend: any Backend) throws -> [BenchmarkConfiguration] {
        let make = { (cell: RecurrentCell, b: Int, t: Int, i: Int, h: Int) in
            BenchmarkConfiguration(cell: cell, batch: b, steps: t, inputSize: i, hiddenSize: h, layers: layers,
                                   bidirectional: bidirectional, recurrentDropout: recurrentDropout,
                                   projectionSize: cell.projectsHiddenState ? projection : nil)
        }
        let configurations: [BenchmarkConfiguration]
        if let batch, let steps, let input, let hidden {
            configurations = cells.map { make($0, batch, steps, input, hidden) }
        } else {
            let isGPU = (backend as? OpenCLBackend)?.device.type == .gpu
            let shapes = all || isGPU ? BenchmarkConfiguration.suiteShapes
                : Array(BenchmarkConfiguration.suiteShapes.prefix(3))
            configurations = shapes.flatMap { shape in
                cells.map { make($0, shape.batch, shape.steps, shape.input, shape.hidden) }
            }
        }
        // Before anything runs: every configuration's H must exceed P.
        for configuration in configurations where (configuration.projectionSize ?? 0) >= configuration.hiddenSize {
            throw ValidationError("--projection \(projection) must be below H = \(configuration.hiddenSize) "
                + "(\(configuration)); give a larger --hidden")
        }
        return configurations
    }

    /// The cell that runs `cell` with `--projection`: itself without one. Without `--hidden` the
    /// suite's sizes vary, so P is checked against each H with the configurations.
    private func projected(_ cell: RecurrentCell) throws -> RecurrentCell {
        do {
            return try cell.projected(to: projection, hiddenSize: hidden ?? (projection + 1), operation: "recur bench")
        } catch let error as RecurError {
            throw ValidationError("\(error)")
        }
    }

    static func parseCell(_ name: String) throws -> RecurrentCell {
        guard let cell = RecurrentCell(named: name) else {
            throw ValidationError("unknown cell '\(name)': \(RecurrentCell.names.joined(separator: ", "))")
        }
        return cell
    }

    static let header = padded("measurement", 52) + padded("pass", 18) + padded("median ms", 11)
        + padded("min ms", 10) + padded("max ms", 10) + padded("GFLOP/s", 9) + "peak memory"

    private func emit(_ m: BenchmarkMeasurement) {
        if json {
            print(Self.json(m))
        } else {
            print(padded(m.name, 52) + padded(m.pass, 18) + padded(fixed(m.medianMilliseconds, 3), 11)
                  + padded(fixed(m.minimumMilliseconds, 3), 10) + padded(fixed(m.maximumMilliseconds, 3), 10)
                  + padded(fixed(m.gigaflopsPerSecond, 1), 9) + bytes(m.peakBytes)
                  + (m.persistentScans ?? 0 > 0 ? "  (persistent scans)" : ""))
            if let commands = m.commandsPerRun {
                print("    per \(m.pass == BenchmarkPass.trainStep.rawValue ? "step" : "run"): "
                      + "\(commands.kernelLaunches) kernel launches + \(commands.gemmCalls) CLBlast calls"
                      + " + \(commands.fills) fills, \(commands.hostSynchronizations) host synchronisations")
            }
            if let memory = m.memory {
                print("    peak = weights \(bytes(memory.weights)) + gradients \(bytes(memory.gradients))"
                      + " + optimizer state \(bytes(memory.optimizerState)) + batch and targets \(bytes(memory.data))"
                      + " + activations kept for BPTT \(bytes(memory.activations))"
                      + " + backward workspace \(bytes(memory.workspace))"
                      + (m.residentGrowthBytes.map { "; process resident memory grew \(bytes($0))" } ?? ""))
            }
        }
    }

    /// One measurement as a JSON object on one line.
    static func json(_ m: BenchmarkMeasurement) -> String {
        var fields: [(String, String)] = []
        if let c = m.configuration {
            fields += [
                ("cell", quoted(c.cell.name)), ("B", "\(c.batch)"), ("T", "\(c.steps)"), ("I", "\(c.inputSize)"),
                ("H", "\(c.hiddenSize)"), ("layers", "\(c.layers)"), ("bidirectional", "\(c.bidirectional)"),
                ("recurrent_dropout", "\(c.recurrentDropout)"),
            ]
            if let projection = c.projectionSize { fields.append(("P", "\(projection)")) }
        } else {
            fields.append(("name", quoted(m.name)))
        }
        fields += [
            ("pass", quoted(m.pass)), ("median_ms", "\(m.medianMilliseconds)"), ("min_ms", "\(m.minimumMilliseconds)"),
            ("max_ms", "\(m.maximumMilliseconds)"), ("gflops", "\(m.gigaflopsPerSecond)"),
            ("peak_bytes", "\(m.peakBytes)"),
        ]
        if let growth = m.residentGrowthBytes { fields.append(("resident_growth_bytes", "\(growth)")) }
        if let scans = m.persistentScans { fields.append(("persistent_scans", "\(scans)")) }
        if let commands = m.commandsPerRun {
            fields += [
                ("kernel_launches", "\(commands.kernelLaunches)"), ("gemm_calls", "\(commands.gemmCalls)"),
                ("fills", "\(commands.fills)"), ("host_synchronizations", "\(commands.hostSynchronizations)"),
            ]
        }
        if let memory = m.memory {
            fields += [
                ("weight_bytes", "\(memory.weights)"), ("gradient_bytes", "\(memory.gradients)"),
                ("optimizer_state_bytes", "\(memory.optimizerState)"), ("data_bytes", "\(memory.data)"),
                ("activation_bytes", "\(memory.activations)"), ("workspace_bytes", "\(memory.workspace)"),
            ]
        }
        fields.append(("device", quoted(m.device)))
        return "{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}"
    }

    /// `text` as a JSON string literal.
    static func quoted(_ text: String) -> String {
        JSONString.quoted(text)
    }
}
