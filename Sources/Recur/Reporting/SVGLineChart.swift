#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Line charts as standalone SVG text: no dependencies, viewable in any browser and renderable to
// PNG by any SVG tool. Used for loss curves and gradient flow; a training loop can plot any
// metric with it.

/// A line chart of named series of (x, y) points, with axes, ticks, labels, a title and a legend,
/// rendered as an SVG document.
///
/// ```swift
/// var chart = SVGLineChart(title: "Training loss", xLabel: "step", yLabel: "MSE", logScaleY: true)
/// chart.addSeries(name: "lstm", points: losses.enumerated().map { (x: Double($0), y: Double($1)) })
/// try chart.write(to: "loss.svg")
/// ```
///
/// Points that cannot be drawn are skipped: NaN or infinite coordinates, and y ≤ 0 on a
/// logarithmic axis; a line breaks where points were skipped. A series with no drawable point
/// still appears in the legend. Text is XML-escaped.
public struct SVGLineChart: Sendable {
    /// One named line.
    public struct Series: Sendable {
        public var name: String
        public var points: [(x: Double, y: Double)]
        /// A CSS colour; nil takes the next colour of the palette.
        public var color: String?
        public var dashed: Bool
    }

    public var title: String
    public var xLabel: String
    public var yLabel: String
    /// A base-10 logarithmic y axis.
    public var logScaleY: Bool
    /// Size of the whole chart in SVG user units (pixels).
    public var width: Double
    public var height: Double
    /// Horizontal reference lines (a baseline, a threshold) with a label, drawn dashed in grey.
    public var referenceLines: [(y: Double, label: String)] = []
    public private(set) var series: [Series] = []

