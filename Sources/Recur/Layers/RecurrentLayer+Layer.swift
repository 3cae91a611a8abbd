// `RecurrentLayer` as a `Layer` of a model: a sequence layer that carries its state between
// passes, draws dropout masks and can record its gradient flow.
//
// Shape legend: T time steps, B batch, I input features, H hidden units, L layers, D directions.

extension RecurrentLayer: StatefulLayer, StochasticLayer, GradientFlowRecording {
    /// I.
    public var inputFeatures: Int? { inputSize }

    /// D * P (P = H without a projection), whatever the input.
    /// - Parameter input: the input's features (I, which `Sequential` checks).
    /// - Returns: D * P.
    public func outputFeatures(input: Int?) -> Int? { directionCount * stateSize }

    /// `forward(_:lengths:padding:initialState:training:)` from a zero state.
    /// - Parameters:
    ///   - input: `[T, B, I]`, or `[B, T, I]` when batch-first.
    ///   - context: the training flag, lengths and padding.
    /// - Returns: the output (see ``RecurrentOutput/output``).
    public func forward(_ input: Tensor, context: LayerContext) throws -> Tensor {
        try forward(input, initialState: nil, context: context).output
    }

    /// `forward(_:lengths:padding:initialState:training:)`.
    /// - Parameters:
    ///   - input: `[T, B, I]`, or `[B, T, I]` when batch-first.
    ///   - initialState: h0 (and c0 for LSTM), `[L * D, B, H]`; nil means zeros.
    ///   - context: the training flag, lengths and padding.
    /// - Returns: the output and h_n (and c_n).
    public func forward(_ input: Tensor, initialState: RecurrentState?, context: LayerContext) throws
        -> RecurrentOutput
    {
        try forward(input, lengths: context.lengths, padding: context.padding, initialState: initialState,
                    training: context.training)
    }

    /// `backward(outputGradient:)` with no gradient of the final state.
    /// - Parameter outputGradient: dL/d output, shaped like the forward's output.
    /// - Returns: dL/d input.
    public func backward(from outputGradient: Tensor) throws -> Tensor? {
        try backward(outputGradient: outputGradient).input
    }

    /// Throws unless there are `batch` lengths, each in 1...`steps`.
    /// - Parameters:
    ///   - lengths: the valid lengths, one per sequence.
    ///   - steps: T.
    ///   - batch: B.
    ///   - operation: the operation the error names.
    public func checkLengths(_ lengths: [Int], steps: Int, batch: Int, operation: String) throws {
        try checkLengths(operation, lengths, steps: steps, batch: batch)
    }

    /// `[L * D, B, P]` for h, and `[L * D, B, H]` for c when the cell has one.
    /// - Parameter batchSize: B.
    /// - Returns: the shapes of h and c.
    public func stateShapes(batchSize: Int) -> (hidden: Shape, cell: Shape?) {
        let states = layerCount * directionCount
        return ([states, batchSize, stateSize], cell.hasCellState ? [states, batchSize, hiddenSize] : nil)
    }

    /// True for a unidirectional layer that returns every step: a reverse scan needs the whole
    /// sequence, and a many-to-one output only the last step.
    public var continuesAcrossPasses: Bool { !bidirectional && returnSequences }
}
