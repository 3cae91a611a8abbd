import Dispatch

// The reference recurrent ops: one layer, one direction, the whole sequence per call.
//
// Shape legend: T time steps, B batch, I input features, H hidden units, G = gates * H.
// Sequences are time-major, so row (t, b) of a `[T, B, F]` buffer is row t * B + b of `[T * B, F]`.
//
// Factoring (cell → layer): each cell has a forward step and a backward step, a fused pointwise
// pass over one time step's `[B, H]` units; `forward()` and `backward()` scan time around them with
// one recurrent GEMM per step, and hoist everything that does not depend on the recurrence out of
// the loop as GEMMs over all T * B rows: the input projection before the forward scan, the weight
// gradients and dL/dx after the backward scan. Nothing is allocated inside the time loops.
// The stack (layers, directions, dropout between layers) lives in `RecurrentLayer`.

extension CPUBackend {
    public func recurrentForward(_ request: RecurrentForward) throws {
        let size = try checkRecurrentForward(request)
        let scan = try CPURecurrentScan(request.scan, size, backend: self, operation: "recurrentForward")
        let stepProducts = try zeros([size.batch, size.gates])  // [B, G]
        // W_hhᵀ [H, G] packed once for every step's h̃ · W_hhᵀ.
        let (recurrentWeights, packed) = try packTransposed(scan.wHH, rows: size.gates, columns: size.hidden)
        // W_ihᵀ [I, G] packed for the input projection of all steps.
        let (inputWeights, packedInput) = try packTransposed(scan.wIH, rows: size.gates, columns: size.input)
        // The reset-before GRU's W_hnᵀ [H, H] (rows 2H ..< 3H of W_hh), for its second product per step.
        let (candidateWeights, packedCandidate) = request.scan.cell == .gruResetBefore
            ? try packTransposed(scan.wHH + 2 * size.hidden * size.hidden, rows: size.hidden, columns: size.hidden)
            : (recurrentWeights, packed)
        let pass = CPURecurrentForward(
            scan: scan,
            workspace: CPURecurrentWorkspace(request.workspace),
            output: request.output.tensor.hostFloats + request.output.offset,
            outputStride: request.output.leadingDimension,
            h: request.finalHidden.hostFloats,
            c: request.finalCell?.hostFloats,
            stepProducts: stepProducts.hostFloats,
            recurrentWeights: recurrentWeights,
            inputWeights: inputWeights,
            candidateWeights: candidateWeights)
        // The pass holds raw pointers: keep the scratch tensors alive until it is done.
        withExtendedLifetime([stepProducts, packed, packedInput, packedCandidate]) { withSubnormalsFlushed { pass.run() } }
    }

    public func recurrentBackward(_ request: RecurrentBackward) throws {
        let size = try checkRecurrentBackward(request)
        let scan = try CPURecurrentScan(request.scan, size, backend: self, operation: "recurrentBackward")
        let rows = size.steps * size.batch
        // Every row is written by its step, a padded one with zeros, before the GEMMs read it.
        let gateGradients = try uninitialized([rows, size.gates], dtype: .float32)  // [T * B, G]
        // Only the reset-after GRU differs on the recurrent side (its n block is scaled by r).
        let recurrentGateGradients = request.scan.cell == .gru
            ? try uninitialized([rows, size.gates], dtype: .float32) : gateGradients
        let dhTilde = try zeros([size.batch, size.hidden])  // [B, H]
        let dq = try zeros([size.batch, size.hidden])  // [B, H]
        // W_hh [G, H] with padded rows for every step's dGh · W_hh.
        let (recurrentWeights, packed) = try pack(scan.wHH, rows: size.gates, columns: size.hidden)
        // W_ih [G, I] with padded rows for dL/dx.
        let (inputWeights, packedInput) = try pack(scan.wIH, rows: size.gates, columns: size.input)
        let gradients = request.weightGradients
        let pass = CPURecurrentBackward(
            scan: scan,
            workspace: CPURecurrentWorkspace(request.workspace),
            outputGradient: request.outputGradient.map { $0.tensor.hostFloats + $0.offset },
            outputGradientStride: request.outputGradient?.leadingDimension ?? 0,
            dh: request.initialHiddenGradient.hostFloats,
            dc: request.initialCellGradient?.hostFloats,
            dhTilde: dhTilde.hostFloats,
            dq: dq.hostFloats,
            dG: gateGradients.hostFloats,
            dGh: recurrentGateGradients.hostFloats,
            dx: request.inputGradient.hostFloats,
            accumulateInputGradient: request.accumulateInputGradient,
            dWih: gradients.input.hostFloats,
            dWhh: gradients.recurrent.hostFloats,
            dbih: gradients.inputBias.hostFloats,
            dbhh: gradients.recurrentBias.hostFloats,
            hiddenStateGradients: request.hiddenStateGradients?.hostFloats,
            recurrentWeights: recurrentWeights,
            inputWeights: inputWeights)
        withExtendedLifetime([gateGradients, recurrentGateGradients, dhTilde, dq, packed, packedInput]) {
            withSubnormalsFlushed {
                pass.run(finalHiddenGradient: request.finalHiddenGradient?.hostFloats,
                         finalCellGradient: request.finalCellGradient?.hostFloats)
            }
        }
    }
}

