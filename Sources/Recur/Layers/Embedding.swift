// A lookup table of vectors by token id: PyTorch's nn.Embedding with `padding_idx`.
//
// Shape legend: V vocabulary rows, D embedding width, T time steps, B batch; ids of any shape S
// give embeddings of shape [S..., D]. Batches are time-major, ids [T, B] → [T, B, D], which is
// what `RecurrentLayer` reads.

/// How `Embedding` initialises its table.
public enum EmbeddingInitialization: String, Sendable, CaseIterable, Codable {
    /// PyTorch's `nn.Embedding`: N(0, 1).
    case pytorch
    /// Keras's `Embedding`: U(−0.05, 0.05).
    case keras
}

/// What Adam's and RMSProp's second moment adds for an embedding row that several ids of one
/// batch share. For a row seen n times with gradient contributions g_1 … g_n, the gradient (and
/// Adam's first moment) gets Σ g_i either way.
public enum EmbeddingSecondMoment: String, Sendable, CaseIterable, Codable {
    /// (Σ g_i)², the square of the summed gradient: PyTorch (`nn.Embedding` gives a dense
    /// gradient), and Keras with dense gradients.
    case summed
    /// Σ g_i², the sum of each occurrence's square: Keras 3 on TensorFlow, whose `Embedding`
    /// gradient is a `tf.IndexedSlices` with one slice per occurrence, squared slice by slice
    /// before it is summed into the dense second moment.
    case perOccurrence
}

/// out[s, :] = table[ids[s], :], with explicit `forward` and `backward`.
///
/// The parameter is `weight` `[V, D]` (PyTorch's name). `backward` scatter-adds into its gradient
/// (repeated ids add up) until `zeroGradients()`. The padding row, if any, is initialised to 0 and
/// never receives gradient, as with PyTorch's `padding_idx`, so every optimizer leaves it at 0.
public final class Embedding {
    /// V.
    public let vocabularySize: Int
    /// D.
    public let embeddingSize: Int
    /// The id that pads sequences (Keras's and `Vocabulary`'s 0), or nil. Default 0.
    public let paddingIndex: Int32?
    /// The device that holds the table and runs the layer.
    public let backend: any Backend

    /// The table `[V, D]`.
    public let weight: Tensor
    private let weightGradient: Tensor  // [V, D]
    /// Σ over occurrences of g_i², under `.perOccurrence`; nil under `.summed`.
    private var weightSquaredGradient: Tensor?  // [V, D]
    /// D zeros, copied over the padding row of the gradient after each scatter-add.
    private let zeroRow: Tensor  // [D]
    private var cache: (ids: Tensor, outputShape: Shape)?

    /// Makes the table, initialised, with a zero gradient on `backend`.
    /// - Parameters:
    ///   - vocabularySize: V, the ids the table holds a row for.
    ///   - embeddingSize: D, the width of each row.
    ///   - paddingIndex: default 0; nil for none.
    ///   - initialization: default `.pytorch`.
    ///   - seed: seeds the initial table (`SeededRandom`), the same values on every backend.
    ///   - backend: the device that holds the table and runs the layer.
    public init(vocabularySize: Int, embeddingSize: Int, paddingIndex: Int32? = 0,
                initialization: EmbeddingInitialization = .pytorch, seed: UInt64 = 0, backend: any Backend) throws {
        let operation = "Embedding.init"
        for (name, size) in [("vocabularySize", vocabularySize), ("embeddingSize", embeddingSize)] where size < 1 {
            throw RecurError.invalidArgument(operation: operation, detail: "\(name) must be at least 1, got \(size)")
        }
        if let paddingIndex, paddingIndex < 0 || Int(paddingIndex) >= vocabularySize {
            throw RecurError.invalidArgument(
                operation: operation, detail: "paddingIndex \(paddingIndex) outside 0..<\(vocabularySize)")
        }
        self.vocabularySize = vocabularySize
        self.embeddingSize = embeddingSize
        self.paddingIndex = paddingIndex
        self.backend = backend
        var random = SeededRandom(seed: seed)
        var table: [Float]  // [V, D]
        switch initialization {
        case .pytorch:
            table = (0..<(vocabularySize * embeddingSize)).map { _ in Float(random.gaussian()) }
        case .keras:
            table = (0..<(vocabularySize * embeddingSize)).map { _ in random.uniform(bound: 0.05) }
        }
        if let paddingIndex {
            let start = Int(paddingIndex) * embeddingSize
            table.replaceSubrange(start..<(start + embeddingSize), with: repeatElement(0, count: embeddingSize))
        }
        weight = try backend.upload(table, shape: [vocabularySize, embeddingSize])
        weightGradient = try backend.zeros([vocabularySize, embeddingSize])
        zeroRow = try backend.zeros([embeddingSize])
    }

