// The op set every device implements. Shapes: row-major; a matrix operand is a view into a
// tensor's storage (element offset + leading dimension), so slices of larger buffers need no copy.

/// Pointwise nonlinearities. Derivatives are taken from the activation's *output* y:
/// sigmoid' = y (1 - y), tanh' = 1 - y², relu' = [y > 0], identity' = 1.
public enum Activation: String, Sendable, CaseIterable, Codable {
    case identity
    case sigmoid
    case tanh
    case relu
}

/// Which family of device a backend drives.
public enum BackendKind: String, Sendable {
    case cpu
    case opencl
}

/// A matrix inside a tensor: row-major, first element at `offset`, rows `leadingDimension` apart.
/// `transposed` means the operation reads it as its transpose (BLAS `Trans`).
public struct MatrixOperand: @unchecked Sendable {
    public var tensor: Tensor
    public var offset: Int
    public var leadingDimension: Int
    public var transposed: Bool

    public init(_ tensor: Tensor, offset: Int = 0, leadingDimension: Int, transposed: Bool = false) {
        self.tensor = tensor
        self.offset = offset
        self.leadingDimension = leadingDimension
        self.transposed = transposed
    }

    /// A whole rank-2 tensor `[rows, columns]`.
    public init(_ tensor: Tensor, transposed: Bool = false) {
        precondition(tensor.shape.rank == 2, "MatrixOperand(tensor:) needs a rank-2 tensor, got \(tensor.shape)")
        self.init(tensor, offset: 0, leadingDimension: tensor.shape[1], transposed: transposed)
    }
}

/// Counts of what a backend has allocated and not yet released.
public struct MemoryStatistics: Sendable, Equatable {
    public var liveBuffers = 0
    public var liveBytes = 0
    public var peakBytes = 0
    public init() {}
}

/// A compute device: buffers plus a small set of explicit ops. Layers, losses and optimizers are
/// written once against this protocol; the CPU backend is the reference every other must match.
///
/// Every op validates its operands first (shapes, element types, ownership, bounds) and throws a
/// `RecurError` before touching memory. Ops run in order; `synchronize()` waits for all of them.
public protocol Backend: AnyObject, Sendable {
    var kind: BackendKind { get }
    /// Human-readable device name (`"cpu"`, or the OpenCL device's name).
    var deviceName: String { get }
    /// Buffers alive now and the peak of live bytes since the backend was made.
    var memoryStatistics: MemoryStatistics { get }
    /// Starts a new peak measurement of `memoryStatistics.peakBytes` from what is live now.
    func resetPeakMemory()

    // MARK: Buffers

    /// A new tensor with every element zero.
    func zeros(_ shape: Shape, dtype: DType) throws -> Tensor
    /// A new tensor whose elements are unspecified: for outputs and scratch that an op overwrites
    /// completely before anything reads them, where zeroing would be wasted work. A backend may
    /// return zeros (the default does).
    func uninitialized(_ shape: Shape, dtype: DType) throws -> Tensor
    /// New float32 tensors, one per shape, that the backend may place in one allocation (the
    /// OpenCL backend does, so that one batched GEMM can address all of them); zeroed, or else
    /// unspecified like `uninitialized`. They behave exactly like tensors from separate calls.
    func tensorsInOneAllocation(_ shapes: [Shape], zeroed: Bool) throws -> [Tensor]
    func upload(_ values: [Float], shape: Shape) throws -> Tensor
    func upload(_ values: [Int32], shape: Shape) throws -> Tensor
    func download(_ tensor: Tensor) throws -> [Float]
    func downloadInt32(_ tensor: Tensor) throws -> [Int32]
    /// Waits until every op enqueued so far has finished.
    func synchronize() throws

    // MARK: Data movement

    /// tensor[i] = value for every i.
    func fill(_ tensor: Tensor, with value: Float) throws
    /// Sets every element of each tensor to 0, as `fill(_:with: 0)` on each (a model's gradients
    /// before a step): the OpenCL backend zeroes up to eight tensors in one launch.
    func zero(_ tensors: [Tensor]) throws
    /// destination[destinationOffset + i] = source[sourceOffset + i] for i in 0..<count.
    func copy(_ source: Tensor, sourceOffset: Int, into destination: Tensor, destinationOffset: Int, count: Int) throws
    /// destination[destinationOffset + r · destinationStride + i] = source[sourceOffset + r · sourceStride + i]
    /// for r in 0..<rows, i in 0..<width: a block of rows between two row layouts, as taking a
    /// feature slice out of `[N, F]` rows or writing one part of a concatenation. The two blocks
    /// may not overlap.
    func copyRows(_ rows: Int, width: Int, from source: Tensor, offset sourceOffset: Int, stride sourceStride: Int,
                  into destination: Tensor, offset destinationOffset: Int, stride destinationStride: Int) throws