/// The read-only side of a validated scan as host pointers, plus each sequence's valid range.
private struct CPURecurrentScan {
    let cell: RecurrentCell
    let steps: Int, batch: Int, input: Int, hidden: Int, gates: Int
    let reverse: Bool
    /// x: [T, B, I]
    let x: UnsafeMutablePointer<Float>
    /// W_ih: [G, I], W_hh: [G, H], b_ih: [G], b_hh: [G]
    let wIH: UnsafeMutablePointer<Float>, wHH: UnsafeMutablePointer<Float>
    let bIH: UnsafeMutablePointer<Float>, bHH: UnsafeMutablePointer<Float>
    /// b_ih + b_hh: [G]; the n block of a GRU keeps the two apart.
    let biasSum: UnsafeMutablePointer<Float>
    /// h0, c0: [B, H]
    let h0: UnsafeMutablePointer<Float>, c0: UnsafeMutablePointer<Float>?
    /// m: [B, H], all ones without recurrent dropout, so the step loops never branch on it.
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
            let ones = try backend.zeros([size.batch, size.hidden])
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
private struct CPURecurrentWorkspace {
    /// [T, B, G]
    let gates: UnsafeMutablePointer<Float>
    /// [T, B, H]
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
private struct CPURecurrentForward {
    let scan: CPURecurrentScan
    let workspace: CPURecurrentWorkspace
    /// Row (t, b) of the output view starts at output + (t * B + b) * outputStride.
    let output: UnsafeMutablePointer<Float>
    let outputStride: Int
    /// h, c: [B, H], the state after the latest step; h_n and c_n when the scan ends.
    let h: UnsafeMutablePointer<Float>
    let c: UnsafeMutablePointer<Float>?
    /// W_hh h̃ for the current step: [B, G]
    let stepProducts: UnsafeMutablePointer<Float>
    /// W_hhᵀ [H, G], packed.
    let recurrentWeights: CPUPackedOperand
    /// W_ihᵀ [I, G], packed.
    let inputWeights: CPUPackedOperand
    /// W_hnᵀ [H, H], packed: the reset-before GRU's candidate block (else unused).
    let candidateWeights: CPUPackedOperand

    func run() {
        let (t, b, i, h, g) = (scan.steps, scan.batch, scan.input, scan.hidden, scan.gates)
        // Input projections of every step at once: gates[T * B, G] = x[T * B, I] · W_ihᵀ, the
        // T * B rows split across the cores. The step passes add the biases and the recurrent part,
        // then apply the nonlinearities in place.
        forEachPart(rows: t * b, work: t * b * g * i, scan) { rows in
            withSubnormalsFlushed {
                let first = rows.lowerBound
                stepProduct(rows: rows.count, n: g, k: i, a: scan.x + first * i, lda: i, b: inputWeights,
                            c: workspace.gates + first * g, ldc: g, accumulate: false)
            }
        }
        if self.h != scan.h0 { self.h.update(from: scan.h0, count: b * h) }
        if let c, let c0 = scan.c0, c != c0 { c.update(from: c0, count: b * h) }
        // h̃ of the first step; each later one is written by the step before it.
        let first = workspace.recurrentInput + scan.time(ofStep: 0) * b * h
        for k in 0..<(b * h) { first[k] = self.h[k] * scan.mask[k] }

        // Sequences are independent: each part of the batch runs the whole scan on its own rows.
        forEachBatchPart(scan) { rows in
            withSubnormalsFlushed { scanRows(rows) }
        }
    }

