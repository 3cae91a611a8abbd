import Testing
@testable import Recur

/// A tiny sequence classifier and its training step, for the tests that run many steps or fail
/// one midway: Embedding(6, 4) → LSTM(4 → 4, many-to-one) → Dense(4 → 1), sigmoid cross-entropy,
/// Adam and global-norm clipping, on batches of T = 3 steps × B = 2 sequences.
final class TinyTrainer {
    static let (vocabulary, steps, batch) = (6, 3, 2)

    let backend: any Backend
    let model: Sequential
    let optimizer: Adam
    let clipper: GradientClipper
    /// One loss slot per step of the longest run a test makes, read back only when asked.
    let losses: Tensor
    private var random = SeededGenerator(seed: 97)

    init(backend: any Backend, lossSlots: Int = 1) throws {
        self.backend = backend
        model = try Sequential([
            try Embedding(vocabularySize: Self.vocabulary, embeddingSize: 4, seed: 1, backend: backend),
            try RecurrentLayer(cell: .lstm, inputSize: 4, hiddenSize: 4, returnSequences: false, seed: 2,
                               backend: backend),
            try Dense(inputSize: 4, outputSize: 1, seed: 3, backend: backend),
        ])
        optimizer = try Adam(learningRate: 0.01, backend: backend)
        clipper = try GradientClipper(.globalNorm(maxNorm: 1))
        losses = try backend.zeros([lossSlots])
    }

    /// One training step on a fresh random batch (ids 1 ..< V, no padding), its loss written to
    /// `losses[slot]`.
    func step(slot: Int = 0) throws {
        let ids = random.ids(Self.steps * Self.batch, below: Self.vocabulary - 1).map { $0 + 1 }
        let labels: [Float] = (0..<Self.batch).map { _ in Float(random.next() & 1) }
        let logits = try model.forward(ids: ids, shape: [Self.steps, Self.batch], padding: .pre, training: true)
        let targets = try backend.upload(labels, shape: [Self.batch, 1])
        let gradient = try Loss.sigmoidCrossEntropy.evaluate(output: logits, targets: targets, loss: losses, at: slot)
        try model.zeroGradients()
        try model.backward(gradient)
        _ = try clipper.clip(model.parameters, step: slot)
        try optimizer.step(model.parameters)
    }
}
