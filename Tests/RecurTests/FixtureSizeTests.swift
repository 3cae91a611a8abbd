import Testing
@testable import Recur

// Fixtures whose metadata or tensors do not describe the same stack: refused before anything is
// allocated, naming the file and the tensor; and expected values that cannot be compared as
// they stand (a count that differs, all zeros) reported for what they are.

@Suite struct FixtureSizeTests {
    /// A committed fixture's tensors and metadata, with `change` applied before writing it to a
    /// temporary file; returns the path.
    private func mutatedFixture(in folder: TemporaryFolder, _ change: (inout [String: String],
                                                                      inout [String: (Shape, [Double], Bool)]) -> Void)
        throws -> String
    {
        let source = try #require(try PyTorchFixture.all().first { $0.name.hasPrefix("lstm_L1_uni") })
        var metadata = source.file.metadata
        var tensors: [String: (Shape, [Double], Bool)] = [:]  // shape, values, float64
        for name in source.file.names {
            tensors[name] = (try source.file.shape(of: name), try source.file.doubles(name),
                             try source.file.dtype(of: name) == .float64)
        }
        change(&metadata, &tensors)
        var writer = SafeTensorsWriter(metadata: metadata)
        for (name, (shape, values, wide)) in tensors {
            if wide {
                try writer.add(name, doubles: values, shape: shape)
            } else {
                try writer.add(name, floats: values.map(Float.init), shape: shape)
            }
        }
        let path = folder.path + "/fixture.safetensors"
        try writer.write(to: path)
        return path
    }

    private func refusal(_ path: String) throws -> String {
        let backend = CPUBackend()
        let error = try #require(throws: (any Error).self) { _ = try FixtureCheck.run(path: path, backend: backend) }
        #expect(backend.memoryStatistics.peakBytes == 0, "allocated before refusing: \(error)")
        return "\(error)"
    }

    /// Metadata sizes that the tensors contradict: each would have the layer allocate hundreds of
    /// gigabytes (or loop over 1e8 layers) before the first comparison.
    @Test(arguments: [("hidden_size", "4000000000"), ("input_size", "4000000000"), ("num_layers", "100000000")])
    func metadataIsCheckedAgainstTheTensorsFirst(_ key: String, _ value: String) throws {
        let folder = try TemporaryFolder()
        let path = try mutatedFixture(in: folder) { metadata, _ in metadata[key] = value }
        let message = try refusal(path)
        #expect(message.hasPrefix(path), "\(message)")
        #expect(message.contains(value), "\(message)")
    }

    @Test(arguments: ["input", "output", "weight_hh_l0", "grad_output"])
    func aZeroSizedTensorIsNamedWithItsFile(_ name: String) throws {
        let folder = try TemporaryFolder()
        let path = try mutatedFixture(in: folder) { _, tensors in
            let (shape, _, wide) = tensors[name]!
            tensors[name] = (Shape([shape[0], 0] + shape.dimensions.dropFirst(2)), [], wide)
        }
        let message = try refusal(path)
        #expect(message.hasPrefix(path) && message.contains("'\(name)'") && message.contains("at least 1"), "\(message)")
    }

    @Test func aWronglyShapedExpectedOutputSaysSo() throws {
        let folder = try TemporaryFolder()
        let path = try mutatedFixture(in: folder) { _, tensors in
            let (shape, values, wide) = tensors["output"]!
            tensors["output"] = (Shape([shape[1], shape[0], shape[2]]), values, wide)
        }
        let message = try refusal(path)
        #expect(message.contains("'output' is") && message.contains("gives"), "\(message)")
    }

    @Test func anAllZeroExpectedOutputComparesAbsolutely() throws {
        let folder = try TemporaryFolder()
        let path = try mutatedFixture(in: folder) { _, tensors in
            let (shape, values, wide) = tensors["output"]!
            tensors["output"] = (shape, [Double](repeating: 0, count: values.count), wide)
        }
        let results = try FixtureCheck.run(path: path, backend: CPUBackend())
        let output = try #require(results.first { $0.name == "output" })
        #expect(!output.passed && output.relativeError.isFinite && output.relativeError < 100)
        #expect(output.note?.hasPrefix("expected all zero") == true)
        #expect(results.filter { $0.name != "output" }.allSatisfy { $0.passed })
    }

    @Test func comparisonFloorsAndNotes() {
        let zero = Comparison("z", actual: [0, 0], expected: [0, 0], tolerance: 1e-5, scaleFloor: 0.1)
        #expect(zero.passed && zero.note == nil)
        let noise = Comparison("n", actual: [1e-8, 0], expected: [0, 0], tolerance: 1e-5, scaleFloor: 0.1)
        #expect(noise.passed)
        let relative = Comparison("r", actual: [2.0001], expected: [2], tolerance: 1e-5, scaleFloor: 0.1)
        #expect(abs(relative.relativeError - 5e-5) < 1e-6)  // 2.0001 rounded to float32
        let short = Comparison("s", actual: [1], expected: [1, 2], tolerance: 1e-5)
        #expect(!short.passed && short.note == "1 values computed, 2 expected")
    }
}
