// The whole-sequence recurrent ops on OpenCL: one layer, one direction or both directions of a
// bidirectional layer, every time step per call.
//
// Shape legend: T time steps, B batch, I input features, H hidden units, G = gates * H,
// D directions run together (1, or 2 for a bidirectional pair).
// Sequences are time-major, so row (t, b) of a `[T, B, F]` buffer is row t * B + b of `[T * B, F]`.
//
// Forward: one CLBlast GEMM per direction projects the inputs of all steps into the workspace's
// gate buffer, then one fused kernel per step (`<cell>_fwd_step`: the skeleton
// Kernels/recurrent.cl with the cell's step math from Kernels/<cell>.cl, its operands described
// in OpenCLStepKernels.swift) does that step's recurrent matmul, the gate nonlinearities, the
// cell update, padding and the recurrent dropout mask, and writes the output view, the workspace
// and the running state.
// Backward: one fused kernel per step in reverse scan order turns dL/dh_t into the step's gate
// gradients, taking the gradient through W_hh from the step processed before it; after the loop,
// GEMMs over all T * B rows give the weight and bias gradients and dL/dx. The reset-before GRU
// needs two kernels per step (see gru_reset_before.cl). Nothing is read back to the host and
// nothing is allocated inside the time loops; the queue is in order, so each step sees the
// previous one's writes.
//
// The layer-normalised cells normalise over all H units of a sequence row at every step, so their
// kernels come from the row skeleton (Kernels/recurrent_rows.cl): one work-group per sequence and
// direction runs every step of its row in one launch, the recurrent product, the statistics and
// the gate math fused; their bias and gain gradients are summed per row inside the backward
// kernel and over the rows by GEMMs after it. The LSTM with a projection is a row scan too (h_t =
// W_hr u mixes all H units of the row), over h of P features: its backward records dL/dh_t and
// every step's u, and dW_hr is one GEMM over all T * B rows after it.
//
// A bidirectional pair runs both scans side by side: each step launch covers a [H, B, 2] grid,
// time t of the forward scan in direction 0 and time T-1-t of the reverse scan in direction 1
// (the two never depend on each other), so the pair costs T step launches, not 2T, each with
// twice the work-items. The GEMMs of the two directions are one batched GEMM each where their
// buffers lie in shared allocations (a bidirectional layer allocates them so; see `gemmBatched`),
// else one per direction, back to back. A single scan launches the same kernels over [H, B, 1]
// with its operands in both direction slots.

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

/// The work-group of the row step kernels (`RECUR_ROW_GROUP` in Kernels/rows.cl, a power of two,
/// since their sums halve it): one work-item per hidden unit, H rounded up to a power of two
/// between 32 and 256, or the largest power of two the device allows below that. Work-items
/// beyond H only take part in the sums' barriers, which cost PoCL a pass over the whole group
/// each, so a small H gets a small group; each size is a program variant of its own.
struct RowScanGroup: Equatable, Sendable {
    let size: Int

    init(hidden: Int, device: OpenCLDevice) {
        self.init(hidden: hidden, maxWorkGroupSize: device.maxWorkGroupSize)
    }

    init(hidden: Int, maxWorkGroupSize: Int) {
        var wanted = 32
        while wanted < min(hidden, 256) { wanted *= 2 }
        var size = 1
        while size * 2 <= min(wanted, maxWorkGroupSize) { size *= 2 }
        self.size = size
    }

    var buildOptions: String { "-DRECUR_ROW_GROUP=\(size)" }
}

extension OpenCLBackend {
    public func recurrentForward(_ request: RecurrentForward) throws {
        let size = try checkRecurrentForward(request)
        try forwardScans([request], size, operation: "recurrentForward")
    }

    /// Both directions in one launch per step (see the top of this file).
    public func recurrentForward(_ pair: BidirectionalRecurrentForward) throws {
        let size = try checkBidirectionalRecurrentForward(pair)
        try forwardScans([pair.forward, pair.reverse], size, operation: "recurrentForward (bidirectional)")
    }

    public func recurrentBackward(_ request: RecurrentBackward) throws {
        let size = try checkRecurrentBackward(request)
        try backwardScans([request], size, operation: "recurrentBackward")
    }

    /// Both directions in one launch per step (see the top of this file).
    public func recurrentBackward(_ pair: BidirectionalRecurrentBackward) throws {
        let size = try checkBidirectionalRecurrentBackward(pair)
        try backwardScans([pair.forward, pair.reverse], size, operation: "recurrentBackward (bidirectional)")
    }

