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
        forward(steps: cell.reference, inputs: inputs, weights: weights, initialState: initialState, cellClip: cellClip)
    }

    /// ``forward(cell:inputs:weights:initialState:cellClip:)`` for a cell's reference steps, which
    /// need not be registered yet.
    static func forward(steps: any RecurrentReferenceSteps.Type, inputs: [[Double]],
                        weights: RecurrentReferenceWeights, initialState: RecurrentReferenceState,
                        cellClip: Double? = nil)
        -> (outputs: [[Double]], finalState: RecurrentReferenceState)
    {
        var state = initialState
        var outputs: [[Double]] = []
        for x in inputs {
            state = steps.forward(RecurrentReferenceStep(input: x, state: state, weights: weights,
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
        backward(steps: cell.reference, inputs: inputs, weights: weights, initialState: initialState,
                 cellClip: cellClip, outputGradients: outputGradients, finalStateGradient: finalStateGradient)
    }

    /// ``backward(cell:inputs:weights:initialState:cellClip:outputGradients:finalStateGradient:)``
    /// for a cell's reference steps, which need not be registered yet.
    static func backward(steps: any RecurrentReferenceSteps.Type, inputs: [[Double]],
                         weights: RecurrentReferenceWeights, initialState: RecurrentReferenceState,
                         cellClip: Double? = nil, outputGradients: [[Double]],
                         finalStateGradient: RecurrentReferenceState)
        -> (inputGradients: [[Double]], initialStateGradient: RecurrentReferenceState,
            weightGradients: RecurrentReferenceWeights)
    {
        // The state before each step, kept by a forward pass.
        var states = [initialState]
        for x in inputs {
            states.append(steps.forward(RecurrentReferenceStep(input: x, state: states.last!,
                                                                        weights: weights, cellClip: cellClip)))
        }
        var weightGradients = weights.zeroed()
        var gradient = finalStateGradient
        var inputGradients = [[Double]](repeating: [], count: inputs.count)
        for step in inputs.indices.reversed() {
            for j in gradient.hidden.indices { gradient.hidden[j] += outputGradients[step][j] }
            let result = steps.backward(
                RecurrentReferenceStep(input: inputs[step], state: states[step], weights: weights, cellClip: cellClip),
                gradient, &weightGradients)
            inputGradients[step] = result.input
            gradient = result.state
        }
        return (inputGradients, gradient, weightGradients)
    }
}
