import Foundation
import Testing
@testable import Recur
@testable import recur

// The layer-normalised cells beyond what every registered cell gets (`RecurrentCellTests`,
// `RecurrentGradientTests`): finite differences of the float64 reference's own gradients, and of
// the CPU backend's on wider layers, where a normalisation over the H units is well conditioned.

@Suite("Layer-normalised cells")
struct LayerNormCellTests {
    static let cells: [RecurrentCell] = [.layerNormLSTM, .layerNormGRU]

    @Test("the float64 reference's gradients match central differences, every parameter",
          arguments: cells, [nil, 0.6] as [Double?])
    func referenceFiniteDifferences(cell: RecurrentCell, cellClip: Double?) throws {
        var rng = SeededGenerator(seed: 71)
        let (t, i, h) = (4, 3, 5)
        let shapes = cell.parameterShapes(inputSize: i, hiddenSize: h)
        let values = { (count: Int) in rng.values(count, -0.9, 0.9).map(Double.init) }
        let parameters = shapes.map { values($0.count) }
        let inputs = (0..<t).map { _ in values(i) }
        let initial = RecurrentReferenceState(hidden: values(h), cell: cell.hasCellState ? values(h) : [])
        let outputWeights = (0..<t).map { _ in values(h) }
        let final = RecurrentReferenceState(hidden: values(h), cell: cell.hasCellState ? values(h) : [])
        func weights(_ all: [[Double]]) -> RecurrentReferenceWeights {
            RecurrentReferenceWeights(input: all[0], recurrent: all[1], inputBias: all[2], recurrentBias: all[3],
                                      extra: Array(all.dropFirst(4)))
        }
        // L = Σ_t h_t · R_t + h_n · R_h + c_n · R_c
        func loss(_ all: [[Double]], _ x: [[Double]], _ state: RecurrentReferenceState) -> Double {
            let run = RecurrentReference.forward(cell: cell, inputs: x, weights: weights(all), initialState: state,
                                                 cellClip: cellClip)
            var total = 0.0
            for (output, r) in zip(run.outputs, outputWeights) { total += zip(output, r).reduce(0) { $0 + $1.0 * $1.1 } }
            total += zip(run.finalState.hidden, final.hidden).reduce(0) { $0 + $1.0 * $1.1 }
            total += zip(run.finalState.cell, final.cell).reduce(0) { $0 + $1.0 * $1.1 }
            return total
        }
        let analytic = RecurrentReference.backward(
            cell: cell, inputs: inputs, weights: weights(parameters), initialState: initial, cellClip: cellClip,
            outputGradients: outputWeights, finalStateGradient: final)
        let eps = 1e-6
        func expectDerivative(_ name: String, _ analytic: Double, _ perturbed: (Double) -> Double) {
            let numeric = (perturbed(eps) - perturbed(-eps)) / (2 * eps)
            #expect(abs(numeric - analytic) <= 1e-6 + 1e-5 * abs(numeric), "\(cell) \(name): \(numeric) vs \(analytic)")
        }
        for (p, parameter) in cell.parameters.enumerated() {
            for k in parameters[p].indices {
                expectDerivative("d\(parameter.name)[\(k)]", analytic.weightGradients.all[p][k]) { step in
                    var changed = parameters
                    changed[p][k] += step
                    return loss(changed, inputs, initial)
                }
            }
        }
        for s in 0..<t {
            for k in 0..<i {
                expectDerivative("dx[\(s)][\(k)]", analytic.inputGradients[s][k]) { step in
                    var changed = inputs
                    changed[s][k] += step
                    return loss(parameters, changed, initial)
                }
            }
        }
        for j in 0..<h {
            expectDerivative("dh0[\(j)]", analytic.initialStateGradient.hidden[j]) { step in
                var changed = initial
                changed.hidden[j] += step
                return loss(parameters, inputs, changed)
            }
            if cell.hasCellState {
                expectDerivative("dc0[\(j)]", analytic.initialStateGradient.cell[j]) { step in
                    var changed = initial
                    changed.cell[j] += step
                    return loss(parameters, inputs, changed)
                }
            }
        }
    }

    /// A small seeded text-classification file, `warm` or `cold` by whether a line names red, in
    /// `folder`; returns its path.
    static func writeColours(into folder: TemporaryFolder, lines count: Int, seed: UInt64) throws -> String {
        var random = SeededGenerator(seed: seed)
        let words = ["red", "blue", "green", "dark", "light"]
        let lines = (0..<count).map { _ -> String in
            let text = (0..<Int.random(in: 2...5, using: &random)).map { _ in words.randomElement(using: &random)! }
            return (text.contains("red") ? "warm" : "cold") + "\t" + text.joined(separator: " ")
        }
        return try folder.write("colours.tsv", lines.joined(separator: "\n") + "\n")
    }

    @Test("recur train --device opencl trains it to the CPU run's losses", arguments: cells)
    func trainsOnOpenCL(cell: RecurrentCell) throws {
        guard try TestBackends.openCLDevice() != nil else { return }
        let folder = try TemporaryFolder()
        let data = try Self.writeColours(into: folder, lines: 16, seed: 23)
        func losses(device: String) throws -> [Double] {
            let log = folder.path + "/\(device).jsonl"
            let run = try runRecur(["train", "--device", device, "--cell", cell.name, "--data", data, "--format", "tsv",
                                    "--no-header", "--max-length", "5", "--embedding", "4", "--hidden", "6",
                                    "--epochs", "2", "--batch-size", "8", "--validation-split", "0",
                                    "--step-log", log])
            #expect(run.status == 0, "\(device): \(run.stderr)")
            return try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").compactMap { line in
                let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                return object?["loss"] as? Double
            }
        }
        let (device, host) = (try losses(device: "opencl"), try losses(device: "cpu"))
        #expect(host.count == 4 && device.count == host.count, "\(device) vs \(host)")
        for (actual, expected) in zip(device, host) {
            #expect(abs(actual - expected) <= 1e-4 * abs(expected), "\(cell): \(device) vs \(host)")
        }
    }

    @Test("recur train --cell trains it; a checkpoint resumes to the uninterrupted run's losses", arguments: cells)
    func trainAndResume(cell: RecurrentCell) throws {
        let run = try expectTrainingResumesExactly(["--cell", cell.name], seed: 17)
        let parts = run.resumedCheckpoints
        // The checkpoint holds the cell's own parameters under their state-dict names.
        let written = try FileManager.default.subpathsOfDirectory(atPath: parts).compactMap {
            FileManager.default.contents(atPath: parts + "/" + $0)
        }
        for parameter in cell.parameters.dropFirst(4) {
            #expect(written.contains { $0.range(of: Data((parameter.name + "_l0").utf8)) != nil }, "\(parameter.name)")
        }
    }
}
