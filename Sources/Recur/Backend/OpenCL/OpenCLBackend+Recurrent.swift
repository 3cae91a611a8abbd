// The whole-sequence recurrent ops on OpenCL: one layer, one direction, every time step per call.
//
// Shape legend: T time steps, B batch, I input features, H hidden units, G = gates * H.
// Sequences are time-major, so row (t, b) of a `[T, B, F]` buffer is row t * B + b of `[T * B, F]`.
//
// Forward: one CLBlast GEMM projects the inputs of all steps into the workspace's gate buffer,
// then one fused kernel per step (`<cell>_fwd_step`, Kernels/rnn.cl, lstm.cl, gru.cl) does that
// step's recurrent matmul, the gate nonlinearities, the cell update, padding and the recurrent
// dropout mask, and writes the output view, the workspace and the running state. Backward: one
// fused kernel per step in reverse scan order turns dL/dh_t into the step's gate gradients, taking
// the gradient through W_hh from the step processed before it; after the loop, GEMMs over all
// T * B rows give the weight and bias gradients and dL/dx. The reset-before GRU needs two kernels
// per step in each direction (see gru.cl). Nothing is read back to the host and nothing is
// allocated inside the time loops; the queue is in order, so each step sees the previous one's
// writes.

extension KernelFamily {
    static let rnn = KernelFamily(name: "rnn")
    static let lstm = KernelFamily(name: "lstm")
    static let gru = KernelFamily(name: "gru")
}

/// The work-group tiling of the recurrent step kernels (`RECUR_TILE_H`, `RECUR_TILE_B`,
/// `RECUR_TILE_K` in Kernels/common.cl), chosen once per device and passed as build options.
struct RecurrentTiling: Equatable, Sendable {
    /// Work-items per group along the hidden units (`RECUR_TILE_H`).
    var units = 32
    /// Work-items per group along the batch (`RECUR_TILE_B`).
    var rows = 8
    /// Reduction elements staged in local memory per pass (`RECUR_TILE_K`).
    var depth = 16

    init(device: OpenCLDevice) {
        self.init(maxWorkGroupSize: device.maxWorkGroupSize, localMemoryBytes: device.localMemoryBytes)
    }

    /// Starts from groups of 32 x 8 = 256 work-items (eight 32-wide warps, four 64-wide
    /// wavefronts), shrinks them to what the device allows, then shrinks the staged depth until
    /// the largest kernel's local tiles fit twice into local memory, so two groups can share a
    /// compute unit.
    init(maxWorkGroupSize: Int, localMemoryBytes: Int) {
        let groupTooLarge = { (tiling: RecurrentTiling) in tiling.units * tiling.rows > maxWorkGroupSize }
        while groupTooLarge(self), rows > 1 { rows /= 2 }
        while groupTooLarge(self), units > 1 { units /= 2 }
        let tilesTooLarge = { (tiling: RecurrentTiling) in 2 * tiling.largestLocalBytes > localMemoryBytes }
        while tilesTooLarge(self), depth > 1 { depth /= 2 }
    }

    /// Local memory of `lstm_fwd_step`, the largest user: four gates' weight tiles (one padding
    /// column each) and the tile of h̃ rows.
    var largestLocalBytes: Int {
        (4 * units * (depth + 1) + rows * depth) * MemoryLayout<Float>.size
    }

    var buildOptions: String {
        "-DRECUR_TILE_H=\(units) -DRECUR_TILE_B=\(rows) -DRECUR_TILE_K=\(depth)"
    }
}

