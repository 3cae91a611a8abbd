import Testing
@testable import Recur

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Input feeding (Luong et al. 2015): the decoder reads its attentional state h̃ of the step
// before. Its shapes and JSON, the gradient of back-propagation through the fed-back steps, the
// training pass against stepping the decoder by hand, decoding, OpenCL against the CPU, and a
// small model that learns to reverse strings. The padding and resume tests of the plain model
// take it as an argument.

extension EncoderDecoderTests {
    @Test("input feeding: the decoder reads [e; h̃] (weight_ih [G, E + K]); JSON keeps it; it needs attention")
    func inputFeedingSpecification() throws {
        let pairs = try randomPairs(count: 8, seed: 1)
        let backend = TestBackends.cpu
        let fed = specification(pairs, hiddenSize: 4, decoderHiddenSize: 6, bidirectional: true, attention: .general,
                                inputFeeding: true)
        let model = try EncoderDecoder(specification: fed, backend: backend)
        let shapes = Dictionary(uniqueKeysWithValues: model.parameters.map { ($0.name, $0.value.shape) })
        // E = 5, K = 6, four LSTM gates.
        #expect(shapes["decoder.weight_ih_l0"] == [24, 11])
        #expect(fed.decoderInputSize == 11)
        #expect(try fed.json().contains("\"inputFeeding\":true"))
        #expect(try EncoderDecoderSpecification(json: try fed.json(), source: "fed") == fed)
        let unfed = specification(pairs, hiddenSize: 4, decoderHiddenSize: 6, bidirectional: true, attention: .general)
        #expect(!(try unfed.json()).contains("inputFeeding"))
        #expect(try EncoderDecoderSpecification(json: try unfed.json(), source: "unfed").inputFeeding == false)
        let batch = pairs.batch(0..<8)
        #expect(try model.forward(batch, training: false).loss
                != EncoderDecoder(specification: unfed, backend: backend).forward(batch, training: false).loss)
        expectRecurError("input feeding without attention", matches: {
            if case .invalidArgument(_, let detail) = $0 { return detail.contains("needs an attention") }
            return false
        }) {
            _ = try EncoderDecoder(specification: specification(pairs, inputFeeding: true), backend: backend)
        }
    }

    @Test("input feeding: the gradient matches central differences of the loss",
          arguments: [(DecoderAttention.general, 1.0, Float(0), 1), (.additive, 0.5, 0.2, 2), (.dot, 1.0, 0, 1)])
    func inputFeedingFiniteDifferences(attention: DecoderAttention, teacherForcing: Double, labelSmoothing: Float,
                                       decoderLayers: Int) throws {
        let pairs = try randomPairs(count: 5, seed: 4, maximumLength: 4)
        let model = try EncoderDecoder(
            specification: specification(pairs, hiddenSize: 4, decoderHiddenSize: attention == .dot ? 8 : 6,
                                         decoderLayers: decoderLayers, bidirectional: true, attention: attention,
                                         inputFeeding: true),
            backend: TestBackends.cpu)
        try expectFiniteDifferences(model, pairs.batch(0..<5), teacherForcing: teacherForcing,
                                    labelSmoothing: labelSmoothing)
    }

    @Test("input feeding: a pass's logits are the decoder stepped by hand, each step reading the last step's h̃")
    func inputFeedingMatchesStepping() throws {
        let pairs = try randomPairs(count: 6, seed: 5)
        let model = try EncoderDecoder(
            specification: specification(pairs, decoderHiddenSize: 10, decoderLayers: 2, attention: .general,
                                         inputFeeding: true),
            backend: TestBackends.cpu)
        let batch = pairs.batch(0..<6)
        let logits = try model.forward(batch, training: false).logits.toArray()  // [T - 1, B, V]
        let (inputs, _, lengths) = try EncoderDecoder.teacherForcedRows(batch.target)
        let (width, vocabulary) = (batch.target.batchSize, model.specification.targetVocabularySize)
        let (memory, initial) = try model.encode(batch.source, training: false)
        #expect(try #require(initial.attentional).toArray().allSatisfy { $0 == 0 })
        var state = initial
        for t in 0..<(batch.target.steps - 1) {
            let step = try model.decode(Array(inputs[(t * width)..<((t + 1) * width)]), steps: 1, lengths: nil,
                                        from: state, memory: memory, training: false)
            let fed = try #require(step.state.attentional).toArray()
            #expect(fed != (try #require(state.attentional).toArray()), "step \(t) moved h̃")
            state = step.state
            let stepped = try step.logits.toArray()  // [B, V]
            for b in 0..<width where t < lengths[b] {
                let row = (t * width + b) * vocabulary
                assertClose(Array(logits[row..<(row + vocabulary)]),
                            Array(stepped[(b * vocabulary)..<((b + 1) * vocabulary)]),
                            relativeTolerance: 1e-5, absoluteTolerance: 1e-6, "step \(t), sequence \(b)")
            }
        }
    }

    @Test("input feeding: beam search of width 1 is greedy decoding; each source alone decodes the same")
    func inputFeedingBeamOfOneIsGreedy() throws {
        let pairs = try randomPairs(count: 12, seed: 6)
        let model = try EncoderDecoder(
            specification: specification(pairs, hiddenSize: 12, seed: 8, attention: .additive, inputFeeding: true),
            backend: TestBackends.cpu)
        let source = pairs.sourceBatch(groups: 0..<pairs.sources.count)
        let greedy = try model.greedyDecode(source, maximumLength: 9)
        #expect(try model.beamSearch(source, width: 1, maximumLength: 9) == greedy)
        #expect(try model.greedyDecodeWithAttention(source, maximumLength: 9).outputs == greedy)
        for group in 0..<3 {
            #expect(try model.greedyDecode(pairs.sourceBatch(groups: [group]), maximumLength: 9) == [greedy[group]])
            #expect(try model.beamSearch(pairs.sourceBatch(groups: [group]), width: 3, maximumLength: 9)
                    == [try model.beamSearch(source, width: 3, maximumLength: 9)[group]])
        }
    }

    @Test("input feeding: the OpenCL backend gives the CPU's loss, gradients and greedy outputs")
    func inputFeedingOpenCLMatchesCPU() throws {
        guard let openCL = try TestBackends.openCL() else { return }
        let pairs = try randomPairs(count: 6, seed: 10)
        let spec = specification(pairs, hiddenSize: 6, decoderHiddenSize: 8, decoderLayers: 2, bidirectional: true,
                                 attention: .general, inputFeeding: true)
        let batch = pairs.batch(0..<6)
        let cpuModel = try EncoderDecoder(specification: spec, backend: TestBackends.cpu)
        let cpu = try lossAndGradients(cpuModel, batch, teacherForcing: 0.5, seed: 3)
        let device = try EncoderDecoder(specification: spec, backend: openCL)
        let other = try lossAndGradients(device, batch, teacherForcing: 0.5, seed: 3)
        #expect(abs(other.loss - cpu.loss) <= 1e-5 * abs(cpu.loss), "OpenCL \(other.loss), CPU \(cpu.loss)")
        for (name, gradient) in cpu.gradients {
            assertClose(try #require(other.gradients[name]), gradient, relativeTolerance: 1e-3, absoluteTolerance: 1e-5,
                        name)
        }
        let source = pairs.sourceBatch(groups: 0..<pairs.sources.count)
        #expect(try device.greedyDecode(source, maximumLength: 8) == cpuModel.greedyDecode(source, maximumLength: 8))
    }

    @Test("input feeding: a small encoder-decoder that feeds h̃ back learns to reverse strings (≥ 99% held out)")
    func inputFeedingLearnsToReverseStrings() throws {
        var task = try ReverseStringTask(alphabet: "abcde", lengths: 1...4, seed: 1)
        #expect(try heldOutAccuracy("reverse string", pairs: task.pairs(count: 1600), hiddenSize: 24, epochs: 8,
                                    attention: .general, inputFeeding: true, cosine: true) >= 0.99)
    }
}
