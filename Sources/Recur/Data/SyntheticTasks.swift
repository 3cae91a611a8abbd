#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Synthetic long-range tasks, generated from a seed: nothing to download, and the distance a
// gradient must travel is the sequence length, set by the caller. Both are classic tests of
// whether a recurrent network can learn dependencies over T steps.
//
// Shape legend: T time steps, B batch, S symbols to copy, K symbol classes.

/// The adding problem (Hochreiter & Schmidhuber 1997, experiment 4; in the form of Le, Jaitly,
/// Hinton 2015 and Arjovsky, Shah, Bengio 2016): each step carries a value drawn from U(0, 1)
/// and a marker; exactly two steps are marked, one chosen uniformly in the first half
/// (t < ⌊T/2⌋) and one in the second (t ≥ ⌊T/2⌋); the target, read after the last step, is the
/// sum of the two marked values.
///
/// The trivial baseline predicts the mean target 1 whatever the input: its mean squared error is
/// Var(U₁ + U₂) = 2 · 1/12 = 1/6 ≈ 0.167 (`baselineMeanSquaredError`). A model that beats it by a
/// large factor has learnt to carry the first marked value across at least T/2 steps.
///
/// ```swift
/// var task = try AddingProblem(steps: 100, seed: 1)
/// let batch = task.nextBatch(size: 32)  // inputs [100, 32, 2], targets [32, 1]
/// ```
public struct AddingProblem: Sendable {
    /// One batch, time-major, as host arrays ready for `Backend.upload`.
    public struct Batch: Sendable {
        /// `[T, B, 2]`: feature 0 the value, feature 1 the marker (1 at the two marked steps, else 0).
        public var inputs: [Float]
        /// `[B, 1]`: the sum of each sequence's two marked values.
        public var targets: [Float]
        /// `[T, B, 2]`.
        public var inputShape: Shape
        /// `[B, 1]`.
        public var targetShape: Shape
        /// The two marked time steps of each sequence, first-half one first. `[B]`
        public var markedSteps: [(first: Int, second: Int)]
    }

    /// Features per step: the value and the marker.
    public static let featureCount = 2
    /// The mean squared error of always predicting 1 (the mean target): 1/6.
    public static let baselineMeanSquaredError = 1.0 / 6.0

    /// T, at least 2 (each half must hold a marker).
    public let steps: Int
    private var random: SeededRandom

    /// - Throws: `RecurError.invalidArgument` when `steps` < 2.
    public init(steps: Int, seed: UInt64) throws {
        guard steps >= 2 else {
            throw RecurError.invalidArgument(
                operation: "AddingProblem.init", detail: "steps must be at least 2 (one marker per half), got \(steps)")
        }
        self.steps = steps
        random = SeededRandom(seed: seed)
    }

    /// The next `size` sequences of the seeded stream: the same seed gives the same batches.
    public mutating func nextBatch(size: Int) -> Batch {
        precondition(size > 0, "a batch holds at least one sequence")
        let (t, b, f) = (steps, size, Self.featureCount)
        var inputs = [Float](repeating: 0, count: t * b * f)  // [T, B, 2]
        var targets = [Float](repeating: 0, count: b)  // [B, 1]
        var marked: [(first: Int, second: Int)] = []
        let half = t / 2
        for sequence in 0..<b {
            for step in 0..<t { inputs[(step * b + sequence) * f] = Float(random.unit()) }
            let first = random.next(below: half)
            let second = half + random.next(below: t - half)
            for step in [first, second] {
                inputs[(step * b + sequence) * f + 1] = 1
                targets[sequence] += inputs[(step * b + sequence) * f]
            }
            marked.append((first, second))
        }
        return Batch(inputs: inputs, targets: targets, inputShape: [t, b, f], targetShape: [b, 1],
                     markedSteps: marked)
    }
}

