import ArgumentParser
import Recur
import RecurExport

/// `recur export`: a checkpoint's model for another runtime, ONNX or PyTorch.
struct ExportCommand: ParsableCommand {
    enum Format: String, ExpressibleByArgument, CaseIterable {
        case onnx
        case pytorch
    }

    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Export a checkpoint's model as ONNX or as a PyTorch state dict.",
        discussion: """
            onnx: an ONNX model (opset \(ONNXExport.opsetVersion)) that computes what recur predict \
            does, dropout removed: classifiers take ids int64 [batch, steps] (padded with 0 on the \
            side the training data was, pre by default) and lengths int32 [batch] and give \
            probabilities [batch, K]; taggers and language models give probabilities [batch, \
            steps, K] at every step; forecasters take the last values of the series in its units \
            (values float [batch, steps]) and give the forecast [batch, horizon] in its units. \
            The vocabulary, classes and data source are in the model's metadata_props. \
            pytorch: a safetensors state dict under nn.Sequential's names (0.weight, \
            1.weight_ih_l0, ..., 2.weight, 2.bias) with the model specification in its metadata \
            (recur.model); see the README for the Python that loads it.
            """
    )

    @Option(help: "A checkpoint written by recur train (best.safetensors or last.safetensors).") var checkpoint: String
    @Option(help: "onnx or pytorch.") var format: Format
    @Option(help: "The file to write (replaced atomically).") var output: String

    func run() throws {
        let saved = try Checkpoint(contentsOf: checkpoint)
        switch format {
        case .onnx: try ONNXExport.write(saved, to: output)
        case .pytorch: try PyTorchExport.write(saved, to: output)
        }
        printError("wrote \(output) (\(format.rawValue))")
    }
}
