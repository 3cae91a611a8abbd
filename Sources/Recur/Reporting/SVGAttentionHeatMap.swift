// Attention weights as a heat map in standalone SVG text, like `SVGLineChart`: source tokens
// along the top, output tokens down the left, one cell per (output step, source step) shaded by
// its weight, and a colour scale from 0 to 1 beside it.

/// A heat map of one example's attention weights (what
/// ``EncoderDecoder/greedyDecodeWithAttention(_:maximumLength:)`` returns for it), rendered as an
/// SVG document.
///
/// ```swift
/// let (outputs, weights) = try model.greedyDecodeWithAttention(batch)
/// let map = try SVGAttentionHeatMap(title: "reverse", sourceTokens: ["a", "b"],
///                                   outputTokens: ["b", "a", "</s>"], weights: weights[0])
/// try map.write(to: "attention.svg")
/// ```
///
/// Weights are clamped to [0, 1] for the shading; a weight that is not finite draws grey. Text is
/// XML-escaped.
public struct SVGAttentionHeatMap: Sendable {
    /// The heading.
    public var title: String
    /// The column labels, one per source step.
    public var sourceTokens: [String]
    /// The row labels, one per output step.
    public var outputTokens: [String]
    /// `[output steps][source steps]`.
    public var weights: [[Float]]
    /// The side of one cell in SVG user units (pixels).
    public var cellSize: Double

    /// - Parameters:
    ///   - title: the heading.
    ///   - sourceTokens: the column labels, one per source step.
    ///   - outputTokens: the row labels, one per output step.
    ///   - weights: `[outputTokens.count][sourceTokens.count]`.
    ///   - cellSize: the side of one cell; default 28.
    /// - Throws: `RecurError.shapeMismatch` when the weights' rows and columns do not match the
    ///   tokens; `RecurError.invalidArgument` for no tokens or a cell size that is not positive.
    public init(title: String, sourceTokens: [String], outputTokens: [String], weights: [[Float]],
                cellSize: Double = 28) throws {
        let operation = "SVGAttentionHeatMap"
        guard !sourceTokens.isEmpty, !outputTokens.isEmpty else {
            throw RecurError.invalidArgument(operation: operation, detail: "a heat map needs source and output tokens")
        }
        guard cellSize > 0, cellSize.isFinite else {
            throw RecurError.invalidArgument(operation: operation, detail: "the cell size must be positive, got \(cellSize)")
        }
        guard weights.count == outputTokens.count, weights.allSatisfy({ $0.count == sourceTokens.count }) else {
            throw RecurError.shapeMismatch(
                operation: operation,
                detail: "weights must be [\(outputTokens.count)][\(sourceTokens.count)], got \(weights.count) rows of "
                    + "\(Set(weights.map(\.count)).sorted()) columns")
        }
        self.title = title
        self.sourceTokens = sourceTokens
        self.outputTokens = outputTokens
        self.weights = weights
        self.cellSize = cellSize
    }

    /// The colour of a weight: white at 0 to dark blue (#08306B) at 1; grey when not finite.
    /// - Parameter weight: the weight, clamped to [0, 1].
    /// - Returns: a CSS colour `rgb(r,g,b)`.
    public static func color(_ weight: Float) -> String {
        guard weight.isFinite else { return "rgb(160,160,160)" }
        let w = Double(min(max(weight, 0), 1))
        func channel(_ end: Double) -> Int { Int((255 + (end - 255) * w).rounded()) }
        return "rgb(\(channel(8)),\(channel(48)),\(channel(107)))"
    }

