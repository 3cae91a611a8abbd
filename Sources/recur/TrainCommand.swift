import ArgumentParser
import Recur
#if RECUR_MPI
import RecurDistributed
#endif

#if canImport(Glibc)
import Glibc
#endif

/// `recur train`: trains a classifier, tagger, language model or forecaster from files.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a recurrent model on a data set and save checkpoints.",
        discussion: """
            The task follows the data format: tsv, csv, lines, imdb -> classify; text -> lm; \
            series -> forecast; tagged -> tag; pairs -> an encoder-decoder (sequence to sequence: \
            source<TAB>target lines, sources held out for validation and test with all their \
            references; every epoch reports val_loss, val_token_accuracy, \
            val_sequence_error_rate and val_edit_distance_error_rate; --test-file scores a pair \
            file at the end). A series' windows are scaled by --transform \
            (default difference); mae is in the series' own units whatever the transform. \
            --value-column takes several columns (comma-separated, by index or header name) that \
            the model reads at each step, and --target-column the ones it forecasts. Models \
            are Embedding -> recurrent stack -> [Dropout] -> Dense (classify and forecast read the \
            last state; tag and lm every step). With --checkpoint-dir, writes last.safetensors \
            every epoch, best.safetensors when the monitored metric improves, log.jsonl and \
            curves.svg; --resume continues from last.safetensors there with the data, model and \
            optimizer it recorded. --stateful (lm and forecast) lays the windows out as \
            --batch-size contiguous streams and carries each stream's hidden state into its next \
            window (truncated BPTT; windows in time order, never shuffled; the state restarts at \
            zero every epoch); validation and test are streamed the same way. The final report \
            carries the task's trivial baselines on the test split (else validation): majority \
            class, unigram, last value and drift \
            (baseline_* fields), and warns on stderr when the model does not beat one.
            """
    )

    @OptionGroup var device: DeviceOptions
    @OptionGroup var data: DataOptions
    @OptionGroup(title: "Sequence pairs (--format pairs)") var pairs: PairOptions

    // MARK: Model
    @Option(help: "Cell: \(RecurrentCell.names.joined(separator: ", ")) (also read: rnn, rnn-relu, gru-reset-before).")
    var cell = "lstm"
    @Option(help: "Embedding width D.") var embedding = 32
    @Option(help: "Hidden units H per direction.") var hidden = 32
    @Option(help: "Project h to P < H features (PyTorch's proj_size; --cell lstm only, which it makes lstm_projection); 0 for none.")
    var projection = 0
    @Option(help: "Stacked recurrent layers.") var layers = 1
    @Flag(help: "Bidirectional recurrent layers.") var bidirectional = false
    @Option(help: "Dropout on the recurrent input, one mask per sequence (Keras's dropout).") var dropout: Float = 0
    @Option(help: "Dropout on h(t-1) (Keras's recurrent_dropout).") var recurrentDropout: Float = 0
    @Option(help: "Dropout between stacked layers (PyTorch's dropout).") var layerDropout: Float = 0
    @Option(help: "A Dropout layer before the output layer.") var outputDropout: Float = 0
    @Option(help: "Initialisers: keras (Glorot, orthogonal recurrent, forget bias 1) or pytorch.") var initialization = "keras"

    // MARK: Optimizer
    @Option(help: "sgd, adam, adamw, rmsprop.") var optimizer = "adam"
    @Option(help: "Learning rate.") var learningRate: Float = 1e-3
    @Option(help: "Momentum (sgd, rmsprop).") var momentum: Float = 0
    @Flag(help: "Nesterov momentum (sgd).") var nesterov = false
    @Option(help: "Weight decay (AdamW default 0.01).") var weightDecay: Float?
    @Option(help: "Adam and AdamW: the epsilon added to sqrt(v_hat) (default 1e-8, PyTorch's; Keras adds its 1e-7 to sqrt(v) before v's bias correction).")
    var epsilon: Float?
    @Option(help: "Learning-rate schedule: constant, cosine, step, plateau (reduce when --monitor stops improving).") var schedule = "constant"
    @Option(help: "Linear warm-up steps before the schedule.") var warmup = 0
    @Option(help: "Steps between decays (step schedule).") var stepSize = 1000
    @Option(help: "Decay factor (step schedule).") var decayFactor: Float = 0.1
    @Option(help: "Plateau schedule: multiply the rate by this (default 0.1).") var plateauFactor: Float?
    @Option(help: "Plateau schedule: epochs without improvement before a reduction (default 2).") var plateauPatience: Int?
    @Option(help: "Plateau schedule: the lowest rate (default 0).") var plateauMinLr: Float?
    @Option(help: "Adam's and RMSProp's second moment for an embedding row that ids of one batch share: summed adds (sum of its gradients)^2 (PyTorch, Keras with dense gradients); per-occurrence adds the sum of each occurrence's gradient^2 (Keras 3 on TensorFlow, whose embedding gradients are sparse slices). per-occurrence needs adam, adamw or rmsprop, no L2 --weight-decay with adam or rmsprop, and no --clip-value.")
    var embeddingSecondMoment = "summed"
    @Option(help: "Classify: none, or balanced (class k weighs N / (K n_k) in the loss, from the training split's counts).")
    var classWeight = "none"

    // MARK: Clipping
    @Option(help: "Clip the global gradient norm to this (as torch.nn.utils.clip_grad_norm_).") var clipNorm: Float?
    @Option(help: "Clip each parameter's gradient norm to this.") var clipParameterNorm: Float?
    @Option(help: "Clamp every gradient element to [-v, v].") var clipValue: Float?
    @Option(help: "AutoClip: clip to this percentile of the global norms seen so far.") var autoclip: Double?
    @Option(help: "Keep this parameter at its initial value (Keras's trainable=False), by its checkpoint name: 0.weight (the embedding), 1.bias_hh_l0, ...; repeat for several.")
    var freeze: [String] = []
    @Option(help: "On a NaN or Inf loss or gradient: stop (name the step and parameter) or skip the step.")
    var onNonFinite = "stop"

    // MARK: Loop
    @Option(name: .customLong("epochs"), help: "Epochs (default 10; with --resume, the total the run was started with).")
    var epochsOption: Int?
    /// Epochs of a new run.
    var epochs: Int { epochsOption ?? 10 }
    @Option(help: "Batch size.") var batchSize = 32
    @Flag(inversion: .prefixedNo, help: "Visit the training examples in a new seeded order every epoch (default, as Keras's fit), or in their order in the split every epoch.")
    var shuffle = true
    @Option(help: "Seed of the initial weights, shuffles and dropout.") var seed: UInt64 = 0
    @Flag(help: "Stateful training (lm, forecast): --batch-size contiguous streams, batch k holding window k of each; each stream's final state starts its next window (no gradient across windows), from zero at every epoch. Windows are not shuffled; --stride defaults to --max-length and must equal it. Validation and test loss are measured streaming the same way. Not with --bidirectional or --distributed.")
    var stateful = false
    @Option(help: "Early stopping: epochs without improvement of the monitored metric.") var patience: Int?
    @Option(help: "Metric that early stopping and best.safetensors watch: loss, accuracy, perplexity (lm), mae (forecast), precision, recall, f1 (classify; macro averages), each also with val_, and val_auc (two classes); accuracy, precision, recall, f1 and auc are better higher, the others lower.")
    var monitor = "val_loss"
    @Option(help: "Forecasts: also score the seasonal naive forecast with this season length in steps (at most --max-length).")
    var season: Int?
    @Option(help: "Folder for checkpoints, log.jsonl and curves.svg.") var checkpointDir: String?
    @Option(help: "Also write last.safetensors every N steps.") var checkpointEvery: Int?
    @Flag(help: "Continue from <checkpoint-dir>/last.safetensors.") var resume = false
    @Flag(help: "One JSON object per epoch on stdout, and a last one with \"final\": true.") var json = false
    @Flag(help: "Record ||dL/dh_t|| of every step and layer at the first step and each epoch's end; plot it.")
    var gradientFlow = false
    @Option(help: "Folder for curves.svg and gradient_flow.svg (default: --checkpoint-dir).") var plots: String?
    @Option(help: "Also write the model's initial parameters (before the first step) to this safetensors file, under the checkpoint's PyTorch names; a new run only.")
    var initialWeights: String?
    @Option(help: "Append one JSON line per optimizer step to this file: step, epoch, batch, loss (the batch's training loss before the update), grad_norm (global, before clipping); rewritten by a new run, continued by --resume.")
    var stepLog: String?
    @Option(help: "Also write the prepared splits (inputs and targets of every example) to this safetensors file, for training the same data elsewhere.")
    var exportData: String?
    #if RECUR_MPI
    @Flag(help: "Data-parallel over the ranks of mpirun: --batch-size is the global batch, split evenly over the ranks; rank 0 logs and writes checkpoints; a rank that fails ends every rank. Rank 0 ends with a `communication:` line on stderr (allreduce time per step and its share).")
    var distributed = false
    @Flag(help: "With --distributed: a barrier before each gradient allreduce, so the `communication:` line tells waiting for slower ranks apart from the transfer (one more collective per step).")
    var profile = false
    #endif

    func validate() throws {
        if resume && checkpointDir == nil { throw ValidationError("--resume needs --checkpoint-dir") }
        do {
            _ = try BenchCommand.parseCell(cell).projected(to: projection, hiddenSize: hidden, operation: "recur train")
        } catch let error as RecurError {
            throw ValidationError("\(error)")
        }
        if epsilon != nil && !["adam", "adamw"].contains(optimizer.lowercased()) {
            throw ValidationError("--epsilon applies to --optimizer adam or adamw")
        }
        if resume && initialWeights != nil { throw ValidationError("--initial-weights applies to a new run, not --resume") }
        #if RECUR_MPI
        if profile && !distributed { throw ValidationError("--profile needs --distributed") }
        #endif
        for (name, value) in [("--embedding", embedding), ("--hidden", hidden), ("--layers", layers),
                              ("--epochs", epochs), ("--batch-size", batchSize)] where value < 1 {
            throw ValidationError("\(name) must be at least 1")
        }
        if let season, !(1...data.maxLength).contains(season) {
            throw ValidationError("--season must be 1 ... --max-length (\(data.maxLength)): the windows must hold a season")
        }
        if epochs > TrainingConfiguration.maximumEpochs {
            throw ValidationError("--epochs must be at most \(TrainingConfiguration.maximumEpochs)")
        }
        let clips = [clipNorm != nil, clipParameterNorm != nil, clipValue != nil, autoclip != nil].filter { $0 }
        if clips.count > 1 { throw ValidationError("choose one of --clip-norm, --clip-parameter-norm, --clip-value, --autoclip") }
        guard ["stop", "skip"].contains(onNonFinite) else { throw ValidationError("--on-non-finite is stop or skip") }
        guard ["none", "balanced"].contains(classWeight) else { throw ValidationError("--class-weight is none or balanced") }
        let plateauOptions = [plateauFactor != nil, plateauPatience != nil, plateauMinLr != nil].contains(true)
        if schedule.lowercased() == "plateau" {
            if warmup > 0 { throw ValidationError("--warmup does not combine with --schedule plateau") }
        } else if plateauOptions {
            throw ValidationError("--plateau-factor, --plateau-patience and --plateau-min-lr need --schedule plateau")
        }
    }

    func run() throws {
        if data.format == "pairs" { return try trainPairs(backend: try device.makeBackend()) }
        #if RECUR_MPI
        if distributed {
            // Under MPI an error on one rank must end all of them (the others may wait in a
            // collective it will never join): report it naming the rank, then MPI_Abort.
            let communicator = try MPICommunicator()
            communicator.separatesWaiting = profile
            do {
                let backend = try device.specification().forLocalRank(communicator.localRank).makeBackend()
                let run = try train(communicator: communicator, backend: backend)
                if communicator.rank == 0 {
                    writeToStandardError(Self.communicationLine(communicator, run) + "\n")
                }
            } catch {
                communicator.abort(message: "\(error)")
            }
            communicator.finalize()
            return
        }
        #endif
        try train(communicator: LocalCommunicator(), backend: try device.makeBackend())
    }

    #if RECUR_MPI
    /// `communication: ranks=N steps=S samples_per_second=... ms_per_step=... allreduce_ms_per_step=...
    /// allreduce_share_percent=... wait_ms_per_step=... staging_ms_per_step=... gradient_bytes=... buckets=...`:
    /// this rank's averages over the steps of this run, the step time being the wall time of `fit`
    /// (validation and checkpoints included) over its steps. Without --profile the allreduce time
    /// includes waiting for slower ranks and `wait` is 0.
    private static func communicationLine(_ communicator: MPICommunicator, _ run: TrainingRun) -> String {
        let statistics = communicator.statistics
        let steps = max(run.steps, 1)
        let stepMilliseconds = 1000 * run.seconds / Double(steps)
        let allreduceMilliseconds = 1000 * statistics.allreduceSeconds / Double(steps)
        let share = stepMilliseconds > 0 ? 100 * allreduceMilliseconds / stepMilliseconds : 0
        let fields: [(String, String)] = [
            ("ranks", "\(communicator.worldSize)"), ("steps", "\(run.steps)"),
            ("samples_per_second", fixed(run.seconds > 0 ? Double(run.samples) / run.seconds : 0, 2)),
            ("ms_per_step", fixed(stepMilliseconds, 2)),
            ("allreduce_ms_per_step", fixed(allreduceMilliseconds, 2)),
            ("allreduce_share_percent", fixed(share, 2)),
            ("wait_ms_per_step", fixed(1000 * statistics.waitSeconds / Double(steps), 2)),
            ("staging_ms_per_step", fixed(1000 * statistics.stagingSeconds / Double(steps), 2)),
            ("gradient_bytes", "\(statistics.gradientBytes)"), ("buckets", "\(statistics.bucketCount)"),
        ]
        return "communication: " + fields.map { "\($0)=\($1)" }.joined(separator: " ")
    }
    #endif

    /// What one call of `train` did: optimizer steps taken, the examples they took (all ranks
    /// together), the wall time of `fit`.
    struct TrainingRun {
        var steps: Int
        var samples: Int
        var seconds: Double

        /// The examples in optimizer steps `steps` (0-based) of epochs of `count` examples in
        /// batches of `batchSize`, the last batch partial or dropped as the Trainer does on
        /// `worldSize` processes.
        static func samples(inSteps steps: Range<Int>, count: Int, batchSize: Int, worldSize: Int) -> Int {
            let keepsPartialBatch = worldSize == 1
            let batchesPerEpoch = keepsPartialBatch ? TrainCommand.ceilingDivision(count, batchSize) : count / batchSize
            guard batchesPerEpoch > 0 else { return 0 }
            let lastBatch = keepsPartialBatch ? count - (batchesPerEpoch - 1) * batchSize : batchSize
            return steps.reduce(0) { total, step in
                total + (step % batchesPerEpoch == batchesPerEpoch - 1 ? lastBatch : batchSize)
            }
        }
    }

    @discardableResult
    private func train(communicator: any TrainingCommunicator, backend: any Backend) throws -> TrainingRun {
        let isLeader = communicator.rank == 0
        let trainer: Trainer
        let prepared: PreparedData
        let source: DataSource
        if isLeader { try prepareOutputFolders() }
        if resume, let directory = checkpointDir {
            let checkpoint = try Checkpoint(contentsOf: directory + "/last.safetensors")
            let recorded = try checkpoint.recordedData()
            var recordedSource = try DataOptions.source(in: recorded)
            // --data may say where the recorded data lives now (moved, another machine); the
            // fingerprint below makes sure it is the same data.
            if !data.data.isEmpty { recordedSource.paths = data.data }
            source = recordedSource
            try checkMemory(resuming: checkpoint, source: source, prepared: nil, backend: backend)
            prepared = try recorded.prepare(source)
            if !Self.optionsResumeCannotChange(in: Array(CommandLine.arguments.dropFirst())).isEmpty {
                // Options besides where the run is and how it reports: they must describe the
                // recorded run (the original command line again), never silently another one.
                let differences = try differencesFromRecordedRun(checkpoint, recordedSource: source, prepared: prepared)
                guard differences.isEmpty else {
                    throw ValidationError(
                        "--resume continues the run recorded in \(directory)/last.safetensors, but the options given "
                            + "describe another run: \(differences.joined(separator: ", ")); give the original "
                            + "options or none of them, or start a new run in another --checkpoint-dir")
                }
            }
            if let fingerprint = recorded.fingerprint {
                let current = prepared.training.fingerprint()
                guard current == fingerprint else {
                    // Appended, reordered or replaced data would silently continue on other
                    // examples, and the resumed run would no longer equal an uninterrupted one.
                    throw ValidationError(
                        "\(source.paths.joined(separator: ", ")) no longer holds the data this run was trained on "
                            + "(training split now \(current), recorded \(fingerprint)); restore the data, "
                            + "or start a new run in another --checkpoint-dir")
                }
            }
            try checkMemory(resuming: checkpoint, source: source, prepared: prepared, backend: backend)
            trainer = try Trainer(resumingFrom: checkpoint, epochs: epochsOption, checkpointEverySteps: checkpointEvery,
                                  backend: backend, communicator: communicator)
            // Later checkpoints record where the data is now.
            if !data.data.isEmpty { trainer.metadata[RecordedData.sourceKey] = try source.json() }
            if isLeader { log("resuming after epoch \(checkpoint.progress.epoch), step \(checkpoint.progress.step)") }
        } else {
            source = try statefulDefaults(data.source())
            try checkMemoryBeforeReading(source, backend: backend)
            prepared = try source.prepare()
            let specification = try modelSpecification(source: source, prepared: prepared)
            try checkMemory(specification, prepared: prepared, steps: source.sequenceLength, backend: backend)
            // Without overflow for any --batch-size and --epochs: a product beyond Int is a
            // schedule that never ends, as Int.max steps are.
            let (totalSteps, overflow) = epochs.multipliedReportingOverflow(by: stepsPerEpoch(prepared))
            let configuration = try trainingConfiguration(
                totalSteps: overflow ? Int.max : totalSteps, specification: specification, prepared: prepared)
            trainer = try Trainer(specification: specification, configuration: configuration,
                                  backend: backend, communicator: communicator)
            trainer.metadata = try RecordedData.metadata(source: source, prepared: prepared)
        }
        trainer.errorScale = prepared.errorScale
        if season != nil && source.task != .forecast {
            throw ValidationError("--season applies to forecasts (--format series), not to \(source.task) data")
        }
        trainer.checkpointDirectory = checkpointDir
        if isLeader, let exportData { try Self.export(prepared, to: exportData) }
        if isLeader, let initialWeights { try StateDictionary.write(trainer.model.parameters, to: initialWeights) }
        if isLeader { describe(trainer, prepared, backend: backend) }

        let reporter = ProgressReporter(json: json, quiet: false)
        if isLeader, let stepLog { reporter.stepLog = try StepLog(path: stepLog, appending: resume) }
        trainer.observer = { event in reporter.report(event) }
        trainer.recordsGradientFlow = gradientFlow
        let clock = ContinuousClock()
        let (fitStart, firstStep) = (clock.now, trainer.progress.step)
        try trainer.fit(training: prepared.training, validation: prepared.validation)
        let fitSeconds = (clock.now - fitStart).inSeconds
        let run = TrainingRun(
            steps: trainer.progress.step - firstStep,
            samples: TrainingRun.samples(
                inSteps: firstStep ..< trainer.progress.step,
                count: trainer.configuration.stateful  // whole batches of B streams, the rest left out
                    ? prepared.training.count / trainer.configuration.batchSize * trainer.configuration.batchSize
                    : prepared.training.count,
                batchSize: trainer.configuration.batchSize, worldSize: communicator.worldSize),
            seconds: fitSeconds)
        reporter.finishLine()

        var final = trainer.progress.history.last?.metrics ?? [:]
        // The split the baselines are scored on: test if there is one, else validation (the
        // last epoch's `val_` metrics, evaluated once more for the confusion matrix).
        var scored: (split: String, prefix: String, examples: any TrainingExamples, evaluation: Trainer.Evaluation)?
        if let test = prepared.test {
            let evaluation = try trainer.evaluation(test)
            for (name, value) in evaluation.metrics { final["test_" + name] = value }
            scored = ("test", "test_", test, evaluation)
        } else if let validation = prepared.validation {
            scored = ("validation", "val_", validation, try trainer.evaluation(validation))
        }
        let seconds = trainer.progress.history.reduce(0) { $0 + $1.seconds }
        guard isLeader else { return run }
        var baselines: BaselineReport?
        var scoredMetrics = scored?.evaluation.metrics ?? [:]
        if let scored {
            if trainer.specification.task == .classify {
                for (name, value) in scored.evaluation.sums.perClassValues(names: prepared.classNames) {
                    final[scored.prefix + name] = value
                }
            }
            baselines = BaselineReport(trainer: trainer, prepared: prepared, split: scored.split,
                                       examples: scored.examples, season: season)
            if trainer.specification.task == .forecast {
                let errors = try BaselineReport.forecastErrors(trainer: trainer, prepared: prepared, on: scored.examples)
                for (name, value) in errors { final[scored.prefix + name] = value }
                scoredMetrics.merge(errors) { first, _ in first }
            }
        }
        if let folder = plots ?? checkpointDir {
            try ReportFile.createDirectory(folder)
            try TrainingPlots.writeCurves(trainer.progress.history, to: folder + "/curves.svg")
            if gradientFlow { try reporter.plots.writeGradientFlow(to: folder + "/gradient_flow.svg") }
        }
        if json {
            var fields: [(String, JSONScalar)] = [("final", .bool(true)), ("epochs", .int(trainer.progress.epoch))]
            for name in final.keys.sorted() { fields.append((name, .number(final[name]!))) }
            fields += baselines?.fields ?? []
            fields.append(("seconds", .number(seconds)))
            print(jsonObject(fields))
        } else {
            let summary = final.keys.sorted().map { "\($0) \(metricText(final[$0]!))" }.joined(separator: ", ")
            print("final after \(trainer.progress.epoch) epochs (\(fixed(seconds, 1)) s): \(summary)")
            if let baselines { print(baselines.line) }
        }
        if let baselines {
            for warning in baselines.warnings(modelMetrics: scoredMetrics) { printError(warning) }
        }
        return run
    }

    /// The fields in which the run this command line describes differs from the one `checkpoint`
    /// records, as "name given (recorded value)": data source, model and training configuration,
    /// all but the total epochs. Data options left out read as the recorded data's paths.
    private func differencesFromRecordedRun(_ checkpoint: Checkpoint, recordedSource: DataSource,
                                            prepared: PreparedData) throws -> [String] {
        var options = data
        // The paths are where the data is now (see `train`), not part of the comparison.
        options.data = recordedSource.paths
        // Through JSON and back, as the checkpoint holds them, so that only recorded fields count.
        var givenSource = try DataSource(json: try statefulDefaults(options.source()).json())
        // Unsaid, the transform is the recorded one: a checkpoint written before --transform
        // existed records level, which its command line (without the option) meant.
        if options.transform == nil { givenSource.transform = recordedSource.transform }
        let givenSpecification = try ModelSpecification(
            json: try modelSpecification(source: givenSource, prepared: prepared).json(), source: "the command line")
        let recordedEpochs = checkpoint.configuration.epochs
        let (totalSteps, overflow) = recordedEpochs.multipliedReportingOverflow(by: stepsPerEpoch(prepared))
        var givenConfiguration = try trainingConfiguration(
            totalSteps: overflow ? Int.max : totalSteps, specification: givenSpecification, prepared: prepared)
        givenConfiguration.epochs = recordedEpochs
        // How often mid-epoch checkpoints are written does not change the run; --checkpoint-every
        // replaces the recorded interval, and leaving it out keeps it.
        givenConfiguration.checkpointEverySteps = checkpoint.configuration.checkpointEverySteps
        return Self.fieldDifferences(givenSource, recordedSource)
            + Self.fieldDifferences(givenSpecification, checkpoint.specification)
            + Self.fieldDifferences(givenConfiguration, checkpoint.configuration)
    }

    /// "field given (recorded value)" for each stored property whose values read differently.
    static func fieldDifferences<Value>(_ given: Value, _ recorded: Value) -> [String] {
        let recordedFields = Dictionary(
            Mirror(reflecting: recorded).children.compactMap { child in child.label.map { ($0, child.value) } },
            uniquingKeysWith: { first, _ in first })
        return Mirror(reflecting: given).children.compactMap { child in
            guard let label = child.label, let other = recordedFields[label] else { return nil }
            let (mine, theirs) = (describe(child.value), describe(other))
            return mine == theirs ? nil : "\(label) \(mine) (recorded \(theirs))"
        }
    }

    private static func describe(_ value: Any) -> String {
        let text = String(describing: value)
        // Optionals read as their value, or as "none".
        if text == "nil" { return "none" }
        if text.hasPrefix("Optional("), text.hasSuffix(")") { return String(text.dropFirst(9).dropLast()) }
        return text
    }

    /// The options `train --resume` accepts besides the ones that say where the run is: the
    /// total epochs (to train longer), the device, how often mid-epoch checkpoints are written,
    /// and how progress and plots are reported.
    /// Every other option describes the data, the model, the optimizer or the loop, which the
    /// checkpoint records: given with --resume, together they must describe the recorded run.
    static let optionsResumeMayGive: Set<String> = [
        "--resume", "--checkpoint-dir", "--epochs", "--checkpoint-every", "--device", "--persistent-scans", "--json",
        "--plots", "--gradient-flow", "--export-data", "--step-log", "--season", "--distributed", "--profile", "--help", "-h",
    ]

    /// The options among `arguments` (the command line after the program name) that describe the
    /// run itself (data, model, optimizer, loop), in the order given, each once.
    static func optionsResumeCannotChange(in arguments: [String]) -> [String] {
        var names: [String] = []
        for argument in arguments {
            if argument == "--" { break }
            guard argument.hasPrefix("-"), argument.count > 1, Double(argument) == nil else { continue }
            let name = String(argument.split(separator: "=", maxSplits: 1)[0])
            if name != "train" && !optionsResumeMayGive.contains(name) && !names.contains(name) { names.append(name) }
        }
        return names
    }

    /// Creates the checkpoint and plot folders and checks that they can be written now, before
    /// the data is read and an epoch is trained, not at the first save; removes temporary files
    /// that a killed run left in the checkpoint folder.
    private func prepareOutputFolders() throws {
        if let checkpointDir {
            let removed = try ReportFile.prepareWritableDirectory(checkpointDir)
            if !removed.isEmpty {
                printError("removed \(removed.count) temporary file\(removed.count == 1 ? "" : "s") that an interrupted "
                           + "run left in \(checkpointDir)")
            }
        }
        if let plots, plots != checkpointDir {
            try ReportFile.prepareWritableDirectory(plots)
        }
    }

    /// Writes every split as `<split>.inputs` (ids or values, example-major `[N, T]`) and
    /// `<split>.targets` (`[N, K]` floats, `[N]` classes, or `[N, T]` per-step classes).
    static func export(_ prepared: PreparedData, to path: String) throws {
        var metadata = ["classes": prepared.classNames.joined(separator: "\n")]
        if let vocabulary = prepared.vocabulary { metadata["vocabulary_size"] = "\(vocabulary.count)" }
        if let standardization = prepared.standardization {
            metadata["transform"] = prepared.transform.rawValue
            // revin windows have a scale each, and several targets one each, not one.
            if prepared.transform != .revin && prepared.targetCount == 1 {
                metadata["scale"] = "\(standardization.standardDeviation)"
            }
        }
        var writer = SafeTensorsWriter(metadata: metadata)
        let splits: [(String, (any TrainingExamples)?)] =
            [("train", prepared.training), ("validation", prepared.validation), ("test", prepared.test)]
        for (name, examples) in splits {
            guard let examples, examples.count > 0 else { continue }
            let batch = examples.batch(Array(0..<examples.count)[...])
            let n = examples.count
            switch batch.input {
            case let .ids(ids, steps, _, _):
                try writer.add(name + ".inputs", int32s: transposed(ids, rows: steps, columns: n), shape: [n, steps])
            case let .values(values, steps, features):
                try writer.add(name + ".inputs", floats: transposed(values, rows: steps, columns: n * features),
                               shape: [n, steps * features])
            }
            switch batch.targets {
            case let .values(values, outputs):
                try writer.add(name + ".targets", floats: values, shape: [n, outputs])
            case let .classes(classes) where classes.count == n:
                try writer.add(name + ".targets", int32s: classes, shape: [n])
            case let .classes(classes):
                let steps = classes.count / n
                try writer.add(name + ".targets", int32s: transposed(classes, rows: steps, columns: n), shape: [n, steps])
            }
        }
        try writer.write(to: path)
    }

    /// A row-major `[rows, columns]` matrix as `[columns, rows]`.
    private static func transposed<Element>(_ values: [Element], rows: Int, columns: Int) -> [Element] {
        (0..<(rows * columns)).map { index in values[(index % rows) * columns + index / rows] }
    }

    private func log(_ message: String) {
        // Progress and notes go to stderr under --json, so stdout stays one JSON object per line.
        if json { printError(message) } else { print(message) }
    }

    private func describe(_ trainer: Trainer, _ prepared: PreparedData, backend: any Backend) {
        let spec = trainer.specification
        var line = "\(spec.task) \(spec.cell) H=\(spec.hiddenSize) L=\(spec.layerCount)"
        if let projection = spec.projectionSize { line += " P=\(projection)" }
        if spec.bidirectional { line += " bidirectional" }
        line += ", \(spec.parameterCount) parameters on \(backend.deviceName); "
        line += "\(prepared.training.count) training, \(prepared.validation?.count ?? 0) validation, "
        line += "\(prepared.test?.count ?? 0) test examples"
        if let vocabulary = prepared.vocabulary { line += ", vocabulary \(vocabulary.count)" }
        if spec.task == .forecast { line += ", transform \(prepared.transform.rawValue)" }
        if !prepared.seriesNames.isEmpty {
            line += "; targets \(prepared.targetNames.joined(separator: ", ")) from columns "
                + prepared.seriesNames.joined(separator: ", ")
        }
        if trainer.configuration.stateful {
            let batchSize = trainer.configuration.batchSize
            line += ", stateful: \(batchSize) streams of \(prepared.training.count / batchSize) windows"
        }
        if prepared.skippedCount > 0 { line += ", \(prepared.skippedCount) malformed rows skipped" }
        log(line)
    }

    private func modelSpecification(source: DataSource, prepared: PreparedData) throws -> ModelSpecification {
        let task = source.task
        guard let initializer = ModelInitialization(rawValue: initialization) else {
            throw ValidationError("--initialization is keras or pytorch")
        }
        return ModelSpecification(
            task: task, vocabularySize: task == .forecast ? nil : prepared.vocabulary?.count,
            embeddingSize: task == .forecast ? nil : embedding, inputFeatures: task == .forecast ? prepared.featureCount : nil,
            cell: try BenchCommand.parseCell(cell), hiddenSize: hidden, projectionSize: projection, layerCount: layers,
            bidirectional: bidirectional,
            inputDropout: dropout, recurrentDropout: recurrentDropout, layerDropout: layerDropout,
            outputDropout: outputDropout, outputSize: prepared.outputSize(for: task, horizon: source.horizon),
            seed: seed, initialization: initializer, trainsPaddingEmbedding: !source.masksPadding)
    }

    private func trainingConfiguration(totalSteps: Int, specification: ModelSpecification, prepared: PreparedData)
        throws -> TrainingConfiguration
    {
        let optimizerSpecification = try optimizerSpecification()
        let learningRateSchedule = try stepSchedule(totalSteps: totalSteps)
        let plateau = schedule.lowercased() == "plateau"
            ? ReduceOnPlateau(factor: plateauFactor ?? 0.1, patience: plateauPatience ?? 2, minimum: plateauMinLr ?? 0)
            : nil
        var classWeights: [Float]?
        if classWeight == "balanced" {
            guard specification.task == .classify else {
                throw ValidationError("--class-weight balanced applies to classify data only, not to \(specification.task)")
            }
            let classes = max(specification.outputSize, 2)
            classWeights = try ClassWeights.balanced(counts: ClassWeights.counts(in: prepared.training, classes: classes))
        }
        let clipping = gradientClipping()
        return TrainingConfiguration(
            epochs: epochs, batchSize: batchSize, optimizer: optimizerSpecification, schedule: learningRateSchedule,
            clipping: clipping, nonFinitePolicy: onNonFinite == "skip" ? .skipStep : .throwError, seed: seed,
            shuffles: shuffle, earlyStoppingPatience: patience, monitor: monitor, checkpointEverySteps: checkpointEvery,
            classWeights: classWeights, plateau: plateau, frozenParameters: freeze.isEmpty ? nil : freeze,
            stateful: stateful, embeddingSecondMoment: try embeddingSecondMomentRule())
    }

    /// The rule --embedding-second-moment names.
    func embeddingSecondMomentRule() throws -> EmbeddingSecondMoment {
        switch embeddingSecondMoment.lowercased() {
        case "summed": return .summed
        case "per-occurrence": return .perOccurrence
        default:
            throw ValidationError("--embedding-second-moment must be summed or per-occurrence, got \(embeddingSecondMoment)")
        }
    }

    /// The per-step rate --schedule, --warmup, --step-size and --decay-factor name over a run of
    /// `totalSteps` optimizer steps; nil for a constant rate without warm-up and for the plateau
    /// schedule, which the trainer applies per epoch.
    func stepSchedule(totalSteps: Int) throws -> LearningRateSchedule? {
        let base: LearningRateSchedule? = switch schedule.lowercased() {
        case "constant": warmup > 0 ? .constant(learningRate) : nil
        case "cosine": try .cosine(learningRate: learningRate, totalSteps: max(totalSteps - warmup, 1))
        case "step": try .stepDecay(learningRate: learningRate, stepSize: stepSize, factor: decayFactor)
        case "plateau": nil
        default: throw ValidationError("unknown schedule '\(schedule)': constant, cosine, step, plateau")
        }
        return warmup > 0 ? try base?.withWarmup(steps: warmup) : base
    }

    /// The optimizer --optimizer and its options name.
    func optimizerSpecification() throws -> OptimizerSpecification {
        switch optimizer.lowercased() {
        case "sgd": .sgd(learningRate: learningRate, momentum: momentum, nesterov: nesterov, weightDecay: weightDecay ?? 0)
        case "adam": .adam(learningRate: learningRate, weightDecay: weightDecay ?? 0, epsilon: epsilon)
        case "adamw": .adamW(learningRate: learningRate, weightDecay: weightDecay ?? 0.01, epsilon: epsilon)
        case "rmsprop": .rmsProp(learningRate: learningRate, momentum: momentum, weightDecay: weightDecay ?? 0)
        default: throw ValidationError("unknown optimizer '\(optimizer)': sgd, adam, adamw, rmsprop")
        }
    }

    /// The clipping of --clip-norm, --clip-parameter-norm, --clip-value or --autoclip (none without).
    func gradientClipping() -> GradientClipping {
        if let clipNorm { .globalNorm(maxNorm: clipNorm) }
        else if let clipParameterNorm { .parameterNorm(maxNorm: clipParameterNorm) }
        else if let clipValue { .value(limit: clipValue) }
        else if let autoclip { .adaptive(percentile: autoclip) }
        else { .none }
    }

    /// The data source with what --stateful implies: windows that continue each other, so a
    /// series' windows (stride 1 by default) step by their length.
    private func statefulDefaults(_ source: DataSource) -> DataSource {
        var source = source
        if stateful && source.stride == nil { source.stride = source.sequenceLength }
        return source
    }

    /// Optimizer steps per epoch: every batch, the last one partial; with --stateful, the whole
    /// batches of B streams (`StreamBatches` leaves the rest out).
    private func stepsPerEpoch(_ prepared: PreparedData) -> Int {
        stateful ? prepared.training.count / batchSize : Self.ceilingDivision(prepared.training.count, batchSize)
    }
}

/// A metric for a terminal line: 4 decimals below 10, else 2.
func metricText(_ value: Double) -> String {
    abs(value) < 10 ? fixed(value, 4) : fixed(value, 2)
}
