// safetensors: the file format PyTorch and Hugging Face use for weights, and ours for checkpoints.
//
// Layout (every integer little-endian):
//   [0, 8)           N, the header length, as UInt64
//   [8, 8 + N)       UTF-8 JSON: {"__metadata__": {String: String},
//                                 name: {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...}
//                    padded with trailing spaces
//   [8 + N, end)     the data section; tensor `name` is bytes [b, e) of it, row-major
//
// The reader treats every file as untrusted: each check below throws `RecurError.malformed`
// rather than trapping or allocating more than the file's own size.

/// An element type a safetensors header can declare, spelled as in the header (`"F32"`).
public enum SafeTensorsDType: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case bool = "BOOL"
    case uint8 = "U8"
    case int8 = "I8"
    case float8E5M2 = "F8_E5M2"
    case float8E4M3 = "F8_E4M3"
    case int16 = "I16"
    case uint16 = "U16"
    case float16 = "F16"
    case bfloat16 = "BF16"
    case int32 = "I32"
    case uint32 = "U32"
    case float32 = "F32"
    case int64 = "I64"
    case uint64 = "U64"
    case float64 = "F64"

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .bool, .uint8, .int8, .float8E5M2, .float8E4M3: 1
        case .int16, .uint16, .float16, .bfloat16: 2
        case .int32, .uint32, .float32: 4
        case .int64, .uint64, .float64: 8
        }
    }

    /// The header spelling, such as `F32`.
    public var description: String { rawValue }
}

/// A safetensors file read into memory and validated.
///
/// ```swift
/// let file = try SafeTensorsFile(contentsOf: "model.safetensors")
/// let w = try file.floats("weight_ih_l0")      // [4H * I] values, row-major
/// let shape = try file.shape(of: "weight_ih_l0") // [4H, I]
/// ```
///
/// Opening checks the whole header: the length field, the JSON, every tensor's dtype, shape and
/// offsets, and that the tensors tile the data section exactly (no overlaps, no gaps, as the
/// reference implementation requires). Any violation throws `RecurError.malformed` naming the
/// source and the problem.
public struct SafeTensorsFile: Sendable {
    /// Where one tensor lives and how to read it.
    public struct TensorInfo: Sendable, Hashable {
        /// The tensor's key in the header.
        public let name: String
        /// The element type as stored.
        public let dtype: SafeTensorsDType
        /// Dimensions, outermost first; rank 0 for a scalar.
        public let shape: Shape
        /// Byte range within the data section (which starts after the header).
        public let byteRange: Range<Int>
    }

    /// Headers longer than this are rejected before parsing, as the reference implementation does.
    public static let maximumHeaderLength = 100_000_000

    /// The path the file was read from, or the name given to `init(bytes:source:)`; used in errors.
    public let source: String
    /// The `__metadata__` entries; empty when the file has none.
    public let metadata: [String: String]
    /// Tensor names in ascending order.
    public let names: [String]

    private let tensors: [String: TensorInfo]
    private let bytes: [UInt8]
    /// Offset of the data section within `bytes`.
    private let dataStart: Int

    /// Reads and validates the file at `path`.
    /// - Throws: `RecurError.io` when the file can't be read, `RecurError.malformed` when it is
    ///   not a valid safetensors file.
    public init(contentsOf path: String) throws {
        try self.init(bytes: try FileBytes.read(contentsOf: path), source: path)
    }