extension OpenCLBackend {
    public func recurrentForward(_ request: RecurrentForward) throws {
        let operation = "recurrentForward"
        let size = try checkRecurrentForward(request)
        let scan = try OpenCLRecurrentScan(request.scan, size, backend: self, operation: operation)
        let workspace = request.workspace
        try checkRecurrentIndexable(operation, [
            request.output.tensor, request.finalHidden, workspace.gates, workspace.recurrentInput,
        ] + [request.finalCell, workspace.cellStates, workspace.hiddenStates, workspace.candidateRecurrent]
            .compactMap { $0 } + scan.tensors)
        let (steps, batch, inputs, hidden, gates) = (size.steps, size.batch, size.input, size.hidden, size.gates)
        let x = request.scan.input
        let weights = request.scan.weights

        // Input projections of every step at once: gates[T * B, G] = x[T * B, I] · W_ihᵀ. The step
        // kernels add the biases and the recurrent part, then apply the nonlinearities in place.
        try gemm(m: steps * batch, n: gates, k: inputs, alpha: 1,
                 a: MatrixOperand(x, leadingDimension: inputs),
                 b: MatrixOperand(weights.input, leadingDimension: inputs, transposed: true),
                 beta: 0, c: MatrixOperand(workspace.gates, leadingDimension: gates))
        // h̃ of the first step, h0 ⊙ m; each step kernel writes the next one's.
        let firstRow = scan.time(ofStep: 0) * batch * hidden
        var firstOperand = request.scan.initialHidden
        if let mask = request.scan.recurrentDropoutMask {
            firstOperand = try zeros([batch, hidden])  // [B, H]
            try multiply(request.scan.initialHidden, mask, into: firstOperand)
        }
        try copy(firstOperand, sourceOffset: 0, into: workspace.recurrentInput, destinationOffset: firstRow,
                 count: batch * hidden)

        let program = try program(scan.family)
        let output = request.output
        let outputArguments: [KernelArgument] = [
            .tensor(output.tensor), .int(output.offset), .int(output.leadingDimension),
        ]
        for s in 0..<steps {
            let time = scan.time(ofStep: s)
            let next = s + 1 < steps ? scan.time(ofStep: s + 1) : -1
            // The state before the step: h0 / c0 first, then the running state in h_n / c_n (each
            // work-item reads and writes only its own element of it).
            let hPrevious = s == 0 ? request.scan.initialHidden : request.finalHidden
            let head: [KernelArgument] = [.int(batch), .int(hidden), .int(steps), .int(time)]
            let tail = outputArguments + scan.maskArguments + scan.lengthArguments
            switch scan.cell {
            case .rnnTanh, .rnnRelu:
                try scan.launch(program, "rnn_fwd_step", head + [
                    .int(next), .int(scan.cell == .rnnRelu ? 1 : 0),
                    .tensor(weights.recurrent), .tensor(weights.inputBias), .tensor(weights.recurrentBias),
                    .tensor(workspace.gates), .tensor(workspace.recurrentInput),
                    .tensor(hPrevious), .tensor(request.finalHidden),
                ] + tail)
            case .lstm:
                let cPrevious = s == 0 ? request.scan.initialCell! : request.finalCell!
                try scan.launch(program, "lstm_fwd_step", head + [
                    .int(next), .float(scan.cellClip),
                    .tensor(weights.recurrent), .tensor(weights.inputBias), .tensor(weights.recurrentBias),
                    .tensor(workspace.gates), .tensor(workspace.recurrentInput), .tensor(workspace.cellStates!),
                    .tensor(hPrevious), .tensor(cPrevious), .tensor(request.finalHidden), .tensor(request.finalCell!),
                ] + tail)
            case .gru:
                try scan.launch(program, "gru_fwd_step", head + [
                    .int(next),
                    .tensor(weights.recurrent), .tensor(weights.inputBias), .tensor(weights.recurrentBias),
                    .tensor(workspace.gates), .tensor(workspace.recurrentInput), .tensor(workspace.hiddenStates!),
                    .tensor(workspace.candidateRecurrent!),
                    .tensor(hPrevious), .tensor(request.finalHidden),
                ] + tail)
            case .gruResetBefore:
                try scan.launch(program, "gru_reset_before_fwd_gates", head + [
                    .tensor(weights.recurrent), .tensor(weights.inputBias), .tensor(weights.recurrentBias),
                    .tensor(workspace.gates), .tensor(workspace.recurrentInput),
                    .tensor(workspace.candidateRecurrent!),
                ] + scan.lengthArguments)
                try scan.launch(program, "gru_reset_before_fwd_step", head + [
                    .int(next),
                    .tensor(weights.recurrent), .tensor(weights.inputBias), .tensor(weights.recurrentBias),
                    .tensor(workspace.gates), .tensor(workspace.recurrentInput), .tensor(workspace.hiddenStates!),
                    .tensor(workspace.candidateRecurrent!),
                    .tensor(hPrevious), .tensor(request.finalHidden),
                ] + tail)
            }
        }
    }

