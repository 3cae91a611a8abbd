import ArgumentParser
import Recur

#if canImport(Glibc)
import Glibc
#endif

/// The options of `recur train --format pairs` that no other format has.
struct PairOptions: ParsableArguments {
    @Option(help: "Pairs: how sources split into tokens, character or word (default: --tokenizer, else character).")
    var sourceTokenizer: String?
    @Option(help: "Pairs: how targets split into tokens, character or word (default: --tokenizer, else character).")
    var targetTokenizer: String?
    @Option(help: "Pairs: decoder hidden units (default: the encoder's output width, --hidden, doubled when bidirectional).")
    var decoderHidden: Int?
    @Option(help: "Pairs: decoder layers (default: --layers).") var decoderLayers: Int?
    @Option(help: "Pairs: the chance that the decoder reads the reference token rather than its own argmax (below 1: scheduled sampling).")
    var teacherForcing = 1.0
    @Option(help: "Pairs: label smoothing epsilon of the cross-entropy (PyTorch's label_smoothing).") var labelSmoothing: Float = 0
    @Option(help: "Pairs: beams when decoding validation and test sources; 1 decodes greedily.") var beam = 1
    @Option(help: "Pairs: a pair file scored after training (test metrics in the final report).") var testFile: String?
    @Option(help: "Pairs: Luong attention of the decoder over the encoder's outputs: none, dot, general or additive.")
    var attention = DecoderAttention.none.rawValue
    @Flag(help: "Pairs: input feeding; every decoder step also reads the attentional state of the step before (needs --attention).")
    var inputFeeding = false

    /// The attention kind `--attention` names.
    func decoderAttention() throws -> DecoderAttention {
        guard let kind = DecoderAttention(rawValue: attention) else {
            let names = DecoderAttention.allCases.map(\.rawValue).joined(separator: ", ")
            throw ValidationError("--attention is one of \(names), got '\(attention)'")
        }
        return kind
    }

    /// The tokenizer named by `name`, else by `--tokenizer`, else characters.
    static func tokenizer(_ name: String?, fallback: String?) throws -> PairTokenizer {
        let chosen = name ?? fallback ?? PairTokenizer.character.rawValue
        guard let tokenizer = PairTokenizer(rawValue: chosen) else {
            throw ValidationError("a pair tokenizer is character or word, got '\(chosen)'")
        }
        return tokenizer
    }
}

/// Reading pair files for the commands: the library's rules, or with `--skip-malformed` the
/// lines that break them left out and counted.
enum PairFiles {
    /// The pairs of `path` and the number of malformed lines skipped.
    static func read(_ path: String, source: PairTokenizer, target: PairTokenizer, skipMalformed: Bool)
        throws -> (pairs: SequencePairs, skipped: Int)
    {
        guard skipMalformed else {
            return (try SequencePairs(contentsOf: path, sourceTokenizer: source, targetTokenizer: target), 0)
        }
        var reader = try LineReader(path: path)
        defer { reader.close() }
        var kept: [String] = []
        var skipped = 0
        while let line = try reader.next() {
            let text = line.hasSuffix("\r") ? String(line.dropLast()) : line
            if text.isEmpty { continue }
            let fields = text.split(separator: "\t", omittingEmptySubsequences: false)
            if fields.count == 2, !source.tokens(in: String(fields[0])).isEmpty,
               !target.tokens(in: String(fields[1])).isEmpty {
                kept.append(text)
            } else {
                skipped += 1
            }
        }
        let pairs = try SequencePairs(text: kept.joined(separator: "\n"), name: path, sourceTokenizer: source,
                                      targetTokenizer: target)
        return (pairs, skipped)
    }

    /// `prefix`loss, token_accuracy, sequence_error_rate and edit_distance_error_rate.
    static func metricFields(_ prefix: String, loss: Double, _ sums: SequenceMetricSums) -> [(String, Double)] {
        [(prefix + "loss", loss), (prefix + "token_accuracy", sums.tokenAccuracy ?? .nan),
         (prefix + "sequence_error_rate", sums.sequenceErrorRate ?? .nan),
         (prefix + "edit_distance_error_rate", sums.editDistanceErrorRate ?? .nan)]
    }

