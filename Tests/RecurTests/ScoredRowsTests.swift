import Testing
@testable import Recur

// The scored places of a teacher-forced batch (`ScoredRows`): the row gather and scatter on both
// backends, and Luong attention run on the scored rows only against the full layout gathered
// afterwards: the same h̃, the same gradients of h, the memory and every parameter.
//
// Shape legend: T target steps, S source steps, B batch, K decoder features, M memory features,
// N scored places.

@Suite("Scored rows")
struct ScoredRowsTests {
    @Test("rows are the places t < length_b in row order; gather and scatter move them exactly",
          arguments: TestBackend.allCases)
    func gatherAndScatter(kind: TestBackend) throws {
        guard let backend = try kind.backend() else { return }
        let (steps, lengths, width) = (4, [2, 4, 1], 3)
        let rows = try #require(try ScoredRows(steps: steps, lengths: lengths, backend: backend))
        let expected: [Int32] = [0, 1, 2, 3, 4, 7, 10]  // t · 3 + b for t < length_b
        #expect(rows.count == expected.count)
        #expect(try backend.downloadInt32(rows.indices) == expected)
        var random = SeededGenerator(seed: 21)
        let values = (0..<(steps * lengths.count * width)).map { _ in random.uniform(-1, 1) }
        let gathered = try rows.gather(try backend.upload(values, shape: [steps, lengths.count, width]))
        #expect(gathered.shape == [expected.count, width])
        let wanted = expected.flatMap { values[(Int($0) * width)..<(Int($0) * width + width)] }
        #expect(try gathered.toArray() == wanted)
        let spread = try rows.scatter(gathered)
        #expect(spread.shape == [steps, lengths.count, width])
        let full = (0..<values.count).map { expected.contains(Int32($0 / width)) ? values[$0] : 0 }
        #expect(try spread.toArray() == full)
    }

    @Test("nothing to leave out gives nil; lengths outside 1...T are refused")
    func fullAndInvalid() throws {
        let backend = TestBackends.cpu
        #expect(try ScoredRows(steps: 3, lengths: [3, 3], backend: backend) == nil)
        for lengths in [[0, 2], [4, 1]] {
            expectRecurError("lengths \(lengths)", matches: {
                if case .invalidArgument(_, let detail) = $0 { return detail.contains("outside 1...3") }
                return false
            }) {
                _ = try ScoredRows(steps: 3, lengths: lengths, backend: backend)
            }
        }
    }

    @Test("Luong attention on the scored rows equals the full layout's scored rows, forward and backward",
          arguments: [(TestBackend.cpu, AttentionKind.general), (.cpu, .additive), (.openCL, .general)])
    func attentionOnScoredRows(kind: TestBackend, score: AttentionKind) throws {
        guard let backend = try kind.backend() else { return }
        let (steps, sourceSteps, k, m) = (5, 4, 6, 7)
        let (targetLengths, sourceLengths) = ([5, 2, 3], [4, 1, 3])
        let batch = targetLengths.count
        var random = SeededGenerator(seed: 22)
        func values(_ count: Int) -> [Float] { (0..<count).map { _ in random.uniform(-1, 1) } }
        var decoderValues = values(steps * batch * k)
        var memoryValues = values(sourceSteps * batch * m)
        // Padded places hold 0, as the recurrent ops leave them.
        for t in 0..<steps {
            for b in 0..<batch where t >= targetLengths[b] {
                for f in 0..<k { decoderValues[(t * batch + b) * k + f] = 0 }
            }
        }
        for s in 0..<sourceSteps {
            for b in 0..<batch where s >= sourceLengths[b] {
                for f in 0..<m { memoryValues[(s * batch + b) * m + f] = 0 }
            }
        }
        let decoderOutput = try backend.upload(decoderValues, shape: [steps, batch, k])
        let memory = EncoderMemory(outputs: try backend.upload(memoryValues, shape: [sourceSteps, batch, m]),
                                   lengths: sourceLengths)
        let rows = try #require(try ScoredRows(steps: steps, lengths: targetLengths, backend: backend))
        let upstream = try backend.upload(values(rows.count * k), shape: [rows.count, k])  // dL/dh̃ [N, K]

        func run(scoredOnly: Bool) throws -> (output: [Float], decoder: [Float], memory: [Float], parameters: [[Float]]) {
            let attention = try LuongAttention(kind: score, decoderFeatures: k, memoryFeatures: m, seed: 5,
                                               backend: backend)
            let output: Tensor
            let gradients: (decoderOutput: Tensor, memory: Tensor)
            if scoredOnly {
                output = try attention.forward(decoderOutput: decoderOutput, memory: memory, rows: rows, training: true)
                gradients = try attention.backward(from: upstream, rows: rows)
            } else {
                output = try rows.gather(try attention.forward(decoderOutput: decoderOutput, memory: memory,
                                                               training: true))
                gradients = try attention.backward(from: try rows.scatter(upstream))
            }
            return (try output.toArray(), try gradients.decoderOutput.toArray(), try gradients.memory.toArray(),
                    try attention.parameters.map { try $0.gradient.toArray() })
        }
        let scored = try run(scoredOnly: true)
        let full = try run(scoredOnly: false)
        assertClose(scored.output, full.output, relativeTolerance: 1e-5, absoluteTolerance: 1e-6, "h̃")
        assertClose(scored.decoder, full.decoder, relativeTolerance: 1e-5, absoluteTolerance: 1e-6, "dL/dh")
        assertClose(scored.memory, full.memory, relativeTolerance: 1e-5, absoluteTolerance: 1e-6, "dL/d memory")
        #expect(scored.parameters.count == full.parameters.count)
        for (index, (mine, theirs)) in zip(scored.parameters, full.parameters).enumerated() {
            #expect(mine.contains { $0 != 0 }, "parameter \(index) has a gradient")
            assertClose(mine, theirs, relativeTolerance: 1e-5, absoluteTolerance: 1e-6, "parameter \(index)")
        }
    }
}