    /// The SVG document.
    /// - Returns: the text of a standalone SVG file.
    public func render() -> String {
        let labelWidth = 12 + 7 * Double(outputTokens.map(\.count).max() ?? 1)
        let labelHeight = 12 + 7 * Double(sourceTokens.map(\.count).max() ?? 1)
        let (left, top) = (labelWidth + 8, 30 + labelHeight)
        let gridWidth = Double(sourceTokens.count) * cellSize
        let gridHeight = Double(outputTokens.count) * cellSize
        let scaleX = left + gridWidth + 20
        let width = scaleX + 60
        let height = top + max(gridHeight, 120) + 16
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(format(width))\" height=\"\(format(height))\" "
            + "viewBox=\"0 0 \(format(width)) \(format(height))\" font-family=\"sans-serif\">\n"
        svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        svg += "<text x=\"\(format(width / 2))\" y=\"20\" text-anchor=\"middle\" font-size=\"14\" "
            + "font-weight=\"bold\">\(escapeXML(title))</text>\n"
        for (j, token) in sourceTokens.enumerated() {
            let x = left + (Double(j) + 0.5) * cellSize
            svg += "<text x=\"\(format(x))\" y=\"\(format(top - 6))\" font-size=\"12\" "
                + "transform=\"rotate(-90 \(format(x)) \(format(top - 6)))\" dominant-baseline=\"middle\">"
                + "\(escapeXML(token))</text>\n"
        }
        for (i, token) in outputTokens.enumerated() {
            let y = top + (Double(i) + 0.5) * cellSize
            svg += "<text x=\"\(format(left - 6))\" y=\"\(format(y))\" font-size=\"12\" text-anchor=\"end\" "
                + "dominant-baseline=\"middle\">\(escapeXML(token))</text>\n"
        }
        for (i, row) in weights.enumerated() {
            for (j, weight) in row.enumerated() {
                svg += "<rect x=\"\(format(left + Double(j) * cellSize))\" y=\"\(format(top + Double(i) * cellSize))\" "
                    + "width=\"\(format(cellSize))\" height=\"\(format(cellSize))\" fill=\"\(Self.color(weight))\">"
                    + "<title>\(escapeXML(outputTokens[i])) ← \(escapeXML(sourceTokens[j])): \(weight)</title></rect>\n"
            }
        }
        svg += "<rect x=\"\(format(left))\" y=\"\(format(top))\" width=\"\(format(gridWidth))\" "
            + "height=\"\(format(gridHeight))\" fill=\"none\" stroke=\"#333\" stroke-width=\"1\"/>\n"
        // The colour scale: 1 at the top, 0 at the bottom, in ten bands.
        let bands = 10
        let bandHeight = 100.0 / Double(bands)
        for band in 0..<bands {
            let weight = Float(bands - band) / Float(bands) - 0.5 / Float(bands)
            svg += "<rect x=\"\(format(scaleX))\" y=\"\(format(top + Double(band) * bandHeight))\" width=\"14\" "
                + "height=\"\(format(bandHeight))\" fill=\"\(Self.color(weight))\"/>\n"
        }
        svg += "<rect x=\"\(format(scaleX))\" y=\"\(format(top))\" width=\"14\" height=\"100\" fill=\"none\" "
            + "stroke=\"#333\" stroke-width=\"1\"/>\n"
        for (label, y) in [("1", top), ("0.5", top + 50), ("0", top + 100)] {
            svg += "<text x=\"\(format(scaleX + 18))\" y=\"\(format(y))\" font-size=\"11\" "
                + "dominant-baseline=\"middle\">\(label)</text>\n"
        }
        return svg + "</svg>\n"
    }

    /// Writes `render()` to `path` atomically: a crash leaves the old file or the new one.
    /// - Parameter path: the file to write.
    /// - Throws: `RecurError.io` when the file cannot be written.
    public func write(to path: String) throws {
        try FileBytes.writeAtomically(Array(render().utf8), to: path)
    }

    /// A coordinate with at most two decimals.
    private func format(_ value: Double) -> String {
        let rounded = (value * 100).rounded() / 100
        return rounded == rounded.rounded() ? String(Int(rounded)) : String(rounded)
    }
}
