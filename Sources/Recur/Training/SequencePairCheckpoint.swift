// A checkpoint of an encoder–decoder run: one safetensors file holding the model's parameters
// (`model.<name>`), the optimizer's state (`optimizer.<parameter>.<slot>`, `optimizer.<parameter>.step`,
// `optimizer.step`), and in its metadata the specification, the training configuration, the
// progress and both vocabularies as JSON. Written atomically (temporary file, fsync, rename).

/// An ``EncoderDecoder`` run in memory: what ``SequencePairTrainer`` saves and resumes from, and
/// all that decoding needs.
public struct SequencePairCheckpoint: Sendable {
    /// The `recur.format` metadata value of this layout.
    public static let format = "recur-seq2seq-checkpoint-1"

    /// The model's architecture (metadata `recur.model`).
    public var specification: EncoderDecoderSpecification
    /// How the run trains (metadata `recur.training`).
    public var configuration: SequencePairTrainingConfiguration
    /// Where the run stood (metadata `recur.progress`).
    public var progress: SequencePairTrainingProgress
    /// The source ids (metadata `data.source_tokens`: the tokens from id 4 on, as JSON).
    public var sourceVocabulary: SequenceVocabulary
    /// The target ids (metadata `data.target_tokens`).
    public var targetVocabulary: SequenceVocabulary
    /// How sources split into tokens (metadata `data.source_tokenizer`).
    public var sourceTokenizer: PairTokenizer
    /// How targets split into tokens (metadata `data.target_tokenizer`).
    public var targetTokenizer: PairTokenizer
    /// Parameter values by name (without the `model.` prefix).
    public var parameters: [String: (shape: Shape, values: [Float])]
    /// Optimizer state tensors by name (without the `optimizer.` prefix).
    public var optimizerFloats: [String: (shape: Shape, values: [Float])]
    /// The optimizer's update counts by name (`<parameter>.step`, `step`).
    public var optimizerCounts: [String: Int32]

    /// Captures a run (downloads every tensor).
    /// - Parameters:
    ///   - model: the model whose parameters are saved.
    ///   - configuration: how the run trains.
    ///   - progress: where it stands.
    ///   - optimizer: the optimizer whose state is saved.
    ///   - sourceVocabulary: the source ids.
    ///   - targetVocabulary: the target ids.
    ///   - sourceTokenizer: how sources split into tokens.
    ///   - targetTokenizer: how targets split into tokens.
    public init(model: EncoderDecoder, configuration: SequencePairTrainingConfiguration,
                progress: SequencePairTrainingProgress, optimizer: any Optimizer,
                sourceVocabulary: SequenceVocabulary, targetVocabulary: SequenceVocabulary,
                sourceTokenizer: PairTokenizer, targetTokenizer: PairTokenizer) throws {
        self.sourceTokenizer = sourceTokenizer
        self.targetTokenizer = targetTokenizer
        specification = model.specification
        self.configuration = configuration
        self.progress = progress
        self.sourceVocabulary = sourceVocabulary
        self.targetVocabulary = targetVocabulary
        let tensors = try CheckpointTensors(parameters: model.parameters, optimizer: optimizer)
        parameters = tensors.parameters
        optimizerFloats = tensors.optimizerFloats
        optimizerCounts = tensors.optimizerCounts
    }

    /// Writes the checkpoint to `path`, atomically.
    /// - Parameter path: the file to write.
    public func write(to path: String) throws {
        var writer = SafeTensorsWriter(metadata: [
            "recur.format": Self.format,
            "recur.model": try specification.json(),
            "recur.training": try RecurJSON.string(configuration),
            "recur.progress": try RecurJSON.string(progress),
            "data.source_tokens": try RecurJSON.string(Array(sourceVocabulary.tokens.dropFirst(4))),
            "data.target_tokens": try RecurJSON.string(Array(targetVocabulary.tokens.dropFirst(4))),
            "data.source_tokenizer": sourceTokenizer.rawValue,
            "data.target_tokenizer": targetTokenizer.rawValue,
        ])
        try CheckpointTensors.add(parameters: parameters, optimizerFloats: optimizerFloats,
                                  optimizerCounts: optimizerCounts, to: &writer)
        try writer.write(to: path)
    }

