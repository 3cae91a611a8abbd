import CCLBlast
import COpenCL

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Searching CLBlast's GEMM kernel parameters for one device.
//
// CLBlast ships tuned parameters for many devices; others get its generic defaults.
// `CLBlastOverrideParameters` installs other values for one device, kernel and precision for the
// rest of the process: the next GEMM recompiles the kernel with them. The search here installs
// each candidate of a bounded set, checks the GEMM it computes against the one computed with the
// parameters in force before the search, and times it with profiling events.
//
// The kernel searched is XgemmDirect, the single-kernel GEMM CLBlast uses below its
// `XGEMM_MIN_INDIRECT_SIZE` (704 for devices without a database entry): the recurrent layers'
// GEMMs (batch x hidden x gates) fall there. CLBlast has no call that restores its database
// values, so after a search the last installed parameters stay in force in this process.

/// Tuning parameters of one CLBlast kernel for single precision: names as CLBlast spells them
/// (`"WGD"`, `"MDIMCD"`, ...) and their values.
public struct GEMMKernelParameters: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The CLBlast kernel name, e.g. `"XgemmDirect"`.
    public var kernel: String
    /// Every parameter the kernel takes, by name.
    public var values: [String: Int]

    public init(kernel: String, values: [String: Int]) {
        self.kernel = kernel
        self.values = values
    }

    /// `NAME=value` pairs in name order.
    public var description: String {
        values.keys.sorted().map { "\($0)=\(values[$0]!)" }.joined(separator: " ")
    }

    /// Installs these values for `device` in CLBlast, single precision, for the rest of the
    /// process. Throws `OpenCLError` naming the CLBlast status when CLBlast refuses them (for
    /// example `CLBlastMissingOverrideParameter` when a name is missing).
    public func install(on device: OpenCLDevice) throws {
        let names = values.keys.sorted()
        let numbers = names.map { values[$0]! }
        let cNames = names.map { strdup($0) }
        defer { cNames.forEach { free($0) } }
        var pointers = cNames.map { UnsafePointer<CChar>($0) }
        let status = numbers.withUnsafeBufferPointer { numberBuffer in
            CLBlastOverrideParameters(device.id, kernel, CLBlastPrecisionSingle, names.count, &pointers,
                                      numberBuffer.baseAddress)
        }
        try check(status, "CLBlastOverrideParameters", "installing \(kernel) parameters \(self) on \(device.name)")
    }
}

// MARK: The search space

/// The XgemmDirect parameters worth trying on a device, with CLBlast's constraints.
///
/// Parameters (CLBlast's `xgemm_direct_part1.opencl`): `WGD` the tile size in M, N and K;
/// `MDIMCD`, `NDIMCD` the work-group's threads in M and N; `MDIMAD`, `NDIMBD` the re-shaped
/// tiles of A and B for loading local memory; `KWID` the unroll factor of the K loop; `VWMD`,
/// `VWND` vector widths; `PADA`, `PADB` local-memory padding.
public struct XgemmDirectSearchSpace: Sendable {
    public static let kernel = "XgemmDirect"
    /// Every name CLBlast's XgemmDirect takes; an override must give all of them.
    public static let parameterNames = ["KWID", "MDIMAD", "MDIMCD", "NDIMBD", "NDIMCD", "PADA", "PADB", "VWMD", "VWND", "WGD"]

    /// Values tried for each parameter: those of CLBlast's own sampled XgemmDirect tuner.
    static let choices: [String: [Int]] = [
        "WGD": [8, 16, 32, 64], "MDIMCD": [8, 16, 32], "NDIMCD": [8, 16, 32], "MDIMAD": [8, 16, 32],
        "NDIMBD": [8, 16, 32], "KWID": [2, 8, 16], "VWMD": [1, 2, 4, 8], "VWND": [1, 2, 4, 8],
        "PADA": [0, 1], "PADB": [0, 1],
    ]

    /// The device's limit on work-items per group.
    public let maxWorkGroupSize: Int
    /// The device's local memory per group, in bytes.
    public let localMemoryBytes: Int

    public init(maxWorkGroupSize: Int, localMemoryBytes: Int) {
        self.maxWorkGroupSize = maxWorkGroupSize
        self.localMemoryBytes = localMemoryBytes
    }

    public init(device: OpenCLDevice) {
        self.init(maxWorkGroupSize: device.maxWorkGroupSize, localMemoryBytes: device.localMemoryBytes)
    }