    // MARK: Linear algebra

    /// C[m, n] = alpha * op(A)[m, k] * op(B)[k, n] + beta * C (row-major, C never transposed).
    func gemm(m: Int, n: Int, k: Int, alpha: Float, a: MatrixOperand, b: MatrixOperand,
              beta: Float, c: MatrixOperand) throws

    // MARK: Elementwise

    /// out = a + b.
    func add(_ a: Tensor, _ b: Tensor, into out: Tensor) throws
    /// out = a * b (Hadamard).
    func multiply(_ a: Tensor, _ b: Tensor, into out: Tensor) throws
    /// y += alpha * x.
    func axpy(alpha: Float, _ x: Tensor, _ y: Tensor) throws
    /// x *= alpha, in place.
    func scale(_ x: Tensor, by alpha: Float) throws
    /// tensors[s] *= factors[s] for each s (clipping a model's gradients): the OpenCL backend
    /// scales up to eight tensors in one launch.
    func scale(_ tensors: [Tensor], by factors: [Float]) throws
    /// y = f(x). `y` may be `x`.
    func activate(_ f: Activation, _ x: Tensor, into y: Tensor) throws
    /// dx = dy * f'(x), with f' computed from the forward output y. `dx` may be `dy`.
    func activationBackward(_ f: Activation, output y: Tensor, outputGradient dy: Tensor, into dx: Tensor) throws

    // MARK: Reductions

    /// out = x summed along `axis`; `out` has x's shape without that axis.
    func sum(_ x: Tensor, alongAxis axis: Int, into out: Tensor) throws
    /// out[index] = Σ x², accumulated in float64 on the CPU and with pairwise float32 sums on
    /// devices. Writing into a slot lets global-norm clipping gather all parameters' sums
    /// without a host round-trip per tensor.
    func sumOfSquares(_ x: Tensor, into out: Tensor, at index: Int) throws
    /// out[index + s] = Σ tensors[s][i]² for each s, each equal to `sumOfSquares` of that tensor
    /// alone (the OpenCL backend sums up to eight tensors in two launches, in the same order).
    func sumsOfSquares(_ tensors: [Tensor], into out: Tensor, at index: Int) throws

    // MARK: Embedding

    /// out[n, :] = table[ids[n], :] for table `[V, D]`, int32 ids of any shape with N elements,
    /// out with N * D elements.
    func gather(rowsOf table: Tensor, ids: Tensor, into out: Tensor) throws
    /// tableGradient[ids[n], :] += gradient[n, :] (accumulates; repeated ids add up, in increasing n
    /// onto the value already there on every backend, so the result is the same every run).
    func scatterAdd(_ gradient: Tensor, ids: Tensor, into tableGradient: Tensor) throws

    // MARK: Recurrent

    /// Runs one recurrent layer in one direction over the whole sequence (see `RecurrentForward`):
    /// writes the output view, the final state and the workspace.
    func recurrentForward(_ request: RecurrentForward) throws
    /// Back-propagates through that scan (see `RecurrentBackward`): overwrites the input and
    /// initial-state gradients, accumulates (+=) the weight gradients.
    func recurrentBackward(_ request: RecurrentBackward) throws
    /// Runs both directions of a bidirectional layer (see `BidirectionalRecurrentForward`): the
    /// result of `recurrentForward(pair.forward)` then `recurrentForward(pair.reverse)`. The default
    /// does exactly that; a device backend runs the two scans side by side, one launch per step.
    func recurrentForward(_ pair: BidirectionalRecurrentForward) throws
    /// Back-propagates through both directions (see `BidirectionalRecurrentBackward`): the result of
    /// `recurrentBackward(pair.forward)` then `recurrentBackward(pair.reverse)`.
    func recurrentBackward(_ pair: BidirectionalRecurrentBackward) throws

    // MARK: Attention

    /// Attention over the valid source steps of each sequence (see `AttentionForward` and the
    /// equations in Backend/AttentionOps.swift): overwrites the context and the attention weights.
    func attentionForward(_ request: AttentionForward) throws
    /// Back-propagates through that attention (see `AttentionBackward`): overwrites the query,
    /// key and value gradients, accumulates (+=) the score vector's gradient.
    func attentionBackward(_ request: AttentionBackward) throws

