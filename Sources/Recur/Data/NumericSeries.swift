// A numeric series read from CSV, one column or several, cut into sliding windows for
// forecasting.
//
// Shape legend: N windows, T window length (steps fed to the model), H horizon (steps
// predicted), B windows in a batch, F columns read per step, J target columns (the first J).

/// One numeric column of a CSV file, in file order, for forecasting.
public struct NumericSeries: Sendable, Equatable {
    /// The values, in file order.
    public var values: [Float]
    /// Each value's timestamp field as written (`"1949-01"`); empty when none was read.
    public var timestamps: [String]
    /// Rows the reader left out (`MalformedRowPolicy.skip`). A series with skipped rows has gaps
    /// that the windows don't see.
    public var skippedCount: Int

    /// - Precondition: `timestamps` is empty or has one entry per value.
    public init(values: [Float], timestamps: [String] = [], skippedCount: Int = 0) {
        precondition(timestamps.isEmpty || timestamps.count == values.count, "one timestamp per value, or none")
        self.values = values
        self.timestamps = timestamps
        self.skippedCount = skippedCount
    }

    /// The number of values.
    public var count: Int { values.count }

    /// Reads a series from a delimited file such as `airline-passengers.csv`
    /// (`"Month","Passengers"` header, `"1949-01",112` rows, CRLF, no final newline).
    ///
    /// A value is a decimal number (`112`, `58.0`, `-1.5e3`; spaces around it allowed);
    /// anything else (empty, `NA`, `nan`, hexadecimal) makes the row malformed.
    ///
    /// - Parameters:
    ///   - path: the file to read.
    ///   - format: the file's layout (default CSV with a header).
    ///   - timestampColumn: the column to keep as `timestamps`, or `nil` for none.
    ///   - valueColumn: the numeric column.
    ///   - policy: `onMalformed:`, fail (default) or skip rows with a bad value or wrong field count.
    /// - Throws: `RecurError.io` when the file can't be read; `RecurError.malformed` with source
    ///   `path:line` for a malformed row (unless skipped), and with source `path` when every row
    ///   was malformed and skipped.
    public static func readCSV(
        contentsOf path: String, format: DelimitedTextFormat = .csv, timestampColumn: ColumnSelector? = .index(0),
        valueColumn: ColumnSelector = .index(1), onMalformed policy: MalformedRowPolicy = .fail
    ) throws -> NumericSeries {
        try readCSV(bytes: try FileBytes.read(contentsOf: path), source: path, format: format,
                    timestampColumn: timestampColumn, valueColumn: valueColumn, onMalformed: policy)
    }

    /// `readCSV(contentsOf:...)` on the bytes of a file; `source` names it in errors.
    static func readCSV(
        bytes: [UInt8], source path: String, format: DelimitedTextFormat = .csv,
        timestampColumn: ColumnSelector? = .index(0), valueColumn: ColumnSelector = .index(1),
        onMalformed policy: MalformedRowPolicy = .fail
    ) throws -> NumericSeries {
        var table = try DelimitedTable(
            bytes: bytes, source: path, format: format,
            requiredFieldCount: DelimitedTable.requiredFieldCount(valueColumn, timestampColumn ?? .index(0)),
            onMalformed: policy)
        let valuePosition = try table.position(of: valueColumn)
        let timestampPosition = try timestampColumn.map { try table.position(of: $0) }
        var values: [Float] = []
        var timestamps: [String] = []
        for record in table.records {
            let field = record.fields[valuePosition]
            guard let value = decimalValue(field) else {
                try table.reject(line: record.line, "'\(field)' in \(valueColumn) is not a finite decimal number")
                continue
            }
            values.append(value)
            if let timestampPosition { timestamps.append(record.fields[timestampPosition]) }
        }
        if let error = table.everyRowSkipped(accepted: values.count) { throw error }
        return NumericSeries(values: values, timestamps: timestamps, skippedCount: table.skippedCount)
    }

    /// Whether the first record of a file, read without a header, is a header: its field in
    /// `valueColumn` (by index) is not a number. A headerless series then keeps its first value,
    /// and a header is not read as a malformed value. A first record that cannot be split or has
    /// no such column, or an empty file, counts as data, so that the reader reports it.
    static func firstRecordIsHeader(bytes: [UInt8], delimiter: Unicode.Scalar = ",", valueColumn: Int) -> Bool {
        let format = DelimitedTextFormat(delimiter: delimiter, hasHeader: false)
        var parser = DelimitedParser(bytes: droppingByteOrderMark(bytes), format: format, path: "")
        guard case let .record(record)? = try? parser.next(), record.fields.indices.contains(valueColumn) else {
            return false
        }
        return decimalValue(record.fields[valueColumn]) == nil
    }

