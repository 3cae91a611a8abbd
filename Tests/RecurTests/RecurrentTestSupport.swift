import Testing
@testable import Recur

// Helpers for the recurrent tests. They take `any Backend`, so each check can run on every backend.

/// Overwrites a tensor's values.
func recurrentSetValues(_ tensor: Tensor, _ values: [Float]) throws {
    let backend = tensor.backend
    let staged = try backend.upload(values, shape: tensor.shape)
    try backend.copy(staged, sourceOffset: 0, into: tensor, destinationOffset: 0, count: tensor.count)
}

/// Σ a ⊙ b in float64.
func recurrentDot(_ a: [Float], _ b: [Float]) -> Double {
    var total = 0.0
    for i in 0..<a.count { total += Double(a[i]) * Double(b[i]) }
    return total
}

/// Replaces every parameter with uniform values in ±scale (PyTorch's init is already random; this
/// makes the tests independent of the initialiser and lets biases be large enough to matter).
func recurrentRandomizeParameters(_ layer: RecurrentLayer, scale: Float, rng: inout SeededGenerator) throws {
    for parameter in layer.parameters {
        try recurrentSetValues(parameter.value, rng.values(parameter.value.count, -scale, scale))
    }
}

/// A layer configuration the property and gradient tests share.
struct RecurrentCase: CustomStringConvertible, Sendable {
    var cell: RecurrentCell
    var steps = 4
    var batch = 3
    var inputSize = 3
    var hiddenSize = 3
    var layerCount = 1
    var bidirectional = false
    var lengths: [Int]? = nil
    var padding = PaddingSide.post
    var dropout: Float = 0
    var inputDropout: Float = 0
    var recurrentDropout: Float = 0
    var cellClip: Float? = nil
    var returnSequences = true
    var batchFirst = false

    var directions: Int { bidirectional ? 2 : 1 }
    /// P for a cell that projects h: one below H, so every product sees a non-square W_hr.
    var projectionSize: Int? { cell.projectsHiddenState ? hiddenSize - 1 : nil }
    var inputShape: Shape { batchFirst ? [batch, steps, inputSize] : [steps, batch, inputSize] }
    /// h: [L * D, B, P].
    var stateShape: Shape { [layerCount * directions, batch, projectionSize ?? hiddenSize] }
    /// c: [L * D, B, H].
    var cellShape: Shape { [layerCount * directions, batch, hiddenSize] }
    var outputShape: Shape {
        let width = directions * (projectionSize ?? hiddenSize)
        if !returnSequences { return [batch, width] }
        return batchFirst ? [batch, steps, width] : [steps, batch, width]
    }

    func makeLayer(on backend: any Backend, seed: UInt64 = 1) throws -> RecurrentLayer {
        try RecurrentLayer(
            cell: cell, inputSize: inputSize, hiddenSize: hiddenSize, layerCount: layerCount,
            bidirectional: bidirectional, dropout: dropout, inputDropout: inputDropout,
            recurrentDropout: recurrentDropout, cellClip: cellClip, projectionSize: projectionSize,
            returnSequences: returnSequences, batchFirst: batchFirst, seed: seed, backend: backend)
    }

    var description: String {
        var parts = ["\(cell) T\(steps) B\(batch) I\(inputSize) H\(hiddenSize) L\(layerCount)"]
        if let projectionSize { parts.append("P\(projectionSize)") }
        if bidirectional { parts.append("bidirectional") }
        if let lengths { parts.append("lengths \(lengths) \(padding)") }
        if dropout > 0 { parts.append("dropout \(dropout)") }
        if inputDropout > 0 { parts.append("inputDropout \(inputDropout)") }
        if recurrentDropout > 0 { parts.append("recurrentDropout \(recurrentDropout)") }
        if let cellClip { parts.append("clip \(cellClip)") }
        if !returnSequences { parts.append("many-to-one") }
        if batchFirst { parts.append("batch-first") }
        return parts.joined(separator: ", ")
    }
}

/// Host values of one run of a layer: outputs, final states, and (after backward) every gradient.
struct RecurrentRun {
    var output: [Float]
    var finalHidden: [Float]
    var finalCell: [Float]?
    var inputGradient: [Float] = []
    var initialHiddenGradient: [Float] = []
    var initialCellGradient: [Float]? = nil
    /// Parameter gradients by name.
    var parameterGradients: [String: [Float]] = [:]
}