/// The copy-memory task (Hochreiter & Schmidhuber 1997; in the form of Arjovsky, Shah, Bengio
/// 2016): a sequence shows S random symbols, then `delay` − 1 blanks and a delimiter, then S more
/// blanks, during which the network must output the S symbols in order; everywhere else the
/// target is the blank. Sequences have T = delay + 2S steps (Arjovsky et al.'s T is `delay`).
///
/// Classes: 0 blank, 1 … `alphabetSize` the symbols, `alphabetSize + 1` the delimiter; inputs
/// are their one-hot codes (K = alphabetSize + 2 features), targets their class ids.
///
/// The baseline that remembers no symbol outputs the blank with certainty for the first
/// delay + S steps and a uniform guess over the symbols for the last S: its mean cross-entropy
/// per step is
/// S ln(alphabetSize) / (delay + 2S) (`baselineCrossEntropy`), 10 ln 8 / (T_delay + 20) with the
/// usual S = 10, alphabet 8. A model that beats it has carried symbols across `delay` steps.
public struct CopyMemoryTask: Sendable {
    /// One batch, time-major, as host arrays ready for `Backend.upload`.
    public struct Batch: Sendable {
        /// `[T, B, K]`: one-hot classes.
        public var inputs: [Float]
        /// `[T, B]`: the class each step should output.
        public var targets: [Int32]
        /// `[T, B, K]`.
        public var inputShape: Shape
        /// `[T, B]`.
        public var targetShape: Shape
    }

    /// Steps from the last symbol to the delimiter, the delimiter included.
    public let delay: Int
    /// S, the symbols to remember.
    public let sequenceLength: Int
    /// Distinct symbols (classes 1 … alphabetSize).
    public let alphabetSize: Int
    private var random: SeededRandom

    /// - Throws: `RecurError.invalidArgument` for a delay below 1 (the delimiter needs its step),
    ///   no symbols, or an alphabet of fewer than 2 symbols.
    public init(delay: Int, sequenceLength: Int = 10, alphabetSize: Int = 8, seed: UInt64) throws {
        let operation = "CopyMemoryTask.init"
        guard delay >= 1 else {
            throw RecurError.invalidArgument(operation: operation, detail: "delay must be at least 1, got \(delay)")
        }
        guard sequenceLength >= 1 else {
            throw RecurError.invalidArgument(
                operation: operation, detail: "sequenceLength must be at least 1, got \(sequenceLength)")
        }
        guard alphabetSize >= 2 else {
            throw RecurError.invalidArgument(
                operation: operation, detail: "alphabetSize must be at least 2, got \(alphabetSize)")
        }
        self.delay = delay
        self.sequenceLength = sequenceLength
        self.alphabetSize = alphabetSize
        random = SeededRandom(seed: seed)
    }

    /// T = delay + 2S.
    public var steps: Int { delay + 2 * sequenceLength }
    /// K = alphabetSize + 2: blank, symbols, delimiter.
    public var classCount: Int { alphabetSize + 2 }
    /// The delimiter's class id.
    public var delimiter: Int32 { Int32(alphabetSize + 1) }

    /// The memoryless baseline's mean cross-entropy per step (nats): S ln(alphabetSize) / T.
    public var baselineCrossEntropy: Double {
        Double(sequenceLength) * log(Double(alphabetSize)) / Double(steps)
    }

    /// The next `size` sequences of the seeded stream: the same seed gives the same batches.
    public mutating func nextBatch(size: Int) -> Batch {
        precondition(size > 0, "a batch holds at least one sequence")
        let (t, b, k, s) = (steps, size, classCount, sequenceLength)
        var inputClasses = [Int32](repeating: 0, count: t * b)  // [T, B]
        var targets = [Int32](repeating: 0, count: t * b)  // [T, B]
        for sequence in 0..<b {
            for position in 0..<s {
                let symbol = Int32(1 + random.next(below: alphabetSize))
                inputClasses[position * b + sequence] = symbol
                targets[(delay + s + position) * b + sequence] = symbol
            }
            inputClasses[(delay + s - 1) * b + sequence] = delimiter
        }
        var inputs = [Float](repeating: 0, count: t * b * k)  // [T, B, K]
        for (row, value) in inputClasses.enumerated() { inputs[row * k + Int(value)] = 1 }
        return Batch(inputs: inputs, targets: targets, inputShape: [t, b, k], targetShape: [t, b])
    }
}
