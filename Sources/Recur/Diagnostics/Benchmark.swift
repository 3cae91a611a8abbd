// Timings of recurrent layers and GEMM on one backend: what `recur bench` measures.
//
// Shape legend: T time steps, B batch, I input features, H hidden units, G = gates * H, P the
// width of h (the projection size with a projection, else H).

/// One recurrent configuration to time.
public struct BenchmarkConfiguration: Sendable, Hashable, CustomStringConvertible {
    public var cell: RecurrentCell
    public var batch: Int
    public var steps: Int
    public var inputSize: Int
    public var hiddenSize: Int
    public var layers: Int
    public var bidirectional: Bool
    public var recurrentDropout: Float
    /// P, the features of h with a projection (`lstm_projection`); nil for none.
    public var projectionSize: Int?

    /// A configuration.
    ///
    /// - Parameters:
    ///   - cell: the cell every layer-direction runs.
    ///   - batch: B.
    ///   - steps: T.
    ///   - inputSize: I.
    ///   - hiddenSize: H.
    ///   - layers: stacked layers.
    ///   - bidirectional: whether each layer also scans backwards.
    ///   - recurrentDropout: the recurrent dropout of training passes.
    ///   - projectionSize: P with a projection (the cell is then `lstm_projection`); nil for none.
    public init(cell: RecurrentCell, batch: Int, steps: Int, inputSize: Int, hiddenSize: Int, layers: Int = 1,
                bidirectional: Bool = false, recurrentDropout: Float = 0, projectionSize: Int? = nil) {
        self.cell = cell
        self.projectionSize = projectionSize
        self.batch = batch
        self.steps = steps
        self.inputSize = inputSize
        self.hiddenSize = hiddenSize
        self.layers = layers
        self.bidirectional = bidirectional
        self.recurrentDropout = recurrentDropout
    }

    /// The flops of the forward gate GEMMs, 2 T B G (I_k + P) summed over layers and directions:
    /// the input projection and the recurrent matmul of every step, and with a projection its
    /// 2 T B P H. Backward costs about twice that (data and weight gradients), so a training step
    /// counts 3x.
    public var forwardFlops: Double {
        let directions = bidirectional ? 2 : 1
        let gates = Double(cell.gateCount * hiddenSize)
        let state = projectionSize ?? hiddenSize
        let projection = projectionSize.map { 2 * Double(steps * batch) * Double($0 * hiddenSize) } ?? 0
        var total = 0.0
        for layer in 0..<layers {
            let layerInput = layer == 0 ? inputSize : directions * state
            total += (2 * Double(steps * batch) * gates * Double(layerInput + state) + projection) * Double(directions)
        }
        return total
    }

    /// What timing `pass` of this configuration allocates (a train-step adds a Dense(1) head and
    /// Adam's moments, small beside the stack's).
    public func memoryEstimate(_ pass: BenchmarkPass) -> MemoryEstimate {
        var estimate = MemoryEstimate.recurrentStack(
            cell: cell, inputSize: inputSize, hiddenSize: hiddenSize, projectionSize: projectionSize, layerCount: layers,
            bidirectional: bidirectional, batchSize: batch, steps: steps, pass: pass == .forward ? .inference : .training)
        if pass == .trainStep { estimate.optimizerState = MemoryEstimate.product(2, estimate.parameters) }
        return estimate
    }

    public var description: String {
        "\(cell) B=\(batch) T=\(steps) I=\(inputSize) H=\(hiddenSize)" + (projectionSize.map { " P=\($0)" } ?? "")
            + (layers > 1 ? " L=\(layers)" : "") + (bidirectional ? " bi" : "")
            + (recurrentDropout > 0 ? " rdrop=\(recurrentDropout)" : "")
    }

    /// The default suite's shapes (B, T, I, H), smallest first.
    public static let suiteShapes: [(batch: Int, steps: Int, input: Int, hidden: Int)] = [
        (32, 400, 32, 32), (32, 100, 128, 128), (64, 50, 256, 256),
        (64, 100, 512, 512), (128, 50, 1024, 1024), (4, 256, 1024, 1024),
    ]
}

/// What a timed pass covers.
public enum BenchmarkPass: String, Sendable, CaseIterable {
    /// The layer's inference forward pass over the whole sequence.
    case forward
    /// A training forward pass and the full backward pass (input, state and weight gradients).
    case forwardBackward = "forward+backward"
    /// A whole training step of a regression model: input [T, B, I] -> the recurrent stack (its
    /// final state) -> Dense(1), mean squared error, backward, Adam(1e-3).
    case trainStep = "train-step"

