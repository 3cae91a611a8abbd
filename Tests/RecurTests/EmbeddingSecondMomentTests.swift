import Foundation
import Testing
@testable import Recur

/// The per-occurrence second moment of an embedding (Keras 3 on TensorFlow): v adds Σ_i g_i² for
/// a row its ids hit n times, where the summed rule (PyTorch) adds (Σ_i g_i)².
@Suite struct EmbeddingSecondMomentTests {
    /// V, D, T, B of the embeddings under test: 30 ids over 7 rows, so most rows repeat, and the
    /// padding row 0 and the unseen rows 7, 8 are in every table.
    private static let (vocabulary, width, steps, batch) = (9, 4, 6, 5)

    /// The float64 gradient Σ_i g_i and per-occurrence squares Σ_i g_i² of a table, row 0 (the
    /// padding) left at 0.
    private static func referenceSums(ids: [Int32], upstream: [Float]) -> (gradient: [Double], squares: [Double]) {
        var gradient = [Double](repeating: 0, count: vocabulary * width)  // [V, D]
        var squares = gradient  // [V, D]
        for (position, id) in ids.enumerated() where id != 0 {
            for d in 0..<width {
                let g = Double(upstream[position * width + d])
                gradient[Int(id) * width + d] += g
                squares[Int(id) * width + d] += g * g
            }
        }
        return (gradient, squares)
    }

    /// Three steps of `optimizer` on a per-occurrence embedding, each with fresh seeded ids and
    /// upstream gradients, checked against `reference` (the float64 step of the same optimizer,
    /// given the parameter, Σ g, Σ g² and the step) after every step; the squares too.
    private static func expectSteps(
        _ which: TestBackend, _ what: String, seed: UInt64, makeOptimizer: (any Backend) throws -> any Optimizer,
        reference: (inout [Double], [Double], [Double], Int) -> Void
    ) throws {
        guard let backend = try which.backend() else { return }
        var random = SeededGenerator(seed: seed)
        let embedding = try Embedding(vocabularySize: vocabulary, embeddingSize: width, seed: seed, backend: backend)
        try embedding.setSecondMoment(.perOccurrence)
        #expect(embedding.secondMoment == .perOccurrence)
        let optimizer = try makeOptimizer(backend)
        var parameter = try backend.download(embedding.weight).map(Double.init)  // [V, D]
        for step in 1...3 {
            let ids = random.ids(steps * batch, below: 7)
            let upstream = random.floats(steps * batch * width)  // [T, B, D]
            try embedding.zeroGradients()
            _ = try embedding.forward(ids: ids, shape: [steps, batch])
            try embedding.backward(try backend.upload(upstream, shape: [steps, batch, width]))
            let (gradient, squares) = referenceSums(ids: ids, upstream: upstream)
            let squaredGradient = try #require(embedding.parameters[0].squaredGradient)
            assertClose(try backend.download(squaredGradient), squares.map(Float.init), relativeTolerance: 1e-5,
                        "\(which) \(what) step \(step): Σ g²")
            try optimizer.step(embedding.parameters)
            reference(&parameter, gradient, squares, step)
            assertClose(try backend.download(embedding.weight), parameter.map(Float.init), relativeTolerance: 1e-4,
                        absoluteTolerance: 1e-5, "\(which) \(what) step \(step): table")
        }
    }

    @Test(arguments: TestBackend.allCases)
    func adamAddsTheSumOfSquaresPerOccurrence(_ which: TestBackend) throws {
        for (what, decay, decoupled) in [("Adam", Float(0), false), ("AdamW", Float(0.1), true)] {
            var (m, v) = ([Double](repeating: 0, count: 36), [Double](repeating: 0, count: 36))
            try Self.expectSteps(which, what, seed: 81, makeOptimizer: { backend in
                decoupled ? try AdamW(learningRate: 0.05, weightDecay: decay, backend: backend)
                    : try Adam(learningRate: 0.05, backend: backend)
            }, reference: { parameter, gradient, squares, step in
                TrainingReference.adamStep(
                    parameter: &parameter, gradient: gradient, squaredGradient: squares, firstMoment: &m,
                    secondMoment: &v, hyperparameters: AdamUpdate(learningRate: 0.05, weightDecay: decay,
                                                                  decoupledWeightDecay: decoupled, step: step))
            })
        }
    }