    /// The forward of one validated scan, or of a validated bidirectional pair side by side
    /// (`requests` then holds the forward and the reverse scan, which share cell, sizes, lengths
    /// and clip).
    private func forwardScans(_ requests: [RecurrentForward], _ size: RecurrentDimensions,
                              operation: String) throws {
        let scans = try requests.map { try OpenCLRecurrentScan($0.scan, size, backend: self, operation: operation) }
        for (request, scan) in zip(requests, scans) {
            let workspace = request.workspace
            try checkIndexable(operation, [
                request.output.tensor, request.finalHidden, workspace.gates, workspace.recurrentInput,
            ] + [request.finalCell, workspace.cellStates, workspace.hiddenStates, workspace.candidateRecurrent]
                .compactMap { $0 } + scan.tensors)
        }
        // The first plan that completes: persistent (resident or tiled) where allowed, and after a
        // persistent launch that timed out, every step again from the input projection on, one
        // launch each (the aborted launch overwrote part of the gate buffer).
        for launches in try stepPlans(scans[0].kernels, size, directions: requests.count) {
            try prepareForwardScans(requests, scans, size)
            if try completes(launches, { try forwardSteps(requests, scans, size, launches) }) { return }
        }
    }

    /// What a forward scan needs before its first step: the input projections of every step and
    /// the first step's h̃.
    private func prepareForwardScans(_ requests: [RecurrentForward], _ scans: [OpenCLRecurrentScan],
                                     _ size: RecurrentDimensions) throws {
        let (steps, batch, inputs, state, gates) = (size.steps, size.batch, size.input, size.state, size.gates)
        // Input projections of every step at once, for every direction in one batched GEMM where
        // the directions' buffers allow: gates[T * B, G] = x[T * B, I] · W_ihᵀ. The step kernels add
        // the biases and the recurrent part, then apply the nonlinearities in place.
        try gemmBatched(m: steps * batch, n: gates, k: inputs, alpha: 1, requests.map { request in
            (MatrixOperand(request.scan.input, leadingDimension: inputs),
             MatrixOperand(request.scan.weights.input, leadingDimension: inputs, transposed: true),
             MatrixOperand(request.workspace.gates, leadingDimension: gates))
        }, beta: 0)
        for (request, scan) in zip(requests, scans) {
            let workspace = request.workspace
            // h̃ of the first step, h0 ⊙ m; each step kernel writes the next one's.
            let firstRow = scan.time(ofStep: 0) * batch * state
            var firstOperand = request.scan.initialHidden
            if let mask = request.scan.recurrentDropoutMask {
                firstOperand = try zeros([batch, state])  // [B, P]
                try multiply(request.scan.initialHidden, mask, into: firstOperand)
            }
            try copy(firstOperand, sourceOffset: 0, into: workspace.recurrentInput, destinationOffset: firstRow,
                     count: batch * state)
        }
    }

    /// Enqueues the step kernels of a prepared forward scan as `launches` plans them. Returns
    /// false when a persistent launch timed out (its results are then incomplete).
    private func forwardSteps(_ requests: [RecurrentForward], _ scans: [OpenCLRecurrentScan],
                              _ size: RecurrentDimensions, _ launches: OpenCLRecurrentSteps) throws -> Bool {
        let kernels = scans[0].kernels
        let program = try program(kernels.family, options: launches.programOptions)
        let workspaces = requests.map(\.workspace)
        // Every operand any cell's forward kernel takes, by name (Kernels/recurrent.cl and the cell
        // files); the kernel's description picks its own. The running state lives in h_n / c_n
        // (each work-item reads and writes only its own element of it); the kernels read h0 / c0
        // at the scan's first step.
        var values = OpenCLRecurrentScan.arguments(scans, size, requests.map(\.scan), workspaces)
        values.set("hState", eachTensor: requests.map(\.finalHidden))
        values.set("cState", eachTensor: requests.map(\.finalCell))
        values.set("output", eachTensor: requests.map(\.output.tensor))
        values.set("outputOffset", each: requests.map { .int($0.output.offset) })
        values.set("outputStride", each: requests.map { .int($0.output.leadingDimension) })
        // A projecting cell's u [B, H] of the current step, the operand of h_t = W_hr u.
        if kernels.cell.projectsHiddenState {
            values.set("unprojected", eachTensor: try requests.map { _ in try zeros([size.batch, size.hidden]) })
        }
        return try launches.scan(self, program, kernels.forward, values, firstStep: 0, stepCount: size.steps,
                                 phased: kernels.isPhased)
    }

