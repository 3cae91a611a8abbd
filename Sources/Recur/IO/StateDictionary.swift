// Parameters to and from safetensors files under PyTorch's state_dict names, so weights trained
// in PyTorch (`safetensors.torch.save_file(model.state_dict(), path)`) load into the matching
// Recur layer, and Recur's weights load back into PyTorch.

/// Reads and writes a model's parameters as a safetensors state dictionary.
public enum StateDictionary {
    /// Copies each parameter's value from the tensor of the same name (after `prefix`) in `file`.
    ///
    /// Every parameter must be present with its exact shape, and every tensor in the file whose
    /// name starts with `prefix` must be a parameter, so a file for another architecture is
    /// rejected instead of half-loaded. Values are converted to float32 (F32, F64, F16 and BF16
    /// are accepted). Nothing is copied unless every check passes.
    /// - Parameters:
    ///   - parameters: the model's parameters, whose values are overwritten.
    ///   - file: the state dictionary to read.
    ///   - prefix: prepended to every parameter name to find its tensor (`model.` in a checkpoint).
    ///   - optionalNames: `allowingAbsent:`, parameter names that may be absent (PyTorch's
    ///     `bias=False`); they are set to 0.
    ///   - isParameterEntry: which of the file's names hold parameters (all by default); a file
    ///     that also stores other tensors, such as a test fixture's inputs, narrows it.
    /// - Returns: the names of the parameters that were absent.
    /// - Throws: `RecurError.malformed` naming the file and the offending tensor.
    @discardableResult
    public static func load(_ parameters: [NamedParameter], from file: SafeTensorsFile, prefix: String = "",
                            allowingAbsent optionalNames: Set<String> = [],
                            isParameterEntry: (String) -> Bool = { _ in true }) throws -> Set<String> {
        let expected = Set(parameters.map { prefix + $0.name })
        for name in file.names where name.hasPrefix(prefix) && isParameterEntry(name) && !expected.contains(name) {
            throw RecurError.malformed(source: file.source, detail: "\(name) is not a parameter of this model")
        }
        var staged: [(Tensor, [Float])] = []
        var absent: Set<String> = []
        for parameter in parameters {
            let name = prefix + parameter.name
            guard file.contains(name) else {
                guard optionalNames.contains(parameter.name) else {
                    throw RecurError.malformed(source: file.source, detail: "missing parameter \(name)")
                }
                absent.insert(parameter.name)
                staged.append((parameter.value, [Float](repeating: 0, count: parameter.value.count)))
                continue
            }
            let shape = try file.shape(of: name)
            guard shape == parameter.value.shape else {
                throw RecurError.malformed(
                    source: file.source, detail: "\(name) is \(shape), the model expects \(parameter.value.shape)")
            }
            staged.append((parameter.value, try file.floats(name)))
        }
        for (tensor, values) in staged {
            let backend = tensor.backend
            let upload = try backend.upload(values, shape: tensor.shape)
            try backend.copy(upload, sourceOffset: 0, into: tensor, destinationOffset: 0, count: tensor.count)
        }
        return absent
    }

    /// Writes every parameter's value as float32 under `prefix + name`, with `metadata`,
    /// atomically (temporary file, fsync, rename): an earlier file at `path` survives a crash.
    public static func write(_ parameters: [NamedParameter], to path: String, prefix: String = "",
                             metadata: [String: String] = [:]) throws {
        var writer = SafeTensorsWriter(metadata: metadata)
        for parameter in parameters {
            try writer.add(prefix + parameter.name, floats: try parameter.value.toArray(), shape: parameter.value.shape)
        }
        try writer.write(to: path)
    }
}