    /// The time loop over batch rows `rows`, which reads and writes only those rows of every buffer.
    private func scanRows(_ rows: Range<Int>) {
        let (t, b, h, g) = (scan.steps, scan.batch, scan.hidden, scan.gates)
        let (first, count) = (rows.lowerBound, rows.count)
        let products = stepProducts + first * g  // [rows, G]
        for s in 0..<t {
            let time = scan.time(ofStep: s)
            let next = s + 1 < t ? scan.time(ofStep: s + 1) : nil
            let recurrentInput = workspace.recurrentInput + (time * b + first) * h  // [rows, H]
            switch scan.cell {
            case .rnnTanh, .rnnRelu, .lstm, .gru:
                // stepProducts[rows, G] = h̃[rows, H] · W_hhᵀ
                stepProduct(rows: count, n: g, k: h, a: recurrentInput, lda: h, b: recurrentWeights,
                            c: products, ldc: g, accumulate: false)
            case .gruResetBefore:
                // r and z blocks only: stepProducts[rows, 0 ..< 2H] = h̃ · W_h(r,z)ᵀ
                stepProduct(rows: count, n: 2 * h, k: h, a: recurrentInput, lda: h, b: recurrentWeights,
                            c: products, ldc: g, accumulate: false)
            }
            switch scan.cell {
            case .rnnTanh: simpleStep(time: time, next: next, relu: false, rows: rows)
            case .rnnRelu: simpleStep(time: time, next: next, relu: true, rows: rows)
            case .lstm: lstmStep(time: time, next: next, rows: rows)
            case .gru: gruStep(time: time, next: next, rows: rows)
            case .gruResetBefore:
                gruResetGates(time: time, rows: rows)
                // n block: stepProducts[rows, 2H ..< 3H] = (r ⊙ h̃)[rows, H] · W_hnᵀ
                let resetHidden = workspace.candidateRecurrent! + (time * b + first) * h
                stepProduct(rows: count, n: h, k: h, a: resetHidden, lda: h, b: candidateWeights,
                            c: products + 2 * h, ldc: g, accumulate: false)
                gruResetBeforeCandidate(time: time, next: next, rows: rows)
            }
        }
    }

