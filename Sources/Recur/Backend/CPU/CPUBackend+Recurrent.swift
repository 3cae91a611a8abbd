import Dispatch

// The fast CPU recurrent ops: one layer, one direction, the whole sequence per call. This file is
// the one scan skeleton every cell shares; each cell's fused steps (`CPURecurrentSteps`) live in
// its file under `Cells/`, next to its plain float64 reference, which this code is tested against.
//
// Shape legend: T time steps, B batch, I input features, H hidden units, G = gates * H, P the width
// of h (the projection size of a cell that projects h, else H): h, h̃, the output, the dropout
// mask and their gradients are P wide, c and the gates H.
// Sequences are time-major, so row (t, b) of a `[T, B, F]` buffer is row t * B + b of `[T * B, F]`.
//
// Factoring (cell → layer): each cell has a forward step and a backward step, a fused pointwise
// pass over one time step's `[B, H]` units; the scans below run time around them with one
// recurrent GEMM per step, and hoist everything that does not depend on the recurrence out of the
// loop as GEMMs over all T * B rows: the input projection before the forward scan, the weight
// gradients and dL/dx after the backward scan. Nothing is allocated inside the time loops.
// The scans are generic over the cell's steps, so the compiler specialises one copy per cell and
// the per-element code is what a hand-written loop per cell would be.
// The stack (layers, directions, dropout between layers) lives in `RecurrentLayer`.

extension CPUBackend {
    public func recurrentForward(_ request: RecurrentForward) throws {
        let size = try checkRecurrentForward(request)
        let scan = try CPURecurrentScan(request.scan, size, backend: self, operation: "recurrentForward")
        let stepProducts = try zeros([size.batch, size.gates])  // [B, G]
        let weights = request.scan.weights
        // W_hhᵀ [P, G] packed once for every step's h̃ · W_hhᵀ.
        let (recurrentWeights, packed) = try keptPack(weights.recurrent, kind: "W_hh transposed", request.scan) {
            try packTransposed(scan.wHH, rows: size.gates, columns: size.state)
        }
        // W_ihᵀ [I, G] packed for the input projection of all steps.
        let (inputWeights, packedInput) = try keptPack(weights.input, kind: "W_ih transposed", request.scan) {
            try packTransposed(scan.wIH, rows: size.gates, columns: size.input)
        }
        // The reset-before GRU's W_hnᵀ [H, H] (rows 2H ..< 3H of W_hh), for its second product per step.
        let (candidateWeights, packedCandidate) = request.scan.cell.cpu.multipliesCandidateBlockSeparately
            ? try keptPack(weights.recurrent, kind: "W_hn transposed", request.scan) {
                try packTransposed(scan.wHH + 2 * size.hidden * size.hidden, rows: size.hidden, columns: size.hidden)
            }
            : (recurrentWeights, packed)
        // A projecting cell's W_hrᵀ [H, P], u [B, H] and W_hr u [B, P] of the current step.
        let projection = request.scan.cell.projectsHiddenState
            ? try ProjectionScratch(forward: scan, backend: self) : nil
        let runningRows = try zeros([size.batch], dtype: .int32)  // [B]
        let places = try CPUValidPlaces(scan, backend: self)
        let pass = CPURecurrentForward(
            scan: scan,
            workspace: CPURecurrentWorkspace(request.workspace),
            output: request.output.tensor.hostFloats + request.output.offset,
            outputStride: request.output.leadingDimension,
            h: request.finalHidden.hostFloats,
            c: request.finalCell?.hostFloats,
            stepProducts: stepProducts.hostFloats,
            runningRows: runningRows.hostInt32s,
            places: places,
            recurrentWeights: recurrentWeights,
            inputWeights: inputWeights,
            candidateWeights: candidateWeights,
            projection: projection?.operands)
        // The pass holds raw pointers: keep the scratch tensors alive until it is done.
        withExtendedLifetime([stepProducts, runningRows, packed, packedInput, packedCandidate]
                             + places.storage + (projection?.storage ?? [])) {
            withSubnormalsFlushed { pass.run(request.scan.cell.cpu) }
        }
    }

