import Testing
@testable import Recur

// What the OpenCL backend enqueues and waits for (`OpenCLBackend.commandCounts`, reported per step
// by `recur bench`), and the grouped ops that take a model's gradient zeroing and Adam step from
// one launch per parameter to one per eight: each against the per-tensor ops and the CPU backend.
// The counting tests open a backend of their own, so no other test's work is counted.

@Suite("OpenCL command counts and grouped ops")
struct OpenCLCommandCountTests {
    /// A backend no other test enqueues on, or nil where OpenCL is absent and that is allowed.
    private func ownBackend() throws -> OpenCLBackend? {
        guard let device = try TestBackends.openCLDevice() else { return nil }
        return try OpenCLBackend(device: device)
    }

    private func randomValues(_ count: Int, seed: UInt64, positive: Bool = false) -> [Float] {
        var random = SeededRandom(seed: seed)
        return (0..<count).map { _ in
            let value = random.uniform(bound: 1)
            return positive ? abs(value) + 0.01 : value
        }
    }

    @Test func eachKindOfCommandIsCountedOnce() throws {
        guard let backend = try ownBackend() else { return }
        // Build the programs these ops use first: builds and probes are not counted anyway, but
        // this keeps the readings below about the ops alone.
        let warm = try backend.upload([Float]([1, 2, 3, 4]), shape: [2, 2])
        try backend.fill(warm, with: 0)
        try backend.matmul(warm, warm, into: warm)
        try backend.synchronize()

        var before = backend.commandCounts
        let a = try backend.zeros([2, 2])
        #expect(backend.commandCounts - before == OpenCLCommandCounts(fills: 1))

        before = backend.commandCounts
        let b = try backend.upload(randomValues(4, seed: 1), shape: [2, 2])
        #expect(backend.commandCounts - before == OpenCLCommandCounts(hostSynchronizations: 1))

        before = backend.commandCounts
        try backend.fill(a, with: 2)
        try backend.add(a, b, into: a)
        #expect(backend.commandCounts - before == OpenCLCommandCounts(kernelLaunches: 2))

        before = backend.commandCounts
        try backend.matmul(a, b, into: warm)
        #expect(backend.commandCounts - before == OpenCLCommandCounts(gemmCalls: 1))

        before = backend.commandCounts
        _ = try backend.download(warm)
        try backend.synchronize()
        let after = backend.commandCounts - before
        #expect(after == OpenCLCommandCounts(hostSynchronizations: 2))
        #expect(after.enqueuedCommands == 0)
    }

