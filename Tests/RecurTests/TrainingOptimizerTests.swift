import Testing
@testable import Recur

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The optimizers on every backend: against parameters PyTorch reached from the same start and
// gradients, against a float64 reference written from PyTorch's update rules, OpenCL against the
// CPU backend at odd sizes, state export and import, and the learning-rate schedules.

// MARK: Configurations

/// One optimizer configuration, with its float64 reference.
enum TrainingOptimizerCase: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sgdNesterov
    case sgdDampening
    case sgdPlain
    case adamDefaults
    case adamWeightDecay
    case adamWDefaults
    case adamWDecay
    case rmsPropDefaults
    case rmsPropMomentum

    var testDescription: String { rawValue }

    /// The same settings as tools/training_reference.py gives PyTorch.
    func make(on backend: any Backend) throws -> any Optimizer {
        switch self {
        case .sgdNesterov:
            try SGD(learningRate: 0.1, momentum: 0.9, weightDecay: 0.01, nesterov: true, backend: backend)
        case .sgdDampening:
            try SGD(learningRate: 0.1, momentum: 0.9, dampening: 0.1, backend: backend)
        case .sgdPlain:
            try SGD(learningRate: 0.1, weightDecay: 0.05, backend: backend)
        case .adamDefaults:
            try Adam(learningRate: 0.01, backend: backend)
        case .adamWeightDecay:
            try Adam(learningRate: 0.01, beta1: 0.8, beta2: 0.99, epsilon: 1e-6, weightDecay: 0.1, backend: backend)
        case .adamWDefaults:
            try AdamW(learningRate: 0.01, backend: backend)
        case .adamWDecay:
            try AdamW(learningRate: 0.05, beta1: 0.8, beta2: 0.99, weightDecay: 0.1, backend: backend)
        case .rmsPropDefaults:
            try RMSProp(learningRate: 0.01, backend: backend)
        case .rmsPropMomentum:
            try RMSProp(learningRate: 0.01, alpha: 0.9, weightDecay: 0.1, momentum: 0.9, backend: backend)
        }
    }

    /// The float64 reference of this configuration: the same hyperparameters as `make(on:)`.
    var reference: TrainingReferenceOptimizer {
        switch self {
        case .sgdNesterov: .sgd(SGDUpdate(learningRate: 0.1, momentum: 0.9, weightDecay: 0.01, nesterov: true,
                                          isFirstStep: true))
        case .sgdDampening: .sgd(SGDUpdate(learningRate: 0.1, momentum: 0.9, dampening: 0.1, isFirstStep: true))
        case .sgdPlain: .sgd(SGDUpdate(learningRate: 0.1, weightDecay: 0.05, isFirstStep: true))
        case .adamDefaults: .adam(AdamUpdate(learningRate: 0.01, step: 1))
        case .adamWeightDecay:
            .adam(AdamUpdate(learningRate: 0.01, beta1: 0.8, beta2: 0.99, epsilon: 1e-6, weightDecay: 0.1, step: 1))
        case .adamWDefaults:
            .adam(AdamUpdate(learningRate: 0.01, weightDecay: 0.01, decoupledWeightDecay: true, step: 1))
        case .adamWDecay:
            .adam(AdamUpdate(learningRate: 0.05, beta1: 0.8, beta2: 0.99, weightDecay: 0.1, decoupledWeightDecay: true,
                             step: 1))
        case .rmsPropDefaults: .rmsProp(RMSPropUpdate(learningRate: 0.01))
        case .rmsPropMomentum: .rmsProp(RMSPropUpdate(learningRate: 0.01, alpha: 0.9, weightDecay: 0.1, momentum: 0.9))
        }
    }

    // Parameters after three steps from PyTorch 2.15.0 (CPU, float32), tools/training_reference.py:
    // torch.optim.SGD / Adam / AdamW / RMSprop with the settings above on two parameters
    // (p0 [5], p1 [2, 3]), p.grad set to the literal gradients of `pyTorchGradients` before each
    // opt.step(). Regenerate with `.venv-torch/bin/python tools/training_reference.py`.
    var pyTorchResult: (first: [Float], second: [Float]) {
        switch self {
        case .sgdNesterov: (
            [0.3332490026950836, -1.0659334659576416, 0.04163062199950218, 2.113799810409546, -0.8889254927635193],
            [-0.321993887424469, 0.06702928245067596, 0.263793021440506, -0.06849198788404465, 0.47792449593544006,
             -0.5360897183418274])
        case .sgdDampening: (
            [0.39890000224113464, -1.0412999391555786, 0.06110001727938652, 2.1533000469207764, -0.8112500309944153],
            [-0.22949998080730438, 0.12149998545646667, 0.2724999785423279, 0.09400002658367157, 0.4749999940395355,
             -0.4948500394821167])
        case .sgdPlain: (
            [0.42273667454719543, -1.014974594116211, 0.2071167230606079, 1.9794026613235474, -0.8239063024520874],
            [-0.020245008170604706, -0.198759987950325, 0.27552124857902527, 0.23502995073795319,
             0.49266180396080017, -0.6167430877685547])
        case .adamDefaults: (
            [0.4825029671192169, -0.9999200105667114, 0.23082399368286133, 2.010732889175415, -0.7586334943771362],
            [0.0753759890794754, -0.18613269925117493, 0.29266783595085144, 0.3881716728210449, 0.4909331500530243,
             -0.5864212512969971])
        case .adamWeightDecay: (
            [0.48026150465011597, -0.9933183789253235, 0.23148459196090698, 2.005448341369629, -0.7363633513450623],
            [0.07619268447160721, -0.18729399144649506, 0.29231762886047363, 0.37760403752326965,
             0.4875848889350891, -0.586266815662384])
        case .adamWDefaults: (
            [0.48235511779785156, -0.9996214509010315, 0.23075173795223236, 2.0101308822631836, -0.7584071159362793],
            [0.07534892112016678, -0.18607516586780548, 0.2925794720649719, 0.38805243372917175,
             0.4907850921154022, -0.5862438082695007])
        case .adamWDecay: (
            [0.4067392349243164, -0.9878868460655212, 0.15735375881195068, 2.017639398574829, -0.782584011554718],
            [-0.01927839033305645, -0.1352541297674179, 0.26105058193206787, 0.33416205644607544,
             0.45258966088294983, -0.5307306051254272])
        case .rmsPropDefaults: (
            [0.3697565197944641, -0.9970428943634033, 0.190619558095932, 2.0264832973480225, -0.8477659821510315],
            [-0.01876589097082615, -0.1835784763097763, 0.2362356334924698, 0.31970658898353577,
             0.4708881378173828, -0.5901401042938232])
        case .rmsPropMomentum: (
            [0.4116155505180359, -0.9565678238868713, 0.17212112247943878, 2.0312678813934326, -0.6342641711235046],
            [-0.0050035687163472176, -0.14862728118896484, 0.24955764412879944, 0.2601627707481384,
             0.44488295912742615, -0.5416094064712524])
        }
    }
}

