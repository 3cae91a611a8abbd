// Building an ONNX graph one node at a time: constants become initialisers, every intermediate
// value gets a fresh name, and attributes are made by small typed helpers.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import ONNX

/// ONNX's `TensorProto.DataType` codes of the element types the exported graphs use.
enum ONNXElement: Int32 {
    case float = 1
    case int32 = 6
    case int64 = 7
}

/// One dimension of a graph input's or output's shape: a size or a name that the runtime binds.
enum ONNXDimension {
    case size(Int)
    case symbol(String)
}

/// A graph under construction.
struct ONNXGraphBuilder {
    private(set) var graph = Onnx_GraphProto()
    private var counter = 0

    init(name: String) {
        graph.name = name
    }

    /// A name not used before in this graph, from a readable stem.
    mutating func fresh(_ stem: String) -> String {
        counter += 1
        return "\(stem)_\(counter)"
    }

    mutating func addInput(_ name: String, _ element: ONNXElement, _ shape: [ONNXDimension]) {
        graph.input.append(Self.valueInfo(name, element, shape))
    }

    mutating func addOutput(_ name: String, _ element: ONNXElement, _ shape: [ONNXDimension]) {
        graph.output.append(Self.valueInfo(name, element, shape))
    }

    /// A float32 initialiser; its bytes are the host's, little-endian on every platform Recur
    /// builds for, as ONNX's `raw_data` requires.
    mutating func constant(_ stem: String, floats values: [Float], shape: [Int]) -> String {
        precondition(values.count == shape.reduce(1, *), "\(stem): \(values.count) values for shape \(shape)")
        var tensor = Onnx_TensorProto()
        tensor.name = fresh(stem)
        tensor.dataType = ONNXElement.float.rawValue
        tensor.dims = shape.map(Int64.init)
        tensor.rawData = values.withUnsafeBytes { Data($0) }
        graph.initializer.append(tensor)
        return tensor.name
    }

    /// An int64 initialiser (shapes, axes and slice bounds).
    mutating func constant(_ stem: String, int64s values: [Int64]) -> String {
        var tensor = Onnx_TensorProto()
        tensor.name = fresh(stem)
        tensor.dataType = ONNXElement.int64.rawValue
        tensor.dims = [Int64(values.count)]
        tensor.int64Data = values
        graph.initializer.append(tensor)
        return tensor.name
    }

    /// Adds a node of the default domain and returns its outputs' names: fresh names from
    /// `stem`, or `outputs` where given ("" leaves an optional output unused).
    @discardableResult
    mutating func node(_ operation: String, _ inputs: [String], outputs: [String]? = nil, outputCount: Int = 1,
                       attributes: [Onnx_AttributeProto] = []) -> [String] {
        var node = Onnx_NodeProto()
        node.opType = operation
        node.name = fresh(operation)
        node.input = inputs
        node.output = outputs ?? (0..<outputCount).map { _ in fresh(operation.lowercased()) }
        node.attribute = attributes
        graph.node.append(node)
        return node.output
    }

    /// A one-output node; returns its output's name.
    @discardableResult
    mutating func apply(_ operation: String, _ inputs: [String], attributes: [Onnx_AttributeProto] = [],
                        output: String? = nil) -> String {
        node(operation, inputs, outputs: output.map { [$0] }, attributes: attributes)[0]
    }

    private static func valueInfo(_ name: String, _ element: ONNXElement, _ shape: [ONNXDimension])
        -> Onnx_ValueInfoProto {
        var tensorType = Onnx_TypeProto.Tensor()
        tensorType.elemType = element.rawValue
        tensorType.shape.dim = shape.map { dimension in
            var proto = Onnx_TensorShapeProto.Dimension()
            switch dimension {
            case .size(let size): proto.dimValue = Int64(size)
            case .symbol(let symbol): proto.dimParam = symbol
            }
            return proto
        }
        var info = Onnx_ValueInfoProto()
        info.name = name
        info.type.tensorType = tensorType
        return info
    }
}

// MARK: Attributes

extension Onnx_AttributeProto {
    static func int(_ name: String, _ value: Int) -> Self {
        var attribute = Self()
        attribute.name = name
        attribute.type = .int
        attribute.i = Int64(value)
        return attribute
    }

    static func ints(_ name: String, _ values: [Int]) -> Self {
        var attribute = Self()
        attribute.name = name
        attribute.type = .ints
        attribute.ints = values.map(Int64.init)
        return attribute
    }

    static func string(_ name: String, _ value: String) -> Self {
        var attribute = Self()
        attribute.name = name
        attribute.type = .string
        attribute.s = Data(value.utf8)
        return attribute
    }

    static func strings(_ name: String, _ values: [String]) -> Self {
        var attribute = Self()
        attribute.name = name
        attribute.type = .strings
        attribute.strings = values.map { Data($0.utf8) }
        return attribute
    }
}
