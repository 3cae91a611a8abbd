// Translating new text with a trained encoder–decoder: each line is split and encoded as the
// training sources were (the checkpoint's tokenizer and vocabulary), decoded greedily or with a
// beam, and its output tokens joined as the training targets were written.

/// Decodes lines of text with the model of a ``SequencePairCheckpoint``.
public final class Translator {
    /// The model.
    public let model: EncoderDecoder
    /// The checkpoint's source ids and tokenizer, and target ids and tokenizer.
    public let checkpoint: SequencePairCheckpoint

    /// - Parameters:
    ///   - checkpoint: a checkpoint ``SequencePairTrainer`` wrote.
    ///   - backend: the device to decode on.
    public init(checkpoint: SequencePairCheckpoint, backend: any Backend) throws {
        self.checkpoint = checkpoint
        model = try checkpoint.makeModel(backend: backend)
    }

    /// The outputs of `lines`, one per line and in order; a line without tokens (blank) gives
    /// an empty output. Tokens the vocabulary lacks read as unknown.
    /// - Parameters:
    ///   - lines: the source texts.
    ///   - beamWidth: 1 decodes greedily, more runs a beam search of that width.
    ///   - lengthNormalization: the beam search's α.
    ///   - maximumLength: the most tokens per output; nil takes the model's default for the batch.
    /// - Returns: the outputs, tokens joined with nothing between characters and a space between words.
    public func translate(_ lines: [String], beamWidth: Int = 1, lengthNormalization: Double = 0,
                          maximumLength: Int? = nil) throws -> [String] {
        let sources = lines.map { checkpoint.sourceVocabulary.encode(checkpoint.sourceTokenizer.tokens(in: $0)) }
        let filled = sources.indices.filter { !sources[$0].isEmpty }
        var outputs = [String](repeating: "", count: lines.count)
        guard !filled.isEmpty else { return outputs }
        let batch = EncodedSequencePairs.timeMajor(filled.map { sources[$0] })
        let decoded = beamWidth == 1
            ? try model.greedyDecode(batch, maximumLength: maximumLength)
            : try model.beamSearch(batch, width: beamWidth, lengthNormalization: lengthNormalization,
                                   maximumLength: maximumLength)
        let separator = checkpoint.targetTokenizer == .character ? "" : " "
        for (line, ids) in zip(filled, decoded) {
            outputs[line] = try checkpoint.targetVocabulary.decode(ids).joined(separator: separator)
        }
        return outputs
    }
}
