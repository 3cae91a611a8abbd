// What a trained model is, as data: enough to build the same `Sequential` again, stored as JSON
// in every checkpoint so that `recur evaluate` and `recur generate` need only the file.
//
// Shape legend: T time steps, B batch, V vocabulary, D embedding width, H hidden units,
// K outputs per step or per sequence.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What a model predicts, which fixes its head, its loss and its metrics.
public enum ModelTask: String, Sendable, CaseIterable, Codable {
    /// Many-to-one classification of id sequences: Embedding → recurrent (last state) → Dense.
    /// Two classes use one logit and sigmoid cross-entropy; more use softmax cross-entropy.
    case classify
    /// Many-to-many tagging: one class per non-padding step, softmax cross-entropy that ignores
    /// padding (tag id 0).
    case tag
    /// Next-token language modelling: a distribution over the vocabulary at every step.
    case lm
    /// Regression of the next `outputSize` values of a series from a window of float inputs,
    /// mean squared error.
    case forecast
}

/// Which framework's default initialisers a model starts from.
public enum ModelInitialization: String, Sendable, CaseIterable, Codable {
    case keras
    case pytorch
}

/// A model's architecture and initialisation seed: `makeModel(backend:)` builds it.
///
/// The layers are, by task:
/// - classify: `Embedding(V, D)` → `RecurrentLayer` (many-to-one) → [`Dropout`] → `Dense(K)`
/// - tag, lm: `Embedding(V, D)` → `RecurrentLayer` (sequences) → [`Dropout`] → `Dense(K)`
/// - forecast: `RecurrentLayer` over `[T, B, inputFeatures]` (many-to-one) → [`Dropout`] → `Dense(K)`
///
/// The `Dropout` layer is there only when `outputDropout > 0`, so parameter names (`0.weight`,
/// `1.weight_ih_l0`, `2.weight` or `3.weight`) follow PyTorch's `nn.Sequential` numbering of
/// the layers that exist.
public struct ModelSpecification: Sendable, Equatable, Codable {
    /// What the model predicts; decides the layers, the loss and the metrics.
    public var task: ModelTask
    /// V: ids the embedding knows (padding 0 and OOV 1 included); nil for `forecast`.
    public var vocabularySize: Int?
    /// D: the embedding width; nil for `forecast`.
    public var embeddingSize: Int?
    /// Features per time step of a float input (`forecast`); nil otherwise.
    public var inputFeatures: Int?
    /// The recurrent cell.
    public var cell: RecurrentCell
    /// H: hidden units per direction.
    public var hiddenSize: Int
    /// P: the features of h with a projection (PyTorch's `proj_size`, the `lstm_projection`
    /// cell), or nil for none; absent from the JSON of a model without one.
    public var projectionSize: Int?
    /// L: stacked recurrent layers.
    public var layerCount: Int
    /// Whether the recurrent layers also scan backwards (D = 2).
    public var bidirectional: Bool
    /// Keras's `dropout`: one mask per sequence on the recurrent layer's input.
    public var inputDropout: Float
    /// Keras's `recurrent_dropout`: one mask per sequence on h_{t-1} (Gal & Ghahramani).
    public var recurrentDropout: Float
    /// PyTorch's `dropout`: on the output of every recurrent layer but the last.
    public var layerDropout: Float
    /// A `Dropout` layer between the recurrent stack and the head.
    public var outputDropout: Float
    /// K: classes (1 for two classes), tags, vocabulary size, or forecast horizon.
    public var outputSize: Int
    /// Seeds every layer's initial parameters (each layer derives its own stream).
    public var seed: UInt64
    /// Whether the embedding's row 0 (padding) is a trained vector, as in a Keras `Embedding`
    /// without `mask_zero`, for models that read the padding; false keeps it 0 with no gradient
    /// (PyTorch's `padding_idx`).
    public var trainsPaddingEmbedding: Bool
    /// Keras's initialisers (Embedding U(±0.05), Glorot-uniform kernels, orthogonal recurrent
    /// blocks, forget-gate bias 1, Glorot-uniform Dense with zero bias) or PyTorch's.
    public var initialization: ModelInitialization

