#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The plain float64 recurrent scan: one sequence, one direction, one step at a time, with no
// padding logic (a padded sequence is run on its valid steps; the reverse direction on them
// reversed). Each cell's forward and backward step are in its file under `Cells/`; this file
// only runs time around them.
//
// Shape legend: I input features, H hidden units, G = gateCount * H.

/// The plain float64 specification of every recurrent cell: each cell's forward step and its
/// backward step, written from the equations in the cell's file, with no vectorisation, tiling
/// or threads. Both backends are tested against it.
///
/// Recurrent dropout is not modelled (the mask is 1): the backends' mask tests cover it.
public enum RecurrentReference {
    /// Runs `cell` over `inputs` from `initialState`.
    ///
    /// - Parameters:
    ///   - cell: the cell.
    ///   - inputs: x_t for each step in scan order, each [I].
    ///   - weights: the layer-direction's parameters.
    ///   - initialState: h0 (and c0), each [H].
    ///   - cellClip: LSTM only: c_t is clipped to [-cellClip, cellClip]; nil for none.
    /// - Returns: h_t of every step, in scan order, and the final state.
    public static func forward(cell: RecurrentCell, inputs: [[Double]], weights: RecurrentReferenceWeights,
                               initialState: RecurrentReferenceState, cellClip: Double? = nil)
        -> (outputs: [[Double]], finalState: RecurrentReferenceState)
    {
        var state = initialState
        var outputs: [[Double]] = []
        for x in inputs {
            state = cell.reference.forward(RecurrentReferenceStep(input: x, state: state, weights: weights,
                                                                  cellClip: cellClip))
            outputs.append(state.hidden)
        }
        return (outputs, state)
    }

    /// Differentiates ``forward(cell:inputs:weights:initialState:cellClip:)``.
    ///
    /// - Parameters:
    ///   - cell: the cell.
    ///   - inputs: x_t for each step in scan order, each [I].
    ///   - weights: the layer-direction's parameters.
    ///   - initialState: h0 (and c0), each [H].
    ///   - cellClip: LSTM only: the clip of the forward; nil for none.
    ///   - outputGradients: dL/dh_t of each step's output, in scan order, each [H].
    ///   - finalStateGradient: dL/dh_n (and dL/dc_n), each [H].
    /// - Returns: dL/dx_t in scan order, dL/dh0 (and dL/dc0), and the parameter gradients.
    public static func backward(cell: RecurrentCell, inputs: [[Double]], weights: RecurrentReferenceWeights,
                                initialState: RecurrentReferenceState, cellClip: Double? = nil,
                                outputGradients: [[Double]], finalStateGradient: RecurrentReferenceState)
        -> (inputGradients: [[Double]], initialStateGradient: RecurrentReferenceState,
            weightGradients: RecurrentReferenceWeights)
    {
        // The state before each step, kept by a forward pass.
        var states = [initialState]
        for x in inputs {
            states.append(cell.reference.forward(RecurrentReferenceStep(input: x, state: states.last!,
                                                                        weights: weights, cellClip: cellClip)))
        }
        var weightGradients = weights.zeroed()
        var gradient = finalStateGradient
        var inputGradients = [[Double]](repeating: [], count: inputs.count)
        for step in inputs.indices.reversed() {
            for j in gradient.hidden.indices { gradient.hidden[j] += outputGradients[step][j] }
            let result = cell.reference.backward(
                RecurrentReferenceStep(input: inputs[step], state: states[step], weights: weights, cellClip: cellClip),
                gradient, &weightGradients)
            inputGradients[step] = result.input
            gradient = result.state
        }
        return (inputGradients, gradient, weightGradients)
    }
}

/// One layer-direction's parameters in float64, laid out as the backends' (PyTorch's).
public struct RecurrentReferenceWeights: Sendable {
    /// `weight_ih`: [G, I].
    public var input: [Double]
    /// `weight_hh`: [G, H].
    public var recurrent: [Double]
    /// `bias_ih`: [G].
    public var inputBias: [Double]
    /// `bias_hh`: [G].
    public var recurrentBias: [Double]
    /// The cell's parameters after the first four, in its order.
    public var extra: [[Double]]