    /// The shared tail of every step for sequence b: the new state goes to the output row and,
    /// times the mask, to the next step's h̃ (padded steps write 0 and carry h).
    @inline(__always)
    private func emit(row b: Int, time: Int, next: Int?, valid: Bool) {
        let hidden = scan.hidden
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

    /// Lanes k ..< k + count of x W_ihᵀ + h̃ W_hhᵀ + b, from the row's three addends.
    @inline(__always)
    private func preactivation(_ gate: UnsafeMutablePointer<Float>, _ product: UnsafeMutablePointer<Float>,
                               _ bias: UnsafeMutablePointer<Float>, _ k: Int, _ count: Int) -> CPULanes {
        (gate + k).loadLanes(count) + (product + k).loadLanes(count) + (bias + k).loadLanes(count)
    }

    // The step loops below run over a row's H units a lane vector at a time (`CPULanes`).

    /// h_t = act(x W_ihᵀ + b_ih + h̃ W_hhᵀ + b_hh); gates holds h_t.
    private func simpleStep(time: Int, next: Int?, relu: Bool, rows: Range<Int>) {
        let (hidden, gates) = (scan.hidden, scan.gates)
        forEachRow(rows) { b in
            let valid = scan.isValid(b, atTime: time)
            let gate = workspace.gates + (time * scan.batch + b) * gates  // [G], G = H
            if valid {
                let product = stepProducts + b * gates
                let state = h + b * hidden
                @_transparent
                func chunk(_ j: Int, _ n: Int) {
                    let a = preactivation(gate, product, scan.biasSum, j, n)
                    let y = relu ? a.replacing(with: 0, where: a .< 0) : CPUMath.tanh(a)
                    (gate + j).storeLanes(y, n)
                    (state + j).storeLanes(y, n)
                }
                forEachLaneChunk(hidden, chunk)
            } else {
                gate.update(repeating: 0, count: gates)
            }
            emit(row: b, time: time, next: next, valid: valid)
        }
    }

    /// i, f, g, o = σ, σ, tanh, σ of (x W_ihᵀ + h̃ W_hhᵀ + b); c_t = clip(f c + i g); h_t = o tanh(c_t).
    private func lstmStep(time: Int, next: Int?, rows: Range<Int>) {
        let (hidden, gates, clip) = (scan.hidden, scan.gates, scan.clip)
        let c = self.c!
        forEachRow(rows) { b in
            let valid = scan.isValid(b, atTime: time)
            let row = time * scan.batch + b
            let gate = workspace.gates + row * gates  // [4H]: i, f, g, o
            let cell = c + b * hidden
            if valid {
                let product = stepProducts + b * gates
                let state = h + b * hidden
                let bias = scan.biasSum
                @_transparent
                func chunk(_ j: Int, _ n: Int) {
                    let i = CPUMath.sigmoid(preactivation(gate, product, bias, j, n))
                    let f = CPUMath.sigmoid(preactivation(gate, product, bias, hidden + j, n))
                    let g = CPUMath.tanh(preactivation(gate, product, bias, 2 * hidden + j, n))
                    let o = CPUMath.sigmoid(preactivation(gate, product, bias, 3 * hidden + j, n))
                    let unclipped = f * (cell + j).loadLanes(n) + i * g
                    let cNew = unclipped.replacing(with: clip, where: unclipped .> clip)
                        .replacing(with: -clip, where: unclipped .< -clip)
                    (gate + j).storeLanes(i, n)
                    (gate + hidden + j).storeLanes(f, n)
                    (gate + 2 * hidden + j).storeLanes(g, n)
                    (gate + 3 * hidden + j).storeLanes(o, n)
                    (cell + j).storeLanes(cNew, n)
                    (state + j).storeLanes(o * CPUMath.tanh(cNew), n)
                }
                forEachLaneChunk(hidden, chunk)
            } else {
                gate.update(repeating: 0, count: gates)
            }
            (workspace.cellStates! + row * hidden).update(from: cell, count: hidden)
            emit(row: b, time: time, next: next, valid: valid)
        }
    }

    /// r, z = σ(x W_ihᵀ + h̃ W_hhᵀ + b); hn = h̃ W_hnᵀ + b_hn; n = tanh(x W_inᵀ + b_in + r hn);
    /// h_t = (1 - z) n + z h.
    private func gruStep(time: Int, next: Int?, rows: Range<Int>) {
        let (hidden, gates) = (scan.hidden, scan.gates)
        forEachRow(rows) { b in
            let valid = scan.isValid(b, atTime: time)
            let row = time * scan.batch + b
            let gate = workspace.gates + row * gates  // [3H]: r, z, n
            let candidate = workspace.candidateRecurrent! + row * hidden  // [H]: W_hn h̃ + b_hn
            let state = h + b * hidden
            if valid {
                let product = stepProducts + b * gates
                let bias = scan.biasSum
                @_transparent
                func chunk(_ j: Int, _ n: Int) {
                    let r = CPUMath.sigmoid(preactivation(gate, product, bias, j, n))
                    let z = CPUMath.sigmoid(preactivation(gate, product, bias, hidden + j, n))
                    let hn = (product + 2 * hidden + j).loadLanes(n) + (scan.bHH + 2 * hidden + j).loadLanes(n)
                    let input = (gate + 2 * hidden + j).loadLanes(n) + (scan.bIH + 2 * hidden + j).loadLanes(n)
                    let candidateState = CPUMath.tanh(input + r * hn)
                    let previous = (state + j).loadLanes(n)
                    (gate + j).storeLanes(r, n)
                    (gate + hidden + j).storeLanes(z, n)
                    (gate + 2 * hidden + j).storeLanes(candidateState, n)
                    (candidate + j).storeLanes(hn, n)
                    (state + j).storeLanes(candidateState + z * (previous - candidateState), n)
                }
                forEachLaneChunk(hidden, chunk)
            } else {
                gate.update(repeating: 0, count: gates)
                candidate.update(repeating: 0, count: hidden)
            }
            (workspace.hiddenStates! + row * hidden).update(from: state, count: hidden)
            emit(row: b, time: time, next: next, valid: valid)
        }
    }

    /// First half of a reset-before GRU step: r, z, and r ⊙ h̃ (the operand of W_hn).
    private func gruResetGates(time: Int, rows: Range<Int>) {
        let (hidden, gates) = (scan.hidden, scan.gates)
        forEachRow(rows) { b in
            let row = time * scan.batch + b
            let gate = workspace.gates + row * gates  // [3H]: r, z, n
            let resetHidden = workspace.candidateRecurrent! + row * hidden  // [H]: r ⊙ h̃
            guard scan.isValid(b, atTime: time) else {
                resetHidden.update(repeating: 0, count: hidden)
                return
            }
            let product = stepProducts + b * gates
            let recurrentInput = workspace.recurrentInput + row * hidden
            let bias = scan.biasSum
            @_transparent
            func chunk(_ j: Int, _ n: Int) {
                let r = CPUMath.sigmoid(preactivation(gate, product, bias, j, n))
                (gate + j).storeLanes(r, n)
                (gate + hidden + j).storeLanes(CPUMath.sigmoid(preactivation(gate, product, bias, hidden + j, n)), n)
                (resetHidden + j).storeLanes(r * (recurrentInput + j).loadLanes(n), n)
            }
            forEachLaneChunk(hidden, chunk)
        }
    }

    /// Second half: n = tanh(x W_inᵀ + b_in + (r ⊙ h̃) W_hnᵀ + b_hn); h_t = (1 - z) n + z h.
    private func gruResetBeforeCandidate(time: Int, next: Int?, rows: Range<Int>) {
        let (hidden, gates) = (scan.hidden, scan.gates)
        forEachRow(rows) { b in
            let valid = scan.isValid(b, atTime: time)
            let row = time * scan.batch + b
            let gate = workspace.gates + row * gates
            let state = h + b * hidden
            if valid {
                let product = stepProducts + b * gates
                let bias = scan.biasSum
                @_transparent
                func chunk(_ j: Int, _ n: Int) {
                    let z = (gate + hidden + j).loadLanes(n)
                    let candidateState = CPUMath.tanh(preactivation(gate, product, bias, 2 * hidden + j, n))
                    let previous = (state + j).loadLanes(n)
                    (gate + 2 * hidden + j).storeLanes(candidateState, n)
                    (state + j).storeLanes(candidateState + z * (previous - candidateState), n)
                }
                forEachLaneChunk(hidden, chunk)
            } else {
                gate.update(repeating: 0, count: gates)
            }
            (workspace.hiddenStates! + row * hidden).update(from: state, count: hidden)
            emit(row: b, time: time, next: next, valid: valid)
        }
    }
}

// MARK: Backward

/// One backward scan, from the last scan step to the first. Per step: a fused pass turns dL/dh_t
/// (and dL/dc_t) into the gate gradients of that step, then one GEMM takes them through W_hh.
private struct CPURecurrentBackward {
    let scan: CPURecurrentScan
    let workspace: CPURecurrentWorkspace
    /// Row (t, b) of dL/d output starts at outputGradient + (t * B + b) * outputGradientStride.
    let outputGradient: UnsafeMutablePointer<Float>?
    let outputGradientStride: Int
    /// dh: [B, H], dL/dh_t except what reaches h_t through the next step's h̃; ends as dL/dh0.
    let dh: UnsafeMutablePointer<Float>
    /// dc: [B, H], dL/dc_t for LSTM; ends as dL/dc0.
    let dc: UnsafeMutablePointer<Float>?
    /// dh̃: [B, H], dL/dh̃ of the step after this one (the part of dL/dh_t through W_hh, before ⊙ m).
    let dhTilde: UnsafeMutablePointer<Float>
    /// dq: [B, H], reset-before GRU only: dL/d(r ⊙ h̃).
    let dq: UnsafeMutablePointer<Float>
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
    /// [T, B, H], optional: receives each step's total dL/dh_t (0 at padded steps).
    let hiddenStateGradients: UnsafeMutablePointer<Float>?
    /// W_hh [G, H], packed.
    let recurrentWeights: CPUPackedOperand
    /// W_ih [G, I], packed.
    let inputWeights: CPUPackedOperand