    /// Fields as a terminal list: `name value, ...`.
    static func text(_ fields: [(String, Double)]) -> String {
        fields.map { "\($0.0) \(metricText($0.1))" }.joined(separator: ", ")
    }
}

extension TrainCommand {
    /// `recur train --format pairs`: an encoder-decoder trained by `SequencePairTrainer`.
    func trainPairs(backend: any Backend) throws {
        for (flag, given) in [("--stateful", stateful), ("--projection", projection != 0),
                              ("--schedule plateau", schedule.lowercased() == "plateau")] where given {
            throw ValidationError("\(flag) does not apply to --format pairs")
        }
        guard data.data.count == 1 else { throw ValidationError("--format pairs reads one --data file") }
        guard (0...1).contains(pairs.teacherForcing), pairs.labelSmoothing >= 0, pairs.labelSmoothing < 1,
              pairs.beam >= 1 else {
            throw ValidationError("--teacher-forcing is in [0, 1], --label-smoothing in [0, 1), --beam at least 1")
        }
        let lastPath = checkpointDir.map { $0 + "/last.safetensors" }
        let resumed = try resume ? SequencePairCheckpoint(contentsOf: lastPath!) : nil
        let sourceTokenizer = try resumed?.sourceTokenizer
            ?? PairOptions.tokenizer(pairs.sourceTokenizer, fallback: data.tokenizer)
        let targetTokenizer = try resumed?.targetTokenizer
            ?? PairOptions.tokenizer(pairs.targetTokenizer, fallback: data.tokenizer)
        let read = try PairFiles.read(data.data[0], source: sourceTokenizer, target: targetTokenizer,
                                      skipMalformed: data.skipMalformed)
        var rest = read.pairs
        var testPairs: SequencePairs?
        if let testFile = pairs.testFile {
            testPairs = try PairFiles.read(testFile, source: sourceTokenizer, target: targetTokenizer,
                                           skipMalformed: data.skipMalformed).pairs
        } else if data.testSplit > 0 {
            let split = try rest.split(validationFraction: data.testSplit, seed: data.splitSeed)
            (rest, testPairs) = (split.training, split.validation)
        }
        var trainingPairs = rest
        var validationPairs: SequencePairs?
        if data.validationSplit > 0 {
            // Another seed than the test split's: the sources left after it draw again.
            let split = try rest.split(validationFraction: data.validationSplit, seed: data.splitSeed &+ 1)
            (trainingPairs, validationPairs) = (split.training, split.validation)
        }

        let trainer: SequencePairTrainer
        if let resumed {
            trainer = try SequencePairTrainer(resuming: resumed, epochs: epochsOption, backend: backend)
        } else {
            let fitted = try EncodedSequencePairs(fitting: trainingPairs)
            let specification = EncoderDecoderSpecification(
                sourceVocabularySize: fitted.sourceVocabulary.count,
                targetVocabularySize: fitted.targetVocabulary.count, embeddingSize: embedding,
                cell: try BenchCommand.parseCell(cell), hiddenSize: hidden, decoderHiddenSize: pairs.decoderHidden,
                encoderLayers: layers, decoderLayers: pairs.decoderLayers ?? layers, bidirectional: bidirectional,
                dropout: dropout, seed: seed, attention: try pairs.decoderAttention(),
                inputFeeding: pairs.inputFeeding)
            // A product beyond Int is a schedule that never ends, as Int.max steps are.
            let (totalSteps, overflow) = epochs.multipliedReportingOverflow(
                by: (fitted.count + batchSize - 1) / max(batchSize, 1))
            let configuration = SequencePairTrainingConfiguration(
                epochs: epochs, batchSize: batchSize, optimizer: try optimizerSpecification(),
                schedule: try stepSchedule(totalSteps: overflow ? Int.max : totalSteps), clipping: gradientClipping(), teacherForcing: pairs.teacherForcing,
                labelSmoothing: pairs.labelSmoothing, seed: seed, beamWidth: pairs.beam)
            trainer = try SequencePairTrainer(
                model: try EncoderDecoder(specification: specification, backend: backend),
                configuration: configuration, sourceVocabulary: fitted.sourceVocabulary,
                targetVocabulary: fitted.targetVocabulary)
            trainer.sourceTokenizer = sourceTokenizer
            trainer.targetTokenizer = targetTokenizer
        }
        func encode(_ pairs: SequencePairs) -> EncodedSequencePairs {
            EncodedSequencePairs(pairs, sourceVocabulary: trainer.sourceVocabulary,
                                 targetVocabulary: trainer.targetVocabulary)
        }
        let training = encode(trainingPairs)
        let validation = validationPairs.map(encode)

        let spec = trainer.model.specification
        var line = "seq2seq \(spec.cell) H=\(spec.hiddenSize) L=\(spec.encoderLayers)"
            + "\(spec.bidirectional ? " bidirectional" : "") decoder H=\(spec.decoderHiddenSize) L=\(spec.decoderLayers)"
            + ", \(trainer.model.parameters.reduce(0) { $0 + $1.value.shape.count }) parameters on "
            + "\(backend.deviceName); \(trainingPairs.count) training sources (\(training.count) pairs), "
            + "\(validationPairs?.count ?? 0) validation, \(testPairs?.count ?? 0) test sources; vocabularies "
            + "\(trainer.sourceVocabulary.count) and \(trainer.targetVocabulary.count)"
        if read.skipped > 0 { line += ", \(read.skipped) malformed lines skipped" }
        pairLog(line)

        let monitorValue = try Self.pairMonitor(monitor)
        var best = trainer.progress.history.compactMap(monitorValue).min()
        if let checkpointDir {
            try ReportFile.createDirectory(checkpointDir)
            trainer.checkpointPath = lastPath
        }
        trainer.onEpoch = { record in
            var fields = [("loss", record.loss)]
            if let sums = record.validation {
                fields += PairFiles.metricFields("val_", loss: record.validationLoss ?? .nan, sums)
            }
            if json {
                print(jsonObject([("epoch", .int(record.epoch)), ("step", .int(trainer.progress.step))]
                    + fields.map { ($0.0, .number($0.1)) } + [("seconds", .number(record.seconds))]))
            } else {
                print("epoch \(record.epoch): \(PairFiles.text(fields)), \(fixed(record.seconds, 1)) s")
            }
            // An epoch can take minutes: its line goes out now, not when a file's buffer fills.
            fflush(nil)
            guard let checkpointDir, let value = monitorValue(record), best.map({ value < $0 }) ?? true else { return }
            best = value
            do {
                try trainer.checkpoint().write(to: checkpointDir + "/best.safetensors")
            } catch {
                printError("warning: best.safetensors not written: \(error)")
            }
        }
        try trainer.fit(training: training, validation: validation)
        if let checkpointDir, spec.attention != .none {
            try Self.writeAttentionMaps(of: trainer, for: validation ?? training, into: checkpointDir)
        }

        var final: [(String, Double)] = []
        if let testPairs {
            let test = try trainer.evaluate(encode(testPairs))
            final = PairFiles.metricFields("test_", loss: test.loss, test.metrics)
        }
        if json {
            print(jsonObject([("final", .bool(true)), ("epochs", .int(trainer.progress.completedEpochs))]
                + final.map { ($0.0, .number($0.1)) }))
        } else if !final.isEmpty {
            print("test (\(testPairs?.count ?? 0) sources): \(PairFiles.text(final))")
        }
    }

