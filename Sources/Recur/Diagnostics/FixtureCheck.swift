// Parity with PyTorch through fixture files: a safetensors file with a recurrent stack's inputs,
// parameters and upstream gradients in float32, and PyTorch's float64 outputs and gradients.
//
// Format (one file per case):
// - `__metadata__`: `cell` = lstm | gru | rnn_tanh | rnn_relu, `input_size`, `hidden_size`,
//   `num_layers`, `bidirectional` = true | false, `batch_first` = true | false, and optionally
//   `proj_size` (PyTorch's LSTM projection: h, the output and their gradients have P features,
//   `weight_hh` is [4H, P] and `weight_hr` [P, H]) and `padding` = post | pre | none;
// - I32 `lengths` [B], optional: each sequence's valid steps, padded on the `padding` side
//   (`post` when absent), as PyTorch's packed sequences;
// - F32: `input` [T, B, I] ([B, T, I] when batch-first), `h0` [L*D, B, H], `c0` (LSTM), every
//   parameter under its PyTorch name (biases may be absent: PyTorch's `bias=False`), and the
//   upstream gradients `grad_output`, `grad_h_n`, `grad_c_n` (LSTM);
// - F64: `output`, `h_n`, `c_n`, and the gradients of
//   loss = sum(output * grad_output) + sum(h_n * grad_h_n) [+ sum(c_n * grad_c_n)]
//   as `grad.input`, `grad.h0`, `grad.c0`, `grad.<parameter name>`.
// Entries other than `input` and the parameters are optional: what is absent is not checked
// (an absent `h0` means zeros, an absent upstream gradient means zero).

/// Runs one PyTorch fixture through a `RecurrentLayer` on a backend and compares every output
/// and gradient with PyTorch's float64 values.
public enum FixtureCheck {
    /// Norm-wise relative error allowed between float32 results and PyTorch's float64 ones. The
    /// committed fixtures (up to T = 20, H = 32) stay below 5e-7 on the CPU backend; 1e-5 leaves
    /// room for other summation orders on devices while any wrong gate, index or missing term
    /// gives errors above 1e-2.
    public static let tolerance = 1e-5

    /// Below this magnitude a reference is compared absolutely: errors are taken relative to
    /// max(max |reference|, 0.1). Float32 results of the fixtures' unit-scale data carry absolute
    /// rounding errors near 1e-7 whatever the reference, so a smaller reference (an all-zero one
    /// above all, which would divide by nothing) measures its own cancellation, not the result's
    /// accuracy.
    public static let scaleFloor = 0.1

    /// Compares every tensor the fixture at `path` holds an expected value for.
    /// - Throws: `RecurError.malformed` when the file is not a valid fixture (naming the file and
    ///   the tensor), `InsufficientMemoryError` when its sizes need more memory than `backend`
    ///   or the host has. Both are checked before anything is allocated.
    public static func run(path: String, backend: any Backend, tolerance: Double = FixtureCheck.tolerance)
        throws -> [Comparison]
    {
        let file = try SafeTensorsFile(contentsOf: path)
        let configuration = try Configuration(file)
        try configuration.memoryEstimate.check(on: backend, operation: "fixture \(path)")
        let layer = try RecurrentLayer(
            cell: configuration.cell, inputSize: configuration.inputSize, hiddenSize: configuration.hiddenSize,
            layerCount: configuration.layerCount, bidirectional: configuration.bidirectional,
            projectionSize: configuration.projectionSize, returnSequences: true, batchFirst: configuration.batchFirst,
            backend: backend)

        // Parameters: the fixture's tensors named weight_* and bias_*; the rest are inputs,
        // upstream gradients and expected values.
        let biases = Set(layer.parameters.map(\.name).filter { $0.hasPrefix("bias_") })
        let absentBiases = try StateDictionary.load(
            layer.parameters, from: file, allowingAbsent: biases,
            isParameterEntry: { $0.hasPrefix("weight_") || $0.hasPrefix("bias_") })

        let input = try tensor(file, "input", backend: backend)!
        let initialHidden = try tensor(file, "h0", backend: backend)
        let initialCell = try tensor(file, "c0", backend: backend)
        var initialState: RecurrentState?
        if let initialHidden {
            initialState = RecurrentState(hidden: initialHidden, cell: initialCell)
        } else if initialCell != nil {
            throw RecurError.malformed(source: path, detail: "c0 without h0")
        }
        if configuration.cell.hasCellState, initialHidden != nil, initialCell == nil {
            throw RecurError.malformed(source: path, detail: "an \(configuration.cell) fixture with h0 needs c0")
        }

        var results: [Comparison] = []
        func compare(_ name: String, _ actual: Tensor?) throws {
            guard file.contains(name), let actual else { return }
            results.append(Comparison(name, actual: try backend.download(actual), expected: try file.doubles(name),
                                      tolerance: tolerance, scaleFloor: scaleFloor))
        }

        let lengths = try file.contains("lengths") ? file.int64s("lengths").map { Int($0) } : nil
        let forward = try layer.forward(input, lengths: lengths, padding: configuration.padding,
                                        initialState: initialState, training: false)
        try compare("output", forward.output)
        try compare("h_n", forward.finalState.hidden)
        try compare("c_n", forward.finalState.cell)

        let outputGradient = try tensor(file, "grad_output", backend: backend)
        let hiddenGradient = try tensor(file, "grad_h_n", backend: backend)
        let cellGradient = try tensor(file, "grad_c_n", backend: backend)
        let finalStateGradient = hiddenGradient.map { RecurrentState(hidden: $0, cell: cellGradient) }
        try layer.zeroGradients()
        let gradients = try layer.backward(outputGradient: outputGradient, finalStateGradient: finalStateGradient)
        try compare("grad.input", gradients.input)
        try compare("grad.h0", gradients.initialState.hidden)
        try compare("grad.c0", gradients.initialState.cell)
        for parameter in layer.parameters where !absentBiases.contains(parameter.name) {
            try compare("grad.\(parameter.name)", parameter.gradient)
        }
        return results
    }

