// A fully connected layer on the last axis, PyTorch's nn.Linear with an optional activation.
//
// Shape legend: N rows (the product of every axis but the last), I input features, O outputs.

/// How `Dense` initialises its parameters.
public enum DenseInitialization: String, Sendable, CaseIterable, Codable {
    /// PyTorch's `nn.Linear`: weight and bias ~ U(−1/√I, 1/√I) (its Kaiming-uniform with a = √5
    /// comes to that bound).
    case pytorch
    /// Keras's `Dense` defaults: weight Glorot-uniform, U(±√(6 / (I + O))) (Glorot & Bengio
    /// 2010); bias 0.
    case glorotUniform
}

/// y = f(x Wᵀ + b) over the last axis of x, with explicit `forward` and `backward`.
///
/// Parameters use PyTorch's names and layout: `weight` `[O, I]`, `bias` `[O]`. `backward`
/// accumulates (+=) into their gradients until `zeroGradients()`.
public final class Dense {
    /// I: features of the input's last axis.
    public let inputSize: Int
    /// O: features of the output's last axis.
    public let outputSize: Int
    /// f, applied to x Wᵀ + b. Default identity (logits for a loss that takes logits).
    public let activation: Activation
    /// The device that holds the parameters and runs the layer.
    public let backend: any Backend

    /// W: `[O, I]`.
    public let weight: Tensor
    /// b: `[O]`.
    public let bias: Tensor
    private let weightGradient: Tensor  // [O, I]
    private let biasGradient: Tensor  // [O]
    private var cache: (inputs: [Tensor], output: Tensor)?
    /// What the last forward left for its backward; see `RecurrentLayer.forwardRecord`.
    var forwardRecord: (inputs: [Tensor], output: Tensor)? {
        get { cache }
        set { cache = newValue }
    }
    /// A row of N ones, the left operand that spreads b over the rows and sums dL/dz over them.
    private var ones: Tensor?  // [N]

    /// Makes the layer with initialised parameters and zero gradients on `backend`.
    /// - Parameters:
    ///   - inputSize: I, the features of the input's last axis.
    ///   - outputSize: O.
    ///   - activation: default `.identity`.
    ///   - initialization: default `.pytorch`.
    ///   - seed: seeds the initial parameters (`SeededRandom`), the same values on every backend.
    ///   - backend: the device that holds the parameters and runs the layer.
    public init(inputSize: Int, outputSize: Int, activation: Activation = .identity,
                initialization: DenseInitialization = .pytorch, seed: UInt64 = 0, backend: any Backend) throws {
        for (name, size) in [("inputSize", inputSize), ("outputSize", outputSize)] where size < 1 {
            throw RecurError.invalidArgument(operation: "Dense.init", detail: "\(name) must be at least 1, got \(size)")
        }
        self.inputSize = inputSize
        self.outputSize = outputSize
        self.activation = activation
        self.backend = backend
        var random = SeededRandom(seed: seed)
        let (i, o) = (inputSize, outputSize)
        let weights: [Float]  // [O, I]
        let biases: [Float]  // [O]
        switch initialization {
        case .pytorch:
            let bound = 1 / Double(i).squareRoot()
            weights = (0..<(o * i)).map { _ in random.uniform(bound: bound) }
            biases = (0..<o).map { _ in random.uniform(bound: bound) }
        case .glorotUniform:
            let limit = (6 / Double(i + o)).squareRoot()
            weights = (0..<(o * i)).map { _ in random.uniform(bound: limit) }
            biases = [Float](repeating: 0, count: o)
        }
        weight = try backend.upload(weights, shape: [o, i])
        bias = try backend.upload(biases, shape: [o])
        weightGradient = try backend.zeros([o, i])
        biasGradient = try backend.zeros([o])
    }

    // MARK: Parameters

    /// `weight` and `bias` with their gradients.
    public var parameters: [NamedParameter] {
        [
            NamedParameter(name: "weight", value: weight, gradient: weightGradient),
            NamedParameter(name: "bias", value: bias, gradient: biasGradient),
        ]
    }

    /// Sets every gradient to 0.
    public func zeroGradients() throws {
        try backend.zeroGradients(of: parameters)
    }

    // MARK: Forward and backward

    /// y = f(x Wᵀ + b).
    /// - Parameter input: `[..., I]`, any leading shape (`[B, I]`, or `[T, B, I]` for every step).
    /// - Returns: `[..., O]`, the input's shape with its last axis replaced by O.
    public func forward(_ input: Tensor) throws -> Tensor {
        try forward(concatenating: [input])
    }

    /// y = f([x_1; …; x_n] Wᵀ + b) = f(Σ_p x_p W_pᵀ + b), W_p the columns of W that read part p:
    /// the layer on the concatenation of its inputs along the last axis, without building it
    /// (Luong attention's W_c [c; h]).
    /// - Parameter parts: `[..., I_p]` each, the same leading shape, with Σ I_p = I, in the order
    ///   of W's columns.
    /// - Returns: `[..., O]`, the parts' leading shape with O features.
    public func forward(concatenating parts: [Tensor]) throws -> Tensor {
        let operation = "Dense.forward"
        try backend.checkOperands(operation, parts)
        guard let first = parts.first, parts.reduce(0, { $0 + ($1.shape.dimensions.last ?? 0) }) == inputSize,
              parts.allSatisfy({ $0.shape.dimensions.dropLast() == first.shape.dimensions.dropLast() }) else {
            throw RecurError.shapeMismatch(
                operation: operation,
                detail: "input \(parts.map(\.shape)) must share leading axes and end in \(inputSize) features in all")
        }
        let rows = first.count / first.shape.dimensions[first.shape.rank - 1]
        var shape = first.shape.dimensions
        shape[shape.count - 1] = outputSize
        let output = try backend.zeros(Shape(shape))  // y [N, O]
        let ones = try onesRow(rows)  // [N]
        // z = 1 bᵀ, then z += x_p W_pᵀ for each part: the bias as a rank-1 GEMM keeps every op a
        // backend GEMM.
        try backend.gemm(m: rows, n: outputSize, k: 1, alpha: 1, a: MatrixOperand(ones, leadingDimension: 1),
                         b: MatrixOperand(bias, leadingDimension: outputSize), beta: 0,
                         c: MatrixOperand(output, leadingDimension: outputSize))
        for (part, column) in zip(parts, Self.firstColumns(parts)) {
            let width = part.shape[part.shape.rank - 1]
            try backend.gemm(m: rows, n: outputSize, k: width, alpha: 1,
                             a: MatrixOperand(part, leadingDimension: width),
                             b: MatrixOperand(weight, offset: column, leadingDimension: inputSize, transposed: true),
                             beta: 1, c: MatrixOperand(output, leadingDimension: outputSize))
        }
        try backend.activate(activation, output, into: output)
        cache = (parts, output)
        return output
    }