    public func recurrentBackward(_ request: RecurrentBackward) throws {
        let size = try checkRecurrentBackward(request)
        let scan = try CPURecurrentScan(request.scan, size, backend: self, operation: "recurrentBackward")
        let rows = size.steps * size.batch
        // Every row is written by its step, a padded one with zeros, before the GEMMs read it.
        let gateGradients = try uninitialized([rows, size.gates], dtype: .float32)  // [T * B, G]
        // Only a cell whose recurrent side sees other gate gradients needs a second buffer.
        let recurrentGateGradients = request.scan.cell.hasSeparateRecurrentGateGradients
            ? try uninitialized([rows, size.gates], dtype: .float32) : gateGradients
        let dhTilde = try zeros([size.batch, size.state])  // [B, P]
        let dq = try zeros([size.batch, size.hidden])  // [B, H]
        // W_hh [G, P] with padded rows for every step's dGh · W_hh.
        let (recurrentWeights, packed) = try keptPack(request.scan.weights.recurrent, kind: "W_hh", request.scan) {
            try pack(scan.wHH, rows: size.gates, columns: size.state)
        }
        // W_ih [G, I] with padded rows for dL/dx.
        let (inputWeights, packedInput) = try keptPack(request.scan.weights.input, kind: "W_ih", request.scan) {
            try pack(scan.wIH, rows: size.gates, columns: size.input)
        }
        let gradients = request.weightGradients
        // A projecting cell's W_hr [P, H], dL/du [B, H], every step's u [T * B, H], and the
        // recorded dL/dh_t [T * B, P] when the request does not ask for them.
        let projection = request.scan.cell.projectsHiddenState
            ? try ProjectionScratch(backward: scan, recordsHiddenStateGradients: request.hiddenStateGradients == nil,
                                    backend: self) : nil
        let runningRows = try zeros([size.batch], dtype: .int32)  // [B]
        let places = try CPUValidPlaces(scan, backend: self)
        // The valid rows of dG (dGh), x and h̃, gathered for the weight gradients.
        let compact = try places.list.map { _ in
            try CompactRowsScratch(scan, count: places.count, separateRecurrentGateGradients: gateGradients !== recurrentGateGradients,
                                   backend: self)
        }
        let pass = CPURecurrentBackward(
            scan: scan,
            workspace: CPURecurrentWorkspace(request.workspace),
            outputGradient: request.outputGradient.map { $0.tensor.hostFloats + $0.offset },
            outputGradientStride: request.outputGradient?.leadingDimension ?? 0,
            dh: request.initialHiddenGradient.hostFloats,
            dc: request.initialCellGradient?.hostFloats,
            dhTilde: dhTilde.hostFloats,
            dq: dq.hostFloats,
            runningRows: runningRows.hostInt32s,
            places: places,
            compact: compact?.rows,
            dG: gateGradients.hostFloats,
            dGh: recurrentGateGradients.hostFloats,
            dx: request.inputGradient.hostFloats,
            accumulateInputGradient: request.accumulateInputGradient,
            dWih: gradients.input.hostFloats,
            dWhh: gradients.recurrent.hostFloats,
            dbih: gradients.inputBias.hostFloats,
            dbhh: gradients.recurrentBias.hostFloats,
            dExtra: gradients.extra.map(\.hostFloats),
            hiddenStateGradients: request.hiddenStateGradients?.hostFloats ?? projection?.hiddenStateGradients,
            recurrentWeights: recurrentWeights,
            inputWeights: inputWeights,
            projection: projection?.operands)
        withExtendedLifetime([gateGradients, recurrentGateGradients, dhTilde, dq, runningRows, packed, packedInput]
                             + places.storage + (compact?.storage ?? []) + (projection?.storage ?? [])) {
            withSubnormalsFlushed {
                pass.run(request.scan.cell.cpu, finalHiddenGradient: request.finalHiddenGradient?.hostFloats,
                         finalCellGradient: request.finalCellGradient?.hostFloats)
            }
        }
    }
}

/// The read-only side of a validated scan as host pointers, plus each sequence's valid range.
struct CPURecurrentScan {
    let cell: RecurrentCell
    let steps: Int, batch: Int, input: Int, hidden: Int, gates: Int
    /// P, the width of h: H unless the cell projects h.
    let state: Int
    let reverse: Bool
    /// x: [T, B, I]
    let x: UnsafeMutablePointer<Float>
    /// W_ih: [G, I], W_hh: [G, H], b_ih: [G], b_hh: [G]
    let wIH: UnsafeMutablePointer<Float>, wHH: UnsafeMutablePointer<Float>
    let bIH: UnsafeMutablePointer<Float>, bHH: UnsafeMutablePointer<Float>
    /// The cell's own parameters after the four (`RecurrentWeights.extra`), in its order.
    let extra: [UnsafeMutablePointer<Float>]
    /// b_ih + b_hh: [G]; the n block of a GRU keeps the two apart.
    let biasSum: UnsafeMutablePointer<Float>
    /// h0: [B, P], c0: [B, H]
    let h0: UnsafeMutablePointer<Float>, c0: UnsafeMutablePointer<Float>?
    /// m: [B, P], all ones without recurrent dropout, so the step loops never branch on it.
    let mask: UnsafeMutablePointer<Float>
    /// +infinity without a clip, so the clip is a branch-free min/max.
    let clip: Float
    /// Sequence b is valid at time steps firstValid[b] ..< endValid[b].
    let firstValid: [Int], endValid: [Int]
    /// The backend's `scanSplitMinimumWork` and `scanPartLimit`.
    let splitMinimumWork: Int, partLimit: Int
    /// Owns `biasSum` and the default mask for the lifetime of the scan.
    private let storage: [Tensor]

    init(_ scan: RecurrentScan, _ size: RecurrentDimensions, backend: CPUBackend, operation: String) throws {
        (cell, reverse) = (scan.cell, scan.reverse)
        (steps, batch, input, hidden, gates) = (size.steps, size.batch, size.input, size.hidden, size.gates)
        state = size.state
        let (t, b) = (size.steps, size.batch)
        if let lengths = scan.lengths {
            let values = lengths.hostInt32s
            try backend.checkRecurrentLengths(operation, UnsafeBufferPointer(start: values, count: b), steps: t)
            let counts = (0..<b).map { Int(values[$0]) }
            firstValid = counts.map { scan.padding == .post ? 0 : t - $0 }
            endValid = counts.map { scan.padding == .post ? $0 : t }
        } else {
            firstValid = Array(repeating: 0, count: b)
            endValid = Array(repeating: t, count: b)
        }
        x = scan.input.hostFloats
        wIH = scan.weights.input.hostFloats
        wHH = scan.weights.recurrent.hostFloats
        bIH = scan.weights.inputBias.hostFloats
        bHH = scan.weights.recurrentBias.hostFloats
        extra = scan.weights.extra.map(\.hostFloats)
        h0 = scan.initialHidden.hostFloats
        c0 = scan.initialCell?.hostFloats
        clip = scan.cellClip ?? .infinity
        (splitMinimumWork, partLimit) = (backend.scanSplitMinimumWork, backend.scanPartLimit)

        let sum = try backend.zeros([size.gates])
        biasSum = sum.hostFloats
        for g in 0..<size.gates { biasSum[g] = bIH[g] + bHH[g] }
        var storage = [sum]
        if let given = scan.recurrentDropoutMask {
            mask = given.hostFloats
        } else {
            let ones = try backend.zeros([size.batch, size.state])
            ones.hostFloats.update(repeating: 1, count: ones.count)
            mask = ones.hostFloats
            storage.append(ones)
        }
        self.storage = storage
    }

    /// The time index of scan step s.
    @inline(__always)
    func time(ofStep s: Int) -> Int { reverse ? steps - 1 - s : s }

