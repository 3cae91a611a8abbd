// A trained model as an ONNX graph that ONNX Runtime (or any ONNX backend) runs with the outputs
// `Predictor` (`recur predict`) gives: Embedding → recurrent stack → Dense → output activation,
// with dropout removed, the padding convention of the training data, and for forecasters the
// series transform inside the graph.
//
// Shape legend: B batch, T time steps, V vocabulary, D embedding width, H hidden units,
// N directions (2 when bidirectional), G = gates * H, K outputs, F = N * H.

import ONNX
import Recur
import SwiftProtobuf

/// Writes a checkpoint's model as an ONNX model.
///
/// The graph's inputs and outputs, by task:
/// - classify: `ids` int64 `[B, T]` and `lengths` int32 `[B]` → `probabilities` float `[B, K]`:
///   the sigmoid of the one logit of a two-class model (the second class's probability, K = 1),
///   else the softmax over the classes.
/// - tag, lm: `ids`, `lengths` → `probabilities` float `[B, T, K]`, the softmax at every step
///   (at padded steps the softmax of the head's bias, as in Recur).
/// - forecast: `values` float `[B, T]` in the series' own units → `forecast` float `[B, K]` in
///   the series' units: the recorded transform (level, difference, revin) and standardisation
///   are part of the graph.
///
/// `ids` are padded on the side the training data was (`data.source`'s `padding`, `pre` unless
/// recorded otherwise) with id 0, as `padSequences` pads them, and `lengths` counts each row's
/// real ids (at least 1). A classifier trained with `--no-mask-padding` reads its padding, so its
/// graph has no `lengths` input. ONNX's recurrent operators take `sequence_lens` with the valid
/// steps first; for pre-padded rows the graph moves the valid steps to the front (a reversal of
/// the time axis, then of each row's first `lengths` steps: `ReverseSequence`) before the
/// stack, and moves every-step outputs back the same way after it.
///
/// The checkpoint's metadata (`recur.model`, `data.*`: vocabulary, classes, tags, source) goes
/// into the model's `metadata_props`, so a deployment finds the vocabulary with the weights.
public enum ONNXExport {
    /// The operator set the graphs use: 14 is where `RNN`, `GRU` and `LSTM` were last revised,
    /// and it comes after `Softmax` changed to normalising over one axis (13, PyTorch's
    /// semantics; `ReverseSequence` exists since 10). ONNX Runtime runs it since 1.8 (2021), so
    /// older deployments load the models too.
    public static let opsetVersion: Int64 = 14
    /// The IR version that goes with opset 14 (ONNX 1.9).
    public static let irVersion: Int64 = 7

    /// The ONNX model of `checkpoint`.
    /// - Throws: `RecurError.invalidArgument` for a model the graph cannot express exactly, with
    ///   the reason; `RecurError.malformed` for a parameter missing from the checkpoint, extra or
    ///   of the wrong shape.
    public static func model(of checkpoint: Checkpoint) throws -> Onnx_ModelProto {
        var exporter = try GraphExporter(checkpoint: checkpoint)
        try exporter.build()
        var model = Onnx_ModelProto()
        model.irVersion = irVersion
        model.producerName = "recur"
        model.docString = exporter.inputConvention
        var opset = Onnx_OperatorSetIdProto()
        opset.domain = ""
        opset.version = opsetVersion
        model.opsetImport = [opset]
        model.graph = exporter.builder.graph
        var properties = checkpoint.metadata
        properties["recur.model"] = try checkpoint.specification.json()
        properties["recur.inputs"] = exporter.inputConvention
        model.metadataProps = properties.sorted { $0.key < $1.key }.map { key, value in
            var entry = Onnx_StringStringEntryProto()
            entry.key = key
            entry.value = value
            return entry
        }
        return model
    }

    /// The serialized ONNX model of `checkpoint` (see `model(of:)`).
    public static func serialized(_ checkpoint: Checkpoint) throws -> [UInt8] {
        try model(of: checkpoint).serializedBytes()
    }

    /// Writes the ONNX model of `checkpoint` to `path` atomically (see `model(of:)`).
    public static func write(_ checkpoint: Checkpoint, to path: String) throws {
        try FileBytes.writeAtomically(try serialized(checkpoint), to: path)
    }
}