    func run(finalHiddenGradient: UnsafeMutablePointer<Float>?, finalCellGradient: UnsafeMutablePointer<Float>?) {
        let (t, b, i, h, g) = (scan.steps, scan.batch, scan.input, scan.hidden, scan.gates)
        let rows = t * b
        if let finalHiddenGradient {
            dh.update(from: finalHiddenGradient, count: b * h)
        } else {
            dh.update(repeating: 0, count: b * h)
        }
        if let dc {
            if let finalCellGradient {
                dc.update(from: finalCellGradient, count: b * h)
            } else {
                dc.update(repeating: 0, count: b * h)
            }
        }
        dhTilde.update(repeating: 0, count: b * h)

        // Sequences are independent: each part of the batch runs the whole scan on its own rows.
        forEachBatchPart(scan) { rows in
            withSubnormalsFlushed { scanRows(rows) }
        }
        // h̃ of the first step is h0 ⊙ m.
        for k in 0..<(b * h) { dh[k] += dhTilde[k] * scan.mask[k] }

        // Everything that does not depend on the recurrence, over all T * B rows at once.
        // dW_ih[G, I] += dGᵀ · x
        accumulateWeightGradient(m: g, n: i, rows: rows, dG, g, scan.x, dWih)
        switch scan.cell {
        case .rnnTanh, .rnnRelu, .lstm, .gru:
            // dW_hh[G, H] += dGhᵀ · h̃
            accumulateWeightGradient(m: g, n: h, rows: rows, dGh, g, workspace.recurrentInput, dWhh)
        case .gruResetBefore:
            // r, z rows: dW_h(r,z)[2H, H] += dG[:, 0 ..< 2H]ᵀ · h̃; n rows: dW_hn += dG[:, 2H ..< 3H]ᵀ · (r ⊙ h̃)
            accumulateWeightGradient(m: 2 * h, n: h, rows: rows, dG, g, workspace.recurrentInput, dWhh)
            accumulateWeightGradient(m: h, n: h, rows: rows, dG + 2 * h, g, workspace.candidateRecurrent!,
                                     dWhh + 2 * h * h)
        }
        // db_ih[G] += Σ_rows dG, db_hh[G] += Σ_rows dGh
        for row in 0..<rows {
            let (x, y) = (dG + row * g, dGh + row * g)
            for k in 0..<g {
                dbih[k] += x[k]
                dbhh[k] += y[k]
            }
        }
        // dx[T * B, I] (+)= dG · W_ih, the T * B rows split across the cores.
        forEachPart(rows: rows, work: rows * g * i, scan) { part in
            withSubnormalsFlushed {
                let first = part.lowerBound
                stepProduct(rows: part.count, n: i, k: g, a: dG + first * g, lda: g, b: inputWeights,
                            c: dx + first * i, ldc: i, accumulate: accumulateInputGradient)
            }
        }
    }

