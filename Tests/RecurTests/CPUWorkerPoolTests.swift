import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import Recur

// The CPU backend's worker pool: every part of every job runs exactly once and `run` returns only
// after all of them, with one or many workers, from one caller or several at once (a busy pool
// runs a caller's parts on the caller's thread), and with a part that asks for parts of its own.

@Suite("CPU worker pool")
struct CPUWorkerPoolTests {
    /// Runs `jobs` jobs of 1 to 9 parts on `pool` and checks that each part of each job ran once
    /// before `run` returned.
    static func runJobs(_ jobs: Int, on pool: CPUWorkerPool, seed: Int) -> Bool {
        var allRight = true
        for job in 0..<jobs {
            let parts = 1 + (job * 7 + seed) % 9
            let counts = Mutex([Int](repeating: 0, count: parts))
            pool.run(parts: parts) { part in
                counts.withLock { $0[part] += 1 }
            }
            allRight = allRight && counts.withLock { $0.allSatisfy { $0 == 1 } }
        }
        return allRight
    }

    @Test("every part runs exactly once, with 1, 3 and 7 workers", arguments: [1, 3, 7])
    func everyPartOnce(workers: Int) {
        let pool = CPUWorkerPool(workers: workers)
        #expect(Self.runJobs(2000, on: pool, seed: workers))
    }

    @Test("concurrent callers share the pool: each job's parts run once")
    func concurrentCallers() {
        let pool = CPUWorkerPool(workers: 3)
        let failures = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 6) { caller in
            if !Self.runJobs(500, on: pool, seed: caller) { failures.add(1, ordering: .relaxed) }
        }
        #expect(failures.load(ordering: .relaxed) == 0)
    }

    @Test("a part that runs parts of its own finishes them on its thread")
    func nestedJobs() {
        let pool = CPUWorkerPool(workers: 3)
        let inner = Atomic<Int>(0)
        pool.run(parts: 4) { _ in
            pool.run(parts: 5) { _ in inner.add(1, ordering: .relaxed) }
        }
        #expect(inner.load(ordering: .relaxed) == 20)
    }

    @Test("workers that went to sleep wake for the next job")
    func wakesSleepingWorkers() {
        let pool = CPUWorkerPool(workers: 2)
        #expect(Self.runJobs(10, on: pool, seed: 1))
        // Long enough for the workers to spend their spin budget and sleep.
        usleep(200_000)
        let threads = Mutex<Set<UInt>>([])
        pool.run(parts: 64) { _ in
            let id = UInt(bitPattern: Int(pthread_self()))
            threads.withLock { _ = $0.insert(id) }
            usleep(2_000)
        }
        // 64 parts of 2 ms: the caller alone would take 128 ms; the woken workers take some.
        #expect(threads.withLock { $0.count } > 1)
    }
}