    /// Validates `bytes` as a safetensors file. `source` names it in error messages.
    /// - Throws: `RecurError.malformed` when the bytes are not a valid safetensors file.
    public init(bytes: [UInt8], source: String = "<memory>") throws {
        func malformed(_ detail: String) -> RecurError { .malformed(source: source, detail: detail) }

        guard bytes.count >= 8 else {
            throw malformed("\(bytes.count) bytes is shorter than the 8-byte header length field")
        }
        let declaredLength = bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard declaredLength <= UInt64(Self.maximumHeaderLength) else {
            throw malformed("header length \(declaredLength) exceeds the limit of \(Self.maximumHeaderLength) bytes")
        }
        let headerLength = Int(declaredLength)
        guard headerLength <= bytes.count - 8 else {
            throw malformed("header length \(headerLength) runs past the end of the \(bytes.count)-byte file")
        }
        let header = bytes[8..<(8 + headerLength)]
        guard String(validating: header, as: UTF8.self) != nil else {
            throw malformed("header is not valid UTF-8")
        }
        let root: SafeTensorsJSON
        do {
            root = try SafeTensorsJSON.parse(header)
        } catch {
            throw malformed(error.description)
        }
        guard case let .object(members) = root else {
            throw malformed("header is not a JSON object")
        }

        let dataStart = 8 + headerLength
        let dataLength = bytes.count - dataStart
        var metadata: [String: String] = [:]
        var tensors: [String: TensorInfo] = [:]
        for (key, value) in members {
            if key == "__metadata__" {
                metadata = try Self.parseMetadata(value, malformed: malformed)
            } else {
                tensors[key] = try Self.parseTensorInfo(
                    name: key, value, dataLength: dataLength, malformed: malformed)
            }
        }
        try Self.checkTiling(Array(tensors.values), dataLength: dataLength, malformed: malformed)

        self.source = source
        self.metadata = metadata
        self.names = tensors.keys.sorted()
        self.tensors = tensors
        self.bytes = bytes
        self.dataStart = dataStart
    }

    /// Whether the file holds a tensor called `name`.
    public func contains(_ name: String) -> Bool { tensors[name] != nil }

    /// Dtype, shape and byte range of tensor `name`.
    /// - Throws: `RecurError.malformed` when the file has no such tensor.
    public func info(_ name: String) throws -> TensorInfo {
        guard let info = tensors[name] else {
            throw RecurError.malformed(source: source, detail: "no tensor named \(SafeTensorsJSON.quoted(name))")
        }
        return info
    }

    /// The shape of tensor `name` (rank 0 for a scalar).
    public func shape(of name: String) throws -> Shape { try info(name).shape }

    /// The element type of tensor `name` as stored.
    public func dtype(of name: String) throws -> SafeTensorsDType { try info(name).dtype }

    /// The values of tensor `name` as `Float`, row-major. F32 is exact, F16 and BF16 widen
    /// exactly, F64 rounds to nearest.
    /// - Throws: `RecurError.malformed` when the tensor is missing or not floating-point.
    public func floats(_ name: String) throws -> [Float] {
        let info = try info(name)
        switch info.dtype {
        case .float32: return elements(info, as: UInt32.self) { Float(bitPattern: $0) }
        case .float64: return elements(info, as: UInt64.self) { Float(Double(bitPattern: $0)) }
        case .float16: return elements(info, as: UInt16.self) { Self.float(fromHalf: $0) }
        case .bfloat16: return elements(info, as: UInt16.self) { Float(bitPattern: UInt32($0) << 16) }
        default: throw wrongType(info, reader: "floats(_:)", accepts: "F32, F64, F16 or BF16")
        }
    }

    /// The values of tensor `name` as `Double`, row-major. Every accepted type converts exactly.
    /// - Throws: `RecurError.malformed` when the tensor is missing or not floating-point.
    public func doubles(_ name: String) throws -> [Double] {
        let info = try info(name)
        switch info.dtype {
        case .float64: return elements(info, as: UInt64.self) { Double(bitPattern: $0) }
        case .float32: return elements(info, as: UInt32.self) { Double(Float(bitPattern: $0)) }
        case .float16: return elements(info, as: UInt16.self) { Double(Self.float(fromHalf: $0)) }
        case .bfloat16: return elements(info, as: UInt16.self) { Double(Float(bitPattern: UInt32($0) << 16)) }
        default: throw wrongType(info, reader: "doubles(_:)", accepts: "F64, F32, F16 or BF16")
        }
    }

    /// The values of tensor `name` as `Int64`, row-major; I32 widens.
    /// - Throws: `RecurError.malformed` when the tensor is missing or not I64 or I32.
    public func int64s(_ name: String) throws -> [Int64] {
        let info = try info(name)
        switch info.dtype {
        case .int64: return elements(info, as: UInt64.self) { Int64(bitPattern: $0) }
        case .int32: return elements(info, as: UInt32.self) { Int64(Int32(bitPattern: $0)) }
        default: throw wrongType(info, reader: "int64s(_:)", accepts: "I64 or I32")
        }
    }