    /// The time loop over batch rows `rows`, from the last scan step to the first; it reads and
    /// writes only those rows of every buffer.
    private func scanRows(_ rows: Range<Int>) {
        let (t, b, h, g) = (scan.steps, scan.batch, scan.hidden, scan.gates)
        let (first, count) = (rows.lowerBound, rows.count)
        let through = dhTilde + first * h  // [rows, H]
        for s in stride(from: t - 1, through: 0, by: -1) {
            let time = scan.time(ofStep: s)
            let previous = s > 0 ? scan.time(ofStep: s - 1) : nil
            let stepRows = (time * b + first) * g  // row (time, first) of dG and dGh
            switch scan.cell {
            case .rnnTanh: simpleStep(time: time, relu: false, rows: rows)
            case .rnnRelu: simpleStep(time: time, relu: true, rows: rows)
            case .lstm: lstmStep(time: time, previous: previous, rows: rows)
            case .gru: gruStep(time: time, previous: previous, rows: rows)
            case .gruResetBefore:
                gruResetBeforeCandidate(time: time, previous: previous, rows: rows)
                // dq[rows, H] = dG[rows, 2H ..< 3H] · W_hn   (differentiates the n block's W_hn (r ⊙ h̃))
                stepProduct(rows: count, n: h, k: h, a: dG + stepRows + 2 * h, lda: g,
                            b: recurrentWeights.droppingRows(2 * h),
                            c: dq + first * h, ldc: h, accumulate: false)
                gruResetGates(time: time, rows: rows)
            }
            switch scan.cell {
            case .rnnTanh, .rnnRelu, .lstm, .gru:
                // dh̃[rows, H] = dGh[rows, G] · W_hh   (differentiates h̃ W_hhᵀ)
                stepProduct(rows: count, n: h, k: g, a: dGh + stepRows, lda: g, b: recurrentWeights,
                            c: through, ldc: h, accumulate: false)
            case .gruResetBefore:
                // dh̃ (holding dq ⊙ r) += dG[rows, 0 ..< 2H] · W_h(r,z)
                stepProduct(rows: count, n: h, k: 2 * h, a: dG + stepRows, lda: g, b: recurrentWeights,
                            c: through, ldc: h, accumulate: true)
            }
        }
    }

