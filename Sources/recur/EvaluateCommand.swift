import ArgumentParser
import Recur

/// `recur evaluate`: the metrics of a checkpoint on the data it was trained with (or other data
/// of the same format).
struct EvaluateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate",
        abstract: "Evaluate a checkpoint on the test, validation or training split of its data.",
        discussion: """
            Reads the data source, vocabulary and classes recorded in the checkpoint, so the \
            splits are those of training. --data replaces the path (same format and options). \
            Reports the task's trivial baselines on the split (baseline_* fields; statistics from \
            the training split) and warns on stderr when the model does not beat one. A \
            model trained with --stateful is evaluated streaming: --batch-size contiguous streams \
            of windows, each window starting from the state the one before left (zero at the \
            start); --stateful or --no-stateful chooses for any lm or forecast checkpoint. An \
            encoder-decoder checkpoint (recur train --format pairs) is scored on the pair file \
            --data, read with its recorded tokenizers (tokens its vocabularies lack read as <unk>): \
            loss, token accuracy, and the sequence and edit-distance error rates of the decoded \
            outputs (greedy, or --beam N) against every reference of a source.
            """
    )

    @OptionGroup var device: DeviceOptions
    @Option(help: "A checkpoint written by recur train (best.safetensors or last.safetensors).") var checkpoint: String
    @Option(help: "Which split: test, validation, training.") var split = "test"
    @Option(help: "Other data of the same format instead of the recorded path (repeatable for lines).") var data: [String] = []
    @Option(name: .customLong("batch-size"),
            help: "Batch size (default 64); in a stateful evaluation, the number of streams (default: the training batch size).")
    var batchSizeOption: Int?
    @Flag(inversion: .prefixedNo, help: "Stream the windows with the state carried across them (default: as trained).")
    var stateful: Bool?
    @Flag(help: "One JSON object with the metrics.") var json = false
    @Option(help: "Forecasts: also score the seasonal naive forecast with this season length in steps.") var season: Int?
    @Option(help: "Encoder-decoder checkpoints: beams when decoding the sources; 1 decodes greedily.") var beam = 1
    @Flag(help: "Encoder-decoder checkpoints: skip and count malformed lines of --data instead of stopping at the first.")
    var skipMalformed = false

    func validate() throws {
        guard ["test", "validation", "training"].contains(split) else {
            throw ValidationError("--split is test, validation or training")
        }
        if let batchSizeOption, batchSizeOption < 1 { throw ValidationError("--batch-size must be at least 1") }
        guard beam >= 1 else { throw ValidationError("--beam must be at least 1") }
    }

    func run() throws {
        let backend = try device.makeBackend()
        if try Self.isPairCheckpoint(checkpoint) { return try evaluatePairs(backend: backend) }
        let saved = try Checkpoint(contentsOf: checkpoint)
        let recorded = try saved.recordedData()
        var source = try DataOptions.source(in: recorded)
        if !data.isEmpty { source.paths = data }
        // Streams are read as training read them unless told otherwise: their number decides how
        // many windows start from a zero state.
        let batchSize = batchSizeOption
            ?? ((stateful ?? saved.configuration.stateful) ? saved.configuration.batchSize : 64)
        try checkMemory(saved, source: source, examples: nil, batchSize: batchSize, backend: backend)
        let prepared = try recorded.prepare(source)
        if data.isEmpty, let fingerprint = recorded.fingerprint, fingerprint != prepared.training.fingerprint() {
            // The files changed since training: the splits may mix training and test examples.
            printError("warning: \(source.paths.joined(separator: ", ")) no longer holds the data the model was trained on "
                       + "(training split \(prepared.training.fingerprint()), recorded \(fingerprint))")
        }
        let examples: (any TrainingExamples)? = switch split {
        case "training": prepared.training
        case "validation": prepared.validation
        default: prepared.test
        }
        guard let examples else {
            throw ValidationError("the data has no \(split) split (see --test-split and --validation-split of recur train)")
        }
        try checkMemory(saved, source: source, examples: examples.count, batchSize: batchSize, backend: backend)
        let trainer = try Trainer(resumingFrom: saved, backend: backend)
        trainer.errorScale = prepared.errorScale
        let evaluation = try trainer.evaluation(examples, batchSize: batchSize, stateful: stateful)
        var metrics = evaluation.metrics
        if saved.specification.task == .classify {
            metrics.merge(evaluation.sums.perClassValues(names: prepared.classNames)) { first, _ in first }
        }
        if saved.specification.task == .forecast {
            metrics.merge(try BaselineReport.forecastErrors(trainer: trainer, prepared: prepared, on: examples)) {
                first, _ in first
            }
        }
        if let season, !(1...source.sequenceLength).contains(season) || saved.specification.task != .forecast {
            throw ValidationError("--season needs a forecast checkpoint and 1 ... \(source.sequenceLength) (its window length)")
        }
        let baselines = BaselineReport(trainer: trainer, prepared: prepared, split: split, examples: examples,
                                       season: season)
        if json {
            var fields: [(String, JSONScalar)] = [("split", .string(split)), ("examples", .int(examples.count))]
            for name in metrics.keys.sorted() { fields.append((name, .number(metrics[name]!))) }
            fields += baselines.fields
            print(jsonObject(fields))
        } else {
            let text = metrics.keys.sorted().map { "\($0) \(metricText(metrics[$0]!))" }.joined(separator: ", ")
            print("\(split) (\(examples.count) examples): \(text)")
            print(baselines.line)
        }
        for warning in baselines.warnings(modelMetrics: metrics) { printError(warning) }
    }
}