    /// The backward of one validated scan, or of a validated bidirectional pair side by side; see
    /// `forwardScans`.
    private func backwardScans(_ requests: [RecurrentBackward], _ size: RecurrentDimensions,
                               operation: String) throws {
        let scans = try requests.map { try OpenCLRecurrentScan($0.scan, size, backend: self, operation: operation) }
        for (request, scan) in zip(requests, scans) {
            let workspace = request.workspace
            let gradients = request.weightGradients
            try checkIndexable(operation, [
                workspace.gates, workspace.recurrentInput, request.inputGradient, request.initialHiddenGradient,
                gradients.input, gradients.recurrent, gradients.inputBias, gradients.recurrentBias,
            ] + gradients.extra + [
                request.outputGradient?.tensor, request.finalHiddenGradient, request.finalCellGradient,
                request.initialCellGradient, workspace.cellStates, workspace.hiddenStates,
                 workspace.candidateRecurrent, request.hiddenStateGradients]
                .compactMap { $0 } + scan.tensors)
        }
        let (steps, batch) = (size.steps, size.batch)
        let rows = steps * batch
        let kernels = scans[0].kernels

        // Scratch for the whole call, one set per direction, allocated before the loop.
        let scratch = try OpenCLRecurrentGradientScratch.make(
            directions: requests.count, kernels: kernels, size: size,
            recordsHiddenStateGradients: requests.map { $0.hiddenStateGradients == nil }, backend: self)
        let ones = try onesVector(count: rows)  // [≥ T * B]: sums rows by GEMM

        // The first plan that completes; after a persistent launch that timed out, every step
        // again from the initial gradients on, one launch each.
        for launches in try stepPlans(kernels, size, directions: requests.count) {
            if try completes(launches, { try backwardSteps(requests, scans, scratch, size, launches) }) { break }
        }

        // Everything that does not depend on the recurrence, over all T * B rows at once; padded
        // rows of dG are 0 and add nothing.
        try weightAndInputGradients(requests, scratch, kernels: kernels, ones: ones, size: size)
    }