    /// A specification; `validate()` checks it.
    ///
    /// - Parameters:
    ///   - task: what the model predicts.
    ///   - vocabularySize: V, for the tasks that read ids.
    ///   - embeddingSize: D, for the tasks that read ids.
    ///   - inputFeatures: the features per step of a forecast model.
    ///   - cell: the recurrent cell; `lstm` with a `projectionSize` is stored as `lstm_projection`.
    ///   - hiddenSize: H.
    ///   - projectionSize: P, the features of h with a projection; nil or 0 for none.
    ///   - layerCount: L.
    ///   - bidirectional: whether D = 2.
    ///   - inputDropout: Keras's `dropout`.
    ///   - recurrentDropout: Keras's `recurrent_dropout`.
    ///   - layerDropout: PyTorch's `dropout` between recurrent layers.
    ///   - outputDropout: a `Dropout` layer before the head.
    ///   - outputSize: K.
    ///   - seed: seeds every layer's initial parameters.
    ///   - initialization: Keras's or PyTorch's initialisers.
    ///   - trainsPaddingEmbedding: whether the embedding's padding row is trained.
    public init(task: ModelTask, vocabularySize: Int? = nil, embeddingSize: Int? = nil, inputFeatures: Int? = nil,
                cell: RecurrentCell, hiddenSize: Int, projectionSize: Int? = nil, layerCount: Int = 1,
                bidirectional: Bool = false, inputDropout: Float = 0, recurrentDropout: Float = 0,
                layerDropout: Float = 0, outputDropout: Float = 0, outputSize: Int, seed: UInt64 = 0,
                initialization: ModelInitialization = .keras, trainsPaddingEmbedding: Bool = false) {
        self.task = task
        self.vocabularySize = vocabularySize
        self.embeddingSize = embeddingSize
        self.inputFeatures = inputFeatures
        let projectionSize = projectionSize == 0 ? nil : projectionSize
        // An invalid combination keeps the cell as given; validate() names the problem.
        self.cell = (try? cell.projected(to: projectionSize, hiddenSize: hiddenSize, operation: "")) ?? cell
        self.projectionSize = projectionSize
        self.hiddenSize = hiddenSize
        self.layerCount = layerCount
        self.bidirectional = bidirectional
        self.inputDropout = inputDropout
        self.recurrentDropout = recurrentDropout
        self.layerDropout = layerDropout
        self.outputDropout = outputDropout
        self.outputSize = outputSize
        self.seed = seed
        self.initialization = initialization
        self.trainsPaddingEmbedding = trainsPaddingEmbedding
    }

    /// Whether the model reads ids through an embedding (every task but `forecast`).
    public var readsIDs: Bool { task != .forecast }

    /// Whether the recurrent stack returns every step (tag, lm) or the last state.
    public var returnsSequences: Bool { task == .tag || task == .lm }

    /// The loss the task trains with.
    public var loss: Loss {
        switch task {
        case .classify: outputSize == 1 ? .sigmoidCrossEntropy : .softmaxCrossEntropy(ignoreIndex: nil)
        case .tag, .lm: .softmaxCrossEntropy(ignoreIndex: Vocabulary.paddingID)
        case .forecast: .meanSquaredError
        }
    }

