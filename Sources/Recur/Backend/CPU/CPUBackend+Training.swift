#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The CPU reference of the fused losses, optimizer steps and clipping ops: plain loops over
// float32 values, with sums accumulated in float64. The OpenCL kernels (Kernels/loss.cl,
// Kernels/optimizer.cl) follow these loops line by line.
//
// Shape legend: N elements (or rows), C classes.

extension CPUBackend {
    // MARK: Losses

    public func sigmoidCrossEntropy(logits: Tensor, targets: Tensor, weights: Tensor?, gradient: Tensor,
                                    loss: Tensor, at index: Int) throws {
        let count = try checkElementwiseLoss(
            "sigmoidCrossEntropy", input: logits, targets: targets, gradient: gradient, loss: loss, at: index)
        try checkLossWeights("sigmoidCrossEntropy", weights, count: count)
        let (x, y, dx) = (logits.hostFloats, targets.hostFloats, gradient.hostFloats)  // [N] each
        let w = weights?.hostFloats  // [N]
        // The divisor W = Σ w_i (N without weights), summed in float32 as the kernel sums it.
        var weightTotal = Float(count)
        if let w {
            weightTotal = 0
            for i in 0..<count { weightTotal += w[i] }
        }
        let inverseTotal = weightTotal > 0 ? 1 / weightTotal : 0
        var total = 0.0
        for i in 0..<count {
            let weight = w?[i] ?? 1
            // log(1 + e^x) − x y written so that no exponential overflows: for x ≥ 0 it is
            // x + log(1 + e^−x) − x y, for x < 0 it is log(1 + e^x) − x y.
            let element = max(x[i], 0) - x[i] * y[i] + log1pf(expf(-abs(x[i])))
            total += Double(weight * element)
            dx[i] = (CPUMath.sigmoid(x[i]) - y[i]) * (weight * inverseTotal)
        }
        loss.hostFloats[index] = weightTotal > 0 ? Float(total / Double(weightTotal)) : 0
    }

    public func softmaxCrossEntropy(logits: Tensor, targets: Tensor, ignoreIndex: Int32?, weights: Tensor?,
                                    gradient: Tensor, loss: Tensor, at index: Int) throws {
        let (rows, classes) = try checkSoftmaxCrossEntropy(
            logits: logits, targets: targets, gradient: gradient, loss: loss, at: index)
        try checkLossWeights("softmaxCrossEntropy", weights, count: rows)
        let labels = UnsafeBufferPointer(start: targets.hostInt32s, count: rows)  // [N]
        try checkClassTargets(Array(labels), classes: classes, ignoreIndex: ignoreIndex)
        let w = weights?.hostFloats  // [N]
        // The divisor M = Σ w_n over the kept rows (their count without weights), as the kernel
        // sums it: in float32.
        var kept: Float = 0
        for n in 0..<rows where labels[n] != ignoreIndex { kept += w?[n] ?? 1 }
        let inverseKept = kept > 0 ? 1 / kept : 0
        var total = 0.0
        for n in 0..<rows {
            let x = logits.hostFloats + n * classes  // [C]
            let dx = gradient.hostFloats + n * classes  // [C]
            let target = labels[n]
            guard target != ignoreIndex else {
                dx.update(repeating: 0, count: classes)
                continue
            }
            let weight = w?[n] ?? 1
            let scale = weight * inverseKept
            // log Σ e^x_c = max + log Σ e^(x_c − max): every exponent is ≤ 0.
            var largest = x[0]
            for c in 1..<classes { largest = max(largest, x[c]) }
            var sum = 0.0
            for c in 0..<classes { sum += Double(expf(x[c] - largest)) }
            total += Double(weight) * (log(sum) + Double(largest) - Double(x[Int(target)]))
            let inverseSum = Float(1 / sum)
            for c in 0..<classes {
                let probability = expf(x[c] - largest) * inverseSum
                dx[c] = (probability - (c == Int(target) ? 1 : 0)) * scale
            }
        }
        loss.hostFloats[index] = kept > 0 ? Float(total / Double(kept)) : 0
    }