    /// Colour-blind-safe palette (Okabe & Ito 2008), in order of use.
    public static let palette = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
                                 "#F0E442"]

    public init(title: String, xLabel: String, yLabel: String, logScaleY: Bool = false,
                width: Double = 640, height: Double = 400) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.logScaleY = logScaleY
        self.width = width
        self.height = height
    }

    /// Adds a line; `color` nil picks the palette's next colour.
    public mutating func addSeries(name: String, points: [(x: Double, y: Double)], color: String? = nil,
                                   dashed: Bool = false) {
        series.append(Series(name: name, points: points, color: color, dashed: dashed))
    }

    /// Adds a horizontal reference line at `y`.
    public mutating func addReferenceLine(y: Double, label: String) {
        referenceLines.append((y, label))
    }

    /// The standalone SVG document.
    public func render() -> String {
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(number(width))\" height=\"\(number(height))\" "
            + "viewBox=\"0 0 \(number(width)) \(number(height))\" font-family=\"sans-serif\">\n"
            + "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
            + renderBody(originX: 0, originY: 0)
            + "</svg>\n"
    }

    /// Writes `render()` to `path` atomically: a crash leaves the old file or the new one.
    /// - Throws: `RecurError.io` when the file cannot be written.
    public func write(to path: String) throws {
        try FileBytes.writeAtomically(Array(render().utf8), to: path)
    }

    // MARK: Layout

    /// Margins around the plot area: left holds the y ticks and label, bottom the x ticks and
    /// label, top the title, right the legend.
    private var margins: (left: Double, right: Double, top: Double, bottom: Double) {
        let legendWidth = series.isEmpty ? 16 : min(200, 34 + 7 * Double(series.map(\.name.count).max() ?? 0))
        return (64, legendWidth, 34, 48)
    }

    /// The chart's elements, translated to (originX, originY); also used by `SVGChartGrid`.
    func renderBody(originX: Double, originY: Double) -> String {
        let m = margins
        let plot = (x: m.left, y: m.top, width: max(width - m.left - m.right, 10),
                    height: max(height - m.top - m.bottom, 10))
        let drawable = series.flatMap { $0.points.filter(isDrawable) }
        let xRange = Self.range(drawable.map(\.x), fallback: (0, 1))
        let yValues = (drawable.map(\.y) + referenceLines.map(\.y).filter(isDrawable))
            .map { logScaleY ? Self.decimalLogarithm($0) : $0 }
        let yRange = logScaleY
            ? Self.decadeRange(yValues, fallback: (-1, 1))
            : Self.range(yValues, fallback: (0, 1))
        let xTicks = Self.niceTicks(xRange)
        let yTicks = logScaleY ? Self.decadeTicks(yRange) : Self.niceTicks(yRange)
        let xSpan = (xTicks.first ?? xRange.low, xTicks.last ?? xRange.high)
        let ySpan = logScaleY ? yRange : (yTicks.first ?? yRange.low, yTicks.last ?? yRange.high)

        func px(_ x: Double) -> Double {
            let span = xSpan.1 - xSpan.0
            return plot.x + (span > 0 ? (x - xSpan.0) / span : 0.5) * plot.width
        }
        func py(_ y: Double) -> Double {
            let value = logScaleY ? Self.decimalLogarithm(y) : y
            let span = ySpan.1 - ySpan.0
            return plot.y + plot.height - (span > 0 ? (value - ySpan.0) / span : 0.5) * plot.height
        }

        var svg = "<g transform=\"translate(\(number(originX)),\(number(originY)))\">\n"
        svg += "<text x=\"\(number(plot.x + plot.width / 2))\" y=\"20\" text-anchor=\"middle\" font-size=\"14\" "
            + "font-weight=\"bold\">\(escapeXML(title))</text>\n"
        // Grid and ticks.
        for tick in xTicks {
            let x = px(tick)
            svg += line(x, plot.y, x, plot.y + plot.height, stroke: "#e5e5e5")
            svg += "<text x=\"\(number(x))\" y=\"\(number(plot.y + plot.height + 16))\" text-anchor=\"middle\" "
                + "font-size=\"11\">\(escapeXML(Self.label(tick)))</text>\n"
        }
        for tick in yTicks {
            let value = logScaleY ? Self.powerOfTen(tick) : tick
            let y = py(value)
            svg += line(plot.x, y, plot.x + plot.width, y, stroke: "#e5e5e5")
            let text = logScaleY ? Self.decadeLabel(tick) : Self.label(tick)
            svg += "<text x=\"\(number(plot.x - 6))\" y=\"\(number(y + 4))\" text-anchor=\"end\" "
                + "font-size=\"11\">\(escapeXML(text))</text>\n"
        }
        svg += "<rect x=\"\(number(plot.x))\" y=\"\(number(plot.y))\" width=\"\(number(plot.width))\" "
            + "height=\"\(number(plot.height))\" fill=\"none\" stroke=\"#444\"/>\n"
        svg += "<text x=\"\(number(plot.x + plot.width / 2))\" y=\"\(number(height - 10))\" text-anchor=\"middle\" "
            + "font-size=\"12\">\(escapeXML(xLabel))</text>\n"
        let yLabelX = 16.0, yLabelY = plot.y + plot.height / 2
        svg += "<text x=\"\(number(yLabelX))\" y=\"\(number(yLabelY))\" text-anchor=\"middle\" font-size=\"12\" "
            + "transform=\"rotate(-90 \(number(yLabelX)) \(number(yLabelY)))\">\(escapeXML(yLabel))</text>\n"

        for reference in referenceLines where isDrawable(reference.y) {
            let y = py(reference.y)
            guard y >= plot.y - 0.5, y <= plot.y + plot.height + 0.5 else { continue }
            svg += line(plot.x, y, plot.x + plot.width, y, stroke: "#777", dashed: true)
            svg += "<text x=\"\(number(plot.x + 4))\" y=\"\(number(y - 4))\" font-size=\"10\" fill=\"#555\">"
                + "\(escapeXML(reference.label))</text>\n"
        }

        // Lines, clipped to the plot area; a skipped point breaks the line.
        svg += "<g>\n"
        var paletteIndex = 0
        var colors: [String] = []
        for entry in series {
            if let color = entry.color {
                colors.append(color)
            } else {
                colors.append(Self.palette[paletteIndex % Self.palette.count])
                paletteIndex += 1
            }
        }
        for (index, entry) in series.enumerated() {
            var segments: [[(Double, Double)]] = [[]]
            for point in entry.points {
                if isDrawable(point) {
                    segments[segments.count - 1].append((px(point.x), py(point.y)))
                } else if !segments[segments.count - 1].isEmpty {
                    segments.append([])
                }
            }
            let dash = entry.dashed ? " stroke-dasharray=\"6 4\"" : ""
            for segment in segments where !segment.isEmpty {
                if segment.count == 1 {
                    svg += "<circle cx=\"\(number(segment[0].0))\" cy=\"\(number(segment[0].1))\" r=\"2.5\" "
                        + "fill=\"\(escapeXML(colors[index]))\"/>\n"
                } else {
                    let path = segment.map { "\(number($0.0)),\(number($0.1))" }.joined(separator: " ")
                    svg += "<polyline fill=\"none\" stroke=\"\(escapeXML(colors[index]))\" stroke-width=\"1.6\"\(dash) "
                        + "points=\"\(path)\"/>\n"
                }
            }
        }
        svg += "</g>\n"

        // Legend, right of the plot.
        for (index, entry) in series.enumerated() {
            let y = plot.y + 10 + Double(index) * 16
            let x = plot.x + plot.width + 8
            let dash = entry.dashed ? " stroke-dasharray=\"4 3\"" : ""
            svg += "<line x1=\"\(number(x))\" y1=\"\(number(y))\" x2=\"\(number(x + 18))\" y2=\"\(number(y))\" "
                + "stroke=\"\(escapeXML(colors[index]))\" stroke-width=\"2\"\(dash)/>\n"
            svg += "<text x=\"\(number(x + 22))\" y=\"\(number(y + 4))\" font-size=\"11\">\(escapeXML(entry.name))</text>\n"
        }
        svg += "</g>\n"
        return svg
    }

    private func isDrawable(_ point: (x: Double, y: Double)) -> Bool {
        point.x.isFinite && isDrawable(point.y)
    }

    private func isDrawable(_ y: Double) -> Bool {
        y.isFinite && (!logScaleY || y > 0)
    }

    private func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, stroke: String,
                      dashed: Bool = false) -> String {
        "<line x1=\"\(number(x1))\" y1=\"\(number(y1))\" x2=\"\(number(x2))\" y2=\"\(number(y2))\" "
            + "stroke=\"\(stroke)\"\(dashed ? " stroke-dasharray=\"5 4\"" : "")/>\n"
    }

    // MARK: Scales

    /// The smallest and largest of `values`, widened when they coincide; `fallback` when empty.
    static func range(_ values: [Double], fallback: (Double, Double)) -> (low: Double, high: Double) {
        guard let low = values.min(), let high = values.max() else { return fallback }
        if low == high {
            let pad = low == 0 ? 1 : abs(low) * 0.1
            return (low - pad, high + pad)
        }
        return (low, high)
    }

    /// Whole decades (base-10 exponents) enclosing `exponents`, at least one decade wide.
    static func decadeRange(_ exponents: [Double], fallback: (Double, Double)) -> (low: Double, high: Double) {
        guard let low = exponents.min(), let high = exponents.max() else { return fallback }
        let (floorLow, ceilHigh) = (low.rounded(.down), high.rounded(.up))
        return ceilHigh > floorLow ? (floorLow, ceilHigh) : (floorLow, floorLow + 1)
    }

    /// About five round ticks (1, 2 or 5 times a power of ten apart) covering `range`.
    static func niceTicks(_ range: (low: Double, high: Double)) -> [Double] {
        let span = range.high - range.low
        guard span > 0, span.isFinite else { return [range.low] }
        let rough = span / 5
        let magnitude = powerOfTen(decimalLogarithm(rough).rounded(.down))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= rough } ?? 10 * magnitude
        let first = (range.low / step).rounded(.down) * step
        let last = (range.high / step).rounded(.up) * step
        var ticks: [Double] = []
        var k = 0.0
        while first + k * step <= last + step * 1e-9, ticks.count < 50 {
            let value = first + k * step
            ticks.append(abs(value) < step * 1e-9 ? 0 : value)
            k += 1
        }
        return ticks
    }

    /// One tick per decade, thinned to at most about eight.
    static func decadeTicks(_ range: (low: Double, high: Double)) -> [Double] {
        let count = Int(range.high - range.low)
        let stride = max(1, (count + 7) / 8)
        return Swift.stride(from: range.low, through: range.high, by: Double(stride)).map { $0 }
    }

    /// A tick label: integers without decimals, others with the fewest digits that show them.
    static func label(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int(value)) }
        let magnitude = abs(value)
        if magnitude >= 1e-3 && magnitude < 1e6 {
            var digits = 1
            while digits < 6 {
                let scale = powerOfTen(Double(digits))
                if abs((value * scale).rounded() / scale - value) < magnitude * 1e-9 { break }
                digits += 1
            }
            let scale = powerOfTen(Double(digits))
            let scaled = Int((abs(value) * scale).rounded())
            let whole = scaled / Int(scale)
            let fraction = String(scaled % Int(scale))
            return (value < 0 ? "-" : "") + "\(whole)." + String(repeating: "0", count: digits - fraction.count)
                + fraction
        }
        return "\(value)"
    }

    /// 10^k for a decade tick: "1", "10", "100", "0.1", else "1e-5".
    static func decadeLabel(_ exponent: Double) -> String {
        let k = Int(exponent)
        switch k {
        case 0...3: return String(Int(powerOfTen(exponent)))
        case -2 ... -1: return k == -1 ? "0.1" : "0.01"
        default: return "1e\(k)"
        }
    }

    static func decimalLogarithm(_ value: Double) -> Double {
        log10(value)
    }

    static func powerOfTen(_ exponent: Double) -> Double {
        pow(10, exponent)
    }
}