    @inline(__always)
    func isValid(_ b: Int, atTime t: Int) -> Bool { t >= firstValid[b] && t < endValid[b] }
}

/// Host pointers into a validated `RecurrentWorkspace`.
struct CPURecurrentWorkspace {
    /// [T, B, G]
    let gates: UnsafeMutablePointer<Float>
    /// [T, B, P]
    let recurrentInput: UnsafeMutablePointer<Float>
    /// [T, B, H] each, present for the cells that use them.
    let cellStates: UnsafeMutablePointer<Float>?
    let hiddenStates: UnsafeMutablePointer<Float>?
    let candidateRecurrent: UnsafeMutablePointer<Float>?

    init(_ workspace: RecurrentWorkspace) {
        gates = workspace.gates.hostFloats
        recurrentInput = workspace.recurrentInput.hostFloats
        cellStates = workspace.cellStates?.hostFloats
        hiddenStates = workspace.hiddenStates?.hostFloats
        candidateRecurrent = workspace.candidateRecurrent?.hostFloats
    }
}

// MARK: Forward

/// One forward scan. The running state lives in the caller's h_n / c_n buffers.
struct CPURecurrentForward {
    let scan: CPURecurrentScan
    let workspace: CPURecurrentWorkspace
    /// Row (t, b) of the output view starts at output + (t * B + b) * outputStride.
    let output: UnsafeMutablePointer<Float>
    let outputStride: Int
    /// h [B, P], c [B, H]: the state after the latest step; h_n and c_n when the scan ends.
    let h: UnsafeMutablePointer<Float>
    let c: UnsafeMutablePointer<Float>?
    /// W_hh h̃ for the current step: [B, G]
    let stepProducts: UnsafeMutablePointer<Float>
    /// [B]: scratch for the rows of the current step that are not padding (see
    /// `CPURunningRows`); a part writes only the slots of its own rows.
    let runningRows: UnsafeMutablePointer<Int32>
    /// The rows of [T * B, ·] buffers that are not padding.
    let places: CPUValidPlaces
    /// W_hhᵀ [P, G], packed.
    let recurrentWeights: CPUPackedOperand
    /// W_ihᵀ [I, G], packed.
    let inputWeights: CPUPackedOperand
    /// W_hnᵀ [H, H], packed, for a cell that multiplies its candidate block separately (else unused).
    let candidateWeights: CPUPackedOperand
    /// A projecting cell's operands (see `CPURecurrentProjection`); nil for the others.
    let projection: CPURecurrentProjection?

    func run<Cell: CPURecurrentSteps>(_ cell: Cell.Type) {
        let (t, b, i, h, g) = (scan.steps, scan.batch, scan.input, scan.hidden, scan.gates)
        // Input projections of every step at once: gates[T * B, G] = x[T * B, I] · W_ihᵀ, the
        // T * B rows split across the cores. The step passes add the biases and the recurrent part,
        // then apply the nonlinearities in place.
        if let list = places.list {
            // A padded row's step writes its gates without reading them: only the valid rows.
            forEachPart(rows: places.count, work: places.count * g * i, scan) { part in
                withSubnormalsFlushed {
                    stepProduct(rows: list + part.lowerBound, count: part.count, n: g, k: i, a: scan.x, lda: i,
                                b: inputWeights, c: workspace.gates, ldc: g, accumulate: false)
                }
            }
        } else {
            forEachPart(rows: t * b, work: t * b * g * i, scan) { rows in
                withSubnormalsFlushed {
                    let first = rows.lowerBound
                    stepProduct(rows: rows.count, n: g, k: i, a: scan.x + first * i, lda: i, b: inputWeights,
                                c: workspace.gates + first * g, ldc: g, accumulate: false)
                }
            }
        }
        let p = scan.state
        if self.h != scan.h0 { self.h.update(from: scan.h0, count: b * p) }
        if let c, let c0 = scan.c0, c != c0 { c.update(from: c0, count: b * h) }
        // h̃ of the first step; each later one is written by the step before it.
        let first = workspace.recurrentInput + scan.time(ofStep: 0) * b * p
        for k in 0..<(b * p) { first[k] = self.h[k] * scan.mask[k] }

        // Sequences are independent: each part of the batch runs the whole scan on its own rows.
        forEachBatchPart(scan) { rows in
            withSubnormalsFlushed { scanRows(rows, cell) }
        }
    }

    /// The time loop over batch rows `rows`, which reads and writes only those rows of every buffer.
    private func scanRows<Cell: CPURecurrentSteps>(_ rows: Range<Int>, _ cell: Cell.Type) {
        let t = scan.steps
        for s in 0..<t {
            let time = scan.time(ofStep: s)
            let next = s + 1 < t ? scan.time(ofStep: s + 1) : nil
            Cell.forwardProducts(self, time: time, rows: rows)
            if Cell.projectsHiddenState {
                // h_t of the rows is one product of their pointwise results: all steps first.
                for b in rows { Cell.forwardStep(self, row: b, time: time, valid: scan.isValid(b, atTime: time)) }
                Cell.forwardProjection(self, time: time, rows: rows)
                for b in rows { emit(row: b, time: time, next: next, valid: scan.isValid(b, atTime: time)) }
                continue
            }
            for b in rows {
                let valid = scan.isValid(b, atTime: time)
                Cell.forwardStep(self, row: b, time: time, valid: valid)
                emit(row: b, time: time, next: next, valid: valid)
            }
        }
    }

    /// The recurrent product of a step for the cells that need one GEMM per step:
    /// stepProducts[rows, G] = h̃[rows, P] · W_hhᵀ, for the rows valid at `time` only: a padded
    /// row's step reads no product (it carries its state).
    @inline(__always)
    func recurrentProduct(time: Int, rows: Range<Int>) {
        let (b, h, g) = (scan.batch, scan.state, scan.gates)
        let recurrentInput = workspace.recurrentInput + time * b * h  // [B, P]
        let running = CPURunningRows(scan, time: time, rows: rows, into: runningRows)
        if running.count == rows.count {
            stepProduct(rows: rows.count, n: g, k: h, a: recurrentInput + rows.lowerBound * h, lda: h,
                        b: recurrentWeights, c: stepProducts + rows.lowerBound * g, ldc: g, accumulate: false)
        } else {
            stepProduct(rows: running.indices, count: running.count, n: g, k: h, a: recurrentInput, lda: h,
                        b: recurrentWeights, c: stepProducts, ldc: g, accumulate: false)
        }
    }

