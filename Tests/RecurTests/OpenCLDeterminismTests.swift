import Testing
@testable import Recur

// Training on OpenCL gives the same bits every run: the embedding gradient's scatter-add sums in
// a fixed order (the CPU backend's, so the two agree exactly), two runs of the Trainer with one
// seed end with identical weights, and a run resumed from a checkpoint ends where an unbroken
// one does. Sizes are tiny: the point is the order of the sums, not the speed.

@Suite("OpenCL determinism")
struct OpenCLDeterminismTests {
    /// scatterAdd of `count` rows of width `width` onto a nonzero table gradient `[vocabulary,
    /// width]` on `backend`, with ids from `ids`.
    private func scatter(on backend: any Backend, ids: [Int32], vocabulary: Int, width: Int, seed: UInt64) throws
        -> [Float]
    {
        var random = SeededGenerator(seed: seed)
        let table = try backend.upload(random.floats(vocabulary * width), shape: [vocabulary, width])
        let gradient = try backend.upload(random.floats(ids.count * width), shape: [ids.count, width])
        try backend.scatterAdd(gradient, ids: try backend.upload(ids, shape: [ids.count]), into: table)
        return try table.toArray()
    }

    @Test("scatterAdd equals the CPU's bit for bit, repeated ids included",
          arguments: [(50, 7, 300, 4), (1000, 16, 2000, 1000), (12, 3, 1, 12), (200_000, 2, 40, 200_000)])
    func scatterAddMatchesTheCPU(vocabulary: Int, width: Int, count: Int, idBound: Int) throws {
        guard let openCL = try TestBackends.openCL() else { return }
        var random = SeededGenerator(seed: UInt64(vocabulary + count))
        // Few distinct ids where idBound is small, so most rows collect several; the last case
        // spreads a few ids over a wide range (the positions are then sorted, not counted).
        var ids = random.ids(count, below: min(idBound, max(1, count / 4)))
        if idBound > 100_000 { ids = ids.map { $0 * 19_999 } }
        let expected = try scatter(on: TestBackends.cpu, ids: ids, vocabulary: vocabulary, width: width, seed: 1)
        let actual = try scatter(on: openCL, ids: ids, vocabulary: vocabulary, width: width, seed: 1)
        #expect(actual == expected, "V=\(vocabulary) D=\(width) N=\(count)")
    }

    @Test func scatterAddGivesTheSameBitsEveryRun() throws {
        guard let openCL = try TestBackends.openCL() else { return }
        // 2^17 rows onto 2 ids, so that many work-groups add into the same elements at once:
        // unordered additions would round differently from run to run.
        var random = SeededGenerator(seed: 8)
        let ids = random.ids(1 << 17, below: 2)
        let first = try scatter(on: openCL, ids: ids, vocabulary: 2, width: 1, seed: 2)
        #expect(first == (try scatter(on: TestBackends.cpu, ids: ids, vocabulary: 2, width: 1, seed: 2)))
        for _ in 0..<6 {
            #expect(try scatter(on: openCL, ids: ids, vocabulary: 2, width: 1, seed: 2) == first)
        }
    }

    @Test func scatterAddReadsBackIdsItDidNotUpload() throws {
        guard let openCL = try TestBackends.openCL() else { return }
        // Ids made on the device (all 0) have no host copy: the backend reads them back.
        let ids = try openCL.zeros([5], dtype: .int32)
        let table = try openCL.zeros([2, 3])
        let gradient = try openCL.upload((0..<15).map(Float.init), shape: [5, 3])
        try openCL.scatterAdd(gradient, ids: ids, into: table)
        #expect(try table.toArray() == [30, 35, 40, 0, 0, 0])
    }

    @Test func scatterAddRejectsAnIdOutsideTheVocabularyLikeTheCPU() throws {
        guard let openCL = try TestBackends.openCL() else { return }
        for backend in [TestBackends.cpu, openCL] as [any Backend] {
            let table = try backend.zeros([4, 2])
            let gradient = try backend.zeros([3, 2])
            expectRecurError("\(backend.kind)", matches: { "\($0)".contains("id 4 at position 2 outside 0..<4") }) {
                try backend.scatterAdd(gradient, ids: try backend.upload([1, 3, 4] as [Int32], shape: [3]), into: table)
            }
        }
    }