    @Test(arguments: TestBackend.allCases)
    func rmsPropAddsTheSumOfSquaresPerOccurrence(_ which: TestBackend) throws {
        for momentum: Float in [0, 0.9] {
            var squareAverage = [Double](repeating: 0, count: 36)
            var buffer: [Double]? = momentum != 0 ? [Double](repeating: 0, count: 36) : nil
            try Self.expectSteps(which, "RMSProp momentum \(momentum)", seed: 82, makeOptimizer: { backend in
                try RMSProp(learningRate: 0.01, momentum: momentum, backend: backend)
            }, reference: { parameter, gradient, squares, _ in
                TrainingReference.rmsPropStep(
                    parameter: &parameter, gradient: gradient, squaredGradient: squares, squareAverage: &squareAverage,
                    momentumBuffer: &buffer, hyperparameters: RMSPropUpdate(learningRate: 0.01, momentum: momentum))
            })
        }
    }

    @Test func summedIsTheDefaultAndKeepsNoSquares() throws {
        let embedding = try Embedding(vocabularySize: 5, embeddingSize: 2, backend: TestBackends.cpu)
        #expect(embedding.secondMoment == .summed)
        #expect(embedding.parameters[0].squaredGradient == nil)
        try embedding.setSecondMoment(.perOccurrence)
        let model = try Sequential([embedding])
        #expect(model.parameters[0].squaredGradient != nil, "a model's names keep the squares")
        try embedding.setSecondMoment(.summed)
        #expect(embedding.parameters[0].squaredGradient == nil)
    }

    @Test func clippingAndAccumulationScaleTheSquaresByTheFactorSquared() throws {
        let backend = TestBackends.cpu
        var random = SeededGenerator(seed: 83)
        let values = random.floats(6)
        let gradient = try backend.upload(values, shape: [3, 2])
        let squares = try backend.upload(values.map { $0 * $0 + 0.5 }, shape: [3, 2])
        let parameter = NamedParameter(name: "0.weight", value: try backend.zeros([3, 2]), gradient: gradient,
                                       squaredGradient: squares)
        let norm = values.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot()
        let report = try GradientClipper(.globalNorm(maxNorm: Float(norm / 4))).clip([parameter], step: 1)
        let factor = report.scale
        #expect(factor < 0.3)
        assertClose(try backend.download(squares), values.map { ($0 * $0 + 0.5) * factor * factor },
                    relativeTolerance: 1e-5, "squares after clipping")
        var accumulation = try GradientAccumulation(microBatchCount: 2)
        #expect(try !accumulation.add([parameter]))
        #expect(try accumulation.add([parameter]))
        assertClose(try backend.download(squares), values.map { ($0 * $0 + 0.5) * factor * factor / 4 },
                    relativeTolerance: 1e-5, "squares after averaging two micro-batches")
        expectRecurError("value clipping", matches: { error in
            guard case .invalidArgument(_, let detail) = error else { return false }
            return detail.contains("value clipping cannot clip the per-occurrence squared gradient of '0.weight'")
        }) {
            try GradientClipper(.value(limit: 0.1)).clip([parameter], step: 1)
        }
    }

    @Test(arguments: TestBackend.allCases)
    func l2WeightDecayWithSquaresIsRefused(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        let tensors = try (0..<5).map { _ in try backend.upload([0.5, -0.25], shape: [2]) }
        expectRecurError("\(which) Adam L2", matches: { error in
            guard case .invalidArgument(_, let detail) = error else { return false }
            return detail.contains("L2 weight decay 0.01")
        }) {
            try backend.adamStep(parameter: tensors[0], gradient: tensors[1], squaredGradient: tensors[2],
                                 firstMoment: tensors[3], secondMoment: tensors[4],
                                 hyperparameters: AdamUpdate(learningRate: 0.1, weightDecay: 0.01, step: 1))
        }
        expectRecurError("\(which) RMSProp L2", matches: { error in
            guard case .invalidArgument(_, let detail) = error else { return false }
            return detail.contains("L2 weight decay 0.01")
        }) {
            try backend.rmsPropStep(parameter: tensors[0], gradient: tensors[1], squaredGradient: tensors[2],
                                    squareAverage: tensors[3], momentumBuffer: nil,
                                    hyperparameters: RMSPropUpdate(learningRate: 0.1, weightDecay: 0.01))
        }
    }