    /// The shared tail of every step for sequence b: the new state goes to the output row and,
    /// times the mask, to the next step's h̃ (padded steps write 0 and carry h).
    @inline(__always)
    private func emit(row b: Int, time: Int, next: Int?, valid: Bool) {
        let hidden = scan.state
        let state = h + b * hidden
        let out = output + (time * scan.batch + b) * outputStride
        if valid {
            out.update(from: state, count: hidden)
        } else {
            out.update(repeating: 0, count: hidden)
        }
        if let next {
            let target = workspace.recurrentInput + (next * scan.batch + b) * hidden
            let mask = scan.mask + b * hidden
            for j in 0..<hidden { target[j] = state[j] * mask[j] }
        }
    }

    // The cells' steps run over a row's H units a lane vector at a time (`CPULanes`).

    /// Lanes k ..< k + count of x W_ihᵀ + h̃ W_hhᵀ + b, from the row's three addends.
    @inline(__always)
    func preactivation(_ gate: UnsafeMutablePointer<Float>, _ product: UnsafeMutablePointer<Float>,
                       _ bias: UnsafeMutablePointer<Float>, _ k: Int, _ count: Int) -> CPULanes {
        (gate + k).loadLanes(count) + (product + k).loadLanes(count) + (bias + k).loadLanes(count)
    }
}

// MARK: Backward

/// One backward scan, from the last scan step to the first. Per step: a fused pass turns dL/dh_t
/// (and dL/dc_t) into the gate gradients of that step, then one GEMM takes them through W_hh.
struct CPURecurrentBackward {
    let scan: CPURecurrentScan
    let workspace: CPURecurrentWorkspace
    /// Row (t, b) of dL/d output starts at outputGradient + (t * B + b) * outputGradientStride.
    let outputGradient: UnsafeMutablePointer<Float>?
    let outputGradientStride: Int
    /// dh: [B, P], dL/dh_t except what reaches h_t through the next step's h̃; ends as dL/dh0.
    let dh: UnsafeMutablePointer<Float>
    /// dc: [B, H], dL/dc_t for LSTM; ends as dL/dc0.
    let dc: UnsafeMutablePointer<Float>?
    /// dh̃: [B, P], dL/dh̃ of the step after this one (the part of dL/dh_t through W_hh, before ⊙ m).
    let dhTilde: UnsafeMutablePointer<Float>
    /// dq: [B, H], scratch for a cell's second recurrent product (the reset-before GRU's dL/d(r ⊙ h̃)).
    let dq: UnsafeMutablePointer<Float>
    /// [B]: scratch for the rows of the current step that are not padding (see `CPURunningRows`).
    let runningRows: UnsafeMutablePointer<Int32>
    /// The rows of [T * B, ·] buffers that are not padding.
    let places: CPUValidPlaces
    /// Where the valid rows of dG, dGh, x and h̃ are gathered for the weight gradients; nil
    /// without padding.
    let compact: CPUCompactRows?
    /// dG: [T, B, G], dL/d(gate pre-activations) as seen by W_ih, b_ih and x.
    let dG: UnsafeMutablePointer<Float>
    /// dGh: [T, B, G], the same as seen by W_hh, b_hh and h̃; equal to dG except for the
    /// reset-after GRU, whose n block is r ⊙ dL/da_n.
    let dGh: UnsafeMutablePointer<Float>
    /// dx: [T, B, I]
    let dx: UnsafeMutablePointer<Float>
    let accumulateInputGradient: Bool
    /// dW_ih: [G, I], dW_hh: [G, H], db_ih, db_hh: [G]; all accumulated.
    let dWih: UnsafeMutablePointer<Float>, dWhh: UnsafeMutablePointer<Float>
    let dbih: UnsafeMutablePointer<Float>, dbhh: UnsafeMutablePointer<Float>
    /// The gradients of the cell's own parameters (`RecurrentWeights.extra`); accumulated.
    let dExtra: [UnsafeMutablePointer<Float>]
    /// [T, B, P], optional: receives each step's total dL/dh_t (0 at padded steps). Always
    /// present for a projecting cell, whose dW_hr reads it after the scan.
    let hiddenStateGradients: UnsafeMutablePointer<Float>?
    /// W_hh [G, P], packed.
    let recurrentWeights: CPUPackedOperand
    /// W_ih [G, I], packed.
    let inputWeights: CPUPackedOperand
    /// A projecting cell's operands (see `CPURecurrentProjection`); nil for the others.
    let projection: CPURecurrentProjection?