    /// Whether `parameters` names exactly XgemmDirect's parameters and satisfies every
    /// constraint of the kernel and of this device.
    public func isValid(_ parameters: GEMMKernelParameters) -> Bool {
        guard parameters.kernel == Self.kernel, parameters.values.keys.sorted() == Self.parameterNames,
              parameters.values.values.allSatisfy({ $0 >= 0 }) else { return false }
        let v = parameters.values
        let (wgd, mdimcd, ndimcd, mdimad, ndimbd) = (v["WGD"]!, v["MDIMCD"]!, v["NDIMCD"]!, v["MDIMAD"]!, v["NDIMBD"]!)
        let (kwid, vwmd, vwnd, pada, padb) = (v["KWID"]!, v["VWMD"]!, v["VWND"]!, v["PADA"]!, v["PADB"]!)
        guard wgd > 0, mdimcd > 0, ndimcd > 0, mdimad > 0, ndimbd > 0, kwid > 0, vwmd > 0, vwnd > 0 else { return false }
        let divides = { (whole: Int, part: Int) in part > 0 && whole % part == 0 }
        let threads = mdimcd * ndimcd
        // 4 bytes per float: the A tile [WGD][WGD + PADA] and the B tile [WGD][WGD + PADB].
        let localBytes = 4 * (wgd * (wgd + pada) + wgd * (wgd + padb))
        return divides(wgd, kwid)                      // the K loop unrolls evenly
            && divides(wgd, mdimcd * vwmd)             // whole work per thread in M
            && divides(wgd, ndimcd * vwnd)             // ... and in N
            && divides(wgd, mdimad * vwmd)             // whole loads of A's tile
            && divides(wgd, ndimbd * vwnd)             // ... and of B's
            && divides(threads, mdimad) && divides(wgd, threads / mdimad)  // KDIMAD divides WGD
            && divides(threads, ndimbd) && divides(wgd, threads / ndimbd)  // KDIMBD divides WGD
            && threads <= maxWorkGroupSize
            && localBytes <= localMemoryBytes
    }

    /// Every valid combination of `choices`, in a fixed order.
    public func allCandidates() -> [GEMMKernelParameters] {
        var combinations: [[String: Int]] = [[:]]
        for name in Self.parameterNames {
            combinations = combinations.flatMap { partial in
                Self.choices[name]!.map { value in partial.merging([name: value]) { $1 } }
            }
        }
        return combinations.map { GEMMKernelParameters(kernel: Self.kernel, values: $0) }.filter(isValid)
    }

    /// Up to `count` valid candidates drawn without repetition from `allCandidates()` in an
    /// order fixed by `seed`.
    public func candidates(count: Int, seed: UInt64) -> [GEMMKernelParameters] {
        var all = allCandidates()
        var random = SeededRandom(seed: seed)
        all.shuffle(using: &random)
        return Array(all.prefix(max(0, count)))
    }
}

// MARK: The search

/// How far a GEMM parameter search may go.
public struct GEMMTuningOptions: Sendable {
    /// GEMM sizes n to time (n x n times n x n); a candidate's time is the sum over them.
    public var sizes: [Int]
    /// Candidates to try at most (the default parameters are measured besides).
    public var maxCandidates: Int
    /// Stop starting new candidates after this many seconds of wall-clock time.
    public var seconds: Double
    /// Timed runs per size and candidate; the median counts.
    public var repetitions: Int
    /// Fixes the inputs and the order candidates are drawn in.
    public var seed: UInt64

    public init(sizes: [Int] = [256, 512], maxCandidates: Int = 24, seconds: Double = 30, repetitions: Int = 3,
                seed: UInt64 = 1) {
        self.sizes = sizes
        self.maxCandidates = maxCandidates
        self.seconds = seconds
        self.repetitions = repetitions
        self.seed = seed
    }
}

/// What a search found.
public struct GEMMTuningResult: Sendable {
    /// The device searched.
    public let deviceName: String
    /// The sizes timed.
    public let sizes: [Int]
    /// Floating-point operations of one run over all sizes (2 n^3 each).
    public let flops: Double
    /// Time over all sizes with the parameters in force before the search, in milliseconds.
    public let defaultMilliseconds: Double
    /// The fastest candidate that computed the right GEMM, and its time; `nil` when none did.
    public let best: GEMMKernelParameters?
    public let bestMilliseconds: Double?
    /// Candidates installed and run.
    public let tried: Int
    /// Of those, the ones CLBlast refused, that failed to compile or run, or computed a wrong
    /// result, each with the reason.
    public let failures: [(parameters: GEMMKernelParameters, reason: String)]

    /// Whether the best candidate beats the parameters in force before the search.
    public var improves: Bool { bestMilliseconds.map { $0 < defaultMilliseconds } ?? false }
}

