import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The threads that run the parallel parts of the CPU backend's ops (a recurrent scan's batch
/// parts, split GEMMs): one per processor beyond the caller's, started on first use and kept for
/// the life of the process.
///
/// A training step runs a dozen parallel regions of tens to hundreds of microseconds each. With
/// `DispatchQueue.concurrentPerform` the workers went to sleep between regions and had to be woken
/// through the kernel for the next one: thread wake-ups and yields were 9-14% of the samples of a
/// training step at H = 32 and 128. Here a worker that has just finished a part keeps watching for
/// the next job for a while (`spinBudget`) before it sleeps on a condition variable, so back-to-back
/// regions start without a system call, and an idle process still sleeps.
///
/// One job runs at a time: a caller that finds the pool busy (another thread's job, or a part
/// asking for parts of its own) runs its parts itself, one after the other. Parts are claimed from
/// a counter that carries the job's generation, so a worker still looking at a finished job can
/// never claim (and call) one of its parts after `run` returned.
final class CPUWorkerPool: @unchecked Sendable {
    static let shared = CPUWorkerPool(workers: CPUBackend.coreCount - 1)

    /// Spins a worker makes watching for the next job before it sleeps: a few tens of microseconds.
    static let spinBudget = 1 << 15

    /// Spins after which a waiting thread (a worker watching for a job, the caller waiting for the
    /// other parts) yields its core at every further spin. Where other processes keep the cores
    /// busy, the part being waited for may be queued behind the spinning thread on the same
    /// core: a G2P epoch on two cores beside one other busy process spent 13% of its samples in
    /// the caller's wait. On an idle core the yield returns at once.
    static let yieldAfterSpins = 1 << 10

    private let workerCount: Int
    /// Bumped (releasing) once a job is published; workers wait for it to change.
    private let generation = Atomic<Int>(0)
    /// The job's generation in the high 32 bits, the next unclaimed part in the low 32 bits.
    private let claims = Atomic<Int>(0)
    /// Parts of the current job that have finished.
    private let finished = Atomic<Int>(0)
    /// Whether a job is running (one at a time).
    private let busy = Atomic<Bool>(false)
    /// Written by the caller before `generation` is bumped, read by workers after they see it.
    private var body: ((Int) -> Void)?
    private var partCount = 0

    // Allocated, not stored inline: the pthread calls need a stable address.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// Workers asleep on `condition` (under `mutex`).
    private var sleeping = 0
    private let started = Atomic<Bool>(false)

    init(workers: Int) {
        workerCount = max(0, workers)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    /// Calls `body(part)` for every part in 0 ..< parts, on the calling thread and the workers,
    /// and returns when all have returned. `body` must be safe to call concurrently for different
    /// parts.
    func run(parts: Int, _ body: (Int) -> Void) {
        guard parts > 1, workerCount > 0,
              busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged
        else {
            for part in 0..<parts { body(part) }
            return
        }
        startWorkersOnce()
        withoutActuallyEscaping(body) { body in
            let job = generation.load(ordering: .relaxed) + 1
            self.body = body
            partCount = parts
            finished.store(0, ordering: .relaxed)
            claims.store(job << 32, ordering: .relaxed)
            generation.store(job, ordering: .releasing)
            pthread_mutex_lock(mutex)
            if sleeping > 0 { pthread_cond_broadcast(condition) }
            pthread_mutex_unlock(mutex)
            work(on: job)
            var spins = 0
            while finished.load(ordering: .acquiring) < parts {
                spins += 1
                if spins >= Self.yieldAfterSpins { sched_yield() }
            }
            self.body = nil
        }
        busy.store(false, ordering: .releasing)
    }

    /// Claims and runs parts of job `job` until none is left or the job is no longer current.
    private func work(on job: Int) {
        while true {
            let current = claims.load(ordering: .acquiring)
            guard current >> 32 == job else { return }
            let part = current & 0xFFFF_FFFF
            guard part < partCount else { return }
            guard claims.compareExchange(expected: current, desired: current + 1, ordering: .acquiringAndReleasing)
                .exchanged
            else { continue }
            // The claim succeeded, so this job is still running: its caller waits for this part.
            body!(part)
            finished.add(1, ordering: .releasing)
        }
    }

    private func startWorkersOnce() {
        guard started.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
        else { return }
        for _ in 0..<workerCount {
            let context = Unmanaged.passRetained(self).toOpaque()
            var thread = pthread_t()
            let status = pthread_create(&thread, nil, { context in
                let pool = Unmanaged<CPUWorkerPool>.fromOpaque(context!).takeRetainedValue()
                pool.workerLoop()
            }, context)
            if status == 0 {
                pthread_detach(thread)
            } else {
                // No thread: the caller and the other workers still run every part.
                Unmanaged<CPUWorkerPool>.fromOpaque(context).release()
            }
        }
    }

    private func workerLoop() -> Never {
        var seen = 0
        while true {
            var spins = 0
            var job = generation.load(ordering: .acquiring)
            while job == seen {
                spins += 1
                if spins >= Self.spinBudget {
                    pthread_mutex_lock(mutex)
                    sleeping += 1
                    while generation.load(ordering: .acquiring) == seen {
                        pthread_cond_wait(condition, mutex)
                    }
                    sleeping -= 1
                    pthread_mutex_unlock(mutex)
                    spins = 0
                } else if spins >= Self.yieldAfterSpins {
                    // A yield takes about as long as a few hundred spins: counted so, the worker
                    // still sleeps within a few tens of microseconds of its last job.
                    sched_yield()
                    spins += Self.yieldAfterSpins / 4
                }
                job = generation.load(ordering: .acquiring)
            }
            seen = job
            work(on: job)
        }
    }
}