    func run<Cell: CPURecurrentSteps>(_ cell: Cell.Type, finalHiddenGradient: UnsafeMutablePointer<Float>?,
                                       finalCellGradient: UnsafeMutablePointer<Float>?) {
        let (t, b, i, h, g) = (scan.steps, scan.batch, scan.input, scan.hidden, scan.gates)
        let (rows, p) = (t * b, scan.state)
        if let finalHiddenGradient {
            dh.update(from: finalHiddenGradient, count: b * p)
        } else {
            dh.update(repeating: 0, count: b * p)
        }
        if let dc {
            if let finalCellGradient {
                dc.update(from: finalCellGradient, count: b * h)
            } else {
                dc.update(repeating: 0, count: b * h)
            }
        }
        dhTilde.update(repeating: 0, count: b * p)

        if Cell.accumulatesParameterGradientsInSteps {
            // The steps add into shared gradients: one part, so no two threads write them.
            withSubnormalsFlushed { scanRows(0..<b, cell) }
        } else {
            // Sequences are independent: each part of the batch runs the whole scan on its own rows.
            forEachBatchPart(scan) { rows in
                withSubnormalsFlushed { scanRows(rows, cell) }
            }
        }
        // h̃ of the first step is h0 ⊙ m.
        for k in 0..<(b * p) { dh[k] += dhTilde[k] * scan.mask[k] }

        // Everything that does not depend on the recurrence, over all T * B rows at once.
        // dW_ih[G, I] += dGᵀ · x, over the valid rows only where there is padding (a padded
        // row's dG is 0).
        if let compact, let list = places.list {
            compact.gather(self, list, count: places.count)
            accumulateWeightGradient(m: g, n: i, rows: places.count, compact.dG, g, compact.x, dWih)
        } else {
            accumulateWeightGradient(m: g, n: i, rows: rows, dG, g, scan.x, dWih)
        }
        Cell.accumulateRecurrentWeightGradient(self)
        // db_ih[G] += Σ_rows dG, db_hh[G] += Σ_rows dGh
        for row in 0..<rows where !Cell.accumulatesParameterGradientsInSteps {
            let (x, y) = (dG + row * g, dGh + row * g)
            for k in 0..<g {
                dbih[k] += x[k]
                dbhh[k] += y[k]
            }
        }
        // dx[T * B, I] (+)= dG · W_ih, the T * B rows split across the cores.
        guard let list = places.list else {
            forEachPart(rows: rows, work: rows * g * i, scan) { part in
                withSubnormalsFlushed {
                    let first = part.lowerBound
                    stepProduct(rows: part.count, n: i, k: g, a: dG + first * g, lda: g, b: inputWeights,
                                c: dx + first * i, ldc: i, accumulate: accumulateInputGradient)
                }
            }
            return
        }
        // A padded row's dG is 0: its dx is 0, or unchanged when accumulating.
        forEachPart(rows: places.count, work: places.count * g * i, scan) { part in
            withSubnormalsFlushed {
                stepProduct(rows: list + part.lowerBound, count: part.count, n: i, k: g, a: dG, lda: g,
                            b: inputWeights, c: dx, ldc: i, accumulate: accumulateInputGradient)
            }
        }
        if !accumulateInputGradient {
            for row in 0..<rows where !scan.isValid(row % b, atTime: row / b) {
                (dx + row * i).update(repeating: 0, count: i)
            }
        }
    }

    /// The time loop over batch rows `rows`, from the last scan step to the first; it reads and
    /// writes only those rows of every buffer.
    private func scanRows<Cell: CPURecurrentSteps>(_ rows: Range<Int>, _ cell: Cell.Type) {
        let (t, h) = (scan.steps, scan.state)
        for s in stride(from: t - 1, through: 0, by: -1) {
            let time = scan.time(ofStep: s)
            let previous = s > 0 ? scan.time(ofStep: s - 1) : nil
            if Cell.projectsHiddenState {
                // The rows' dL/du is one product of their dL/dh_t: every total first.
                for b in rows {
                    totalHiddenGradient(row: b, time: time, valid: scan.isValid(b, atTime: time), into: dh + b * h)
                }
                Cell.backwardProjection(self, time: time, rows: rows)
                for b in rows where scan.isValid(b, atTime: time) {
                    Cell.backwardStep(self, row: b, time: time, previous: previous, total: dh + b * h)
                }
                Cell.backwardProducts(self, time: time, rows: rows)
                continue
            }
            for b in rows {
                let valid = scan.isValid(b, atTime: time)
                let total = dh + b * h
                totalHiddenGradient(row: b, time: time, valid: valid, into: total)
                // A padded step carries (h, c): their gradients pass unchanged.
                guard valid else { continue }
                Cell.backwardStep(self, row: b, time: time, previous: previous, total: total)
            }
            Cell.backwardProducts(self, time: time, rows: rows)
        }
    }

    /// dh̃[rows, P] = dGh[rows, G] · W_hh (differentiates h̃ W_hhᵀ) for the step at `time`: the
    /// recurrent product of a backward step for the cells with one GEMM per step. A padded row's
    /// dGh is 0, so its dh̃ is 0 without a product.
    @inline(__always)
    func recurrentProduct(time: Int, rows: Range<Int>) {
        let (b, h, g) = (scan.batch, scan.state, scan.gates)
        let running = CPURunningRows(scan, time: time, rows: rows, into: runningRows)
        if running.count == rows.count {
            let first = rows.lowerBound
            stepProduct(rows: rows.count, n: h, k: g, a: dGh + (time * b + first) * g, lda: g, b: recurrentWeights,
                        c: dhTilde + first * h, ldc: h, accumulate: false)
            return
        }
        for row in rows where !scan.isValid(row, atTime: time) {
            (dhTilde + row * h).update(repeating: 0, count: h)
        }
        stepProduct(rows: running.indices, count: running.count, n: h, k: g, a: dGh + time * b * g, lda: g,
                    b: recurrentWeights, c: dhTilde, ldc: h, accumulate: false)
    }

    /// c[m, n] += a[rows, m]ᵀ · x[rows, n] (a's rows `lda` apart, x's and c's dense): the register-
    /// tiled product with C's rows split across the cores in whole lane vectors for narrow x, else
    /// BLAS. BLAS packs both operands of every call, and with K = T * B and N = 32 that costs as
    /// much as the product; for wide x its packed kernel wins.
    func accumulateWeightGradient(m: Int, n: Int, rows: Int, _ a: UnsafeMutablePointer<Float>, _ lda: Int,
                                          _ x: UnsafeMutablePointer<Float>, _ c: UnsafeMutablePointer<Float>) {
        guard n <= weightGradientProductMaximumColumns else {
            splitSGEMM(transposeA: true, transposeB: false, m: m, n: n, k: rows, alpha: 1, a, lda, x, n, beta: 1, c, n,
                       minimumWork: scan.splitMinimumWork, partLimit: scan.partLimit)
            return
        }
        forEachPart(rows: m, granularity: CPULanes.scalarCount, work: rows * m * n, scan) { part in
            withSubnormalsFlushed {
                weightGradientProduct(part: part, m: m, n: n, rows: rows, a: a, lda: lda, x: x, ldx: n, c: c, ldc: n)
            }
        }
    }