    /// Back-propagates dL/dy through the last `forward`, accumulating (+=) dL/dW and dL/db.
    /// - Parameter outputGradient: dL/dy, shaped like the output (not modified).
    /// - Returns: dL/dx, shaped like the input.
    public func backward(_ outputGradient: Tensor) throws -> Tensor {
        let gradients = try backward(toParts: outputGradient)
        guard gradients.count == 1 else {
            throw RecurError.invalidArgument(
                operation: "Dense.backward",
                detail: "the last forward read \(gradients.count) parts: use backward(toParts:)")
        }
        return gradients[0]
    }

    /// Back-propagates dL/dy through the last `forward`, accumulating (+=) dL/dW and dL/db, and
    /// returns dL/dx_p for each part the forward read (one for ``forward(_:)``).
    /// - Parameter outputGradient: dL/dy, shaped like the output (not modified).
    /// - Returns: dL/dx_p = dz W_p, shaped like part p, in the forward's order.
    public func backward(toParts outputGradient: Tensor) throws -> [Tensor] {
        let operation = "Dense.backward"
        guard let (parts, output) = cache else {
            throw RecurError.invalidArgument(operation: operation, detail: "backward needs a forward pass first")
        }
        try backend.checkOperands(operation, [outputGradient])
        guard outputGradient.shape == output.shape else {
            throw RecurError.shapeMismatch(
                operation: operation,
                detail: "outputGradient must be \(output.shape) like the output, got \(outputGradient.shape)")
        }
        let rows = output.count / outputSize
        let preActivationGradient = try backend.zeros(output.shape)  // dL/dz [N, O]
        try backend.activationBackward(activation, output: output, outputGradient: outputGradient,
                                       into: preActivationGradient)
        let dz = MatrixOperand(preActivationGradient, leadingDimension: outputSize)
        // db += 1ᵀ dz: [1, N] [N, O], the column sums of dz.
        try backend.gemm(m: 1, n: outputSize, k: rows, alpha: 1,
                         a: MatrixOperand(try onesRow(rows), leadingDimension: rows), b: dz, beta: 1,
                         c: MatrixOperand(biasGradient, leadingDimension: outputSize))
        var gradients: [Tensor] = []
        for (part, column) in zip(parts, Self.firstColumns(parts)) {
            let width = part.shape[part.shape.rank - 1]
            // dW_p += dzᵀ x_p: [O, N] [N, I_p], into W's columns of part p.
            try backend.gemm(m: outputSize, n: width, k: rows, alpha: 1,
                             a: MatrixOperand(preActivationGradient, leadingDimension: outputSize, transposed: true),
                             b: MatrixOperand(part, leadingDimension: width), beta: 1,
                             c: MatrixOperand(weightGradient, offset: column, leadingDimension: inputSize))
            // dx_p = dz W_p: [N, O] [O, I_p].
            let partGradient = try backend.zeros(part.shape)  // [N, I_p]
            try backend.gemm(m: rows, n: width, k: outputSize, alpha: 1, a: dz,
                             b: MatrixOperand(weight, offset: column, leadingDimension: inputSize), beta: 0,
                             c: MatrixOperand(partGradient, leadingDimension: width))
            gradients.append(partGradient)
        }
        return gradients
    }

    /// The first column of W that each part reads: the running sum of the parts' widths.
    private static func firstColumns(_ parts: [Tensor]) -> [Int] {
        var column = 0
        return parts.map { part in
            defer { column += part.shape[part.shape.rank - 1] }
            return column
        }
    }

    /// N ones, kept between calls while N stays the same.
    private func onesRow(_ count: Int) throws -> Tensor {
        if let ones, ones.count == count { return ones }
        let row = try backend.zeros([count])
        try backend.fill(row, with: 1)
        ones = row
        return row
    }
}

extension Dense: Layer {
    /// I.
    public var inputFeatures: Int? { inputSize }

    /// O, whatever the input.
    /// - Parameter input: the input's features (I, which `Sequential` checks).
    /// - Returns: O.
    public func outputFeatures(input: Int?) -> Int? { outputSize }

    /// `forward(_:)`; the context changes nothing.
    /// - Parameters:
    ///   - input: `[..., I]`.
    ///   - context: unused.
    /// - Returns: `[..., O]`.
    public func forward(_ input: Tensor, context: LayerContext) throws -> Tensor {
        try forward(input)
    }

    /// `backward(_:)`.
    /// - Parameter outputGradient: dL/dy, shaped like the output.
    /// - Returns: dL/dx, shaped like the input.
    public func backward(from outputGradient: Tensor) throws -> Tensor? {
        try backward(outputGradient)
    }
}