    /// Sets the running gradients of validated backward scans to dL/dh_n (and dL/dc_n), then
    /// enqueues their step kernels in reverse scan order as `launches` plans them. Returns false
    /// when a persistent launch timed out (its results are then incomplete).
    private func backwardSteps(_ requests: [RecurrentBackward], _ scans: [OpenCLRecurrentScan],
                               _ scratch: [OpenCLRecurrentGradientScratch], _ size: RecurrentDimensions,
                               _ launches: OpenCLRecurrentSteps) throws -> Bool {
        let (batch, hidden, state) = (size.batch, size.hidden, size.state)
        for request in requests {
            // The running dL/dh (and dL/dc) live in the dh0 (and dc0) outputs; they start as dL/dh_n.
            let dh = request.initialHiddenGradient
            if let given = request.finalHiddenGradient {
                try copy(given, sourceOffset: 0, into: dh, destinationOffset: 0, count: batch * state)
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
        }

        let kernels = scans[0].kernels
        let program = try program(kernels.family, options: launches.programOptions)
        let workspaces = requests.map(\.workspace)
        // Every operand any cell's backward kernel takes, by name; see `forwardSteps`.
        var values = OpenCLRecurrentScan.arguments(scans, size, requests.map(\.scan), workspaces)
        values.set("gateGradients", eachTensor: scratch.map(\.gateGradients))
        values.set("recurrentGateGradients", eachTensor: scratch.map(\.recurrentGateGradients))
        values.set("dhTildeReset", eachTensor: scratch.map(\.dhTildeReset))
        values.set("parameterGradients", eachTensor: scratch.map(\.parameterGradients))
        values.set("unprojected", eachTensor: scratch.map(\.unprojectedGradient))
        values.set("unprojectedStates", eachTensor: scratch.map(\.unprojectedStates))
        values.set("dhState", eachTensor: requests.map(\.initialHiddenGradient))
        values.set("dcState", eachTensor: requests.map(\.initialCellGradient))
        // dL/d output, or a flag that there is none.
        values.set("outputGradient",
                   eachTensor: zip(requests, scans).map { $0.outputGradient?.tensor ?? $1.placeholder })
        values.set("hasOutputGradient", each: requests.map { .int($0.outputGradient == nil ? 0 : 1) })
        values.set("outputGradientOffset", each: requests.map { .int($0.outputGradient?.offset ?? 0) })
        values.set("outputGradientStride", each: requests.map { .int($0.outputGradient?.leadingDimension ?? 0) })
        // The record of every step's dL/dh_t, [T, B, P]: optional, but a projecting cell's dW_hr
        // reads it (its own scratch where the request has none).
        let records = zip(requests, scratch).map { $0.hiddenStateGradients ?? $1.hiddenStateGradients }
        values.set("hiddenGradients", eachTensor: zip(records, scans).map { $0 ?? $1.placeholder })
        values.set("hasHiddenGradients", each: records.map { .int($0 == nil ? 0 : 1) })
        // Scan steps T-1 ... 0, then one more step with time -1 that only takes the gradient of the
        // first step through W_hh into dL/dh0 (every work-item sees a padded step).
        return try launches.scan(self, program, kernels.backward, values, firstStep: size.steps - 1,
                                 stepCount: size.steps + 1, phased: kernels.isPhased)
    }

    /// Runs `steps`, which enqueues a scan's steps as `launches` plans them, and returns whether the
    /// scan completed. An OpenCL error from a persistent plan (a variant that does not build, a
    /// launch over the device's resources) counts as not completed, so the next plan runs; other
    /// errors, and any from a lost device, are thrown.
    private func completes(_ launches: OpenCLRecurrentSteps, _ steps: () throws -> Bool) throws -> Bool {
        do {
            return try steps()
        } catch is OpenCLError where launches.isPersistent && !isDeviceLost {
            recordRefusedPersistentScan()
            return false
        }
    }

    /// How the steps of a scan of `cell` over `directions` directions may launch, in order of
    /// preference; the last plan is one launch per step, which never fails for lack of
    /// co-residency: the tiled split (the resident one under the `.always` test hook). Before it,
    /// where allowed (see OpenCLBackend+PersistentScans): a persistent launch with resident
    /// weights, else a tiled persistent launch. A row cell has one plan, its row scan, which needs
    /// no co-residency.
    private func stepPlans(_ kernels: OpenCLCellKernels, _ size: RecurrentDimensions, directions: Int) throws
        -> [OpenCLRecurrentSteps]
    {
        let cell = kernels.cell
        if kernels.skeleton == .rows {
            return [OpenCLRecurrentSteps(rows: size, directions: directions, device: device)]
        }
        let tiled = OpenCLRecurrentSteps(size, directions: directions, device: device)
        let use = residentWeights
        if use != .never, kernels.hasResidentSplit,
           let layout = ResidentScanLayout(gates: cell.gateCount, hidden: size.hidden, batch: size.batch,
                                           directions: directions, device: device) {
            let resident = OpenCLRecurrentSteps(resident: layout, directions: directions)
            if try runsPersistentScan(cell: cell, steps: size.steps, groups: resident.groupCount,
                                      localSize: resident.localSize) {
                return [resident.persistent(), tiled]
            }
            if use == .always { return [resident] }
        }
        if try runsPersistentScan(cell: cell, steps: size.steps, groups: tiled.groupCount,
                                  localSize: tiled.localSize) {
            return [tiled.persistent(), tiled]
        }
        return [tiled]
    }

    /// The GEMMs after a backward scan, or a pair's: weight, bias and input gradients from dG and
    /// dGh. The weight and bias gradients of a pair are batched GEMMs where the directions' buffers
    /// allow (see `gemmBatched`); dL/dx, which the directions share, is overwritten or added to in
    /// request order.
    private func weightAndInputGradients(_ requests: [RecurrentBackward], _ scratch: [OpenCLRecurrentGradientScratch],
                                         kernels: OpenCLCellKernels, ones: Tensor, size: RecurrentDimensions) throws {
        let (steps, batch, inputs, hidden, gates) = (size.steps, size.batch, size.input, size.hidden, size.gates)
        let (rows, state) = (steps * batch, size.state)
        let directions = Array(zip(requests, scratch))
        // dW_ih[G, I] += dGᵀ · x
        try gemmBatched(m: gates, n: inputs, k: rows, alpha: 1, directions.map { request, scratch in
            (MatrixOperand(scratch.gateGradients, leadingDimension: gates, transposed: true),
             MatrixOperand(request.scan.input, leadingDimension: inputs),
             MatrixOperand(request.weightGradients.input, leadingDimension: inputs))
        }, beta: 1)
        if !kernels.resetsBeforeProduct {
            // dW_hh[G, P] += dGhᵀ · h̃
            try gemmBatched(m: gates, n: state, k: rows, alpha: 1, directions.map { request, scratch in
                (MatrixOperand(scratch.recurrentGateGradients, leadingDimension: gates, transposed: true),
                 MatrixOperand(request.workspace.recurrentInput, leadingDimension: state),
                 MatrixOperand(request.weightGradients.recurrent, leadingDimension: state))
            }, beta: 1)
        } else {
            for (request, scratch) in directions {
                let (gradients, workspace) = (request.weightGradients, request.workspace)
                // r, z rows: dW_h(r,z)[2H, H] += dG[:, 0 ..< 2H]ᵀ · h̃
                try gemm(m: 2 * hidden, n: hidden, k: rows, alpha: 1,
                         a: MatrixOperand(scratch.gateGradients, leadingDimension: gates, transposed: true),
                         b: MatrixOperand(workspace.recurrentInput, leadingDimension: hidden),
                         beta: 1, c: MatrixOperand(gradients.recurrent, leadingDimension: hidden))
                // n rows: dW_hn[H, H] += dG[:, 2H ..< 3H]ᵀ · (r ⊙ h̃)
                try gemm(m: hidden, n: hidden, k: rows, alpha: 1,
                         a: MatrixOperand(scratch.gateGradients, offset: 2 * hidden, leadingDimension: gates,
                                          transposed: true),
                         b: MatrixOperand(workspace.candidateRecurrent!, leadingDimension: hidden),
                         beta: 1, c: MatrixOperand(gradients.recurrent, offset: 2 * hidden * hidden,
                                                   leadingDimension: hidden))
            }
        }
        for (request, scratch) in directions {
            guard let unprojectedStates = scratch.unprojectedStates,
                  let dh = request.hiddenStateGradients ?? scratch.hiddenStateGradients else { continue }
            // dW_hr[P, H] += dhᵀ · u over all T * B rows, as the CPU's (padded rows of both are 0)
            try gemm(m: state, n: hidden, k: rows, alpha: 1,
                     a: MatrixOperand(dh, leadingDimension: state, transposed: true),
                     b: MatrixOperand(unprojectedStates, leadingDimension: hidden),
                     beta: 1, c: MatrixOperand(request.weightGradients.extra[0], leadingDimension: hidden))
        }
        let onesRow = MatrixOperand(ones, leadingDimension: rows)
        if !kernels.parameterGradientSums.isEmpty {
            try summedParameterGradients(requests, scratch, kernels: kernels, onesRow: onesRow, size: size)
        } else {
            // db_ih[1, G] += 1[1, T * B] · dG, db_hh[1, G] += 1 · dGh
            try gemmBatched(m: 1, n: gates, k: rows, alpha: 1, directions.map { request, scratch in
                (onesRow, MatrixOperand(scratch.gateGradients, leadingDimension: gates),
                 MatrixOperand(request.weightGradients.inputBias, leadingDimension: gates))
            }, beta: 1)
            try gemmBatched(m: 1, n: gates, k: rows, alpha: 1, directions.map { request, scratch in
                (onesRow, MatrixOperand(scratch.recurrentGateGradients, leadingDimension: gates),
                 MatrixOperand(request.weightGradients.recurrentBias, leadingDimension: gates))
            }, beta: 1)
        }
        // dx[T * B, I] (+)= dG · W_ih
        for (request, scratch) in directions {
            try gemm(m: rows, n: inputs, k: gates, alpha: 1, a: MatrixOperand(scratch.gateGradients, leadingDimension: gates),
                     b: MatrixOperand(request.scan.weights.input, leadingDimension: inputs),
                     beta: request.accumulateInputGradient ? 1 : 0,
                     c: MatrixOperand(request.inputGradient, leadingDimension: inputs))
        }
    }
}

extension OpenCLBackend {
    /// A row cell's parameter gradients after its backward scan: each `ParameterGradientSum` adds
    /// the sum over the B rows of its columns of `parameterGradients` to its parameter's gradient,
    /// gradient[offset H ..< (offset + count) H] += 1[1, B] · parameterGradients[:, column H ..< (column + count) H]
    /// for each direction.
    fileprivate func summedParameterGradients(_ requests: [RecurrentBackward],
                                              _ scratch: [OpenCLRecurrentGradientScratch], kernels: OpenCLCellKernels,
                                              onesRow: MatrixOperand, size: RecurrentDimensions) throws {
        let (batch, hidden) = (size.batch, size.hidden)
        let width = kernels.parameterGradientColumns * hidden
        for (request, scratch) in zip(requests, scratch) {
            guard let rowSums = scratch.parameterGradients else { continue }
            let gradients = request.weightGradients.all
            for sum in kernels.parameterGradientSums {
                let count = sum.count * hidden
                try gemm(m: 1, n: count, k: batch, alpha: 1, a: onesRow,
                         b: MatrixOperand(rowSums, offset: sum.column * hidden, leadingDimension: width),
                         beta: 1, c: MatrixOperand(gradients[sum.parameter], offset: sum.offset * hidden,
                                                   leadingDimension: count))
            }
        }
    }
}

/// The scratch of one direction's backward scan.
private struct OpenCLRecurrentGradientScratch {
    /// [T * B, G]: dG, as seen by W_ih, b_ih and x.
    let gateGradients: Tensor
    /// [T * B, G]: dGh, as seen by W_hh, b_hh and h̃; only the reset-after GRU's differs from dG
    /// (its n block is scaled by r), the other cells share dG's tensor.
    let recurrentGateGradients: Tensor
    /// [B, H]: the reset-before GRU's dq ⊙ r, the part of dh̃ through W_hn (r ⊙ h̃).
    let dhTildeReset: Tensor?
    /// [B, P]: a row cell's parameter gradients, each row summed over its steps (zeroed here).
    let parameterGradients: Tensor?
    /// A projecting cell's [B, H] dL/du of the current step and [T * B, H] every step's u (zeroed
    /// here, so padded rows stay 0), and its [T * B, P] record of dL/dh_t where the request has
    /// none: the operands of dW_hr.
    let unprojectedGradient: Tensor?
    let unprojectedStates: Tensor?
    let hiddenStateGradients: Tensor?