    public func meanSquaredError(predictions: Tensor, targets: Tensor, gradient: Tensor, loss: Tensor,
                                 at index: Int) throws {
        let count = try checkElementwiseLoss(
            "meanSquaredError", input: predictions, targets: targets, gradient: gradient, loss: loss, at: index)
        let (p, y, dp) = (predictions.hostFloats, targets.hostFloats, gradient.hostFloats)  // [N] each
        let twiceInverseCount = 2 / Float(count)
        var total = 0.0
        for i in 0..<count {
            let difference = p[i] - y[i]
            total += Double(difference) * Double(difference)
            dp[i] = difference * twiceInverseCount
        }
        loss.hostFloats[index] = Float(total / Double(count))
    }

    // MARK: Optimizer steps

    public func sgdStep(parameter: Tensor, gradient: Tensor, momentumBuffer: Tensor?,
                        hyperparameters h: SGDUpdate) throws {
        try checkSGD(parameter: parameter, gradient: gradient, momentumBuffer: momentumBuffer, hyperparameters: h)
        let (p, gradientValues) = (parameter.hostFloats, gradient.hostFloats)  // [N] each
        let buffer = momentumBuffer?.hostFloats  // [N]
        for i in 0..<parameter.count {
            var g = gradientValues[i] + h.weightDecay * p[i]
            if let buffer {
                buffer[i] = h.isFirstStep ? g : h.momentum * buffer[i] + (1 - h.dampening) * g
                g = h.nesterov ? g + h.momentum * buffer[i] : buffer[i]
            }
            p[i] -= h.learningRate * g
        }
    }

    /// One parameter after another: on the CPU a step has no launch to save.
    public func adamSteps(_ steps: [AdamStep]) throws {
        try checkAdamSteps(steps)
        for step in steps {
            try adamStep(parameter: step.parameter, gradient: step.gradient, squaredGradient: step.squaredGradient,
                         firstMoment: step.firstMoment, secondMoment: step.secondMoment,
                         hyperparameters: step.hyperparameters)
        }
    }

    public func adamStep(parameter: Tensor, gradient: Tensor, squaredGradient: Tensor?, firstMoment: Tensor,
                         secondMoment: Tensor, hyperparameters h: AdamUpdate) throws {
        try checkAdam(parameter: parameter, gradient: gradient, squaredGradient: squaredGradient,
                      firstMoment: firstMoment, secondMoment: secondMoment, hyperparameters: h)
        let operands = AdamOperands(p: parameter.hostFloats, gradient: gradient.hostFloats,
                                    squares: squaredGradient?.hostFloats,
                                    m: firstMoment.hostFloats, v: secondMoment.hostFloats)
        let (count, lanes) = (parameter.count, CPULanes.scalarCount)
        // The decoder's W_hh alone is 590k values at G2P's sizes: both cores take a share of whole
        // lane vectors (the last part the remainder).
        let parts = count >= adamSplitMinimumCount ? min(scanPartLimit, count / lanes) : 1
        CPUWorkerPool.shared.run(parts: parts) { part in
            let vectors = count / lanes
            let end = part == parts - 1 ? count : vectors * (part + 1) / parts * lanes
            operands.update(vectors * part / parts * lanes..<end, h)
        }
    }

    public func rmsPropStep(parameter: Tensor, gradient: Tensor, squaredGradient: Tensor?, squareAverage: Tensor,
                            momentumBuffer: Tensor?, hyperparameters h: RMSPropUpdate) throws {
        try checkRMSProp(parameter: parameter, gradient: gradient, squaredGradient: squaredGradient,
                         squareAverage: squareAverage, momentumBuffer: momentumBuffer, hyperparameters: h)
        let (p, gradientValues, s) = (parameter.hostFloats, gradient.hostFloats, squareAverage.hostFloats)  // [N] each
        let buffer = momentumBuffer?.hostFloats  // [N]
        let squares = squaredGradient?.hostFloats  // [N]
        for i in 0..<parameter.count {
            let g = gradientValues[i] + h.weightDecay * p[i]
            if let squares {
                s[i] = h.alpha * s[i] + (1 - h.alpha) * squares[i]
            } else {
                s[i] = h.alpha * s[i] + (1 - h.alpha) * g * g
            }
            let average = s[i].squareRoot() + h.epsilon
            if let buffer {
                buffer[i] = h.momentum * buffer[i] + g / average
                p[i] -= h.learningRate * buffer[i]
            } else {
                p[i] -= h.learningRate * (g / average)
            }
        }
    }

