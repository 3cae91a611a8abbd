#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

import Synchronization

/// Host memory for the CPU backend: 64-byte aligned (a cache line, and AVX-512 width), zeroed
/// unless asked not to be.
final class HostBuffer: DeviceBuffer, @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    let byteCount: Int
    private let counter: MemoryCounter
    private let cache: HostBlockCache

    /// A new buffer of `byteCount` bytes, zeroed unless `zeroed` is false: a block from `cache` if
    /// it holds one of that size.
    /// - Throws: `RecurError.outOfMemory` when the system refuses the allocation; Swift's own
    ///   allocator would trap instead.
    init(byteCount: Int, counter: MemoryCounter, cache: HostBlockCache, zeroed: Bool = true,
         operation: String) throws {
        if let block = cache.take(byteCount: byteCount) {
            pointer = block
        } else {
            var memory: UnsafeMutableRawPointer?
            guard posix_memalign(&memory, 64, max(byteCount, 1)) == 0, let memory else {
                throw RecurError.outOfMemory(operation: operation, bytes: byteCount,
                                             detail: "host memory allocation failed")
            }
            pointer = memory
        }
        self.byteCount = byteCount
        self.counter = counter
        self.cache = cache
        if zeroed { pointer.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount) }
        counter.allocated(bytes: byteCount)
    }

    deinit {
        counter.released(bytes: byteCount)
        if !cache.keep(pointer, byteCount: byteCount, counter: counter) { free(pointer) }
    }
}

/// Released host blocks of one CPU backend, kept by size for the next buffer of the same size.
///
/// A training step allocates the same buffers in every step (workspaces, gradients, scratch), and
/// blocks this large come straight from the kernel: freed, they went back to it, and the next step
/// paid a page fault and the kernel's zeroing for every page again (a sixth of an LSTM training
/// step at H = 32). A block is kept only while the bytes live plus the bytes kept stay within the
/// peak of live bytes, so the cache never raises the backend's memory peak; it hands blocks back
/// to the system when the backend and its last buffer are gone.
final class HostBlockCache: Sendable {
    /// Blocks by byte count, as addresses (which, unlike pointers, may cross the lock).
    private struct Blocks {
        var bySize: [Int: [UInt]] = [:]
        var heldBytes = 0
    }

    private let blocks = Mutex(Blocks())

    /// Bytes held for reuse.
    var heldBytes: Int { blocks.withLock { $0.heldBytes } }

    /// A kept block of exactly `byteCount` bytes, if any.
    func take(byteCount: Int) -> UnsafeMutableRawPointer? {
        blocks.withLock { blocks in
            guard let address = blocks.bySize[byteCount]?.popLast() else { return nil }
            blocks.heldBytes -= byteCount
            return UnsafeMutableRawPointer(bitPattern: address)
        }
    }

    /// Keeps a released block if that leaves live + kept bytes within the peak; false when the
    /// caller must free it.
    func keep(_ block: UnsafeMutableRawPointer, byteCount: Int, counter: MemoryCounter) -> Bool {
        let statistics = counter.current
        let address = UInt(bitPattern: block)
        return blocks.withLock { blocks in
            guard statistics.liveBytes + blocks.heldBytes + byteCount <= statistics.peakBytes else { return false }
            blocks.bySize[byteCount, default: []].append(address)
            blocks.heldBytes += byteCount
            return true
        }
    }

    /// Frees every kept block.
    func release() {
        blocks.withLock { blocks in
            for address in blocks.bySize.values.joined() { free(UnsafeMutableRawPointer(bitPattern: address)) }
            blocks = Blocks()
        }
    }

    deinit { release() }
}

extension Tensor {
    /// The float32 storage of a CPU tensor. Only the CPU backend calls this, after validation.
    var hostFloats: UnsafeMutablePointer<Float> {
        (buffer as! HostBuffer).pointer.assumingMemoryBound(to: Float.self)
    }

    /// The int32 storage of a CPU tensor.
    var hostInt32s: UnsafeMutablePointer<Int32> {
        (buffer as! HostBuffer).pointer.assumingMemoryBound(to: Int32.self)
    }
}