    /// One set per direction; the directions' dG (and dGh) share one allocation, so that a pair's
    /// weight gradients can be batched GEMMs. `recordsHiddenStateGradients[d]`: whether direction
    /// d needs its own record of dL/dh_t (a projecting cell's request without one).
    static func make(directions: Int, kernels: OpenCLCellKernels, size: RecurrentDimensions,
                     recordsHiddenStateGradients: [Bool], backend: OpenCLBackend) throws
        -> [OpenCLRecurrentGradientScratch]
    {
        let shape: Shape = [size.steps * size.batch, size.gates]
        let perDirection = { () throws -> [Tensor] in
            directions == 1 ? [try backend.zeros(shape)] : try backend.tensorsInOneAllocation([shape, shape], zeroed: true)
        }
        let gateGradients = try perDirection()
        let recurrentGateGradients = kernels.separateRecurrentGateGradients ? try perDirection() : gateGradients
        let projects = kernels.cell.projectsHiddenState
        let rows = size.steps * size.batch
        return try (0..<directions).map { d in
            OpenCLRecurrentGradientScratch(
                gateGradients: gateGradients[d], recurrentGateGradients: recurrentGateGradients[d],
                dhTildeReset: kernels.resetsBeforeProduct ? try backend.zeros([size.batch, size.hidden]) : nil,
                parameterGradients: kernels.parameterGradientColumns > 0
                    ? try backend.zeros([size.batch, kernels.parameterGradientColumns * size.hidden]) : nil,
                unprojectedGradient: projects ? try backend.zeros([size.batch, size.hidden]) : nil,
                unprojectedStates: projects ? try backend.zeros([rows, size.hidden]) : nil,
                hiddenStateGradients: projects && recordsHiddenStateGradients[d]
                    ? try backend.zeros([rows, size.state]) : nil)
        }
    }
}

/// The launch geometry of a step loop over D = 1 or 2 directions, and how its steps are launched.
private struct OpenCLRecurrentSteps {
    /// D.
    let directions: Int
    /// `[H, B, D]`, rounded up to whole `RecurrentTiling` groups by the launch.
    let globalSize: [Int]
    let localSize: [Int]