    // MARK: Losses
    //
    // Each loss writes the batch's mean loss into `loss[index]` (a slot of a device tensor, so a
    // training loop reads losses back when it chooses, not once per step) and overwrites
    // `gradient` with dL/d input of that mean, in the same pass over the data.

    /// Sigmoid binary cross-entropy on logits, mean over all N elements (PyTorch's
    /// `BCEWithLogitsLoss`): L = (1/N) Σ max(x, 0) − x y + log(1 + e^−|x|),
    /// dL/dx = (σ(x) − y) / N. `targets` are floats in [0, 1], shaped like `logits`.
    ///
    /// With `weights` (floats shaped like `logits`, w ≥ 0) the mean is weighted:
    /// L = Σ w_i ℓ_i / Σ w_i, dL/dx_i = w_i (σ(x_i) − y_i) / Σ w_i; Σ w = 0 gives L = 0 and a zero
    /// gradient. All weights 1 is the unweighted mean.
    func sigmoidCrossEntropy(logits: Tensor, targets: Tensor, weights: Tensor?, gradient: Tensor, loss: Tensor,
                             at index: Int) throws
    /// Softmax cross-entropy over the last axis of `logits` `[N, C]` (any leading shape) with
    /// int32 class `targets` `[N]`, mean over the M rows whose target is not `ignoreIndex`
    /// (PyTorch's `CrossEntropyLoss(ignore_index:)`): L = (1/M) Σ log Σ_c e^x_nc − x_n,y_n,
    /// dL/dx_nc = (softmax(x_n)_c − [c = y_n]) / M, and 0 for ignored rows. M = 0 gives L = 0 and a
    /// zero gradient.
    ///
    /// With `weights` (floats `[N]`, one per row, w ≥ 0) the mean is weighted as PyTorch's
    /// `CrossEntropyLoss(weight:)` weights it by class: L = Σ w_n ℓ_n / Σ w_n over the kept rows,
    /// dL/dx_nc = w_n (softmax(x_n)_c − [c = y_n]) / Σ w_n; a zero total gives L = 0 and a zero
    /// gradient.
    func softmaxCrossEntropy(logits: Tensor, targets: Tensor, ignoreIndex: Int32?, weights: Tensor?,
                             gradient: Tensor, loss: Tensor, at index: Int) throws
    /// Mean squared error over all N elements (PyTorch's `MSELoss`): L = (1/N) Σ (p − y)²,
    /// dL/dp = 2 (p − y) / N.
    func meanSquaredError(predictions: Tensor, targets: Tensor, gradient: Tensor, loss: Tensor, at index: Int) throws

    // MARK: Optimizer steps
    //
    // One fused update of one parameter in place, with its state; the gradient is only read.
    // The formulas are on the update structs in Backend/TrainingOps.swift.

    /// Stochastic gradient descent with momentum, dampening, Nesterov and weight decay as
    /// PyTorch's `torch.optim.SGD` (see `SGDUpdate`). `momentumBuffer` is required exactly when
    /// the momentum is not 0.
    func sgdStep(parameter: Tensor, gradient: Tensor, momentumBuffer: Tensor?, hyperparameters: SGDUpdate) throws
    /// Adam, or AdamW with decoupled weight decay (see `AdamUpdate`). With `squaredGradient`
    /// (an embedding's per-occurrence squares, `NamedParameter.squaredGradient`) the second
    /// moment adds it in place of g²: v = β2 v + (1 − β2) S, as Keras on TensorFlow; L2 weight
    /// decay, which would need each occurrence's p, is then refused.
    func adamStep(parameter: Tensor, gradient: Tensor, squaredGradient: Tensor?, firstMoment: Tensor,
                  secondMoment: Tensor, hyperparameters: AdamUpdate) throws
    /// `adamStep` on each parameter in turn, one optimizer step over a model: the OpenCL backend
    /// updates up to eight parameters in one launch (those without a squared gradient whose β1, β2,
    /// ε, learning rate and weight decay agree; each keeps its own step count).
    func adamSteps(_ steps: [AdamStep]) throws
    /// RMSProp as PyTorch's `torch.optim.RMSprop` (see `RMSPropUpdate`). `momentumBuffer` is
    /// required exactly when the momentum is not 0. With `squaredGradient` the square average
    /// adds it in place of g²: s = α s + (1 − α) S, as Keras on TensorFlow; weight decay is then
    /// refused.
    func rmsPropStep(parameter: Tensor, gradient: Tensor, squaredGradient: Tensor?, squareAverage: Tensor,
                     momentumBuffer: Tensor?, hyperparameters: RMSPropUpdate) throws

