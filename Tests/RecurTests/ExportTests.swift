import Foundation
import ONNX
import Recur
import RecurExport
import Testing

// The exporters without Python: the ONNX graph's structure (nodes, initialisers, shapes, gate
// order, padding handling) read back through the generated messages, the PyTorch state dict read
// back through the safetensors reader, the refusals, and `recur export` on a trained model.
// tools/check_export.sh runs the exported models in ONNX Runtime and PyTorch.

/// A checkpoint of `specification`'s freshly initialised model, with `metadata`.
private func checkpoint(_ specification: ModelSpecification, metadata: [String: String] = [:]) throws -> Checkpoint {
    let backend = TestBackends.cpu
    let configuration = TrainingConfiguration(epochs: 1, batchSize: 4, optimizer: .sgd(learningRate: 0.1))
    return try Checkpoint(specification: specification, configuration: configuration, progress: TrainingProgress(),
                          model: try specification.makeModel(backend: backend),
                          optimizer: try configuration.optimizer.makeOptimizer(backend: backend), metadata: metadata)
}

/// Metadata recording a data source of `format` with `changes` applied.
private func sourceMetadata(_ format: DataSource.Format, _ changes: (inout DataSource) -> Void = { _ in })
    throws -> [String: String] {
    var source = DataSource(format: format, paths: ["data"])
    changes(&source)
    return [RecordedData.sourceKey: try source.json(), RecordedData.standardizationKey: "3.5 2"]
}

private func initializer(_ graph: Onnx_GraphProto, of node: Onnx_NodeProto, input: Int) -> Onnx_TensorProto? {
    graph.initializer.first { $0.name == node.input[input] }
}

private func floats(_ tensor: Onnx_TensorProto) -> [Float] {
    tensor.rawData.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
}

private func attribute(_ node: Onnx_NodeProto, _ name: String) -> Onnx_AttributeProto? {
    node.attribute.first { $0.name == name }
}