    /// The values of tensor `name` as `Int32`, row-major.
    /// - Throws: `RecurError.malformed` when the tensor is missing or not I32.
    public func int32s(_ name: String) throws -> [Int32] {
        let info = try info(name)
        guard info.dtype == .int32 else { throw wrongType(info, reader: "int32s(_:)", accepts: "I32") }
        return elements(info, as: UInt32.self) { Int32(bitPattern: $0) }
    }

    // MARK: Decoding

    /// Reads every element of `info` as the little-endian integer `Raw`, then converts it.
    private func elements<Raw: FixedWidthInteger, Value>(
        _ info: TensorInfo, as raw: Raw.Type, _ convert: (Raw) -> Value
    ) -> [Value] {
        let count = info.byteRange.count / MemoryLayout<Raw>.size
        let start = dataStart + info.byteRange.lowerBound
        return bytes.withUnsafeBytes { buffer in
            (0..<count).map { index in
                let offset = start + index * MemoryLayout<Raw>.size
                return convert(Raw(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: Raw.self)))
            }
        }
    }

    /// IEEE 754 binary16 to binary32. Every half value is exactly representable as a float.
    static func float(fromHalf bits: UInt16) -> Float {
        let sign: UInt32 = UInt32(bits & 0x8000) << 16
        let exponent = UInt32(bits >> 10) & 0x1F
        let mantissa = UInt32(bits & 0x03FF)
        switch exponent {
        case 0:
            // Zero or subnormal: mantissa × 2^-24, no implicit leading one.
            let magnitude = Float(mantissa) * 0x1p-24
            return sign != 0 ? -magnitude : magnitude
        case 0x1F:
            // Infinity or NaN; the NaN payload moves to the top of the float mantissa.
            return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
        default:
            // Rebias the exponent from 15 to 127.
            return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
        }
    }

    private func wrongType(_ info: TensorInfo, reader: String, accepts: String) -> RecurError {
        .malformed(
            source: source,
            detail: "tensor \(SafeTensorsJSON.quoted(info.name)) has dtype \(info.dtype); \(reader) reads \(accepts)")
    }

    // MARK: Header validation

    private static func parseMetadata(
        _ value: SafeTensorsJSON, malformed: (String) -> RecurError
    ) throws -> [String: String] {
        switch value {
        case .null:
            return [:]
        case let .object(entries):
            var metadata: [String: String] = [:]
            for (key, entry) in entries {
                guard case let .string(text) = entry else {
                    throw malformed("__metadata__ entry \(SafeTensorsJSON.quoted(key)) is not a string")
                }
                metadata[key] = text
            }
            return metadata
        default:
            throw malformed("__metadata__ is not an object of strings")
        }
    }

    private static func parseTensorInfo(
        name: String, _ value: SafeTensorsJSON, dataLength: Int, malformed: (String) -> RecurError
    ) throws -> TensorInfo {
        let label = "tensor \(SafeTensorsJSON.quoted(name))"
        guard case let .object(fields) = value else { throw malformed("\(label): entry is not an object") }
        func field(_ key: String) throws -> SafeTensorsJSON {
            guard let found = fields.first(where: { $0.key == key }) else {
                throw malformed("\(label): missing \"\(key)\"")
            }
            return found.value
        }

        guard case let .string(dtypeName) = try field("dtype") else {
            throw malformed("\(label): \"dtype\" is not a string")
        }
        guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
            throw malformed("\(label): unknown dtype \(SafeTensorsJSON.quoted(dtypeName))")
        }

        guard case let .array(shapeValues) = try field("shape") else {
            throw malformed("\(label): \"shape\" is not an array")
        }
        var dimensions: [Int] = []
        for (axis, dimensionValue) in shapeValues.enumerated() {
            dimensions.append(try nonNegativeInteger(dimensionValue) { problem in
                malformed("\(label): shape dimension \(axis) \(problem)")
            })
        }
        var elementCount = 1
        for dimension in dimensions {
            let (product, overflow) = elementCount.multipliedReportingOverflow(by: dimension)
            guard !overflow else { throw malformed("\(label): shape \(Shape(dimensions)) has too many elements to count") }
            elementCount = product
        }
        let (byteCount, overflow) = elementCount.multipliedReportingOverflow(by: dtype.byteSize)
        guard !overflow else { throw malformed("\(label): shape \(Shape(dimensions)) of \(dtype) has too many bytes to count") }

        guard case let .array(offsetValues) = try field("data_offsets"), offsetValues.count == 2 else {
            throw malformed("\(label): \"data_offsets\" is not an array of two integers")
        }
        let begin = try nonNegativeInteger(offsetValues[0]) { malformed("\(label): data_offsets begin \($0)") }
        let end = try nonNegativeInteger(offsetValues[1]) { malformed("\(label): data_offsets end \($0)") }
        guard begin <= end else {
            throw malformed("\(label): data_offsets [\(begin), \(end)] end before they begin")
        }
        guard end <= dataLength else {
            throw malformed("\(label): data_offsets [\(begin), \(end)] run past the \(dataLength)-byte data section")
        }
        guard end - begin == byteCount else {
            throw malformed("\(label): data_offsets [\(begin), \(end)] hold \(end - begin) bytes, but shape \(Shape(dimensions)) of \(dtype) needs \(byteCount)")
        }
        return TensorInfo(name: name, dtype: dtype, shape: Shape(dimensions), byteRange: begin..<end)
    }

    /// The value as an `Int` ≥ 0, or the error `problem` makes from a description of what is wrong.
    private static func nonNegativeInteger(
        _ value: SafeTensorsJSON, problem: (String) -> RecurError
    ) throws -> Int {
        guard case let .number(text) = value else { throw problem("is not a number") }
        guard !text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) else {
            throw problem("is \(text), not an integer")
        }
        guard let integer = Int(text) else {
            throw problem(text.hasPrefix("-") ? "is \(text), negative" : "is \(text), too large")
        }
        guard integer >= 0 else { throw problem("is \(text), negative") }
        return integer
    }

    /// Throws unless the tensors' byte ranges cover the data section exactly once, in some order.
    private static func checkTiling(
        _ tensors: [TensorInfo], dataLength: Int, malformed: (String) -> RecurError
    ) throws {
        let ordered = tensors.sorted {
            ($0.byteRange.lowerBound, $0.byteRange.upperBound) < ($1.byteRange.lowerBound, $1.byteRange.upperBound)
        }
        var covered = 0
        var previous: TensorInfo?
        for tensor in ordered {
            let range = tensor.byteRange
            if range.lowerBound < covered, let previous {
                throw malformed(
                    "tensor \(SafeTensorsJSON.quoted(tensor.name)) bytes \(range) overlap tensor \(SafeTensorsJSON.quoted(previous.name)) bytes \(previous.byteRange)")
            }
            guard range.lowerBound == covered else {
                throw malformed("data section bytes \(covered)..<\(range.lowerBound) belong to no tensor")
            }
            covered = range.upperBound
            previous = tensor
        }
        guard covered == dataLength else {
            throw malformed("data section bytes \(covered)..<\(dataLength) belong to no tensor")
        }
    }
}

