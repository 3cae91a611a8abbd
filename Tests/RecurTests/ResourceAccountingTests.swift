import Testing
@testable import Recur

// Every buffer a backend allocates is counted live until released (`memoryStatistics`), on the
// CPU (host memory) and on OpenCL devices (`cl_mem`). These tests hold the counts to account:
// back to zero once a model, its optimizer and every tensor are gone, and flat over a long run
// of training steps, where a leak of one buffer per step would show as a thousand.
//
// Each test uses a backend of its own, so that tests running in parallel don't move its counts.

private func privateBackend(_ kind: TestBackend) throws -> (any Backend)? {
    switch kind {
    case .cpu: return CPUBackend()
    case .openCL: return try TestBackends.openCLDevice().map { try OpenCLBackend(device: $0) }
    }
}

@Suite("Resource accounting")
struct ResourceAccountingTests {
    @Test(arguments: TestBackend.allCases)
    func releasingAModelReturnsEveryBuffer(_ kind: TestBackend) throws {
        guard let backend = try privateBackend(kind) else { return }
        #expect(backend.memoryStatistics.liveBuffers == 0)
        do {
            let trainer = try TinyTrainer(backend: backend)
            for _ in 0..<3 { try trainer.step() }
            try backend.synchronize()
            #expect(backend.memoryStatistics.liveBuffers > 0)
            #expect(backend.memoryStatistics.peakBytes >= backend.memoryStatistics.liveBytes)
        }
        let statistics = backend.memoryStatistics
        #expect(statistics.liveBuffers == 0, "\(statistics.liveBuffers) buffers outlive the model on \(kind)")
        #expect(statistics.liveBytes == 0, "\(statistics.liveBytes) bytes outlive the model on \(kind)")
    }

    /// The CPU backend keeps released blocks for reuse, but only within the peak of live bytes,
    /// and a reused block reads as zeros like a fresh one.
    @Test func cpuBlockCacheStaysWithinThePeakAndHandsOutZeros() throws {
        let backend = CPUBackend()
        var random = SeededGenerator(seed: 23)
        do {
            let first = try backend.upload(random.floats(1000), shape: [1000])
            let second = try backend.upload(random.floats(500), shape: [500])
            _ = (first, second)
        }
        // Both were live together: both fit under the peak and are kept.
        #expect(backend.memoryStatistics.liveBytes == 0)
        #expect(backend.blockCache.heldBytes == 6000)
        let reused = try backend.zeros([1000])
        #expect(backend.blockCache.heldBytes == 2000)
        #expect(try backend.download(reused).allSatisfy { $0 == 0 }, "a reused block must read as zeros")
        backend.resetPeakMemory()
        do {
            let other = try backend.zeros([700])
            _ = other
        }
        // Released at a peak of 4000 + 2800 live bytes: keeping it would hold 4000 live + 2000 kept
        // + 2800 bytes, past that peak, so it is freed.
        #expect(backend.blockCache.heldBytes == 2000)
        _ = reused
    }

    /// 1,000 steps of Embedding → LSTM → Dense with Adam and clipping: the live buffers and bytes
    /// after each hundredth step equal those after the first few (optimizer state exists by then).
    @Test(arguments: TestBackend.allCases)
    func liveMemoryStaysFlatOverAThousandSteps(_ kind: TestBackend) throws {
        guard let backend = try privateBackend(kind) else { return }
        let steps = 1_000
        do {
            let trainer = try TinyTrainer(backend: backend, lossSlots: steps)
            for step in 0..<3 { try trainer.step(slot: step) }
            try backend.synchronize()
            let settled = backend.memoryStatistics
            var samples: [Int] = []
            for step in 3..<steps {
                try trainer.step(slot: step)
                if step % 100 == 99 {
                    let now = backend.memoryStatistics
                    samples.append(now.liveBuffers)
                    #expect(now.liveBuffers == settled.liveBuffers && now.liveBytes == settled.liveBytes,
                            "step \(step) on \(kind): \(now.liveBuffers) buffers / \(now.liveBytes) bytes live, \(settled.liveBuffers) / \(settled.liveBytes) after step 3")
                }
            }
            let losses = try backend.download(trainer.losses)
            #expect(losses.allSatisfy { $0.isFinite })
            let peak = backend.memoryStatistics.peakBytes
            print("resource accounting \(kind): \(steps) steps, live buffers every 100 steps \(samples), \(settled.liveBytes) bytes live, peak \(peak)")
        }
        #expect(backend.memoryStatistics.liveBuffers == 0)
        #expect(backend.memoryStatistics.liveBytes == 0)
    }
}