/// The start and the three steps' gradients given to PyTorch (tools/training_reference.py).
private let pyTorchStart: (first: [Float], second: [Float]) = (
    [0.5, -1.0, 0.25, 2.0, -0.75], [0.1, -0.2, 0.3, 0.4, 0.5, -0.6])
private let pyTorchGradients: [(first: [Float], second: [Float])] = [
    ([0.3, -0.1, 0.8, -1.2, 0.05], [1.0, -2.0, 0.5, 0.0, 0.25, -0.75]),
    ([-0.2, 0.4, 0.1, 0.9, -0.3], [0.5, 0.5, -1.0, 2.0, -0.25, 0.1]),
    ([0.6, 0.0, -0.5, 0.2, 1.1], [-0.3, 1.5, 0.7, -0.4, 0.0, 0.9]),
]

// MARK: Float64 reference

/// One configuration of `TrainingReference`'s optimizer steps (PyTorch's update rules in float64),
/// run over several steps of one parameter; `state` holds what the optimizer keeps between steps.
enum TrainingReferenceOptimizer: Sendable {
    case sgd(SGDUpdate)
    case adam(AdamUpdate)
    case rmsProp(RMSPropUpdate)

    /// One step t ≥ 1 of `p` with gradient `gradient`; `state` starts empty.
    func step(_ p: inout [Double], gradient: [Double], t: Int, state: inout [[Double]]) {
        let zeros = [Double](repeating: 0, count: p.count)
        if state.isEmpty { state = [zeros, zeros] }
        switch self {
        case var .sgd(h):
            h.isFirstStep = t == 1
            var buffer: [Double]? = h.momentum != 0 ? state[0] : nil
            TrainingReference.sgdStep(parameter: &p, gradient: gradient, momentumBuffer: &buffer, hyperparameters: h)
            state[0] = buffer ?? zeros
        case var .adam(h):
            h.step = t
            var (m, v) = (state[0], state[1])
            TrainingReference.adamStep(parameter: &p, gradient: gradient, firstMoment: &m, secondMoment: &v,
                                       hyperparameters: h)
            state = [m, v]
        case let .rmsProp(h):
            var buffer: [Double]? = h.momentum != 0 ? state[1] : nil
            TrainingReference.rmsPropStep(parameter: &p, gradient: gradient, squareAverage: &state[0],
                                          momentumBuffer: &buffer, hyperparameters: h)
            state[1] = buffer ?? zeros
        }
    }
}