    /// How many validation sources get an attention heat map after training.
    static let attentionMapCount = 3

    /// Writes `attention-1.svg` … into `folder`: the attention weights of the trained model's
    /// greedy decode of the first sources of `pairs` (validation, else training), source tokens
    /// along the top and output tokens down the side.
    static func writeAttentionMaps(of trainer: SequencePairTrainer, for pairs: EncodedSequencePairs,
                                   into folder: String) throws {
        let groups = 0..<min(attentionMapCount, pairs.sources.count)
        guard !groups.isEmpty else { return }
        let (outputs, weights) = try trainer.model.greedyDecodeWithAttention(pairs.sourceBatch(groups: groups))
        for (index, group) in groups.enumerated() {
            let sourceTokens = try trainer.sourceVocabulary.decode(pairs.sources[group])
            var outputTokens = try trainer.targetVocabulary.decode(outputs[index])
            // The decode's last row is the step that wrote </s>, when it did.
            if weights[index].count > outputTokens.count { outputTokens.append("</s>") }
            let map = try SVGAttentionHeatMap(title: sourceTokens.joined(separator: " "), sourceTokens: sourceTokens,
                                              outputTokens: outputTokens, weights: weights[index])
            try map.write(to: folder + "/attention-\(index + 1).svg")
        }
    }