    /// Flops counted for the pass, in multiples of the forward gate flops.
    var flopMultiple: Double {
        switch self {
        case .forward: 1
        case .forwardBackward, .trainStep: 3
        }
    }
}

/// Timing statistics of one measurement, in milliseconds.
public struct BenchmarkMeasurement: Sendable {
    public var name: String
    public var configuration: BenchmarkConfiguration?
    public var pass: String
    public var medianMilliseconds: Double
    public var minimumMilliseconds: Double
    public var maximumMilliseconds: Double
    public var flops: Double
    /// The most bytes the backend had allocated during the measured runs.
    public var peakBytes: Int
    /// How far the process's peak resident memory rose over the warm-up and timed runs (VmHWM
    /// after minus VmRSS before, Linux); nil where it cannot be measured.
    public var residentGrowthBytes: Int?
    /// Where a training step's `peakBytes` go; train-step measurements only.
    public var memory: TrainingStepMemory?
    public var device: String
    /// OpenCL: recurrent scans that ran as one persistent launch during the warm-up and timed runs
    /// (0: every step was its own launch); nil where not recorded.
    public var persistentScans: Int? = nil
    /// OpenCL: what one run enqueued and waited for, the timed runs' counts over their number
    /// (every run of a measurement does the same work); nil on the CPU.
    public var commandsPerRun: OpenCLCommandCounts? = nil

    public var gigaflopsPerSecond: Double { flops / (medianMilliseconds * 1e6) }
}

/// Where a training step's peak of backend memory goes, in bytes, from the backend's count of live
/// bytes at points of the step. The parts add up to the peak.
public struct TrainingStepMemory: Sendable {
    /// Parameter values.
    public var weights: Int
    /// One gradient buffer per parameter, kept between steps.
    public var gradients: Int
    /// The optimizer's state, allocated at its first step (Adam: two moments per parameter).
    public var optimizerState: Int
    /// The rest of what stays allocated between steps: the batch, targets, the loss buffer.
    public var data: Int
    /// What the forward pass keeps for backpropagation through time: per layer and direction the
    /// gate values [T, B, G], h̃ [T, B, H], the cell or hidden states [T, B, H] the cell needs,
    /// dropout masks, and the outputs; live bytes after the forward minus before it.
    public var activations: Int
    /// The rest of the peak, allocated during the backward pass on top of the activations: gate
    /// gradients [T, B, G] (twice for the reset-after GRU), dL/dx [T, B, I], the packed recurrent
    /// weights, and the head's and loss's small buffers.
    public var workspace: Int

    public var peak: Int { weights + gradients + optimizerState + data + activations + workspace }
}

/// Live-byte readings a training step takes of its backend during its first run.
private final class TrainingStepProbe {
    var runs = 0
    var startOfFirstStep = 0
    var afterFirstForward = 0
    var optimizerState = 0
}

/// Times recurrent layers and GEMMs on one backend: `warmup` untimed runs (kernel compilation,
/// caches), then `repetitions` timed ones. OpenCL times come from profiling events around the
/// enqueued work; CPU times from the monotonic clock.
public struct Benchmark {
    public let backend: any Backend
    public var warmup: Int
    public var repetitions: Int

    public init(backend: any Backend, warmup: Int = 2, repetitions: Int = 10) {
        self.backend = backend
        self.warmup = warmup
        self.repetitions = repetitions
    }

    /// Times `pass` of a recurrent stack with `configuration` on seeded random data.
    /// - Throws: `InsufficientMemoryError` before anything is allocated when the configuration
    ///   needs more memory than the backend or the host has.
    public func measure(_ configuration: BenchmarkConfiguration, pass: BenchmarkPass) throws -> BenchmarkMeasurement {
        let c = configuration
        try c.memoryEstimate(pass).check(on: backend, operation: "Benchmark.measure \(c) \(pass.rawValue)")
        let layer = try RecurrentLayer(
            cell: c.cell, inputSize: c.inputSize, hiddenSize: c.hiddenSize, layerCount: c.layers,
            bidirectional: c.bidirectional, recurrentDropout: c.recurrentDropout, projectionSize: c.projectionSize,
            returnSequences: pass != .trainStep, seed: 1, backend: backend)
        var random = SeededRandom(seed: 7)
        let input = try backend.upload((0..<(c.steps * c.batch * c.inputSize)).map { _ in random.uniform(bound: 1) },
                                       shape: [c.steps, c.batch, c.inputSize])
        let outputWidth = (c.bidirectional ? 2 : 1) * (c.projectionSize ?? c.hiddenSize)
        let outputGradient = try backend.upload(
            (0..<(c.steps * c.batch * outputWidth)).map { _ in random.uniform(bound: 1) },
            shape: [c.steps, c.batch, outputWidth])
        let run: () throws -> Void
        switch pass {
        case .forward:
            run = { _ = try layer.forward(input, training: false) }
        case .forwardBackward:
            run = {
                _ = try layer.forward(input, training: true)
                _ = try layer.backward(outputGradient: outputGradient)
            }
        case .trainStep:
            let head = try Dense(inputSize: outputWidth, outputSize: 1, seed: 2, backend: backend)
            let targets = try backend.upload((0..<c.batch).map { _ in random.uniform(bound: 1) }, shape: [c.batch, 1])
            let probe = TrainingStepProbe()
            let step = try trainingStep(layer: layer, head: head, loss: .meanSquaredError, targets: targets,
                                        probe: probe) { _ in input }
            var measurement = try time(name: c.description, configuration: c, pass: pass.rawValue,
                                       flops: c.forwardFlops * pass.flopMultiple, step)
            measurement.memory = breakdown(of: measurement, probe, parameters: layer.parameters + head.parameters)
            return measurement
        }
        return try time(name: c.description, configuration: c, pass: pass.rawValue,
                        flops: c.forwardFlops * pass.flopMultiple, run)
    }