    @Test func groupedPositionsListEachIdsPositionsInOrder() throws {
        let positions = try EmbeddingPositions(ids: [3, 1, 3, 0, 1, 3], vocabulary: 4, operation: "test")
        #expect(positions.rowCount == 3)
        // rows [0, 1, 3], starts [0, 1, 3, 6], positions grouped by id.
        #expect(positions.packed == [0, 1, 3, 0, 1, 3, 6, 3, 1, 4, 0, 2, 5])
        let sparse = try EmbeddingPositions(ids: [900_000, 5, 900_000], vocabulary: 1_000_000, operation: "test")
        #expect(sparse.packed == [5, 900_000, 0, 1, 3, 1, 0, 2])
        #expect(try EmbeddingPositions(ids: [], vocabulary: 4, operation: "test").packed == [0])
    }

    /// The embedding layer's gradient, padding row kept at 0, on both backends.
    @Test func embeddingGradientWithPaddingMatchesTheCPU() throws {
        guard let openCL = try TestBackends.openCL() else { return }
        var random = SeededGenerator(seed: 31)
        let ids = random.ids(6 * 5, below: 9)  // [T = 6, B = 5], padding id 0 among them
        #expect(ids.contains(0))
        let upstream = random.floats(ids.count * 4)
        var gradients: [[Float]] = []
        for backend in [TestBackends.cpu, openCL] as [any Backend] {
            let embedding = try Embedding(vocabularySize: 9, embeddingSize: 4, paddingIndex: 0, seed: 3, backend: backend)
            for _ in 0..<2 {  // twice: the gradient accumulates
                _ = try embedding.forward(ids: ids, shape: [6, 5])
                try embedding.backward(try backend.upload(upstream, shape: [6, 5, 4]))
            }
            gradients.append(try embedding.parameters[0].gradient.toArray())
        }
        #expect(gradients[0][0..<4].allSatisfy { $0 == 0 })
        #expect(gradients[1] == gradients[0])
    }

    // MARK: Training runs

    private static let training = Result { try markerExamples(count: 40, vocabulary: 12, steps: 5, seed: 41) }

    private func weights(of trainer: Trainer) throws -> [String: [Float]] {
        Dictionary(uniqueKeysWithValues: try trainer.model.parameters.map { ($0.name, try $0.value.toArray()) })
    }

    @Test func twoTrainingRunsEndWithIdenticalWeights() throws {
        guard let openCL = try TestBackends.openCL() else { return }
        let training = try Self.training.get()
        var results: [[String: [Float]]] = []
        for _ in 0..<2 {
            let trainer = try Trainer(specification: markerSpecification, configuration: markerConfiguration(epochs: 2),
                                      backend: openCL)
            try trainer.fit(training: training)
            results.append(try weights(of: trainer))
        }
        #expect(results[0].keys.sorted() == results[1].keys.sorted())
        for (name, values) in results[0] {
            #expect(results[1][name] == values, "\(name) differs between two runs")
        }
    }

    @Test func aResumedRunEndsWithTheWeightsOfAnUnbrokenOne() throws {
        guard let openCL = try TestBackends.openCL() else { return }
        let training = try Self.training.get()
        let configuration = markerConfiguration(epochs: 3)
        let straight = try Trainer(specification: markerSpecification, configuration: configuration, backend: openCL)
        let expected = try straight.fit(training: training)

        // Stop right after epoch 1 (3 steps of 16, 16, 8), whose checkpoint is then on disk.
        let folder = try TemporaryFolder()
        let interrupted = try Trainer(specification: markerSpecification, configuration: configuration,
                                      backend: openCL)
        interrupted.checkpointDirectory = folder.path
        let counter = StepCounter()
        interrupted.observer = { event in if case .step = event { counter.increment() } }
        #expect(throws: RecurError.self) {
            try interrupted.fit(training: StoppingExamples(inner: training, stopAfterSteps: 3, counter: counter),
                                validation: nil)
        }
        let checkpoint = try Checkpoint(contentsOf: folder.path + "/last.safetensors")
        #expect(checkpoint.progress.epoch == 1 && checkpoint.progress.batchInEpoch == 0)
        let resumed = try Trainer(resumingFrom: checkpoint, backend: openCL)
        let history = try resumed.fit(training: training)

        #expect(history.map(\.metrics) == expected.map(\.metrics))
        let (got, want) = (try weights(of: resumed), try weights(of: straight))
        for (name, values) in want {
            #expect(got[name] == values, "\(name) differs after resuming")
        }
    }
}