    /// `field` as a finite number, or nil. Only decimal notation passes: `Double(_:)` alone would
    /// also take `nan`, `inf` and hexadecimal, which in a data file are errors.
    static func decimalValue(_ field: String) -> Float? {
        let trimmed = field.utf8.drop { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }
            .reversed().drop { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }.reversed()
        let allowed = Set("0123456789.eE+-".utf8)
        guard !trimmed.isEmpty, trimmed.allSatisfy(allowed.contains),
              let value = Double(String(decoding: trimmed, as: UTF8.self)), value.isFinite,
              Float(value).isFinite
        else { return nil }
        return Float(value)
    }
}

// MARK: Several columns

/// Several numeric columns of one delimited file, row by row (a multivariate series).
public struct NumericColumns: Sendable, Equatable {
    /// `columns[c][i]`: the value of column c in row i, in the order the columns were asked for.
    public var columns: [[Float]]
    /// Each column's header field, or `column <index>` without a header.
    public var names: [String]
    /// Each column's 0-based position in the file's rows.
    public var positions: [Int]
    /// Rows the reader left out (`MalformedRowPolicy.skip`).
    public var skippedCount: Int

    /// The number of rows.
    public var count: Int { columns.first?.count ?? 0 }

    /// Reads `columns` of a delimited file; a row with a field in one of them that is not a
    /// finite decimal number (as `NumericSeries.readCSV`) is malformed.
    /// - Throws: `RecurError.malformed` with `path:line` for a malformed row (unless skipped) or a
    ///   column name the header lacks; `RecurError.invalidArgument` for an index outside the
    ///   columns, a name without a header, or the same column twice.
    public static func readCSV(
        bytes: [UInt8], source path: String, format: DelimitedTextFormat = .csv, columns selectors: [ColumnSelector],
        onMalformed policy: MalformedRowPolicy = .fail
    ) throws -> NumericColumns {
        var table = try DelimitedTable(
            bytes: bytes, source: path, format: format,
            requiredFieldCount: selectors.reduce(0) { count, column in
                if case let .index(index) = column { return max(count, index + 1) }
                return count
            },
            onMalformed: policy)
        let positions = try selectors.map { try table.position(of: $0) }
        if let repeated = positions.indices.first(where: { positions[..<$0].contains(positions[$0]) }) {
            throw RecurError.invalidArgument(
                operation: "NumericColumns",
                detail: "\(path): \(selectors[repeated]) is asked for twice (column \(positions[repeated]))")
        }
        var columns = [[Float]](repeating: [], count: positions.count)
        var accepted = 0
        rows: for record in table.records {
            var row: [Float] = []
            for (selector, position) in zip(selectors, positions) {
                guard let value = NumericSeries.decimalValue(record.fields[position]) else {
                    try table.reject(
                        line: record.line, "'\(record.fields[position])' in \(selector) is not a finite decimal number")
                    continue rows
                }
                row.append(value)
            }
            for (c, value) in row.enumerated() { columns[c].append(value) }
            accepted += 1
        }
        if let error = table.everyRowSkipped(accepted: accepted) { throw error }
        let names = positions.map { position in table.header.map { $0[position] } ?? "column \(position)" }
        return NumericColumns(columns: columns, names: names, positions: positions, skippedCount: table.skippedCount)
    }
}

// MARK: Windows

/// Sliding windows over a series: each input window of T steps and the H steps that follow it.
/// A window of several columns (a multivariate series) reads F values per step and forecasts J
/// of them, the first J columns (the targets), at each of the H steps.
public struct ForecastWindows: Sendable, Equatable {
    /// The input windows, row by row: `inputs[(n * length + t) * features + f]`. `[N, T, F]`
    public var inputs: [Float]
    /// The values following each window: `targets[(n * horizon + h) * targetCount + j]`. `[N, H, J]`
    public var targets: [Float]
    /// T, the steps per input window.
    public let length: Int
    /// H, the steps predicted after each window.
    public let horizon: Int
    /// F, the values per input step (1 for a single column).
    public let features: Int
    /// J, the values predicted per step: the first J of the F columns.
    public let targetCount: Int
    /// The values between the starts of neighbouring windows.
    public let stride: Int

    /// The number of windows N.
    public var count: Int { length == 0 ? 0 : inputs.count / (length * features) }

    /// The values predicted after each window, H · J.
    public var outputs: Int { horizon * targetCount }