    // MARK: Clipping and constraints

    public func clamp(_ x: Tensor, minimum: Float, maximum: Float) throws {
        try checkClamp(x, minimum: minimum, maximum: maximum)
        let values = x.hostFloats  // [N]
        for i in 0..<x.count {
            // Comparisons, not min/max, so that NaN passes through as in PyTorch.
            if values[i] < minimum {
                values[i] = minimum
            } else if values[i] > maximum {
                values[i] = maximum
            }
        }
    }

    public func constrainRowNorms(_ x: Tensor, rowLength: Int, maxNorm: Float) throws {
        let rows = try checkRowNorms(x, rowLength: rowLength, maxNorm: maxNorm)
        for r in 0..<rows {
            let row = x.hostFloats + r * rowLength  // [rowLength]
            var sumOfSquares = 0.0
            for j in 0..<rowLength { sumOfSquares += Double(row[j]) * Double(row[j]) }
            let norm = Float(sumOfSquares.squareRoot())
            let scale = min(norm, maxNorm) / (norm + 1e-7)
            for j in 0..<rowLength { row[j] *= scale }
        }
    }
}

/// Values from which `adamStep` splits a tensor over the cores: below it the update takes about
/// as long as handing it to the other threads.
private let adamSplitMinimumCount = 1 << 16

/// The four [N] arrays of an Adam step, handed to the threads that update disjoint ranges.
private struct AdamOperands: @unchecked Sendable {
    let p: UnsafeMutablePointer<Float>, gradient: UnsafeMutablePointer<Float>
    /// Σ of each occurrence's g² (`EmbeddingSecondMoment.perOccurrence`), v's input instead of g g.
    let squares: UnsafeMutablePointer<Float>?
    let m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>

    /// The Adam update of elements `range`, a lane vector at a time, then the last elements one by
    /// one: the same operations in the same order in both loops (the vector square root and
    /// division round as the scalar ones do), so every element gets the scalar loop's value.
    ///
    ///     p ← p · decay;  g = ∇ + l2 p;  m ← β1 m + (1 − β1) g;  v ← β2 v + (1 − β2) g g
    ///     p ← p − stepSize · m / (√v / correction + ε)
    ///
    /// With `squares` S, v ← β2 v + (1 − β2) S instead (no l2 then: the optimizer refuses both).
    func update(_ range: Range<Int>, _ h: AdamUpdate) {
        let (decay, l2) = (h.decayFactor, h.gradientWeightDecay)
        let (stepSize, correction) = (h.stepSize, h.secondMomentCorrection)
        let (beta1, beta2, oneMinusBeta1, oneMinusBeta2) = (h.beta1, h.beta2, 1 - h.beta1, 1 - h.beta2)
        let width = CPULanes.scalarCount
        var i = range.lowerBound
        while i + width <= range.upperBound {
            let decayed = (p + i).loadLanes(width) * decay
            let g = (gradient + i).loadLanes(width) + l2 * decayed
            let firstMoment = beta1 * (m + i).loadLanes(width) + oneMinusBeta1 * g
            let newSquare = squares.map { oneMinusBeta2 * ($0 + i).loadLanes(width) } ?? oneMinusBeta2 * g * g
            let secondMoment = beta2 * (v + i).loadLanes(width) + newSquare
            let denominator = secondMoment.squareRoot() / correction + h.epsilon
            (m + i).storeLanes(firstMoment, width)
            (v + i).storeLanes(secondMoment, width)
            (p + i).storeLanes(decayed - stepSize * (firstMoment / denominator), width)
            i += width
        }
        while i < range.upperBound {
            p[i] *= decay
            let g = gradient[i] + l2 * p[i]
            m[i] = beta1 * m[i] + oneMinusBeta1 * g
            v[i] = beta2 * v[i] + (squares.map { oneMinusBeta2 * $0[i] } ?? oneMinusBeta2 * g * g)
            let denominator = v[i].squareRoot() / correction + h.epsilon
            p[i] -= stepSize * (m[i] / denominator)
            i += 1
        }
    }
}
