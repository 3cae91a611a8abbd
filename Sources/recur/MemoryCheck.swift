import Recur

// The memory checks of `recur train` and `recur evaluate`, before the data is read and again
// before the model is made: a size from a flag or a checkpoint that needs more memory than the
// device or the host has ends in one line with the estimate, before anything is allocated or
// written.

extension TrainCommand {
    /// ⌈a / b⌉ for a >= 0 and b >= 1, without the overflow of (a + b - 1) / b for a large b.
    static func ceilingDivision(_ a: Int, _ b: Int) -> Int {
        a / b + (a % b > 0 ? 1 : 0)
    }

    /// Before the data is read: the model with the smallest vocabulary and output the data could
    /// give, on one sequence of T steps. Reading pads every example to T, so a T that this much
    /// already cannot hold is refused before the reading would run out of memory.
    func checkMemoryBeforeReading(_ source: DataSource, backend: any Backend) throws {
        let task = source.task
        let smallest = ModelSpecification(
            task: task, vocabularySize: task == .forecast ? nil : 2, embeddingSize: task == .forecast ? nil : embedding,
            inputFeatures: task == .forecast ? 1 : nil, cell: try BenchCommand.parseCell(cell), hiddenSize: hidden,
            projectionSize: projection, layerCount: layers, bidirectional: bidirectional, inputDropout: dropout, layerDropout: layerDropout,
            outputDropout: outputDropout, outputSize: task == .lm ? 2 : 1)
        try checkMemory(smallest, batchSize: 1, steps: source.sequenceLength, backend: backend)
    }

    /// The model as specified, on batches of `--batch-size` (at most the largest split) and
    /// `--optimizer`'s state.
    func checkMemory(_ specification: ModelSpecification, prepared: PreparedData, steps: Int,
                     backend: any Backend) throws {
        let examples = max(prepared.training.count, prepared.validation?.count ?? 0, prepared.test?.count ?? 0)
        try checkMemory(specification, batchSize: min(batchSize, max(examples, 1)), steps: steps, backend: backend)
    }

    private func checkMemory(_ specification: ModelSpecification, batchSize: Int, steps: Int,
                             backend: any Backend) throws {
        // Only the number of moment buffers matters here; the rates are checked where the
        // optimizer is made.
        let optimizer: OptimizerSpecification? = switch self.optimizer.lowercased() {
        case "sgd": .sgd(learningRate: 0, momentum: momentum)
        case "rmsprop": .rmsProp(learningRate: 0, momentum: momentum)
        default: .adam(learningRate: 0)
        }
        try MemoryEstimate(specification, batchSize: batchSize, steps: steps, optimizer: optimizer)
            .check(on: backend, operation: "recur train",
                   advice: "lower --hidden, --embedding, --layers, --batch-size or --max-length")
    }

    /// A resumed run's sizes, all the checkpoint's: before its data is read (one sequence), and
    /// after (the recorded batch size).
    func checkMemory(resuming checkpoint: Checkpoint, source: DataSource, prepared: PreparedData?,
                     backend: any Backend) throws {
        let examples = prepared.map { max($0.training.count, $0.validation?.count ?? 0, $0.test?.count ?? 0) }
        try EvaluateCommand.checkMemory(
            checkpoint, batchSize: examples.map { min(checkpoint.configuration.batchSize, max($0, 1)) } ?? 1,
            steps: source.sequenceLength, pass: .training, operation: "recur train --resume",
            advice: "the sizes are those \(checkpointDir ?? ".")/last.safetensors records: resume on a device with "
                + "more memory", backend: backend)
    }
}

extension EvaluateCommand {
    /// The checkpoint's model over sequences of `steps` in batches of `batchSize`, with the
    /// optimizer state it restores.
    static func checkMemory(_ checkpoint: Checkpoint, batchSize: Int, steps: Int, pass: MemoryEstimate.Pass,
                            operation: String, advice: String, backend: any Backend) throws {
        try MemoryEstimate(checkpoint.specification, batchSize: batchSize, steps: steps,
                           optimizer: checkpoint.configuration.optimizer, pass: pass)
            .check(on: backend, operation: operation, advice: advice)
    }

    /// Before the data is read (one sequence) and after (`batchSize`, at most the split's
    /// examples).
    func checkMemory(_ saved: Checkpoint, source: DataSource, examples: Int?, batchSize: Int,
                     backend: any Backend) throws {
        try Self.checkMemory(
            saved, batchSize: examples.map { min(batchSize, max($0, 1)) } ?? 1, steps: source.sequenceLength,
            pass: .inference, operation: "recur evaluate",
            advice: "the model and sequence length are those \(checkpoint) records: lower --batch-size or "
                + "evaluate on a device with more memory", backend: backend)
    }
}
