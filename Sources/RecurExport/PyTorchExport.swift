// A trained model as a PyTorch state dict in a safetensors file: the checkpoint's parameters
// under the names `nn.Sequential(nn.Embedding, nn.LSTM, [nn.Dropout], nn.Linear)` gives them,
// without the optimizer's state, and the metadata that rebuilds the modules.

import Recur

/// Writes a checkpoint's model as a PyTorch `state_dict`.
///
/// The names are those of an `nn.Sequential` of the model's layers: `0.weight` (embedding),
/// `1.weight_ih_l0`, `1.weight_hh_l0`, `1.bias_ih_l0`, `1.bias_hh_l0` (and `_reverse`, `_l1`, …
/// of `nn.RNN`, `nn.GRU` or `nn.LSTM` with `batch_first` or not: the names do not depend on
/// it), then `2.weight`, `2.bias` (`nn.Linear`), or `3.` when an `nn.Dropout` sits before the
/// head; a forecaster has no embedding, so its indices start one lower. The metadata holds the
/// model specification (`recur.model`) and the checkpoint's `data.*` entries (vocabulary,
/// classes, padding side, standardisation).
public enum PyTorchExport {
    /// The metadata key of the model specification (JSON of `ModelSpecification`).
    public static let specificationKey = "recur.model"

    /// Writes the state dict of `checkpoint` to `path` atomically.
    /// - Throws: `RecurError.invalidArgument` for a model PyTorch's modules cannot run (a GRU
    ///   that resets before the recurrent product: `nn.GRU` only resets after it);
    ///   `RecurError.malformed` for a parameter missing from the checkpoint, extra or of the wrong
    ///   shape.
    public static func write(_ checkpoint: Checkpoint, to path: String) throws {
        try checkExpressible(checkpoint.specification)
        try checkParameters(of: checkpoint)
        var metadata = checkpoint.metadata
        metadata[specificationKey] = try checkpoint.specification.json()
        var writer = SafeTensorsWriter(metadata: metadata)
        for (name, parameter) in checkpoint.parameters.sorted(by: { $0.key < $1.key }) {
            try writer.add(name, floats: parameter.values, shape: parameter.shape)
        }
        try writer.write(to: path)
    }

    /// Refuses, with the reason, a model that no PyTorch module computes.
    public static func checkExpressible(_ specification: ModelSpecification) throws {
        switch specification.cell {
        case .rnnTanh, .rnnRelu, .lstm, .gru, .lstmProjection:
            // lstm_projection is nn.LSTM with proj_size = P, weight_hr_l{k} its own name.
            break
        case .gruResetBefore:
            throw RecurError.invalidArgument(
                operation: "PyTorchExport",
                detail: "the model's GRU resets before the recurrent product (gruResetBefore, Keras's "
                    + "reset_after=False), which nn.GRU does not compute (it resets after it, cell gru); "
                    + "export it to ONNX instead (linear_before_reset = 0)")
        default:
            throw RecurError.invalidArgument(
                operation: "PyTorchExport", detail: "cell \(specification.cell) has no PyTorch module")
        }
    }
}

/// Checks that `checkpoint` holds exactly the parameters its specification's model has, with
/// their shapes, by loading them into that model on the CPU (`Checkpoint.restoreParameters`).
/// - Returns: that model.
/// - Throws: `RecurError.malformed` naming the first missing, extra or misshapen parameter.
@discardableResult
func checkParameters(of checkpoint: Checkpoint) throws -> Sequential {
    try checkpoint.makeModel(backend: CPUBackend())
}