    /// dL/dh_t of sequence b into `total` [P]: the carried part, the part through the next step's
    /// h̃ (times the mask), and the output gradient where the step is valid. Also records it in
    /// `hiddenStateGradients` when asked (0 at a padded step).
    @inline(__always)
    private func totalHiddenGradient(row b: Int, time: Int, valid: Bool, into total: UnsafeMutablePointer<Float>) {
        let hidden = scan.state
        let (carried, through, mask) = (dh + b * hidden, dhTilde + b * hidden, scan.mask + b * hidden)
        for j in 0..<hidden { total[j] = carried[j] + through[j] * mask[j] }
        if !valid {
            // A padded step's gate gradients are 0 (dG and dGh start uninitialized, and the GEMMs
            // after the scan read every row).
            let row = time * scan.batch + b
            (dG + row * scan.gates).update(repeating: 0, count: scan.gates)
            if dGh != dG { (dGh + row * scan.gates).update(repeating: 0, count: scan.gates) }
        }
        if valid, let outputGradient {
            let upstream = outputGradient + (time * scan.batch + b) * outputGradientStride
            for j in 0..<hidden { total[j] += upstream[j] }
        }
        if let hiddenStateGradients {
            let recorded = hiddenStateGradients + (time * scan.batch + b) * hidden
            if valid {
                recorded.update(from: total, count: hidden)
            } else {
                recorded.update(repeating: 0, count: hidden)
            }
        }
    }

    /// h_{t-1} of sequence b without dropout: the state the previous scan step left, or h0.
    @inline(__always)
    func hiddenBefore(row b: Int, previous: Int?) -> UnsafeMutablePointer<Float> {
        if let previous {
            return workspace.hiddenStates! + (previous * scan.batch + b) * scan.hidden
        }
        return scan.h0 + b * scan.hidden
    }
}

// MARK: Parts of the batch

/// Multiply-adds of a scan's recurrent products (B G H per step over T steps) from which its batch
/// is split over the cores. Each part then runs the whole time loop on its own rows with no
/// synchronisation per step, so the only cost is starting the threads once per scan (tens of
/// microseconds); below this the scan takes about as long.
let defaultScanSplitMinimumWork = 1 << 22

/// Runs `body(rows)` for the parts of the batch, one part per core when the scan is large enough
/// and the batch has a register tile of rows for each. Every part reads and writes only its own
/// rows of every buffer; the call returns when all parts are done.
///
/// Sequences of one length: each part a run of whole tiles (the last takes the remainder). Else
/// the parts get about equal numbers of valid (step, sequence) places, since a step multiplies
/// only its valid rows (`CPURunningRows`): equal numbers of rows left one core waiting for the
/// other by up to a quarter of the scan with G2P's batches.
private func forEachBatchPart(_ scan: CPURecurrentScan, _ body: (_ rows: Range<Int>) -> Void) {
    let work = scan.steps * scan.batch * scan.gates * scan.hidden
    let validSteps = (0..<scan.batch).map { scan.endValid[$0] - scan.firstValid[$0] }
    guard let longest = validSteps.max(), validSteps.contains(where: { $0 != longest }) else {
        forEachPart(rows: scan.batch, work: work, scan, body)
        return
    }
    let parts = work >= scan.splitMinimumWork ? min(scan.partLimit, scan.batch / stepProductTileRows) : 1
    guard parts > 1 else {
        body(0..<scan.batch)
        return
    }
    // A padded place still costs its pointwise pass, about a tenth of a valid one's product.
    let weights = validSteps.map { 10 * $0 + scan.steps }
    let total = weights.reduce(0, +)
    var bounds = [0]
    var (row, done) = (0, 0)
    for part in 1..<parts {
        while row < scan.batch, (done + weights[row] / 2) * parts < total * part {
            done += weights[row]
            row += 1
        }
        bounds.append(row)
    }
    bounds.append(scan.batch)
    runParts(bounds, body)
}

/// Runs `body(part)` for parts of 0 ..< rows, as `forEachBatchPart` does for a scan's batch: one
/// part per core (at most the scan's part limit) when `work` multiply-adds reach the split threshold.
/// Parts start at multiples of `granularity` (the callers' register tile or lane vector).
private func forEachPart(rows count: Int, granularity: Int = stepProductTileRows, work: Int, _ scan: CPURecurrentScan,
                         _ body: (_ rows: Range<Int>) -> Void) {
    let tiles = count / granularity
    let parts = work >= scan.splitMinimumWork ? min(scan.partLimit, tiles) : 1
    guard parts > 1 else {
        body(0..<count)
        return
    }
    runParts((0...parts).map { part in part == parts ? count : tiles * part / parts * granularity }, body)
}

/// Runs `body(bounds[p] ..< bounds[p + 1])` for every part p on the worker pool.
private func runParts(_ bounds: [Int], _ body: (_ rows: Range<Int>) -> Void) {
    let parts = bounds.count - 1
    withoutActuallyEscaping(body) { body in
        let rows = DisjointRows(body: body)
        // The floating-point mode is per thread: each part flushes subnormals itself (see the
        // callers), so the parts compute exactly what one thread would.
        CPUWorkerPool.shared.run(parts: parts) { part in
            rows.body(bounds[part]..<bounds[part + 1])
        }
    }
}

/// A scan body handed to other threads. The threads call it on disjoint rows, and every row
/// writes only its own rows of the scan's buffers, so nothing is shared mutably.
private struct DisjointRows: @unchecked Sendable {
    let body: (_ rows: Range<Int>) -> Void
}

/// The batch rows of `rows` that are valid at a time step, listed in the slots of `rows` of a
/// [B] scratch list (so parts of the batch never write each other's slots).
struct CPURunningRows {
    let indices: UnsafePointer<Int32>
    let count: Int

