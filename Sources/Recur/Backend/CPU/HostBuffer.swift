#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Host memory for the CPU backend: 64-byte aligned (a cache line, and AVX-512 width), zeroed.
final class HostBuffer: DeviceBuffer, @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    let byteCount: Int
    private let counter: MemoryCounter

    /// A new zeroed buffer of `byteCount` bytes.
    /// - Throws: `RecurError.outOfMemory` when the system refuses the allocation; Swift's own
    ///   allocator would trap instead.
    init(byteCount: Int, counter: MemoryCounter, operation: String) throws {
        var memory: UnsafeMutableRawPointer?
        guard posix_memalign(&memory, 64, max(byteCount, 1)) == 0, let memory else {
            throw RecurError.outOfMemory(operation: operation, bytes: byteCount, detail: "host memory allocation failed")
        }
        self.byteCount = byteCount
        self.counter = counter
        pointer = memory
        pointer.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
        counter.allocated(bytes: byteCount)
    }

    deinit {
        free(pointer)
        counter.released(bytes: byteCount)
    }
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