    // MARK: Parameters

    /// `weight` with its gradient, and under `.perOccurrence` its per-occurrence squares.
    public var parameters: [NamedParameter] {
        [NamedParameter(name: "weight", value: weight, gradient: weightGradient,
                        squaredGradient: weightSquaredGradient)]
    }

    /// Which second moment `backward` prepares for Adam and RMSProp; `.summed` (PyTorch's) until
    /// `setSecondMoment(_:)` changes it.
    public var secondMoment: EmbeddingSecondMoment { weightSquaredGradient == nil ? .summed : .perOccurrence }

    /// Chooses the second moment: `.perOccurrence` makes `backward` also scatter-add the square of
    /// each occurrence's gradient into a second `[V, D]` tensor (zero until the next backward),
    /// which `parameters` hands to the optimizer; `.summed` drops it.
    /// - Parameter rule: the second moment to prepare.
    public func setSecondMoment(_ rule: EmbeddingSecondMoment) throws {
        switch rule {
        case .summed:
            weightSquaredGradient = nil
        case .perOccurrence:
            if weightSquaredGradient == nil {
                weightSquaredGradient = try backend.zeros([vocabularySize, embeddingSize])
            }
        }
    }

    /// Sets the gradient (and the per-occurrence squares, if kept) to 0.
    public func zeroGradients() throws {
        try backend.fill(weightGradient, with: 0)
        if let weightSquaredGradient { try backend.fill(weightSquaredGradient, with: 0) }
    }

    // MARK: Forward and backward

    /// Looks up every id.
    /// - Parameters:
    ///   - ids: host ids, row-major in `shape` (time-major `[T, B]` for a recurrent layer).
    ///   - shape: the shape S of `ids`.
    /// - Returns: `[S..., D]`.
    /// - Throws: `RecurError.invalidArgument` naming the first id outside `0 ..< V` and its
    ///   position, checked on the host before anything is uploaded.
    public func forward(ids: [Int32], shape: Shape) throws -> Tensor {
        let operation = "Embedding.forward"
        guard ids.count == shape.count, shape.isValid else {
            throw RecurError.shapeMismatch(operation: operation, detail: "\(ids.count) ids for shape \(shape)")
        }
        if let position = ids.firstIndex(where: { $0 < 0 || Int($0) >= vocabularySize }) {
            throw RecurError.invalidArgument(
                operation: operation,
                detail: "id \(ids[position]) at position \(position) (index \(Self.index(of: position, in: shape)) of "
                    + "\(shape)) outside the vocabulary 0..<\(vocabularySize)")
        }
        let idTensor = try backend.upload(ids, shape: shape)  // int32 [S]
        let outputShape = Shape(shape.dimensions + [embeddingSize])
        let output = try backend.zeros(outputShape)  // [S..., D]
        try backend.gather(rowsOf: weight, ids: idTensor, into: output)
        cache = (idTensor, outputShape)
        return output
    }

    /// Scatter-adds dL/d output into the table's gradient: row ids[s] += outputGradient[s, :],
    /// and under `.perOccurrence` its square into the per-occurrence squares:
    /// row ids[s] += outputGradient[s, :]². The padding row of both stays 0.
    /// - Parameter outputGradient: shaped like the last forward's output.
    public func backward(_ outputGradient: Tensor) throws {
        let operation = "Embedding.backward"
        guard let (ids, outputShape) = cache else {
            throw RecurError.invalidArgument(operation: operation, detail: "backward needs a forward pass first")
        }
        try backend.checkOperands(operation, [outputGradient])
        guard outputGradient.shape == outputShape else {
            throw RecurError.shapeMismatch(
                operation: operation,
                detail: "outputGradient must be \(outputShape) like the output, got \(outputGradient.shape)")
        }
        try scatterAdd(outputGradient, ids: ids, into: weightGradient)
        if let weightSquaredGradient {
            let squares = try backend.uninitialized(outputShape)  // [S..., D]
            try backend.multiply(outputGradient, outputGradient, into: squares)
            try scatterAdd(squares, ids: ids, into: weightSquaredGradient)
        }
    }

