import Foundation
import Testing
@testable import Recur

/// A safetensors file assembled by hand: `header` is the JSON text, `data` the data section.
/// `declaredLength` overrides the length field to build files that lie about their header.
private func rawFile(header: String, data: [UInt8] = [], declaredLength: UInt64? = nil) -> [UInt8] {
    let headerBytes = Array(header.utf8)
    var bytes: [UInt8] = []
    withUnsafeBytes(of: (declaredLength ?? UInt64(headerBytes.count)).littleEndian) { bytes.append(contentsOf: $0) }
    bytes.append(contentsOf: headerBytes)
    bytes.append(contentsOf: data)
    return bytes
}

/// A file holding one tensor `x` with the given dtype and raw little-endian data.
private func singleTensorFile(dtype: String, shape: [Int], data: [UInt8]) -> [UInt8] {
    let shapeText = shape.map(String.init).joined(separator: ",")
    return rawFile(
        header: #"{"x":{"dtype":"\#(dtype)","shape":[\#(shapeText)],"data_offsets":[0,\#(data.count)]}}"#,
        data: data)
}

private func littleEndianBytes<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
    values.flatMap { value in withUnsafeBytes(of: value.littleEndian) { Array($0) } }
}

/// A fresh empty directory, removed by the caller.
private func makeTemporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("recur-safetensors-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

@Suite struct SafeTensorsTests {
    // MARK: Round trip and writer layout

    @Test func roundTripKeepsValuesShapesTypesAndMetadata() throws {
        let metadata = ["cell": "lstm", "quoted \"text\"": "line\nbreak\ttab \\ ünïcødé \u{1}"]
        var writer = SafeTensorsWriter(metadata: metadata)
        let weights: [Float] = [1, -2.5, .pi, -0.0, .greatestFiniteMagnitude, .leastNonzeroMagnitude]
        let doubles: [Double] = [0.1, -1e300, .pi]
        let longs: [Int64] = [.min, -1, 0, .max]
        let ints: [Int32] = [.min, 7, .max]
        try writer.add("weight", floats: weights, shape: [2, 3])
        try writer.add("double", doubles: doubles, shape: [3])
        try writer.add("long", int64s: longs, shape: [2, 2])
        try writer.add("int", int32s: ints, shape: [3, 1])
        try writer.add("scalar", floats: [42], shape: [])
        try writer.add("empty", floats: [], shape: [0, 4])

        let file = try SafeTensorsFile(bytes: writer.serialized())
        #expect(file.metadata == metadata)
        #expect(file.names == ["double", "empty", "int", "long", "scalar", "weight"])
        #expect(try file.floats("weight").map(\.bitPattern) == weights.map(\.bitPattern))
        #expect(try file.shape(of: "weight") == [2, 3])
        #expect(try file.dtype(of: "weight") == .float32)
        #expect(try file.doubles("double") == doubles)
        #expect(try file.dtype(of: "double") == .float64)
        #expect(try file.int64s("long") == longs)
        #expect(try file.shape(of: "long") == [2, 2])
        #expect(try file.int32s("int") == ints)
        #expect(try file.int64s("int") == ints.map(Int64.init))
        #expect(try file.floats("scalar") == [42])
        #expect(try file.shape(of: "scalar") == Shape([]))
        #expect(try file.floats("empty") == [])
        #expect(try file.shape(of: "empty") == [0, 4])
    }

    @Test func writerMatchesTheReferenceImplementationByteForByte() throws {
        // safetensors.torch.save({"weight": [[1, 2, 3], [4, 5, 6]], "bias": [0.5, -0.25]},
        // metadata={"cell": "lstm"}) with safetensors 0.8.0.
        let header = #"{"__metadata__":{"cell":"lstm"},"bias":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"#
            + #""weight":{"dtype":"F32","shape":[2,3],"data_offsets":[8,32]}}   "#
        let expected = rawFile(
            header: header,
            data: littleEndianBytes([Float(0.5), -0.25, 1, 2, 3, 4, 5, 6].map(\.bitPattern)))
        #expect(expected.count == 192)

        var writer = SafeTensorsWriter(metadata: ["cell": "lstm"])
        try writer.add("weight", floats: [1, 2, 3, 4, 5, 6], shape: [2, 3])
        try writer.add("bias", floats: [0.5, -0.25], shape: [2])
        #expect(writer.serialized() == expected)
    }

    @Test func headerIsPaddedToAMultipleOfEightBytes() throws {
        for length in 0..<10 {
            var writer = SafeTensorsWriter(metadata: ["k": String(repeating: "v", count: length)])
            try writer.add("x", floats: [1], shape: [1])
            let bytes = writer.serialized()
            let headerLength = bytes[0..<8].reversed().reduce(0) { $0 << 8 | Int($1) }
            #expect(headerLength % 8 == 0)
            #expect(bytes.count == 8 + headerLength + 4)
        }
    }

    @Test func writerRejectsBadTensors() throws {
        var writer = SafeTensorsWriter()
        try writer.add("x", floats: [1, 2], shape: [2])
        #expect(throws: RecurError.self) { try writer.add("x", floats: [1], shape: [1]) }
        #expect(throws: RecurError.self) { try writer.add("__metadata__", floats: [1], shape: [1]) }
        #expect(throws: RecurError.self) { try writer.add("y", floats: [1, 2, 3], shape: [2]) }
        #expect(throws: RecurError.self) { try writer.add("z", floats: [], shape: [-1, 0]) }
        #expect(writer.names == ["x"])
    }

    // MARK: Decoding of each dtype

    @Test func decodesFloat16BitPatterns() throws {
        let cases: [(bits: UInt16, value: Float)] = [
            (0x3C00, 1), (0xC000, -2), (0x3555, 0.333_251_95), (0x7BFF, 65504),
            (0x0400, 0x1p-14), (0x0001, 0x1p-24), (0x03FF, 1023 * 0x1p-24),
            (0x0000, 0), (0x7C00, .infinity), (0xFC00, -.infinity),
        ]
        let file = try SafeTensorsFile(
            bytes: singleTensorFile(dtype: "F16", shape: [cases.count], data: littleEndianBytes(cases.map(\.bits))))
        #expect(try file.floats("x") == cases.map(\.value))
        #expect(try file.doubles("x") == cases.map { Double($0.value) })

        let signs = try SafeTensorsFile(
            bytes: singleTensorFile(dtype: "F16", shape: [2], data: littleEndianBytes([UInt16(0x8000), 0x7E00])))
        let values = try signs.floats("x")
        #expect(values[0] == 0 && values[0].sign == .minus)
        #expect(values[1].isNaN)
    }

    @Test func decodesBFloat16BitPatterns() throws {
        let cases: [(bits: UInt16, value: Float)] = [
            (0x3F80, 1), (0xC040, -3), (0x4049, 3.140625), (0x7F7F, Float(bitPattern: 0x7F7F_0000)),
            (0x0001, Float(bitPattern: 0x0001_0000)), (0x7F80, .infinity), (0xFF80, -.infinity),
        ]
        let file = try SafeTensorsFile(
            bytes: singleTensorFile(dtype: "BF16", shape: [cases.count], data: littleEndianBytes(cases.map(\.bits))))
        #expect(try file.floats("x") == cases.map(\.value))
        #expect(try file.doubles("x") == cases.map { Double($0.value) })
    }

    @Test func decodesFloat64ExactlyAndRoundsToFloat() throws {
        let values: [Double] = [0.1, -1e300, .pi, 1 + 0x1p-40, -0x1p-1074]
        let file = try SafeTensorsFile(
            bytes: singleTensorFile(dtype: "F64", shape: [values.count], data: littleEndianBytes(values.map(\.bitPattern))))
        #expect(try file.doubles("x") == values)
        #expect(try file.floats("x") == values.map { Float($0) })
    }

    @Test func decodesIntegers() throws {
        let longs: [Int64] = [.min, -1, 0, 1, .max, 0x0102_0304_0506_0708]
        let file = try SafeTensorsFile(
            bytes: singleTensorFile(dtype: "I64", shape: [2, 3], data: littleEndianBytes(longs)))
        #expect(try file.int64s("x") == longs)

        let ints: [Int32] = [.min, -7, .max]
        let intFile = try SafeTensorsFile(
            bytes: singleTensorFile(dtype: "I32", shape: [3], data: littleEndianBytes(ints)))
        #expect(try intFile.int32s("x") == ints)
        #expect(try intFile.int64s("x") == ints.map(Int64.init))
    }

    @Test func readingTheWrongTypeOrAMissingNameThrows() throws {
        let file = try SafeTensorsFile(
            bytes: singleTensorFile(dtype: "I64", shape: [1], data: littleEndianBytes([Int64(3)])), source: "ints")
        #expect(throws: RecurError.self) { try file.floats("x") }
        #expect(throws: RecurError.self) { try file.doubles("x") }
        #expect(throws: RecurError.self) { try file.int32s("x") }
        #expect(throws: RecurError.malformed(source: "ints", detail: #"no tensor named "y""#)) { try file.floats("y") }
        #expect(!file.contains("y"))
        #expect(file.contains("x"))
    }

    @Test func acceptsOtherDeclaredTypesAndAWhitespacePaddedHeader() throws {
        let header = #"  { "__metadata__" : null , "flags": {"dtype": "BOOL", "shape": [3], "data_offsets": [0, 3]},"#
            + #" "e": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [3, 4], "extra": [1, {"a": "\u00e9\ud83d\ude00"}]} }"#
            + "\n  "
        let file = try SafeTensorsFile(bytes: rawFile(header: header, data: [1, 0, 1, 7]))
        #expect(file.metadata.isEmpty)
        #expect(file.names == ["e", "flags"])
        #expect(try file.dtype(of: "flags") == .bool)
        #expect(try file.info("e").byteRange == 3..<4)
    }

    // MARK: Malformed files

    struct MalformedCase: CustomTestStringConvertible, Sendable {
        var name: String
        var bytes: [UInt8]
        /// Text the error detail must contain, so each case proves the check it targets fired.
        var expectedDetail: String
        var testDescription: String { name }
    }

    static let tensorX = #""x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#

    static let malformedCases: [MalformedCase] = [
        MalformedCase(name: "empty file", bytes: [], expectedDetail: "shorter than the 8-byte"),
        MalformedCase(name: "seven bytes", bytes: [1, 0, 0, 0, 0, 0, 0], expectedDetail: "shorter than the 8-byte"),
        MalformedCase(
            name: "header longer than the file",
            bytes: rawFile(header: "{}", declaredLength: 3), expectedDetail: "runs past the end"),
        MalformedCase(
            name: "absurd header length",
            bytes: rawFile(header: "{}", declaredLength: 200_000_000), expectedDetail: "exceeds the limit"),
        MalformedCase(
            name: "header length 2^64 - 1",
            bytes: rawFile(header: "{}", declaredLength: .max), expectedDetail: "exceeds the limit"),
        MalformedCase(
            name: "truncated JSON", bytes: rawFile(header: #"{"x":"#), expectedDetail: "invalid JSON"),
        MalformedCase(
            name: "trailing garbage after JSON", bytes: rawFile(header: "{} x"), expectedDetail: "invalid JSON"),
        MalformedCase(
            name: "NUL padding", bytes: rawFile(header: "{}\0\0"), expectedDetail: "invalid JSON"),
        MalformedCase(
            name: "header not UTF-8",
            bytes: littleEndianBytes([UInt64(4)]) + [UInt8(ascii: "{"), 0xFF, 0xFE, UInt8(ascii: "}")],
            expectedDetail: "UTF-8"),
        MalformedCase(name: "top level is an array", bytes: rawFile(header: "[]"), expectedDetail: "not a JSON object"),
        MalformedCase(
            name: "nesting bomb",
            bytes: rawFile(header: #"{"x":"# + String(repeating: "[", count: 100_000) + "}"),
            expectedDetail: "nesting deeper"),
        MalformedCase(
            name: "duplicate names",
            bytes: rawFile(header: "{\(tensorX),\(tensorX)}", data: [UInt8](repeating: 0, count: 8)),
            expectedDetail: "duplicate key"),
        MalformedCase(
            name: "entry not an object", bytes: rawFile(header: #"{"x":[1]}"#), expectedDetail: "not an object"),
        MalformedCase(
            name: "missing dtype",
            bytes: rawFile(header: #"{"x":{"shape":[1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]),
            expectedDetail: #"missing "dtype""#),
        MalformedCase(
            name: "dtype not a string",
            bytes: rawFile(header: #"{"x":{"dtype":4,"shape":[1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]),
            expectedDetail: #""dtype" is not a string"#),
        MalformedCase(
            name: "unknown dtype",
            bytes: singleTensorFile(dtype: "F7", shape: [1], data: [0, 0, 0, 0]), expectedDetail: "unknown dtype"),
        MalformedCase(
            name: "missing shape",
            bytes: rawFile(header: #"{"x":{"dtype":"F32","data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]),
            expectedDetail: #"missing "shape""#),
        MalformedCase(
            name: "shape not an array",
            bytes: rawFile(header: #"{"x":{"dtype":"F32","shape":1,"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]),
            expectedDetail: #""shape" is not an array"#),
        MalformedCase(
            name: "negative dimension",
            bytes: rawFile(header: #"{"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}"#),
            expectedDetail: "negative"),
        MalformedCase(
            name: "fractional dimension",
            bytes: rawFile(header: #"{"x":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]),
            expectedDetail: "not an integer"),
        MalformedCase(
            name: "dimension as a string",
            bytes: rawFile(header: #"{"x":{"dtype":"F32","shape":["1"],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]),
            expectedDetail: "not a number"),
        MalformedCase(
            name: "dimension beyond Int",
            bytes: rawFile(header: #"{"x":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,4]}}"#),
            expectedDetail: "too large"),
        MalformedCase(
            name: "shape product overflow",
            bytes: rawFile(header: #"{"x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#),
            expectedDetail: "too many elements"),
        MalformedCase(
            name: "shape byte count overflow",
            bytes: rawFile(header: #"{"x":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,4]}}"#),
            expectedDetail: "too many bytes"),
        MalformedCase(
            name: "missing data_offsets",
            bytes: rawFile(header: #"{"x":{"dtype":"F32","shape":[1]}}"#, data: [0, 0, 0, 0]),
            expectedDetail: #"missing "data_offsets""#),
        MalformedCase(
            name: "data_offsets with one entry",
            bytes: rawFile(header: #"{"x":{"dtype":"F32","shape":[1],"data_offsets":[4]}}"#, data: [0, 0, 0, 0]),
            expectedDetail: "array of two integers"),
        MalformedCase(
            name: "negative offset",
            bytes: rawFile(header: #"{"x":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}"#, data: [0, 0, 0, 0]),
            expectedDetail: "negative"),
        MalformedCase(
            name: "offsets past the data section",
            bytes: rawFile(header: "{\(tensorX)}", data: [0, 0, 0, 0]),
            expectedDetail: "run past the 4-byte data section"),
        MalformedCase(
            name: "end before begin",
            bytes: rawFile(header: #"{"x":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}"#, data: [UInt8](repeating: 0, count: 8)),
            expectedDetail: "end before they begin"),
        MalformedCase(
            name: "byte size not matching shape",
            bytes: rawFile(header: #"{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8)),
            expectedDetail: "needs 12"),
        MalformedCase(
            name: "overlapping tensors",
            bytes: rawFile(
                header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                data: [UInt8](repeating: 0, count: 12)),
            expectedDetail: "overlap"),
        MalformedCase(
            name: "gap between tensors",
            bytes: rawFile(
                header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#,
                data: [UInt8](repeating: 0, count: 12)),
            expectedDetail: "belong to no tensor"),
        MalformedCase(
            name: "trailing bytes after the last tensor",
            bytes: rawFile(header: "{\(tensorX)}", data: [UInt8](repeating: 0, count: 9)),
            expectedDetail: "belong to no tensor"),
        MalformedCase(
            name: "metadata value not a string",
            bytes: rawFile(header: #"{"__metadata__":{"layers":2}}"#), expectedDetail: "is not a string"),
        MalformedCase(
            name: "metadata not an object",
            bytes: rawFile(header: #"{"__metadata__":"lstm"}"#), expectedDetail: "not an object of strings"),
    ]

    @Test(arguments: malformedCases)
    func malformedBytesThrowMalformed(_ testCase: MalformedCase) {
        do {
            _ = try SafeTensorsFile(bytes: testCase.bytes, source: "case")
            Issue.record("\(testCase.name): accepted")
        } catch let RecurError.malformed(source, detail) {
            #expect(source == "case")
            #expect(detail.contains(testCase.expectedDetail), "\(testCase.name): \(detail)")
        } catch {
            Issue.record("\(testCase.name): threw \(error) instead of RecurError.malformed")
        }
    }

    @Test func malformedFilesOnDiskNameTheirPath() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        for (index, testCase) in Self.malformedCases.enumerated() {
            let path = directory.appendingPathComponent("case\(index).safetensors").path
            try Data(testCase.bytes).write(to: URL(fileURLWithPath: path))
            do {
                _ = try SafeTensorsFile(contentsOf: path)
                Issue.record("\(testCase.name): accepted")
            } catch let RecurError.malformed(source, _) {
                #expect(source == path)
            } catch {
                Issue.record("\(testCase.name): threw \(error) instead of RecurError.malformed")
            }
        }
    }

    // MARK: Files

    @Test func missingFileOrDirectoryThrowsIO() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect {
            try SafeTensorsFile(contentsOf: directory.appendingPathComponent("absent.safetensors").path)
        } throws: { error in
            if case RecurError.io = error { true } else { false }
        }
        #expect {
            try SafeTensorsFile(contentsOf: directory.path)
        } throws: { error in
            if case RecurError.io = error { true } else { false }
        }
    }

    @Test func atomicWriteReplacesTheFileAndLeavesNoTemporaryBehind() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("model.safetensors").path

        var first = SafeTensorsWriter(metadata: ["version": "1"])
        try first.add("w", floats: [1, 2, 3], shape: [3])
        try first.write(to: path)
        #expect(try SafeTensorsFile(contentsOf: path).metadata["version"] == "1")

        var second = SafeTensorsWriter(metadata: ["version": "2"])
        try second.add("w", floats: [4, 5], shape: [2])
        try second.add("b", doubles: [6], shape: [1])
        try second.write(to: path)

        let file = try SafeTensorsFile(contentsOf: path)
        #expect(file.metadata["version"] == "2")
        #expect(try file.floats("w") == [4, 5])
        #expect(try file.doubles("b") == [6])
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["model.safetensors"])
    }

    @Test func writeIntoAMissingDirectoryThrowsIO() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("absent/model.safetensors").path
        var writer = SafeTensorsWriter()
        try writer.add("w", floats: [1], shape: [1])
        #expect {
            try writer.write(to: path)
        } throws: { error in
            if case RecurError.io = error { true } else { false }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).isEmpty)
    }

    @Test func writeToABareFileNameUsesTheCurrentDirectory() {
        #expect(FileBytes.directoryName(of: "model.safetensors") == ".")
        #expect(FileBytes.directoryName(of: "/model.safetensors") == "/")
        #expect(FileBytes.directoryName(of: "runs/a/model.safetensors") == "runs/a")
    }
}
