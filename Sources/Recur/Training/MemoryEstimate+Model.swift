// The memory estimate of a whole model's training or evaluation run: the recurrent stack's
// estimate (Layers/MemoryEstimate.swift) plus the embedding, the head, a batch's data and the
// optimizer's state. It sits with the trainer because the model specification and the optimizer
// are declared above the layers.
//
// Shape legend: T time steps, B batch, H hidden units, D directions, V vocabulary, E embedding
// width, K outputs.

extension MemoryEstimate {
    /// A training run of `specification` on batches of `batchSize` sequences of `steps` time steps,
    /// with `optimizer`'s state (nil: none); `pass: .inference` for evaluation, where nothing is
    /// back-propagated.
    public init(_ specification: ModelSpecification, batchSize: Int, steps: Int,
                optimizer: OptimizerSpecification?, pass: Pass = .training) {
        let s = specification
        let (b, t) = (max(batchSize, 0), max(steps, 0))
        let d = s.bidirectional ? 2 : 1
        let k = max(s.outputSize, 0)
        let input = s.readsIDs ? max(s.embeddingSize ?? 0, 0) : max(s.inputFeatures ?? 0, 0)
        self = Self.stack(
            cell: s.cell, inputSize: input, hiddenSize: s.hiddenSize, projectionSize: s.projectionSize,
            layerCount: s.layerCount,
            bidirectional: s.bidirectional, batchSize: b, steps: t, pass: pass,
            returnsSequences: s.returnsSequences, inputDropout: s.inputDropout > 0, layerDropout: s.layerDropout > 0,
            recordsGradientFlow: false)
        let rows = s.returnsSequences ? Self.product(t, b) : b  // N: the head's rows
        let width = Self.product(d, s.projectionSize ?? s.hiddenSize)  // D * P
        var extraParameters = Self.sum(Self.product(width, k), k)  // Dense [K, D H] and [K]
        let batchInput: Int  // bytes of a batch's ids [T, B] int32 or values [T, B, F]
        if s.readsIDs {
            let table = Self.product(max(s.vocabularySize ?? 0, 0), input)  // Embedding [V, E]
            extraParameters = Self.sum(extraParameters, table)
            largestBuffer = max(largestBuffer, Self.bytes(table))
            batchInput = Self.bytes(Self.product(t, b))
            activations = Self.sum(activations, Self.bytes(Self.product(t, b, input)))  // the embedding's output
        } else {
            batchInput = Self.bytes(Self.product(t, b, input))
        }
        data = Self.sum(data, batchInput)
        parameters = Self.sum(parameters, Self.bytes(extraParameters))
        gradients = Self.sum(gradients, Self.bytes(extraParameters))
        let logits = Self.bytes(Self.product(rows, k))  // [N, K]
        data = Self.sum(data, s.returnsSequences ? Self.bytes(rows) : logits)  // targets
        let headInput = Self.bytes(Self.product(rows, width))  // [N, D H]
        activations = Self.sum(activations, logits, s.outputDropout > 0 ? Self.product(2, headInput) : 0)
        if pass == .training {
            // The loss's gradient and the head's dL/dz [N, K], and its dL/dx [N, D H].
            workspace = Self.sum(workspace, Self.product(2, logits), headInput)
        }
        // Also for evaluation: a checkpoint's optimizer state is restored with the model.
        let moments: Int = switch optimizer {
        case .adam?, .adamW?: 2
        case .sgd(_, let momentum, _, _)?: momentum != 0 ? 1 : 0
        case .rmsProp(_, let momentum, _)?: momentum != 0 ? 2 : 1
        case nil: 0
        }
        optimizerState = Self.product(moments, parameters)
        largestBuffer = max(largestBuffer, logits, Self.bytes(Self.product(width, k)))
        // The host builds the largest layer's initial values, and a batch's ids or values (the
        // examples' rows, then the time-major array uploaded).
        initialization = max(initialization, Self.bytes(extraParameters))
        host = max(host, Self.product(2, batchInput))
    }
}
