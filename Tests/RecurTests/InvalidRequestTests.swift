import Testing
@testable import Recur

// Requests that would read or write outside a buffer on a device are refused with a
// `RecurError` before any kernel runs: token ids outside the vocabulary, sequence lengths outside
// 1...T, operands of mismatched shapes or element types, tensors of another backend, and shapes
// too large to count. Written once and run on each backend; on OpenCL the fault injector's call
// counter shows that no kernel was enqueued for any refused request.

/// Runs every invalid request against `backend`, with `foreign` tensors from `other`.
private func expectEveryInvalidRequestRefused(_ backend: any Backend, other: any Backend,
                                              beforeRequests: () -> Void = {}) throws {
    let trainer = try TinyTrainer(backend: backend)
    let table = try backend.zeros([5, 3])
    let rows = try backend.zeros([2, 3])
    let a = try backend.upload([Float](repeating: 1, count: 3), shape: [3])
    let b = try backend.zeros([4])
    let ids = try backend.upload([Int32(1), 2, 3], shape: [3])
    let foreign = try other.zeros([3])
    beforeRequests()

    // Token ids outside the vocabulary, through the op and through a model.
    for bad in [Int32(5), -1, .max, .min] {
        let badIDs = try backend.upload([0, bad], shape: [2])
        expectRecurError("gather id \(bad)", matches: { if case .invalidArgument = $0 { true } else { false } }) {
            try backend.gather(rowsOf: table, ids: badIDs, into: rows)
        }
        expectRecurError("scatterAdd id \(bad)", matches: { if case .invalidArgument = $0 { true } else { false } }) {
            try backend.scatterAdd(rows, ids: badIDs, into: table)
        }
    }
    expectRecurError("model id 6 of 6", matches: { "\($0)".contains("6") }) {
        _ = try trainer.model.forward(ids: [1, 2, 3, 4, 5, 6], shape: [3, 2], padding: .post, training: true)
    }

    // Lengths outside 1...T (T = 3).
    for lengths in [[0, 3], [3, 4], [-1, 2], [Int.max, 1]] {
        expectRecurError("lengths \(lengths)", matches: { if case .invalidArgument = $0 { true } else { false } }) {
            _ = try trainer.model.forward(ids: [1, 2, 3, 4, 5, 1], shape: [3, 2], lengths: lengths, padding: .post,
                                          training: false)
        }
    }
    expectRecurError("one length for two sequences", matches: { _ in true }) {
        _ = try trainer.model.forward(ids: [1, 2, 3, 4, 5, 1], shape: [3, 2], lengths: [2], padding: .post,
                                      training: false)
    }

    // Mismatched shapes.
    expectRecurError("add [3] + [4]", matches: { if case .shapeMismatch = $0 { true } else { false } }) {
        try backend.add(a, b, into: a)
    }
    expectRecurError("ids for another shape", matches: { _ in true }) {
        _ = try trainer.model.forward(ids: [1, 2, 3], shape: [3, 2], padding: .post, training: false)
    }
    expectRecurError("gather into too few rows", matches: { if case .shapeMismatch = $0 { true } else { false } }) {
        try backend.gather(rowsOf: table, ids: ids, into: rows)
    }
    expectRecurError("copy past the end", matches: { if case .invalidArgument = $0 { true } else { false } }) {
        try backend.copy(a, sourceOffset: 1, into: b, destinationOffset: 0, count: 3)
    }
    expectRecurError("gemm view past the end", matches: { if case .invalidArgument = $0 { true } else { false } }) {
        try backend.gemm(m: 2, n: 2, k: 2, alpha: 1, a: MatrixOperand(a, leadingDimension: 2),
                         b: MatrixOperand(b, leadingDimension: 2), beta: 0, c: MatrixOperand(b, leadingDimension: 2))
    }

    // Element type mismatch: int32 ids where floats are expected, and the reverse.
    expectRecurError("add int32 to float32", matches: { if case .invalidArgument = $0 { true } else { false } }) {
        try backend.add(a, ids, into: a)
    }
    expectRecurError("float ids", matches: { if case .invalidArgument = $0 { true } else { false } }) {
        try backend.gather(rowsOf: table, ids: a, into: rows)
    }

    // A tensor of another backend.
    expectRecurError("foreign operand", matches: { if case .wrongDevice = $0 { true } else { false } }) {
        try backend.add(a, foreign, into: a)
    }
    expectRecurError("foreign download", matches: { if case .wrongDevice = $0 { true } else { false } }) {
        _ = try backend.download(foreign)
    }

    // Shapes whose element or byte count overflows: refused before allocating.
    expectRecurError("zeros of 2^62 x 4", matches: { if case .invalidArgument = $0 { true } else { false } }) {
        _ = try backend.zeros([Int.max / 2, 4])
    }
    expectRecurError("zeros with a zero dimension", matches: { if case .invalidArgument = $0 { true } else { false } }) {
        _ = try backend.zeros([0, 4])
    }
    expectRecurError("upload to an overflowing shape", matches: { if case .shapeMismatch = $0 { true } else { false } }) {
        _ = try backend.upload([Float(1)], shape: [1 << 40, 1 << 40])
    }
}

@Suite("Invalid requests")
struct InvalidRequestTests {
    @Test func cpuRefusesInvalidRequests() throws {
        try expectEveryInvalidRequestRefused(CPUBackend(), other: CPUBackend())
    }

    @Test func cpuRefusesOpenCLTensors() throws {
        guard let openCL = try TestBackends.openCL() else { return }
        try expectEveryInvalidRequestRefused(CPUBackend(), other: openCL)
    }

    /// A CPU tensor and a tensor of another OpenCL backend on the same device are both foreign.
    /// No kernel runs for any refused request.
    @Test(arguments: ["cpu", "another OpenCL backend"])
    func openCLRefusesInvalidRequestsBeforeEnqueueing(_ foreignKind: String) throws {
        guard let device = try TestBackends.openCLDevice() else { return }
        let backend = try OpenCLBackend(device: device)
        let other: any Backend = foreignKind == "cpu" ? CPUBackend() : try OpenCLBackend(device: device)
        try expectEveryInvalidRequestRefused(backend, other: other) {
            backend.faultInjector.countCalls()
        }
        #expect(backend.faultInjector.calls(at: .enqueue) == 0,
                "\(backend.faultInjector.calls(at: .enqueue)) kernels were enqueued for refused requests")
    }
}