    /// The windows of `values`: window n's inputs are `values[s ..< s + T]` and its targets
    /// `values[s + T ..< s + T + H]`, with `s = n · stride`. There are
    /// `⌊(count − T − H) / stride⌋ + 1` windows when the values hold at least one, else none.
    ///
    /// - Throws: `RecurError.invalidArgument` for a length, horizon or stride below 1.
    public init(values: some RandomAccessCollection<Float>, length: Int, horizon: Int = 1, stride: Int = 1) throws {
        try self.init(columns: [Array(values)], targetCount: 1, length: length, horizon: horizon, stride: stride)
    }

    /// The windows of several aligned columns (F columns of equal count): window n reads
    /// `columns[f][s + t]` for t < T and every f, and forecasts `columns[j][s + T + h]` for
    /// h < H and j < J, with `s = n · stride`.
    ///
    /// - Throws: `RecurError.invalidArgument` for a length, horizon or stride below 1, no
    ///   columns, columns of different counts, or J not in 1 … F.
    public init(columns: [[Float]], targetCount: Int, length: Int, horizon: Int = 1, stride: Int = 1) throws {
        guard length >= 1, horizon >= 1, stride >= 1 else {
            throw RecurError.invalidArgument(
                operation: "ForecastWindows",
                detail: "length \(length), horizon \(horizon) and stride \(stride) must all be at least 1")
        }
        guard let rows = columns.first?.count, columns.allSatisfy({ $0.count == rows }),
              (1...columns.count).contains(targetCount) else {
            throw RecurError.invalidArgument(
                operation: "ForecastWindows",
                detail: "\(columns.count) columns of \(columns.map(\.count)) values and \(targetCount) targets: "
                    + "the columns must be equally long and the targets 1 to their number")
        }
        var inputs: [Float] = []
        var targets: [Float] = []
        var start = 0
        while start + length + horizon <= rows {
            for t in start ..< start + length {
                for column in columns { inputs.append(column[t]) }
            }
            for t in start + length ..< start + length + horizon {
                for column in columns[..<targetCount] { targets.append(column[t]) }
            }
            start += stride
        }
        self.inputs = inputs
        self.targets = targets
        self.length = length
        self.horizon = horizon
        self.features = columns.count
        self.targetCount = targetCount
        self.stride = stride
    }

    /// The windows at `indices` as a batch, inputs time-major as recurrent layers take them.
    public func batch(_ indices: some Collection<Int>) -> ForecastBatch {
        let batchSize = indices.count
        var batchInputs = [Float](repeating: 0, count: length * batchSize * features)  // [T, B, F]
        var batchTargets: [Float] = []  // [B, H · J]
        batchTargets.reserveCapacity(batchSize * outputs)
        for (b, index) in indices.enumerated() {
            for t in 0..<length {
                for f in 0..<features {
                    batchInputs[(t * batchSize + b) * features + f] = inputs[(index * length + t) * features + f]
                }
            }
            batchTargets.append(contentsOf: targets[index * outputs ..< (index + 1) * outputs])
        }
        return ForecastBatch(inputs: batchInputs, targets: batchTargets, steps: length, horizon: outputs,
                             features: features)
    }
}

/// A batch of forecasting windows.
public struct ForecastBatch: Sendable, Equatable {
    /// `inputs[(t * batchSize + b) * features + f]` is feature f of step t of window b. `[T, B, F]`
    public var inputs: [Float]
    /// `targets[b * horizon + k]`. `[B, K]`, K = H · J.
    public var targets: [Float]
    /// T.
    public var steps: Int
    /// K, the outputs per window: H · J (H for a single column).
    public var horizon: Int
    /// F.
    public var features: Int = 1
}

// MARK: Standardisation

/// Shifts and scales values to zero mean and unit standard deviation, with statistics taken from
/// the data it was fitted to (the training part only, so that validation data leaks nothing).
public struct Standardization: Sendable, Equatable {
    /// The fitted mean.
    public var mean: Float
    /// The fitted population standard deviation (divided by n, as NumPy's `std` and
    /// scikit-learn's `StandardScaler`); 1 when the fitted values are all equal, as
    /// `StandardScaler` does, so that constant data maps to zeros instead of dividing by zero.
    public var standardDeviation: Float

    public init(mean: Float, standardDeviation: Float) {
        self.mean = mean
        self.standardDeviation = standardDeviation
    }