/// Small multiples: several `SVGLineChart`s in a grid in one SVG document, under a common title.
public struct SVGChartGrid: Sendable {
    public var title: String
    /// Panels per row.
    public var columns: Int
    public var charts: [SVGLineChart]

    public init(title: String, columns: Int, charts: [SVGLineChart] = []) {
        self.title = title
        self.columns = max(1, columns)
        self.charts = charts
    }

    /// The standalone SVG document: each row as tall as its tallest chart, each column as wide
    /// as its widest.
    public func render() -> String {
        let rows = (charts.count + columns - 1) / columns
        var columnWidths = [Double](repeating: 0, count: columns)
        var rowHeights = [Double](repeating: 0, count: max(rows, 1))
        for (index, chart) in charts.enumerated() {
            columnWidths[index % columns] = max(columnWidths[index % columns], chart.width)
            rowHeights[index / columns] = max(rowHeights[index / columns], chart.height)
        }
        let header = 36.0
        let width = max(columnWidths.reduce(0, +), 200)
        let height = header + rowHeights.reduce(0, +)
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(number(width))\" height=\"\(number(height))\" "
            + "viewBox=\"0 0 \(number(width)) \(number(height))\" font-family=\"sans-serif\">\n"
            + "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
            + "<text x=\"\(number(width / 2))\" y=\"24\" text-anchor=\"middle\" font-size=\"17\" "
            + "font-weight=\"bold\">\(escapeXML(title))</text>\n"
        for (index, chart) in charts.enumerated() {
            let (row, column) = (index / columns, index % columns)
            let x = columnWidths[..<column].reduce(0, +)
            let y = header + rowHeights[..<row].reduce(0, +)
            svg += chart.renderBody(originX: x, originY: y)
        }
        return svg + "</svg>\n"
    }

