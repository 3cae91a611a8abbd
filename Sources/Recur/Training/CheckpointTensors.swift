// The tensors every kind of checkpoint holds, and how they are captured, written and read:
// parameters under `model.`, optimizer state under `optimizer.` (float32 slots and int32 counts),
// and any other prefix the caller allows (a stateful run's `state.`).

/// Tensors held on the host by name, each with its shape.
typealias HostTensors = [String: (shape: Shape, values: [Float])]

/// The host copies of a model's parameters and an optimizer's state.
struct CheckpointTensors {
    /// Parameter values by name, without the `model.` prefix.
    var parameters: HostTensors = [:]
    /// The optimizer's float32 state by name, without the `optimizer.` prefix.
    var optimizerFloats: HostTensors = [:]
    /// The optimizer's update counts by name (`<parameter>.step`, `step`).
    var optimizerCounts: [String: Int32] = [:]
    /// Tensors under the other prefixes read from a file, by prefix (without its dot) and name.
    var others: [String: HostTensors] = [:]

    /// Downloads `parameters` and the optimizer's state.
    init(parameters: [NamedParameter], optimizer: any Optimizer) throws {
        for parameter in parameters {
            self.parameters[parameter.name] = (parameter.value.shape, try parameter.value.toArray())
        }
        for entry in try optimizer.state() {
            if entry.tensor.dtype == .int32 {
                optimizerCounts[entry.name] = try entry.tensor.backend.downloadInt32(entry.tensor)[0]
            } else {
                optimizerFloats[entry.name] = (entry.tensor.shape, try entry.tensor.toArray())
            }
        }
    }

    /// Reads the tensors of `file`: `model.`, `optimizer.` and the prefixes in `otherPrefixes`.
    /// - Throws: `RecurError.malformed` naming the file for a tensor under another prefix, or an
    ///   int32 optimizer count that is not one value.
    init(file: SafeTensorsFile, otherPrefixes: [String] = []) throws {
        let path = file.source
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
            } else if let prefix = otherPrefixes.first(where: { name.hasPrefix($0 + ".") }) {
                others[prefix, default: [:]][String(name.dropFirst(prefix.count + 1))] =
                    (try file.shape(of: name), try file.floats(name))
            } else {
                throw RecurError.malformed(source: path, detail: "unexpected tensor '\(name)'")
            }
        }
    }

    /// Adds the parameters and the optimizer's state to `writer` under their prefixes.
    static func add(parameters: HostTensors, optimizerFloats: HostTensors, optimizerCounts: [String: Int32],
                    to writer: inout SafeTensorsWriter) throws {
        for (name, parameter) in parameters {
            try writer.add("model." + name, floats: parameter.values, shape: parameter.shape)
        }
        for (name, state) in optimizerFloats {
            try writer.add("optimizer." + name, floats: state.values, shape: state.shape)
        }
        for (name, count) in optimizerCounts {
            try writer.add("optimizer." + name, int32s: [count], shape: [1])
        }
    }

    /// The optimizer state as `Optimizer.load(state:)` takes it, uploaded to `backend`.
    static func optimizerState(floats: HostTensors, counts: [String: Int32], backend: any Backend) throws
        -> [NamedTensor]
    {
        var state: [NamedTensor] = []
        for (name, saved) in floats.sorted(by: { $0.key < $1.key }) {
            state.append(NamedTensor(name: name, tensor: try backend.upload(saved.values, shape: saved.shape)))
        }
        for (name, count) in counts.sorted(by: { $0.key < $1.key }) {
            state.append(NamedTensor(name: name, tensor: try backend.upload([count], shape: [1])))
        }
        return state
    }

    /// Copies saved values into `parameters`, which must have exactly these names and shapes.
    /// - Throws: `RecurError.malformed` for a missing, extra or differently shaped parameter;
    ///   nothing is copied then.
    static func restore(_ saved: HostTensors, into parameters: [NamedParameter]) throws {
        let expected = Set(parameters.map(\.name))
        if let extra = saved.keys.sorted().first(where: { !expected.contains($0) }) {
            throw RecurError.malformed(source: "checkpoint", detail: "model.\(extra) is not a parameter of this model")
        }
        var staged: [(Tensor, [Float])] = []
        for parameter in parameters {
            guard let values = saved[parameter.name] else {
                throw RecurError.malformed(source: "checkpoint", detail: "missing parameter model.\(parameter.name)")
            }
            guard values.shape == parameter.value.shape else {
                throw RecurError.malformed(
                    source: "checkpoint",
                    detail: "model.\(parameter.name) is \(values.shape), the model expects \(parameter.value.shape)")
            }
            staged.append((parameter.value, values.values))
        }
        for (tensor, values) in staged {
            let upload = try tensor.backend.upload(values, shape: tensor.shape)
            try tensor.backend.copy(upload, sourceOffset: 0, into: tensor, destinationOffset: 0, count: tensor.count)
        }
    }
}

extension SafeTensorsFile {
    /// Throws unless the file's `recur.format` is `format`.
    /// - Parameters:
    ///   - format: the format the caller reads.
    ///   - kind: what such a file is, for the message (`a Recur checkpoint`).
    func checkRecurFormat(_ format: String, kind: String) throws {
        guard metadata["recur.format"] == format else {
            throw RecurError.malformed(
                source: source, detail: "not \(kind) (recur.format is "
                    + "\(metadata["recur.format"].map { "'\($0)'" } ?? "absent"), expected '\(format)')")
        }
    }

    /// The metadata entry `key`; throws when the file lacks it.
    /// - Parameter key: the metadata key.
    func requiredMetadata(_ key: String) throws -> String {
        guard let value = metadata[key] else {
            throw RecurError.malformed(source: source, detail: "the metadata lacks '\(key)'")
        }
        return value
    }
}
