// One training run on the adding problem that records what makes vanishing and exploding
// gradients visible: the loss curve, the global gradient norm of every step, and the gradient
// flow (‖dL/dh_t‖ for every t) at a few points in training. `recur demo` runs a grid of these;
// the gradient-flow tests run small ones.
//
// Model: RecurrentLayer (many-to-one, 2 inputs → H) → Dense (H → 1), mean squared error, Adam,
// optionally global-norm clipping. Shape legend: T time steps, B batch, H hidden units.

/// A training run of a one-layer recurrent model on `AddingProblem`.
public struct AddingProblemExperiment {
    /// What to train and how.
    public struct Configuration: Sendable, CustomStringConvertible {
        public var cell: RecurrentCell
        /// T, the sequence length.
        public var steps: Int
        public var hiddenSize: Int
        public var batchSize: Int
        /// Optimizer steps, one fresh batch each.
        public var trainingSteps: Int
        /// Adam's learning rate.
        public var learningRate: Float
        /// Global-norm clipping to this norm (`GradientClipping.globalNorm`); nil trains without.
        public var clipNorm: Float?
        public var initialization: RecurrentInitialization
        /// Multiplies W_hh by this factor after initialisation: with `.keras` (orthogonal gate
        /// blocks, every singular value 1) the recurrent map's spectral radius becomes exactly
        /// this value, so > 1 makes the forward state and the gradients grow with distance.
        public var recurrentScale: Float?
        /// Seeds the parameters, the training batches and (derived) the evaluation batch.
        public var seed: UInt64
        /// Training steps after which the gradient flow is recorded (1-based; steps beyond
        /// `trainingSteps` are ignored).
        public var flowSteps: [Int]
        /// Sequences in the held-out batch the final mean squared error is measured on.
        public var evaluationSize: Int
        /// Solved means an evaluation MSE below `AddingProblem.baselineMeanSquaredError / solvedFactor`.
        public var solvedFactor: Double
        /// A global gradient norm above this counts as exploding (logged once per run).
        public var explosionThreshold: Float

        /// Each parameter but `flowSnapshots` sets the property of the same name.
        /// - Parameters:
        ///   - cell: the cell trained.
        ///   - steps: T, the sequence length.
        ///   - hiddenSize: H.
        ///   - batchSize: B, sequences per training step.
        ///   - trainingSteps: optimizer steps, one fresh batch each.
        ///   - learningRate: Adam's learning rate.
        ///   - clipNorm: global-norm clipping to this norm; nil trains without.
        ///   - initialization: the recurrent layer's initialisation.
        ///   - recurrentScale: multiplies W_hh after initialisation; nil leaves it.
        ///   - seed: seeds the parameters and the batches.
        ///   - flowSteps: the training steps after which the gradient flow is recorded.
        ///   - flowSnapshots: how many evenly spaced training points record the gradient flow
        ///     (the first step and the last included), when `flowSteps` is not given.
        ///   - evaluationSize: sequences in the held-out batch.
        ///   - solvedFactor: how many times below the baseline MSE counts as solved.
        ///   - explosionThreshold: a global gradient norm above this counts as exploding.
        public init(cell: RecurrentCell, steps: Int, hiddenSize: Int = 32, batchSize: Int = 32,
                    trainingSteps: Int = 500, learningRate: Float = 1e-2, clipNorm: Float? = nil,
                    initialization: RecurrentInitialization = .pytorch, recurrentScale: Float? = nil,
                    seed: UInt64 = 1, flowSteps: [Int]? = nil, flowSnapshots: Int = 4, evaluationSize: Int = 512,
                    solvedFactor: Double = 10, explosionThreshold: Float = 1e3) {
            self.cell = cell
            self.steps = steps
            self.hiddenSize = hiddenSize
            self.batchSize = batchSize
            self.trainingSteps = trainingSteps
            self.learningRate = learningRate
            self.clipNorm = clipNorm
            self.initialization = initialization
            self.recurrentScale = recurrentScale
            self.seed = seed
            self.flowSteps = flowSteps ?? Self.evenlySpaced(snapshots: flowSnapshots, over: trainingSteps)
            self.evaluationSize = evaluationSize
            self.solvedFactor = solvedFactor
            self.explosionThreshold = explosionThreshold
        }