    /// Times one training step of the IMDB sentiment recipe: Embedding(5000, 32) ->
    /// LSTM(32, input dropout 0.2, recurrent dropout 0.2, final state) -> Dense(1) with sigmoid
    /// binary cross-entropy on the logit, Adam(1e-3); B = 32 reviews of T = 400 token ids, which
    /// are uploaded in every step as a training loop must.
    public func measureIMDBRecipe(batch: Int = 32, steps: Int = 400) throws -> BenchmarkMeasurement {
        let (vocabulary, width) = (5000, 32)
        let embedding = try Embedding(vocabularySize: vocabulary, embeddingSize: width, seed: 3, backend: backend)
        let layer = try RecurrentLayer(cell: .lstm, inputSize: width, hiddenSize: width, inputDropout: 0.2,
                                       recurrentDropout: 0.2, returnSequences: false, seed: 1, backend: backend)
        let head = try Dense(inputSize: width, outputSize: 1, seed: 2, backend: backend)
        var random = SeededRandom(seed: 7)
        let ids = (0..<(steps * batch)).map { _ in Int32(1 + random.next(below: vocabulary - 1)) }  // [T, B]
        let targets = try backend.upload((0..<batch).map { _ in Float(random.next(below: 2)) }, shape: [batch, 1])
        let configuration = BenchmarkConfiguration(cell: .lstm, batch: batch, steps: steps, inputSize: width,
                                                   hiddenSize: width, recurrentDropout: 0.2)
        let probe = TrainingStepProbe()
        let step = try trainingStep(layer: layer, head: head, loss: .sigmoidCrossEntropy, targets: targets,
                                    embedding: embedding, probe: probe) { embedding in
            try embedding!.forward(ids: ids, shape: [steps, batch])
        }
        var measurement = try time(name: "imdb recipe: " + configuration.description, configuration: configuration,
                                   pass: BenchmarkPass.trainStep.rawValue, flops: configuration.forwardFlops * 3, step)
        measurement.memory = breakdown(
            of: measurement, probe, parameters: embedding.parameters + layer.parameters + head.parameters)
        return measurement
    }

    /// Splits a training step's peak with the readings its first run took.
    private func breakdown(of measurement: BenchmarkMeasurement, _ probe: TrainingStepProbe,
                           parameters: [NamedParameter]) -> TrainingStepMemory {
        let weights = parameters.reduce(0) { $0 + $1.value.count * $1.value.dtype.byteSize }
        let gradients = parameters.reduce(0) { $0 + $1.gradient.count * $1.gradient.dtype.byteSize }
        let activations = probe.afterFirstForward - probe.startOfFirstStep
        let data = probe.startOfFirstStep - weights - gradients
        let held = weights + gradients + probe.optimizerState + data + activations
        return TrainingStepMemory(weights: weights, gradients: gradients, optimizerState: probe.optimizerState,
                                  data: data, activations: activations, workspace: measurement.peakBytes - held)
    }