/// Builds a safetensors file from host arrays and writes it atomically.
///
/// ```swift
/// var writer = SafeTensorsWriter(metadata: ["cell": "lstm"])
/// try writer.add("weight_ih_l0", floats: w, shape: [4 * H, I])
/// try writer.write(to: "model.safetensors")
/// ```
///
/// Tensors are laid out sorted by name; the header is padded with spaces to a multiple of 8 bytes
/// so the data section starts 8-byte aligned, as the reference implementation does.
public struct SafeTensorsWriter: Sendable {
    private struct Entry: Sendable {
        var dtype: SafeTensorsDType
        var shape: Shape
        var data: [UInt8]
    }

    /// Strings stored under `__metadata__`.
    public var metadata: [String: String]
    private var entries: [String: Entry] = [:]

    /// An empty file with the given `__metadata__` strings.
    public init(metadata: [String: String] = [:]) {
        self.metadata = metadata
    }

    /// Names added so far, in ascending order.
    public var names: [String] { entries.keys.sorted() }

    /// Adds a float32 (F32) tensor.
    /// - Throws: `RecurError.invalidArgument` for a reserved or repeated name or a negative
    ///   dimension, `RecurError.shapeMismatch` when `values` doesn't hold `shape.count` elements.
    public mutating func add(_ name: String, floats values: [Float], shape: Shape) throws {
        try add(name, dtype: .float32, shape: shape, count: values.count, values.map(\.bitPattern))
    }

