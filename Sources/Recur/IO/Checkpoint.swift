// A training checkpoint: one safetensors file holding the model's parameters (`model.<name>`,
// PyTorch's state_dict names), the optimizer's state (`optimizer.<parameter>.<slot>`,
// `optimizer.<parameter>.step`, `optimizer.step`), and in its metadata the model specification,
// the training configuration and the progress as JSON. Written atomically (temporary file,
// fsync, rename), so a crash mid-write leaves the previous checkpoint whole.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// JSON as Recur writes it in checkpoints and logs: sorted keys, and NaN and infinities as the
/// strings `"nan"`, `"inf"`, `"-inf"` (a diverged run's metrics must still be writable).
enum RecurJSON {
    static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return encoder
    }

    static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return decoder
    }

    static func string(_ value: some Encodable) throws -> String {
        String(decoding: try encoder().encode(value), as: UTF8.self)
    }

    /// Decodes `text`, or throws `RecurError.malformed` naming `source` and `what` was expected.
    static func decode<Value: Decodable>(_ type: Value.Type, from text: String, source: String,
                                         what: String) throws -> Value {
        do {
            return try decoder().decode(type, from: Data(text.utf8))
        } catch let error as DecodingError {
            var detail = describe(error)
            if case .dataCorrupted(let context) = error, context.codingPath.isEmpty,
               let parsed = try? SafeTensorsJSON.parse(Array(text.utf8)[...]) {
                // The text is JSON, so the decoder refused a number that does not fit its field
                // (1.5 or 1e30 where an integer belongs) without saying which: name the
                // candidates, numbers that are no integer held under names of integer fields.
                let misfits = integerMisfits(in: parsed, integerFields: integerFieldNames(of: Value.self))
                detail = "a number does not fit its field" + (misfits.isEmpty ? "" : ": " + misfits.joined(separator: ", "))
            }
            throw RecurError.malformed(source: source, detail: "\(what): \(detail)")
        } catch {
            throw RecurError.malformed(source: source, detail: "\(what) is not valid: \(error)")
        }
    }

    /// Names of the integer properties of `type`, read from a default value where it has one.
    private static func integerFieldNames<Value>(of type: Value.Type) -> Set<String> {
        guard let template = (type as? any DefaultConstructible.Type)?.init() else { return [] }
        return Set(Mirror(reflecting: template).children.compactMap { child in
            // By the static type: a nil of any optional type would pass `is Int?`.
            let fieldType = Swift.type(of: child.value)
            return fieldType == Int.self || fieldType == Int?.self ? child.label : nil
        })
    }

    /// "field 'name' is 1.5 (an integer belongs there)" for every number under one of
    /// `integerFields` that is not an integer Swift's Int can hold, at any depth.
    private static func integerMisfits(in value: SafeTensorsJSON, integerFields: Set<String>) -> [String] {
        switch value {
        case .array(let items):
            return items.flatMap { integerMisfits(in: $0, integerFields: integerFields) }
        case .object(let members):
            return members.flatMap { member -> [String] in
                if case .number(let text) = member.value, integerFields.contains(member.key), Int(text) == nil {
                    return ["field '\(member.key)' is \(text) where an integer belongs"]
                }
                return integerMisfits(in: member.value, integerFields: integerFields)
            }
        default:
            return []
        }
    }

    /// A decoding error as one line naming the field: "field 'epoch': expected an integer, …".
    static func describe(_ error: DecodingError) -> String {
        func field(_ path: [any CodingKey]) -> String {
            let names = path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
            return names.isEmpty ? "the top level" : "field '\(names.joined(separator: "."))'"
        }
        func kind(_ type: Any.Type) -> String {
            switch type {
            case is Int.Type, is Int32.Type, is Int64.Type, is UInt64.Type, is UInt32.Type: "an integer"
            case is Double.Type, is Float.Type: "a number"
            case is String.Type: "a string"
            case is Bool.Type: "true or false"
            default: "\(type)"
            }
        }
        switch error {
        case let .typeMismatch(type, context):
            return "\(field(context.codingPath)): expected \(kind(type))"
        case let .valueNotFound(type, context):
            return "\(field(context.codingPath)): expected \(kind(type)), found null"
        case let .keyNotFound(key, context):
            return "\(field(context.codingPath + [key])) is missing"
        case let .dataCorrupted(context):
            // Foundation reports a number that does not fit its field (1.5 or 1e30 for an
            // integer) here, with the number in the description.
            return "\(field(context.codingPath)): \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }
}

/// A type with a default value, whose properties `RecurJSON` can list to explain a decoding error.
protocol DefaultConstructible {
    init()
}

extension TrainingProgress: DefaultConstructible {}

/// A checkpoint in memory: what `Trainer` saves and resumes from.
public struct Checkpoint: Sendable {
    /// The `recur.format` metadata value of this layout.
    public static let format = "recur-checkpoint-1"

    public var specification: ModelSpecification
    public var configuration: TrainingConfiguration
    public var progress: TrainingProgress
    /// Parameter values by name (without the `model.` prefix).
    public var parameters: [String: (shape: Shape, values: [Float])]
    /// Optimizer state tensors by name (without the `optimizer.` prefix): float32 slots and
    /// int32 step counts.
    public var optimizerFloats: [String: (shape: Shape, values: [Float])]
    public var optimizerCounts: [String: Int32]
    /// The caller's metadata (a vocabulary, the data's description); keys outside `recur.`.
    public var metadata: [String: String]

    /// Captures a run's state (downloads every tensor).
    public init(specification: ModelSpecification, configuration: TrainingConfiguration, progress: TrainingProgress,
                model: Sequential, optimizer: any Optimizer, metadata: [String: String]) throws {
        if let reserved = metadata.keys.first(where: { $0.hasPrefix("recur.") }) {
            throw RecurError.invalidArgument(
                operation: "Checkpoint", detail: "metadata key '\(reserved)' uses the reserved prefix 'recur.'")
        }
        self.specification = specification
        self.configuration = configuration
        self.progress = progress
        self.metadata = metadata
        parameters = [:]
        for parameter in model.parameters {
            parameters[parameter.name] = (parameter.value.shape, try parameter.value.toArray())
        }
        optimizerFloats = [:]
        optimizerCounts = [:]
        for entry in try optimizer.state() {
            if entry.tensor.dtype == .int32 {
                optimizerCounts[entry.name] = try entry.tensor.backend.downloadInt32(entry.tensor)[0]
            } else {
                optimizerFloats[entry.name] = (entry.tensor.shape, try entry.tensor.toArray())
            }
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
        for (name, parameter) in parameters {
            try writer.add("model." + name, floats: parameter.values, shape: parameter.shape)
        }
        for (name, state) in optimizerFloats {
            try writer.add("optimizer." + name, floats: state.values, shape: state.shape)
        }
        for (name, count) in optimizerCounts {
            try writer.add("optimizer." + name, int32s: [count], shape: [1])
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
        guard file.metadata["recur.format"] == Self.format else {
            throw RecurError.malformed(
                source: path, detail: "not a Recur checkpoint (recur.format is "
                    + "\(file.metadata["recur.format"].map { "'\($0)'" } ?? "absent"), expected '\(Self.format)')")
        }
        func entry(_ key: String) throws -> String {
            guard let value = file.metadata[key] else {
                throw RecurError.malformed(source: path, detail: "the metadata lacks '\(key)'")
            }
            return value
        }
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
        parameters = [:]
        optimizerFloats = [:]
        optimizerCounts = [:]
        for name in file.names {
            if name.hasPrefix("model.") {
                parameters[String(name.dropFirst(6))] = (try file.shape(of: name), try file.floats(name))
            } else if name.hasPrefix("optimizer.") {
                let key = String(name.dropFirst(10))
                switch try file.dtype(of: name) {
                case .int32:
                    let values = try file.int32s(name)
                    guard values.count == 1 else {
                        throw RecurError.malformed(source: path, detail: "\(name) must hold one count")
                    }
                    optimizerCounts[key] = values[0]
                default:
                    optimizerFloats[key] = (try file.shape(of: name), try file.floats(name))
                }
            } else {
                throw RecurError.malformed(source: path, detail: "unexpected tensor '\(name)'")
            }
        }
    }

    /// Copies the saved parameters into `model`, which must have exactly these names and shapes.
    /// - Throws: `RecurError.malformed` for a missing, extra or differently shaped parameter;
    ///   nothing is copied then.
    public func restoreParameters(of model: Sequential) throws {
        let expected = Set(model.parameters.map(\.name))
        if let extra = parameters.keys.sorted().first(where: { !expected.contains($0) }) {
            throw RecurError.malformed(source: "checkpoint", detail: "model.\(extra) is not a parameter of this model")
        }
        var staged: [(Tensor, [Float])] = []
        for parameter in model.parameters {
            guard let saved = parameters[parameter.name] else {
                throw RecurError.malformed(source: "checkpoint", detail: "missing parameter model.\(parameter.name)")
            }
            guard saved.shape == parameter.value.shape else {
                throw RecurError.malformed(
                    source: "checkpoint",
                    detail: "model.\(parameter.name) is \(saved.shape), the model expects \(parameter.value.shape)")
            }
            staged.append((parameter.value, saved.values))
        }
        for (tensor, values) in staged {
            let upload = try tensor.backend.upload(values, shape: tensor.shape)
            try tensor.backend.copy(upload, sourceOffset: 0, into: tensor, destinationOffset: 0, count: tensor.count)
        }
    }

    /// The optimizer state as `Optimizer.load(state:)` takes it, on `backend`.
    public func optimizerState(backend: any Backend) throws -> [NamedTensor] {
        var state: [NamedTensor] = []
        for (name, saved) in optimizerFloats.sorted(by: { $0.key < $1.key }) {
            state.append(NamedTensor(name: name, tensor: try backend.upload(saved.values, shape: saved.shape)))
        }
        for (name, count) in optimizerCounts.sorted(by: { $0.key < $1.key }) {
            state.append(NamedTensor(name: name, tensor: try backend.upload([count], shape: [1])))
        }
        return state
    }

    /// A model built from the specification with the saved parameters (for evaluation and
    /// generation).
    public func makeModel(backend: any Backend) throws -> Sequential {
        let model = try specification.makeModel(backend: backend)
        try restoreParameters(of: model)
        return model
    }
}