/// Runs `optimizer` over `steps` gradient lists for parameters starting at `start`; returns the
/// final values.
private func runOptimizer(_ optimizer: any Optimizer, start: [[Float]], shapes: [Shape], gradients: [[[Float]]])
    throws -> [[Float]]
{
    let backend = optimizer.backend
    let parameters = try zip(start, shapes).enumerated().map { index, pair in
        NamedParameter(name: "p\(index)", value: try backend.upload(pair.0, shape: pair.1),
                       gradient: try backend.zeros(pair.1))
    }
    for stepGradients in gradients {
        for (parameter, values) in zip(parameters, stepGradients) {
            try trainingSetValues(parameter.gradient, values)
        }
        try optimizer.step(parameters)
    }
    return try parameters.map { try backend.download($0.value) }
}

/// The float64 reference of the same run.
private func runReference(_ reference: TrainingReferenceOptimizer, start: [[Float]], gradients: [[[Float]]]) -> [[Float]] {
    var values = start.map { $0.map(Double.init) }
    var states = [[[Double]]](repeating: [], count: start.count)
    for (t, stepGradients) in gradients.enumerated() {
        for k in values.indices {
            reference.step(&values[k], gradient: stepGradients[k].map(Double.init), t: t + 1, state: &states[k])
        }
    }
    return values.map { $0.map(Float.init) }
}

@Suite("Training optimizers")
struct TrainingOptimizerTests {
    // MARK: PyTorch and float64

    @Test(arguments: TestBackend.allCases, TrainingOptimizerCase.allCases)
    func optimizersMatchPyTorch(_ which: TestBackend, _ configuration: TrainingOptimizerCase) throws {
        guard let backend = try which.backend() else { return }
        let start = [pyTorchStart.first, pyTorchStart.second]
        let gradients = pyTorchGradients.map { [$0.first, $0.second] }
        let result = try runOptimizer(try configuration.make(on: backend), start: start, shapes: [[5], [2, 3]],
                                      gradients: gradients)
        let expected = configuration.pyTorchResult
        assertClose(result[0], expected.first, relativeTolerance: 2e-6, absoluteTolerance: 1e-6,
                    "\(which) \(configuration) p0 vs PyTorch")
        assertClose(result[1], expected.second, relativeTolerance: 2e-6, absoluteTolerance: 1e-6,
                    "\(which) \(configuration) p1 vs PyTorch")
        let reference = runReference(configuration.reference, start: start, gradients: gradients)
        assertClose(result[0], reference[0], relativeTolerance: 2e-6, absoluteTolerance: 1e-6,
                    "\(which) \(configuration) p0 vs float64")
        assertClose(result[1], reference[1], relativeTolerance: 2e-6, absoluteTolerance: 1e-6,
                    "\(which) \(configuration) p1 vs float64")
    }

    /// Five steps of random gradients at sizes that are not multiples of any work-group.
    @Test(arguments: TestBackend.allCases, TrainingOptimizerCase.allCases)
    func optimizersMatchAFloat64Reference(_ which: TestBackend, _ configuration: TrainingOptimizerCase) throws {
        guard let backend = try which.backend() else { return }
        var random = SeededGenerator(seed: 31)
        for size in [1, 7, 257] {
            let start = [random.floats(size)]
            let gradients = (0..<5).map { _ in [random.floats(size)] }
            let result = try runOptimizer(try configuration.make(on: backend), start: start, shapes: [[size]],
                                          gradients: gradients)
            let reference = runReference(configuration.reference, start: start, gradients: gradients)
            assertClose(result[0], reference[0], relativeTolerance: 1e-5, absoluteTolerance: 2e-6,
                        "\(which) \(configuration) n=\(size)")
        }
    }