/// The graph of one checkpoint, built layer by layer.
private struct GraphExporter {
    let specification: ModelSpecification
    let parameters: [String: (shape: Shape, values: [Float])]
    /// The positions in the checkpoint's model of the layers the graph reads parameters from:
    /// the prefixes of their parameter names.
    let layerIndices: (embedding: Int?, recurrent: Int, head: Int)
    let source: DataSource?
    let standardization: Standardization?
    var builder = ONNXGraphBuilder(name: "recur")
    /// The graph's `lengths` (int32, for the recurrent operators) and its int64 copy (for
    /// `ReverseSequence`), when the graph takes lengths.
    private var lengths: String?
    private var lengths64: String?

    /// Whether the graph takes `lengths`: every id model but a classifier trained with
    /// `--no-mask-padding`, which reads its padding (`DataSource.classificationSequences`; taggers
    /// and language models skip padding whatever the embedding does with id 0).
    var readsLengths: Bool {
        specification.readsIDs && (specification.task != .classify || !specification.trainsPaddingEmbedding)
    }
    /// Whether the valid steps sit at the end of each row.
    var isPrePadded: Bool { readsLengths && (source?.padding ?? .pre) == .pre }

    /// What the graph takes and gives, for `doc_string` and `metadata_props`.
    var inputConvention: String {
        if !specification.readsIDs {
            let transform = source?.transform ?? .level
            return "values: float [batch, steps], the last steps of the series in its own units "
                + "(the model was trained on \(source?.sequenceLength ?? 0)); forecast: float [batch, "
                + "\(specification.outputSize)], the next values in the series' units (transform \(transform.rawValue) "
                + "inside the graph)"
        }
        let padding = (source?.padding ?? .pre).rawValue
        let inputs = readsLengths
            ? "ids: int64 [batch, steps], each row's ids padded with 0 on the \(padding) side; "
                + "lengths: int32 [batch], each row's number of real ids (at least 1)"
            : "ids: int64 [batch, steps], padded with 0 on the \(padding) side and read whole (the model reads its padding)"
        let output = switch specification.task {
        case .classify where specification.outputSize == 1:
            "probabilities: float [batch, 1], the sigmoid of the logit: the second class's probability"
        case .classify: "probabilities: float [batch, \(specification.outputSize)], the softmax over the classes"
        default: "probabilities: float [batch, steps, \(specification.outputSize)], the softmax at every step"
        }
        return inputs + "; " + output
    }

    init(checkpoint: Checkpoint) throws {
        let layers = try checkParameters(of: checkpoint).layers
        guard let recurrent = layers.firstIndex(where: { $0 is RecurrentLayer }),
              let head = layers.lastIndex(where: { $0 is Dense })
        else {
            throw RecurError.invalidArgument(
                operation: "ONNXExport", detail: "the graph exports a recurrent stack and a dense head")
        }
        layerIndices = (layers.firstIndex { $0 is Embedding }, recurrent, head)
        specification = checkpoint.specification
        parameters = checkpoint.parameters
        let recorded = try RecordedData(metadata: checkpoint.metadata)
        source = recorded.source
        standardization = recorded.standardization
        try Self.checkExpressible(specification, source: source)
    }

    /// Refuses, with the reason, what the graph would not compute exactly as Recur does.
    static func checkExpressible(_ specification: ModelSpecification, source: DataSource?) throws {
        func refuse(_ detail: String) -> RecurError {
            .invalidArgument(operation: "ONNXExport", detail: detail)
        }
        // Every cell Recur has maps onto an ONNX operator; a new cell must say how here.
        switch specification.cell {
        case .rnnTanh, .rnnRelu, .lstm, .gru, .gruResetBefore: break
        case .lstmProjection:
            throw refuse("cell \(specification.cell) (an LSTM with a projection of h to P = "
                + "\(specification.projectionSize ?? 0) features, PyTorch's proj_size) has no ONNX operator: ONNX's LSTM "
                + "has no projection; --format pytorch exports it for nn.LSTM(proj_size = P)")
        default: throw refuse("cell \(specification.cell) has no ONNX operator")
        }
        if !specification.readsIDs {
            guard specification.inputFeatures == 1 else {
                throw refuse("only forecasters of one column export to ONNX; this one reads "
                    + "\(specification.inputFeatures ?? 0) columns per step (--value-column with several); "
                    + "--format pytorch exports its parameters")
            }
            guard source != nil else {
                throw refuse("the checkpoint records no data source (data.source), so the forecaster's series "
                    + "transform, which the graph must apply, is unknown")
            }
        }
    }

