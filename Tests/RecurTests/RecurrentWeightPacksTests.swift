import Testing
@testable import Recur

// `RecurrentLayer.withUnchangingWeights`: inside it the CPU backend packs W_hh and W_ih once for
// every step of a loop instead of once per step. The kept packs must give the results fresh packs
// give, be made once per weight and kind, and never outlive the loop: weights changed after it
// are read again.

@Suite("Recurrent weight packs")
struct RecurrentWeightPacksTests {
    /// Steps a one-token-at-a-time loop and returns every step's output.
    private func stepOutputs(_ layer: RecurrentLayer, inputs: [Tensor], backend: any Backend) throws -> [[Float]] {
        var state: RecurrentState?
        var outputs: [[Float]] = []
        for input in inputs {
            let stepped = try layer.forward(input, initialState: state, training: false)
            state = stepped.finalState
            outputs.append(try backend.download(stepped.output))
        }
        return outputs
    }

    @Test(arguments: [RecurrentCell.lstm, .gru, .gruResetBefore])
    func keptPacksGiveFreshPacksResults(_ cell: RecurrentCell) throws {
        let backend = CPUBackend()
        let layer = try RecurrentLayer(cell: cell, inputSize: 5, hiddenSize: 7, layerCount: 2, bidirectional: true,
                                       seed: 3, backend: backend)
        var random = SeededRandom(seed: 11)
        let inputs = try (0..<6).map { _ in
            try backend.upload((0..<(3 * 5)).map { _ in random.uniform(bound: 1) }, shape: [1, 3, 5])
        }
        let fresh = try stepOutputs(layer, inputs: inputs, backend: backend)
        let kept = try layer.withUnchangingWeights { try stepOutputs(layer, inputs: inputs, backend: backend) }
        #expect(kept == fresh)

        // The packs live in the scans of one scope: each weight and kind packed once, however
        // many steps ran (2 layers × 2 directions × W_hhᵀ and W_ihᵀ, and the reset-before GRU's W_hnᵀ).
        var packs: RecurrentWeightPacks?
        try layer.withUnchangingWeights {
            _ = try stepOutputs(layer, inputs: inputs, backend: backend)
            packs = layer.forwardRecord?.scans.first?.first?.weightPacks
        }
        let perScan = cell == .gruResetBefore ? 3 : 2
        #expect(packs?.count == 2 * 2 * perScan)

        // After the scope the weights may change, and the next forward reads them.
        for parameter in layer.parameters where parameter.name.hasPrefix("weight_hh") {
            try backend.scale(parameter.value, by: 0.5)
        }
        let changed = try stepOutputs(layer, inputs: inputs, backend: backend)
        #expect(changed != fresh)
        let changedKept = try layer.withUnchangingWeights { try stepOutputs(layer, inputs: inputs, backend: backend) }
        #expect(changedKept == changed)
        // A forward outside a scope keeps nothing.
        _ = try layer.forward(inputs[0], training: false)
        #expect(layer.forwardRecord?.scans.first?.first?.weightPacks == nil)
    }
}