    // MARK: Clipping and constraints

    /// x = min(max(x, minimum), maximum), in place (PyTorch's `clamp_`). NaN stays NaN.
    func clamp(_ x: Tensor, minimum: Float, maximum: Float) throws
    /// Views x as rows of `rowLength` values and rescales each row r, in place, by
    /// min(‖r‖, maxNorm) / (‖r‖ + 1e-7) (Keras's `MaxNorm` constraint).
    func constrainRowNorms(_ x: Tensor, rowLength: Int, maxNorm: Float) throws
}

extension Backend {
    /// The unweighted mean sigmoid cross-entropy (no `weights`).
    public func sigmoidCrossEntropy(logits: Tensor, targets: Tensor, gradient: Tensor, loss: Tensor,
                                    at index: Int) throws {
        try sigmoidCrossEntropy(logits: logits, targets: targets, weights: nil, gradient: gradient, loss: loss,
                                at: index)
    }

    /// The unweighted mean softmax cross-entropy (no `weights`).
    public func softmaxCrossEntropy(logits: Tensor, targets: Tensor, ignoreIndex: Int32?, gradient: Tensor,
                                    loss: Tensor, at index: Int) throws {
        try softmaxCrossEntropy(logits: logits, targets: targets, ignoreIndex: ignoreIndex, weights: nil,
                                gradient: gradient, loss: loss, at: index)
    }

    /// Adam or AdamW whose second moment squares the gradient (see `AdamUpdate`).
    public func adamStep(parameter: Tensor, gradient: Tensor, firstMoment: Tensor, secondMoment: Tensor,
                         hyperparameters: AdamUpdate) throws {
        try adamStep(parameter: parameter, gradient: gradient, squaredGradient: nil, firstMoment: firstMoment,
                     secondMoment: secondMoment, hyperparameters: hyperparameters)
    }

    /// RMSProp whose square average squares the gradient (see `RMSPropUpdate`).
    public func rmsPropStep(parameter: Tensor, gradient: Tensor, squareAverage: Tensor, momentumBuffer: Tensor?,
                            hyperparameters: RMSPropUpdate) throws {
        try rmsPropStep(parameter: parameter, gradient: gradient, squaredGradient: nil, squareAverage: squareAverage,
                        momentumBuffer: momentumBuffer, hyperparameters: hyperparameters)
    }

    /// A new float32 tensor of zeros.
    public func zeros(_ shape: Shape) throws -> Tensor { try zeros(shape, dtype: .float32) }

    public func uninitialized(_ shape: Shape, dtype: DType) throws -> Tensor { try zeros(shape, dtype: dtype) }

    public func tensorsInOneAllocation(_ shapes: [Shape], zeroed: Bool) throws -> [Tensor] {
        try shapes.map { zeroed ? try zeros($0) : try uninitialized($0) }
    }

    /// A new float32 tensor whose elements are unspecified (see `uninitialized(_:dtype:)`).
    public func uninitialized(_ shape: Shape) throws -> Tensor { try uninitialized(shape, dtype: .float32) }

    /// C = alpha * op(A) * op(B) + beta * C for whole rank-2 tensors.
    public func matmul(_ a: Tensor, transposeA: Bool = false, _ b: Tensor, transposeB: Bool = false,
                       into c: Tensor, alpha: Float = 1, beta: Float = 0) throws {
        for (name, t) in [("A", a), ("B", b), ("C", c)] where t.shape.rank != 2 {
            throw RecurError.shapeMismatch(operation: "matmul", detail: "\(name) must be rank 2, got \(t.shape)")
        }
        let m = transposeA ? a.shape[1] : a.shape[0]
        let k = transposeA ? a.shape[0] : a.shape[1]
        let kB = transposeB ? b.shape[1] : b.shape[0]
        let n = transposeB ? b.shape[0] : b.shape[1]
        guard k == kB, c.shape == [m, n] else {
            throw RecurError.shapeMismatch(
                operation: "matmul",
                detail: "op(A) is [\(m), \(k)], op(B) is [\(kB), \(n)], C is \(c.shape)")
        }
        try gemm(m: m, n: n, k: k, alpha: alpha, a: MatrixOperand(a, transposed: transposeA),
                 b: MatrixOperand(b, transposed: transposeB), beta: beta, c: MatrixOperand(c))
    }

    /// The sum of squares of one tensor, read back to the host.
    public func sumOfSquares(_ x: Tensor) throws -> Float {
        let slot = try zeros([1])
        try sumOfSquares(x, into: slot, at: 0)
        return try download(slot)[0]
    }
}
