import ArgumentParser
import Recur

/// `recur generate`: samples text from a language-model checkpoint.
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Sample text from a language model trained with recur train --format text.",
        discussion: "Prints the prime followed by the sampled continuation."
    )

    @OptionGroup var device: DeviceOptions
    @Option(help: "A language-model checkpoint.") var checkpoint: String
    @Option(help: "Text the model continues.") var prime = "The "
    @Option(help: "Tokens to generate.") var length = 500
    @Option(help: "Softmax temperature: below 1 more conservative, above 1 more varied.") var temperature: Float = 0.8
    @Option(help: "Sample among the k most likely tokens only.") var topK: Int?
    @Option(help: "Seed of the sampling.") var seed: UInt64 = 0

    func validate() throws {
        guard length >= 0 else { throw ValidationError("--length must be >= 0") }
        guard temperature > 0 else { throw ValidationError("--temperature must be positive") }
        if let topK, topK < 1 { throw ValidationError("--top-k must be at least 1") }
    }

    func run() throws {
        let backend = try device.makeBackend()
        let saved = try Checkpoint(contentsOf: checkpoint)
        guard saved.specification.task == .lm else {
            throw ValidationError("\(checkpoint) holds a \(saved.specification.task) model, not a language model")
        }
        guard let vocabularyText = saved.metadata["data.vocabulary"] else {
            throw ValidationError("\(checkpoint) records no vocabulary (data.vocabulary)")
        }
        let source = try DataOptions.source(in: saved.metadata)
        let generator = try TextGenerator(
            model: try saved.makeModel(backend: backend), vocabulary: try Vocabulary(serialized: vocabularyText),
            tokenizer: source.tokenizer)
        let text = try generator.generate(prime: prime, length: length, temperature: temperature, topK: topK, seed: seed)
        print(prime + (source.tokenizer == .word ? " " : "") + text)
    }
}