    /// Scatter-adds `rows` into `table` by id, then restores the padding row's 0.
    private func scatterAdd(_ rows: Tensor, ids: Tensor, into table: Tensor) throws {
        try backend.scatterAdd(rows, ids: ids, into: table)
        if let paddingIndex {
            try backend.copy(zeroRow, sourceOffset: 0, into: table,
                             destinationOffset: Int(paddingIndex) * embeddingSize, count: embeddingSize)
        }
    }

    /// The multi-index of flat position `position` in a row-major `shape`, as `[t, b]`.
    private static func index(of position: Int, in shape: Shape) -> String {
        var remainder = position
        var index = [Int](repeating: 0, count: shape.rank)
        for axis in stride(from: shape.rank - 1, through: 0, by: -1) {
            index[axis] = remainder % shape[axis]
            remainder /= shape[axis]
        }
        return "[" + index.map(String.init).joined(separator: ", ") + "]"
    }

    // MARK: Lengths from padding

    /// The length of each padded sequence in a batch of ids: the steps from its first to its last
    /// non-padding id, counted from the end its padding is not on.
    ///
    /// With `post` padding a row's length is 1 + the index of its last non-padding id; with `pre`
    /// padding it is T − the index of its first. Padding ids inside a sequence count as steps; a
    /// row of padding only has length 0, which `RecurrentLayer` rejects (drop such rows first, see
    /// `PaddedSequences.nonEmptyIndices`).
    ///
    /// - Parameters:
    ///   - ids: `[T, B]` time-major (as `SequenceBatch.ids`), or `[B, T]` when `batchFirst`.
    ///   - steps: T.
    ///   - padding: which end of each row holds the padding.
    ///   - paddingIndex: the padding id, default 0.
    ///   - batchFirst: whether `ids` is `[B, T]`. Default false.
    /// - Returns: B lengths in `0...T`.
    public static func lengths(ofPadded ids: [Int32], steps: Int, padding: PaddingSide, paddingIndex: Int32 = 0,
                               batchFirst: Bool = false) throws -> [Int] {
        guard steps >= 1, !ids.isEmpty, ids.count % steps == 0 else {
            throw RecurError.shapeMismatch(
                operation: "Embedding.lengths", detail: "\(ids.count) ids do not form rows of \(steps) steps")
        }
        let batch = ids.count / steps
        return (0..<batch).map { b in
            let isReal = { (t: Int) in ids[batchFirst ? b * steps + t : t * batch + b] != paddingIndex }
            switch padding {
            case .post:
                return (0..<steps).last(where: isReal).map { $0 + 1 } ?? 0
            case .pre:
                return (0..<steps).first(where: isReal).map { steps - $0 } ?? 0
            }
        }
    }
}

extension Embedding: TokenInputLayer {
    /// D, whatever the input.
    /// - Parameter input: unused: the input is ids.
    /// - Returns: D.
    public func outputFeatures(input: Int?) -> Int? { embeddingSize }

    /// Looks up the ids of an int32 tensor. They are read back to the host to be checked first,
    /// so `forward(ids:shape:)`, which takes them from the host, is the cheaper call.
    /// - Parameters:
    ///   - input: int32 ids of any shape S.
    ///   - context: unused.
    /// - Returns: `[S..., D]`.
    public func forward(_ input: Tensor, context: LayerContext) throws -> Tensor {
        try backend.checkOperands("Embedding.forward", [input], dtype: .int32)
        return try forward(ids: try backend.downloadInt32(input), shape: input.shape)
    }

    /// `backward(_:)`: ids have no gradient.
    /// - Parameter outputGradient: shaped like the last forward's output.
    /// - Returns: nil.
    public func backward(from outputGradient: Tensor) throws -> Tensor? {
        try backward(outputGradient)
        return nil
    }
}
