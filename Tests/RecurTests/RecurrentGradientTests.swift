import Testing
@testable import Recur

// Finite-difference checks of every gradient `RecurrentLayer.backward` produces: input, initial
// states and every parameter, for every cell kind.
//
// Scheme (float32 throughout the backend, no float64 path): loss = Σ output ⊙ R + Σ h_n ⊙ R2
// (+ Σ c_n ⊙ R3) with fixed random R, summed in float64 on the host; central differences with
// eps = 1e-2 on each coordinate. The truncation error is eps² f'''/6 ≈ 1e-5 relative, and float32
// rounding in the forward pass (≈ 1e-7 relative per value over ~100 summed terms) divided by 2 eps
// gives ≈ 1e-4 absolute. Gradients here are O(0.1 .. 1), so the check passes a coordinate when
// |numeric - analytic| <= 2e-3 + 1e-2 max(|numeric|, |analytic|): a missing term, a wrong gate
// or a leaked padded step is off by far more, and float32 noise stays well inside.
//
// ReLU and the LSTM cell clip have kinks, where a central difference across the kink is not a
// derivative. There each coordinate is also differenced with eps / 2; where the two central
// estimates disagree (> 1e-2, while smooth points agree to ≈ 1e-5) a kink lies within eps, and the
// analytic gradient must instead match one of the one-sided differences with step eps / 2 (the side
// without the kink), to a looser 5e-3 + 5e-2 relative since a one-sided difference is only
// first-order accurate. A ReLU network is piecewise linear, so it uses eps = 1e-3: no truncation
// error, ten times fewer kinks crossed, and float32 noise of ≈ 5e-4 still inside the tolerance.

@Suite("Recurrent gradients")
struct RecurrentGradientTests {
    @Test("one layer, post-padded lengths, sequences and final state", arguments: RecurrentCell.allCases)
    func singleLayer(cell: RecurrentCell) throws {
        let c = RecurrentCase(cell: cell, hiddenSize: width(cell), lengths: [4, 2, 3], padding: .post)
        try recurrentGradientCheck(c, backend: CPUBackend(), seed: 1)
    }

    @Test("two bidirectional layers, pre-padded, all dropouts, clip", arguments: RecurrentCell.allCases)
    func stackedBidirectional(cell: RecurrentCell) throws {
        let c = RecurrentCase(
            cell: cell, steps: 4, batch: 2, inputSize: 2, hiddenSize: width(cell), layerCount: 2, bidirectional: true,
            lengths: [3, 4], padding: .pre, dropout: 0.3, inputDropout: 0.2, recurrentDropout: 0.3,
            cellClip: cell == .lstm ? 0.4 : nil)
        try recurrentGradientCheck(c, backend: CPUBackend(), seed: 2)
    }

    @Test("many-to-one, bidirectional, batch-first, post-padded", arguments: RecurrentCell.allCases)
    func manyToOne(cell: RecurrentCell) throws {
        let c = RecurrentCase(
            cell: cell, steps: 5, batch: 3, inputSize: 2, hiddenSize: width(cell), bidirectional: true,
            lengths: [5, 1, 3], padding: .post, recurrentDropout: 0.25, returnSequences: false, batchFirst: true)
        try recurrentGradientCheck(c, backend: CPUBackend(), seed: 3)
    }

    /// H: 3, or 16 for a cell that normalises over its units (see `normalizesOverUnits`).
    private func width(_ cell: RecurrentCell) -> Int { cell.normalizesOverUnits ? 16 : 3 }
}

/// Runs the finite-difference check of `c` on `backend`.
func recurrentGradientCheck(_ c: RecurrentCase, backend: any Backend, seed: UInt64,
                            sourceLocation: SourceLocation = #_sourceLocation) throws {
    var rng = SeededGenerator(seed: seed)
    let layer = try c.makeLayer(on: backend)
    try recurrentRandomizeParameters(layer, scale: 0.7, rng: &rng)
    let x = rng.values(c.inputShape.count)
    let h0 = rng.values(c.stateShape.count, -0.8, 0.8)
    let c0 = c.cell.hasCellState ? rng.values(c.cellShape.count, -0.8, 0.8) : nil
    let outputWeights = rng.values(c.outputShape.count)  // R
    let hiddenWeights = rng.values(c.stateShape.count)  // R2
    let cellWeights = c.cell.hasCellState ? rng.values(c.cellShape.count) : nil  // R3
    let dropoutSeed: UInt64 = 99

    func loss(_ x: [Float], _ h0: [Float], _ c0: [Float]?) throws -> Double {
        let run = try recurrentRun(layer, input: x, inputShape: c.inputShape, lengths: c.lengths, padding: c.padding,
                                   initialHidden: h0, initialCell: c0, stateShape: c.stateShape, cellShape: c.cellShape, training: true,
                                   dropoutSeed: dropoutSeed)
        var total = recurrentDot(run.output, outputWeights) + recurrentDot(run.finalHidden, hiddenWeights)
        if let finalCell = run.finalCell, let cellWeights { total += recurrentDot(finalCell, cellWeights) }
        return total
    }

    let analytic = try recurrentRun(
        layer, input: x, inputShape: c.inputShape, lengths: c.lengths, padding: c.padding, initialHidden: h0,
        initialCell: c0, stateShape: c.stateShape, cellShape: c.cellShape, training: true, dropoutSeed: dropoutSeed,
        outputGradient: outputWeights, finalHiddenGradient: hiddenWeights, finalCellGradient: cellWeights)

    var checker = RecurrentFiniteDifference(allowKinks: c.cell == .rnnRelu || c.cellClip != nil,
                                          eps: c.cell == .rnnRelu ? 1e-3 : 1e-2)

    try checker.check("input", values: x, analytic: analytic.inputGradient) { try loss($0, h0, c0) }
    try checker.check("h0", values: h0, analytic: analytic.initialHiddenGradient) { try loss(x, $0, c0) }
    if let c0, let dc0 = analytic.initialCellGradient {
        try checker.check("c0", values: c0, analytic: dc0) { try loss(x, h0, $0) }
    }
    for parameter in layer.parameters {
        let original = try backend.download(parameter.value)
        try checker.check(parameter.name, values: original, analytic: analytic.parameterGradients[parameter.name]!) {
            try recurrentSetValues(parameter.value, $0)
            return try loss(x, h0, c0)
        }
        try recurrentSetValues(parameter.value, original)
    }
    checker.report("\(c)", sourceLocation: sourceLocation)
}