    @Test func zeroClearsEveryTensorInOneLaunchPerEight() throws {
        guard let backend = try ownBackend() else { return }
        // Odd sizes, ten tensors: two launches.
        let counts = [1, 37, 2, 256, 1000, 3, 65, 8, 129, 7]
        let tensors = try counts.enumerated().map { index, count in
            try backend.upload(randomValues(count, seed: UInt64(10 + index)), shape: [count])
        }
        let untouched = try backend.upload(randomValues(50, seed: 99), shape: [50])
        let before = backend.commandCounts
        try backend.zero(tensors)
        #expect(backend.commandCounts - before == OpenCLCommandCounts(kernelLaunches: 2))
        for (tensor, count) in zip(tensors, counts) {
            #expect(try backend.download(tensor) == [Float](repeating: 0, count: count))
        }
        #expect(try backend.download(untouched) == randomValues(50, seed: 99))
        // The CPU backend agrees (and a list of none is nothing on both).
        let cpu = TestBackends.cpu
        let hostTensors = try counts.map { try cpu.upload(randomValues($0, seed: 5), shape: [$0]) }
        try cpu.zero(hostTensors)
        for tensor in hostTensors { #expect(try cpu.download(tensor).allSatisfy { $0 == 0 }) }
        try backend.zero([])
        try cpu.zero([])
    }

    /// Eleven tensors, one long enough for every stage-1 group: two launches per eight tensors,
    /// each sum equal to `sumOfSquares` of the tensor alone to the bit, and close to the CPU's.
    @Test func groupedSumsOfSquaresEqualOneSumPerTensor() throws {
        guard let backend = try ownBackend() else { return }
        let counts = [3, 700, 1, 64, 2049, 9, 256, 31, 300_001, 5, 128]
        let values = counts.enumerated().map { randomValues($1, seed: UInt64(200 + $0)) }
        let tensors = try zip(values, counts).map { try backend.upload($0, shape: [$1]) }
        let grouped = try backend.zeros([counts.count + 2])
        let before = backend.commandCounts
        try backend.sumsOfSquares(tensors, into: grouped, at: 2)
        #expect(backend.commandCounts - before == OpenCLCommandCounts(kernelLaunches: 4))
        let single = try backend.zeros([counts.count + 2])
        for (index, tensor) in tensors.enumerated() { try backend.sumOfSquares(tensor, into: single, at: index + 2) }
        let groupedSums = try backend.download(grouped)
        #expect(groupedSums == (try backend.download(single)))
        #expect(groupedSums[0 ..< 2] == [0, 0])
        let cpu = TestBackends.cpu
        let hostSums = try cpu.zeros([counts.count])
        try cpu.sumsOfSquares(try zip(values, counts).map { try cpu.upload($0, shape: [$1]) }, into: hostSums, at: 0)
        let reference = values.map { Float($0.reduce(0.0) { $0 + Double($1) * Double($1) }) }
        assertClose(Array(groupedSums[2...]), reference, relativeTolerance: 1e-5, "OpenCL against float64")
        assertClose(try cpu.download(hostSums), reference, relativeTolerance: 1e-5, "CPU against float64")
        // Too few slots for the sums: refused.
        #expect(throws: RecurError.self) { try backend.sumsOfSquares(tensors, into: grouped, at: 3) }
    }

    @Test func groupedScaleScalesEachTensorByItsFactor() throws {
        guard let backend = try ownBackend() else { return }
        let counts = [4, 1, 300, 17, 8, 9, 65, 2, 1000]
        let factors: [Float] = [0.5, -2, 0.25, 3, 1, 0.125, 7, -0.5, 0.01]
        let values = counts.enumerated().map { randomValues($1, seed: UInt64(300 + $0)) }
        for candidate in [TestBackends.cpu as any Backend, backend] {
            let tensors = try zip(values, counts).map { try candidate.upload($0, shape: [$1]) }
            let before = backend.commandCounts
            try candidate.scale(tensors, by: factors)
            if candidate === backend {
                #expect(backend.commandCounts - before == OpenCLCommandCounts(kernelLaunches: 2))
            }
            for (index, tensor) in tensors.enumerated() {
                #expect(try candidate.download(tensor) == values[index].map { $0 * factors[index] })
            }
            #expect(throws: RecurError.self) { try candidate.scale(tensors, by: Array(factors.dropLast())) }
            #expect(throws: RecurError.self) { try candidate.scale([tensors[0], tensors[0]], by: [2, 2]) }
        }
    }

    /// Ten parameters at odd sizes with their own step counts, two hyperparameter sets and one
    /// parameter with per-occurrence squares: `adamSteps` on OpenCL equals `adamStep` on each,
    /// on OpenCL and on the CPU, and takes a launch per group of up to eight.
    @Test func groupedAdamEqualsOneStepPerParameter() throws {
        guard let backend = try ownBackend() else { return }
        let cpu = TestBackends.cpu
        let sizes = [5, 1, 300, 17, 64, 1031, 2, 9, 33, 128]
        struct Operands { var p: [Float], g: [Float], m: [Float], v: [Float] }
        let operands = sizes.enumerated().map { index, size in
            let seed = UInt64(100 * (index + 1))
            return Operands(p: randomValues(size, seed: seed), g: randomValues(size, seed: seed + 1),
                            m: randomValues(size, seed: seed + 2), v: randomValues(size, seed: seed + 3, positive: true))
        }
        let squares = randomValues(sizes[3], seed: 7, positive: true)
        func hyperparameters(_ index: Int) -> AdamUpdate {
            // Parameters 0 ..< 7 share Adam's scalars; 7 ..< 10 are AdamW's, with a weight decay.
            index < 7 ? AdamUpdate(learningRate: 0.01, epsilon: 1e-6, step: 1 + index * 3)
                : AdamUpdate(learningRate: 0.01, beta1: 0.8, beta2: 0.99, weightDecay: 0.1,
                             decoupledWeightDecay: true, step: index)
        }
        func steps(on backend: any Backend) throws -> ([AdamStep], [[Tensor]]) {
            var steps: [AdamStep] = []
            var tensors: [[Tensor]] = []
            for (index, o) in operands.enumerated() {
                let shape: Shape = [o.p.count]
                let list = try [o.p, o.g, o.m, o.v].map { try backend.upload($0, shape: shape) }
                let squared = index == 3 ? try backend.upload(squares, shape: shape) : nil
                steps.append(AdamStep(parameter: list[0], gradient: list[1], squaredGradient: squared,
                                      firstMoment: list[2], secondMoment: list[3], hyperparameters: hyperparameters(index)))
                tensors.append([list[0], list[2], list[3]])
            }
            return (steps, tensors)
        }
        let (grouped, groupedTensors) = try steps(on: backend)
        let before = backend.commandCounts
        try backend.adamSteps(grouped)
        // Six plain Adam parameters in one launch, the squares one alone, three AdamW in one.
        #expect(backend.commandCounts - before == OpenCLCommandCounts(kernelLaunches: 3))

        let (single, singleTensors) = try steps(on: backend)
        for step in single {
            try backend.adamStep(parameter: step.parameter, gradient: step.gradient,
                                 squaredGradient: step.squaredGradient, firstMoment: step.firstMoment,
                                 secondMoment: step.secondMoment, hyperparameters: step.hyperparameters)
        }
        let (host, hostTensors) = try steps(on: cpu)
        try cpu.adamSteps(host)
        for index in sizes.indices {
            for (slot, name) in ["p", "m", "v"].enumerated() {
                let groupedValues = try backend.download(groupedTensors[index][slot])
                assertClose(groupedValues, try backend.download(singleTensors[index][slot]), relativeTolerance: 1e-6,
                            absoluteTolerance: 1e-7, "parameter \(index) \(name): grouped against one launch each")
                assertClose(groupedValues, try cpu.download(hostTensors[index][slot]), relativeTolerance: 1e-5,
                            absoluteTolerance: 1e-6, "parameter \(index) \(name): OpenCL against the CPU")
            }
        }
    }

    @Test func aRefusedGroupChangesNothing() throws {
        for backend in [TestBackends.cpu as any Backend] + ((try ownBackend()).map { [$0] } ?? []) {
            let values = randomValues(8, seed: 3)
            let p = try backend.upload(values, shape: [8])
            let (g, m, v) = (try backend.upload(randomValues(8, seed: 4), shape: [8]), try backend.zeros([8]),
                             try backend.zeros([8]))
            let other = try backend.upload(values, shape: [8])
            let h = AdamUpdate(learningRate: 0.1, step: 1)
            let twice = [other, p, p].map {
                AdamStep(parameter: $0, gradient: g, firstMoment: m, secondMoment: v, hyperparameters: h)
            }
            #expect(throws: RecurError.self) { try backend.adamSteps(twice) }
            let badStep = [AdamStep(parameter: other, gradient: g, firstMoment: m, secondMoment: v, hyperparameters: h),
                           AdamStep(parameter: p, gradient: g, firstMoment: m, secondMoment: v,
                                    hyperparameters: AdamUpdate(learningRate: 0.1, step: 0))]
            #expect(throws: RecurError.self) { try backend.adamSteps(badStep) }
            #expect(try backend.download(p) == values)
            #expect(try backend.download(other) == values)
        }
    }

    /// A training step of the benchmark: the same commands every run, one Adam launch and one
    /// zeroing launch for its six parameters, no host wait without persistent scans, and one per
    /// scan with them (the read-back of the barrier's abort flag).
    @Test func aTrainingStepReportsItsCommands() throws {
        guard let backend = try ownBackend() else { return }
        backend.persistentScanPolicy = .disabled
        let configuration = BenchmarkConfiguration(cell: .lstm, batch: 4, steps: 6, inputSize: 5, hiddenSize: 8)
        let once = try Benchmark(backend: backend, warmup: 1, repetitions: 1).measure(configuration, pass: .trainStep)
        // A warm-up run creates Adam's moments (fills); the timed runs after it repeat each other.
        let thrice = try Benchmark(backend: backend, warmup: 1, repetitions: 3).measure(configuration, pass: .trainStep)
        let commands = try #require(once.commandsPerRun)
        #expect(thrice.commandsPerRun == commands)
        #expect(commands.hostSynchronizations == 0)
        // Six steps forward and six back, one launch each, beside the step's other launches.
        #expect(commands.kernelLaunches >= 12)
        #expect(commands.gemmCalls > 0)
        // Forcing the persistent scans: one launch per scan and one wait per scan.
        backend.persistentScanPolicy = .forced
        let persistent = try #require(
            try Benchmark(backend: backend, warmup: 1, repetitions: 2).measure(configuration, pass: .trainStep)
                .commandsPerRun)
        #expect(persistent.hostSynchronizations == 2)
        #expect(persistent.kernelLaunches <= commands.kernelLaunches - 2 * (configuration.steps - 1))
    }