    /// Fits mean and standard deviation to `values`, accumulating in Double.
    ///
    /// - Throws: `RecurError.invalidArgument` for no values.
    public init(fitting values: some Collection<Float>) throws {
        guard !values.isEmpty else {
            throw RecurError.invalidArgument(operation: "Standardization", detail: "no values to fit")
        }
        let n = Double(values.count)
        let mean = values.reduce(0.0) { $0 + Double($1) } / n
        let variance = values.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / n
        let deviation = variance.squareRoot()
        self.mean = Float(mean)
        self.standardDeviation = deviation > 0 ? Float(deviation) : 1
    }

    /// `(value − mean) / standardDeviation` for each value.
    public func apply(_ values: [Float]) -> [Float] {
        values.map { ($0 - mean) / standardDeviation }
    }

    /// Undoes `apply`: `value · standardDeviation + mean`, for reading predictions in data units.
    public func invert(_ values: [Float]) -> [Float] {
        values.map { $0 * standardDeviation + mean }
    }
}

// MARK: Training and validation windows

/// Training and validation windows of one series, and the standardisation they were made with.
public struct ForecastingSplit: Sendable, Equatable {
    /// Windows whose targets all lie in the training part.
    public var training: ForecastWindows
    /// Windows whose targets all lie in the validation part.
    public var validation: ForecastWindows
    /// The standardisation fitted to the training part, or nil when values are left as read.
    public var standardization: Standardization?
}

extension NumericSeries {
    /// Splits the series in time and cuts both parts into windows.
    ///
    /// The first `⌊count × (1 − validationFraction)⌋` values are the training part (Keras's
    /// `validation_split` arithmetic); the rest are the validation part. Training windows use only
    /// training values. Validation windows have their targets in the validation part and take
    /// their inputs from the `windowLength` values before each target, which may reach back into
    /// the training part: the model sees the past, never a training target's future. With
    /// `standardizes`, mean and standard deviation come from the training part only and are
    /// applied to both.
    ///
    /// - Throws: `RecurError.invalidArgument` for a bad fraction or window parameter, or when a
    ///   part is too short for one window.
    public func forecastingSplit(
        windowLength: Int, horizon: Int = 1, stride: Int = 1, validationFraction: Double, standardizes: Bool = true
    ) throws -> ForecastingSplit {
        let split = try ValidationSplit(count: count, validationFraction: validationFraction)
        let trainingValues = Array(values[split.training])
        let standardization = standardizes ? try Standardization(fitting: trainingValues) : nil
        let scaled = standardization?.apply(values) ?? values

        let training = try ForecastWindows(
            values: scaled[split.training], length: windowLength, horizon: horizon, stride: stride)
        let validationStart = Swift.max(split.validation.lowerBound - windowLength, 0)
        let validation = try ForecastWindows(
            values: scaled[validationStart...], length: windowLength, horizon: horizon, stride: stride)
        guard training.count > 0, validation.count > 0 else {
            throw RecurError.invalidArgument(
                operation: "NumericSeries.forecastingSplit",
                detail: "\(split.training.count) training and \(split.validation.count) validation values give "
                    + "\(training.count) and \(validation.count) windows of \(windowLength) + \(horizon) values")
        }
        return ForecastingSplit(training: training, validation: validation, standardization: standardization)
    }
}

// MARK: Transforms

/// How a forecaster's windows are scaled before the model reads them, and how its outputs become
/// values in the series' units again. Every transform is a shift and a scale of one window,
/// z = (x − c) / s, applied to the window's inputs x_0 … x_{T−1} and to its targets y_1 … y_H
/// with the same c and s; the forecast of an output z is ŷ = c + s · z. They differ in c and s:
///
///   level:      c = m, s = σ               (m, σ: mean and standard deviation of the training part)
///   difference: c = x_{T−1}, s = σ_Δ      (the model predicts the change from the last value, in
///                                          units of σ_Δ, the deviation of one step's change
///                                          x_t − x_{t−1} over the training part)
///   revin:      c = μ_w, s = σ_w + ε       (μ_w, σ_w: the window's own mean and population
///                                          deviation; ε = 10⁻⁵ · σ, so a flat window divides by
///                                          a small number in the series' units, not by zero)
///
/// `level` cannot forecast beyond the values it was trained on: a trending series leaves the
/// training range, and its standardised values with it. `difference` and `revin` give the model
/// every window around its own level, so a trend looks the same at any height. `revin` is the
/// reversible instance normalisation of Kim et al. (2022), without its learnt affine parameters.
///
/// `difference` divides by σ_Δ rather than σ because σ of a trending series measures how far the
/// trend travelled over the training part, not how much the series moves in one step: on the
/// training part of macrodata σ is 35 times σ_Δ for realgdp and 57 times for cpi, against 1.3 for
/// the untrending inflation rate, so the windows of a trending target were a few hundredths wide
/// and the other columns of a multivariate window drowned them. Scaled by σ_Δ, each column's
/// changes are of order 1, as a statistician standardises a differenced series. (Measured on
/// macrodata: realgdp and cpi, each alone and each with the 11 other columns as inputs, lost to
/// the drift forecast in three cases of four scaled by σ; scaled by σ_Δ, their mean test MAE over
/// three seeds beat it in all four.)
public enum SeriesTransform: String, Sendable, Equatable, Codable, CaseIterable {
    case level
    case difference
    case revin