    /// The fixture's entry `name` uploaded as float32, or nil when absent. Its shape was checked
    /// against the metadata by `Configuration`.
    private static func tensor(_ file: SafeTensorsFile, _ name: String, backend: any Backend) throws -> Tensor? {
        guard file.contains(name) else { return nil }
        return try backend.upload(try file.floats(name), shape: try file.shape(of: name))
    }

    /// The stack a fixture describes, read from its metadata.
    struct Configuration: CustomStringConvertible {
        var cell: RecurrentCell
        var inputSize: Int
        var hiddenSize: Int
        var layerCount: Int
        var bidirectional: Bool
        var batchFirst: Bool
        /// P, PyTorch's `proj_size`; nil without a projection.
        var projectionSize: Int?
        /// The side `lengths` pads.
        var padding = PaddingSide.post
        /// T and B of the input.
        var steps = 0
        var batchSize = 0

        init(_ file: SafeTensorsFile) throws {
            func entry(_ key: String) throws -> String {
                guard let value = file.metadata[key] else {
                    throw RecurError.malformed(source: file.source, detail: "metadata has no '\(key)'")
                }
                return value
            }
            func positive(_ key: String) throws -> Int {
                guard let value = Int(try entry(key)), value > 0 else {
                    throw RecurError.malformed(source: file.source, detail: "metadata '\(key)' must be a positive integer")
                }
                return value
            }
            func flag(_ key: String, default defaultValue: Bool) throws -> Bool {
                guard let text = file.metadata[key] else { return defaultValue }
                switch text.lowercased() {
                case "true", "1": return true
                case "false", "0": return false
                default: throw RecurError.malformed(source: file.source, detail: "metadata '\(key)' must be true or false, got '\(text)'")
                }
            }
            let name = try entry("cell")
            guard let named = RecurrentCell(named: name) else {
                throw RecurError.malformed(
                    source: file.source,
                    detail: "unknown cell '\(name)' (\(RecurrentCell.names.joined(separator: ", ")))")
            }
            cell = named
            inputSize = try positive("input_size")
            hiddenSize = try positive("hidden_size")
            layerCount = try positive("num_layers")
            bidirectional = try flag("bidirectional", default: false)
            batchFirst = try flag("batch_first", default: false)
            if let text = file.metadata["proj_size"] {
                guard let size = Int(text), size >= 0 else {
                    throw RecurError.malformed(source: file.source, detail: "metadata 'proj_size' must be a count, got '\(text)'")
                }
                projectionSize = size == 0 ? nil : size
                cell = try named.projected(to: projectionSize, hiddenSize: hiddenSize, operation: "fixture \(file.source)")
            }
            switch file.metadata["padding"] ?? "post" {
            case "post", "none": padding = .post
            case "pre": padding = .pre
            case let other:
                throw RecurError.malformed(source: file.source, detail: "metadata 'padding' must be post, pre or none, got '\(other)'")
            }
            guard file.contains("input") else {
                throw RecurError.malformed(source: file.source, detail: "no 'input' tensor")
            }
            (steps, batchSize) = try checkShapes(file)
        }

