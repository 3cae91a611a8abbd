import Foundation
import Testing
@testable import Recur

/// The PyTorch parity fixtures committed in `Fixtures/` (see `Fixtures/README.md`), and what
/// their metadata says about each one.
struct PyTorchFixture: CustomTestStringConvertible, Sendable {
    var path: String
    var file: SafeTensorsFile
    /// `lstm`, `gru`, `rnn_tanh` or `rnn_relu`.
    var cell: String
    var inputSize: Int
    var hiddenSize: Int
    var layerCount: Int
    var bidirectional: Bool
    /// PyTorch's `proj_size` (the fixtures under `projection/`); nil for the others.
    var projectionSize: Int?

    var directions: Int { bidirectional ? 2 : 1 }
    /// The width of h: P with a projection, else H.
    var stateSize: Int { projectionSize ?? hiddenSize }
    /// Rows of each weight matrix: one block of H per gate.
    var gateSize: Int { hiddenSize * (cell == "lstm" ? 4 : cell == "gru" ? 3 : 1) }
    var hasCellState: Bool { cell == "lstm" }
    var name: String { String(path.split(separator: "/").last ?? "") }
    var testDescription: String { name }

    /// The PyTorch parameter names with their shapes, layer by layer, forward before reverse.
    var parameterShapes: [(name: String, shape: Shape)] {
        var parameters: [(name: String, shape: Shape)] = []
        for layer in 0..<layerCount {
            for suffix in bidirectional ? ["", "_reverse"] : [""] {
                let layerInput = layer == 0 ? inputSize : directions * stateSize
                parameters.append(("weight_ih_l\(layer)\(suffix)", [gateSize, layerInput]))
                parameters.append(("weight_hh_l\(layer)\(suffix)", [gateSize, stateSize]))
                parameters.append(("bias_ih_l\(layer)\(suffix)", [gateSize]))
                parameters.append(("bias_hh_l\(layer)\(suffix)", [gateSize]))
                if let projectionSize {
                    parameters.append(("weight_hr_l\(layer)\(suffix)", [projectionSize, hiddenSize]))
                }
            }
        }
        return parameters
    }

    /// Every fixture, sorted by file name.
    static func all() throws -> [PyTorchFixture] {
        try inFolder(nil)
    }

    /// The LSTM-with-projection fixtures under `projection/`, sorted by file name.
    static func projection() throws -> [PyTorchFixture] {
        try inFolder("projection")
    }

    private static func inFolder(_ subfolder: String?) throws -> [PyTorchFixture] {
        guard var directory = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
            throw RecurError.io(path: "Fixtures", detail: "not found among the test resources")
        }
        if let subfolder { directory = directory.appendingPathComponent(subfolder) }
        return try FileManager.default.contentsOfDirectory(atPath: directory.path)
            .filter { $0.hasSuffix(".safetensors") }
            .sorted()
            .map { try PyTorchFixture(path: directory.appendingPathComponent($0).path) }
    }

    init(path: String) throws {
        let file = try SafeTensorsFile(contentsOf: path)
        func entry(_ key: String) throws -> String {
            guard let value = file.metadata[key] else {
                throw RecurError.malformed(source: path, detail: "metadata lacks \(key)")
            }
            return value
        }
        func positive(_ key: String) throws -> Int {
            guard let value = Int(try entry(key)), value > 0 else {
                throw RecurError.malformed(source: path, detail: "metadata \(key) is not a positive integer")
            }
            return value
        }
        self.path = path
        self.file = file
        self.cell = try entry("cell")
        self.inputSize = try positive("input_size")
        self.hiddenSize = try positive("hidden_size")
        self.layerCount = try positive("num_layers")
        self.projectionSize = file.metadata["proj_size"] == nil ? nil : try positive("proj_size")
        switch try entry("bidirectional") {
        case "true": self.bidirectional = true
        case "false": self.bidirectional = false
        case let other:
            throw RecurError.malformed(source: path, detail: "metadata bidirectional is \(other)")
        }
    }
}

@Suite struct FixtureFormatTests {
    static let cells = ["gru", "lstm", "rnn_relu", "rnn_tanh"]

    @Test func everyCellAndTopologyIsPresent() throws {
        let fixtures = try PyTorchFixture.all()
        #expect(fixtures.count == 34)
        for cell in Self.cells {
            for layerCount in [1, 2] {
                for bidirectional in [false, true] {
                    let matching = fixtures.filter {
                        $0.cell == cell && $0.layerCount == layerCount && $0.bidirectional == bidirectional
                    }
                    #expect(matching.count >= 2, "\(cell) L\(layerCount) bidirectional=\(bidirectional)")
                }
            }
        }
    }

    @Test(arguments: try PyTorchFixture.all())
    func fixtureHasMetadataAndEveryTensorWithItsShape(_ fixture: PyTorchFixture) throws {
        let file = fixture.file
        #expect(Self.cells.contains(fixture.cell))
        #expect(file.metadata["batch_first"] == "false")
        let generator = try #require(file.metadata["generator"])
        #expect(generator.contains("tools/make_fixtures.py") && generator.contains("torch "))

        let input = try file.shape(of: "input")
        try #require(input.rank == 3)
        let (steps, batch) = (input[0], input[1])
        let (hiddenSize, directions) = (fixture.hiddenSize, fixture.directions)
        #expect(input[2] == fixture.inputSize)
        let direction = fixture.bidirectional ? "bi" : "uni"
        #expect(fixture.name == "\(fixture.cell)_L\(fixture.layerCount)_\(direction)_T\(steps)_B\(batch)_I\(fixture.inputSize)_H\(hiddenSize).safetensors")

        let state: Shape = [fixture.layerCount * directions, batch, hiddenSize]
        let sequenceOutput: Shape = [steps, batch, directions * hiddenSize]
        var expected: [String: (dtype: SafeTensorsDType, shape: Shape)] = [
            "input": (.float32, input),
            "h0": (.float32, state),
            "grad_output": (.float32, sequenceOutput),
            "grad_h_n": (.float32, state),
            "output": (.float64, sequenceOutput),
            "h_n": (.float64, state),
            "grad.input": (.float64, input),
            "grad.h0": (.float64, state),
        ]
        if fixture.hasCellState {
            expected["c0"] = (.float32, state)
            expected["grad_c_n"] = (.float32, state)
            expected["c_n"] = (.float64, state)
            expected["grad.c0"] = (.float64, state)
        }
        for (name, shape) in fixture.parameterShapes {
            expected[name] = (.float32, shape)
            expected["grad." + name] = (.float64, shape)
        }

        #expect(file.names == expected.keys.sorted())
        for (name, (dtype, shape)) in expected where file.contains(name) {
            #expect(try file.dtype(of: name) == dtype, "\(name)")
            #expect(try file.shape(of: name) == shape, "\(name)")
            let values = try file.doubles(name)
            #expect(values.count == shape.count, "\(name)")
            #expect(values.allSatisfy { $0.isFinite }, "\(name)")
            #expect(values.contains { $0 != 0 }, "\(name) is all zeros")
        }
    }
}