    /// Checks every size and probability, naming the first bad field.
    public func validate() throws {
        let operation = "ModelSpecification"
        func fail(_ detail: String) -> RecurError { .invalidArgument(operation: operation, detail: detail) }
        if readsIDs {
            guard let vocabularySize, vocabularySize >= 2 else {
                throw fail("a \(task) model needs vocabularySize >= 2 (padding and OOV), got \(String(describing: vocabularySize))")
            }
            guard let embeddingSize, embeddingSize >= 1 else {
                throw fail("a \(task) model needs embeddingSize >= 1, got \(String(describing: embeddingSize))")
            }
            guard inputFeatures == nil else { throw fail("inputFeatures is only for forecast models") }
        } else {
            guard let inputFeatures, inputFeatures >= 1 else {
                throw fail("a forecast model needs inputFeatures >= 1, got \(String(describing: inputFeatures))")
            }
            guard vocabularySize == nil, embeddingSize == nil else {
                throw fail("a forecast model reads floats: vocabularySize and embeddingSize must be absent")
            }
        }
        for (name, size) in [("hiddenSize", hiddenSize), ("layerCount", layerCount), ("outputSize", outputSize)]
        where size < 1 {
            throw fail("\(name) must be at least 1, got \(size)")
        }
        // Far beyond any model this library trains: guards a checkpoint's metadata against sizes
        // whose parameter count would not fit in memory (or in Int).
        let limit = 1 << 24
        for (name, size) in [("vocabularySize", vocabularySize ?? 1), ("embeddingSize", embeddingSize ?? 1),
                             ("inputFeatures", inputFeatures ?? 1), ("hiddenSize", hiddenSize),
                             ("outputSize", outputSize)] where size > limit {
            throw fail("\(name) \(size) exceeds \(limit)")
        }
        guard layerCount <= 64 else { throw fail("layerCount \(layerCount) exceeds 64") }
        let projected = try cell.projected(to: projectionSize, hiddenSize: hiddenSize, operation: operation)
        guard projected == cell else {
            throw fail("a \(cell) model with projectionSize \(projectionSize ?? 0) is a \(projected) model: its cell must say so")
        }
        guard parameterCount <= 1 << 31 else { throw fail("the model would have \(parameterCount) parameters") }
        if task == .lm, outputSize != vocabularySize {
            throw fail("a language model predicts its vocabulary: outputSize \(outputSize) != vocabularySize \(vocabularySize ?? 0)")
        }
        for (name, p) in [("inputDropout", inputDropout), ("recurrentDropout", recurrentDropout),
                          ("layerDropout", layerDropout), ("outputDropout", outputDropout)]
        where !(p >= 0 && p < 1) {
            throw fail("\(name) must lie in [0, 1), got \(p)")
        }
    }

    /// The number of float32 parameters the model holds (computed from the sizes, no allocation).
    public var parameterCount: Int {
        let directions = bidirectional ? 2 : 1
        var count = 0
        if readsIDs { count += (vocabularySize ?? 0) * (embeddingSize ?? 0) }
        var input = readsIDs ? (embeddingSize ?? 0) : (inputFeatures ?? 0)
        for _ in 0..<layerCount {
            count += directions * cell.parameterCount(inputSize: input, hiddenSize: hiddenSize,
                                                      projectionSize: projectionSize)
            input = directions * (projectionSize ?? hiddenSize)
        }
        return count + input * outputSize + outputSize
    }

    /// Builds the model, initialised from `seed`, on `backend`.
    public func makeModel(backend: any Backend) throws -> Sequential {
        try validate()
        var layers: [any Layer] = []
        var random = SeededRandom(seed: seed)
        var recurrentInput = inputFeatures ?? 0
        if readsIDs, let vocabularySize, let embeddingSize {
            layers.append(try Embedding(
                vocabularySize: vocabularySize, embeddingSize: embeddingSize,
                paddingIndex: trainsPaddingEmbedding ? nil : Vocabulary.paddingID,
                initialization: initialization == .keras ? .keras : .pytorch, seed: random.next(), backend: backend))
            recurrentInput = embeddingSize
        }
        layers.append(try RecurrentLayer(
            cell: cell, inputSize: recurrentInput, hiddenSize: hiddenSize, layerCount: layerCount,
            bidirectional: bidirectional, dropout: layerDropout, inputDropout: inputDropout,
            recurrentDropout: recurrentDropout, projectionSize: projectionSize, returnSequences: returnsSequences,
            initialization: initialization == .keras ? .keras : .pytorch, seed: random.next(), backend: backend))
        let dropoutSeed = random.next()
        if outputDropout > 0 {
            layers.append(try Dropout(probability: outputDropout, seed: dropoutSeed, backend: backend))
        }
        layers.append(try Dense(
            inputSize: (bidirectional ? 2 : 1) * (projectionSize ?? hiddenSize), outputSize: outputSize,
            initialization: initialization == .keras ? .glorotUniform : .pytorch, seed: random.next(),
            backend: backend))
        return try Sequential(layers)
    }

    /// The specification as compact JSON with sorted keys (stable bytes for the same model).
    public func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    /// Reads a specification `json()` wrote, and validates it.
    /// - Throws: `RecurError.malformed` (naming `source`) for JSON that is not a specification.
    public init(json: String, source: String) throws {
        self = try RecurJSON.decode(ModelSpecification.self, from: json, source: source, what: "recur.model")
        do {
            try validate()
        } catch {
            throw RecurError.malformed(source: source, detail: "the model specification is invalid: \(error)")
        }
    }
}