/// Central differences of a scalar function of one array, compared with an analytic gradient.
struct RecurrentFiniteDifference {
    static let absolute = 2e-3
    static let relative = 1e-2
    /// At a kink, the one-sided differences' tolerance.
    static let oneSidedAbsolute = 5e-3
    static let oneSidedRelative = 5e-2
    /// Two central estimates (eps and eps / 2) further apart than this mean a kink between them.
    static let kinkThreshold = 1e-2

    let allowKinks: Bool
    let eps: Float
    var checked = 0
    var kinks = 0
    var failures: [String] = []
    var worstRelative = 0.0

    init(allowKinks: Bool, eps: Float) {
        self.allowKinks = allowKinks
        self.eps = eps
    }

    static func matches(_ numeric: Double, _ analytic: Double, absolute: Double, relative: Double) -> Bool {
        abs(numeric - analytic) <= absolute + relative * max(abs(numeric), abs(analytic))
    }

    mutating func check(_ name: String, values: [Float], analytic: [Float], _ f: ([Float]) throws -> Double) throws {
        var probe = values
        /// f at values with coordinate i moved by `step`, and the float32 step actually taken.
        func evaluate(_ i: Int, _ step: Float) throws -> (value: Double, step: Double) {
            probe[i] = values[i] + step
            defer { probe[i] = values[i] }
            return (try f(probe), Double(probe[i]) - Double(values[i]))
        }
        for i in 0..<values.count {
            checked += 1
            let exact = Double(analytic[i])
            let (plus, minus) = (try evaluate(i, eps), try evaluate(i, -eps))
            let numeric = (plus.value - minus.value) / (plus.step - minus.step)
            if allowKinks {
                let (halfPlus, halfMinus) = (try evaluate(i, eps / 2), try evaluate(i, -eps / 2))
                let half = (halfPlus.value - halfMinus.value) / (halfPlus.step - halfMinus.step)
                if abs(numeric - half) > Self.kinkThreshold {
                    kinks += 1
                    let center = try f(values)
                    let left = (center - halfMinus.value) / -halfMinus.step
                    let right = (halfPlus.value - center) / halfPlus.step
                    let tolerance = (Self.oneSidedAbsolute, Self.oneSidedRelative)
                    if !Self.matches(left, exact, absolute: tolerance.0, relative: tolerance.1),
                       !Self.matches(right, exact, absolute: tolerance.0, relative: tolerance.1) {
                        failures.append("\(name)[\(i)] at a kink: one-sided \(left) / \(right), analytic \(exact)")
                    }
                    continue
                }
            }
            let scale = max(abs(numeric), abs(exact))
            if scale > 0.05 { worstRelative = max(worstRelative, abs(numeric - exact) / scale) }
            if !Self.matches(numeric, exact, absolute: Self.absolute, relative: Self.relative) {
                failures.append("\(name)[\(i)]: numeric \(numeric), analytic \(exact)")
            }
        }
    }

    func report(_ what: String, sourceLocation: SourceLocation) {
        if !failures.isEmpty {
            let examples = failures.prefix(6).joined(separator: "; ")
            Issue.record("\(what): \(failures.count) of \(checked) gradients differ (worst relative error away from kinks \(worstRelative)), e.g. \(examples)",
                         sourceLocation: sourceLocation)
        }
        // Kinks are rare; if most points looked like one the check would say little.
        if kinks * 4 > checked {
            Issue.record("\(what): \(kinks) of \(checked) coordinates sat on kinks", sourceLocation: sourceLocation)
        }
        #expect(checked > 0, sourceLocation: sourceLocation)
    }
}