    @Test(arguments: TrainingOptimizerCase.allCases)
    func openCLMatchesCPUOnOptimizerSteps(_ configuration: TrainingOptimizerCase) throws {
        guard let openCL = try TestBackends.openCL() else { return }
        var random = SeededGenerator(seed: 32)
        for size in [1, 7, 257] {
            let start = [random.floats(size), random.floats(2 * size)]
            let gradients = (0..<4).map { _ in [random.floats(size), random.floats(2 * size)] }
            let shapes: [Shape] = [[size], [2, size]]
            let onCPU = try runOptimizer(try configuration.make(on: TestBackends.cpu), start: start, shapes: shapes,
                                         gradients: gradients)
            let onOpenCL = try runOptimizer(try configuration.make(on: openCL), start: start, shapes: shapes,
                                            gradients: gradients)
            for k in 0..<2 {
                assertClose(onOpenCL[k], onCPU[k], relativeTolerance: 1e-5, absoluteTolerance: 1e-6,
                            "OpenCL vs CPU \(configuration) parameter \(k) n=\(size)")
            }
        }
    }

    // MARK: State

    /// Exported state loaded into a fresh optimizer (on the same or the other backend) continues
    /// exactly as the original.
    @Test(arguments: TestBackend.allCases, [TrainingOptimizerCase.adamWDecay, .sgdNesterov, .rmsPropMomentum])
    func stateRoundTripsThroughExportAndImport(_ which: TestBackend, _ configuration: TrainingOptimizerCase) throws {
        guard let backend = try which.backend() else { return }
        let source = TestBackends.cpu
        var random = SeededGenerator(seed: 33)
        let original = try configuration.make(on: source)
        let parameter = NamedParameter(name: "1.weight_ih_l0", value: try source.upload(random.floats(6), shape: [2, 3]),
                                       gradient: try source.upload(random.floats(6), shape: [2, 3]))
        try original.step([parameter])
        try original.step([parameter])
        let state = try original.state()
        let names = Set(state.map(\.name))
        #expect(names == Set(["step", "1.weight_ih_l0.step"] + original.slotNames.map { "1.weight_ih_l0.\($0)" }))

        let restored = try configuration.make(on: backend)
        try restored.load(state: state)
        #expect(restored.stepCount == 2)
        let copy = NamedParameter(name: parameter.name,
                                  value: try backend.upload(try source.download(parameter.value), shape: [2, 3]),
                                  gradient: try backend.upload(try source.download(parameter.gradient), shape: [2, 3]))
        try original.step([parameter])
        try restored.step([copy])
        assertClose(try backend.download(copy.value), try source.download(parameter.value),
                    relativeTolerance: 1e-6, absoluteTolerance: 1e-7, "\(which) \(configuration) after restore")
        // The exported tensors are copies: stepping on does not change them.
        let exported = state.first { $0.name == "1.weight_ih_l0.\(original.slotNames[0])" }!.tensor
        let afterStep = try original.state().first { $0.name == "1.weight_ih_l0.\(original.slotNames[0])" }!.tensor
        #expect(try source.download(exported) != source.download(afterStep))
    }

    @Test func loadRejectsIncompleteOrForeignState() throws {
        let backend = TestBackends.cpu
        let adam = try Adam(backend: backend)
        let step = NamedTensor(name: "step", tensor: try backend.upload([Int32(3)], shape: [1]))
        let parameterStep = NamedTensor(name: "w.step", tensor: try backend.upload([Int32(3)], shape: [1]))
        let moment = NamedTensor(name: "w.exp_avg", tensor: try backend.zeros([2]))
        let cases: [(String, [NamedTensor])] = [
            ("no step", [parameterStep, moment, NamedTensor(name: "w.exp_avg_sq", tensor: try backend.zeros([2]))]),
            ("a missing slot", [step, parameterStep, moment]),
            ("a foreign slot", [step, parameterStep, moment, NamedTensor(name: "w.momentum_buffer", tensor: try backend.zeros([2]))]),
            ("no parameter step", [step, moment, NamedTensor(name: "w.exp_avg_sq", tensor: try backend.zeros([2]))]),
        ]
        for (what, state) in cases {
            expectRecurError(what, matches: { if case .invalidArgument = $0 { return true } else { return false } }) {
                try adam.load(state: state)
            }
        }
        // A state tensor whose shape differs from its parameter's is caught at the next step.
        try adam.load(state: [step, parameterStep, moment, NamedTensor(name: "w.exp_avg_sq", tensor: try backend.zeros([2]))])
        let parameter = NamedParameter(name: "w", value: try backend.zeros([3]), gradient: try backend.zeros([3]))
        expectRecurError("shape", matches: { if case .shapeMismatch = $0 { return true } else { return false } }) {
            try adam.step([parameter])
        }
    }

