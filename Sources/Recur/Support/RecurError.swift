/// Errors raised for bad requests and failed operations. Every case carries the operation that
/// raised it and enough context to act on; `description` is a full sentence for a user.
public enum RecurError: Error, CustomStringConvertible, Equatable {
    /// Operand shapes that don't fit the operation.
    case shapeMismatch(operation: String, detail: String)
    /// An argument out of its valid range (a negative count, a token id beyond the vocabulary).
    case invalidArgument(operation: String, detail: String)
    /// A tensor that belongs to another backend or device than the one asked to use it.
    case wrongDevice(operation: String, detail: String)
    /// A device specification that names nothing present.
    case deviceNotFound(specification: String, detail: String)
    /// A device allocation that failed.
    case outOfMemory(operation: String, bytes: Int, detail: String)
    /// A file or stream that could not be read or written.
    case io(path: String, detail: String)
    /// Input data that does not follow its format.
    case malformed(source: String, detail: String)
    /// A non-finite value where a finite one is required.
    case nonFinite(operation: String, detail: String)

    public var description: String {
        switch self {
        case let .shapeMismatch(operation, detail): "\(operation): shape mismatch: \(detail)"
        case let .invalidArgument(operation, detail): "\(operation): invalid argument: \(detail)"
        case let .wrongDevice(operation, detail): "\(operation): wrong device: \(detail)"
        case let .deviceNotFound(specification, detail): "no device matches '\(specification)': \(detail)"
        case let .outOfMemory(operation, bytes, detail): "\(operation): out of memory allocating \(bytes) bytes: \(detail)"
        case let .io(path, detail): "\(path): \(detail)"
        case let .malformed(source, detail): "\(source): \(detail)"
        case let .nonFinite(operation, detail): "\(operation): non-finite value: \(detail)"
        }
    }
}