@Suite("Export")
struct ExportTests {
    @Test func bidirectionalStackedLSTMClassifierGraph() throws {
        let specification = ModelSpecification(
            task: .classify, vocabularySize: 9, embeddingSize: 3, cell: .lstm, hiddenSize: 4, layerCount: 2,
            bidirectional: true, outputDropout: 0.3, outputSize: 3, seed: 5)
        let saved = try checkpoint(specification, metadata: try sourceMetadata(.tsv))
        let model = try ONNXExport.model(of: saved)

        // The bytes decode through the generated messages to the same model.
        let decoded = try Onnx_ModelProto(serializedBytes: try ONNXExport.serialized(saved))
        #expect(decoded == model)
        #expect(decoded.irVersion == 7 && decoded.opsetImport.map(\.version) == [14])
        let graph = decoded.graph
        #expect(graph.input.map(\.name) == ["ids", "lengths"])
        #expect(graph.input.map(\.type.tensorType.elemType) == [7, 6])  // int64, int32
        #expect(graph.output.map(\.name) == ["probabilities"])
        #expect(graph.output[0].type.tensorType.shape.dim.map(\.dimValue) == [0, 3])
        // Pre-padded ids (the default) move to the front before the stack; dropout is gone.
        #expect(graph.node.map(\.opType) == [
            "Transpose", "Cast", "Slice", "ReverseSequence", "Gather",
            "LSTM", "Transpose", "Reshape", "LSTM", "Transpose", "Reshape", "MatMul", "Add", "Softmax",
        ])

        let lstms = graph.node.filter { $0.opType == "LSTM" }
        for (layer, node) in lstms.enumerated() {
            #expect(attribute(node, "direction")?.s == Data("bidirectional".utf8))
            #expect(attribute(node, "hidden_size")?.i == 4)
            #expect(node.input.last == "lengths", "sequence_lens")
            let inputSize: Int64 = layer == 0 ? 3 : 8
            #expect(initializer(graph, of: node, input: 1)?.dims == [2, 16, inputSize])
            #expect(initializer(graph, of: node, input: 2)?.dims == [2, 16, 4])
            #expect(initializer(graph, of: node, input: 3)?.dims == [2, 32])
        }
        #expect(lstms[0].output == [lstms[0].output[0]] && lstms[1].output[0] == "", "the last layer gives h_n only")

        // Gate order: PyTorch's i f g o become ONNX's i o f c; the reverse direction follows.
        let w = floats(try #require(initializer(graph, of: lstms[0], input: 1)))
        let pytorch = try #require(saved.parameters["1.weight_ih_l0"]).values  // [16, 3]
        let reverse = try #require(saved.parameters["1.weight_ih_l0_reverse"]).values
        let block = 4 * 3
        #expect(Array(w[0 ..< block]) == Array(pytorch[0 ..< block]))  // i
        #expect(Array(w[block ..< 2 * block]) == Array(pytorch[3 * block ..< 4 * block]))  // o
        #expect(Array(w[2 * block ..< 3 * block]) == Array(pytorch[block ..< 2 * block]))  // f
        #expect(Array(w[3 * block ..< 4 * block]) == Array(pytorch[2 * block ..< 3 * block]))  // c = g
        #expect(Array(w[4 * block ..< 5 * block]) == Array(reverse[0 ..< block]))
        // B = [b_ih, b_hh] per direction, each reordered.
        let b = floats(try #require(initializer(graph, of: lstms[0], input: 3)))
        let inputBias = try #require(saved.parameters["1.bias_ih_l0"]).values
        let recurrentBias = try #require(saved.parameters["1.bias_hh_l0"]).values
        #expect(Array(b[4 ..< 8]) == Array(inputBias[12 ..< 16]))
        #expect(Array(b[16 ..< 20]) == Array(recurrentBias[0 ..< 4]))

        // The head (index 3, after the dropout) as x W^T: W^T [8, 3].
        let matMul = try #require(graph.node.first { $0.opType == "MatMul" })
        let transposed = try #require(initializer(graph, of: matMul, input: 1))
        #expect(transposed.dims == [8, 3])
        let dense = try #require(saved.parameters["3.weight"]).values  // [3, 8]
        var expected = [Float](repeating: 0, count: 24)
        for k in 0..<3 {
            for f in 0..<8 { expected[f * 3 + k] = dense[k * 8 + f] }
        }
        #expect(floats(transposed) == expected)

        let properties = Dictionary(uniqueKeysWithValues: decoded.metadataProps.map { ($0.key, $0.value) })
        #expect(try ModelSpecification(json: try #require(properties["recur.model"]), source: "test") == specification)
        #expect(properties["recur.inputs"]?.contains("padded with 0 on the pre side") == true)
        #expect(properties[RecordedData.sourceKey] != nil)
    }

    @Test func paddingDecidesLengthsAndReordering() throws {
        // Post-padded: the valid steps are already first, so sequence_lens is all it takes.
        let tagger = ModelSpecification(task: .tag, vocabularySize: 6, embeddingSize: 2, cell: .rnnRelu,
                                        hiddenSize: 3, outputSize: 4, seed: 2)
        let post = try ONNXExport.model(of: try checkpoint(tagger, metadata: try sourceMetadata(.tagged) {
            $0.padding = .post
        })).graph
        #expect(post.node.map(\.opType) == ["Transpose", "Cast", "Gather", "RNN", "Transpose", "Reshape",
                                            "Transpose", "MatMul", "Add", "Softmax"])
        let rnn = try #require(post.node.first { $0.opType == "RNN" })
        #expect(attribute(rnn, "activations")?.strings == [Data("Relu".utf8)])
        #expect(post.output[0].type.tensorType.shape.dim.map(\.dimParam) == ["batch", "steps", ""])

        // Pre-padded every-step outputs go back to the end of each row after the stack.
        let pre = try ONNXExport.model(of: try checkpoint(tagger, metadata: try sourceMetadata(.tagged))).graph
        #expect(pre.node.map(\.opType).suffix(6) == ["ReverseSequence", "Slice", "Transpose", "MatMul", "Add",
                                                      "Softmax"])

        // A classifier that reads its padding takes no lengths and gives the operator none.
        let unmasked = ModelSpecification(task: .classify, vocabularySize: 6, embeddingSize: 2, cell: .gru,
                                          hiddenSize: 3, outputSize: 1, seed: 3, trainsPaddingEmbedding: true)
        let graph = try ONNXExport.model(of: try checkpoint(unmasked, metadata: try sourceMetadata(.tsv))).graph
        #expect(graph.input.map(\.name) == ["ids"])
        #expect(graph.node.map(\.opType) == ["Transpose", "Gather", "GRU", "Transpose", "Reshape", "MatMul", "Add",
                                             "Sigmoid"])
        let gru = try #require(graph.node.first { $0.opType == "GRU" })
        #expect(gru.input.count == 4)
        #expect(attribute(gru, "linear_before_reset")?.i == 1)
    }

    @Test func forecasterScalesInsideTheGraph() throws {
        let forecaster = ModelSpecification(task: .forecast, inputFeatures: 1, cell: .gruResetBefore, hiddenSize: 3,
                                            outputSize: 2, seed: 4)
        let expectations: [(SeriesTransform, [String])] = [
            (.level, ["Sub", "Div"]),
            (.difference, ["Slice", "Sub", "Div"]),
            (.revin, ["ReduceMean", "Sub", "Mul", "ReduceMean", "Sqrt", "Add", "Sub", "Div"]),
        ]
        for (transform, scaling) in expectations {
            let saved = try checkpoint(forecaster, metadata: try sourceMetadata(.series) { $0.transform = transform })
            let graph = try ONNXExport.model(of: saved).graph
            #expect(graph.input.map(\.name) == ["values"] && graph.output.map(\.name) == ["forecast"])
            #expect(graph.node.map(\.opType) == scaling + ["Transpose", "Unsqueeze", "GRU", "Transpose", "Reshape",
                                                           "MatMul", "Add", "Mul", "Add"], "\(transform)")
            let gru = try #require(graph.node.first { $0.opType == "GRU" })
            #expect(attribute(gru, "linear_before_reset")?.i == 0)
            // GRU: PyTorch's r z n become ONNX's z r h.
            let w = floats(try #require(initializer(graph, of: gru, input: 1)))
            let pytorch = try #require(saved.parameters["0.weight_ih_l0"]).values
            #expect(Array(w[0 ..< 3]) == Array(pytorch[3 ..< 6]) && Array(w[3 ..< 6]) == Array(pytorch[0 ..< 3]))
        }
        // The standardisation is a constant of the level graph.
        let level = try ONNXExport.model(of: try checkpoint(forecaster, metadata: try sourceMetadata(.series) {
            $0.transform = .level
        })).graph
        #expect(level.initializer.contains { $0.dims == [1] && floats($0) == [3.5] })
    }

    @Test func refusesWhatItCannotExpressWithTheReason() throws {
        let twoFeatures = ModelSpecification(task: .forecast, inputFeatures: 2, cell: .lstm, hiddenSize: 3,
                                             outputSize: 1)
        let wide = try checkpoint(twoFeatures, metadata: try sourceMetadata(.series))
        guard case .invalidArgument(_, let detail)? = recurError({ _ = try ONNXExport.model(of: wide) }) else { return }
        #expect(detail.contains("one column") && detail.contains("2 columns per step"))

        let univariate = ModelSpecification(task: .forecast, inputFeatures: 1, cell: .lstm, hiddenSize: 3, outputSize: 1)
        let unrecorded = try checkpoint(univariate)
        guard case .invalidArgument(_, let why)? = recurError({ _ = try ONNXExport.model(of: unrecorded) }) else { return }
        #expect(why.contains("data.source"))

        let folder = try TemporaryFolder()
        let resetBefore = ModelSpecification(task: .classify, vocabularySize: 5, embeddingSize: 2, cell: .gruResetBefore,
                                             hiddenSize: 3, outputSize: 1)
        let saved = try checkpoint(resetBefore)
        guard case .invalidArgument(_, let reason)? = recurError({
            try PyTorchExport.write(saved, to: folder.path + "/model.safetensors")
        }) else { return }
        #expect(reason.contains("nn.GRU") && reason.contains("ONNX"))
        #expect(!FileManager.default.fileExists(atPath: folder.path + "/model.safetensors"))

        // A checkpoint without one of its model's parameters, or with one of another shape.
        var incomplete = try checkpoint(ModelSpecification(task: .tag, vocabularySize: 5, embeddingSize: 2, cell: .lstm,
                                                           hiddenSize: 3, outputSize: 4))
        incomplete.parameters["1.bias_hh_l0"] = nil
        guard case .malformed(_, let missing)? = recurError({ _ = try ONNXExport.model(of: incomplete) }) else { return }
        #expect(missing.contains("model.1.bias_hh_l0"))
        incomplete.parameters["1.bias_hh_l0"] = ([5], [Float](repeating: 0.5, count: 5))
        guard case .malformed(_, let misshapen)? = recurError({
            try PyTorchExport.write(incomplete, to: folder.path + "/model.safetensors")
        }) else { return }
        #expect(misshapen.contains("model.1.bias_hh_l0 is [5]"))
    }

    @Test func pytorchStateDictHasSequentialNamesAndTheSpecification() throws {
        let folder = try TemporaryFolder()
        let specification = ModelSpecification(task: .lm, vocabularySize: 7, embeddingSize: 3, cell: .gru,
                                               hiddenSize: 4, layerCount: 2, outputDropout: 0.1, outputSize: 7, seed: 9)
        let saved = try checkpoint(specification, metadata: try sourceMetadata(.text))
        let path = folder.path + "/model.safetensors"
        try PyTorchExport.write(saved, to: path)
        let file = try SafeTensorsFile(contentsOf: path)
        #expect(file.names == saved.parameters.keys.sorted())
        #expect(file.names.contains("1.weight_hh_l1") && file.names.contains("3.bias") && !file.names.contains("2.weight"))
        for name in file.names {
            #expect(try file.floats(name) == saved.parameters[name]?.values, "\(name)")
        }
        let recorded = try #require(file.metadata[PyTorchExport.specificationKey])
        #expect(try ModelSpecification(json: recorded, source: "test") == specification)
        #expect(file.metadata[RecordedData.sourceKey] == saved.metadata[RecordedData.sourceKey])

        // And back: the file loads into a model of the same specification (another seed), which
        // then holds the exported values.
        var other = specification
        other.seed = 10
        let model = try other.makeModel(backend: TestBackends.cpu)
        try StateDictionary.load(model.parameters, from: file)
        for parameter in model.parameters {
            #expect(try parameter.value.toArray() == saved.parameters[parameter.name]?.values, "\(parameter.name)")
        }
    }

    @Test func recurExportWritesBothFormats() throws {
        let folder = try TemporaryFolder()
        var random = SeededGenerator(seed: 31)
        let rows = (0..<40).map { _ in
            let tokens = (0..<Int.random(in: 1...5, using: &random)).map { _ in ["ab", "cd", "ef"].randomElement(using: &random)! }
            return tokens.joined(separator: " ") + "\t" + tokens.map { $0 == "ab" ? "X" : "Y" }.joined(separator: " ")
        }
        try folder.write("tags.tsv", rows.joined(separator: "\n") + "\n")
        let train = try runRecur(["train", "--device", "cpu", "--epochs", "1", "--hidden", "4", "--embedding", "3",
                                  "--data", "tags.tsv", "--format", "tagged", "--max-length", "6", "--checkpoint-dir", "run"],
                                 in: folder.path)
        #expect(train.status == 0, "\(train.stderr)")
        let onnx = try runRecur(["export", "--checkpoint", "run/last.safetensors", "--format", "onnx", "--output", "m.onnx"],
                                in: folder.path)
        #expect(onnx.status == 0 && onnx.stderr.contains("wrote m.onnx"), "\(onnx.stderr)")
        let model = try Onnx_ModelProto(serializedBytes: try Data(contentsOf: URL(fileURLWithPath: folder.path + "/m.onnx")))
        #expect(model.graph.node.contains { $0.opType == "LSTM" })
        let pytorch = try runRecur(["export", "--checkpoint", "run/last.safetensors", "--format", "pytorch",
                                    "--output", "m.safetensors"], in: folder.path)
        #expect(pytorch.status == 0, "\(pytorch.stderr)")
        #expect(try SafeTensorsFile(contentsOf: folder.path + "/m.safetensors").names.contains("1.weight_ih_l0"))

        let badFormat = try runRecur(["export", "--checkpoint", "run/last.safetensors", "--format", "keras",
                                      "--output", "m.h5"], in: folder.path)
        expectCleanFailure(badFormat, "keras")
        #expect(badFormat.status == 2)
        let missing = try runRecur(["export", "--checkpoint", "absent.safetensors", "--format", "onnx",
                                    "--output", "m.onnx"], in: folder.path)
        expectCleanFailure(missing, "absent.safetensors")
        #expect(missing.status == 1)
    }
}
