import Testing
@testable import Recur

/// A monthly series in the layout of `airline-passengers.csv` from the Time Series Data Library:
/// a quoted header, quoted months, CRLF line ends and no final newline. Generated (a seeded
/// trend with a yearly cycle, whole numbers), because the copy the layout comes from states no
/// licence.
struct MonthlySeriesFile {
    let values: [Float]
    let months: [String]
    let text: String

    init(seed: UInt64, years: Int = 12) {
        var random = SeededGenerator(seed: seed)
        var values: [Float] = []
        var months: [String] = []
        for month in 0..<(years * 12) {
            let seasonal = [0, -6, 8, 3, -2, 14, 26, 26, 10, -8, -22, -6][month % 12]
            values.append(Float(110 + month * 2 + seasonal + Int.random(in: -5...5, using: &random)))
            let (year, inYear) = (1949 + month / 12, month % 12 + 1)
            months.append("\(year)-\(inYear < 10 ? "0" : "")\(inYear)")
        }
        self.values = values
        self.months = months
        text = "\"Month\",\"Passengers\"\r\n"
            + zip(months, values).map { "\"\($0)\",\(Int($1))" }.joined(separator: "\r\n")
    }
}

@Suite struct DataSeriesTests {
    @Test func monthlySeriesLayoutLoads() throws {
        let folder = try TemporaryFolder()
        let file = MonthlySeriesFile(seed: 5)
        let path = try folder.write("airline-passengers.csv", file.text)
        let series = try NumericSeries.readCSV(contentsOf: path)
        #expect(series.count == 144)
        #expect(series.values == file.values)
        #expect(series.timestamps == file.months)
        #expect(series.timestamps.first == "1949-01" && series.timestamps.last == "1960-12")
        // By header name, without timestamps.
        let named = try NumericSeries.readCSV(contentsOf: path, timestampColumn: nil, valueColumn: .name("Passengers"))
        #expect(named.values == series.values && named.timestamps.isEmpty)
    }

    /// US macroeconomic data (`Datasets/macrodata`, the whole public-domain file from statsmodels):
    /// a real series with a header of quoted names, LF line ends and 14 columns.
    @Test func macrodataLoads() throws {
        let path = try TestDatasets.path("macrodata/macrodata.csv")
        let gdp = try NumericSeries.readCSV(contentsOf: path, valueColumn: .name("realgdp"))
        #expect(gdp.count == 203)
        #expect(gdp.values.first == 2710.349 && gdp.values.last == 12990.341)
        #expect(gdp.values.min() == 2710.349 && gdp.values.max() == 13415.266)
        #expect(abs(gdp.values.reduce(0.0) { $0 + Double($1) } - 1_465_897.896) < 0.1)
        #expect(gdp.timestamps.first == "1959" && gdp.timestamps.last == "2009")
        let unemployment = try NumericSeries.readCSV(contentsOf: path, timestampColumn: nil, valueColumn: .index(10))
        #expect(unemployment.values.first == 5.8 && unemployment.values.last == 9.6)
        #expect(unemployment.values.min() == 3.4 && unemployment.values.max() == 10.7)
        #expect(abs(unemployment.values.reduce(0.0) { $0 + Double($1) } - 1194.6) < 1e-3)

        // As `recur train --format series --value-column 10` reads it, told nothing about a
        // header: the first row's "unemp" is no number, so it is the header.
        var source = DataSource(format: .series, paths: [path])
        source.valueColumn = 10
        source.sequenceLength = 8
        source.validationFraction = 0
        let prepared = try source.prepare()
        // 203 values give 203 − 8 − 1 + 1 = 195 windows.
        #expect(prepared.training.count == 195)
        #expect(abs((prepared.standardization?.mean ?? 0) - 1194.6 / 203) < 1e-4)
    }