    /// What `recur train` uses unless told otherwise: on trending series (a synthetic trend with
    /// seasonality, the realgdp column of macrodata) it beat the last value and drift forecasts,
    /// which `level` did not.
    public static let `default` = SeriesTransform.difference

    /// ε of `revin` as a fraction of the training part's standard deviation.
    public static let revinEpsilon: Float = 1e-5

    /// The statistics this transform scales by, fitted to a column's training part: its mean,
    /// and σ (`level`, `revin`) or σ_Δ (`difference`; σ when the part has a single value or
    /// every step is the same, as on a straight line, where σ_Δ is 0).
    /// - Parameter values: the training part, in the series' units; not empty.
    /// - Throws: `RecurError.invalidArgument` for no values.
    public func fitted(to values: some Collection<Float>) throws -> Standardization {
        var fitted = try Standardization(fitting: values)
        if self == .difference, values.count > 1 {
            let steps = zip(values.dropFirst(), values).map { Double($0) - Double($1) }
            let mean = steps.reduce(0, +) / Double(steps.count)
            let variance = steps.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(steps.count)
            if variance > 0 { fitted.standardDeviation = Float(variance.squareRoot()) }
        }
        return fitted
    }

    /// c and s of one input window, as a `Standardization` (mean c, deviation s).
    /// - Parameters:
    ///   - window: x_0 … x_{T−1}, in the series' units; not empty.
    ///   - fitted: m and σ of the training part.
    public func scaling(of window: some BidirectionalCollection<Float>, fitted: Standardization) -> Standardization {
        switch self {
        case .level:
            return fitted
        case .difference:
            return Standardization(mean: window.last ?? 0, standardDeviation: fitted.standardDeviation)
        case .revin:
            // In Double, as `Standardization(fitting:)`, so a window of large values keeps its
            // small variations.
            let n = Double(window.count)
            let mean = window.reduce(0.0) { $0 + Double($1) } / n
            let variance = window.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / n
            return Standardization(
                mean: Float(mean),
                standardDeviation: Float(variance.squareRoot()) + Self.revinEpsilon * fitted.standardDeviation)
        }
    }
}

extension ForecastWindows {
    /// The windows scaled by `transform` (inputs and targets of window n with window n's c and
    /// s), and each window's s, which turns an error in the model's units back into the series'.
    public func transformed(_ transform: SeriesTransform, fitted: Standardization)
        -> (windows: ForecastWindows, scalings: [Standardization]) {
        let (windows, scalings) = transformed(transform, fitted: [fitted])
        return (windows, scalings.map { $0[0] })
    }

    /// The windows scaled column by column: feature f of window n by c and s of that column's
    /// window (`fitted[f]` its training part's statistics), target j with the scaling of
    /// column j. Returns the scalings `[N][F]`.
    /// - Precondition: one fitted standardisation per feature.
    public func transformed(_ transform: SeriesTransform, fitted: [Standardization])
        -> (windows: ForecastWindows, scalings: [[Standardization]]) {
        precondition(fitted.count == features, "one standardisation per feature")
        var result = self
        var scalings: [[Standardization]] = []
        scalings.reserveCapacity(count)
        for n in 0..<count {
            var windowScalings: [Standardization] = []
            for f in 0..<features {
                let inputIndices = Swift.stride(from: n * length * features + f, to: (n + 1) * length * features,
                                                by: features)
                let scaling = transform.scaling(of: inputIndices.map { inputs[$0] }, fitted: fitted[f])
                for index in inputIndices {
                    result.inputs[index] = (inputs[index] - scaling.mean) / scaling.standardDeviation
                }
                if f < targetCount {
                    for index in Swift.stride(from: n * outputs + f, to: (n + 1) * outputs, by: targetCount) {
                        result.targets[index] = (targets[index] - scaling.mean) / scaling.standardDeviation
                    }
                }
                windowScalings.append(scaling)
            }
            scalings.append(windowScalings)
        }
        return (result, scalings)
    }
}