    public func recurrentBackward(_ request: RecurrentBackward) throws {
        let operation = "recurrentBackward"
        let size = try checkRecurrentBackward(request)
        let scan = try OpenCLRecurrentScan(request.scan, size, backend: self, operation: operation)
        let workspace = request.workspace
        let gradients = request.weightGradients
        try checkRecurrentIndexable(operation, [
            workspace.gates, workspace.recurrentInput, request.inputGradient, request.initialHiddenGradient,
            gradients.input, gradients.recurrent, gradients.inputBias, gradients.recurrentBias,
        ] + [request.outputGradient?.tensor, request.finalHiddenGradient, request.finalCellGradient,
             request.initialCellGradient, workspace.cellStates, workspace.hiddenStates, workspace.candidateRecurrent,
            request.hiddenStateGradients]
            .compactMap { $0 } + scan.tensors)
        let (steps, batch, inputs, hidden, gates) = (size.steps, size.batch, size.input, size.hidden, size.gates)
        let rows = steps * batch
        let x = request.scan.input
        let weights = request.scan.weights

        // Scratch for the whole call, allocated before the loop.
        let gateGradients = try zeros([rows, gates])  // [T * B, G]: dG, as seen by W_ih, b_ih and x
        // [T * B, G]: dGh, as seen by W_hh, b_hh and h̃; only the reset-after GRU's differs (its n
        // block is scaled by r).
        let recurrentGateGradients = scan.cell == .gru ? try zeros([rows, gates]) : gateGradients
        // [B, H]: the reset-before GRU's dq ⊙ r, the part of dh̃ through W_hn (r ⊙ h̃).
        let dhTildeReset = scan.cell == .gruResetBefore ? try zeros([batch, hidden]) : nil
        let ones = try zeros([rows])  // [T * B]: sums rows by GEMM
        try fill(ones, with: 1)

        // The running dL/dh (and dL/dc) live in the dh0 (and dc0) outputs; they start as dL/dh_n.
        let dh = request.initialHiddenGradient
        if let given = request.finalHiddenGradient {
            try copy(given, sourceOffset: 0, into: dh, destinationOffset: 0, count: batch * hidden)
        } else {
            try fill(dh, with: 0)
        }
        if let dc = request.initialCellGradient {
            if let given = request.finalCellGradient {
                try copy(given, sourceOffset: 0, into: dc, destinationOffset: 0, count: batch * hidden)
            } else {
                try fill(dc, with: 0)
            }
        }

        let program = try program(scan.family)
        let upstreamArguments: [KernelArgument]
        if let view = request.outputGradient {
            upstreamArguments = [.tensor(view.tensor), .int(1), .int(view.offset), .int(view.leadingDimension)]
        } else {
            upstreamArguments = [.tensor(scan.placeholder), .int(0), .int(0), .int(0)]
        }
        // The optional record of every step's dL/dh_t, [T, B, H].
        let recordArguments: [KernelArgument] = request.hiddenStateGradients.map { [.tensor($0), .int(1)] }
            ?? [.tensor(scan.placeholder), .int(0)]
        let tail = upstreamArguments + recordArguments + scan.maskArguments + scan.lengthArguments
        // Scan steps T-1 ... 0, then one more launch with time -1 that only takes the gradient of
        // the first step through W_hh into dL/dh0 (every work-item sees a padded step).
        for s in stride(from: steps - 1, through: -1, by: -1) {
            let time = s >= 0 ? scan.time(ofStep: s) : -1
            let next = s + 1 < steps ? scan.time(ofStep: s + 1) : -1
            let previous = s > 0 ? scan.time(ofStep: s - 1) : -1
            let head: [KernelArgument] = [.int(batch), .int(hidden), .int(steps), .int(time)]
            switch scan.cell {
            case .rnnTanh, .rnnRelu:
                try scan.launch(program, "rnn_bwd_step", head + [
                    .int(next), .int(scan.cell == .rnnRelu ? 1 : 0),
                    .tensor(weights.recurrent), .tensor(workspace.gates),
                    .tensor(gateGradients), .tensor(dh),
                ] + tail)
            case .lstm:
                try scan.launch(program, "lstm_bwd_step", head + [
                    .int(next), .int(previous), .float(scan.cellClip),
                    .tensor(weights.recurrent), .tensor(workspace.gates),
                    .tensor(workspace.cellStates!), .tensor(request.scan.initialCell!),
                    .tensor(gateGradients), .tensor(dh), .tensor(request.initialCellGradient!),
                ] + tail)
            case .gru:
                try scan.launch(program, "gru_bwd_step", head + [
                    .int(next), .int(previous),
                    .tensor(weights.recurrent), .tensor(workspace.gates),
                    .tensor(workspace.hiddenStates!), .tensor(workspace.candidateRecurrent!),
                    .tensor(request.scan.initialHidden),
                    .tensor(gateGradients), .tensor(recurrentGateGradients), .tensor(dh),
                ] + tail)
            case .gruResetBefore:
                try scan.launch(program, "gru_reset_before_bwd_step", head + [
                    .int(next), .int(previous),
                    .tensor(weights.recurrent), .tensor(workspace.gates),
                    .tensor(workspace.hiddenStates!), .tensor(request.scan.initialHidden),
                    .tensor(gateGradients), .tensor(dhTildeReset!), .tensor(dh),
                ] + tail)
                if s >= 0 {
                    try scan.launch(program, "gru_reset_before_bwd_gates", head + [
                        .tensor(weights.recurrent), .tensor(workspace.gates), .tensor(workspace.recurrentInput),
                        .tensor(gateGradients), .tensor(dhTildeReset!),
                    ] + scan.lengthArguments)
                }
            }
        }

        // Everything that does not depend on the recurrence, over all T * B rows at once; padded
        // rows of dG are 0 and add nothing.
        let dG = MatrixOperand(gateGradients, leadingDimension: gates)
        // dW_ih[G, I] += dGᵀ · x
        try gemm(m: gates, n: inputs, k: rows, alpha: 1,
                 a: MatrixOperand(gateGradients, leadingDimension: gates, transposed: true),
                 b: MatrixOperand(x, leadingDimension: inputs),
                 beta: 1, c: MatrixOperand(gradients.input, leadingDimension: inputs))
        switch scan.cell {
        case .rnnTanh, .rnnRelu, .lstm, .gru:
            // dW_hh[G, H] += dGhᵀ · h̃
            try gemm(m: gates, n: hidden, k: rows, alpha: 1,
                     a: MatrixOperand(recurrentGateGradients, leadingDimension: gates, transposed: true),
                     b: MatrixOperand(workspace.recurrentInput, leadingDimension: hidden),
                     beta: 1, c: MatrixOperand(gradients.recurrent, leadingDimension: hidden))
        case .gruResetBefore:
            // r, z rows: dW_h(r,z)[2H, H] += dG[:, 0 ..< 2H]ᵀ · h̃
            try gemm(m: 2 * hidden, n: hidden, k: rows, alpha: 1,
                     a: MatrixOperand(gateGradients, leadingDimension: gates, transposed: true),
                     b: MatrixOperand(workspace.recurrentInput, leadingDimension: hidden),
                     beta: 1, c: MatrixOperand(gradients.recurrent, leadingDimension: hidden))
            // n rows: dW_hn[H, H] += dG[:, 2H ..< 3H]ᵀ · (r ⊙ h̃)
            try gemm(m: hidden, n: hidden, k: rows, alpha: 1,
                     a: MatrixOperand(gateGradients, offset: 2 * hidden, leadingDimension: gates, transposed: true),
                     b: MatrixOperand(workspace.candidateRecurrent!, leadingDimension: hidden),
                     beta: 1, c: MatrixOperand(gradients.recurrent, offset: 2 * hidden * hidden,
                                               leadingDimension: hidden))
        }
        // db_ih[1, G] += 1[1, T * B] · dG, db_hh[1, G] += 1 · dGh
        let onesRow = MatrixOperand(ones, leadingDimension: rows)
        try gemm(m: 1, n: gates, k: rows, alpha: 1, a: onesRow, b: dG,
                 beta: 1, c: MatrixOperand(gradients.inputBias, leadingDimension: gates))
        try gemm(m: 1, n: gates, k: rows, alpha: 1, a: onesRow,
                 b: MatrixOperand(recurrentGateGradients, leadingDimension: gates),
                 beta: 1, c: MatrixOperand(gradients.recurrentBias, leadingDimension: gates))
        // dx[T * B, I] (+)= dG · W_ih
        try gemm(m: rows, n: inputs, k: gates, alpha: 1, a: dG,
                 b: MatrixOperand(weights.input, leadingDimension: inputs),
                 beta: request.accumulateInputGradient ? 1 : 0,
                 c: MatrixOperand(request.inputGradient, leadingDimension: inputs))
    }

