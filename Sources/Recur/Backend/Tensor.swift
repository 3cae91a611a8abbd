/// Storage for one tensor on one device. Each backend has its own kind (host memory, `cl_mem`);
/// the storage is released when the last tensor using it goes away.
public protocol DeviceBuffer: AnyObject, Sendable {
    var byteCount: Int { get }
}

/// A dense, row-major array of `float32` (or `int32`) values owned by a backend's device.
///
/// A tensor is a handle: copying it shares the storage. Views into larger buffers are expressed
/// by element offsets on the operations that need them (GEMM, copy), not by the tensor itself.
public final class Tensor: @unchecked Sendable, CustomStringConvertible {
    /// The dimensions, outermost first (sequences time-major, `[T, B, F]`).
    public let shape: Shape
    /// `float32` for values, `int32` for token ids and lengths.
    public let dtype: DType
    /// The storage on the device; shared by copies of this tensor.
    public let buffer: any DeviceBuffer
    /// The backend that owns the storage; only its ops accept this tensor.
    public let backend: any Backend

    /// Made by backends only: use `backend.zeros(_:)`, `backend.upload(_:shape:)` and friends.
    public init(shape: Shape, dtype: DType, buffer: any DeviceBuffer, backend: any Backend) {
        precondition(shape.isValid, "tensor shape \(shape) has a dimension < 1")
        precondition(buffer.byteCount >= shape.count * dtype.byteSize, "buffer smaller than shape")
        self.shape = shape
        self.dtype = dtype
        self.buffer = buffer
        self.backend = backend
    }

    /// Number of elements.
    public var count: Int { shape.count }

    public var description: String { "Tensor(\(dtype) \(shape) on \(backend.deviceName))" }

    /// The values, copied to the host.
    public func toArray() throws -> [Float] { try backend.download(self) }
}