        /// Checks every tensor the check reads against the metadata, before anything is made
        /// from the sizes (the metadata alone could ask for any amount of memory): no dimension
        /// is 0, the input has `input_size` features, the layers' weights are there for
        /// `num_layers` and `hidden_size`, and every state, gradient and expected value has the
        /// shape the stack gives it. Returns T and B from the input.
        private func checkShapes(_ file: SafeTensorsFile) throws -> (steps: Int, batch: Int) {
            func malformed(_ detail: String) -> RecurError { .malformed(source: file.source, detail: detail) }
            for name in file.names {
                let shape = try file.shape(of: name)
                guard shape.isValid else {
                    throw malformed("tensor '\(name)' has shape \(shape): every dimension must be at least 1")
                }
            }
            let input = try file.shape(of: "input")
            guard input.rank == 3 else {
                throw malformed(
                    "'input' is \(input): a sequence is [T, B, I]" + (batchFirst ? " ([B, T, I] batch-first)" : ""))
            }
            let (steps, batch) = batchFirst ? (input[1], input[0]) : (input[0], input[1])
            guard input[2] == inputSize else {
                throw malformed("'input' has \(input[2]) features per step but the metadata says input_size \(inputSize)")
            }
            // The layers the file holds weights for: weight_ih_l0 ... weight_ih_l{L-1}. Counted
            // from the names, so a num_layers of 1e8 costs nothing to refuse.
            let layersInFile = file.names.filter { $0.hasPrefix("weight_ih_l") && !$0.hasSuffix("_reverse") }.count
            guard layersInFile == layerCount else {
                throw malformed(
                    "the metadata says num_layers \(layerCount) but the file holds weight_ih for \(layersInFile) layers")
            }
            let (d, h, p) = (bidirectional ? 2 : 1, hiddenSize, projectionSize ?? hiddenSize)
            let g = MemoryEstimate.product(cell.gateCount, h)
            let state: Shape = [MemoryEstimate.product(layerCount, d), batch, p]
            let cellState: Shape = [MemoryEstimate.product(layerCount, d), batch, h]
            let sequence: Shape = batchFirst ? [batch, steps, MemoryEstimate.product(d, p)]
                : [steps, batch, MemoryEstimate.product(d, p)]
            var expected: [String: Shape] = [
                "input": input, "grad.input": input, "output": sequence, "grad_output": sequence, "lengths": [batch],
            ]
            for name in ["h0", "h_n", "grad_h_n", "grad.h0"] {
                expected[name] = state
            }
            for name in ["c0", "c_n", "grad_c_n", "grad.c0"] {
                expected[name] = cellState
            }
            for k in 0..<layerCount {
                let layerInput = k == 0 ? inputSize : MemoryEstimate.product(d, p)
                for suffix in bidirectional ? ["", "_reverse"] : [""] {
                    for parameter in cell.parameters {
                        let shape = parameter.shape(gates: g, inputSize: layerInput, hiddenSize: h, projectionSize: p)
                        expected["\(parameter.name)_l\(k)\(suffix)"] = shape
                        expected["grad.\(parameter.name)_l\(k)\(suffix)"] = shape
                    }
                }
            }
            for name in file.names {
                guard let shape = expected[name] else { continue }
                let actual = try file.shape(of: name)
                guard actual == shape else {
                    throw malformed("tensor '\(name)' is \(actual) but the \(self) over 'input' \(input) gives \(shape)")
                }
            }
            for k in 0..<layerCount {
                for name in ["weight_ih_l\(k)", "weight_hh_l\(k)"] where !file.contains(name) {
                    throw malformed("no tensor '\(name)' for num_layers \(layerCount)")
                }
            }
            return (steps, batch)
        }

        /// What running the stack forward and backward over the fixture's input allocates.
        var memoryEstimate: MemoryEstimate {
            MemoryEstimate.recurrentStack(
                cell: cell, inputSize: inputSize, hiddenSize: hiddenSize, projectionSize: projectionSize,
                layerCount: layerCount,
                bidirectional: bidirectional, batchSize: batchSize, steps: steps, pass: .training)
        }

        var description: String {
            "\(cell) stack (I=\(inputSize), H=\(hiddenSize)\(projectionSize.map { ", P=\($0)" } ?? ""), "
                + "L=\(layerCount)\(bidirectional ? ", bidirectional" : ""))"
        }
    }
}
