import Testing
@testable import Recur

// `Backend.uninitialized` skips zeroing for buffers an op overwrites completely (recurrent
// workspaces, layer outputs, dL/dx, the CPU backward scan's gate gradients). A value read before it
// is written would be whatever the memory held; here the CPU backend's hook fills those buffers with
// NaN instead, which would reach the results through any such read (NaN * 0 is NaN too), and every
// result must equal the run with clean buffers bit for bit: whole layers (every cell, stacked,
// bidirectional, pre and post padding, dropouts, clip, gradient-flow record) and the op-level
// parity configurations.

@Suite("Uninitialized buffers")
struct UninitializedBufferTests {
    struct LayerArgument: Sendable, CustomTestStringConvertible {
        var layer: RecurrentCase
        var testDescription: String { layer.description }
    }

    static let layerCases: [LayerArgument] = RecurrentCell.allCases.flatMap { cell in
        [false, true].flatMap { bidirectional in
            PaddingSide.allCases.map { padding in
                LayerArgument(layer: RecurrentCase(
                    cell: cell, steps: 6, batch: 4, inputSize: 5, hiddenSize: 7, layerCount: 2,
                    bidirectional: bidirectional, lengths: padding == .pre ? [6, 2, 5, 1] : [3, 6, 1, 4],
                    padding: padding, dropout: 0.25, recurrentDropout: 0.3, cellClip: cell == .lstm ? 0.6 : nil))
            }
        }
    }

    @Test("NaN in every uninitialized buffer changes no result of a layer's forward and backward",
          arguments: layerCases)
    func layerIgnoresStaleContents(_ argument: LayerArgument) throws {
        let c = argument.layer
        let clean = try c.trainingRun(on: CPUBackend(), seed: 17)
        let poisoned = try c.trainingRun(on: CPUBackend(poisoningUninitialized: true), seed: 17)
        #expect(poisoned.run.output == clean.run.output)
        #expect(poisoned.run.finalHidden == clean.run.finalHidden)
        #expect(poisoned.run.finalCell == clean.run.finalCell)
        #expect(poisoned.run.inputGradient == clean.run.inputGradient)
        #expect(poisoned.run.initialHiddenGradient == clean.run.initialHiddenGradient)
        #expect(poisoned.run.initialCellGradient == clean.run.initialCellGradient)
        #expect(poisoned.run.parameterGradients == clean.run.parameterGradients)
        #expect(!clean.run.parameterGradients.isEmpty)
        #expect(clean.run.output.allSatisfy(\.isFinite) && clean.run.inputGradient.allSatisfy(\.isFinite))
        #expect(poisoned.flow == clean.flow)
    }

    @Test("NaN in every uninitialized buffer changes no result of the recurrent ops",
          arguments: OpenCLRecurrentTests.cases)
    func opsIgnoreStaleContents(_ argument: OpenCLRecurrentTests.ParityArgument) throws {
        let clean = try argument.parity.run(on: CPUBackend(), seed: argument.seed)
        let poisoned = try argument.parity.run(on: CPUBackend(poisoningUninitialized: true), seed: argument.seed)
        #expect(poisoned.map(\.name) == clean.map(\.name))
        for (actual, expected) in zip(poisoned, clean) {
            #expect(actual.values == expected.values, "\(argument.parity): \(actual.name) differs")
        }
    }

    @Test("the hook really poisons: a tensor from uninitialized holds NaN, one from zeros holds 0")
    func hookPoisons() throws {
        let backend = CPUBackend(poisoningUninitialized: true)
        #expect(try backend.download(try backend.uninitialized([5, 3])).allSatisfy(\.isNaN))
        #expect(try backend.download(try backend.zeros([5, 3])).allSatisfy { $0 == 0 })
    }
}
