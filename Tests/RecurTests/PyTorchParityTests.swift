import Testing
@testable import Recur

/// Every committed PyTorch fixture through a `RecurrentLayer`, on the CPU backend and on OpenCL:
/// outputs, final states and every gradient against PyTorch's float64 values.
@Suite struct PyTorchParityTests {
    static let fixtures = (try? PyTorchFixture.all()) ?? []
    /// The LSTM-with-projection fixtures, through the same check on the backends that run it.
    static let projectionFixtures = (try? PyTorchFixture.projection()) ?? []

    @Test func fixturesArePresent() throws {
        #expect(Self.fixtures.count >= 32, "expected the committed fixtures, found \(Self.fixtures.count)")
        #expect(Self.projectionFixtures.count == 6, "expected the projection fixtures, found \(Self.projectionFixtures.count)")
    }

    @Test(arguments: TestBackend.allCases, PyTorchParityTests.projectionFixtures)
    func projectionMatchesPyTorch(_ backendKind: TestBackend, _ fixture: PyTorchFixture) throws {
        guard let backend = try backendKind.backend() else { return }
        let results = try FixtureCheck.run(path: fixture.path, backend: backend)
        #expect(results.count == 6 + fixture.parameterShapes.count, "compared \(results.map(\.name))")
        #expect(results.contains { $0.name == "grad.weight_hr_l0" })
        for result in results {
            #expect(result.passed, "\(fixture.name) on \(backendKind): \(result)")
        }
    }

    @Test(arguments: TestBackend.allCases, PyTorchParityTests.fixtures)
    func matchesPyTorch(_ backendKind: TestBackend, _ fixture: PyTorchFixture) throws {
        guard let backend = try backendKind.backend() else { return }
        let results = try FixtureCheck.run(path: fixture.path, backend: backend)
        let expectedCount = 4 + fixture.parameterShapes.count + (fixture.hasCellState ? 2 : 0)  // output, h_n, grad.input, grad.h0 (+ c_n, grad.c0)
        #expect(results.count == expectedCount, "compared \(results.map(\.name))")
        for result in results {
            #expect(result.passed, "\(fixture.name) on \(backendKind): \(result)")
        }
    }

    @Test func malformedFixtureIsRejected() throws {
        var writer = SafeTensorsWriter(metadata: [
            "cell": "lstm", "input_size": "3", "hidden_size": "2", "num_layers": "1", "bidirectional": "false",
        ])
        try writer.add("input", floats: [Float](repeating: 0.5, count: 6), shape: [2, 1, 3])
        try writer.add("weight_ih_l0", floats: [Float](repeating: 0.1, count: 24), shape: [8, 3])
        try writer.add("weight_hh_l0", floats: [Float](repeating: 0.1, count: 12), shape: [6, 2])  // wrong rows
        let folder = try TemporaryFolder()
        let path = folder.path + "/bad-fixture.safetensors"
        try writer.write(to: path)
        #expect(throws: RecurError.self) {
            _ = try FixtureCheck.run(path: path, backend: TestBackends.cpu)
        }
    }
}
