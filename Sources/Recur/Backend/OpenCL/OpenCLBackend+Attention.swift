// The attention ops on OpenCL (Kernels/attention.cl): the forward op as one fused launch, the
// backward op as two (three with the additive score's vector). Each matches
// CPUBackend+Attention.swift within float32 rounding.
//
// Shape legend: Ty target steps, Tx source steps, B batch, D query and key features, Dv value
// features, G work-items per group.

extension KernelFamily {
    static let attention = KernelFamily(name: "attention")
}

extension OpenCLBackend {
    public func attentionForward(_ request: AttentionForward) throws {
        let size = try checkAttentionForward(request)
        let operation = "attentionForward"
        let operands = try OpenCLAttentionOperands(request.operands, size, backend: self, operation: operation)
        try checkIndexable(operation, operands.tensors + [request.context, request.weights])
        let (program, groupSize) = try attentionProgram()
        try program.launch(
            "attention_forward", globalSize: [size.targetSteps * size.batch * groupSize], localSize: [groupSize],
            arguments: operands.arguments(includingValues: true) + [.tensor(request.context), .tensor(request.weights)])
    }

    public func attentionBackward(_ request: AttentionBackward) throws {
        let size = try checkAttentionBackward(request)
        let operation = "attentionBackward"
        let operands = try OpenCLAttentionOperands(request.operands, size, backend: self, operation: operation)
        let written = [request.queriesGradient, request.keysGradient, request.valuesGradient]
            + [request.scoreVectorGradient].compactMap { $0 }
        try checkIndexable(operation, operands.tensors + written + [request.weights, request.contextGradient])
        let (program, groupSize) = try attentionProgram()
        let (ty, tx, b, d) = (size.targetSteps, size.sourceSteps, size.batch, size.features)
        let scoreGradients = try uninitialized([b, ty, tx])  // dS [B, Ty, Tx]
        // The additive score's per-source share of dv; the dot score never touches it.
        let shares = request.scoreVectorGradient == nil ? scoreGradients : try uninitialized([tx, b, d])  // [Tx, B, D]
        try checkIndexable(operation, [scoreGradients, shares])
        try program.launch(
            "attention_backward_queries", globalSize: [ty * b * groupSize], localSize: [groupSize],
            arguments: operands.arguments(includingValues: true) + [
                .tensor(request.weights), .tensor(request.contextGradient), .tensor(scoreGradients),
                .tensor(request.queriesGradient),
            ])
        try program.launch(
            "attention_backward_sources", globalSize: [tx * b * groupSize], localSize: [groupSize],
            arguments: operands.arguments(includingValues: false) + [
                .tensor(request.weights), .tensor(request.contextGradient), .tensor(scoreGradients),
                .tensor(request.keysGradient), .tensor(request.valuesGradient), .tensor(shares),
            ])
        if let vectorGradient = request.scoreVectorGradient {
            try program.launch(
                "attention_score_vector_gradient", globalSize: [d],
                arguments: [.tensor(shares), .int(tx * b), .int(d), .tensor(vectorGradient)])
        }
    }

    /// The attention program and its work-group size: 64 work-items (a group reduces over the
    /// source steps and then spreads over the features, and a few dozen of each is the common
    /// case), fewer where the device allows fewer; teams of 8 share a score's sum.
    private func attentionProgram() throws -> (OpenCLProgram, Int) {
        let groupSize = min(64, reduceGroupSize)
        let options = "-DATTENTION_GROUP_SIZE=\(groupSize) -DATTENTION_TEAM_SIZE=\(min(8, groupSize))"
        return (try program(.attention, options: options), groupSize)
    }
}

/// The operands of a validated attention request as the kernels take them, absent optional ones
/// replaced by a placeholder the kernels never read (their flag is 0).
private struct OpenCLAttentionOperands {
    let operands: AttentionOperands
    let size: AttentionDimensions
    /// The tensors the kernels index.
    let tensors: [Tensor]

    init(_ operands: AttentionOperands, _ size: AttentionDimensions, backend: OpenCLBackend, operation: String) throws {
        self.operands = operands
        self.size = size
        tensors = [operands.queries, operands.keys, operands.values]
            + [operands.scoreVector, operands.sourceLengths].compactMap { $0 }
        if let lengths = operands.sourceLengths {
            // Lengths uploaded from the host carry their range: out-of-range values throw like on
            // the CPU backend, read back only to name the sequence. Lengths of unknown range are
            // trusted (the layer checks them before uploading); the kernels clamp them.
            if let range = lengths.openCLBuffer.int32Range, range.lowerBound < 1 || Int(range.upperBound) > size.sourceSteps {
                try backend.checkAttentionLengths(operation, try backend.downloadInt32(lengths),
                                                  sourceSteps: size.sourceSteps)
            }
        }
    }

    /// The leading arguments of the kernels: queries, keys, (values,) score vector, the additive
    /// flag, lengths, their flag, the padding side, then Ty, Tx, B, D, Dv.
    func arguments(includingValues: Bool) -> [KernelArgument] {
        let placeholder = operands.queries
        let sources: [KernelArgument] = includingValues
            ? [.tensor(operands.keys), .tensor(operands.values)] : [.tensor(operands.keys)]
        return [.tensor(operands.queries)] + sources + [
            .tensor(operands.scoreVector ?? placeholder), .int(operands.score == .additive ? 1 : 0),
            .tensor(operands.sourceLengths ?? placeholder), .int(operands.sourceLengths == nil ? 0 : 1),
            .int(operands.sourceLengths != nil && operands.padding == .pre ? 1 : 0),
            .int(size.targetSteps), .int(size.sourceSteps), .int(size.batch), .int(size.features),
            .int(size.valueFeatures),
        ]
    }
}