    /// Writes `render()` to `path` atomically.
    /// - Throws: `RecurError.io` when the file cannot be written.
    public func write(to path: String) throws {
        try FileBytes.writeAtomically(Array(render().utf8), to: path)
    }
}

/// `text` with the five XML special characters replaced by entities; characters XML forbids
/// (control characters other than tab, newline, carriage return) are dropped.
public func escapeXML(_ text: String) -> String {
    var escaped = ""
    escaped.reserveCapacity(text.utf8.count)
    for scalar in text.unicodeScalars {
        switch scalar {
        case "&": escaped += "&amp;"
        case "<": escaped += "&lt;"
        case ">": escaped += "&gt;"
        case "\"": escaped += "&quot;"
        case "'": escaped += "&apos;"
        case "\t", "\n", "\r": escaped.unicodeScalars.append(scalar)
        default:
            if scalar.value >= 0x20 { escaped.unicodeScalars.append(scalar) }
        }
    }
    return escaped
}

/// A coordinate with at most two decimals, without trailing zeros (`12`, `12.5`, `-0.25`).
private func number(_ value: Double) -> String {
    guard value.isFinite else { return "0" }
    let hundredths = Int((abs(value) * 100).rounded())
    let sign = value < 0 && hundredths != 0 ? "-" : ""
    var text = sign + String(hundredths / 100)
    let fraction = hundredths % 100
    if fraction != 0 {
        text += "." + (fraction < 10 ? "0" : "") + String(fraction)
        while text.hasSuffix("0") { text.removeLast() }
    }
    return text
}