    @Test func badSettingsAndDuplicateNamesThrow() throws {
        let backend = TestBackends.cpu
        let isInvalid: (RecurError) -> Bool = { if case .invalidArgument = $0 { return true } else { return false } }
        expectRecurError("Nesterov without momentum", matches: isInvalid) {
            _ = try SGD(learningRate: 0.1, nesterov: true, backend: backend)
        }
        expectRecurError("beta2 = 1", matches: isInvalid) { _ = try Adam(beta2: 1, backend: backend) }
        expectRecurError("negative learning rate", matches: isInvalid) { _ = try RMSProp(learningRate: -1, backend: backend) }
        let parameter = NamedParameter(name: "w", value: try backend.zeros([2]), gradient: try backend.zeros([2]))
        expectRecurError("duplicate names", matches: isInvalid) {
            try SGD(backend: backend).step([parameter, parameter])
        }
    }

    @Test func defaultsAreTheDocumentedOnes() throws {
        let backend = TestBackends.cpu
        let adam = try Adam(backend: backend)
        #expect((adam.learningRate, adam.beta1, adam.beta2, adam.epsilon, adam.weightDecay) == (1e-3, 0.9, 0.999, 1e-8, 0))
        let adamW = try AdamW(backend: backend)
        #expect((adamW.learningRate, adamW.weightDecay) == (1e-3, 0.01))
        let rmsProp = try RMSProp(backend: backend)
        #expect((rmsProp.learningRate, rmsProp.alpha, rmsProp.epsilon, rmsProp.momentum) == (1e-2, 0.99, 1e-8, 0))
        #expect(try SGD(backend: backend).slotNames.isEmpty)
        #expect(try SGD(momentum: 0.9, backend: backend).slotNames == ["momentum_buffer"])
    }

    // MARK: Schedules

    @Test func stepDecayHalvesEveryStepSize() throws {
        let schedule = try LearningRateSchedule.stepDecay(learningRate: 0.1, stepSize: 3, factor: 0.5)
        let rates = (0..<8).map { schedule.learningRate(atStep: $0) }
        assertClose(rates, [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025], relativeTolerance: 1e-6, "step decay")
    }

    @Test func cosineDecayFollowsTheClosedFormAndStaysAtTheMinimum() throws {
        let schedule = try LearningRateSchedule.cosine(learningRate: 1, totalSteps: 4, minimum: 0.2)
        let rates = (0..<7).map { schedule.learningRate(atStep: $0) }
        let expected = (0..<7).map { s in Float(0.2 + 0.8 * (1 + cos(Double.pi * Double(min(s, 4)) / 4)) / 2) }
        assertClose(rates, expected, relativeTolerance: 1e-6, "cosine")
        #expect(abs(rates[2] - 0.6) < 1e-6)
        #expect(rates[4...].allSatisfy { abs($0 - 0.2) < 1e-6 })
    }

    @Test func warmupRampsLinearlyThenRunsTheScheduleFromItsStart() throws {
        let cosine = try LearningRateSchedule.cosine(learningRate: 0.9, totalSteps: 10, minimum: 0)
        let schedule = try cosine.withWarmup(steps: 2)
        assertClose([schedule.learningRate(atStep: 0), schedule.learningRate(atStep: 1)], [0.3, 0.6],
                    relativeTolerance: 1e-6, "warm-up ramp")
        for s in 2..<14 {
            #expect(schedule.learningRate(atStep: s) == cosine.learningRate(atStep: s - 2))
        }
        let stepped = try LearningRateSchedule.stepDecay(learningRate: 1, stepSize: 2).withWarmup(steps: 3)
        assertClose((0..<7).map { stepped.learningRate(atStep: $0) }, [0.25, 0.5, 0.75, 1, 1, 0.1, 0.1],
                    relativeTolerance: 1e-6, "warm-up then step decay")
        #expect(throws: RecurError.self) { try cosine.withWarmup(steps: 0) }
        #expect(throws: RecurError.self) { try LearningRateSchedule.cosine(learningRate: 0.1, totalSteps: 5, minimum: 1) }
    }

    @Test func anOptimizerStepsWithItsScheduleRate() throws {
        let backend = TestBackends.cpu
        let sgd = try SGD(learningRate: 123, backend: backend)
        let schedule = try LearningRateSchedule.stepDecay(learningRate: 1, stepSize: 1, factor: 0.5)
        let parameter = NamedParameter(name: "w", value: try backend.zeros([1]),
                                       gradient: try backend.upload([1] as [Float], shape: [1]))
        for _ in 0..<3 { try sgd.step([parameter], schedule: schedule) }
        #expect(try backend.download(parameter.value) == [-1.75])  // −(1 + 0.5 + 0.25)
        #expect(sgd.stepCount == 3)
    }
}