/// Searches XgemmDirect parameters for a backend's device.
public enum GEMMTuner {
    /// Times the GEMM with the parameters in force, then with each of up to
    /// `options.maxCandidates` candidates from `XgemmDirectSearchSpace` (CLBlast refusing one,
    /// or its kernel failing to build or run, skips it), rejects candidates whose result differs
    /// from the first one's by more than float32 summation error, and returns the fastest.
    /// The best candidate, even one slower than the defaults, is left installed on the device.
    public static func search(on backend: OpenCLBackend, options: GEMMTuningOptions) throws -> GEMMTuningResult {
        guard !options.sizes.isEmpty, options.sizes.allSatisfy({ $0 > 0 }) else {
            throw RecurError.invalidArgument(operation: "GEMMTuner.search", detail: "sizes must be positive, got \(options.sizes)")
        }
        guard options.maxCandidates >= 0, options.repetitions > 0, options.seconds > 0 else {
            throw RecurError.invalidArgument(
                operation: "GEMMTuner.search",
                detail: "need maxCandidates >= 0, repetitions > 0 and seconds > 0")
        }
        let clock = ContinuousClock()
        let start = clock.now
        var random = SeededRandom(seed: options.seed)
        let problems = try options.sizes.map { n in
            try GEMMProblem(backend: backend, size: n, random: &random)
        }
        // The parameters in force now: CLBlast's database values, or earlier installed ones.
        var references: [[Float]] = []
        for problem in problems {
            try problem.run()
            references.append(try backend.download(problem.c))
        }
        let defaultMilliseconds = try time(problems, on: backend, repetitions: options.repetitions)

        let space = XgemmDirectSearchSpace(device: backend.device)
        var best: (parameters: GEMMKernelParameters, milliseconds: Double)?
        var failures: [(parameters: GEMMKernelParameters, reason: String)] = []
        var tried = 0
        for candidate in space.candidates(count: options.maxCandidates, seed: options.seed) {
            let elapsed = clock.now - start
            if Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18 >= options.seconds {
                break
            }
            tried += 1
            do {
                try candidate.install(on: backend.device)
                for (problem, reference) in zip(problems, references) {
                    try problem.run()  // builds the kernel with the candidate's values
                    if let mismatch = problem.mismatch(try backend.download(problem.c), reference: reference) {
                        throw WrongResult(description: mismatch)
                    }
                }
                let milliseconds = try time(problems, on: backend, repetitions: options.repetitions)
                if milliseconds < best?.milliseconds ?? .infinity { best = (candidate, milliseconds) }
            } catch {
                failures.append((candidate, "\(error)"))
                // A failed build can leave the backend's queue with a failed command; drain it.
                try? backend.synchronize()
            }
        }
        if let best { try best.parameters.install(on: backend.device) }
        return GEMMTuningResult(
            deviceName: backend.device.name, sizes: options.sizes,
            flops: options.sizes.reduce(0) { $0 + 2 * Double($1) * Double($1) * Double($1) },
            defaultMilliseconds: defaultMilliseconds, best: best?.parameters, bestMilliseconds: best?.milliseconds,
            tried: tried, failures: failures)
    }

    /// The median over `repetitions` of the summed device time of one run of every problem.
    private static func time(_ problems: [GEMMProblem], on backend: OpenCLBackend, repetitions: Int) throws -> Double {
        var samples: [Double] = []
        for _ in 0..<repetitions {
            var total = 0.0
            for problem in problems {
                total += Double(try backend.measureDeviceNanoseconds { try problem.run() }) / 1e6
            }
            samples.append(total)
        }
        samples.sort()
        return samples[samples.count / 2]
    }
}

/// A candidate's GEMM differed from the reference.
private struct WrongResult: Error, CustomStringConvertible {
    let description: String
}

/// One n x n x n SGEMM with fixed random inputs.
private struct GEMMProblem {
    let backend: OpenCLBackend
    let size: Int
    let a: Tensor  // [n, n]
    let b: Tensor  // [n, n]
    let c: Tensor  // [n, n]

    init(backend: OpenCLBackend, size n: Int, random: inout SeededRandom) throws {
        self.backend = backend
        size = n
        a = try backend.upload((0..<(n * n)).map { _ in random.uniform(bound: 1) }, shape: [n, n])
        b = try backend.upload((0..<(n * n)).map { _ in random.uniform(bound: 1) }, shape: [n, n])
        c = try backend.zeros([n, n])
    }

    func run() throws {
        try backend.matmul(a, b, into: c)
    }

    /// A description of the worst element when `result` differs from `reference` by more than
    /// float32 summation can explain, else `nil`. Each element sums n products of values in
    /// [-1, 1]; any summation order stays within n * 2^-23 of the largest magnitude.
    func mismatch(_ result: [Float], reference: [Float]) -> String? {
        let scale = max(1, reference.lazy.map(abs).max() ?? 0)
        let tolerance = Float(size) * Float.ulpOfOne * scale
        var worst = (index: 0, error: Float(0))
        for index in result.indices {
            let error = abs(result[index] - reference[index])
            guard error.isFinite else { return "element \(index) is \(result[index]), expected \(reference[index])" }
            if error > worst.error { worst = (index, error) }
        }
        guard worst.error > tolerance else { return nil }
        return "element \(worst.index) of the \(size)x\(size) result is \(result[worst.index]), expected "
            + "\(reference[worst.index]) (error \(worst.error) > tolerance \(tolerance))"
    }
}
