import Recur

#if canImport(Glibc)
import Glibc
#endif

/// Shows a training run: on a terminal a progress bar rewritten in place and one line per
/// epoch; otherwise (a pipe, a file) the epoch lines only; with `json`, one JSON object per epoch
/// on stdout and notes on stderr.
final class ProgressReporter: @unchecked Sendable {
    private let json: Bool
    private let isTerminal: Bool
    private var barShown = false
    let plots = TrainingPlots()
    /// `--step-log`: one JSON line per optimizer step.
    var stepLog: StepLog?

    init(json: Bool, quiet: Bool) {
        self.json = json
        self.isTerminal = !json && !quiet && isatty(STDOUT_FILENO) == 1
    }

    func report(_ event: TrainingEvent) {
        switch event {
        case let .step(epoch, batch, batches, step, loss, norm):
            stepLog?.write(jsonObject([("step", .int(step)), ("epoch", .int(epoch)), ("batch", .int(batch)),
                                       ("loss", .number(Double(loss))), ("grad_norm", .number(Double(norm)))]))
            guard isTerminal else { return }
            let width = 24
            let filled = batch * width / max(batches, 1)
            let bar = String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled)
            write("\r\u{1B}[2Kepoch \(epoch) [\(bar)] \(batch)/\(batches) loss \(metricText(Double(loss))) "
                  + "|g| \(metricText(Double(norm)))")
            barShown = true
        case let .skippedStep(step, detail):
            note("step \(step) skipped: \(detail)")
        case let .epoch(record):
            finishLine()
            if json {
                var fields: [(String, JSONScalar)] = [("epoch", .int(record.epoch)), ("step", .int(record.step))]
                for name in record.metrics.keys.sorted() { fields.append((name, .number(record.metrics[name]!))) }
                fields += [("learning_rate", .number(record.learningRate)),
                           ("grad_norm_mean", .number(record.meanGradientNorm)),
                           ("grad_norm_max", .number(record.maxGradientNorm)),
                           ("skipped_steps", .int(record.skippedSteps)), ("live_buffers", .int(record.liveBuffers ?? 0)),
                           ("live_bytes", .int(record.liveBytes ?? 0)), ("seconds", .number(record.seconds))]
                print(jsonObject(fields))
            } else {
                let metrics = record.metrics.keys.sorted().map { "\($0) \(metricText(record.metrics[$0]!))" }
                print("epoch \(record.epoch): " + metrics.joined(separator: ", ")
                      + ", |g| mean \(metricText(record.meanGradientNorm)) max \(metricText(record.maxGradientNorm))"
                      + (record.skippedSteps > 0 ? ", \(record.skippedSteps) steps skipped" : "")
                      + ", \(fixed(record.seconds, 1)) s")
            }
        case .checkpoint:
            break
        case let .gradientFlow(step, flows):
            plots.record(step: step, flows: flows)
            note(TrainingPlots.summary(step: step, flows: flows))
        case let .stoppedEarly(epoch, best, bestEpoch):
            note("early stop after epoch \(epoch): best \(metricText(best)) at epoch \(bestEpoch)")
        }
    }

    /// Ends an in-place progress line so the next output starts on a fresh line.
    func finishLine() {
        if barShown {
            write("\r\u{1B}[2K")
            barShown = false
        }
    }

    private func note(_ message: String) {
        finishLine()
        if json { printError(message) } else { print(message) }
    }

    private func write(_ text: String) {
        print(text, terminator: "")
        fflush(nil)  // every output stream: the bar has no newline to flush it
    }
}

/// A file that receives one line per optimizer step, flushed as it is written, so that a run
/// stopped at any moment leaves every finished step in it.
final class StepLog {
    private let file: UnsafeMutablePointer<FILE>

    /// Opens `path`, emptied for a new run, or `appending` to continue a resumed one.
    /// - Throws: `RecurError.io` when the file cannot be opened for writing.
    init(path: String, appending: Bool) throws {
        guard let file = fopen(path, appending ? "a" : "w") else {
            throw RecurError.io(path: path, detail: "cannot open the step log for writing: \(String(cString: strerror(errno)))")
        }
        self.file = file
    }

    func write(_ line: String) {
        fputs(line + "\n", file)
        fflush(file)
    }

    deinit { fclose(file) }
}

/// A JSON value of a flat object.
enum JSONScalar {
    case number(Double)
    case int(Int)
    case bool(Bool)
    case string(String)

    var text: String {
        switch self {
        // JSON has no NaN or infinity: null stands for a metric that has no value.
        case .number(let value): value.isFinite ? "\(value)" : "null"
        case .int(let value): "\(value)"
        case .bool(let value): value ? "true" : "false"
        case .string(let value): quotedJSON(value)
        }
    }
}

/// One JSON object on one line, keys in the given order.
func jsonObject(_ fields: [(String, JSONScalar)]) -> String {
    "{" + fields.map { quotedJSON($0.0) + ":" + $0.1.text }.joined(separator: ",") + "}"
}

func quotedJSON(_ text: String) -> String {
    JSONString.quoted(text)
}