    /// The step kernels index with 32-bit ints: throws for tensors with more elements than that reaches.
    private func checkRecurrentIndexable(_ operation: String, _ tensors: [Tensor]) throws {
        for tensor in tensors where tensor.count > Int(Int32.max) {
            throw RecurError.invalidArgument(
                operation: operation, detail: "\(tensor) has more than \(Int32.max) elements, the kernels' index limit")
        }
    }
}

/// What every step kernel of one validated scan shares: the program family, the launch geometry,
/// and the arguments of the optional operands.
private struct OpenCLRecurrentScan {
    let cell: RecurrentCell
    let family: KernelFamily
    let steps: Int
    let reverse: Bool
    /// `[H, B]` rounded up to whole `RecurrentTiling` groups by the launch.
    let globalSize: [Int]
    let localSize: [Int]
    /// lengths, hasLengths, prePadding.
    let lengthArguments: [KernelArgument]
    /// mask, hasMask.
    let maskArguments: [KernelArgument]
    /// +infinity without a clip, so the clip is a plain comparison in the kernels.
    let cellClip: Float
    /// Stands in for an absent optional buffer; the kernels never read it (its flag is 0).
    let placeholder: Tensor
    /// The scan's optional operands that the kernels index.
    let tensors: [Tensor]

    init(_ scan: RecurrentScan, _ size: RecurrentDimensions, backend: OpenCLBackend, operation: String) throws {
        cell = scan.cell
        family = switch scan.cell {
        case .rnnTanh, .rnnRelu: .rnn
        case .lstm: .lstm
        case .gru, .gruResetBefore: .gru
        }
        steps = size.steps
        reverse = scan.reverse
        let tiling = RecurrentTiling(device: backend.device)
        globalSize = [size.hidden, size.batch]
        localSize = [tiling.units, tiling.rows]
        placeholder = scan.initialHidden
        if let lengths = scan.lengths {
            try Self.checkLengths(lengths, steps: size.steps, backend: backend, operation: operation)
            lengthArguments = [.tensor(lengths), .int(1), .int(scan.padding == .pre ? 1 : 0)]
        } else {
            lengthArguments = [.tensor(placeholder), .int(0), .int(0)]
        }
        if let mask = scan.recurrentDropoutMask {
            maskArguments = [.tensor(mask), .int(1)]
        } else {
            maskArguments = [.tensor(placeholder), .int(0)]
        }
        cellClip = scan.cellClip ?? .infinity
        tensors = [scan.input, scan.initialHidden, scan.weights.input, scan.weights.recurrent]
            + [scan.initialCell, scan.lengths, scan.recurrentDropoutMask].compactMap { $0 }
    }

    /// The time index of scan step s.
    func time(ofStep s: Int) -> Int { reverse ? steps - 1 - s : s }

    /// Enqueues one step kernel over the `[H, B]` grid.
    func launch(_ program: OpenCLProgram, _ kernel: String, _ arguments: [KernelArgument]) throws {
        try program.launch(kernel, globalSize: globalSize, localSize: localSize, arguments: arguments)
    }

    /// Lengths uploaded from the host carry their value range: out-of-range values throw like on the
    /// CPU backend, reading the values back only to name the offending sequence. Lengths of unknown
    /// range are trusted (the layer checks them before uploading); the kernels clamp them.
    private static func checkLengths(_ lengths: Tensor, steps: Int, backend: OpenCLBackend, operation: String) throws {
        guard let range = lengths.openCLBuffer.int32Range, range.lowerBound < 1 || Int(range.upperBound) > steps
        else { return }
        try backend.checkRecurrentLengths(operation, try backend.downloadInt32(lengths), steps: steps)
    }
}
