import Testing
@testable import Recur

@Suite struct DataSeriesTests {
    @Test func airlinePassengersLoad() throws {
        let series = try NumericSeries.readCSV(contentsOf: SharedData.path("timeseries/airline-passengers.csv"))
        #expect(series.count == 144)
        #expect(series.values.first == 112 && series.values.last == 432)
        #expect(series.values.min() == 104 && series.values.max() == 622)
        #expect(series.values.reduce(0, +) == 40363)
        #expect(series.timestamps.first == "1949-01" && series.timestamps.last == "1960-12")
        // By header name, without timestamps.
        let named = try NumericSeries.readCSV(
            contentsOf: SharedData.path("timeseries/airline-passengers.csv"), timestampColumn: nil,
            valueColumn: .name("Passengers"))
        #expect(named.values == series.values && named.timestamps.isEmpty)
    }

    @Test func monthlySunspotsLoad() throws {
        let series = try NumericSeries.readCSV(contentsOf: SharedData.path("timeseries/monthly-sunspots.csv"))
        #expect(series.count == 2820)
        #expect(series.values.first == 58.0)
        #expect(series.values.min() == 0 && series.values.max() == 253.8)
        let sum = series.values.reduce(0.0) { $0 + Double($1) }
        #expect(abs(sum - 144_570.0) < 0.01)
        #expect(series.timestamps.first == "1749-01" && series.timestamps.last == "1983-12")
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

    @Test func airlineForecastingSplit() throws {
        let series = try NumericSeries.readCSV(contentsOf: SharedData.path("timeseries/airline-passengers.csv"))
        let split = try series.forecastingSplit(windowLength: 12, horizon: 1, validationFraction: 0.25)
        // 108 training values give 108 − 13 + 1 = 96 windows; the 36 validation targets one each.
        #expect(split.training.count == 96)
        #expect(split.validation.count == 36)
        let standardization = try #require(split.standardization)
        let trainingMean = series.values.prefix(108).reduce(0, +) / 108
        #expect(abs(standardization.mean - trainingMean) < 1e-3)
    }
}
