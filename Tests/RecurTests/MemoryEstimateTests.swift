import Foundation
import Testing
@testable import Recur

// The memory estimate of a run against what a backend measures, its saturating arithmetic, and
// the refusals it gives before anything is allocated.

@Suite struct MemoryEstimateTests {
    /// An estimate must stay within this factor of the measured peak either way: close enough that
    /// a refusal names a real shortage, loose enough for the scratch it leaves out.
    static let factor = 2.0

    private func expectClose(_ estimate: Int, _ measured: Int, _ what: String) {
        let ratio = Double(estimate) / Double(max(measured, 1))
        #expect(ratio >= 1 / Self.factor && ratio <= Self.factor,
                "\(what): estimated \(estimate) bytes, measured peak \(measured) (ratio \(ratio))")
    }

    @Test(arguments: [RecurrentCell.lstm, .gru, .rnnTanh])
    func benchmarkEstimateMatchesTheMeasuredPeak(_ cell: RecurrentCell) throws {
        let configuration = BenchmarkConfiguration(cell: cell, batch: 8, steps: 24, inputSize: 12, hiddenSize: 16,
                                                   layers: 2, bidirectional: true)
        for pass in BenchmarkPass.allCases {
            // A backend of its own: its peak counts this measurement's buffers alone.
            let backend = CPUBackend()
            let measurement = try Benchmark(backend: backend, warmup: 0, repetitions: 1).measure(configuration, pass: pass)
            expectClose(configuration.memoryEstimate(pass).total, measurement.peakBytes, "\(cell) \(pass)")
        }
    }

    /// h, the outputs and their gradients P wide, c and the gates H, the backward's u and dL/dh_t.
    @Test(arguments: [4, 12])
    func projectionEstimateMatchesTheMeasuredPeak(_ projectionSize: Int) throws {
        let configuration = BenchmarkConfiguration(cell: .lstmProjection, batch: 8, steps: 24, inputSize: 12,
                                                   hiddenSize: 16, layers: 2, bidirectional: true,
                                                   projectionSize: projectionSize)
        for pass in BenchmarkPass.allCases {
            let backend = CPUBackend()
            let measurement = try Benchmark(backend: backend, warmup: 0, repetitions: 1).measure(configuration, pass: pass)
            expectClose(configuration.memoryEstimate(pass).total, measurement.peakBytes, "P \(projectionSize) \(pass)")
        }
    }

    @Test(arguments: [ModelTask.classify, .lm])
    func modelEstimateMatchesTheMeasuredPeakOfATrainingStep(_ task: ModelTask) throws {
        let (steps, batch, vocabulary) = (20, 8, 30)
        let specification = ModelSpecification(
            task: task, vocabularySize: vocabulary, embeddingSize: 8, cell: .lstm, hiddenSize: 16,
            outputSize: task == .lm ? vocabulary : 3, seed: 4)
        let backend = CPUBackend()
        let model = try specification.makeModel(backend: backend)
        let optimizer = try Adam(learningRate: 1e-3, backend: backend)
        var random = SeededGenerator(seed: 31)
        let ids = random.ids(steps * batch, below: vocabulary - 2).map { $0 + 2 }  // [T, B], no padding
        let classes: [Int32] = task == .lm
            ? random.ids(steps * batch, below: vocabulary - 2).map { $0 + 2 }
            : random.ids(batch, below: 3)
        let losses = try backend.zeros([1])
        let targets = try backend.upload(classes, shape: [classes.count])
        let logits = try model.forward(ids: ids, shape: [steps, batch], padding: .pre, training: true)
        let gradient = try specification.loss.evaluate(output: logits, targets: targets, loss: losses, at: 0)
        try model.zeroGradients()
        try model.backward(gradient)
        try optimizer.step(model.parameters)
        let estimate = MemoryEstimate(specification, batchSize: batch, steps: steps,
                                      optimizer: .adam(learningRate: 1e-3))
        expectClose(estimate.total, backend.memoryStatistics.peakBytes, "\(task)")
        #expect(estimate.parameters == specification.parameterCount * 4)
    }

    @Test func productsAndSumsSaturateInsteadOfOverflowing() {
        #expect(MemoryEstimate.product(1 << 40, 1 << 40) == Int.max)
        #expect(MemoryEstimate.product(3, 5, 7) == 105)
        #expect(MemoryEstimate.product(-3, 5) == 0)
        #expect(MemoryEstimate.sum(Int.max - 1, 2) == Int.max)
        let huge = MemoryEstimate.recurrentStack(cell: .lstm, inputSize: Int.max, hiddenSize: Int.max, layerCount: Int.max,
                                                 bidirectional: true, batchSize: Int.max, steps: Int.max, pass: .training)
        #expect(huge.total == Int.max)
        #expect(MemoryEstimate.text(bytes: Int.max) == "more than 8 EiB")
        #expect(MemoryEstimate.text(bytes: 6_871_947_674) == "6.4 GiB")
        #expect(MemoryEstimate.text(bytes: 1000) == "1000 B")
    }

    @Test func theCheckNamesTheEstimateTheLimitAndTheAdvice() throws {
        var estimate = MemoryEstimate()
        estimate.parameters = 3 << 30
        estimate.activations = 4 << 30
        estimate.largestBuffer = 2 << 30
        let device = MemoryAvailability(deviceName: "device 'small'", deviceBytes: 5 << 30, maximumAllocationBytes: 1 << 30,
                                        hostBytes: 64 << 30, deviceSharesHostMemory: false)
        let error = try #require(throws: InsufficientMemoryError.self) {
            try estimate.check(against: device, operation: "recur train", advice: "lower --hidden")
        }
        #expect(error.description == "recur train: needs about 7.0 GiB (parameters 3.0 GiB, activations 4.0 GiB) but "
                + "device 'small' has 5.0 GiB free; lower --hidden")
        let roomy = MemoryAvailability(deviceName: "device 'big'", deviceBytes: 8 << 30, maximumAllocationBytes: 1 << 30,
                                       hostBytes: 64 << 30, deviceSharesHostMemory: false)
        let allocation = try #require(throws: InsufficientMemoryError.self) {
            try estimate.check(against: roomy, operation: "op")
        }
        #expect(allocation.description.contains("a buffer of about 2.0 GiB"))
        let host = MemoryAvailability(deviceName: "the host", deviceBytes: nil, maximumAllocationBytes: nil,
                                      hostBytes: 6 << 30, deviceSharesHostMemory: true)
        #expect(throws: InsufficientMemoryError.self) { try estimate.check(against: host, operation: "op") }
        try estimate.check(against: MemoryAvailability(deviceName: "the host", deviceBytes: nil, maximumAllocationBytes: nil,
                                                       hostBytes: 8 << 30, deviceSharesHostMemory: true),
                           operation: "op")
        #expect(MemoryAvailability.availableHostBytes().map { $0 > 0 } == true)
    }

    /// Sizes whose parameters no machine holds are refused at once, before the host builds a
    /// single initial value (those arrays were the allocation that aborted the process).
    @Test func hugeLayersAndRunsAreRefusedBeforeAllocating() throws {
        let backend = CPUBackend()
        #expect(throws: InsufficientMemoryError.self) {
            _ = try RecurrentLayer(cell: .lstm, inputSize: 4, hiddenSize: 4_000_000_000, backend: backend)
        }
        #expect(throws: InsufficientMemoryError.self) {
            _ = try RecurrentLayer(cell: .gru, inputSize: 1 << 40, hiddenSize: 1 << 40, layerCount: 1 << 40, backend: backend)
        }
        let benchmark = Benchmark(backend: backend, warmup: 0, repetitions: 1)
        #expect(throws: InsufficientMemoryError.self) {
            _ = try benchmark.measure(BenchmarkConfiguration(cell: .rnnTanh, batch: 1 << 30, steps: 1 << 30, inputSize: 1 << 30,
                                                             hiddenSize: 4), pass: .forward)
        }
        #expect(throws: InsufficientMemoryError.self) { _ = try benchmark.measureGEMM(size: 1 << 31) }
        let demo = AddingProblemExperiment.Configuration(cell: .lstm, steps: 1_000_000_000, hiddenSize: 32)
        #expect(throws: InsufficientMemoryError.self) { _ = try AddingProblemExperiment.run(demo, on: backend) }
        #expect(backend.memoryStatistics.peakBytes == 0)
    }
}