/// Forward (and, given `outputGradient`, backward with zeroed gradients first) on host arrays.
func recurrentRun(_ layer: RecurrentLayer, input: [Float], inputShape: Shape, lengths: [Int]?,
                  padding: PaddingSide, initialHidden: [Float]?, initialCell: [Float]?, stateShape: Shape,
                  cellShape: Shape? = nil, training: Bool, dropoutSeed: UInt64? = nil, outputGradient: [Float]? = nil,
                  finalHiddenGradient: [Float]? = nil, finalCellGradient: [Float]? = nil) throws -> RecurrentRun {
    let backend = layer.backend
    let cellShape = cellShape ?? stateShape
    if let dropoutSeed { layer.seedDropout(dropoutSeed) }
    let state = try initialHidden.map {
        RecurrentState(hidden: try backend.upload($0, shape: stateShape),
                       cell: try initialCell.map { try backend.upload($0, shape: cellShape) })
    }
    let result = try layer.forward(try backend.upload(input, shape: inputShape), lengths: lengths, padding: padding,
                                   initialState: state, training: training)
    var run = RecurrentRun(output: try backend.download(result.output),
                           finalHidden: try backend.download(result.finalState.hidden),
                           finalCell: try result.finalState.cell.map { try backend.download($0) })
    guard let outputGradient else { return run }
    try layer.zeroGradients()
    let stateGradient = try finalHiddenGradient.map {
        RecurrentState(hidden: try backend.upload($0, shape: stateShape),
                       cell: try finalCellGradient.map { try backend.upload($0, shape: cellShape) })
    }
    let gradients = try layer.backward(
        outputGradient: try backend.upload(outputGradient, shape: result.output.shape),
        finalStateGradient: stateGradient)
    run.inputGradient = try backend.download(gradients.input)
    run.initialHiddenGradient = try backend.download(gradients.initialState.hidden)
    run.initialCellGradient = try gradients.initialState.cell.map { try backend.download($0) }
    for parameter in layer.parameters {
        run.parameterGradients[parameter.name] = try backend.download(parameter.gradient)
    }
    return run
}

extension RecurrentCase {
    /// A full training pass of this case's layer on `backend`: seeded random input, initial state,
    /// parameters (scale 0.5) and upstream gradients (output and final state), dropout seeded, the
    /// gradient flow recorded. The same `seed` gives the same values on every backend.
    func trainingRun(on backend: any Backend, seed: UInt64) throws -> (run: RecurrentRun, flow: [GradientFlow]) {
        var random = SeededGenerator(seed: seed)
        let x = random.values(inputShape.count)
        let h0 = random.values(stateShape.count)
        let c0 = cell.hasCellState ? random.values(cellShape.count) : nil
        let dy = random.values(outputShape.count)
        let dhN = random.values(stateShape.count)
        let dcN = cell.hasCellState ? random.values(cellShape.count) : nil
        let layer = try makeLayer(on: backend, seed: seed &+ 1)
        var parameterRandom = SeededGenerator(seed: seed &+ 2)
        try recurrentRandomizeParameters(layer, scale: 0.5, rng: &parameterRandom)
        layer.recordsGradientFlow = true
        let run = try recurrentRun(
            layer, input: x, inputShape: inputShape, lengths: lengths, padding: padding,
            initialHidden: h0, initialCell: c0, stateShape: stateShape, cellShape: cellShape, training: true, dropoutSeed: seed &+ 3,
            outputGradient: dy, finalHiddenGradient: dhN, finalCellGradient: dcN)
        return (run, layer.gradientFlow)
    }
}

extension RecurrentCell {
    /// The registered cells whose h has the width of c (all but the projecting ones), for the
    /// tests written for H-wide states.
    static var withEqualWidths: [RecurrentCell] {
        allCases.filter { !$0.projectsHiddenState }
    }

    /// The registered cells the OpenCL backend runs (an `OpenCLCellKernels.all` entry each); the
    /// OpenCL parity tests run these.
    static var withOpenCLKernels: [RecurrentCell] {
        allCases.filter(OpenCLCellKernels.exist(for:))
    }

    /// The cells whose OpenCL step kernels come from the unit skeleton (Kernels/recurrent.cl): the
    /// tests of its persistent scans, resident split and launch counts run these. The others run
    /// row scans (Kernels/recurrent_rows.cl), one launch per scan.
    static var withUnitStepKernels: [RecurrentCell] {
        withOpenCLKernels.filter { (try? OpenCLCellKernels.of($0).skeleton) == .units }
    }

    /// Whether the cell layer-normalises over its H units: a normalisation over three units is
    /// badly conditioned (its scale 1 / σ is large whenever they nearly agree), so the finite
    /// differences of such a cell run on wider layers.
    var normalizesOverUnits: Bool { parameters.contains { $0.role == .normalizationGain } }
}
