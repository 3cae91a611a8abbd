// One recurrent forward and backward request built from seeded values, run on any backend, so a
// device can be compared with the CPU reference tensor by tensor. Used by `SelfCheck` (`recur
// verify`) and the OpenCL recurrent tests.
//
// Shape legend: T time steps, B batch, I input features, H hidden units, G = gates * H, P the
// width of h (H unless the cell projects h).

/// A recurrent op configuration and the request options it exercises.
struct RecurrentParityCase: Sendable, CustomStringConvertible {
    var cell: RecurrentCell
    var steps: Int
    var batch: Int
    var inputSize: Int
    var hiddenSize: Int
    /// Valid steps per sequence, B of them; nil: every step is valid.
    var lengths: [Int32]? = nil
    var padding = PaddingSide.post
    /// Ignored with `bidirectional`.
    var reverse = false
    /// Runs a forward and a reverse scan as one bidirectional pair (the pair ops): shared input,
    /// lengths and `[T, B, 2H]` output (offsets 0 and H), one dL/dx that the reverse direction
    /// adds to, everything else per direction.
    var bidirectional = false
    /// With `bidirectional`: run each direction's single-scan op in turn instead of the pair op,
    /// which must give the same result.
    var separateDirections = false
    /// With `bidirectional`: put each pair of per-direction weights, weight gradients, gate and h̃
    /// buffers in one allocation (`Backend.tensorsInOneAllocation`), as a bidirectional layer
    /// does, so that a device can batch the directions' GEMMs. The values are the same.
    var sharedAllocations = false
    /// A dropout-like mask: each element 0 or 1 / (1 - 0.25).
    var recurrentDropout = false
    /// Used for `lstm` only.
    var cellClip: Float? = nil
    /// Without `bidirectional`: output into the right half of a `[T, B, 2H]` tensor (offset H,
    /// leading dimension 2H), whose left half starts random and must stay untouched.
    var stridedOutput = false
    var accumulateInputGradient = false
    /// Whether the backward pass gets dL/d output; without it only the final state feeds the loss.
    var outputGradient = true
    /// Whether it gets dL/dh_n (and dL/dc_n).
    var finalStateGradient = true
    /// Backward passes on one forward: the weight gradients (and an accumulated dL/dx) add up.
    var backwardPasses = 1
    /// Whether the backward pass records every step's dL/dh_t (`hiddenStateGradients`).
    var recordHiddenStateGradients = false

    var gates: Int { cell.gateCount * hiddenSize }

    /// P for a cell that projects h: about half of H, so W_hr is far from square; nil otherwise.
    var projectionSize: Int? { cell.projectsHiddenState ? max(1, hiddenSize / 2) : nil }

    var description: String {
        var parts = ["\(cell) T=\(steps) B=\(batch) I=\(inputSize) H=\(hiddenSize)"]
        if let projectionSize { parts.append("P=\(projectionSize)") }
        if let lengths { parts.append("lengths \(lengths.map(String.init).joined(separator: ",")) \(padding)") }
        if bidirectional {
            parts.append(separateDirections ? "bidirectional, directions one by one" : "bidirectional")
            if sharedAllocations { parts.append("shared allocations") }
        } else if reverse {
            parts.append("reverse")
        }
        if recurrentDropout { parts.append("mask") }
        if cell.hasCellState, let cellClip { parts.append("clip \(cellClip)") }
        if stridedOutput && !bidirectional { parts.append("strided") }
        if accumulateInputGradient { parts.append("accumulate dx") }
        if !outputGradient { parts.append("no dy") }
        if !finalStateGradient { parts.append("no dh_n") }
        if backwardPasses > 1 { parts.append("\(backwardPasses) backward") }
        if recordHiddenStateGradients { parts.append("dL/dh_t") }
        return parts.joined(separator: " ")
    }