    // MARK: The graph

    /// Adds the graph's inputs, nodes, initialisers and outputs to `builder`.
    mutating func build() throws {
        let spec = specification
        var x: String  // [T, B, I]
        var scaling: (center: String, scale: String)?
        if spec.readsIDs {
            x = try embedded()
        } else {
            let (input, center, scale) = scaledValues()
            (x, scaling) = (input, (center, scale))
        }
        let directions = spec.bidirectional ? 2 : 1
        var inputSize = spec.embeddingSize ?? spec.inputFeatures ?? 1
        var final = ""
        for layer in 0..<spec.layerCount {
            let last = layer == spec.layerCount - 1
            let (sequence, state) = try recurrentLayer(layer, input: x, inputSize: inputSize,
                                                       returnsState: last && !spec.returnsSequences)
            if let sequence { x = sequence } else { final = state! }
            inputSize = directions * spec.hiddenSize
        }
        let features = directions * spec.hiddenSize
        if spec.returnsSequences {
            var y = x  // [T, B, F]
            if isPrePadded { y = validStepsMoved(y, toFront: false) }
            y = builder.apply("Transpose", [y], attributes: [.ints("perm", [1, 0, 2])])  // [B, T, F]
            let logits = try dense(y, features: features)  // [B, T, K]
            builder.apply("Softmax", [logits], attributes: [.int("axis", -1)], output: "probabilities")
            builder.addOutput("probabilities", .float, [.symbol("batch"), .symbol("steps"), .size(spec.outputSize)])
            return
        }
        // h_n [N, B, H] → [B, N, H] → [B, F]: the final state of each direction side by side,
        // as RecurrentLayer's many-to-one output.
        let transposed = builder.apply("Transpose", [final], attributes: [.ints("perm", [1, 0, 2])])
        let state = builder.apply("Reshape", [transposed, builder.constant("batch_by_features", int64s: [0, -1])])
        let logits = try dense(state, features: features)  // [B, K]
        switch spec.task {
        case .classify:
            if spec.outputSize == 1 {
                builder.apply("Sigmoid", [logits], output: "probabilities")
            } else {
                builder.apply("Softmax", [logits], attributes: [.int("axis", -1)], output: "probabilities")
            }
            builder.addOutput("probabilities", .float, [.symbol("batch"), .size(spec.outputSize)])
        case .forecast:
            // ŷ = c + s · z', the model's output read back in the series' units.
            let scaled = builder.apply("Mul", [logits, scaling!.scale])
            builder.apply("Add", [scaled, scaling!.center], output: "forecast")
            builder.addOutput("forecast", .float, [.symbol("batch"), .size(spec.outputSize)])
        case .tag, .lm:
            preconditionFailure("taggers and language models return sequences")
        }
    }

    /// `ids` (and `lengths`) in, the embedded sequence `[T, B, D]` out, valid steps first.
    private mutating func embedded() throws -> String {
        builder.addInput("ids", .int64, [.symbol("batch"), .symbol("steps")])
        var ids = builder.apply("Transpose", ["ids"], attributes: [.ints("perm", [1, 0])])  // [T, B]
        if readsLengths {
            builder.addInput("lengths", .int32, [.symbol("batch")])
            lengths = "lengths"
            // ReverseSequence takes int64 lengths, the recurrent operators int32.
            lengths64 = builder.apply("Cast", ["lengths"], attributes: [.int("to", Int(ONNXElement.int64.rawValue))])
            if isPrePadded { ids = validStepsMoved(ids, toFront: true) }
        }
        let table = try parameter("\(layerIndices.embedding ?? 0).weight")
        let weight = builder.constant("embedding", floats: table.values, shape: table.shape.dimensions)
        return builder.apply("Gather", [weight, ids], attributes: [.int("axis", 0)])  // [T, B, D]
    }

