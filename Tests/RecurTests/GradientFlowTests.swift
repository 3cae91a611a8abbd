import Testing
@testable import Recur

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Gradient flow: the recorded dL/dh_t is the true gradient, and the picture `recur demo` draws
// appears at small size: a simple RNN's gradient vanishes geometrically with distance from the
// loss and it fails where LSTM and GRU solve the adding problem; a large recurrent
// initialisation explodes without clipping.
//
// Sizes are small because tests build without optimisation (see TrainingEndToEndTests).

@Suite("Gradient flow")
struct GradientFlowTests {
    /// dL/dh_t recorded by the full backward pass equals what an independent computation gives:
    /// run the steps after t from the state (h_t, c_t) the prefix left, and back-propagate the same
    /// output gradients; then dL/dh_t = dL/dy_t + dL/d(initial h) of that suffix.
    @Test("the recorded dL/dh_t matches the gradient of the suffix run", arguments: [
        RecurrentCell.rnnTanh, .rnnRelu, .lstm, .gru, .gruResetBefore,
    ])
    func recordedGradientIsTheTrueGradient(cell: RecurrentCell) throws {
        let backend = TestBackends.cpu
        var random = SeededGenerator(seed: 71)
        let (steps, batch, inputSize, hidden, split) = (6, 3, 4, 5, 2)
        let layer = try RecurrentLayer(cell: cell, inputSize: inputSize, hiddenSize: hidden, seed: 3, backend: backend)
        try recurrentRandomizeParameters(layer, scale: 0.6, rng: &random)
        let input = random.floats(steps * batch * inputSize)  // [T, B, I]
        let outputGradient = random.floats(steps * batch * hidden)  // [T, B, H]

        layer.recordsGradientFlow = true
        _ = try layer.forward(try backend.upload(input, shape: [steps, batch, inputSize]), training: false)
        _ = try layer.backward(outputGradient: try backend.upload(outputGradient, shape: [steps, batch, hidden]))
        let flow = try #require(layer.gradientFlow.first)
        #expect(layer.gradientFlow.map(\.name) == ["l0"])
        #expect(flow.norms.count == steps)

        // The prefix 0 ... split gives (h_split, c_split); the suffix split+1 ..< T starts there.
        let rowSize = batch * inputSize
        let prefix = try layer.forward(
            try backend.upload(Array(input[..<((split + 1) * rowSize)]), shape: [split + 1, batch, inputSize]),
            training: false)
        let suffixSteps = steps - split - 1
        _ = try layer.forward(
            try backend.upload(Array(input[((split + 1) * rowSize)...]), shape: [suffixSteps, batch, inputSize]),
            initialState: prefix.finalState, training: false)
        let stateSize = batch * hidden
        let suffixGradient = try layer.backward(outputGradient: try backend.upload(
            Array(outputGradient[((split + 1) * stateSize)...]), shape: [suffixSteps, batch, hidden]))
        let throughSuffix = try backend.download(suffixGradient.initialState.hidden)  // [1, B, H]
        let expected = (0..<stateSize).map { outputGradient[split * stateSize + $0] + throughSuffix[$0] }
        let expectedNorm = expected.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        #expect(abs(Double(flow.norms[split]) - expectedNorm) <= 1e-5 * expectedNorm, "\(cell)")
        // The last step's gradient is the output gradient alone.
        let last = outputGradient[((steps - 1) * stateSize)...].reduce(0.0) { $0 + Double($1) * Double($1) }
        #expect(abs(Double(flow.norms[steps - 1]) - last.squareRoot()) <= 1e-5 * last.squareRoot())
        // A backward pass without recording clears the flow.
        layer.recordsGradientFlow = false
        _ = try layer.backward(outputGradient: nil)
        #expect(layer.gradientFlow.isEmpty)
    }

    @Test("a Sequential names each recurrent layer-direction's flow after its index")
    func sequentialNamesFlows() throws {
        let backend = TestBackends.cpu
        let model = try Sequential([
            try RecurrentLayer(cell: .gru, inputSize: 2, hiddenSize: 3, bidirectional: true, seed: 1,
                               backend: backend),
            try Dense(inputSize: 6, outputSize: 1, seed: 2, backend: backend),
        ])
        model.recordsGradientFlow = true
        #expect(model.recordsGradientFlow)
        var random = SeededGenerator(seed: 5)
        let output = try model.forward(try backend.upload(random.floats(4 * 2 * 2), shape: [4, 2, 2]),
                                       lengths: [4, 2], training: false)  // [4, 2, 1]
        try model.backward(try backend.upload(random.floats(8), shape: output.shape))
        #expect(model.gradientFlow.map(\.name) == ["0.l0", "0.l0_reverse"])
        for flow in model.gradientFlow {
            #expect(flow.norms.count == 4)
            // Sequence 1 is padded at t = 2, 3: only sequence 0 contributes there, so no step is 0.
            #expect(flow.norms.allSatisfy { $0 > 0 && $0.isFinite })
        }
    }

