import Testing
@testable import Recur

// A tiny model trained end to end on the CPU backend: Embedding → LSTM (many-to-one) → Dense(1)
// with sigmoid cross-entropy, AdamW, global-norm clipping and a warm-up + cosine schedule, on a
// synthetic task that is separable by one token: a sequence is positive when it holds the marker
// id 1 and negative when it holds the marker id 2, among random filler ids and pre-padding of
// varying length. The LSTM must carry the marker's evidence across up to 7 later steps.
//
// Sizes are small (T = 8, B = 16, H = 8) because tests build without optimisation, where the CPU
// recurrent steps run far slower than in a release build.

/// `count` sequences with their labels: lengths 2 ... 8, filler ids 3 ..< vocabulary, one marker at
/// a random position.
private func markerSequences(count: Int, vocabulary: Int, random: inout SeededGenerator) -> ([[Int32]], [Float]) {
    var sequences: [[Int32]] = []
    var labels: [Float] = []
    for _ in 0..<count {
        let length = Int.random(in: 2...8, using: &random)
        var sequence = (0..<length).map { _ in Int32.random(in: 3..<Int32(vocabulary), using: &random) }
        let positive = Bool.random(using: &random)
        sequence[Int.random(in: 0..<length, using: &random)] = positive ? 1 : 2
        sequences.append(sequence)
        labels.append(positive ? 1 : 0)
    }
    return (sequences, labels)
}

@Suite("Training end to end")
struct TrainingEndToEndTests {
    @Test func anLSTMClassifierLearnsASeparableTaskOnTheCPU() throws {
        let backend = TestBackends.cpu
        var random = SeededGenerator(seed: 61)
        let (vocabulary, steps, batchSize, trainingSteps) = (12, 8, 16, 250)
        let (trainingSequences, trainingLabels) = markerSequences(count: 1024, vocabulary: vocabulary, random: &random)
        let (testSequences, testLabels) = markerSequences(count: 256, vocabulary: vocabulary, random: &random)
        let training = try padSequences(trainingSequences, maxLength: steps, padding: .pre)
        let test = try padSequences(testSequences, maxLength: steps, padding: .pre)

        let model = try Sequential([
            try Embedding(vocabularySize: vocabulary, embeddingSize: 8, seed: 1, backend: backend),
            try RecurrentLayer(cell: .lstm, inputSize: 8, hiddenSize: 8, returnSequences: false, seed: 2,
                               backend: backend),
            try Dense(inputSize: 8, outputSize: 1, seed: 3, backend: backend),
        ])
        let optimizer = try AdamW(learningRate: 0.02, backend: backend)
        let schedule = try LearningRateSchedule.cosine(learningRate: 0.02, totalSteps: trainingSteps - 20,
                                                       minimum: 0.002).withWarmup(steps: 20)
        let clipper = try GradientClipper(.globalNorm(maxNorm: 1))
        let losses = try backend.zeros([trainingSteps])  // one slot per step, read once at the end
        let plan = try MiniBatchPlan(count: training.count, batchSize: batchSize, seed: 4, keepsPartialBatch: false)

        var step = 0
        var epoch = 0
        while step < trainingSteps {
            for indices in plan.batches(epoch: epoch) where step < trainingSteps {
                let batch = training.batch(indices)
                let logits = try model.forward(ids: batch.ids, shape: [steps, indices.count], padding: .pre,
                                               training: true)  // [B, 1]
                let targets = try backend.upload(indices.map { trainingLabels[$0] }, shape: [indices.count, 1])
                let gradient = try Loss.sigmoidCrossEntropy.evaluate(output: logits, targets: targets, loss: losses,
                                                                     at: step)
                try model.zeroGradients()
                try model.backward(gradient)
                let report = try clipper.clip(model.parameters, step: step)
                #expect(report.isFinite)
                try optimizer.step(model.parameters, schedule: schedule)
                step += 1
            }
            epoch += 1
        }

        let history = try backend.download(losses)
        let early = history[0..<20].reduce(0, +) / 20
        let late = history[(trainingSteps - 20)...].reduce(0, +) / 20
        #expect(late < early / 4, "mean loss fell only from \(early) to \(late)")

        let testBatch = test.batch(0..<test.count)
        let logits = try backend.download(
            try model.forward(ids: testBatch.ids, shape: [steps, test.count], padding: .pre, training: false))
        let correct = zip(logits, testLabels).count { ($0 > 0) == ($1 == 1) }
        let accuracy = Double(correct) / Double(test.count)
        #expect(accuracy >= 0.95, "held-out accuracy \(accuracy) after \(trainingSteps) steps")
    }
}