        /// `snapshots` steps from 1 to `total`, evenly spaced, without repeats.
        static func evenlySpaced(snapshots: Int, over total: Int) -> [Int] {
            guard snapshots > 1, total > 1 else { return [max(total, 1)] }
            var steps: [Int] = []
            for k in 0..<snapshots {
                let step = 1 + Int((Double(k) * Double(total - 1) / Double(snapshots - 1)).rounded())
                if steps.last != step { steps.append(step) }
            }
            return steps
        }

        /// What the run allocates at its peak: training batches of B (backward with the gradient
        /// flow recorded, Adam's moments), or the forward pass over the held-out batch, whichever
        /// is larger.
        public var memoryEstimate: MemoryEstimate {
            let inputs = AddingProblem.featureCount
            var training = MemoryEstimate.recurrentStack(
                cell: cell, inputSize: inputs, hiddenSize: hiddenSize, batchSize: batchSize, steps: steps,
                pass: .training, recordsGradientFlow: true)
            training.optimizerState = MemoryEstimate.product(2, training.parameters)
            let evaluation = MemoryEstimate.recurrentStack(
                cell: cell, inputSize: inputs, hiddenSize: hiddenSize, batchSize: evaluationSize, steps: steps,
                pass: .inference)
            return training.total >= evaluation.total ? training : evaluation
        }

        public var description: String {
            var text = "\(cell) T=\(steps) H=\(hiddenSize) B=\(batchSize) \(trainingSteps) steps, Adam \(learningRate)"
            text += clipNorm.map { ", clip \($0)" } ?? ", no clipping"
            if let recurrentScale { text += ", W_hh x\(recurrentScale) (\(initialization))" }
            return text
        }
    }

    /// The gradient flow of the recurrent layer after one training step.
    public struct FlowSnapshot: Sendable {
        /// The training step (1-based) whose backward pass it was recorded in.
        public var step: Int
        public var flow: GradientFlow
    }

    /// What one run produced.
    public struct Result: Sendable {
        public var configuration: Configuration
        /// The training batch's MSE at every step that ran, `[steps run]`; the last may be non-finite.
        public var losses: [Float]
        /// The global gradient norm before clipping at every step that ran.
        public var gradientNorms: [Float]
        public var flows: [FlowSnapshot]
        /// The MSE on a held-out batch after training; nil when the run diverged.
        public var evaluationMeanSquaredError: Double?
        /// The first step whose loss or gradient was not finite: training stopped there.
        public var divergedAtStep: Int?
        /// The first step whose global gradient norm exceeded `explosionThreshold` or was not finite.
        public var explodedAtStep: Int?
        /// What happened, one line each (explosions, divergence), for a log.
        public var events: [String]
        /// Wall-clock seconds of the run.
        public var seconds: Double

        /// Baseline MSE over the evaluation MSE: how many times better than predicting 1.
        public var baselineRatio: Double? {
            evaluationMeanSquaredError.map { AddingProblem.baselineMeanSquaredError / max($0, 1e-12) }
        }

        /// Whether the evaluation MSE beat the baseline by `solvedFactor`.
        public var solved: Bool { (baselineRatio ?? 0) > configuration.solvedFactor }
    }

    /// Progress after a training step: the step (1-based), its loss and its global gradient norm.
    public typealias Progress = (_ step: Int, _ loss: Float, _ gradientNorm: Float) -> Void