    @inline(__always)
    init(_ scan: CPURecurrentScan, time: Int, rows: Range<Int>, into scratch: UnsafeMutablePointer<Int32>) {
        let list = scratch + rows.lowerBound
        var count = 0
        for row in rows where scan.isValid(row, atTime: time) {
            list[count] = Int32(row)
            count += 1
        }
        (indices, self.count) = (UnsafePointer(list), count)
    }
}

/// The rows t * B + b of a scan's [T * B, ·] buffers where sequence b is valid at time t, in
/// order, for the products over all steps at once (input projection, dx, weight gradients):
/// with G2P's words about 45% of the places are padding. `list` is nil when no place is padding.
struct CPUValidPlaces {
    let list: UnsafePointer<Int32>?
    let count: Int
    /// Owns `list`.
    let storage: [Tensor]

    init(_ scan: CPURecurrentScan, backend: CPUBackend) throws {
        let valid = (0..<scan.batch).reduce(0) { $0 + scan.endValid[$1] - scan.firstValid[$1] }
        guard valid < scan.steps * scan.batch else {
            (list, count, storage) = (nil, valid, [])
            return
        }
        let tensor = try backend.zeros([max(1, valid)], dtype: .int32)  // [valid]
        let values = tensor.hostInt32s
        var count = 0
        for t in 0..<scan.steps {
            for b in 0..<scan.batch where scan.isValid(b, atTime: t) {
                values[count] = Int32(t * scan.batch + b)
                count += 1
            }
        }
        (list, self.count, storage) = (UnsafePointer(values), count, [tensor])
    }
}

/// The valid rows of a backward scan's dG [N, G], dGh [N, G], x [N, I] and h̃ [N, P], gathered
/// after the scan (N valid places) so the weight-gradient products skip the padded rows, whose
/// gate gradients are 0. Dropping those zero terms regroups the sums of the others: the results
/// differ from the full products' by float32 reassociation only.
struct CPUCompactRows {
    let dG: UnsafeMutablePointer<Float>
    /// `dG` itself when the cell has no separate recurrent gate gradients.
    let dGh: UnsafeMutablePointer<Float>
    let x: UnsafeMutablePointer<Float>
    let recurrentInput: UnsafeMutablePointer<Float>

    /// Copies the listed rows of the pass's dG, dGh, x and h̃.
    func gather(_ pass: CPURecurrentBackward, _ list: UnsafePointer<Int32>, count: Int) {
        let scan = pass.scan
        let (g, i, p) = (scan.gates, scan.input, scan.state)
        for k in 0..<count {
            let row = Int(list[k])
            (dG + k * g).update(from: pass.dG + row * g, count: g)
            if dGh != dG { (dGh + k * g).update(from: pass.dGh + row * g, count: g) }
            (x + k * i).update(from: scan.x + row * i, count: i)
            (recurrentInput + k * p).update(from: pass.workspace.recurrentInput + row * p, count: p)
        }
    }
}

/// The tensors behind a `CPUCompactRows`, alive as long as the op.
private struct CompactRowsScratch {
    let rows: CPUCompactRows
    let storage: [Tensor]

    init(_ scan: CPURecurrentScan, count: Int, separateRecurrentGateGradients: Bool, backend: CPUBackend) throws {
        let n = max(1, count)
        let dG = try backend.uninitialized([n, scan.gates], dtype: .float32)
        let dGh = separateRecurrentGateGradients ? try backend.uninitialized([n, scan.gates], dtype: .float32) : dG
        let x = try backend.uninitialized([n, scan.input], dtype: .float32)
        let recurrentInput = try backend.uninitialized([n, scan.state], dtype: .float32)
        rows = CPUCompactRows(dG: dG.hostFloats, dGh: dGh.hostFloats, x: x.hostFloats,
                              recurrentInput: recurrentInput.hostFloats)
        storage = [dG, dGh, x, recurrentInput]
    }
}

// MARK: The cells' steps

/// The fast CPU steps of one cell, which the scans above call once per time step; each cell's
/// file under `Cells/` implements them next to its float64 reference. A scan is generic over its
/// cell's steps, so every call below is specialised and inlined: no dynamic dispatch per element.
protocol CPURecurrentSteps: Sendable {
    /// Whether the backward steps add the bias gradients and those of the cell's own parameters
    /// themselves (their gate gradients then differ from the biases'), so the backward scan runs
    /// its batch in one part and skips its own bias sums. Default: false.
    static var accumulatesParameterGradientsInSteps: Bool { get }

    /// Whether the cell multiplies W_hn (rows 2H ..< 3H of W_hh) by its own operand, so the
    /// forward op packs that block apart (`CPURecurrentForward.candidateWeights`).
    static var multipliesCandidateBlockSeparately: Bool { get }

    /// Whether h_t is a product of the step's pointwise results (`RecurrentCell.projectsHiddenState`):
    /// the scans then run a step's pointwise passes over all its rows, then `forwardProjection`
    /// (or `backwardProjection`), then the rest. A constant per cell, so the other cells' loops
    /// are the ones they always were. Default: false.
    static var projectsHiddenState: Bool { get }

    /// A projecting cell's h[rows] of forward step `time`, after the rows' `forwardStep`s and
    /// before their outputs are emitted; valid rows only (a padded row carries h). Default: nothing.
    static func forwardProjection(_ pass: CPURecurrentForward, time: Int, rows: Range<Int>)

    /// A projecting cell's dL/d(its unprojected state) of backward step `time` from the recorded
    /// dL/dh_t of `rows` (`hiddenStateGradients`), before the rows' `backwardStep`s. Default: nothing.
    static func backwardProjection(_ pass: CPURecurrentBackward, time: Int, rows: Range<Int>)

    /// The recurrent products of forward step `time` for batch rows `rows`, before the pointwise
    /// steps of those rows. Default: stepProducts[rows, G] = h̃ · W_hhᵀ.
    static func forwardProducts(_ pass: CPURecurrentForward, time: Int, rows: Range<Int>)

