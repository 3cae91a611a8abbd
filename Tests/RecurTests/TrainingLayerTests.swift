import Testing
@testable import Recur

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Dense, Embedding, Dropout and Sequential on every backend: forward against float64 references,
// backward against finite differences of the layer's own forward, the padding and id rules, and
// Sequential's PyTorch parameter names.
//
// Finite differences: loss = Σ output ⊙ R for fixed random R, summed in float64 on the host;
// central differences with eps = 1e-2 (1e-3 for ReLU, which is piecewise linear, so only a kink
// within eps of a pre-activation can disturb it). Dense and Embedding are linear in their
// parameters before the activation, so truncation error is ≈ eps² f‴/6 ≈ 1e-5 relative and float32
// rounding of the forward divided by 2 eps ≈ 1e-5 absolute: the 2e-3 + 1e-2 relative tolerance
// leaves a wide margin while a missing term or a transposed weight is off by O(1).

/// The float64 reference of `Dense`: y = f(x Wᵀ + b) row by row.
private func denseReference(_ x: [Float], rows: Int, weight: [Float], bias: [Float], inputSize: Int,
                            outputSize: Int, activation: Activation) -> [Float] {
    var y: [Float] = []
    for n in 0..<rows {
        for o in 0..<outputSize {
            var z = Double(bias[o])
            for i in 0..<inputSize { z += Double(x[n * inputSize + i]) * Double(weight[o * inputSize + i]) }
            let value: Double = switch activation {
            case .identity: z
            case .sigmoid: 1 / (1 + exp(-z))
            case .tanh: tanh(z)
            case .relu: max(z, 0)
            }
            y.append(Float(value))
        }
    }
    return y
}

@Suite("Training layers")
struct TrainingLayerTests {
    // MARK: Dense

    @Test(arguments: TestBackend.allCases, Activation.allCases)
    func denseForwardMatchesAFloat64Reference(_ which: TestBackend, _ activation: Activation) throws {
        guard let backend = try which.backend() else { return }
        var random = SeededGenerator(seed: 51)
        for (steps, batch, inputSize, outputSize) in [(1, 1, 1, 1), (3, 2, 7, 5), (2, 7, 33, 257)] {
            let dense = try Dense(inputSize: inputSize, outputSize: outputSize, activation: activation, seed: 3,
                                  backend: backend)
            let x = random.floats(steps * batch * inputSize)
            let y = try dense.forward(try backend.upload(x, shape: [steps, batch, inputSize]))
            #expect(y.shape == [steps, batch, outputSize])
            let expected = denseReference(
                x, rows: steps * batch, weight: try backend.download(dense.weight), bias: try backend.download(dense.bias),
                inputSize: inputSize, outputSize: outputSize, activation: activation)
            assertClose(try backend.download(y), expected, relativeTolerance: 1e-5, absoluteTolerance: 1e-6,
                        "\(which) dense \(activation) \(steps)x\(batch)x\(inputSize)->\(outputSize)")
        }
    }

    @Test(arguments: TestBackend.allCases, Activation.allCases)
    func denseGradientsMatchFiniteDifferences(_ which: TestBackend, _ activation: Activation) throws {
        guard let backend = try which.backend() else { return }
        var random = SeededGenerator(seed: 52)
        let (rows, inputSize, outputSize) = (4, 3, 5)
        let dense = try Dense(inputSize: inputSize, outputSize: outputSize, activation: activation, seed: 4,
                              backend: backend)
        let x = random.floats(rows * inputSize)
        let weights = random.floats(rows * outputSize)  // R
        func loss(_ input: [Float]) throws -> Double {
            trainingDot(try backend.download(try dense.forward(try backend.upload(input, shape: [rows, inputSize]))),
                        weights)
        }
        _ = try loss(x)
        let inputGradient = try backend.download(
            try dense.backward(try backend.upload(weights, shape: [rows, outputSize])))
        let eps: Float = activation == .relu ? 1e-3 : 1e-2
        expectGradientsMatch(numeric: try trainingNumericGradient(x, eps: eps, loss), analytic: inputGradient,
                             "\(which) \(activation) dL/dx")
        for parameter in dense.parameters {
            let original = try backend.download(parameter.value)
            let numeric = try trainingNumericGradient(original, eps: eps) { values in
                try trainingSetValues(parameter.value, values)
                return try loss(x)
            }
            try trainingSetValues(parameter.value, original)
            expectGradientsMatch(numeric: numeric, analytic: try backend.download(parameter.gradient),
                                 "\(which) \(activation) dL/d\(parameter.name)")
        }
    }