    /// Adds a float64 (F64) tensor. Throws as `add(_:floats:shape:)` does.
    public mutating func add(_ name: String, doubles values: [Double], shape: Shape) throws {
        try add(name, dtype: .float64, shape: shape, count: values.count, values.map(\.bitPattern))
    }

    /// Adds an int64 (I64) tensor. Throws as `add(_:floats:shape:)` does.
    public mutating func add(_ name: String, int64s values: [Int64], shape: Shape) throws {
        try add(name, dtype: .int64, shape: shape, count: values.count, values)
    }

    /// Adds an int32 (I32) tensor. Throws as `add(_:floats:shape:)` does.
    public mutating func add(_ name: String, int32s values: [Int32], shape: Shape) throws {
        try add(name, dtype: .int32, shape: shape, count: values.count, values)
    }

    private mutating func add<Raw: FixedWidthInteger>(
        _ name: String, dtype: SafeTensorsDType, shape: Shape, count: Int, _ raw: [Raw]
    ) throws {
        let operation = "SafeTensorsWriter.add"
        guard name != "__metadata__" else {
            throw RecurError.invalidArgument(operation: operation, detail: "\"__metadata__\" is reserved for metadata")
        }
        guard entries[name] == nil else {
            throw RecurError.invalidArgument(operation: operation, detail: "a tensor named \(SafeTensorsJSON.quoted(name)) was already added")
        }
        guard shape.dimensions.allSatisfy({ $0 >= 0 }) else {
            throw RecurError.invalidArgument(operation: operation, detail: "shape \(shape) has a negative dimension")
        }
        guard shape.count == count else {
            throw RecurError.shapeMismatch(
                operation: operation,
                detail: "\(SafeTensorsJSON.quoted(name)) has \(count) values, shape \(shape) needs \(shape.count)")
        }
        var data = [UInt8](repeating: 0, count: count * MemoryLayout<Raw>.size)
        data.withUnsafeMutableBytes { buffer in
            for (index, value) in raw.enumerated() {
                buffer.storeBytes(of: value.littleEndian, toByteOffset: index * MemoryLayout<Raw>.size, as: Raw.self)
            }
        }
        entries[name] = Entry(dtype: dtype, shape: shape, data: data)
    }

    /// The complete file: length field, padded header, data section.
    public func serialized() -> [UInt8] {
        var fields: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.sorted { $0.key < $1.key }.map { key, value in
                SafeTensorsJSON.quoted(key) + ":" + SafeTensorsJSON.quoted(value)
            }
            fields.append("\"__metadata__\":{" + pairs.joined(separator: ",") + "}")
        }
        let ordered = entries.sorted { $0.key < $1.key }
        var offset = 0
        for (name, entry) in ordered {
            let shape = entry.shape.dimensions.map(String.init).joined(separator: ",")
            fields.append(
                SafeTensorsJSON.quoted(name) + ":{\"dtype\":\"\(entry.dtype.rawValue)\",\"shape\":[\(shape)],"
                    + "\"data_offsets\":[\(offset),\(offset + entry.data.count)]}")
            offset += entry.data.count
        }
        var header = Array(("{" + fields.joined(separator: ",") + "}").utf8)
        header.append(contentsOf: repeatElement(UInt8(ascii: " "), count: (8 - header.count % 8) % 8))

        var file: [UInt8] = []
        file.reserveCapacity(8 + header.count + offset)
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { file.append(contentsOf: $0) }
        file.append(contentsOf: header)
        for (_, entry) in ordered {
            file.append(contentsOf: entry.data)
        }
        return file
    }

    /// Writes the file to `path`, replacing any file there atomically: a crash mid-write leaves
    /// the previous file intact (see `FileBytes.writeAtomically`).
    /// - Throws: `RecurError.io` when the file can't be written.
    public func write(to path: String) throws {
        try FileBytes.writeAtomically(serialized(), to: path)
    }
}
