// A training checkpoint: one safetensors file holding the model's parameters (`model.<name>`,
// PyTorch's state_dict names), the optimizer's state (`optimizer.<parameter>.<slot>`,
// `optimizer.<parameter>.step`, `optimizer.step`), a stateful run's carried hidden state
// mid-epoch (`state.<k>.hidden`, `state.<k>.cell` for recurrent layer k), and in its metadata the model specification,
// the training configuration and the progress as JSON. Written atomically (temporary file,
// fsync, rename), so a crash mid-write leaves the previous checkpoint whole.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A checkpoint in memory: what `Trainer` saves and resumes from.
public struct Checkpoint: Sendable {
    /// The `recur.format` metadata value of this layout.
    public static let format = "recur-checkpoint-1"

    /// The model's architecture (metadata `recur.model`).
    public var specification: ModelSpecification
    /// How the run trains (metadata `recur.training`).
    public var configuration: TrainingConfiguration
    /// Where the run stood when this was written (metadata `recur.progress`).
    public var progress: TrainingProgress
    /// Parameter values by name (without the `model.` prefix).
    public var parameters: [String: (shape: Shape, values: [Float])]
    /// Optimizer state tensors by name (without the `optimizer.` prefix): float32 slots and
    /// int32 step counts.
    public var optimizerFloats: [String: (shape: Shape, values: [Float])]
    /// The optimizer's update counts by name (`<parameter>.step`, `step`).
    public var optimizerCounts: [String: Int32]
    /// A stateful run's state carried into the next batch, by `"<k>.hidden"` and `"<k>.cell"`
    /// for the model's k-th recurrent layer (without the `state.` prefix); empty between epochs
    /// (the state restarts at zero) and for stateless runs.
    public var carriedState: [String: (shape: Shape, values: [Float])]
    /// The caller's metadata (a vocabulary, the data's description); keys outside `recur.`.
    public var metadata: [String: String]

    /// What the run recorded about its training data (the `data.*` keys of `metadata` that
    /// `recur train` writes): its source, vocabulary, classes, tags and standardisation.
    /// - Returns: the recorded data; fields the run did not record are nil.
    /// - Throws: `RecurError.malformed` naming a key whose value cannot be read.
    public func recordedData() throws -> RecordedData {
        try RecordedData(metadata: metadata)
    }

    /// Captures a run's state (downloads every tensor).
    /// - Parameters:
    ///   - specification: the model's architecture.
    ///   - configuration: how the run trains.
    ///   - progress: where the run stands (epochs, steps, history).
    ///   - model: the model whose parameters are saved.
    ///   - optimizer: the optimizer whose state is saved.
    ///   - metadata: the caller's entries (keys outside `recur.`).
    ///   - carriedState: a stateful run's state for the next batch, one per recurrent layer.
    public init(specification: ModelSpecification, configuration: TrainingConfiguration, progress: TrainingProgress,
                model: Sequential, optimizer: any Optimizer, metadata: [String: String],
                carriedState: [RecurrentState]? = nil) throws {
        if let reserved = metadata.keys.first(where: { $0.hasPrefix("recur.") }) {
            throw RecurError.invalidArgument(
                operation: "Checkpoint", detail: "metadata key '\(reserved)' uses the reserved prefix 'recur.'")
        }
        self.specification = specification
        self.configuration = configuration
        self.progress = progress
        self.metadata = metadata
        let tensors = try CheckpointTensors(parameters: model.parameters, optimizer: optimizer)
        parameters = tensors.parameters
        optimizerFloats = tensors.optimizerFloats
        optimizerCounts = tensors.optimizerCounts
        self.carriedState = [:]
        for (k, state) in (carriedState ?? []).enumerated() {
            self.carriedState["\(k).hidden"] = (state.hidden.shape, try state.hidden.toArray())
            if let cell = state.cell { self.carriedState["\(k).cell"] = (cell.shape, try cell.toArray()) }
        }
    }

    /// Writes the checkpoint to `path`, atomically.
    public func write(to path: String) throws {
        var fileMetadata = metadata
        fileMetadata["recur.format"] = Self.format
        fileMetadata["recur.model"] = try specification.json()
        fileMetadata["recur.training"] = try RecurJSON.string(configuration)
        fileMetadata["recur.progress"] = try RecurJSON.string(progress)
        var writer = SafeTensorsWriter(metadata: fileMetadata)
        try CheckpointTensors.add(parameters: parameters, optimizerFloats: optimizerFloats,
                                  optimizerCounts: optimizerCounts, to: &writer)
        for (name, state) in carriedState {
            try writer.add("state." + name, floats: state.values, shape: state.shape)
        }
        try writer.write(to: path)
    }