    /// The fused pointwise forward step of sequence b at `time`. Valid: gates[t, b] (holding
    /// x W_ihᵀ on entry) ← the gate activations, h[b] (and c[b]) ← the new state, and whatever the
    /// workspace keeps. Padded: gates[t, b] ← 0, the state is carried. The skeleton then emits h[b].
    static func forwardStep(_ pass: CPURecurrentForward, row b: Int, time: Int, valid: Bool)

    /// The fused pointwise backward step of valid sequence b at `time`: `total` holds dL/dh_t on
    /// entry and the part of dL/dh_{t-1} that does not pass through h̃ on return; writes the gate
    /// gradients dG (and dGh) of row (t, b) and updates dc.
    static func backwardStep(_ pass: CPURecurrentBackward, row b: Int, time: Int, previous: Int?,
                             total: UnsafeMutablePointer<Float>)

    /// The recurrent products of backward step `time` for batch rows `rows`, after their pointwise
    /// steps: dh̃[rows] ← dL/dh̃. Default: dh̃ = dGh · W_hh.
    static func backwardProducts(_ pass: CPURecurrentBackward, time: Int, rows: Range<Int>)

    /// dW_hh += the gradient of every step's recurrent product, after the scan. Default:
    /// dW_hh[G, H] += dGhᵀ · h̃ over all T * B rows.
    static func accumulateRecurrentWeightGradient(_ pass: CPURecurrentBackward)
}

extension CPURecurrentSteps {
    static var multipliesCandidateBlockSeparately: Bool { false }

    static var projectsHiddenState: Bool { false }

    @inline(__always)
    static func forwardProjection(_ pass: CPURecurrentForward, time: Int, rows: Range<Int>) {}

    @inline(__always)
    static func backwardProjection(_ pass: CPURecurrentBackward, time: Int, rows: Range<Int>) {}

    static var accumulatesParameterGradientsInSteps: Bool { false }

    @inline(__always)
    static func forwardProducts(_ pass: CPURecurrentForward, time: Int, rows: Range<Int>) {
        pass.recurrentProduct(time: time, rows: rows)
    }

    @inline(__always)
    static func backwardProducts(_ pass: CPURecurrentBackward, time: Int, rows: Range<Int>) {
        pass.recurrentProduct(time: time, rows: rows)
    }

    static func accumulateRecurrentWeightGradient(_ pass: CPURecurrentBackward) {
        let (g, h) = (pass.scan.gates, pass.scan.state)
        if let compact = pass.compact {
            // Over the valid rows only (a padded row's dGh is 0).
            pass.accumulateWeightGradient(m: g, n: h, rows: pass.places.count, compact.dGh, g, compact.recurrentInput,
                                          pass.dWhh)
            return
        }
        pass.accumulateWeightGradient(m: g, n: h, rows: pass.scan.steps * pass.scan.batch, pass.dGh, g,
                                      pass.workspace.recurrentInput, pass.dWhh)
    }
}

// MARK: Projection operands

/// What the scans of a cell that projects h (h_t = W_hr u_t, u_t [H], h_t [P]) hand its steps,
/// as host pointers. The forward reads `weights` as W_hrᵀ [H, P], the backward as W_hr [P, H].
struct CPURecurrentProjection {
    /// W_hr packed for the direction's product: W_hrᵀ [H, P] forward, W_hr [P, H] backward.
    let weights: CPUPackedOperand
    /// Forward: u [B, H] of the current step. Backward: dL/du [B, H] of the current step.
    let unprojected: UnsafeMutablePointer<Float>
    /// Forward: W_hr u [B, P] of the current step, copied to h for the valid rows. Backward:
    /// every step's u [T * B, H], for dW_hr after the scan (0 at padded steps).
    let buffer: UnsafeMutablePointer<Float>
}

/// The scratch tensors behind a `CPURecurrentProjection`, alive as long as the op.
private struct ProjectionScratch {
    let operands: CPURecurrentProjection
    /// The backward's recorded dL/dh_t [T * B, P] when the request records none.
    let hiddenStateGradients: UnsafeMutablePointer<Float>?
    let storage: [Tensor]

    /// W_hrᵀ packed, u [B, H] and W_hr u [B, P].
    init(forward scan: CPURecurrentScan, backend: CPUBackend) throws {
        let (weights, packed) = try backend.packTransposed(scan.extra[0], rows: scan.state, columns: scan.hidden)
        let unprojected = try backend.zeros([scan.batch, scan.hidden])
        let projected = try backend.zeros([scan.batch, scan.state])
        operands = CPURecurrentProjection(weights: weights, unprojected: unprojected.hostFloats,
                                          buffer: projected.hostFloats)
        hiddenStateGradients = nil
        storage = [packed, unprojected, projected]
    }

    /// W_hr packed, dL/du [B, H], every step's u [T * B, H] (zeros: padded rows stay 0), and the
    /// recorded dL/dh_t when `recordsHiddenStateGradients`.
    init(backward scan: CPURecurrentScan, recordsHiddenStateGradients: Bool, backend: CPUBackend) throws {
        let (weights, packed) = try backend.pack(scan.extra[0], rows: scan.state, columns: scan.hidden)
        let unprojectedGradient = try backend.zeros([scan.batch, scan.hidden])
        let unprojectedStates = try backend.zeros([scan.steps * scan.batch, scan.hidden])
        operands = CPURecurrentProjection(weights: weights, unprojected: unprojectedGradient.hostFloats,
                                          buffer: unprojectedStates.hostFloats)
        var storage = [packed, unprojectedGradient, unprojectedStates]
        if recordsHiddenStateGradients {
            let recorded = try backend.zeros([scan.steps * scan.batch, scan.state])
            hiddenStateGradients = recorded.hostFloats
            storage.append(recorded)
        } else {
            hiddenStateGradients = nil
        }
        self.storage = storage
    }
}
