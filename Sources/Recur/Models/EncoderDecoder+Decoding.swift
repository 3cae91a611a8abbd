// Decoding with an encoder–decoder: greedy and beam search, batched over sources, stepping the
// decoder one token at a time (T = 1) from the state the step before left.
//
// Shape legend: S source steps, B sources, W beam width, L_d decoder layers, K decoder hidden
// units, M encoder features, V target vocabulary.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension EncoderDecoder {
    /// The default longest output for a batch of sources: twice the longest source plus 10.
    /// - Parameter source: the sources.
    /// - Returns: the bound, at least 11.
    public static func defaultMaximumLength(for source: SequenceBatch) -> Int {
        2 * (source.lengths.max() ?? 0) + 10
    }

    /// Greedy decoding: from `<s>`, every step feeds back the most likely token (the first on
    /// ties) until every source has produced `</s>` or `maximumLength` tokens.
    /// - Parameters:
    ///   - source: the sources `[S, B]` with their lengths.
    ///   - maximumLength: the most tokens per output, `</s>` included; nil takes
    ///     ``defaultMaximumLength(for:)``.
    /// - Returns: each source's output ids, without markers (cut before the first `</s>`).
    public func greedyDecode(_ source: SequenceBatch, maximumLength: Int? = nil) throws -> [[Int32]] {
        try greedySteps(source, maximumLength: maximumLength, afterStep: nil)
    }

    /// Greedy decoding (as ``greedyDecode(_:maximumLength:)``) that also returns where the
    /// attention looked: for each source, one row per output step (its tokens, then `</s>` when
    /// it was produced) of weights over its valid source steps (padding cut off).
    /// - Parameters:
    ///   - source: the sources `[S, B]` with their lengths.
    ///   - maximumLength: the most tokens per output, `</s>` included; nil takes
    ///     ``defaultMaximumLength(for:)``.
    /// - Returns: each source's output ids, without markers, and its weights
    ///   `[output steps][source steps]`, each row summing to 1.
    /// - Throws: `RecurError.invalidArgument` for a model without ``LuongAttention``.
    public func greedyDecodeWithAttention(_ source: SequenceBatch, maximumLength: Int? = nil) throws
        -> (outputs: [[Int32]], weights: [[[Float]]])
    {
        guard let attention = outputTransform as? LuongAttention else {
            throw RecurError.invalidArgument(
                operation: "EncoderDecoder.greedyDecodeWithAttention", detail: "the model has no attention")
        }
        let (batch, sourceSteps) = (source.batchSize, source.steps)
        var weights = [[[Float]]](repeating: [], count: batch)
        var finished = [Bool](repeating: false, count: batch)
        let outputs = try greedySteps(source, maximumLength: maximumLength) { tokens in
            guard let stepWeights = attention.attentionWeights else {
                throw RecurError.invalidArgument(
                    operation: "EncoderDecoder.greedyDecodeWithAttention", detail: "the attention kept no weights")
            }
            let step = try self.backend.download(stepWeights)  // [B, 1, S]
            for b in 0..<batch where !finished[b] {
                let row = b * sourceSteps
                weights[b].append(Array(step[row..<(row + source.lengths[b])]))
                if tokens[b] == SequenceVocabulary.endID { finished[b] = true }
            }
        }
        return (outputs, weights)
    }

    /// Greedy decoding, calling `afterStep` with every step's chosen tokens `[B]` (the
    /// transform's caches then hold that step).
    private func greedySteps(_ source: SequenceBatch, maximumLength: Int?,
                             afterStep: ((_ tokens: [Int32]) throws -> Void)?) throws -> [[Int32]] {
        let limit = try checkedMaximumLength(maximumLength, source: source)
        let batch = source.batchSize
        let (memory, initial) = try encode(source, training: false)
        var state = initial
        var tokens = [Int32](repeating: SequenceVocabulary.startID, count: batch)
        var outputs = [[Int32]](repeating: [], count: batch)
        var finished = [Bool](repeating: false, count: batch)
        try decoder.withUnchangingWeights {
            for _ in 0..<limit {
                let step = try decode(tokens, steps: 1, lengths: nil, from: state, memory: memory, training: false)
                state = step.state
                tokens = argmaxRows(try backend.download(step.logits), classes: specification.targetVocabularySize)
                try afterStep?(tokens)
                for b in 0..<batch where !finished[b] {
                    if tokens[b] == SequenceVocabulary.endID { finished[b] = true } else { outputs[b].append(tokens[b]) }
                }
                if !finished.contains(false) { break }
            }
        }
        return outputs
    }

    /// Beam search: keeps the `width` most probable partial outputs of every source. A beam that
    /// has produced `</s>` is finished: it continues only with padding at no cost, so it keeps
    /// its score. The search stops when every beam of every source is finished or after
    /// `maximumLength` tokens; the output is the beam with the best score, the log probability
    /// divided by length^α when α > 0 (Wu et al. 2016 use a similar normalisation; length counts
    /// the tokens up to and including `</s>`), the log probability itself when α = 0. Ties go to
    /// the beam ranked first. Width 1 is greedy decoding.
    /// - Parameters:
    ///   - source: the sources `[S, B]` with their lengths.
    ///   - width: W, the beams per source, at least 1.
    ///   - lengthNormalization: α ≥ 0; default 0.
    ///   - maximumLength: the most tokens per output, `</s>` included; nil takes
    ///     ``defaultMaximumLength(for:)``.
    /// - Returns: each source's best output ids, without markers.
    public func beamSearch(_ source: SequenceBatch, width: Int, lengthNormalization: Double = 0,
                           maximumLength: Int? = nil) throws -> [[Int32]] {
        let operation = "EncoderDecoder.beamSearch"
        guard width >= 1 else {
            throw RecurError.invalidArgument(
                operation: operation, detail: "the beam width must be at least 1, got \(width)")
        }
        guard lengthNormalization >= 0, lengthNormalization.isFinite else {
            throw RecurError.invalidArgument(
                operation: operation,
                detail: "the length normalisation must be finite and not negative, got \(lengthNormalization)")
        }
        let limit = try checkedMaximumLength(maximumLength, source: source)
        let (batch, vocabulary) = (source.batchSize, specification.targetVocabularySize)
        let (encoded, initial) = try encode(source, training: false)
        // Beams of one source are adjacent: row b · W + w.
        let spread = (0..<(batch * width)).map { $0 / width }
        let memory = EncoderMemory(outputs: try gatherColumns(encoded.outputs, spread),
                                   lengths: spread.map { encoded.lengths[$0] })
        var state = try beamColumns(initial, spread)
        var beams = (0..<batch).map { _ in
            (0..<width).map { w in Beam(score: w == 0 ? 0 : -.infinity) }  // one live beam to start
        }
        var tokens = [Int32](repeating: SequenceVocabulary.startID, count: batch * width)
        try decoder.withUnchangingWeights {
            for _ in 0..<limit {
                let step = try decode(tokens, steps: 1, lengths: nil, from: state, memory: memory, training: false)
                let logits = try backend.download(step.logits)  // [B · W, V]
                var parents: [Int] = []
                for b in 0..<batch {
                    var candidates = TopCandidates(count: width)
                    for (w, beam) in beams[b].enumerated() where beam.score > -.infinity {
                        if beam.finished {
                            candidates.offer(score: beam.score, beam: w, token: SequenceVocabulary.paddingID)
                            continue
                        }
                        let row = (b * width + w) * vocabulary
                        let logSoftmax = Self.logSoftmax(logits[row..<(row + vocabulary)])
                        for (v, value) in logSoftmax.enumerated() {
                            candidates.offer(score: beam.score + value, beam: w, token: Int32(v))
                        }
                    }
                    let chosen = candidates.ranked
                    var next: [Beam] = []
                    for w in 0..<width {
                        guard w < chosen.count else {
                            next.append(Beam(score: -.infinity))
                            parents.append(b * width)
                            tokens[b * width + w] = SequenceVocabulary.paddingID
                            continue
                        }
                        let candidate = chosen[w]
                        var beam = beams[b][candidate.beam]
                        beam.score = candidate.score
                        if !beam.finished {
                            beam.length += 1
                            if candidate.token == SequenceVocabulary.endID {
                                beam.finished = true
                            } else {
                                beam.tokens.append(candidate.token)
                            }
                        }
                        next.append(beam)
                        parents.append(b * width + candidate.beam)
                        tokens[b * width + w] = candidate.token
                    }
                    beams[b] = next
                }
                state = try beamColumns(step.state, parents)
                if beams.allSatisfy({ $0.allSatisfy { $0.finished || $0.score == -.infinity } }) { break }
            }
        }
        return beams.map { sourceBeams in
            var best = 0
            var bestRank = -Double.infinity
            for (w, beam) in sourceBeams.enumerated() {
                let rank = lengthNormalization > 0
                    ? beam.score / pow(Double(max(beam.length, 1)), lengthNormalization) : beam.score
                if rank > bestRank {
                    (best, bestRank) = (w, rank)
                }
            }
            return sourceBeams[best].tokens
        }
    }

    /// One partial output of a beam search.
    private struct Beam {
        /// Σ log p of the tokens chosen so far; −∞ for a slot no hypothesis fills.
        var score: Double
        /// The tokens so far, without markers.
        var tokens: [Int32] = []
        /// Tokens produced, `</s>` included.
        var length = 0
        /// Whether `</s>` was produced.
        var finished = false
    }

    /// The `count` best (score, beam, token) offers, best first; on equal scores the earlier
    /// offer (lower beam, then lower token) ranks first, so width 1 picks greedy's token.
    private struct TopCandidates {
        let count: Int
        private(set) var ranked: [(score: Double, beam: Int, token: Int32)] = []

        init(count: Int) {
            self.count = count
        }

        mutating func offer(score: Double, beam: Int, token: Int32) {
            guard ranked.count < count || score > ranked[ranked.count - 1].score else { return }
            var index = ranked.count
            while index > 0, score > ranked[index - 1].score { index -= 1 }
            ranked.insert((score, beam, token), at: index)
            if ranked.count > count { ranked.removeLast() }
        }
    }

    /// log softmax of one row, in float64.
    private static func logSoftmax(_ row: ArraySlice<Float>) -> [Double] {
        let largest = Double(row.max() ?? 0)
        let logSum = log(row.reduce(0.0) { $0 + exp(Double($1) - largest) }) + largest
        return row.map { Double($0) - logSum }
    }

    /// The decoder state of the beams `columns` names: every part's columns gathered.
    private func beamColumns(_ state: DecoderState, _ columns: [Int]) throws -> DecoderState {
        DecoderState(
            recurrent: RecurrentState(hidden: try gatherColumns(state.recurrent.hidden, columns),
                                      cell: try state.recurrent.cell.map { try gatherColumns($0, columns) }),
            attentional: try state.attentional.map { try gatherColumns($0, columns) })
    }

    /// A new `[A, count, F]` tensor whose column j is column `columns[j]` of `tensor` `[A, C, F]`
    /// (states `[L, B, K]`, h̃ `[1, B, K]`, memory `[S, B, M]`): the reordering of beams, as one row gather on the
    /// device (the embedding's op, on `tensor` viewed as `[A · C, F]` rows), so a beam step
    /// uploads its parents' ids and moves no state through the host.
    private func gatherColumns(_ tensor: Tensor, _ columns: [Int]) throws -> Tensor {
        let (outer, width, features) = (tensor.shape[0], tensor.shape[1], tensor.shape[2])
        let rows = Tensor(shape: [outer * width, features], dtype: tensor.dtype, buffer: tensor.buffer,
                          backend: tensor.backend)
        var ids: [Int32] = []
        ids.reserveCapacity(outer * columns.count)
        for a in 0..<outer {
            for column in columns { ids.append(Int32(a * width + column)) }
        }
        let result = try backend.uninitialized([outer, columns.count, features])
        try backend.gather(rowsOf: rows, ids: try backend.upload(ids, shape: [ids.count]), into: result)
        return result
    }

    /// `maximumLength`, or the default for `source`; throws for a bound below 1.
    private func checkedMaximumLength(_ maximumLength: Int?, source: SequenceBatch) throws -> Int {
        let limit = maximumLength ?? Self.defaultMaximumLength(for: source)
        guard limit >= 1 else {
            throw RecurError.invalidArgument(
                operation: "EncoderDecoder.decode", detail: "the maximum output length must be at least 1, got \(limit)")
        }
        return limit
    }
}
