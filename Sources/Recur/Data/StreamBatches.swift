// The batch layout of stateful training (truncated backpropagation through time): contiguous
// windows of one stream become B parallel streams, and batch k holds window k of each, so a
// model can carry every stream's hidden state from one batch into the next.
//
// Shape legend: N windows, B streams (the batch size), M = ⌊N / B⌋ windows per stream.

/// Contiguous windows (`StreamWindows.isContiguous`) laid out as B parallel streams.
///
/// Stream b holds windows `b·M ..< (b+1)·M`, a contiguous stretch of the original stream, and
/// example `k·B + b` is window k of stream b. Batches of B examples taken in order (no shuffle)
/// are then batch k = window k of every stream, and column b of batch k + 1 continues column b
/// of batch k where it ended. Every stream ends at batch M − 1, the end of the epoch. The last
/// `N mod B` windows are left out.
public struct StreamBatches: TrainingExamples {
    /// The windows, in stream order.
    public let windows: any StreamWindows
    /// B.
    public let streamCount: Int
    /// M: the batches of one pass.
    public let windowsPerStream: Int

    /// - Throws: `RecurError.invalidArgument` when the windows overlap or leave gaps (stride ≠
    ///   length), `streams` is below 1, or there are fewer windows than streams.
    public init(_ windows: any StreamWindows, streams: Int) throws {
        let operation = "StreamBatches"
        guard windows.isContiguous else {
            throw RecurError.invalidArgument(
                operation: operation,
                detail: "stateful training needs windows that continue each other (stride = length), "
                    + "got stride \(windows.stride) for windows of \(windows.length)")
        }
        guard streams >= 1 else {
            throw RecurError.invalidArgument(operation: operation, detail: "need at least 1 stream, got \(streams)")
        }
        guard windows.count >= streams else {
            throw RecurError.invalidArgument(
                operation: operation,
                detail: "\(windows.count) windows are too few for \(streams) parallel streams (one window each at least)")
        }
        self.windows = windows
        self.streamCount = streams
        self.windowsPerStream = windows.count / streams
    }

    public var count: Int { windowsPerStream * streamCount }

    /// The window that example `index` is: window `index / B` of stream `index mod B`.
    public func window(ofExample index: Int) -> Int {
        (index % streamCount) * windowsPerStream + index / streamCount
    }

    public func batch(_ indices: ArraySlice<Int>) -> TrainingBatch {
        windows.batch(indices.map(window(ofExample:))[...])
    }

    /// Batch k (0-based): window k of every stream, `[T, B]` columns in stream order.
    public func batch(window k: Int) -> TrainingBatch {
        precondition((0..<windowsPerStream).contains(k), "batch \(k) outside 0..<\(windowsPerStream)")
        return batch(Array(k * streamCount ..< (k + 1) * streamCount)[...])
    }
}