    @Test("decay rate and end-to-end ratio read the distance from the loss end")
    func decayRate() throws {
        // 0.5^k away from the last step of a forward scan.
        let forward = GradientFlow(name: "l0", norms: (0..<10).map { Float(pow(0.5, Double(9 - $0))) })
        #expect(abs(try #require(forward.decayRate()) - 0.5) < 1e-6)
        #expect(abs(try #require(forward.endToEndRatio) - pow(0.5, 9)) < 1e-9)
        // The reverse direction reads its loss end at t = 0.
        let reverse = GradientFlow(name: "l0_reverse", norms: (0..<10).map { Float(pow(2, Double($0))) })
        #expect(abs(try #require(reverse.decayRate()) - 2) < 1e-6)
        // Zeros and non-finite norms are left out of the fit; fewer than two points give nil.
        #expect(GradientFlow(name: "l0", norms: [0, .nan, 1]).decayRate() == nil)
    }

    // MARK: The demo's picture, small

    /// A simple RNN at its PyTorch initialisation: ‖dL/dh_t‖ falls geometrically with the distance
    /// from the loss, at every point of training the test records.
    @Test("a simple RNN's gradient vanishes geometrically with distance")
    func simpleRNNGradientVanishes() throws {
        let result = try AddingProblemExperiment.run(
            .init(cell: .rnnTanh, steps: 30, hiddenSize: 16, batchSize: 16, trainingSteps: 20, flowSnapshots: 2),
            on: TestBackends.cpu)
        #expect(result.flows.map(\.step) == [1, 20])
        for snapshot in result.flows {
            let rate = try #require(snapshot.flow.decayRate())
            // Geometric decay: ln ‖dL/dh‖ falls linearly, here by at least 20 % per step.
            #expect(rate < 0.8, "decay rate \(rate) at step \(snapshot.step)")
            let ratio = try #require(snapshot.flow.endToEndRatio)
            #expect(ratio < 1e-3, "end-to-end ratio \(ratio) at step \(snapshot.step)")
        }
    }

    /// Orthogonal W_hh scaled to spectral radius 3: the gradient grows with distance and its norm
    /// passes the explosion threshold, which the run reports; clipping keeps every update bounded.
    @Test("a large recurrent initialisation explodes without clipping")
    func largeInitialisationExplodes() throws {
        let configuration = AddingProblemExperiment.Configuration(
            cell: .rnnRelu, steps: 30, hiddenSize: 16, batchSize: 16, trainingSteps: 5, initialization: .keras,
            recurrentScale: 3, flowSteps: [1])
        let result = try AddingProblemExperiment.run(configuration, on: TestBackends.cpu)
        let flow = try #require(result.flows.first?.flow)
        let rate = try #require(flow.decayRate())
        #expect(rate > 1.5, "growth per step \(rate)")
        let (exploded, norms, events) = (result.explodedAtStep, result.gradientNorms, result.events)
        #expect(exploded == 1, "gradient norms \(norms)")
        #expect(events.contains { $0.contains("exploding") }, "\(events)")
    }

    /// LSTM and GRU learn the adding problem at T = 8; the simple RNN does not at T = 30 within
    /// the same budget (its MSE stays near the baseline's 1/6). On the OpenCL device: in the
    /// unoptimised test build its step kernels train this model several times faster than the
    /// CPU backend's Swift loops (the two agree to float32 rounding, see OpenCLRecurrentTests).
    @Test("LSTM and GRU solve a short adding problem, a simple RNN fails at a longer one")
    func gatesSolveTheAddingProblem() throws {
        guard let backend = try TestBackends.openCL() else { return }
        func run(_ cell: RecurrentCell, steps: Int) throws -> AddingProblemExperiment.Result {
            try AddingProblemExperiment.run(
                .init(cell: cell, steps: steps, hiddenSize: 12, batchSize: 32, trainingSteps: 300, learningRate: 0.02,
                      clipNorm: 1, seed: 3, flowSteps: [], evaluationSize: 256),
                on: backend)
        }
        for cell in [RecurrentCell.lstm, .gru] {
            let result = try run(cell, steps: 8)
            let (solved, error) = (result.solved, result.evaluationMeanSquaredError ?? .nan)
            #expect(solved, "\(cell): MSE \(error)")
        }
        let simple = try run(.rnnTanh, steps: 30)
        let (solved, error) = (simple.solved, simple.evaluationMeanSquaredError ?? .nan)
        #expect(!solved && error > AddingProblem.baselineMeanSquaredError / 2, "MSE \(error)")
    }
}