    /// Pre-padded rows `[T, B, …]` with their valid steps first (toFront) or back at the end.
    /// Reversing the whole time axis puts row b's L_b valid steps first, in reverse order;
    /// reversing each row's first L_b steps restores their order. The inverse runs the same two
    /// reversals the other way round.
    private mutating func validStepsMoved(_ value: String, toFront: Bool) -> String {
        let lengths = lengths64!
        func reverseTime(_ value: String) -> String {
            // Slice with step −1 from the last step past the first: ends = INT64_MIN is clamped to
            // "before index 0" by the operator's definition.
            builder.apply("Slice", [
                value, builder.constant("last", int64s: [-1]), builder.constant("before_first", int64s: [Int64.min]),
                builder.constant("time_axis", int64s: [0]), builder.constant("backwards", int64s: [-1]),
            ])
        }
        func reverseValid(_ value: String) -> String {
            builder.apply("ReverseSequence", [value, lengths],
                          attributes: [.int("batch_axis", 1), .int("time_axis", 0)])
        }
        return toFront ? reverseValid(reverseTime(value)) : reverseTime(reverseValid(value))
    }

    /// `values` `[B, T]` in, z = (x − c) / s as `[T, B, 1]` out, with c and s (`[B, 1]` or `[1]`)
    /// for reading the forecast back: the recorded `SeriesTransform` and standardisation, as
    /// `SeriesTransform.scaling(of:fitted:)` computes them.
    private mutating func scaledValues() -> (input: String, center: String, scale: String) {
        builder.addInput("values", .float, [.symbol("batch"), .symbol("steps")])
        let fitted = standardization ?? Standardization(mean: 0, standardDeviation: 1)
        let center: String
        let scale: String
        switch source?.transform ?? .level {
        case .level:
            center = builder.constant("mean", floats: [fitted.mean], shape: [1])
            scale = builder.constant("deviation", floats: [fitted.standardDeviation], shape: [1])
        case .difference:
            // c = x_{T−1}, the window's last value; s = σ of the training part.
            center = builder.apply("Slice", [
                "values", builder.constant("last", int64s: [-1]), builder.constant("end", int64s: [Int64.max]),
                builder.constant("time_axis", int64s: [1]),
            ])
            scale = builder.constant("deviation", floats: [fitted.standardDeviation], shape: [1])
        case .revin:
            // c = mean(x), s = sqrt(mean((x − c)²)) + ε σ, per window.
            center = builder.apply("ReduceMean", ["values"], attributes: [.ints("axes", [1]), .int("keepdims", 1)])
            let deviation = builder.apply("Sub", ["values", center])
            let squares = builder.apply("Mul", [deviation, deviation])
            let variance = builder.apply("ReduceMean", [squares], attributes: [.ints("axes", [1]), .int("keepdims", 1)])
            let epsilon = builder.constant(
                "epsilon", floats: [SeriesTransform.revinEpsilon * fitted.standardDeviation], shape: [1])
            scale = builder.apply("Add", [builder.apply("Sqrt", [variance]), epsilon])
        }
        let z = builder.apply("Div", [builder.apply("Sub", ["values", center]), scale])  // [B, T]
        let timeMajor = builder.apply("Transpose", [z], attributes: [.ints("perm", [1, 0])])  // [T, B]
        let input = builder.apply("Unsqueeze", [timeMajor, builder.constant("feature_axis", int64s: [2])])
        return (input, center, scale)
    }

