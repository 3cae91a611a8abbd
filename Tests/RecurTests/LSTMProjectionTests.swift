import Foundation
import Testing
@testable import Recur

// The LSTM with a projection (PyTorch's proj_size): its float64 reference steps
// (`Cells/LSTMProjectionCell.swift`) against PyTorch's float64 results in the fixtures under
// `Fixtures/projection/` (made by tools/make_fixtures.py), against central differences, and
// against the plain LSTM when the projection is the identity.
//
// A stack runs one sequence at a time on its valid steps (post-padding; reversed for the reverse
// direction), as `RecurrentReferenceTests` does, with the backward pass taken layer by layer from
// the top. Both sides are float64 from the same float32 values, so they agree to rounding: the
// tolerance is 1e-10 of max(max |expected|, 0.1), where a wrong term or index is off by > 1e-3.

@Suite("LSTM with a projection")
struct LSTMProjectionTests {
    static let fixturePaths: [String] = {
        guard let directory = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else { return [] }
        let folder = directory.appendingPathComponent("projection")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return names.filter { $0.hasSuffix(".safetensors") }.sorted().map { folder.appendingPathComponent($0).path }
    }()

    @Test func fixturesArePresent() {
        #expect(Self.fixturePaths.count == 6)
        #expect(Self.fixturePaths.filter { $0.hasSuffix("_padded.safetensors") }.count == 4)
    }

    @Test("the float64 reference matches PyTorch", arguments: LSTMProjectionTests.fixturePaths)
    func referenceMatchesPyTorch(path: String) throws {
        let file = try SafeTensorsFile(contentsOf: path)
        let stack = try ProjectionStack(file)
        let run = stack.run()
        let name = String(path.split(separator: "/").last ?? "")
        func check(_ key: String, _ actual: [Double]) throws {
            let expected = try file.doubles(key)
            try #require(actual.count == expected.count, "\(name): \(key) has \(actual.count) values")
            let scale = max(expected.map(abs).max() ?? 0, 0.1)
            let error = zip(actual, expected).map { abs($0 - $1) }.max() ?? 0
            #expect(error <= 1e-10 * scale, "\(name): \(key) off by \(error) (scale \(scale))")
        }
        try check("output", run.output)
        try check("h_n", run.finalHidden)
        try check("c_n", run.finalCell)
        try check("grad.input", run.inputGradient)
        try check("grad.h0", run.initialHiddenGradient)
        try check("grad.c0", run.initialCellGradient)
        for (key, gradient) in run.weightGradients {
            try check("grad." + key, gradient)
        }
        #expect(run.weightGradients.count == stack.layerCount * stack.directions * 5)
    }

    @Test("reference gradients match central differences")
    func referenceGradientsMatchFiniteDifferences() {
        var rng = SeededGenerator(seed: 31)
        let (steps, inputSize, hiddenSize, projectionSize) = (4, 3, 4, 2)
        func draw(_ count: Int) -> [Double] { rng.values(count, -0.8, 0.8).map(Double.init) }
        let inputs = (0..<steps).map { _ in draw(inputSize) }
        let state = RecurrentReferenceState(hidden: draw(projectionSize), cell: draw(hiddenSize))
        let weights = RecurrentReferenceWeights(
            input: draw(4 * hiddenSize * inputSize), recurrent: draw(4 * hiddenSize * projectionSize),
            inputBias: draw(4 * hiddenSize), recurrentBias: draw(4 * hiddenSize),
            extra: [draw(projectionSize * hiddenSize)])
        let outputWeights = (0..<steps).map { _ in draw(projectionSize) }
        let (hiddenWeights, cellWeights) = (draw(projectionSize), draw(hiddenSize))

        func loss(_ inputs: [[Double]], _ state: RecurrentReferenceState, _ weights: RecurrentReferenceWeights) -> Double {
            let result = RecurrentReference.forward(steps: LSTMProjectionSteps.self, inputs: inputs, weights: weights,
                                                    initialState: state)
            var total = 0.0
            for (output, weight) in zip(result.outputs, outputWeights) { total += zip(output, weight).map(*).reduce(0, +) }
            total += zip(result.finalState.hidden, hiddenWeights).map(*).reduce(0, +)
            return total + zip(result.finalState.cell, cellWeights).map(*).reduce(0, +)
        }
        let analytic = RecurrentReference.backward(
            steps: LSTMProjectionSteps.self, inputs: inputs, weights: weights, initialState: state,
            outputGradients: outputWeights,
            finalStateGradient: RecurrentReferenceState(hidden: hiddenWeights, cell: cellWeights))

        let eps = 1e-6
        func expectDerivative(_ what: String, _ value: Double, _ perturbed: (Double) -> Double) {
            let numeric = (perturbed(eps) - perturbed(-eps)) / (2 * eps)
            #expect(abs(numeric - value) <= 1e-7 + 1e-6 * abs(numeric), "\(what): \(value) vs \(numeric)")
        }
        for step in 0..<steps {
            for k in 0..<inputSize {
                expectDerivative("dx[\(step)][\(k)]", analytic.inputGradients[step][k]) { delta in
                    var moved = inputs
                    moved[step][k] += delta
                    return loss(moved, state, weights)
                }
            }
        }
        for k in 0..<projectionSize {
            expectDerivative("dh0[\(k)]", analytic.initialStateGradient.hidden[k]) { delta in
                var moved = state
                moved.hidden[k] += delta
                return loss(inputs, moved, weights)
            }
        }
        for k in 0..<hiddenSize {
            expectDerivative("dc0[\(k)]", analytic.initialStateGradient.cell[k]) { delta in
                var moved = state
                moved.cell[k] += delta
                return loss(inputs, moved, weights)
            }
        }
        let gradients = analytic.weightGradients.all
        for (index, tensor) in weights.all.enumerated() {
            for k in tensor.indices {
                expectDerivative("\(LSTMProjectionSteps.parameterNames[index])[\(k)]", gradients[index][k]) { delta in
                    var all = weights.all
                    all[index][k] += delta
                    let moved = RecurrentReferenceWeights(input: all[0], recurrent: all[1], inputBias: all[2],
                                                          recurrentBias: all[3], extra: [all[4]])
                    return loss(inputs, state, moved)
                }
            }
        }
    }

