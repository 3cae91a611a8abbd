import Testing
@testable import Recur

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@Suite("Synthetic tasks")
struct SyntheticTaskTests {
    @Test("adding problem: two markers, one per half, target their sum, baseline MSE 1/6")
    func addingProblem() throws {
        let (steps, size) = (21, 4096)
        var task = try AddingProblem(steps: steps, seed: 7)
        let batch = task.nextBatch(size: size)
        #expect(batch.inputShape == [steps, size, 2])
        #expect(batch.targetShape == [size, 1])
        var (valueSum, squaredErrorOfOne) = (0.0, 0.0)
        var firstHalfCounts = [Int](repeating: 0, count: steps)
        for b in 0..<size {
            var marked: [Int] = []
            var sum: Float = 0
            for t in 0..<steps {
                let (value, marker) = (batch.inputs[(t * size + b) * 2], batch.inputs[(t * size + b) * 2 + 1])
                #expect(value >= 0 && value < 1)
                valueSum += Double(value)
                #expect(marker == 0 || marker == 1)
                if marker == 1 {
                    marked.append(t)
                    sum += value
                }
            }
            #expect(marked.count == 2)
            #expect(marked[0] < steps / 2 && marked[1] >= steps / 2, "markers at \(marked)")
            #expect(marked[0] == batch.markedSteps[b].first && marked[1] == batch.markedSteps[b].second)
            #expect(batch.targets[b] == sum)
            firstHalfCounts[marked[0]] += 1
            squaredErrorOfOne += Double(batch.targets[b] - 1) * Double(batch.targets[b] - 1)
        }
        // Values are U(0, 1): mean 1/2 (standard error ≈ 0.29 / √(T B) ≈ 0.001).
        #expect(abs(valueSum / Double(steps * size) - 0.5) < 0.01)
        // Predicting 1 gives MSE 1/6 (standard error ≈ 0.003 for 4096 sequences).
        #expect(abs(squaredErrorOfOne / Double(size) - AddingProblem.baselineMeanSquaredError) < 0.015)
        // The first marker is uniform over the 10 steps of the first half.
        for count in firstHalfCounts[..<(steps / 2)] {
            #expect(abs(Double(count) / Double(size) - 0.1) < 0.025)
        }
    }

    @Test("adding problem batches are determined by the seed")
    func addingProblemIsSeeded() throws {
        var a = try AddingProblem(steps: 9, seed: 3)
        var b = try AddingProblem(steps: 9, seed: 3)
        var c = try AddingProblem(steps: 9, seed: 4)
        let (first, second, other) = (a.nextBatch(size: 5), b.nextBatch(size: 5), c.nextBatch(size: 5))
        #expect(first.inputs == second.inputs && first.targets == second.targets)
        #expect(first.inputs != other.inputs)
        // The stream moves on: the next batch differs from the first.
        #expect(a.nextBatch(size: 5).inputs != first.inputs)
        expectRecurError("T = 1", matches: { if case .invalidArgument = $0 { true } else { false } }) {
            _ = try AddingProblem(steps: 1, seed: 0)
        }
    }

    @Test("copy-memory task: symbols, delay, delimiter, then the symbols as targets")
    func copyMemory() throws {
        let (delay, length, alphabet, size) = (5, 4, 8, 2048)
        var task = try CopyMemoryTask(delay: delay, sequenceLength: length, alphabetSize: alphabet, seed: 11)
        let batch = task.nextBatch(size: size)
        let (steps, classes) = (task.steps, task.classCount)
        #expect(steps == delay + 2 * length && classes == alphabet + 2)
        #expect(batch.inputShape == [steps, size, classes] && batch.targetShape == [steps, size])
        var symbolCounts = [Int](repeating: 0, count: alphabet + 1)
        for b in 0..<size {
            var inputClasses: [Int] = []
            for t in 0..<steps {
                let row = Array(batch.inputs[((t * size + b) * classes)..<((t * size + b + 1) * classes)])
                #expect(row.filter { $0 == 1 }.count == 1 && row.filter { $0 == 0 }.count == classes - 1)
                inputClasses.append(row.firstIndex(of: 1)!)
            }
            let symbols = Array(inputClasses[..<length])
            #expect(symbols.allSatisfy { (1...alphabet).contains($0) })
            for symbol in symbols { symbolCounts[symbol] += 1 }
            #expect(inputClasses[(length)..<(length + delay - 1)].allSatisfy { $0 == 0 })
            #expect(inputClasses[length + delay - 1] == Int(task.delimiter))
            #expect(inputClasses[(length + delay)...].allSatisfy { $0 == 0 })
            let targets = (0..<steps).map { Int(batch.targets[$0 * size + b]) }
            #expect(targets[..<(delay + length)].allSatisfy { $0 == 0 })
            #expect(Array(targets[(delay + length)...]) == symbols)
        }
        // Symbols are uniform over the alphabet.
        for count in symbolCounts[1...] {
            #expect(abs(Double(count) / Double(size * length) - 1 / Double(alphabet)) < 0.02)
        }
        #expect(abs(task.baselineCrossEntropy - Double(length) * log(Double(alphabet)) / Double(steps)) < 1e-12)
    }
}

