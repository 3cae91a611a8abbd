/// The dimensions of a tensor, outermost first. Sequences are time-major: `[T, B, F]`.
public struct Shape: Hashable, Sendable, ExpressibleByArrayLiteral, CustomStringConvertible {
    /// The size of each axis, outermost first.
    public var dimensions: [Int]

    /// A shape with these dimensions, outermost first.
    public init(_ dimensions: [Int]) {
        self.dimensions = dimensions
    }

    /// A shape written as a literal: `let shape: Shape = [T, B, H]`.
    public init(arrayLiteral elements: Int...) {
        self.dimensions = elements
    }

    /// Number of elements (1 for a scalar, rank 0).
    public var count: Int { dimensions.reduce(1, *) }
    /// Number of elements, or nil when it overflows `Int` (a shape no memory could hold), so
    /// that a request for such a tensor can be refused rather than trap.
    public var checkedCount: Int? {
        var count = 1
        for dimension in dimensions {
            let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
            if overflow { return nil }
            count = product
        }
        return count
    }
    /// Number of axes (0 for a scalar).
    public var rank: Int { dimensions.count }
    /// The size of axis `axis`, counted from the outermost (0).
    public subscript(axis: Int) -> Int { dimensions[axis] }

    /// Whether every dimension is positive (a zero-sized tensor is never a valid operand).
    public var isValid: Bool { dimensions.allSatisfy { $0 > 0 } }

    public var description: String { "[" + dimensions.map(String.init).joined(separator: ", ") + "]" }
}

/// Element type of a tensor. Float32 for values; Int32 for token ids and lengths.
public enum DType: Sendable, Hashable, CustomStringConvertible {
    case float32
    case int32

    /// Bytes per element.
    public var byteSize: Int { 4 }
    public var description: String {
        switch self {
        case .float32: "float32"
        case .int32: "int32"
        }
    }
}