    /// `Adam.step` over a model's parameters: after the first step (which creates the moments)
    /// one launch for all six, where it took six before.
    @Test func anAdamStepOverAModelIsOneLaunch() throws {
        guard let backend = try ownBackend() else { return }
        let layer = try RecurrentLayer(cell: .lstm, inputSize: 3, hiddenSize: 4, seed: 1, backend: backend)
        let head = try Dense(inputSize: 4, outputSize: 2, seed: 2, backend: backend)
        let parameters = (layer.parameters + head.parameters).enumerated().map { index, parameter in
            NamedParameter(name: "\(index).\(parameter.name)", value: parameter.value, gradient: parameter.gradient)
        }
        #expect(parameters.count == 6)
        for (index, parameter) in parameters.enumerated() {
            try backend.fill(parameter.gradient, with: 0.1 * Float(index + 1))
        }
        let optimizer = try Adam(learningRate: 0.01, backend: backend)
        try optimizer.step(parameters)
        var before = backend.commandCounts
        try optimizer.step(parameters)
        #expect(backend.commandCounts - before == OpenCLCommandCounts(kernelLaunches: 1))
        before = backend.commandCounts
        try backend.zeroGradients(of: parameters)
        #expect(backend.commandCounts - before == OpenCLCommandCounts(kernelLaunches: 1))
        for parameter in parameters { #expect(try backend.download(parameter.gradient).allSatisfy { $0 == 0 }) }
    }
}