    /// Runs the forward op, then `backwardPasses` backward ops, on `backend` with values drawn
    /// from `seed`, and returns every tensor the ops write (outputs, final state, workspace,
    /// gradients), downloaded, by name. Every written tensor starts with random values, so a
    /// value the op should overwrite (or leave alone) but does not shows up as a difference.
    /// With `bidirectional`, the ops are the pair ops and the names of one direction's tensors
    /// start with `forward.` or `reverse.`.
    func run(on backend: any Backend, seed: UInt64) throws -> [(name: String, values: [Float])] {
        var random = SeededRandom(seed: seed)
        func tensor(_ shape: Shape, bound: Double = 1) throws -> Tensor {
            try backend.upload((0..<shape.count).map { _ in random.uniform(bound: bound) }, shape: shape)
        }
        let (t, b, i, h, g) = (steps, batch, inputSize, hiddenSize, gates)
        let p = projectionSize ?? h
        // Shared by the directions of a pair: the input, the lengths, the [T, B, 2P] output and its
        // gradient, and dL/dx, which the reverse direction adds to.
        let input = try tensor([t, b, i])
        let lengthTensor = try lengths.map { try backend.upload($0, shape: [b]) }
        let width = stridedOutput || bidirectional ? 2 * p : p
        let output = try tensor([t, b, width])
        let outputGradient = try tensor([t, b, width])
        let inputGradient = try tensor([t, b, i])

        var forwards: [RecurrentForward] = []
        var backwards: [RecurrentBackward] = []
        let scanDirections: [Bool] = bidirectional ? [false, true] : [reverse]  // reverse, per direction
        // With `sharedAllocations`, direction 0 allocates each pair and fills its first tensor;
        // direction 1 fills the second, drawing its values at the same point as without.
        var secondOfPair: [String: Tensor] = [:]
        func perDirection(_ key: String, _ direction: Int, _ shape: Shape, bound: Double = 1) throws -> Tensor {
            guard bidirectional && sharedAllocations else { return try tensor(shape, bound: bound) }
            let values = try tensor(shape, bound: bound)
            let target: Tensor
            if direction == 0 {
                let pair = try backend.tensorsInOneAllocation([shape, shape], zeroed: true)
                secondOfPair[key] = pair[1]
                target = pair[0]
            } else {
                target = secondOfPair[key]!
            }
            try backend.copy(values, sourceOffset: 0, into: target, destinationOffset: 0, count: shape.count)
            return target
        }
        // The cell's own parameters after the four.
        let extraShapes = Array(cell.parameterShapes(inputSize: i, hiddenSize: h, projectionSize: projectionSize)
            .dropFirst(4))
        for direction in scanDirections.indices {
            let reverseScan = scanDirections[direction]
            let weightBound = 1 / Double(h).squareRoot() + 0.2
            let weights = RecurrentWeights(
                input: try perDirection("W_ih", direction, [g, i], bound: weightBound),
                recurrent: try perDirection("W_hh", direction, [g, p], bound: weightBound),
                inputBias: try perDirection("b_ih", direction, [g], bound: weightBound),
                recurrentBias: try perDirection("b_hh", direction, [g], bound: weightBound),
                extra: try extraShapes.enumerated().map { k, shape in
                    try perDirection("extra\(k)", direction, shape, bound: weightBound)
                })
            let mask: Tensor? = recurrentDropout
                ? try backend.upload((0..<(b * p)).map { _ in random.unit() < 0.25 ? 0 : 1 / 0.75 }, shape: [b, p])
                : nil
            let scan = RecurrentScan(
                cell: cell, input: input, weights: weights, initialHidden: try tensor([b, p]),
                initialCell: cell.hasCellState ? try tensor([b, h]) : nil,
                lengths: lengthTensor, padding: padding, reverse: reverseScan,
                recurrentDropoutMask: mask, cellClip: cell.hasCellState ? cellClip : nil, projectionSize: projectionSize)
            let offset = bidirectional ? direction * p : (stridedOutput ? p : 0)
            let workspace = RecurrentWorkspace(
                gates: try perDirection("gates", direction, [t, b, g]),
                recurrentInput: try perDirection("recurrentInput", direction, [t, b, p]),
                cellStates: cell.hasCellState ? try tensor([t, b, h]) : nil,
                hiddenStates: cell.keepsStepStates ? try tensor([t, b, h]) : nil,
                candidateRecurrent: cell.keepsStepStates ? try tensor([t, b, h]) : nil)
            forwards.append(RecurrentForward(
                scan: scan, output: MatrixOperand(output, offset: offset, leadingDimension: width),
                finalHidden: try tensor([b, p]), finalCell: cell.hasCellState ? try tensor([b, h]) : nil,
                workspace: workspace))
            backwards.append(RecurrentBackward(
                scan: scan, workspace: workspace,
                outputGradient: self.outputGradient
                    ? MatrixOperand(outputGradient, offset: offset, leadingDimension: width) : nil,
                finalHiddenGradient: finalStateGradient ? try tensor([b, p]) : nil,
                finalCellGradient: finalStateGradient && cell.hasCellState ? try tensor([b, h]) : nil,
                inputGradient: inputGradient, accumulateInputGradient: accumulateInputGradient || direction > 0,
                initialHiddenGradient: try tensor([b, p]),
                initialCellGradient: cell.hasCellState ? try tensor([b, h]) : nil,
                weightGradients: RecurrentWeights(
                    input: try perDirection("dW_ih", direction, [g, i]),
                    recurrent: try perDirection("dW_hh", direction, [g, p]),
                    inputBias: try perDirection("db_ih", direction, [g]),
                    recurrentBias: try perDirection("db_hh", direction, [g]),
                    extra: try extraShapes.enumerated().map { k, shape in try perDirection("dextra\(k)", direction, shape) }),
                hiddenStateGradients: recordHiddenStateGradients ? try tensor([t, b, p]) : nil))
        }

        if bidirectional && !separateDirections {
            try backend.recurrentForward(BidirectionalRecurrentForward(forward: forwards[0], reverse: forwards[1]))
        } else {
            for forward in forwards { try backend.recurrentForward(forward) }
        }
        for _ in 0..<backwardPasses {
            if bidirectional && !separateDirections {
                try backend.recurrentBackward(
                    BidirectionalRecurrentBackward(forward: backwards[0], reverse: backwards[1]))
            } else {
                for backward in backwards { try backend.recurrentBackward(backward) }
            }
        }

        var written: [(String, Tensor?)] = [("output", output), ("inputGradient", inputGradient)]
        for (direction, (forward, backward)) in zip(forwards, backwards).enumerated() {
            let prefix = bidirectional ? (direction == 0 ? "forward." : "reverse.") : ""
            let workspace = forward.workspace
            let weightGradients = backward.weightGradients
            let directionWritten: [(String, Tensor?)] = [
                ("finalHidden", forward.finalHidden), ("finalCell", forward.finalCell),
                ("workspace.gates", workspace.gates), ("workspace.recurrentInput", workspace.recurrentInput),
                ("workspace.cellStates", workspace.cellStates), ("workspace.hiddenStates", workspace.hiddenStates),
                ("workspace.candidateRecurrent", workspace.candidateRecurrent),
                ("initialHiddenGradient", backward.initialHiddenGradient),
                ("initialCellGradient", backward.initialCellGradient),
                ("weightGradients.input", weightGradients.input),
                ("weightGradients.recurrent", weightGradients.recurrent),
                ("weightGradients.inputBias", weightGradients.inputBias),
                ("weightGradients.recurrentBias", weightGradients.recurrentBias),
                ("hiddenStateGradients", backward.hiddenStateGradients),
            ] + weightGradients.extra.enumerated().map { ("weightGradients.extra[\($0)]", $1) }
            written += directionWritten.map { (prefix + $0.0, $0.1) }
        }
        return try written.compactMap { name, tensor in
            try tensor.map { (name, try backend.download($0)) }
        }
    }

    /// Runs the case on `backend` and on `reference` with the same values and compares every
    /// written tensor, norm-wise (see `Comparison`).
    func compare(_ backend: any Backend, with reference: any Backend, seed: UInt64,
                 tolerance: Double) throws -> [Comparison] {
        let actual = try run(on: backend, seed: seed)
        let expected = try run(on: reference, seed: seed)
        return zip(actual, expected).map { device, cpu in
            Comparison("\(self) \(device.name)", actual: device.values, expected: cpu.values, tolerance: tolerance)
        }
    }
}
