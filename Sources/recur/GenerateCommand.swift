import ArgumentParser
import Recur

#if canImport(Glibc)
import Glibc
#endif

/// `recur generate`: samples text from a language-model checkpoint.
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Sample text from a language model trained with recur train --format text.",
        discussion: "Prints the prime, then each sampled token as it is drawn (at most \(TextGenerator.maximumLength) tokens)."
    )

    @OptionGroup var device: DeviceOptions
    @Option(help: "A language-model checkpoint.") var checkpoint: String
    @Option(help: "Text the model continues.") var prime = "The "
    @Option(help: "Tokens to generate.") var length = 500
    @Option(help: "Softmax temperature: below 1 more conservative, above 1 more varied.") var temperature: Float = 0.8
    @Option(help: "Sample among the k most likely tokens only.") var topK: Int?
    @Option(help: "Seed of the sampling.") var seed: UInt64 = 0

    func validate() throws {
        guard (0...TextGenerator.maximumLength).contains(length) else {
            throw ValidationError("--length must be 0 ... \(TextGenerator.maximumLength)")
        }
        guard temperature > 0 else { throw ValidationError("--temperature must be positive") }
        if let topK, topK < 1 { throw ValidationError("--top-k must be at least 1") }
    }

    func run() throws {
        let backend = try device.makeBackend()
        let saved = try Checkpoint(contentsOf: checkpoint)
        guard saved.specification.task == .lm else {
            throw ValidationError("\(checkpoint) holds a \(saved.specification.task) model, not a language model")
        }
        let recorded = try saved.recordedData()
        guard let vocabulary = recorded.vocabulary else {
            throw ValidationError("\(checkpoint) records no vocabulary (\(RecordedData.vocabularyKey))")
        }
        let source = try DataOptions.source(in: recorded)
        let generator = try TextGenerator(
            model: try saved.makeModel(backend: backend), vocabulary: vocabulary,
            tokenizer: source.tokenizer)
        // Each token is written as it is sampled: a long generation shows progress and never
        // builds up in memory.
        let output = StandardOutput()
        output.write(prime + (source.tokenizer == .word && length > 0 ? " " : ""))
        try generator.generate(prime: prime, length: length, temperature: temperature, topK: topK, seed: seed) { token in
            output.write(token)
        }
        output.write("\n")
    }
}

/// Standard output written straight to file descriptor 1, token by token: `print` would keep a
/// piped generation's tokens in its buffer until the end.
private struct StandardOutput {
    func write(_ text: String) {
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { Glibc.write(1, $0.baseAddress! + written, $0.count - written) }
            if count < 0 && errno == EINTR { continue }
            // A closed pipe (`recur generate | head`) ends the output; SIGPIPE ends the process.
            guard count > 0 else { return }
            written += count
        }
    }
}