    @Test("with P = H and W_hr = I it is the LSTM")
    func identityProjectionIsTheLSTM() {
        var rng = SeededGenerator(seed: 32)
        let (inputSize, hiddenSize) = (3, 4)
        func draw(_ count: Int) -> [Double] { rng.values(count).map(Double.init) }
        let inputs = (0..<5).map { _ in draw(inputSize) }
        let state = RecurrentReferenceState(hidden: draw(hiddenSize), cell: draw(hiddenSize))
        let identity = (0..<(hiddenSize * hiddenSize)).map { $0 / hiddenSize == $0 % hiddenSize ? 1.0 : 0.0 }
        let lstmWeights = RecurrentReferenceWeights(
            input: draw(4 * hiddenSize * inputSize), recurrent: draw(4 * hiddenSize * hiddenSize),
            inputBias: draw(4 * hiddenSize), recurrentBias: draw(4 * hiddenSize))
        var projectionWeights = lstmWeights
        projectionWeights.extra = [identity]
        let lstm = RecurrentReference.forward(cell: .lstm, inputs: inputs, weights: lstmWeights, initialState: state)
        let projected = RecurrentReference.forward(steps: LSTMProjectionSteps.self, inputs: inputs,
                                                   weights: projectionWeights, initialState: state)
        #expect(projected.outputs == lstm.outputs)
        #expect(projected.finalState.cell == lstm.finalState.cell)
    }
}

/// A fixture's stack run through the float64 reference, one sequence at a time.
private struct ProjectionStack {
    let file: SafeTensorsFile
    let steps: Int, batch: Int, inputSize: Int, hiddenSize: Int, projectionSize: Int
    let layerCount: Int, directions: Int
    /// Each sequence's valid steps 0 ..< lengths[b] (post-padding); T without `lengths`.
    let lengths: [Int]
    /// [layer][direction]
    let weights: [[RecurrentReferenceWeights]]

    init(_ file: SafeTensorsFile) throws {
        self.file = file
        func size(_ key: String) throws -> Int {
            guard let text = file.metadata[key], let value = Int(text) else {
                throw RecurError.malformed(source: file.source, detail: "metadata '\(key)' is not an integer")
            }
            return value
        }
        let input = try file.shape(of: "input")
        (steps, batch) = (input[0], input[1])
        inputSize = try size("input_size")
        hiddenSize = try size("hidden_size")
        projectionSize = try size("proj_size")
        layerCount = try size("num_layers")
        directions = file.metadata["bidirectional"] == "true" ? 2 : 1
        lengths = file.contains("lengths") ? try file.int64s("lengths").map { Int($0) }
            : Array(repeating: input[0], count: input[1])
        let (layers, directionCount) = (layerCount, directions)
        weights = try (0..<layers).map { k in
            try (0..<directionCount).map { d in
                let suffix = "_l\(k)" + (d == 1 ? "_reverse" : "")
                return RecurrentReferenceWeights(
                    input: try file.doubles("weight_ih" + suffix), recurrent: try file.doubles("weight_hh" + suffix),
                    inputBias: try file.doubles("bias_ih" + suffix), recurrentBias: try file.doubles("bias_hh" + suffix),
                    extra: [try file.doubles("weight_hr" + suffix)])
            }
        }
    }

    struct Run {
        var output: [Double], finalHidden: [Double], finalCell: [Double]
        var inputGradient: [Double], initialHiddenGradient: [Double], initialCellGradient: [Double]
        var weightGradients: [String: [Double]] = [:]
    }

