import Testing
@testable import Recur

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: Seeded random numbers

/// Test data from the library's SplitMix64 (`SeededRandom`), so a failing test fails the same way
/// every run.
struct SeededGenerator: RandomNumberGenerator {
    private var source: SeededRandom

    init(seed: UInt64) {
        source = SeededRandom(seed: seed)
    }

    mutating func next() -> UInt64 {
        source.next()
    }

    /// `count` floats uniform in [-1, 1]. Never all zero: a test that passes on zeros proves little.
    mutating func floats(_ count: Int) -> [Float] {
        var values = (0..<count).map { _ in Float.random(in: -1...1, using: &self) }
        if values.allSatisfy({ $0 == 0 }) { values[0] = 0.5 }
        return values
    }

    /// Uniform in [low, high).
    mutating func uniform(_ low: Float, _ high: Float) -> Float {
        low + (high - low) * Float(Double(next() >> 11) * 0x1p-53)
    }

    /// `count` values uniform in [low, high).
    mutating func values(_ count: Int, _ low: Float = -1, _ high: Float = 1) -> [Float] {
        (0..<count).map { _ in uniform(low, high) }
    }

    /// `count` int32 ids uniform in `0 ..< bound`.
    mutating func ids(_ count: Int, below bound: Int) -> [Int32] {
        (0..<count).map { _ in Int32.random(in: 0..<Int32(bound), using: &self) }
    }
}

// MARK: Backends under test

/// The backends every op test runs on. OpenCL uses the preferred device (the first GPU, else
/// the first device: PoCL on a machine without a GPU), shared by all tests so that kernels
/// compile once per test run.
enum TestBackend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case cpu
    case openCL

    var testDescription: String { rawValue }

    /// The backend, or `nil` when OpenCL is absent and `RECUR_ALLOW_NO_OPENCL=1` allows skipping.
    /// Without that variable a missing OpenCL device fails the test: CI has PoCL, and a silent
    /// skip would hide a broken driver setup.
    func backend() throws -> (any Backend)? {
        switch self {
        case .cpu:
            return TestBackends.cpu
        case .openCL:
            return try TestBackends.openCL()
        }
    }
}

enum TestBackends {
    static let cpu = CPUBackend()

    private static let sharedOpenCL: Result<OpenCLBackend?, any Error> = Result {
        let devices = try OpenCLDevice.all()
        guard !devices.isEmpty else { return nil }
        return try OpenCLBackend.shared(for: try OpenCLDeviceSelector.preferred.device())
    }

    /// Whether the environment allows OpenCL tests to pass without a device.
    static var allowsMissingOpenCL: Bool {
        getenv("RECUR_ALLOW_NO_OPENCL").map { String(cString: $0) == "1" } ?? false
    }

    /// The shared OpenCL backend; `nil` (skip) only when no device exists and skipping is allowed.
    static func openCL() throws -> OpenCLBackend? {
        guard let backend = try sharedOpenCL.get() else {
            if allowsMissingOpenCL { return nil }
            throw MissingOpenCL()
        }
        return backend
    }

    /// The device the shared OpenCL backend uses, for tests that need a fresh backend of their own.
    static func openCLDevice() throws -> OpenCLDevice? {
        try openCL()?.device
    }
}

struct MissingOpenCL: Error, CustomStringConvertible {
    var description: String {
        "no OpenCL device found: install an OpenCL driver (PoCL: pocl-opencl-icd), "
            + "or set RECUR_ALLOW_NO_OPENCL=1 to skip the OpenCL tests"
    }
}

// MARK: Comparisons

/// Expects `actual` to match `expected` element by element within
/// `absoluteTolerance + relativeTolerance * |expected|`. On failure it reports the element with
/// the largest excess over its tolerance: index, both values, the error, and the maximum error.
func assertClose(_ actual: [Float], _ expected: [Float], relativeTolerance: Float = 1e-5,
                 absoluteTolerance: Float = 1e-6, _ what: String,
                 sourceLocation: SourceLocation = #_sourceLocation) {
    guard actual.count == expected.count else {
        Issue.record("\(what): \(actual.count) values, expected \(expected.count)", sourceLocation: sourceLocation)
        return
    }
    var maximumError: Float = 0
    var worst: (index: Int, excess: Float)?
    for index in actual.indices {
        let (a, e) = (actual[index], expected[index])
        let error = abs(a - e)
        let allowed = absoluteTolerance + relativeTolerance * abs(e)
        let bothNaN = a.isNaN && e.isNaN
        if !bothNaN { maximumError = max(maximumError, error.isNaN ? .infinity : error) }
        guard !bothNaN, !(error <= allowed) else { continue }
        let excess = error.isNaN ? .infinity : error - allowed
        if worst == nil || excess > worst!.excess { worst = (index, excess) }
    }
    if let worst {
        let index = worst.index
        let message = "\(what): element \(index) is \(actual[index]), expected \(expected[index]) "
            + "(error \(abs(actual[index] - expected[index])), tolerance \(absoluteTolerance) + "
            + "\(relativeTolerance) * |expected|; maximum error \(maximumError) over \(actual.count) elements)"
        Issue.record(Comment(rawValue: message), sourceLocation: sourceLocation)
    }
}

/// Expects `body` to throw a `RecurError` that `matches` accepts, and reports what it threw otherwise.
func expectRecurError(_ what: String, sourceLocation: SourceLocation = #_sourceLocation,
                      matches: (RecurError) -> Bool, _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("\(what): expected a RecurError, nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as RecurError {
        #expect(matches(error), "\(what): unexpected \(error)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("\(what): expected a RecurError, got \(error)", sourceLocation: sourceLocation)
    }
}