    @Test func badNumbersNameFileAndLine() throws {
        let folder = try TemporaryFolder()
        let path = try folder.write("bad.csv", "\"Month\",\"Value\"\r\n\"1949-01\",112\r\n\"1949-02\",abc\r\n\"1949-03\", 1.5e1 \r\n\"1949-04\",nan")
        let error = recurError { _ = try NumericSeries.readCSV(contentsOf: path) }
        #expect(error == .malformed(source: "\(path):3", detail: "'abc' in column 1 is not a finite decimal number"))
        let skipped = try NumericSeries.readCSV(contentsOf: path, onMalformed: .skip)
        #expect(skipped.values == [112, 15])
        #expect(skipped.timestamps == ["1949-01", "1949-03"])
        #expect(skipped.skippedCount == 2)
    }

    @Test func windowsSlideByStride() throws {
        let values: [Float] = (1...10).map(Float.init)
        // Starts 0, 2, 4: ⌊(10 − 3 − 2) / 2⌋ + 1 = 3 windows.
        let windows = try ForecastWindows(values: values, length: 3, horizon: 2, stride: 2)
        #expect(windows.count == 3)
        #expect(windows.inputs == [1, 2, 3, 3, 4, 5, 5, 6, 7])
        #expect(windows.targets == [4, 5, 6, 7, 8, 9])
        #expect(try ForecastWindows(values: values, length: 10, horizon: 1).count == 0)
        #expect(try ForecastWindows(values: values, length: 9, horizon: 1).count == 1)
        #expect(recurError { _ = try ForecastWindows(values: values, length: 3, stride: 0) } != nil)

        let batch = windows.batch([2, 0])
        #expect(batch.inputs == [5, 1, 6, 2, 7, 3])  // [T, B, 1]
        #expect(batch.targets == [8, 9, 4, 5])  // [B, H]
    }

    @Test func standardizationUsesPopulationDeviation() throws {
        let standardization = try Standardization(fitting: [1, 2, 3, 4])
        #expect(standardization.mean == 2.5)
        #expect(abs(standardization.standardDeviation - 1.118034) < 1e-6)
        let scaled = standardization.apply([2.5, 4])
        #expect(scaled[0] == 0 && abs(scaled[1] - 1.341641) < 1e-6)
        #expect(standardization.invert(scaled) == [2.5, 4])
        #expect(try Standardization(fitting: [5, 5]).standardDeviation == 1)
        #expect(recurError { _ = try Standardization(fitting: [Float]()) } != nil)
    }

    @Test func forecastingSplitFitsOnTheTrainingPartOnly() throws {
        let series = NumericSeries(values: (1...8).map(Float.init))
        // ⌊8 × 0.75⌋ = 6 training values (1…6); validation targets are 7 and 8.
        let raw = try series.forecastingSplit(windowLength: 2, validationFraction: 0.25, standardizes: false)
        #expect(raw.standardization == nil)
        #expect(raw.training.inputs == [1, 2, 2, 3, 3, 4, 4, 5])
        #expect(raw.training.targets == [3, 4, 5, 6])
        #expect(raw.validation.inputs == [5, 6, 6, 7])
        #expect(raw.validation.targets == [7, 8])

        let scaled = try series.forecastingSplit(windowLength: 2, validationFraction: 0.25)
        let standardization = try #require(scaled.standardization)
        // Mean and deviation of 1…6 only: 3.5 and √(35/12).
        #expect(standardization.mean == 3.5)
        #expect(abs(standardization.standardDeviation - 1.7078251) < 1e-6)
        #expect(scaled.validation.targets == standardization.apply([7, 8]))

        #expect(recurError { _ = try series.forecastingSplit(windowLength: 6, validationFraction: 0.25) } != nil)
    }

    @Test func monthlySeriesForecastingSplit() throws {
        let folder = try TemporaryFolder()
        let series = try NumericSeries.readCSV(
            contentsOf: try folder.write("airline-passengers.csv", MonthlySeriesFile(seed: 6).text))
        let split = try series.forecastingSplit(windowLength: 12, horizon: 1, validationFraction: 0.25)
        // 108 training values give 108 − 13 + 1 = 96 windows; the 36 validation targets one each.
        #expect(split.training.count == 96)
        #expect(split.validation.count == 36)
        let standardization = try #require(split.standardization)
        let trainingMean = series.values.prefix(108).reduce(0, +) / 108
        #expect(abs(standardization.mean - trainingMean) < 1e-3)
    }
}