    /// Options of the program variant the kernels come from ("" for the tiled split).
    let programOptions: String
    /// Whether the kernels keep their weights in registers (`ResidentScanLayout`).
    let resident: Bool
    /// Whether a scan is one launch (see OpenCLBackend+PersistentScans) instead of one per step.
    private(set) var isPersistent = false
    /// Whether a scan is one launch of the row skeleton (Kernels/recurrent_rows.cl), whose groups
    /// never wait for each other.
    private(set) var isRowScan = false

    /// The tiled split: one work-item per (unit, sequence, direction).
    init(_ size: RecurrentDimensions, directions: Int, device: OpenCLDevice) {
        precondition((1...2).contains(directions), "a step loop runs one or two directions")
        self.directions = directions
        let tiling = RecurrentTiling(device: device)
        globalSize = [size.hidden, size.batch, directions]
        localSize = [tiling.units, tiling.rows, 1]
        programOptions = ""
        resident = false
    }

    /// The resident-weights split: `layout.groupsPerDirection` groups per direction.
    init(resident layout: ResidentScanLayout, directions: Int) {
        precondition((1...2).contains(directions), "a step loop runs one or two directions")
        self.directions = directions
        globalSize = [layout.groupsPerDirection * layout.groupSize, 1, directions]
        localSize = [layout.groupSize, 1, 1]
        programOptions = layout.buildOptions
        resident = true
    }