    @Test("Dense over parts is Dense over their concatenation, forward and backward", arguments: TestBackend.allCases)
    func denseOverPartsIsDenseOverTheirConcatenation(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        var random = SeededGenerator(seed: 54)
        let (rows, widths, outputSize) = (6, [3, 5, 2], 4)
        let inputSize = widths.reduce(0, +)
        func make() throws -> Dense {
            try Dense(inputSize: inputSize, outputSize: outputSize, activation: .tanh, seed: 6, backend: backend)
        }
        let (split, joined) = (try make(), try make())
        let parts = widths.map { random.floats(rows * $0) }
        var concatenated: [Float] = []
        for n in 0..<rows {
            for (part, width) in zip(parts, widths) { concatenated += part[(n * width)..<((n + 1) * width)] }
        }
        let dy = random.floats(rows * outputSize)
        let y = try split.forward(concatenating: zip(parts, widths).map { try backend.upload($0, shape: [rows, $1]) })
        let expected = try joined.forward(try backend.upload(concatenated, shape: [rows, inputSize]))
        assertClose(try backend.download(y), try backend.download(expected), relativeTolerance: 1e-6,
                    absoluteTolerance: 1e-7, "\(which) forward")
        let partGradients = try split.backward(toParts: try backend.upload(dy, shape: [rows, outputSize]))
        let inputGradient = try backend.download(joined.backward(try backend.upload(dy, shape: [rows, outputSize])))
        var column = 0
        for (gradient, width) in zip(partGradients, widths) {
            let expectedPart = (0..<rows).flatMap { n in inputGradient[(n * inputSize + column)..<(n * inputSize + column + width)] }
            assertClose(try backend.download(gradient), Array(expectedPart), relativeTolerance: 1e-6,
                        absoluteTolerance: 1e-7, "\(which) dL/dx part at column \(column)")
            column += width
        }
        for (a, b) in zip(split.parameters, joined.parameters) {
            assertClose(try backend.download(a.gradient), try backend.download(b.gradient), relativeTolerance: 1e-6,
                        absoluteTolerance: 1e-7, "\(which) dL/d\(a.name)")
        }
        #expect(throws: RecurError.self) {
            try split.forward(concatenating: [try backend.upload(parts[0], shape: [rows, widths[0]])])
        }
    }

    @Test(arguments: TestBackend.allCases)
    func denseAccumulatesIntoItsGradientsUntilZeroed(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        var random = SeededGenerator(seed: 53)
        let dense = try Dense(inputSize: 3, outputSize: 2, activation: .tanh, seed: 5, backend: backend)
        let x = try backend.upload(random.floats(12), shape: [4, 3])
        let dy = try backend.upload(random.floats(8), shape: [4, 2])
        _ = try dense.forward(x)
        _ = try dense.backward(dy)
        let once = try dense.parameters.map { try backend.download($0.gradient) }
        _ = try dense.backward(dy)
        let twice = try dense.parameters.map { try backend.download($0.gradient) }
        for (a, b) in zip(once, twice) {
            assertClose(b, a.map { 2 * $0 }, relativeTolerance: 1e-6, absoluteTolerance: 1e-7, "\(which) accumulation")
        }
        try dense.zeroGradients()
        #expect(try dense.parameters.allSatisfy { try backend.download($0.gradient).allSatisfy { $0 == 0 } })
    }

    @Test func denseInitialisationFollowsPyTorchOrGlorot() throws {
        let cpu = TestBackends.cpu
        let pytorch = try Dense(inputSize: 16, outputSize: 8, initialization: .pytorch, seed: 1, backend: cpu)
        let bound: Float = 1 / 4
        #expect(try cpu.download(pytorch.weight).allSatisfy { abs($0) <= bound })
        #expect(try cpu.download(pytorch.bias).allSatisfy { abs($0) <= bound } && cpu.download(pytorch.bias).contains { $0 != 0 })
        let glorot = try Dense(inputSize: 16, outputSize: 8, initialization: .glorotUniform, seed: 1, backend: cpu)
        let limit = Float((6.0 / 24).squareRoot())
        let weights = try cpu.download(glorot.weight)
        #expect(weights.allSatisfy { abs($0) <= limit } && weights.contains { abs($0) > bound })
        #expect(try cpu.download(glorot.bias).allSatisfy { $0 == 0 })
        #expect(pytorch.parameters.map(\.name) == ["weight", "bias"])
        #expect(pytorch.weight.shape == [8, 16])
    }

    // MARK: Embedding

    @Test(arguments: TestBackend.allCases)
    func embeddingGathersRowsAndScatterAddsGradients(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        var random = SeededGenerator(seed: 54)
        let embedding = try Embedding(vocabularySize: 7, embeddingSize: 3, seed: 2, backend: backend)
        let table = try backend.download(embedding.weight)
        #expect(table[0..<3].allSatisfy { $0 == 0 }, "the padding row starts at 0")
        let ids: [Int32] = [3, 0, 5, 3, 6, 1]  // [T = 3, B = 2], id 3 twice
        let output = try embedding.forward(ids: ids, shape: [3, 2])
        #expect(output.shape == [3, 2, 3])
        assertClose(try backend.download(output), ids.flatMap { table[(Int($0) * 3)..<(Int($0) * 3 + 3)] },
                    relativeTolerance: 0, absoluteTolerance: 0, "\(which) gather")

        let weights = random.floats(18)  // R
        func loss(_ values: [Float]) throws -> Double {
            try trainingSetValues(embedding.weight, values)
            return trainingDot(try backend.download(try embedding.forward(ids: ids, shape: [3, 2])), weights)
        }
        _ = try loss(table)
        try embedding.backward(try backend.upload(weights, shape: [3, 2, 3]))
        let analytic = try backend.download(embedding.parameters[0].gradient)
        var numeric = try trainingNumericGradient(table, eps: 1e-2, loss)
        numeric.replaceSubrange(0..<3, with: [0, 0, 0])  // padding_idx: no gradient for row 0
        expectGradientsMatch(numeric: numeric, analytic: analytic, "\(which) dL/dtable")
        // Row 3 was looked up twice: its gradient is the sum of both rows of R.
        assertClose(Array(analytic[9..<12]), (0..<3).map { weights[$0] + weights[9 + $0] }, relativeTolerance: 1e-6,
                    "\(which) repeated id")
    }

    @Test(arguments: TestBackend.allCases)
    func embeddingRejectsIdsOutsideTheVocabularyNamingThePosition(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        let embedding = try Embedding(vocabularySize: 5, embeddingSize: 2, backend: backend)
        for (ids, bad, position, index) in [([1, 2, 5, 0] as [Int32], 5, 2, "[1, 0]"), ([-1, 0, 0, 0], -1, 0, "[0, 0]")] {
            expectRecurError("\(which) id \(bad)", matches: { error in
                guard case .invalidArgument(_, let detail) = error else { return false }
                return detail.contains("id \(bad) at position \(position) (index \(index) of [2, 2])")
            }) {
                _ = try embedding.forward(ids: ids, shape: [2, 2])
            }
        }
        #expect(throws: RecurError.self) { try Embedding(vocabularySize: 5, embeddingSize: 2, paddingIndex: 5, backend: backend) }
    }

    @Test func lengthsFromPaddedIds() throws {
        // Rows (batch-first): [0 0 4 5], [7 0 3 0], [0 0 0 0], [1 2 3 4], padded as noted.
        let rows: [[Int32]] = [[0, 0, 4, 5], [7, 0, 3, 0], [0, 0, 0, 0], [1, 2, 3, 4]]
        let batchFirst = Array(rows.joined())
        let timeMajor = (0..<4).flatMap { t in rows.map { $0[t] } }
        #expect(try Embedding.lengths(ofPadded: timeMajor, steps: 4, padding: .pre) == [2, 4, 0, 4])
        #expect(try Embedding.lengths(ofPadded: timeMajor, steps: 4, padding: .post) == [4, 3, 0, 4])
        #expect(try Embedding.lengths(ofPadded: batchFirst, steps: 4, padding: .pre, batchFirst: true) == [2, 4, 0, 4])
        #expect(try Embedding.lengths(ofPadded: batchFirst, steps: 4, padding: .post, batchFirst: true) == [4, 3, 0, 4])
        #expect(try Embedding.lengths(ofPadded: [9, 9, 3], steps: 3, padding: .pre, paddingIndex: 9) == [1])
        #expect(try Embedding.lengths(ofPadded: [9, 9, 3], steps: 3, padding: .post, paddingIndex: 9) == [3])
        #expect(throws: RecurError.self) { try Embedding.lengths(ofPadded: [1, 2, 3], steps: 2, padding: .pre) }
        // The same lengths padSequences reports.
        let padded = try padSequences([[4, 5], [7, 1, 3], [2]], maxLength: 4, padding: .pre)
        let batch = padded.batch(0..<3)
        #expect(try Embedding.lengths(ofPadded: batch.ids, steps: batch.steps, padding: .pre) == batch.lengths)
    }

    // MARK: Dropout

    @Test(arguments: TestBackend.allCases)
    func dropoutZeroesAndRescalesInTrainingOnly(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        let dropout = try Dropout(probability: 0.25, seed: 9, backend: backend)
        let ones = try backend.upload([Float](repeating: 1, count: 4000), shape: [40, 100])
        let output = try backend.download(try dropout.forward(ones, training: true))
        let dropped = output.count { $0 == 0 }
        #expect(output.allSatisfy { $0 == 0 || abs($0 - 4.0 / 3) < 1e-6 })
        #expect(abs(Double(dropped) / 4000 - 0.25) < 0.03, "\(dropped) of 4000 dropped")
        let gradient = try backend.download(try dropout.backward(ones))
        #expect(gradient == output, "backward applies the forward's mask")

        let inference = try dropout.forward(ones, training: false)
        #expect(inference === ones)
        #expect(try dropout.backward(ones) === ones)

        // The same seed gives the same mask on every backend.
        let reference = try Dropout(probability: 0.25, seed: 9, backend: TestBackends.cpu)
        let onCPU = try reference.forward(try TestBackends.cpu.upload([Float](repeating: 1, count: 4000), shape: [40, 100]),
                                          training: true)
        #expect(try TestBackends.cpu.download(onCPU) == output)
        #expect(throws: RecurError.self) { try Dropout(probability: 1, backend: backend) }
    }

    // MARK: Sequential

    @Test func sequentialNamesParametersAsPyTorch() throws {
        let backend = TestBackends.cpu
        let model = try Sequential([
            try Embedding(vocabularySize: 10, embeddingSize: 4, backend: backend),
            try RecurrentLayer(cell: .lstm, inputSize: 4, hiddenSize: 3, layerCount: 2, bidirectional: true,
                               returnSequences: false, backend: backend),
            try Dropout(probability: 0.5, backend: backend),
            try Dense(inputSize: 6, outputSize: 1, backend: backend),
        ])
        let names = model.parameters.map(\.name)
        #expect(names.first == "0.weight")
        #expect(names.contains("1.weight_ih_l0") && names.contains("1.bias_hh_l1_reverse"))
        #expect(names.suffix(2) == ["3.weight", "3.bias"])
        #expect(Set(names).count == names.count)
        #expect(names.count == 1 + 16 + 2)
    }

    @Test func sequentialRejectsLayersThatDoNotFit() throws {
        let backend = TestBackends.cpu
        let isShape: (RecurError) -> Bool = { if case .shapeMismatch = $0 { return true } else { return false } }
        let isInvalid: (RecurError) -> Bool = { if case .invalidArgument = $0 { return true } else { return false } }
        expectRecurError("embedding width vs recurrent input", matches: isShape) {
            _ = try Sequential([
                try Embedding(vocabularySize: 10, embeddingSize: 4, backend: backend),
                try RecurrentLayer(cell: .gru, inputSize: 5, hiddenSize: 3, backend: backend),
            ])
        }
        expectRecurError("bidirectional width vs dense input", matches: isShape) {
            _ = try Sequential([
                try RecurrentLayer(cell: .gru, inputSize: 5, hiddenSize: 3, bidirectional: true, backend: backend),
                try Dropout(probability: 0.1, backend: backend),
                try Dense(inputSize: 3, outputSize: 1, backend: backend),
            ])
        }
        expectRecurError("embedding not first", matches: isInvalid) {
            _ = try Sequential([
                try Dense(inputSize: 3, outputSize: 3, backend: backend),
                try Embedding(vocabularySize: 10, embeddingSize: 3, backend: backend),
            ])
        }
        expectRecurError("empty", matches: isInvalid) { _ = try Sequential([]) }
    }

    /// Embedding → LSTM (many-to-one) → Dense with pre-padded ids: the output equals the layers run
    /// by hand with the lengths padSequences reports, and every parameter's gradient matches
    /// finite differences of the whole model.
    @Test(arguments: TestBackend.allCases)
    func sequentialRunsEmbeddingRecurrentDenseWithLengthsFromPadding(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        var random = SeededGenerator(seed: 55)
        let embedding = try Embedding(vocabularySize: 6, embeddingSize: 3, seed: 1, backend: backend)
        let recurrent = try RecurrentLayer(cell: .lstm, inputSize: 3, hiddenSize: 4, returnSequences: false, seed: 2,
                                           backend: backend)
        let dense = try Dense(inputSize: 4, outputSize: 2, seed: 3, backend: backend)
        let model = try Sequential([embedding, recurrent, dense])
        let padded = try padSequences([[4, 5, 1], [2], [3, 1, 2, 5]], maxLength: 4, padding: .pre)
        let batch = padded.batch(0..<3)  // ids [T = 4, B = 3]

        let output = try model.forward(ids: batch.ids, shape: [4, 3], padding: .pre, training: false)
        let byHand = try dense.forward(try recurrent.forward(
            try embedding.forward(ids: batch.ids, shape: [4, 3]), lengths: batch.lengths, padding: .pre,
            training: false).output)
        assertClose(try backend.download(output), try backend.download(byHand), relativeTolerance: 0,
                    absoluteTolerance: 0, "\(which) Sequential vs by hand")

        let weights = random.floats(6)  // R, [B, 2]
        func loss() throws -> Double {
            trainingDot(try backend.download(try model.forward(ids: batch.ids, shape: [4, 3], padding: .pre,
                                                               training: false)), weights)
        }
        _ = try loss()
        try model.zeroGradients()
        #expect(try model.backward(try backend.upload(weights, shape: [3, 2])) == nil)
        try expectParameterGradientsMatch(model.parameters, probingEvery: 3, "\(which) Sequential", loss: loss)
    }
}