    /// Trains the configured model on `backend` and returns what it recorded. A run whose loss or
    /// gradients stop being finite ends there and says so in `events`; only errors of the
    /// backend or of the configuration throw.
    public static func run(_ configuration: Configuration, on backend: any Backend,
                           progress: Progress? = nil) throws -> Result {
        let operation = "AddingProblemExperiment.run"
        let c = configuration
        guard c.trainingSteps >= 1, c.batchSize >= 1, c.evaluationSize >= 1 else {
            throw RecurError.invalidArgument(
                operation: operation,
                detail: "trainingSteps, batchSize and evaluationSize must be at least 1 (\(c))")
        }
        try c.memoryEstimate.check(on: backend, operation: "\(operation) (\(c))")
        let clock = ContinuousClock()
        let start = clock.now
        var task = try AddingProblem(steps: c.steps, seed: c.seed)
        let recurrent = try RecurrentLayer(
            cell: c.cell, inputSize: AddingProblem.featureCount, hiddenSize: c.hiddenSize, returnSequences: false,
            initialization: c.initialization, seed: c.seed, backend: backend)
        if let scale = c.recurrentScale {
            guard let weight = recurrent.parameter(named: "weight_hh_l0") else {
                preconditionFailure("a one-layer RecurrentLayer has weight_hh_l0")
            }
            try backend.scale(weight.value, by: scale)
        }
        let model = try Sequential([
            recurrent,
            try Dense(inputSize: c.hiddenSize, outputSize: 1, seed: c.seed &+ 1, backend: backend),
        ])
        let optimizer = try Adam(learningRate: c.learningRate, backend: backend)
        let clipper = try GradientClipper(c.clipNorm.map { .globalNorm(maxNorm: $0) } ?? .none,
                                          nonFinitePolicy: .skipStep)
        let lossSlot = try backend.zeros([1])  // [1]
        let flowSteps = Set(c.flowSteps)

        var result = Result(configuration: c, losses: [], gradientNorms: [], flows: [],
                            evaluationMeanSquaredError: nil, divergedAtStep: nil, explodedAtStep: nil, events: [],
                            seconds: 0)
        for step in 1...c.trainingSteps {
            let batch = task.nextBatch(size: c.batchSize)
            let inputs = try backend.upload(batch.inputs, shape: batch.inputShape)  // [T, B, 2]
            let targets = try backend.upload(batch.targets, shape: batch.targetShape)  // [B, 1]
            try model.zeroGradients()
            let output = try model.forward(inputs, training: true)  // [B, 1]
            let outputGradient = try Loss.meanSquaredError.evaluate(output: output, targets: targets,
                                                                    loss: lossSlot, at: 0)
            model.recordsGradientFlow = flowSteps.contains(step)
            try model.backward(outputGradient)
            if model.recordsGradientFlow, let flow = model.gradientFlow.first {
                result.flows.append(FlowSnapshot(step: step, flow: flow))
            }
            let report = try clipper.clip(model.parameters, step: step)
            let loss = try backend.download(lossSlot)[0]
            result.losses.append(loss)
            result.gradientNorms.append(report.globalNorm)
            progress?(step, loss, report.globalNorm)

            if result.explodedAtStep == nil, !report.isFinite || report.globalNorm > c.explosionThreshold {
                result.explodedAtStep = step
                let size = report.isFinite ? "\(report.globalNorm)" : "not finite"
                result.events.append(
                    "step \(step): gradient norm \(size) (above \(c.explosionThreshold)): exploding gradient")
            }
            guard report.isFinite, loss.isFinite else {
                result.divergedAtStep = step
                let what = loss.isFinite ? "the gradient of \(report.nonFiniteParameter ?? "a parameter")" : "the loss"
                result.events.append("step \(step): \(what) is not finite: the run diverged and stops here")
                break
            }
            try optimizer.step(model.parameters)
        }

        if result.divergedAtStep == nil {
            var evaluation = try AddingProblem(steps: c.steps, seed: c.seed ^ 0x5EED_E7A1)
            let batch = evaluation.nextBatch(size: c.evaluationSize)
            let output = try model.forward(try backend.upload(batch.inputs, shape: batch.inputShape), training: false)
            let predictions = try backend.download(output)  // [B, 1]
            var sum = 0.0
            for (prediction, target) in zip(predictions, batch.targets) {
                sum += Double(prediction - target) * Double(prediction - target)
            }
            let meanSquaredError = sum / Double(batch.targets.count)
            if meanSquaredError.isFinite {
                result.evaluationMeanSquaredError = meanSquaredError
            } else {
                result.events.append("evaluation: the predictions are not finite")
            }
        }
        let elapsed = clock.now - start
        result.seconds = elapsed.inSeconds
        return result
    }
}
