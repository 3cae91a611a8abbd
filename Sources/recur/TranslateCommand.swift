import ArgumentParser
import Recur

#if canImport(Glibc)
import Glibc
#endif

/// `recur translate`: an encoder-decoder checkpoint's outputs for new source lines, streamed.
struct TranslateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "translate",
        abstract: "Decode source lines with an encoder-decoder checkpoint.",
        discussion: """
            Reads standard input, or --input, one source a line, splits and encodes it as the \
            training sources were (tokenizer and vocabulary recorded in the checkpoint), and \
            prints one output line per input line: greedy decoding, or a beam search with --beam N. \
            A blank line gives an empty line. Lines are read, decoded and written a batch at a \
            time, so the command works in a pipeline.
            """
    )

    @OptionGroup var device: DeviceOptions
    @Option(help: "A checkpoint written by an encoder-decoder training run.") var checkpoint: String
    @Option(help: "Read this file instead of standard input.") var input: String?
    @Option(help: "Beams per source; 1 decodes greedily.") var beam = 1
    @Option(help: "The beam search's length normalisation alpha: scores are log p / length^alpha.")
    var lengthNormalization = 0.0
    @Option(help: "The most tokens per output (default: twice the batch's longest source plus 10).")
    var maxLength: Int?
    @Option(help: "Lines decoded at once.") var batchSize = 64

    func validate() throws {
        guard beam >= 1 else { throw ValidationError("--beam must be at least 1") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
        guard lengthNormalization >= 0, lengthNormalization.isFinite else {
            throw ValidationError("--length-normalization must be finite and not negative")
        }
        if let maxLength, maxLength < 1 { throw ValidationError("--max-length must be at least 1") }
    }

    func run() throws {
        let backend = try device.makeBackend()
        let translator = try Translator(checkpoint: try SequencePairCheckpoint(contentsOf: checkpoint), backend: backend)
        var lines = try LineReader(path: input)
        defer { lines.close() }
        while true {
            var batch: [String] = []
            while batch.count < batchSize, let line = try lines.next() { batch.append(line) }
            guard !batch.isEmpty else { break }
            for output in try translator.translate(batch, beamWidth: beam, lengthNormalization: lengthNormalization,
                                                   maximumLength: maxLength) {
                print(output)
            }
            // Each batch is out before the next is read: a pipeline sees results as they come.
            fflush(nil)
        }
    }
}
