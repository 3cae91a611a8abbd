import Testing
@testable import recur

// The terminal's number formatting at every magnitude: a metric can reach 1e27 and beyond (the
// perplexity of a diverging language model), and converting such a value to Int trapped.

@Suite struct NumberFormattingTests {
    @Test func fixedHandlesEveryMagnitude() {
        #expect(fixed(123.456, 2) == "123.46")
        #expect(fixed(-0.5, 0) == "-1")
        #expect(fixed(0.0004, 2) == "0.00")
        #expect(fixed(999_999_999_999.5, 2) == "999999999999.50")
        #expect(fixed(1e27, 2) == "1.00e+27")
        #expect(fixed(9.3e18, 4) == "9.30e+18")
        #expect(fixed(-3.38e296, 2) == "-3.38e+296")
        #expect(fixed(Double.greatestFiniteMagnitude, 1) == "1.80e+308")
        #expect(fixed(.infinity, 2) == "inf")
        #expect(fixed(.nan, 2) == "nan")
        #expect(fixed(1.5, 12) == "1.500000000000")
        #expect(fixed(1.5, 40) == "1.50e+00")  // no more decimals than a Double holds
        #expect(metricText(3.38e296) == "3.38e+296")
        #expect(metricText(43.7) == "43.70")
    }

    @Test func scientificAndBytesHandleTheExtremes() {
        #expect(scientific(Double.leastNonzeroMagnitude) == "4.94e-324")
        #expect(scientific(-Double.greatestFiniteMagnitude) == "-1.80e+308")
        #expect(scientific(9.999e-8) == "1.00e-07")
        #expect(bytes(Int.max).hasSuffix("TiB"))
    }

    @Test func aRandomSweepNeverTraps() {
        var random = SeededGenerator(seed: 77)
        for _ in 0..<2000 {
            let value = Double(bitPattern: random.next())
            let text = fixed(value, Int(random.next() % 6))
            #expect(!text.isEmpty)
            #expect(!scientific(value).isEmpty)
        }
    }
}
