import Testing
@testable import Recur

// Tensors in one allocation and the batched GEMMs they allow on OpenCL (a bidirectional layer's
// two directions in one CLBlast call):
// - regions of one allocation start at the device's alignment, do not overlap, read as zeros,
//   work in every op like separate tensors, count their bytes once and free the allocation with
//   the last region;
// - `gemmBatched` over operands in shared buffers is one enqueue and matches the CPU backend's
//   GEMMs; over separate buffers it falls back to one GEMM each, with the same results;
// - a bidirectional pair whose buffers share allocations runs its input projection and its weight
//   and bias gradients as batched GEMMs: fewer enqueues than the same pair in separate buffers
//   (its results against the CPU are in OpenCLRecurrentTests);
// - a bidirectional layer keeps each parameter pair, gradient pair and workspace pair in one
//   allocation (its training pass against the CPU is in BidirectionalRecurrentTests).

@Suite("Batched GEMM")
struct BatchedGEMMTests {
    static func backend() throws -> OpenCLBackend? {
        guard let device = try TestBackends.openCLDevice() else { return nil }
        return try OpenCLBackend(device: device)
    }

    @Test("regions of one allocation: aligned, disjoint, zeroed, usable, counted once")
    func regions() throws {
        guard let backend = try Self.backend() else { return }
        let baseline = backend.memoryStatistics
        let shapes: [Shape] = [[3, 5], [7], [2, 2, 3]]
        var tensors: [Tensor]? = try backend.tensorsInOneAllocation(shapes, zeroed: true)
        do {
            let regions = tensors!.map(\.openCLBuffer)
            #expect(regions.allSatisfy { $0.origin % backend.device.baseAddressAlignment == 0 })
            #expect(Set(regions.map { $0.root.memory }).count == 1)
            for (previous, next) in zip(regions, regions.dropFirst()) {
                #expect(previous.origin + previous.byteCount <= next.origin)
            }
        }
        for tensor in tensors! {
            #expect(try backend.download(tensor).allSatisfy { $0 == 0 })
        }
        // Writes through one region leave the others alone.
        var random = SeededGenerator(seed: 8)
        let values = shapes.map { random.values($0.count) }
        for (tensor, value) in zip(tensors!, values) {
            try backend.copy(try backend.upload(value, shape: tensor.shape), sourceOffset: 0, into: tensor,
                             destinationOffset: 0, count: tensor.count)
        }
        try backend.scale(tensors![1], by: 2)
        #expect(try backend.download(tensors![0]) == values[0])
        #expect(try backend.download(tensors![1]) == values[1].map { $0 * 2 })
        #expect(try backend.download(tensors![2]) == values[2])
        // The allocation's bytes once (with alignment padding), plus one live buffer per region.
        let live = backend.memoryStatistics
        #expect(live.liveBuffers == baseline.liveBuffers + shapes.count + 1)
        #expect(live.liveBytes - baseline.liveBytes >= shapes.reduce(0) { $0 + $1.count * 4 })
        #expect(live.liveBytes - baseline.liveBytes < shapes.reduce(0) { $0 + $1.count * 4 }
                + shapes.count * backend.device.baseAddressAlignment)
        tensors = nil
        #expect(backend.memoryStatistics.liveBuffers == baseline.liveBuffers)
        #expect(backend.memoryStatistics.liveBytes == baseline.liveBytes)
    }

    /// The weight-gradient shape of a pair: dW_d[G, I] += dG_dᵀ · x, x shared.
    @Test("a batched GEMM over shared buffers is one enqueue and matches the CPU; separate buffers fall back",
          arguments: [false, true])
    func batched(shared: Bool) throws {
        guard let backend = try Self.backend() else { return }
        let cpu = TestBackends.cpu
        let (rows, gates, inputs) = (37, 20, 9)
        var random = SeededGenerator(seed: shared ? 3 : 4)
        let gateGradients = [random.values(rows * gates), random.values(rows * gates)]
        let x = random.values(rows * inputs)
        let initial = [random.values(gates * inputs), random.values(gates * inputs)]
        func pairOnDevice(_ shape: Shape, _ values: [[Float]]) throws -> [Tensor] {
            let tensors = shared
                ? try backend.tensorsInOneAllocation([shape, shape], zeroed: true)
                : [try backend.zeros(shape), try backend.zeros(shape)]
            for (tensor, value) in zip(tensors, values) {
                try backend.copy(try backend.upload(value, shape: shape), sourceOffset: 0, into: tensor,
                                 destinationOffset: 0, count: shape.count)
            }
            return tensors
        }
        let dG = try pairOnDevice([rows, gates], gateGradients)
        let dW = try pairOnDevice([gates, inputs], initial)
        let xDevice = try backend.upload(x, shape: [rows, inputs])
        backend.faultInjector.countCalls()
        try backend.gemmBatched(m: gates, n: inputs, k: rows, alpha: 0.5, (0..<2).map { d in
            (MatrixOperand(dG[d], leadingDimension: gates, transposed: true),
             MatrixOperand(xDevice, leadingDimension: inputs), MatrixOperand(dW[d], leadingDimension: inputs))
        }, beta: 1)
        #expect(backend.faultInjector.calls(at: .enqueue) == (shared ? 1 : 2))
        backend.faultInjector.reset()
        for d in 0..<2 {
            let expected = try cpu.upload(initial[d], shape: [gates, inputs])
            try cpu.gemm(m: gates, n: inputs, k: rows, alpha: 0.5,
                         a: MatrixOperand(try cpu.upload(gateGradients[d], shape: [rows, gates]), leadingDimension: gates,
                                          transposed: true),
                         b: MatrixOperand(try cpu.upload(x, shape: [rows, inputs]), leadingDimension: inputs),
                         beta: 1, c: MatrixOperand(expected, leadingDimension: inputs))
            let comparison = Comparison("dW[\(d)]", actual: try backend.download(dW[d]),
                                        expected: try cpu.download(expected), tolerance: 1e-5)
            #expect(comparison.passed, "\(comparison)")
        }
    }

    @Test("a pair in shared allocations batches its GEMMs: one projection, four gradient GEMMs fewer",
          arguments: RecurrentCell.withUnitStepKernels)
    func pairEnqueues(_ cell: RecurrentCell) throws {
        guard let backend = try Self.backend() else { return }
        func enqueues(shared: Bool) throws -> Int {
            let parity = RecurrentParityCase(cell: cell, steps: 4, batch: 3, inputSize: 5, hiddenSize: 6,
                                             bidirectional: true, sharedAllocations: shared)
            _ = try parity.run(on: backend, seed: 2)  // compiles the programs
            backend.faultInjector.countCalls()
            _ = try parity.run(on: backend, seed: 2)
            defer { backend.faultInjector.reset() }
            return backend.faultInjector.calls(at: .enqueue)
        }
        // Forward: the two projections become one. Backward: dW_ih, db_ih and db_hh pairs become
        // one each, and dW_hh too except for the reset-before GRU (its two blocks differ). Setting
        // up the shared case costs one copy into each of its 2 x 10 regions (weights, weight
        // gradients, gates, h̃).
        let saved = 1 + (cell == .gruResetBefore ? 3 : 4)
        let (separate, shared) = (try enqueues(shared: false), try enqueues(shared: true))
        #expect(shared == separate - saved + 2 * 10)
    }

    @Test("a bidirectional layer keeps each pair of parameters and gradients in one allocation",
          arguments: RecurrentCell.withUnitStepKernels)
    func layerPairs(_ cell: RecurrentCell) throws {
        guard let backend = try Self.backend() else { return }
        let layer = try RecurrentLayer(cell: cell, inputSize: 3, hiddenSize: 5, layerCount: 2, bidirectional: true,
                                       seed: 1, backend: backend)
        let parameters = layer.parameters
        #expect(parameters.count == 16)
        for name in ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] {
            for k in 0..<2 {
                let pair = parameters.filter { $0.name == "\(name)_l\(k)" || $0.name == "\(name)_l\(k)_reverse" }
                #expect(pair.count == 2)
                #expect(pair[0].value.openCLBuffer.root.memory == pair[1].value.openCLBuffer.root.memory)
                #expect(pair[0].gradient.openCLBuffer.root.memory == pair[1].gradient.openCLBuffer.root.memory)
                #expect(pair[0].value.openCLBuffer.root.memory != pair[0].gradient.openCLBuffer.root.memory)
            }
        }
        // The same initial values as a layer on the CPU (the pair's allocation changes no value).
        let reference = try RecurrentLayer(cell: cell, inputSize: 3, hiddenSize: 5, layerCount: 2, bidirectional: true,
                                           seed: 1, backend: TestBackends.cpu)
        for (device, host) in zip(parameters, reference.parameters) {
            #expect(try backend.download(device.value) == TestBackends.cpu.download(host.value), "\(device.name)")
        }
    }
}
