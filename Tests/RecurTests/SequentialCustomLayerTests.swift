import Testing
import Recur

// A layer type the library does not know, written against the public `Layer` protocol only,
// composed into a `Sequential` with the built-in layers: it runs, names its parameter, gets
// the right gradient and trains, with no edit anywhere else.
//
// Shape legend: N rows (every axis but the last), F features, T time steps, B batch.

/// y[n, f] = x[n, f] · s[f]: a learned gain per feature (parameter `gain` `[F]`).
private final class FeatureScale: Layer {
    let features: Int
    let backend: any Backend
    let gain: Tensor  // s [F]
    private let gainGradient: Tensor  // [F]
    private var cache: (input: Tensor, spread: Tensor, ones: Tensor)?

    init(features: Int, values: [Float], backend: any Backend) throws {
        self.features = features
        self.backend = backend
        gain = try backend.upload(values, shape: [features])
        gainGradient = try backend.zeros([features])
    }

    var parameters: [NamedParameter] { [NamedParameter(name: "gain", value: gain, gradient: gainGradient)] }
    var inputFeatures: Int? { features }

    func forward(_ input: Tensor, context: LayerContext) throws -> Tensor {
        let rows = input.count / features
        let ones = try backend.zeros([rows])
        try backend.fill(ones, with: 1)
        // s spread over the rows, [N, F] = 1 [N, 1] · sᵀ [1, F].
        let spread = try backend.zeros(input.shape)
        try backend.gemm(m: rows, n: features, k: 1, alpha: 1, a: MatrixOperand(ones, leadingDimension: 1),
                         b: MatrixOperand(gain, leadingDimension: features), beta: 0,
                         c: MatrixOperand(spread, leadingDimension: features))
        let output = try backend.zeros(input.shape)
        try backend.multiply(input, spread, into: output)
        cache = (input, spread, ones)
        return output
    }

    func backward(from outputGradient: Tensor) throws -> Tensor? {
        let (input, spread, ones) = try #require(cache)
        let rows = input.count / features
        // ds += Σ_n (dy ⊙ x)[n, :] = 1ᵀ [1, N] · (dy ⊙ x) [N, F].
        let product = try backend.zeros(input.shape)
        try backend.multiply(outputGradient, input, into: product)
        try backend.gemm(m: 1, n: features, k: rows, alpha: 1, a: MatrixOperand(ones, leadingDimension: rows),
                         b: MatrixOperand(product, leadingDimension: features), beta: 1,
                         c: MatrixOperand(gainGradient, leadingDimension: features))
        let inputGradient = try backend.zeros(input.shape)
        try backend.multiply(outputGradient, spread, into: inputGradient)
        return inputGradient
    }
}

@Suite struct SequentialCustomLayerTests {
    /// Embedding → FeatureScale → GRU (sequences) → FeatureScale → Dense with padded ids: the
    /// output equals the layers run by hand, the custom layers' parameters take their index as
    /// prefix, every parameter's gradient (the gains' included) matches finite differences of
    /// the whole model, and SGD steps through the chain lower a squared error.
    @Test(arguments: TestBackend.allCases)
    func customLayerComposesTrainsAndBackpropagates(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        var random = SeededGenerator(seed: 91)
        let embedding = try Embedding(vocabularySize: 7, embeddingSize: 3, seed: 1, backend: backend)
        let inner = try FeatureScale(features: 3, values: random.floats(3).map { 1 + 0.5 * $0 }, backend: backend)
        let recurrent = try RecurrentLayer(cell: .gru, inputSize: 3, hiddenSize: 4, seed: 2, backend: backend)
        let outer = try FeatureScale(features: 4, values: random.floats(4).map { 1 + 0.5 * $0 }, backend: backend)
        let dense = try Dense(inputSize: 4, outputSize: 2, seed: 3, backend: backend)
        let model = try Sequential([embedding, inner, recurrent, outer, dense])
        #expect(model.parameters.map(\.name).filter { $0.hasSuffix("gain") } == ["1.gain", "3.gain"])
        #expect(model.outputFeatures == 2)

        let ids: [Int32] = [3, 5, 2, 6, 1, 0, 4, 0, 0]  // [T = 3, B = 3], post-padded with 0
        let lengths = [3, 2, 1]
        let output = try model.forward(ids: ids, shape: [3, 3], padding: .post, training: false)
        let context = LayerContext(training: false, lengths: lengths, padding: .post)
        var byHand = try embedding.forward(ids: ids, shape: [3, 3])
        for layer in [inner, recurrent, outer, dense] as [any Layer] { byHand = try layer.forward(byHand, context: context) }
        assertClose(try backend.download(output), try backend.download(byHand), relativeTolerance: 0,
                    absoluteTolerance: 0, "\(which) Sequential with a custom layer vs by hand")

        let weights = random.floats(18)  // R, [T, B, 2]
        func loss() throws -> Double {
            trainingDot(try backend.download(try model.forward(ids: ids, shape: [3, 3], padding: .post,
                                                               training: false)), weights)
        }
        _ = try loss()
        try model.zeroGradients()
        #expect(try model.backward(try backend.upload(weights, shape: [3, 3, 2])) == nil)
        try expectParameterGradientsMatch(model.parameters, probingEvery: 2, "\(which)", loss: loss)

        let targets = try backend.upload(random.floats(18), shape: [3, 3, 2])
        let optimizer = try SGD(learningRate: 0.5, backend: backend)
        let lossSlot = try backend.zeros([1])
        var losses: [Float] = []
        let gainsBefore = try backend.download(inner.gain)
        for _ in 0..<8 {
            let predictions = try model.forward(ids: ids, shape: [3, 3], padding: .post, training: true)
            let gradient = try backend.zeros(predictions.shape)
            try backend.meanSquaredError(predictions: predictions, targets: targets, gradient: gradient,
                                         loss: lossSlot, at: 0)
            losses.append(try backend.download(lossSlot)[0])
            try model.zeroGradients()
            try model.backward(gradient)
            try optimizer.step(model.parameters)
        }
        #expect(losses.allSatisfy { $0.isFinite })
        #expect(losses.last! < 0.9 * losses.first!, "\(which) losses \(losses)")
        #expect(try backend.download(inner.gain) != gainsBefore)
    }

