/// Host memory for the CPU backend: 64-byte aligned (a cache line, and AVX-512 width), zeroed.
final class HostBuffer: DeviceBuffer, @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    let byteCount: Int
    private let counter: MemoryCounter

    init(byteCount: Int, counter: MemoryCounter) {
        self.byteCount = byteCount
        self.counter = counter
        pointer = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
        pointer.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
        counter.allocated(bytes: byteCount)
    }

    deinit {
        pointer.deallocate()
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
