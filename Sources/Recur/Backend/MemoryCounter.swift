import Synchronization

/// Thread-safe count of a backend's live buffers; buffers report here on allocation and release,
/// so leaks show up as a non-zero `liveBuffers` after teardown.
final class MemoryCounter: Sendable {
    private let statistics = Mutex(MemoryStatistics())

    var current: MemoryStatistics { statistics.withLock { $0 } }

    func allocated(bytes: Int) {
        statistics.withLock {
            $0.liveBuffers += 1
            $0.liveBytes += bytes
            $0.peakBytes = max($0.peakBytes, $0.liveBytes)
        }
    }

    func released(bytes: Int) {
        statistics.withLock {
            $0.liveBuffers -= 1
            $0.liveBytes -= bytes
        }
    }

    /// Starts a new peak measurement from what is live now.
    func resetPeak() {
        statistics.withLock { $0.peakBytes = $0.liveBytes }
    }
}
