import ArgumentParser
import Recur
import RecurDistributed

#if canImport(Glibc)
import Glibc
#endif

/// `recur-distributed`: trains a sequence classifier data-parallel over the ranks of `mpirun`,
/// or alone when started without it.
@main
struct DistributedTrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recur-distributed",
        abstract: "Synchronous data-parallel training of Embedding -> LSTM/GRU/RNN -> Dense(1) over MPI.",
        discussion: """
            Launch with mpirun: `mpirun -np 2 recur-distributed --imdb aclImdb --batch-size 32`. Every rank \
            takes --batch-size examples of each global batch of (ranks x batch size); gradients are \
            averaged with MPI_Allreduce. Rank 0 logs and writes the checkpoint. Started without \
            mpirun it trains alone, the same way. A rank that fails ends every rank.
            """
    )

    @Option(help: "An aclImdb folder: trains on <folder>/train.")
    var imdb: String?
    @Option(help: "A safetensors file with `ids` (int32 [count, T], pre-padded with 0) and `labels` (float32 [count]).")
    var tokens: String?
    @Option(help: "T: tokens per review for --imdb (pre-padded, pre-truncated).")
    var sequenceLength = 400

    @Option(help: "Recurrent cell: rnnTanh, rnnRelu, lstm, gru, gruResetBefore.")
    var cell = "lstm"
    @Option(help: "V: vocabulary size (for --imdb, the most frequent V - 2 words are kept).")
    var vocabulary = 5000
    @Option(help: "E: embedding width.")
    var embedding = 32
    @Option(help: "H: hidden units per recurrent layer.")
    var hidden = 32
    @Option(help: "Recurrent layers.")
    var layers = 1

    @Option(help: "b: examples per rank in each step (the global batch is ranks x b).")
    var batchSize = 32
    @Option(help: "The step count to reach, counting the steps of a resumed checkpoint.")
    var steps = 100
    @Option(help: "Adam's learning rate.")
    var learningRate: Float = 1e-3
    @Option(help: "Clip the global gradient norm to this (after averaging).")
    var clipNorm: Float?
    @Option(help: "Seeds the initial weights and the shuffle.")
    var seed: UInt64 = 0

    @Option(help: "Rank 0 writes checkpoints here (atomically).")
    var checkpoint: String?
    @Option(help: "Steps between checkpoints.")
    var checkpointEvery = 100
    @Option(help: "Continue from this checkpoint (any number of ranks may have written it).")
    var resume: String?
    @Option(help: "Steps between loss reports.")
    var reportEvery = 10
    @Option(help: "cpu | opencl | opencl:N | opencl:NAME | auto (default; with several GPUs per host, rank k on the host takes GPU k).")
    var device = "auto"
    @Flag(help: "Print throughput and the allreduce time per step (after the first step); a barrier before each allreduce separates waiting for slower ranks from the transfer.")
    var profile = false

    static func main() {
        selectBLASKernels()
        let command: DistributedTrainCommand
        do {
            command = try parseAsRoot() as! DistributedTrainCommand
        } catch {
            exit(withError: error)
        }
        command.runReportingFailure()
    }

    /// Restarts once with `OPENBLAS_CORETYPE` set when OpenBLAS fell back to its generic kernels
    /// (see `BLASCoreType`); done before MPI starts, so the launcher sees the same process.
    private static func selectBLASKernels() {
        guard let coreType = BLASCoreType.recommendedOverride else { return }
        setenv("OPENBLAS_CORETYPE", coreType, 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
    }

    /// Runs under MPI when `mpirun` started this process, else alone. Under MPI, any error ends
    /// every rank through `MPI_Abort`, naming this rank and the error.
    private func runReportingFailure() {
        guard getenv("OMPI_COMM_WORLD_SIZE") != nil else {
            do {
                try train(communicator: LocalCommunicator(), localRank: 0, statistics: { nil })
            } catch {
                writeToStandardError("recur-distributed: \(error)\n")
                Glibc.exit(1)
            }
            return
        }
        let communicator: MPICommunicator
        do {
            communicator = try MPICommunicator()
            communicator.separatesWaiting = profile
        } catch {
            writeToStandardError("recur-distributed: \(error)\n")
            Glibc.exit(1)
        }
        do {
            try train(communicator: communicator, localRank: communicator.localRank,
                      statistics: { communicator.statistics })
        } catch {
            communicator.abort(message: "\(error)")
        }
        communicator.finalize()
    }

    private func train(communicator: any TrainingCommunicator, localRank: Int,
                       statistics: @escaping () -> CommunicationStatistics?) throws {
        guard let cell = RecurrentCell(rawValue: cell) else {
            throw RecurError.invalidArgument(
                operation: "recur-distributed",
                detail: "unknown cell '\(self.cell)'; one of \(RecurrentCell.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let isRoot = communicator.rank == 0
        let specification = SequenceClassifierSpecification(
            cell: cell, vocabularySize: vocabulary, embeddingSize: embedding, hiddenSize: hidden, layerCount: layers)
        let deviceSpecification = try DeviceSpecification(parsing: device).forLocalRank(localRank)
        let backend = try deviceSpecification.makeBackend()
        let (sequences, labels) = try readData()
        let configuration = DataParallelConfiguration(
            batchSizePerRank: batchSize, steps: steps, learningRate: learningRate, maxGradientNorm: clipNorm,
            seed: seed, checkpointPath: checkpoint, checkpointInterval: checkpointEvery, reportInterval: reportEvery)
        let training = try DataParallelClassifierTraining(
            specification: specification, configuration: configuration, communicator: communicator, backend: backend)
        if let resume { try training.resume(from: resume) }
        if isRoot {
            print("recur-distributed: \(communicator.worldSize) rank(s) x batch \(batchSize), \(specification), "
                  + "\(sequences.count) sequences of \(sequences.maxLength) steps, rank 0 on \(backend.deviceName), "
                  + "from step \(training.step) to \(steps)")
        }

        // Throughput is timed from the end of the first step (allocation and warm-up) to the end.
        var timingStart: Double?
        var statisticsAtStart: CommunicationStatistics?
        let firstStep = training.step
        training.stepFinished = { step in
            guard step == firstStep + 1 else { return }
            timingStart = monotonicSeconds()
            statisticsAtStart = statistics()
        }
        _ = try training.train(sequences: sequences, labels: labels) { line in print(line) }
        let timingEnd = monotonicSeconds()

        if profile, isRoot, let timingStart, training.step - firstStep > 1 {
            let timedSteps = training.step - firstStep - 1
            let seconds = timingEnd - timingStart
            let samples = Double(timedSteps * batchSize * communicator.worldSize)
            // key=value pairs, so tools/mpi_scaling.sh can tabulate them.
            let step = seconds / Double(timedSteps)
            var fields = [
                ("ranks", "\(communicator.worldSize)"), ("timed_steps", "\(timedSteps)"),
                ("samples_per_second", format(samples / seconds)), ("ms_per_step", format(1000 * step)),
            ]
            if let start = statisticsAtStart, let end = statistics() {
                let allreduce = (end.allreduceSeconds - start.allreduceSeconds) / Double(timedSteps)
                let staging = (end.stagingSeconds - start.stagingSeconds) / Double(timedSteps)
                let wait = (end.waitSeconds - start.waitSeconds) / Double(timedSteps)
                fields += [
                    ("allreduce_ms_per_step", format(1000 * allreduce)),
                    ("allreduce_share_percent", format(100 * allreduce / step)),
                    ("wait_ms_per_step", format(1000 * wait)), ("staging_ms_per_step", format(1000 * staging)),
                    ("gradient_bytes", "\(end.gradientBytes)"), ("buckets", "\(end.bucketCount)"),
                ]
            }
            let line = "profile: " + fields.map { "\($0)=\($1)" }.joined(separator: " ")
            print(line)
        }
    }

    /// The training sequences and their 0/1 labels from --imdb or --tokens.
    private func readData() throws -> (PaddedSequences, [Float]) {
        switch (imdb, tokens) {
        case let (root?, nil):
            let reviews = try IMDBReviews.read(root: root, split: .train).reviews
            let tokenizer = WordTokenizer()
            let vocabulary = try Vocabulary(fittingTexts: reviews.texts, tokenizer: tokenizer, numWords: self.vocabulary)
            let encoded = reviews.texts.map { vocabulary.encode($0, tokenizer: tokenizer) }
            let padded = try padSequences(encoded, maxLength: sequenceLength, padding: .pre, truncating: .pre)
            let kept = padded.nonEmptyIndices
            return (padded.subset(kept), kept.map { Float(reviews.labels[$0]) })
        case let (nil, path?):
            let file = try SafeTensorsFile(contentsOf: path)
            let shape = try file.shape(of: "ids")
            guard shape.rank == 2, try file.shape(of: "labels") == [shape[0]] else {
                throw RecurError.malformed(
                    source: path, detail: "expected ids [count, T] and labels [count], got ids \(shape)")
            }
            let ids = try file.int32s("ids")
            let width = shape[1]
            let rows = (0..<shape[0]).map { row in
                Array(ids[row * width ..< (row + 1) * width].drop { $0 == Vocabulary.paddingID })
            }
            let padded = try padSequences(rows, maxLength: width, padding: .pre)
            try padded.checkNonEmpty()
            return (padded, try file.floats("labels"))
        default:
            throw RecurError.invalidArgument(operation: "recur-distributed", detail: "give exactly one of --imdb and --tokens")
        }
    }
}

private func monotonicSeconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

private func format(_ value: Double) -> String {
    let rounded = (value * 100).rounded() / 100
    return "\(rounded)"
}