    /// The row split: one group of `RowScanGroup.size` work-items per (sequence, direction),
    /// all steps of a scan in one launch.
    init(rows size: RecurrentDimensions, directions: Int, device: OpenCLDevice) {
        precondition((1...2).contains(directions), "a step loop runs one or two directions")
        self.directions = directions
        let group = RowScanGroup(hidden: size.hidden, device: device)
        globalSize = [group.size, size.batch, directions]
        localSize = [group.size, 1, 1]
        programOptions = group.buildOptions
        resident = false
        isRowScan = true
    }

    /// The same split, all steps of a scan in one launch.
    func persistent() -> OpenCLRecurrentSteps {
        var plan = self
        plan.isPersistent = true
        return plan
    }

    /// Work-groups in the grid.
    var groupCount: Int {
        zip(globalSize, localSize).reduce(1) { count, sizes in count * ((sizes.0 + sizes.1 - 1) / sizes.1) }
    }

    /// Enqueues one step kernel over the `[H, B, D]` grid.
    func launch(_ program: OpenCLProgram, _ kernel: String, _ arguments: [KernelArgument]) throws {
        try program.launch(kernel, globalSize: globalSize, localSize: localSize, arguments: arguments)
    }

    /// Runs `stepCount` scan steps of the step kernel `operands` describes (see "Scans" in
    /// Kernels/common.cl) from `firstStep`, with the operands in `values` (all but the step range,
    /// the phases and the barrier state, which this sets): in one launch when `isPersistent`, else
    /// one launch per step. Returns false when the persistent launch timed out.
    /// A `phased` kernel (the reset-before GRU's) runs, per step, one launch of phase 1 and one of
    /// phase 2 (none at the backward's step -1, which has no phase 2), or both phases in the
    /// persistent launch.
    /// - Throws: `RecurError.invalidArgument` naming an operand that `values` lacks or gives with
    ///   the wrong kind, before anything is enqueued.
    func scan(_ backend: OpenCLBackend, _ program: OpenCLProgram, _ operands: StepKernelOperands,
              _ values: StepKernelArguments, firstStep: Int, stepCount: Int, phased: Bool) throws -> Bool
    {
        let kernel = operands.kernel
        let backward = kernel.hasSuffix("_bwd_step")
        var values = values
        // The barrier's state buffer; one step per launch never reaches the barrier, so leaves it
        // untouched.
        values.set("gridSync", .memory(backend.gridSync.withLock { $0.buffer.memory }))
        values.set("firstStep", .int(firstStep))
        values.set("stepCount", .int(isPersistent || isRowScan ? stepCount : 1))
        values.set("phases", .int(3))
        values.set("spinLimit", .int(isPersistent ? GridSyncBuffer.spinLimit : 0))
        var arguments = try operands.arguments(values, directions: directions)
        if isRowScan {
            try launch(program, kernel, arguments.list)
            return true
        }
        if isPersistent {
            let timedOut = try backend.withGridSync { _ in try launch(program, kernel, arguments.list) }
            backend.recordPersistentScan(timedOut: timedOut, resident: resident)
            return !timedOut
        }
        for k in 0..<stepCount {
            let s = backward ? firstStep - k : firstStep + k
            try arguments.set("firstStep", .int(s))
            let phases = !phased ? [0] : backward && s < 0 ? [1] : [1, 2]
            for phase in phases {
                if phased { try arguments.set("phases", .int(phase)) }
                try launch(program, kernel, arguments.list)
            }
        }
        return true
    }
}

/// What every step kernel of one validated scan (one direction) shares: the cell's kernels, the
/// order of its steps, and the arguments of the optional operands.
private struct OpenCLRecurrentScan {
    let cell: RecurrentCell
    let kernels: OpenCLCellKernels
    let steps: Int
    let reverse: Bool
    /// The sequence lengths (the placeholder without), and whether there are lengths; `prePadding`
    /// is 1 for pre padding.
    let lengths: Tensor
    let hasLengths: Bool
    let prePadding: Bool
    /// The recurrent dropout mask (the placeholder without), and whether there is one.
    let mask: Tensor
    let hasMask: Bool
    /// +infinity without a clip, so the clip is a plain comparison in the kernels.
    let cellClip: Float
    /// Stands in for an absent optional buffer; the kernels never read it (its flag is 0).
    let placeholder: Tensor
    /// The scan's optional operands that the kernels index.
    let tensors: [Tensor]