    /// One layer of the stack as ONNX's RNN, GRU or LSTM over `input` `[T, B, I]`: its output
    /// sequence `[T, B, F]`, or (`returnsState`) its final state h_n `[N, B, H]`.
    private mutating func recurrentLayer(_ layer: Int, input: String, inputSize: Int, returnsState: Bool) throws
        -> (sequence: String?, state: String?) {
        let spec = specification
        let h = spec.hiddenSize
        let index = layerIndices.recurrent
        let suffixes = spec.bidirectional ? ["", "_reverse"] : [""]
        var w: [Float] = [], r: [Float] = [], b: [Float] = []
        for suffix in suffixes {
            func block(_ kind: String) throws -> [Float] {
                try parameter("\(index).\(kind)_l\(layer)\(suffix)").values
            }
            // Each direction: W [G, I], R [G, H], B = [b_ih, b_hh] [2G], gate blocks in ONNX's order.
            w += reorderedGates(try block("weight_ih"), rowLength: inputSize)
            r += reorderedGates(try block("weight_hh"), rowLength: h)
            b += reorderedGates(try block("bias_ih"), rowLength: 1) + reorderedGates(try block("bias_hh"), rowLength: 1)
        }
        let n = suffixes.count
        let g = spec.cell.gateCount * h
        let layerName = "l\(layer)"
        var inputs = [
            input,
            builder.constant(layerName + "_W", floats: w, shape: [n, g, inputSize]),
            builder.constant(layerName + "_R", floats: r, shape: [n, g, h]),
            builder.constant(layerName + "_B", floats: b, shape: [n, 2 * g]),
        ]
        if let lengths { inputs.append(lengths) }
        var attributes: [Onnx_AttributeProto] = [
            .int("hidden_size", h), .string("direction", spec.bidirectional ? "bidirectional" : "forward"),
        ]
        let operation: String
        switch spec.cell {
        case .rnnTanh, .rnnRelu:
            operation = "RNN"
            attributes.append(.strings("activations", Array(repeating: spec.cell == .rnnTanh ? "Tanh" : "Relu", count: n)))
        case .lstm:
            operation = "LSTM"
        case .gru, .gruResetBefore:
            // PyTorch's GRU (reset after the recurrent product) is ONNX's linear_before_reset = 1.
            operation = "GRU"
            attributes.append(.int("linear_before_reset", spec.cell == .gru ? 1 : 0))
        default:
            throw RecurError.invalidArgument(operation: "ONNXExport", detail: "cell \(spec.cell) has no ONNX operator")
        }
        if returnsState {
            let outputs = builder.node(operation, inputs, outputs: ["", builder.fresh(layerName + "_h")],
                                       attributes: attributes)
            return (nil, outputs[1])
        }
        let y = builder.node(operation, inputs, outputs: [builder.fresh(layerName + "_y")], attributes: attributes)[0]
        // Y [T, N, B, H] → [T, B, N, H] → [T, B, F].
        let transposed = builder.apply("Transpose", [y], attributes: [.ints("perm", [0, 2, 1, 3])])
        return (builder.apply("Reshape", [transposed, builder.constant("time_batch_features", int64s: [0, 0, -1])]), nil)
    }

    /// PyTorch's gate blocks (rows of `rowLength` values) in ONNX's order: LSTM i f g o → i o f c,
    /// GRU r z n → z r h; a simple RNN has one block.
    private func reorderedGates(_ values: [Float], rowLength: Int) -> [Float] {
        let order: [Int] = switch specification.cell {
        case .rnnTanh, .rnnRelu: [0]
        case .lstm: [0, 3, 1, 2]
        case .gru, .gruResetBefore: [1, 0, 2]
        default: Array(0..<specification.cell.gateCount)  // refused by checkExpressible before
        }
        let blockSize = specification.hiddenSize * rowLength
        return order.flatMap { values[$0 * blockSize ..< ($0 + 1) * blockSize] }
    }

    /// The head: x W^T + b over the last axis.
    private mutating func dense(_ x: String, features: Int) throws -> String {
        let index = layerIndices.head
        let weight = try parameter("\(index).weight")  // [K, F]
        let bias = try parameter("\(index).bias")  // [K]
        let k = specification.outputSize
        var transposed = [Float](repeating: 0, count: k * features)  // [F, K]
        for row in 0..<k {
            for column in 0..<features { transposed[column * k + row] = weight.values[row * features + column] }
        }
        let product = builder.apply("MatMul", [x, builder.constant("dense_weight", floats: transposed, shape: [features, k])])
        return builder.apply("Add", [product, builder.constant("dense_bias", floats: bias.values, shape: [k])])
    }

    private func parameter(_ name: String) throws -> (shape: Shape, values: [Float]) {
        guard let value = parameters[name] else {
            throw RecurError.malformed(source: "checkpoint", detail: "missing parameter model.\(name)")
        }
        return value
    }
}