    /// Reads a checkpoint `write(to:)` wrote.
    /// - Throws: `RecurError.io` when the file can't be read; `RecurError.malformed` naming the
    ///   file for anything else: not safetensors, not a Recur checkpoint, metadata that doesn't
    ///   decode or validate, tensors of the wrong type.
    public init(contentsOf path: String) throws {
        try self.init(file: try SafeTensorsFile(contentsOf: path))
    }

    /// Reads a checkpoint from a safetensors file already parsed (`file.source` names it in errors).
    public init(file: SafeTensorsFile) throws {
        let path = file.source
        try file.checkRecurFormat(Self.format, kind: "a Recur checkpoint")
        func entry(_ key: String) throws -> String { try file.requiredMetadata(key) }
        specification = try ModelSpecification(json: try entry("recur.model"), source: path)
        configuration = try RecurJSON.decode(
            TrainingConfiguration.self, from: try entry("recur.training"), source: path, what: "recur.training")
        do {
            try configuration.validate()
        } catch {
            throw RecurError.malformed(source: path, detail: "recur.training: \(error)")
        }
        progress = try RecurJSON.decode(
            TrainingProgress.self, from: try entry("recur.progress"), source: path, what: "recur.progress")
        try progress.validate(epochs: configuration.epochs, source: path + ": recur.progress")
        metadata = file.metadata.filter { !$0.key.hasPrefix("recur.") }
        let tensors = try CheckpointTensors(file: file, otherPrefixes: ["state"])
        parameters = tensors.parameters
        optimizerFloats = tensors.optimizerFloats
        optimizerCounts = tensors.optimizerCounts
        carriedState = tensors.others["state"] ?? [:]
    }

    /// Copies the saved parameters into `model`, which must have exactly these names and shapes.
    /// - Throws: `RecurError.malformed` for a missing, extra or differently shaped parameter;
    ///   nothing is copied then.
    public func restoreParameters(of model: Sequential) throws {
        try CheckpointTensors.restore(parameters, into: model.parameters)
    }

    /// The optimizer state as `Optimizer.load(state:)` takes it, on `backend`.
    public func optimizerState(backend: any Backend) throws -> [NamedTensor] {
        try CheckpointTensors.optimizerState(floats: optimizerFloats, counts: optimizerCounts, backend: backend)
    }

    /// The carried state on `backend`, one per stateful layer of `model`, each shaped as that
    /// layer's state (`[L * D, batch, H]` for a recurrent stack); nil when the checkpoint holds none.
    /// - Throws: `RecurError.malformed` when the saved state does not fit the model (a layer
    ///   missing, a shape or a cell state that the cell does not have).
    public func carriedState(for model: Sequential, batch: Int, backend: any Backend) throws -> [RecurrentState]? {
        guard !carriedState.isEmpty else { return nil }
        let shapes = model.statefulLayers.map { $0.stateShapes(batchSize: batch) }
        let expected = Set(shapes.indices.flatMap { k in
            ["\(k).hidden"] + (shapes[k].cell != nil ? ["\(k).cell"] : [])
        })
        guard Set(carriedState.keys) == expected else {
            throw RecurError.malformed(
                source: "checkpoint", detail: "the carried state holds \(carriedState.keys.sorted()), "
                    + "the model needs \(expected.sorted())")
        }
        return try shapes.enumerated().map { k, layerShapes in
            func tensor(_ name: String, _ shape: Shape) throws -> Tensor? {
                guard let saved = carriedState[name] else { return nil }
                guard saved.shape == shape else {
                    throw RecurError.malformed(
                        source: "checkpoint", detail: "state.\(name) is \(saved.shape), the model's state is \(shape)")
                }
                return try backend.upload(saved.values, shape: shape)
            }
            return RecurrentState(hidden: try tensor("\(k).hidden", layerShapes.hidden)!,
                                  cell: try layerShapes.cell.flatMap { try tensor("\(k).cell", $0) })
        }
    }

    /// A model built from the specification with the saved parameters (for evaluation and
    /// generation).
    public func makeModel(backend: any Backend) throws -> Sequential {
        let model = try specification.makeModel(backend: backend)
        try restoreParameters(of: model)
        return model
    }
}

// A checkpoint's progress that fails to decode is explained field by field (`RecurJSON`).
extension TrainingProgress: DefaultConstructible {}