    init(_ scan: RecurrentScan, _ size: RecurrentDimensions, backend: OpenCLBackend, operation: String) throws {
        cell = scan.cell
        kernels = try OpenCLCellKernels.of(scan.cell)
        steps = size.steps
        reverse = scan.reverse
        placeholder = scan.initialHidden
        if let lengths = scan.lengths {
            try Self.checkLengths(lengths, steps: size.steps, backend: backend, operation: operation)
        }
        lengths = scan.lengths ?? placeholder
        hasLengths = scan.lengths != nil
        prePadding = scan.lengths != nil && scan.padding == .pre
        mask = scan.recurrentDropoutMask ?? placeholder
        hasMask = scan.recurrentDropoutMask != nil
        cellClip = scan.cellClip ?? .infinity
        tensors = [scan.input, scan.initialHidden, scan.weights.input, scan.weights.recurrent]
            + [scan.initialCell, scan.lengths, scan.recurrentDropoutMask].compactMap { $0 } + scan.weights.extra
    }

    /// The operands that the forward and the backward step kernels of `scans` (one scan, or a
    /// pair, which share sizes, cell, lengths and clip) both take, by name: from the scans, their
    /// requests and their workspaces (gates: the forward's input projections and gate values).
    static func arguments(_ scans: [OpenCLRecurrentScan], _ size: RecurrentDimensions, _ requests: [RecurrentScan],
                          _ workspaces: [RecurrentWorkspace]) -> StepKernelArguments {
        var values = StepKernelArguments()
        values.set("recurrentWeights", eachTensor: requests.map(\.weights.recurrent))
        values.set("inputBias", eachTensor: requests.map(\.weights.inputBias))
        values.set("recurrentBias", eachTensor: requests.map(\.weights.recurrentBias))
        // The cell's own parameters, under the names its kernels give them.
        for (index, name) in scans[0].kernels.parameterOperands.enumerated() {
            values.set(name, eachTensor: requests.map { request in
                request.weights.extra.indices.contains(index) ? request.weights.extra[index] : nil
            })
        }
        values.set("hInitial", eachTensor: requests.map(\.initialHidden))
        values.set("cInitial", eachTensor: requests.map(\.initialCell))
        values.set("gates", eachTensor: workspaces.map(\.gates))
        values.set("recurrentInput", eachTensor: workspaces.map(\.recurrentInput))
        values.set("cellStates", eachTensor: workspaces.map(\.cellStates))
        values.set("hiddenStates", eachTensor: workspaces.map(\.hiddenStates))
        values.set("candidateRecurrent", eachTensor: workspaces.map(\.candidateRecurrent))
        values.set("batch", .int(size.batch))
        values.set("hidden", .int(size.hidden))
        values.set("state", .int(size.state))
        values.set("steps", .int(size.steps))
        values.set("reverse", each: scans.map { .int($0.reverse ? 1 : 0) })
        values.set("cellClip", .float(scans[0].cellClip))
        values.set("lengths", .tensor(scans[0].lengths))
        values.set("hasLengths", .int(scans[0].hasLengths ? 1 : 0))
        values.set("prePadding", .int(scans[0].prePadding ? 1 : 0))
        values.set("mask", eachTensor: scans.map(\.mask))
        values.set("hasMask", each: scans.map { .int($0.hasMask ? 1 : 0) })
        for (name, value) in scans[0].kernels.constants { values.set(name, .int(value)) }
        return values
    }

    /// The time index of scan step s, or -1 for a step outside the scan (before its first step or
    /// after its last), the kernels' mark for "none".
    func time(ofStep s: Int) -> Int {
        guard s >= 0, s < steps else { return -1 }
        return reverse ? steps - 1 - s : s
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
