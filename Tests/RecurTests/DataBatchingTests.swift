import Testing
@testable import Recur

@Suite struct DataBatchingTests {
    @Test func validationSplitTakesTheLastFractionLikeKeras() throws {
        let split = try ValidationSplit(count: 10, validationFraction: 0.2)
        #expect(split.training == 0..<8)
        #expect(split.validation == 8..<10)
        // Keras: split_at = int(5574 * (1 - 0.2)) = int(4459.2) = 4459.
        #expect(try ValidationSplit(count: 5574, validationFraction: 0.2).training == 0..<4459)
        #expect(try ValidationSplit(count: 10, validationFraction: 0.3).training == 0..<7)
    }

    @Test func validationSplitRejectsBadFractionsAndEmptyParts() {
        #expect(recurError { _ = try ValidationSplit(count: 10, validationFraction: 0) } != nil)
        #expect(recurError { _ = try ValidationSplit(count: 10, validationFraction: 1) } != nil)
        #expect(recurError { _ = try ValidationSplit(count: 1, validationFraction: 0.5) } != nil)
        // 1 − 1e-17 rounds to 1, so all 10 examples would train and none validate.
        #expect(recurError { _ = try ValidationSplit(count: 10, validationFraction: 1e-17) } != nil)
    }

    @Test func permutationIsSeededAndStable() {
        let order = seededPermutation(count: 10, seed: 42)
        #expect(order.sorted() == Array(0..<10))
        #expect(order == seededPermutation(count: 10, seed: 42))
        #expect(order != seededPermutation(count: 10, seed: 43))
        // Pinned: a change here changes every seeded training run's example order.
        #expect(order == Self.pinnedOrder)
        #expect(seededPermutation(count: 0, seed: 1).isEmpty)
    }

    static let pinnedOrder = [0, 9, 5, 8, 6, 4, 7, 2, 1, 3]

    @Test func miniBatchesKeepOrDropThePartialBatch() throws {
        let keep = try MiniBatchPlan(count: 10, batchSize: 4, shuffles: false)
        #expect(keep.batchesPerEpoch == 3)
        #expect(keep.batches(epoch: 0).map(Array.init) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]])
        let drop = try MiniBatchPlan(count: 10, batchSize: 4, shuffles: false, keepsPartialBatch: false)
        #expect(drop.batches(epoch: 0).map(Array.init) == [[0, 1, 2, 3], [4, 5, 6, 7]])
        #expect(try MiniBatchPlan(count: 0, batchSize: 4).batches(epoch: 0).isEmpty)
        #expect(recurError { _ = try MiniBatchPlan(count: 10, batchSize: 0) } != nil)
    }

    @Test func shuffledEpochsDifferAndRepeatPerSeed() throws {
        let plan = try MiniBatchPlan(count: 100, batchSize: 32, seed: 7)
        let first = plan.order(epoch: 0)
        #expect(first.sorted() == Array(0..<100))
        #expect(first != Array(0..<100))
        #expect(plan.order(epoch: 1) != first)
        // Resuming at epoch 1 in a new plan gives the same order as the uninterrupted run.
        #expect(try MiniBatchPlan(count: 100, batchSize: 32, seed: 7).order(epoch: 1) == plan.order(epoch: 1))
        #expect(try MiniBatchPlan(count: 100, batchSize: 32, seed: 8).order(epoch: 0) != first)
        let batches = plan.batches(epoch: 0)
        #expect(batches.map(\.count) == [32, 32, 32, 4])
        #expect(batches.flatMap { $0 } == first)
    }

    @Test func datasetSubsetAndShuffle() {
        let data = TextClassificationDataset(texts: ["a", "b", "c", "d"], labels: [0, 0, 1, 1], classNames: ["x", "y"])
        #expect(data.classCounts == [2, 2])
        let subset = data.subset([3, 0])
        #expect(subset.texts == ["d", "a"] && subset.labels == [1, 0])
        let shuffled = data.shuffled(seed: 3)
        #expect(shuffled == data.shuffled(seed: 3))
        #expect(shuffled.texts.sorted() == data.texts)
        for (text, label) in zip(shuffled.texts, shuffled.labels) {
            #expect(data.labels[data.texts.firstIndex(of: text)!] == label)
        }
    }
}