    /// One training step: zero the gradients, forward through (embedding,) the recurrent stack
    /// and the head, the loss, backward in reverse, and an Adam update of every parameter.
    private func trainingStep(layer: RecurrentLayer, head: Dense, loss: Loss, targets: Tensor,
                              embedding: Embedding? = nil, probe: TrainingStepProbe,
                              input: @escaping (Embedding?) throws -> Tensor)
        throws -> () throws -> Void
    {
        let optimizer = try Adam(learningRate: 1e-3, backend: backend)
        let losses = try backend.zeros([1])
        // The optimizer keys its state by name: prefix each layer's names as a model would.
        let named = [("embedding", embedding?.parameters ?? []), ("recurrent", layer.parameters),
                     ("head", head.parameters)]
        let parameters = named.flatMap { prefix, list in
            list.map { NamedParameter(name: "\(prefix).\($0.name)", value: $0.value, gradient: $0.gradient) }
        }
        let backend = self.backend
        return {
            // The first run has no earlier activations alive: read the live bytes at its stages.
            let first = probe.runs == 0
            probe.runs += 1
            if first { probe.startOfFirstStep = backend.memoryStatistics.liveBytes }
            try backend.zeroGradients(of: parameters)
            let x = try input(embedding)
            let state = try layer.forward(x, training: true).output  // [B, H]
            let prediction = try head.forward(state)  // [B, 1]
            if first { probe.afterFirstForward = backend.memoryStatistics.liveBytes }
            let outputGradient = try loss.evaluate(output: prediction, targets: targets, loss: losses, at: 0)
            let stateGradient = try head.backward(outputGradient)
            let inputGradient = try layer.backward(outputGradient: stateGradient).input
            try embedding?.backward(inputGradient)
            let beforeUpdate = backend.memoryStatistics.liveBytes
            try optimizer.step(parameters)
            if first { probe.optimizerState = backend.memoryStatistics.liveBytes - beforeUpdate }
        }
    }

    /// Times C[n, n] = A[n, n] B[n, n].
    /// - Throws: `InsufficientMemoryError` before anything is allocated when the three matrices
    ///   need more memory than the backend or the host has.
    public func measureGEMM(size n: Int) throws -> BenchmarkMeasurement {
        try MemoryEstimate.gemm(size: n).check(on: backend, operation: "Benchmark.measureGEMM \(n)")
        var random = SeededRandom(seed: 11)
        let a = try backend.upload((0..<(n * n)).map { _ in random.uniform(bound: 1) }, shape: [n, n])
        let b = try backend.upload((0..<(n * n)).map { _ in random.uniform(bound: 1) }, shape: [n, n])
        let c = try backend.zeros([n, n])
        return try time(name: "gemm \(n)x\(n)x\(n)", configuration: nil, pass: "gemm",
                        flops: 2 * Double(n) * Double(n) * Double(n)) {
            try backend.matmul(a, b, into: c)
        }
    }

    /// Runs `body` warm-up and timed times and summarises the timed runs.
    public func time(name: String, configuration: BenchmarkConfiguration?, pass: String, flops: Double,
                     _ body: () throws -> Void) throws -> BenchmarkMeasurement {
        let residentPeakReset = ResidentMemory.resetPeak()
        let residentBefore = ResidentMemory.currentBytes
        for _ in 0..<warmup { try body() }
        try backend.synchronize()
        backend.resetPeakMemory()
        let openCL = backend as? OpenCLBackend
        let countsBefore = openCL?.commandCounts
        var samples: [Double] = []
        for _ in 0..<max(1, repetitions) {
            samples.append(try milliseconds(body))
        }
        let runs = max(1, repetitions)
        let commands = countsBefore.flatMap { before in openCL.map { $0.commandCounts - before } }.map { total in
            OpenCLCommandCounts(kernelLaunches: total.kernelLaunches / runs, gemmCalls: total.gemmCalls / runs,
                                fills: total.fills / runs, hostSynchronizations: total.hostSynchronizations / runs)
        }
        samples.sort()
        var residentGrowth: Int?
        if residentPeakReset, let before = residentBefore, let peak = ResidentMemory.peakBytes {
            residentGrowth = peak - before
        }
        return BenchmarkMeasurement(
            name: name, configuration: configuration, pass: pass,
            medianMilliseconds: samples[samples.count / 2], minimumMilliseconds: samples.first!,
            maximumMilliseconds: samples.last!, flops: flops, peakBytes: backend.memoryStatistics.peakBytes,
            residentGrowthBytes: residentGrowth, device: backend.deviceName, commandsPerRun: commands)
    }

    /// One run of `body`, finished on the device, in milliseconds.
    private func milliseconds(_ body: () throws -> Void) throws -> Double {
        if let openCL = backend as? OpenCLBackend {
            return Double(try openCL.measureDeviceNanoseconds(body)) / 1e6
        }
        let clock = ContinuousClock()
        let start = clock.now
        try body()
        try backend.synchronize()
        let elapsed = clock.now - start
        return elapsed.inSeconds * 1e3
    }
}