    /// The weights.
    ///
    /// - Parameters:
    ///   - input: `weight_ih`, [G, I].
    ///   - recurrent: `weight_hh`, [G, H].
    ///   - inputBias: `bias_ih`, [G].
    ///   - recurrentBias: `bias_hh`, [G].
    ///   - extra: the cell's further parameters, in its order.
    public init(input: [Double], recurrent: [Double], inputBias: [Double], recurrentBias: [Double],
                extra: [[Double]] = []) {
        self.input = input
        self.recurrent = recurrent
        self.inputBias = inputBias
        self.recurrentBias = recurrentBias
        self.extra = extra
    }

    /// Every tensor, in the cell's parameter order.
    public var all: [[Double]] { [input, recurrent, inputBias, recurrentBias] + extra }

    /// The same shapes, all zero: where gradients accumulate.
    func zeroed() -> RecurrentReferenceWeights {
        let zero = { (values: [Double]) in [Double](repeating: 0, count: values.count) }
        return RecurrentReferenceWeights(input: zero(input), recurrent: zero(recurrent), inputBias: zero(inputBias),
                                         recurrentBias: zero(recurrentBias), extra: extra.map(zero))
    }
}

/// The state between two steps (or its gradient).
public struct RecurrentReferenceState: Sendable {
    /// h: [H].
    public var hidden: [Double]
    /// c: [H] for a cell with a cell state, else empty.
    public var cell: [Double]

    /// A state.
    ///
    /// - Parameters:
    ///   - hidden: h, [H].
    ///   - cell: c, [H], or empty for a cell without one.
    public init(hidden: [Double], cell: [Double] = []) {
        self.hidden = hidden
        self.cell = cell
    }
}

/// What one step reads: x_t, the state before it, the weights, and the LSTM's clip.
struct RecurrentReferenceStep {
    var input: [Double]
    var state: RecurrentReferenceState
    var weights: RecurrentReferenceWeights
    var cellClip: Double?

    var hiddenSize: Int { state.hidden.count }
}

/// The float64 forward and backward step of one cell, written from its equations.
protocol RecurrentReferenceSteps: Sendable {
    /// The state after the step.
    static func forward(_ step: RecurrentReferenceStep) -> RecurrentReferenceState

    /// Differentiates `forward(step)`: from dL/d(the state after the step), returns dL/dx and
    /// dL/d(the state before it), and ACCUMULATES the parameter gradients into `weightGradients`.
    static func backward(_ step: RecurrentReferenceStep, _ gradient: RecurrentReferenceState,
                         _ weightGradients: inout RecurrentReferenceWeights)
        -> (input: [Double], state: RecurrentReferenceState)
}

// MARK: Helpers for the cells' steps

enum ReferenceMath {
    static func sigmoid(_ x: Double) -> Double { 1 / (1 + exp(-x)) }

    /// y = W[rows] v + b[rows], W row-major with v.count columns.
    static func affine(_ w: [Double], _ v: [Double], _ b: [Double], rows: Range<Int>) -> [Double] {
        rows.map { row in
            var total = b[row]
            for k in v.indices { total += w[row * v.count + k] * v[k] }
            return total
        }
    }

    /// Differentiates y = W[rows] v + b[rows]: dW[rows] += dy vᵀ, db[rows] += dy, dv += W[rows]ᵀ dy.
    static func affineBackward(_ w: [Double], _ v: [Double], _ dy: [Double], rows: Range<Int>,
                               _ dw: inout [Double], _ db: inout [Double], _ dv: inout [Double]) {
        for (index, row) in rows.enumerated() {
            db[row] += dy[index]
            for k in v.indices {
                dw[row * v.count + k] += dy[index] * v[k]
                dv[k] += w[row * v.count + k] * dy[index]
            }
        }
    }
}