    @Test func configurationRefusesOptimizersAndClippingThatCannotUseTheSquares() throws {
        let refused: [(OptimizerSpecification, GradientClipping, String)] = [
            (.sgd(learningRate: 0.1), .none, "SGD keeps no second moment"),
            (.adam(learningRate: 0.1, weightDecay: 0.01), .none, "L2 weight decay 0.01"),
            (.rmsProp(learningRate: 0.1, weightDecay: 0.02), .none, "L2 weight decay 0.02"),
            (.adam(learningRate: 0.1), .value(limit: 1), "value clipping"),
        ]
        for (optimizer, clipping, message) in refused {
            let configuration = TrainingConfiguration(epochs: 1, batchSize: 4, optimizer: optimizer, clipping: clipping,
                                                      embeddingSecondMoment: .perOccurrence)
            expectRecurError(message, matches: { error in
                guard case .invalidArgument(_, let detail) = error else { return false }
                return detail.contains(message)
            }) {
                try configuration.validate()
            }
        }
        for optimizer: OptimizerSpecification in [.adam(learningRate: 0.1), .adamW(learningRate: 0.1),
                                                  .rmsProp(learningRate: 0.1, momentum: 0.5)] {
            try TrainingConfiguration(epochs: 1, batchSize: 4, optimizer: optimizer, clipping: .globalNorm(maxNorm: 1),
                                      embeddingSecondMoment: .perOccurrence).validate()
        }
    }

    @Test func configurationRecordsTheRuleAndReadsItsAbsenceAsSummed() throws {
        let configuration = TrainingConfiguration(epochs: 2, batchSize: 8, optimizer: .adam(learningRate: 0.01),
                                                  embeddingSecondMoment: .perOccurrence)
        let json = try RecurJSON.string(configuration)
        #expect(json.contains("\"embeddingSecondMoment\":\"perOccurrence\""), "\(json)")
        #expect(try JSONDecoder().decode(TrainingConfiguration.self, from: Data(json.utf8)) == configuration)
        let older = json.replacingOccurrences(of: ",\"embeddingSecondMoment\":\"perOccurrence\"", with: "")
        #expect(older != json)
        #expect(try JSONDecoder().decode(TrainingConfiguration.self, from: Data(older.utf8)).embeddingSecondMoment
            == .summed)
    }

    @Test func perOccurrenceTrainingResumesExactlyFromItsCheckpoint() throws {
        let flag = ["--embedding-second-moment", "per-occurrence"]
        let resumed = try expectTrainingResumesExactly(flag, seed: 84)
        let checkpoint = try Checkpoint(contentsOf: resumed.resumedCheckpoints + "/last.safetensors")
        #expect(checkpoint.configuration.embeddingSecondMoment == .perOccurrence)
        func stepLog(_ extra: [String]) throws -> String {
            let log = resumed.folder.path + "/\(extra.count).jsonl"
            let run = try runRecur(["train", "--device", "cpu", "--data", resumed.data, "--format", "tsv",
                                    "--no-header", "--max-length", "5", "--embedding", "4", "--hidden", "5",
                                    "--epochs", "1", "--batch-size", "8", "--validation-split", "0",
                                    "--step-log", log] + extra)
            #expect(run.status == 0, "\(run.stderr)")
            return try String(contentsOfFile: log, encoding: .utf8)
        }
        #expect(try stepLog([]) != stepLog(flag), "the rule changes the run")
        let wrong = try runRecur(["train", "--device", "cpu", "--data", resumed.data, "--format", "tsv",
                                  "--embedding-second-moment", "sparse"])
        #expect(wrong.status != 0 && wrong.stderr.contains("summed or per-occurrence"), "\(wrong.stderr)")
    }
}
