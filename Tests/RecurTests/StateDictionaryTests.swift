import Testing
@testable import Recur

/// Parameters to and from safetensors state dictionaries (PyTorch's `state_dict` names).
@Suite struct StateDictionaryTests {
    private func layer(seed: UInt64, backend: any Backend) throws -> RecurrentLayer {
        try RecurrentLayer(cell: .lstm, inputSize: 3, hiddenSize: 5, layerCount: 2, bidirectional: true,
                           seed: seed, backend: backend)
    }

    @Test(arguments: TestBackend.allCases)
    func roundTripRestoresEveryParameter(_ kind: TestBackend) throws {
        guard let backend = try kind.backend() else { return }
        let folder = try TemporaryFolder()
        let path = folder.path + "/lstm.safetensors"
        let trained = try layer(seed: 1, backend: backend)
        try StateDictionary.write(trained.parameters, to: path, prefix: "1.", metadata: ["cell": "lstm"])

        let fresh = try layer(seed: 2, backend: backend)
        let file = try SafeTensorsFile(contentsOf: path)
        #expect(file.metadata["cell"] == "lstm")
        #expect(file.names.count == 16)
        try StateDictionary.load(fresh.parameters, from: file, prefix: "1.")
        for (a, b) in zip(trained.parameters, fresh.parameters) {
            #expect(a.name == b.name)
            #expect(try a.value.toArray() == b.value.toArray(), "\(a.name)")
        }
    }

    @Test func pyTorchFixtureWeightsLoadByName() throws {
        let fixture = try #require(try PyTorchFixture.all().first { $0.name.hasPrefix("gru_L2_bi") })
        let backend = TestBackends.cpu
        let gru = try RecurrentLayer(cell: .gru, inputSize: fixture.inputSize, hiddenSize: fixture.hiddenSize,
                                     layerCount: 2, bidirectional: true, backend: backend)
        try StateDictionary.load(gru.parameters, from: fixture.file,
                                 isParameterEntry: { $0.hasPrefix("weight_") || $0.hasPrefix("bias_") })
        let recurrent = try #require(gru.parameter(named: "weight_hh_l1_reverse"))
        #expect(try recurrent.value.toArray() == fixture.file.floats("weight_hh_l1_reverse"))
    }

    @Test func mismatchedFilesAreRejectedAndNothingIsCopied() throws {
        let backend = TestBackends.cpu
        let folder = try TemporaryFolder()
        let target = try layer(seed: 3, backend: backend)
        let before = try target.parameters.map { try $0.value.toArray() }

        var wrongShape = SafeTensorsWriter()
        for parameter in target.parameters {
            let shape: Shape = parameter.name == "weight_hh_l1" ? [20, 4] : parameter.value.shape
            try wrongShape.add(parameter.name, floats: [Float](repeating: 0.5, count: shape.count), shape: shape)
        }
        var missing = SafeTensorsWriter()
        for parameter in target.parameters.dropLast() {
            try missing.add(parameter.name, floats: [Float](repeating: 0.5, count: parameter.value.count),
                            shape: parameter.value.shape)
        }
        var extra = SafeTensorsWriter()
        for parameter in target.parameters {
            try extra.add(parameter.name, floats: [Float](repeating: 0.5, count: parameter.value.count),
                          shape: parameter.value.shape)
        }
        try extra.add("weight_ih_l2", floats: [0.5], shape: [1])

        for (name, writer, expected) in [("shape", wrongShape, "weight_hh_l1 is [20, 4]"),
                                         ("missing", missing, "missing parameter"),
                                         ("extra", extra, "weight_ih_l2 is not a parameter")] {
            let path = folder.path + "/\(name).safetensors"
            try writer.write(to: path)
            let file = try SafeTensorsFile(contentsOf: path)
            #expect {
                try StateDictionary.load(target.parameters, from: file)
            } throws: { error in
                guard case RecurError.malformed(_, let detail) = error else { return false }
                return detail.contains(expected)
            }
        }
        #expect(try target.parameters.map { try $0.value.toArray() } == before)
    }
}