    /// c[m, n] += a[rows, m]ᵀ · x[rows, n] (a's rows `lda` apart, x's and c's dense): the register-
    /// tiled product with C's rows split across the cores in whole lane vectors for narrow x, else
    /// BLAS. BLAS packs both operands of every call, and with K = T * B and N = 32 that costs as
    /// much as the product; for wide x its packed kernel wins.
    private func accumulateWeightGradient(m: Int, n: Int, rows: Int, _ a: UnsafeMutablePointer<Float>, _ lda: Int,
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

    /// dL/dh_t of sequence b into `total` [H]: the carried part, the part through the next step's
    /// h̃ (times the mask), and the output gradient where the step is valid. Also records it in
    /// `hiddenStateGradients` when asked (0 at a padded step).
    @inline(__always)
    private func totalHiddenGradient(row b: Int, time: Int, valid: Bool, into total: UnsafeMutablePointer<Float>) {
        let hidden = scan.hidden
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

    /// Differentiates h_t = act(a): da = dh ⊙ act'(a), read from h_t (kept in gates).
    private func simpleStep(time: Int, relu: Bool, rows: Range<Int>) {
        let (hidden, gates) = (scan.hidden, scan.gates)
        forEachRow(rows) { b in
            let valid = scan.isValid(b, atTime: time)
            let total = dh + b * hidden
            totalHiddenGradient(row: b, time: time, valid: valid, into: total)
            guard valid else { return }  // h_t = h_{t-1}: the gradient passes unchanged
            let row = time * scan.batch + b
            let (y, da) = (workspace.gates + row * gates, dG + row * gates)
            @_transparent
            func chunk(_ j: Int, _ n: Int) {
                let value = (y + j).loadLanes(n)
                let slope = relu ? CPULanes(repeating: 0).replacing(with: 1, where: value .> 0) : 1 - value * value
                (da + j).storeLanes((total + j).loadLanes(n) * slope, n)
                (total + j).storeLanes(CPULanes(), n)  // h_{t-1} reaches h_t only through h̃
            }
            forEachLaneChunk(hidden, chunk)
        }
    }

    /// Differentiates the LSTM step: with dh the total dL/dh_t and tc = tanh(c_t),
    /// do = dh tc; dc_t += dh o (1 - tc²), zeroed where the clip was active;
    /// di = dc_t g, df = dc_t c_{t-1}, dg = dc_t i, dc_{t-1} = dc_t f; then through σ' and tanh'.
    private func lstmStep(time: Int, previous: Int?, rows: Range<Int>) {
        let (hidden, gates, clip) = (scan.hidden, scan.gates, scan.clip)
        let cellStates = workspace.cellStates!
        forEachRow(rows) { b in
            let valid = scan.isValid(b, atTime: time)
            let total = dh + b * hidden
            totalHiddenGradient(row: b, time: time, valid: valid, into: total)
            guard valid else { return }  // (h, c) carried: both gradients pass unchanged
            let row = time * scan.batch + b
            let gate = workspace.gates + row * gates
            let da = dG + row * gates
            let cell = cellStates + row * hidden
            let cellBefore = previous.map { cellStates + ($0 * scan.batch + b) * hidden } ?? scan.c0! + b * hidden
            let dcRow = dc! + b * hidden
            @_transparent
            func chunk(_ j: Int, _ n: Int) {
                let i = (gate + j).loadLanes(n)
                let f = (gate + hidden + j).loadLanes(n)
                let g = (gate + 2 * hidden + j).loadLanes(n)
                let o = (gate + 3 * hidden + j).loadLanes(n)
                let before = (cellBefore + j).loadLanes(n)
                let dhNow = (total + j).loadLanes(n)
                let tc = CPUMath.tanh((cell + j).loadLanes(n))
                // The clip's gradient: 1 strictly inside (-clip, clip), else 0.
                let inside = CPUMath.magnitude(f * before + i * g) .< clip
                let dcNow = ((dcRow + j).loadLanes(n) + dhNow * o * (1 - tc * tc)).replacing(with: 0, where: .!inside)
                (da + j).storeLanes(dcNow * g * i * (1 - i), n)
                (da + hidden + j).storeLanes(dcNow * before * f * (1 - f), n)
                (da + 2 * hidden + j).storeLanes(dcNow * i * (1 - g * g), n)
                (da + 3 * hidden + j).storeLanes(dhNow * tc * o * (1 - o), n)
                (dcRow + j).storeLanes(dcNow * f, n)
                (total + j).storeLanes(CPULanes(), n)
            }
            forEachLaneChunk(hidden, chunk)
        }
    }

    /// Differentiates the reset-after GRU step: dn = dh (1 - z), dz = dh (h - n), dh_{t-1} += dh z;
    /// da_n = dn (1 - n²); dr = da_n hn; the recurrent side sees r ⊙ da_n for the n block.
    private func gruStep(time: Int, previous: Int?, rows: Range<Int>) {
        let (hidden, gates) = (scan.hidden, scan.gates)
        forEachRow(rows) { b in
            let valid = scan.isValid(b, atTime: time)
            let total = dh + b * hidden
            totalHiddenGradient(row: b, time: time, valid: valid, into: total)
            guard valid else { return }
            let row = time * scan.batch + b
            let gate = workspace.gates + row * gates
            let (da, daRecurrent) = (dG + row * gates, dGh + row * gates)
            let candidate = workspace.candidateRecurrent! + row * hidden
            let before = hiddenBefore(row: b, previous: previous)
            @_transparent
            func chunk(_ j: Int, _ n: Int) {
                let r = (gate + j).loadLanes(n)
                let z = (gate + hidden + j).loadLanes(n)
                let candidateState = (gate + 2 * hidden + j).loadLanes(n)
                let dhNow = (total + j).loadLanes(n)
                let dn = dhNow * (1 - z) * (1 - candidateState * candidateState)
                let dz = dhNow * ((before + j).loadLanes(n) - candidateState) * z * (1 - z)
                let dr = dn * (candidate + j).loadLanes(n) * r * (1 - r)
                (da + j).storeLanes(dr, n)
                (da + hidden + j).storeLanes(dz, n)
                (da + 2 * hidden + j).storeLanes(dn, n)
                (daRecurrent + j).storeLanes(dr, n)
                (daRecurrent + hidden + j).storeLanes(dz, n)
                (daRecurrent + 2 * hidden + j).storeLanes(dn * r, n)
                (total + j).storeLanes(dhNow * z, n)
            }
            forEachLaneChunk(hidden, chunk)
        }
    }

    /// First half of a reset-before GRU backward step (differentiates `gruResetBeforeCandidate`):
    /// da_n and da_z into dG, dh_{t-1} = dh z.
    private func gruResetBeforeCandidate(time: Int, previous: Int?, rows: Range<Int>) {
        let (hidden, gates) = (scan.hidden, scan.gates)
        forEachRow(rows) { b in
            let valid = scan.isValid(b, atTime: time)
            let total = dh + b * hidden
            totalHiddenGradient(row: b, time: time, valid: valid, into: total)
            guard valid else { return }
            let row = time * scan.batch + b
            let gate = workspace.gates + row * gates
            let da = dG + row * gates
            let before = hiddenBefore(row: b, previous: previous)
            for j in 0..<hidden {
                let (z, n) = (gate[hidden + j], gate[2 * hidden + j])
                da[hidden + j] = total[j] * (before[j] - n) * z * (1 - z)
                da[2 * hidden + j] = total[j] * (1 - z) * (1 - n * n)
                total[j] *= z
            }
        }
    }

    /// Second half (differentiates `gruResetGates`): with dq = dL/d(r ⊙ h̃),
    /// da_r = dq h̃ r (1 - r) into dG, and dh̃ starts as dq r (the r and z blocks are added by GEMM).
    private func gruResetGates(time: Int, rows: Range<Int>) {
        let (hidden, gates) = (scan.hidden, scan.gates)
        forEachRow(rows) { b in
            let through = dhTilde + b * hidden
            guard scan.isValid(b, atTime: time) else {
                through.update(repeating: 0, count: hidden)
                return
            }
            let row = time * scan.batch + b
            let gate = workspace.gates + row * gates
            let recurrentInput = workspace.recurrentInput + row * hidden
            let (da, q) = (dG + row * gates, dq + b * hidden)
            for j in 0..<hidden {
                let r = gate[j]
                da[j] = q[j] * recurrentInput[j] * r * (1 - r)
                through[j] = q[j] * r
            }
        }
    }

    /// h_{t-1} of sequence b without dropout: the state the previous scan step left, or h0.
    @inline(__always)
    private func hiddenBefore(row b: Int, previous: Int?) -> UnsafeMutablePointer<Float> {
        if let previous {
            return workspace.hiddenStates! + (previous * scan.batch + b) * scan.hidden
        }
        return scan.h0 + b * scan.hidden
    }
}

// MARK: Rows of a step, parts of the batch

/// Runs `body(b)` for every batch row in `rows`: a step's pointwise pass over one part's rows.
@inline(__always)
private func forEachRow(_ rows: Range<Int>, _ body: (_ row: Int) -> Void) {
    for b in rows { body(b) }
}

/// Multiply-adds of a scan's recurrent products (B G H per step over T steps) from which its batch
/// is split over the cores. Each part then runs the whole time loop on its own rows with no
/// synchronisation per step, so the only cost is starting the threads once per scan (tens of
/// microseconds); below this the scan takes about as long.
let defaultScanSplitMinimumWork = 1 << 22

/// Runs `body(rows)` for the parts of the batch, each a run of whole register tiles of rows (the
/// last part takes the remainder), one part per core when the scan is large enough and the batch
/// has a tile for each. Every part reads and writes only its own rows of every buffer; the call
/// returns when all parts are done.
private func forEachBatchPart(_ scan: CPURecurrentScan, _ body: (_ rows: Range<Int>) -> Void) {
    forEachPart(rows: scan.batch, work: scan.steps * scan.batch * scan.gates * scan.hidden, scan, body)
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
    let bounds = (0...parts).map { part in part == parts ? count : tiles * part / parts * granularity }
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