    /// Reads a checkpoint `write(to:)` wrote.
    /// - Parameter path: the file.
    /// - Throws: `RecurError.io` when the file can't be read; `RecurError.malformed` naming the
    ///   file for anything else (not this layout, metadata that does not decode or validate,
    ///   progress beyond the configured epochs, an unexpected tensor).
    public init(contentsOf path: String) throws {
        let file = try SafeTensorsFile(contentsOf: path)
        try file.checkRecurFormat(Self.format, kind: "an encoder-decoder checkpoint")
        func entry(_ key: String) throws -> String { try file.requiredMetadata(key) }
        specification = try EncoderDecoderSpecification(json: try entry("recur.model"), source: path)
        configuration = try RecurJSON.decode(SequencePairTrainingConfiguration.self, from: try entry("recur.training"),
                                             source: path, what: "recur.training")
        progress = try RecurJSON.decode(SequencePairTrainingProgress.self, from: try entry("recur.progress"),
                                        source: path, what: "recur.progress")
        do {
            try configuration.validate()
            sourceVocabulary = try SequenceVocabulary(tokens: try RecurJSON.decode(
                [String].self, from: try entry("data.source_tokens"), source: path, what: "data.source_tokens"))
            targetVocabulary = try SequenceVocabulary(tokens: try RecurJSON.decode(
                [String].self, from: try entry("data.target_tokens"), source: path, what: "data.target_tokens"))
            for (key, side) in [("data.source_tokenizer", "source"), ("data.target_tokenizer", "target")] {
                guard PairTokenizer(rawValue: try entry(key)) != nil else {
                    throw RecurError.malformed(
                        source: path, detail: "\(key) '\(try entry(key))' names no \(side) tokenizer")
                }
            }
        } catch let error as RecurError {
            if case .malformed = error { throw error }
            throw RecurError.malformed(source: path, detail: "\(error)")
        }
        guard progress.completedEpochs >= 0, progress.completedEpochs <= configuration.epochs, progress.step >= 0,
              progress.history.count == progress.completedEpochs else {
            throw RecurError.malformed(
                source: path, detail: "recur.progress: \(progress.completedEpochs) epochs finished of "
                    + "\(configuration.epochs) with \(progress.history.count) records at step \(progress.step) "
                    + "cannot belong to this run")
        }
        guard sourceVocabulary.count == specification.sourceVocabularySize,
              targetVocabulary.count == specification.targetVocabularySize else {
            throw RecurError.malformed(
                source: path, detail: "vocabularies of \(sourceVocabulary.count) and \(targetVocabulary.count) ids "
                    + "for a model of \(specification.sourceVocabularySize) and \(specification.targetVocabularySize)")
        }
        sourceTokenizer = PairTokenizer(rawValue: try entry("data.source_tokenizer"))!
        targetTokenizer = PairTokenizer(rawValue: try entry("data.target_tokenizer"))!
        let tensors = try CheckpointTensors(file: file)
        parameters = tensors.parameters
        optimizerFloats = tensors.optimizerFloats
        optimizerCounts = tensors.optimizerCounts
    }

    /// The model of the specification with the saved parameters.
    /// - Parameter backend: the device to build it on.
    /// - Throws: `RecurError.malformed` for a missing, extra or differently shaped parameter.
    public func makeModel(backend: any Backend) throws -> EncoderDecoder {
        let model = try EncoderDecoder(specification: specification, backend: backend)
        try CheckpointTensors.restore(parameters, into: model.parameters)
        return model
    }

    /// The optimizer state as `Optimizer.load(state:)` takes it, on `backend`.
    /// - Parameter backend: the device of the optimizer.
    public func optimizerState(backend: any Backend) throws -> [NamedTensor] {
        try CheckpointTensors.optimizerState(floats: optimizerFloats, counts: optimizerCounts, backend: backend)
    }
}