    /// Rows `index` of a [L * D, B, F] tensor for sequence b.
    private func stateRow(_ values: [Double], _ index: Int, _ b: Int, _ width: Int) -> [Double] {
        Array(values[((index * batch + b) * width)..<((index * batch + b + 1) * width)])
    }

    func run() -> Run {
        let (p, h, d) = (projectionSize, hiddenSize, directions)
        let read = { (key: String) in (try? file.doubles(key)) ?? [] }
        let (x, h0, c0) = (read("input"), read("h0"), read("c0"))
        let (outputGradient, hiddenGradient, cellGradient) = (read("grad_output"), read("grad_h_n"), read("grad_c_n"))
        let states = layerCount * d
        var result = Run(
            output: [Double](repeating: 0, count: steps * batch * d * p),
            finalHidden: [Double](repeating: 0, count: states * batch * p),
            finalCell: [Double](repeating: 0, count: states * batch * h),
            inputGradient: [Double](repeating: 0, count: steps * batch * inputSize),
            initialHiddenGradient: [Double](repeating: 0, count: states * batch * p),
            initialCellGradient: [Double](repeating: 0, count: states * batch * h))
        for b in 0..<batch {
            let length = lengths[b]
            // layerInputs[k][step]: what layer k reads at each valid step.
            var layerInputs = [(0..<length).map { t in Array(x[((t * batch + b) * inputSize)..<((t * batch + b + 1) * inputSize)]) }]
            for k in 0..<layerCount {
                var output = [[Double]](repeating: [], count: length)
                for direction in 0..<d {
                    let index = k * d + direction
                    let inputs = direction == 0 ? layerInputs[k] : Array(layerInputs[k].reversed())
                    let forward = RecurrentReference.forward(
                        steps: LSTMProjectionSteps.self, inputs: inputs, weights: weights[k][direction],
                        initialState: RecurrentReferenceState(hidden: stateRow(h0, index, b, p), cell: stateRow(c0, index, b, h)))
                    let outputs = direction == 0 ? forward.outputs : Array(forward.outputs.reversed())
                    for t in 0..<length { output[t] += outputs[t] }
                    result.finalHidden.replaceSubrange(((index * batch + b) * p)..<((index * batch + b + 1) * p),
                                                       with: forward.finalState.hidden)
                    result.finalCell.replaceSubrange(((index * batch + b) * h)..<((index * batch + b + 1) * h),
                                                     with: forward.finalState.cell)
                }
                layerInputs.append(output)
            }
            for t in 0..<length {
                result.output.replaceSubrange(((t * batch + b) * d * p)..<((t * batch + b + 1) * d * p), with: layerInputs[layerCount][t])
            }

            // Backward, from the top layer down: dL/d(layer k's output) is dL/d(layer k+1's input).
            var gradient = (0..<length).map { t in
                Array(outputGradient[((t * batch + b) * d * p)..<((t * batch + b + 1) * d * p)])
            }
            for k in stride(from: layerCount - 1, through: 0, by: -1) {
                let width = layerInputs[k].first?.count ?? 0
                var inputGradient = [[Double]](repeating: [Double](repeating: 0, count: width), count: length)
                for direction in 0..<d {
                    let index = k * d + direction
                    let own = gradient.map { Array($0[(direction * p)..<((direction + 1) * p)]) }
                    let reversed = direction == 1
                    let backward = RecurrentReference.backward(
                        steps: LSTMProjectionSteps.self, inputs: reversed ? layerInputs[k].reversed() : layerInputs[k],
                        weights: weights[k][direction],
                        initialState: RecurrentReferenceState(hidden: stateRow(h0, index, b, p), cell: stateRow(c0, index, b, h)),
                        outputGradients: reversed ? own.reversed() : own,
                        finalStateGradient: RecurrentReferenceState(hidden: stateRow(hiddenGradient, index, b, p),
                                                                    cell: stateRow(cellGradient, index, b, h)))
                    let inputs = reversed ? Array(backward.inputGradients.reversed()) : backward.inputGradients
                    for t in 0..<length { inputGradient[t] = zip(inputGradient[t], inputs[t]).map(+) }
                    result.initialHiddenGradient.replaceSubrange(((index * batch + b) * p)..<((index * batch + b + 1) * p),
                                                                 with: backward.initialStateGradient.hidden)
                    result.initialCellGradient.replaceSubrange(((index * batch + b) * h)..<((index * batch + b + 1) * h),
                                                               with: backward.initialStateGradient.cell)
                    let suffix = "_l\(k)" + (reversed ? "_reverse" : "")
                    for (name, values) in zip(LSTMProjectionSteps.parameterNames, backward.weightGradients.all) {
                        let key = name + suffix
                        result.weightGradients[key] = zip(result.weightGradients[key] ?? values.map { _ in 0 }, values).map(+)
                    }
                }
                gradient = inputGradient
            }
            for t in 0..<length {
                result.inputGradient.replaceSubrange(((t * batch + b) * inputSize)..<((t * batch + b + 1) * inputSize), with: gradient[t])
            }
        }
        return result
    }
}