    /// A `Sequential` inside a `Sequential` (an encoder inside a model): its parameters take
    /// both indices, and forward and backward equal those of the flat chain of the same layers.
    @Test func sequentialNestsAsALayer() throws {
        let backend = TestBackends.cpu
        var random = SeededGenerator(seed: 17)
        let embedding = try Embedding(vocabularySize: 6, embeddingSize: 3, seed: 1, backend: backend)
        let recurrent = try RecurrentLayer(cell: .lstm, inputSize: 3, hiddenSize: 4, returnSequences: false, seed: 2,
                                           backend: backend)
        let dense = try Dense(inputSize: 4, outputSize: 2, seed: 3, backend: backend)
        let encoder = try Sequential([embedding, recurrent])
        let nested = try Sequential([encoder, dense])
        let flat = try Sequential([embedding, recurrent, dense])
        #expect(nested.parameters.map(\.name).prefix(2) == ["0.0.weight", "0.1.weight_ih_l0"])
        #expect(nested.parameters.map(\.name).suffix(2) == ["1.weight", "1.bias"])

        let ids: [Int32] = [4, 5, 2, 1, 3, 0]  // [T = 3, B = 2], post-padded
        let context = LayerContext(training: false, padding: .post)
        let nestedOutput = try backend.download(
            try nested.forward(try backend.upload(ids, shape: [3, 2]), context: context))
        let flatOutput = try backend.download(try flat.forward(ids: ids, shape: [3, 2], padding: .post, training: false))
        #expect(nestedOutput == flatOutput)

        let outputGradient = try backend.upload(random.floats(4), shape: [2, 2])
        try nested.zeroGradients()
        _ = try nested.forward(try backend.upload(ids, shape: [3, 2]), context: context)
        #expect(try nested.backward(from: outputGradient) == nil)
        let nestedGradients = try nested.parameters.map { try backend.download($0.gradient) }
        try flat.zeroGradients()
        _ = try flat.forward(ids: ids, shape: [3, 2], padding: .post, training: false)
        try flat.backward(outputGradient)
        #expect(try flat.parameters.map { try backend.download($0.gradient) } == nestedGradients)
    }

    /// An embedding run as a plain `Layer` on an int32 id tensor gives what its host-id path
    /// gives, and has no input gradient.
    @Test func embeddingAsLayerReadsAnIDTensor() throws {
        let backend = TestBackends.cpu
        let embedding = try Embedding(vocabularySize: 5, embeddingSize: 3, seed: 4, backend: backend)
        let ids: [Int32] = [1, 4, 0, 2]
        let fromHost = try backend.download(try embedding.forward(ids: ids, shape: [2, 2]))
        let layer: any Layer = embedding
        let fromTensor = try layer.forward(try backend.upload(ids, shape: [2, 2]), context: LayerContext(training: true))
        #expect(try backend.download(fromTensor) == fromHost)
        var random = SeededGenerator(seed: 5)
        #expect(try layer.backward(from: try backend.upload(random.floats(12), shape: [2, 2, 3])) == nil)
    }
}