    /// The value of an epoch that best.safetensors watches (lower is better), by --monitor name.
    static func pairMonitor(_ name: String) throws -> (SequencePairEpoch) -> Double? {
        switch name {
        case "loss": return { $0.loss }
        case "val_loss": return { $0.validationLoss ?? $0.loss }
        case "val_sequence_error_rate": return { $0.validation?.sequenceErrorRate }
        case "val_edit_distance_error_rate": return { $0.validation?.editDistanceErrorRate }
        case "val_token_accuracy": return { $0.validation?.tokenAccuracy.map { -$0 } }
        default:
            throw ValidationError("--monitor for pairs is loss, val_loss, val_token_accuracy, val_sequence_error_rate "
                                  + "or val_edit_distance_error_rate")
        }
    }

    private func pairLog(_ message: String) {
        if json { printError(message) } else { print(message) }
    }
}

extension EvaluateCommand {
    /// Whether `path` is an encoder-decoder checkpoint (else a `Checkpoint` of the other tasks).
    static func isPairCheckpoint(_ path: String) throws -> Bool {
        try SafeTensorsFile(contentsOf: path).metadata["recur.format"] == SequencePairCheckpoint.format
    }

    /// `recur evaluate` of an encoder-decoder checkpoint: its metrics on the pair file --data,
    /// read with the recorded tokenizers; tokens the vocabularies lack read as <unk>.
    func evaluatePairs(backend: any Backend) throws {
        guard data.count == 1 else { throw ValidationError("an encoder-decoder checkpoint is evaluated on one --data pair file") }
        var saved = try SequencePairCheckpoint(contentsOf: checkpoint)
        saved.configuration.beamWidth = beam
        if let batchSizeOption { saved.configuration.evaluationBatchSize = batchSizeOption }
        let trainer = try SequencePairTrainer(resuming: saved, backend: backend)
        let read = try PairFiles.read(data[0], source: saved.sourceTokenizer, target: saved.targetTokenizer,
                                      skipMalformed: skipMalformed)
        let pairs = EncodedSequencePairs(read.pairs, sourceVocabulary: saved.sourceVocabulary,
                                         targetVocabulary: saved.targetVocabulary)
        let evaluation = try trainer.evaluate(pairs)
        let fields = PairFiles.metricFields("", loss: evaluation.loss, evaluation.metrics)
        if json {
            print(jsonObject([("sources", .int(read.pairs.count)), ("pairs", .int(read.pairs.pairCount)),
                              ("skipped", .int(read.skipped))] + fields.map { ($0.0, .number($0.1)) }))
        } else {
            print("\(data[0]) (\(read.pairs.count) sources, \(read.pairs.pairCount) pairs"
                  + (read.skipped > 0 ? ", \(read.skipped) malformed lines skipped" : "") + "): " + PairFiles.text(fields))
        }
    }
}