@Suite("Reporting")
struct ReportingTests {
    /// Checks that `svg` is well-formed enough for a browser: one root element, every tag closed
    /// in order, attribute values quoted, no raw `&` outside an entity.
    func expectWellFormed(_ svg: String, sourceLocation: SourceLocation = #_sourceLocation) {
        var stack: [String] = []
        var rest = Substring(svg)
        while let open = rest.firstIndex(of: "<") {
            let text = rest[..<open]
            expectEntities(text, sourceLocation: sourceLocation)
            guard let close = rest[open...].firstIndex(of: ">") else {
                Issue.record("unclosed tag", sourceLocation: sourceLocation)
                return
            }
            let tag = rest[rest.index(after: open)..<close]
            if tag.hasPrefix("/") {
                let name = String(tag.dropFirst())
                #expect(stack.popLast() == name, "closing \(name)", sourceLocation: sourceLocation)
            } else {
                let name = String(tag.prefix { $0 != " " && $0 != "/" })
                #expect(tag.filter { $0 == "\"" }.count % 2 == 0, "attributes of \(name)", sourceLocation: sourceLocation)
                expectEntities(tag, sourceLocation: sourceLocation)
                if !tag.hasSuffix("/") { stack.append(name) }
            }
            rest = rest[rest.index(after: close)...]
        }
        #expect(stack.isEmpty, "unclosed \(stack)", sourceLocation: sourceLocation)
        #expect(svg.hasPrefix("<svg "), sourceLocation: sourceLocation)
    }

    private func expectEntities(_ text: Substring, sourceLocation: SourceLocation) {
        var rest = text
        while let ampersand = rest.firstIndex(of: "&") {
            let after = rest[ampersand...]
            let ok = ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].contains { after.hasPrefix($0) }
            #expect(ok, "raw & in \(text)", sourceLocation: sourceLocation)
            rest = rest[rest.index(after: ampersand)...]
        }
    }

    @Test("line chart: well-formed, escaped, skips undrawable points")
    func lineChart() throws {
        var chart = SVGLineChart(title: "loss <train> & \"test\"", xLabel: "step", yLabel: "MSE", logScaleY: true)
        chart.addSeries(name: "a & b", points: [(1, 0.5), (2, .nan), (3, 0.1), (4, -1), (5, 0), (6, .infinity), (7, 0.01)])
        chart.addSeries(name: "empty", points: [])
        chart.addSeries(name: "single", points: [(3, 0.2)])
        chart.addReferenceLine(y: 1.0 / 6, label: "baseline")
        let svg = chart.render()
        expectWellFormed(svg)
        #expect(svg.contains("loss &lt;train&gt; &amp; &quot;test&quot;"))
        #expect(svg.contains(">a &amp; b<") && svg.contains(">empty<"))
        #expect(!svg.contains("nan") && !svg.contains("inf"))
        // Series "a & b" breaks at every skipped point: three lone points and no polyline between
        // 0.1 and 0.01 (they are separated by -1, 0 and infinity).
        #expect(!svg.contains("<polyline"))
        #expect(svg.ranges(of: "<circle").count == 4)  // 0.5, 0.1, 0.01, single
        // Log axis: decade ticks from 0.01 to 1.
        #expect(svg.contains(">0.01<") && svg.contains(">0.1<") && svg.contains(">1<"))
    }

    @Test("line chart: empty chart, linear ticks, connected lines")
    func linearChart() throws {
        expectWellFormed(SVGLineChart(title: "nothing", xLabel: "x", yLabel: "y").render())
        var chart = SVGLineChart(title: "t", xLabel: "x", yLabel: "y")
        chart.addSeries(name: "line", points: (0...10).map { (Double($0), Double($0 * $0)) })
        let svg = chart.render()
        expectWellFormed(svg)
        #expect(svg.ranges(of: "<polyline").count == 1)
        #expect(SVGLineChart.niceTicks((0, 100)) == [0, 20, 40, 60, 80, 100])
        let small = SVGLineChart.niceTicks((0.013, 0.048))
        #expect(small.count == 5 && zip(small, [0.01, 0.02, 0.03, 0.04, 0.05]).allSatisfy { abs($0 - $1) < 1e-12 })
        #expect(SVGLineChart.label(0.25) == "0.25" && SVGLineChart.label(40) == "40")
    }

    @Test("chart grid and atomic write")
    func gridWrites() throws {
        var grid = SVGChartGrid(title: "grid", columns: 2)
        for k in 0..<3 {
            var chart = SVGLineChart(title: "panel \(k)", xLabel: "x", yLabel: "y", width: 300, height: 200)
            chart.addSeries(name: "s", points: [(0, 1), (1, Double(k + 2))])
            grid.charts.append(chart)
        }
        let svg = grid.render()
        expectWellFormed(svg)
        #expect(svg.contains("width=\"600\" height=\"436\""))
        let path = "/tmp/recur-grid-test-\(getpid()).svg"
        defer { unlink(path) }
        try grid.write(to: path)
        let written = try FileBytes.read(contentsOf: path)
        #expect(String(decoding: written, as: UTF8.self) == svg)
    }

    @Test("sparkline: levels, buckets, gaps, log scale")
    func sparkline() {
        #expect(Sparkline.render([Double]()) == "")
        #expect(Sparkline.render([1.0, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█")
        #expect(Sparkline.render([3.0, 3, 3]) == "▄▄▄")
        #expect(Sparkline.render([1.0, .nan, 2]) == "▁·█")
        #expect(Sparkline.render([1.0, 10, 100, 1000], logScale: true) == "▁▃▆█")
        #expect(Sparkline.render([0.0, -1], logScale: true) == "··")
        // 100 values into 10 buckets.
        let long = Sparkline.render((0..<100).map(Double.init), width: 10)
        #expect(long.count == 10 && long.first == "▁" && long.last == "█")
    }
}
