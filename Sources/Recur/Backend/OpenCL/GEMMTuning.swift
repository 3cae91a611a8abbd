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
// CLBlast runs a GEMM with one of two kernels, so there are two searches. An m x n x k GEMM with
// m * n * k below `XGEMM_MIN_INDIRECT_SIZE`^3 runs XgemmDirect, a single kernel: the recurrent
// layers' GEMMs (batch x hidden x gates) fall there. Larger ones take the indirect path: copy
// and pad kernels bring A, B and C to multiples of the tile sizes, then Xgemm multiplies them.
// CLBlast has no call that reports the threshold in force (704 for devices without a database
// entry, other values for some GPUs), so the search installs one (`GEMMRoutineThreshold`, by
// default CLBlast's generic 704) and then knows which kernel each requested size runs: sizes below
// it search XgemmDirect, the others Xgemm, each with its own baseline and best. The threshold is
// saved with the results, so later backends split sizes the way the search timed them.
//
// CLBlast has no call that restores its database values, so after a search the threshold and
// the last installed parameters of each kernel stay in force in this process.

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

// MARK: The search spaces

/// The parameters worth trying for one CLBlast GEMM kernel on a device, with the kernel's
/// constraints.
public protocol GEMMSearchSpace: Sendable {
    /// The CLBlast kernel name the parameters are installed under.
    static var kernel: String { get }
    /// Every name the kernel takes, sorted; an override must give all of them.
    static var parameterNames: [String] { get }
    /// The space for a device with these limits.
    init(limits: GEMMDeviceLimits)
    /// Whether `parameters` names exactly this kernel's parameters and satisfies every
    /// constraint of the kernel and of the device.
    func isValid(_ parameters: GEMMKernelParameters) -> Bool
    /// Up to `count` distinct valid candidates in an order fixed by `seed`.
    func candidates(count: Int, seed: UInt64) -> [GEMMKernelParameters]
}

extension GEMMSearchSpace {
    public init(maxWorkGroupSize: Int, localMemoryBytes: Int) {
        self.init(limits: GEMMDeviceLimits(maxWorkGroupSize: maxWorkGroupSize, localMemoryBytes: localMemoryBytes))
    }

    /// The space for `device`'s limits.
    public init(device: OpenCLDevice) {
        self.init(maxWorkGroupSize: device.maxWorkGroupSize, localMemoryBytes: device.localMemoryBytes)
    }

    /// The checks every kernel shares: its name, exactly its parameter names, no negative value.
    func namesMatch(_ parameters: GEMMKernelParameters) -> Bool {
        parameters.kernel == Self.kernel && parameters.values.keys.sorted() == Self.parameterNames
            && parameters.values.values.allSatisfy { $0 >= 0 }
    }
}

/// What a device allows one work-group, which every kernel's parameters must fit.
public struct GEMMDeviceLimits: Sendable, Hashable {
    /// The device's limit on work-items per group.
    public let maxWorkGroupSize: Int
    /// The device's local memory per group, in bytes.
    public let localMemoryBytes: Int

    public init(maxWorkGroupSize: Int, localMemoryBytes: Int) {
        self.maxWorkGroupSize = maxWorkGroupSize
        self.localMemoryBytes = localMemoryBytes
    }

    /// Whether a work-group of `threads` work-items using `localBytes` of local memory fits.
    func admit(threads: Int, localBytes: Int) -> Bool {
        threads <= maxWorkGroupSize && localBytes <= localMemoryBytes
    }
}

/// Whether `part` is positive and divides `whole`.
private func divides(_ whole: Int, _ part: Int) -> Bool {
    part > 0 && whole % part == 0
}

/// The XgemmDirect parameters worth trying on a device, with CLBlast's constraints.
///
/// Parameters (CLBlast's `xgemm_direct_part1.opencl`): `WGD` the tile size in M, N and K;
/// `MDIMCD`, `NDIMCD` the work-group's threads in M and N; `MDIMAD`, `NDIMBD` the re-shaped
/// tiles of A and B for loading local memory; `KWID` the unroll factor of the K loop; `VWMD`,
/// `VWND` vector widths; `PADA`, `PADB` local-memory padding.
public struct XgemmDirectSearchSpace: GEMMSearchSpace {
    public static let kernel = "XgemmDirect"
    /// Every name CLBlast's XgemmDirect takes; an override must give all of them.
    public static let parameterNames = ["KWID", "MDIMAD", "MDIMCD", "NDIMBD", "NDIMCD", "PADA", "PADB", "VWMD", "VWND", "WGD"]

    /// Values tried for each parameter: those of CLBlast's own sampled XgemmDirect tuner.
    static let choices: [String: [Int]] = [
        "WGD": [8, 16, 32, 64], "MDIMCD": [8, 16, 32], "NDIMCD": [8, 16, 32], "MDIMAD": [8, 16, 32],
        "NDIMBD": [8, 16, 32], "KWID": [2, 8, 16], "VWMD": [1, 2, 4, 8], "VWND": [1, 2, 4, 8],
        "PADA": [0, 1], "PADB": [0, 1],
    ]

    /// What the device allows one work-group.
    public let limits: GEMMDeviceLimits

    public init(limits: GEMMDeviceLimits) {
        self.limits = limits
    }

    /// Whether `parameters` names exactly XgemmDirect's parameters and satisfies every
    /// constraint of the kernel and of this device.
    public func isValid(_ parameters: GEMMKernelParameters) -> Bool {
        guard namesMatch(parameters) else { return false }
        let v = parameters.values
        let (wgd, mdimcd, ndimcd, mdimad, ndimbd) = (v["WGD"]!, v["MDIMCD"]!, v["NDIMCD"]!, v["MDIMAD"]!, v["NDIMBD"]!)
        let (kwid, vwmd, vwnd, pada, padb) = (v["KWID"]!, v["VWMD"]!, v["VWND"]!, v["PADA"]!, v["PADB"]!)
        guard wgd > 0, mdimcd > 0, ndimcd > 0, mdimad > 0, ndimbd > 0, kwid > 0, vwmd > 0, vwnd > 0 else { return false }
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
            && limits.admit(threads: threads, localBytes: localBytes)
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

/// The Xgemm parameters worth trying on a device, with CLBlast's constraints.
///
/// Parameters (CLBlast's `xgemm_part1.opencl`): `MWG`, `NWG`, `KWG` the work-group's tile in M,
/// N and K; `MDIMC`, `NDIMC` its threads in M and N; `MDIMA`, `NDIMB` the re-shaped tiles of A
/// and B for loading local memory; `KWI` the unroll factor of the K loop; `VWM`, `VWN` vector
/// widths; `STRM`, `STRN` strided (1) or contiguous (0) access per thread; `SA`, `SB` whether A
/// and B are cached in local memory. `GEMMK` picks one of two kernels: 0 the tiled kernel above,
/// 1 a kernel working from registers with `KREG` values of K per thread, which CLBlast's tuner
/// and database only pair with `KWG = KWI = 1`, no local memory or strides, and
/// `MDIMA = MDIMC`, `NDIMB = NDIMC`; kernel 0 takes `KREG = 1`.
public struct XgemmSearchSpace: GEMMSearchSpace {
    public static let kernel = "Xgemm"
    /// Every name CLBlast's Xgemm takes; an override must give all of them.
    public static let parameterNames = ["GEMMK", "KREG", "KWG", "KWI", "MDIMA", "MDIMC", "MWG", "NDIMB", "NDIMC", "NWG",
                                        "SA", "SB", "STRM", "STRN", "VWM", "VWN"]

    /// Values drawn for kernel 0: those of CLBlast's sampled tuner for it.
    static let kernel0Choices: [String: [Int]] = [
        "GEMMK": [0], "KREG": [1], "MWG": [16, 32, 64, 128], "NWG": [16, 32, 64, 128], "KWG": [16, 32],
        "MDIMC": [8, 16, 32], "NDIMC": [8, 16, 32], "MDIMA": [8, 16, 32], "NDIMB": [8, 16, 32], "KWI": [2],
        "VWM": [1, 2, 4, 8], "VWN": [1, 2, 4, 8], "STRM": [0, 1], "STRN": [0, 1], "SA": [0, 1], "SB": [0, 1],
    ]
    /// Values drawn for kernel 1: those of CLBlast's sampled tuner for it. `MDIMA` and `NDIMB`
    /// are not drawn: they copy `MDIMC` and `NDIMC`, as the kernel requires.
    static let kernel1Choices: [String: [Int]] = [
        "GEMMK": [1], "KREG": [1, 2, 4, 8, 16], "MWG": [8, 16, 32, 64, 128], "NWG": [8, 16, 32, 64, 128], "KWG": [1],
        "MDIMC": [2, 4, 8, 16, 32], "NDIMC": [2, 4, 8, 16, 32], "KWI": [1],
        "VWM": [1, 2, 4, 8], "VWN": [1, 2, 4, 8], "STRM": [0], "STRN": [0], "SA": [0], "SB": [0],
    ]

    /// Entries of CLBlast 1.5.3's single-precision database, values in `parameterNames` order:
    /// tried before any drawn candidate, so that a short search still covers parameters known to
    /// suit some device.
    static let knownGoodValues: [[Int]] = [
        [0, 1, 32, 2, 8, 8, 32, 16, 16, 32, 1, 1, 0, 0, 4, 2],    // its default for devices without an entry
        [0, 1, 32, 2, 16, 16, 64, 8, 8, 64, 0, 0, 0, 0, 4, 4],    // its default for Intel CPUs
        [0, 1, 32, 2, 16, 16, 64, 8, 8, 64, 1, 1, 0, 0, 4, 4],    // its default for Intel GPUs and Pascal
        [0, 1, 32, 2, 8, 8, 32, 32, 32, 64, 1, 1, 0, 0, 4, 2],    // its default for other NVIDIA GPUs
        [1, 4, 1, 1, 8, 8, 64, 8, 8, 64, 0, 0, 0, 0, 4, 4],       // a kernel-1 entry (Intel HD Graphics 6000)
    ]

    /// CLBlast's known-good parameter sets (see `knownGoodValues`), valid or not on this device.
    public static var knownGood: [GEMMKernelParameters] {
        knownGoodValues.map { values in
            GEMMKernelParameters(kernel: kernel, values: Dictionary(uniqueKeysWithValues: zip(parameterNames, values)))
        }
    }

    /// What the device allows one work-group.
    public let limits: GEMMDeviceLimits

    public init(limits: GEMMDeviceLimits) {
        self.limits = limits
    }

    /// Whether `parameters` names exactly Xgemm's parameters and satisfies every constraint of
    /// the kernel it selects and of this device.
    public func isValid(_ parameters: GEMMKernelParameters) -> Bool {
        guard namesMatch(parameters) else { return false }
        let v = parameters.values
        let (gemmk, kreg, kwg, kwi) = (v["GEMMK"]!, v["KREG"]!, v["KWG"]!, v["KWI"]!)
        let (mwg, nwg, mdimc, ndimc, mdima, ndimb) = (v["MWG"]!, v["NWG"]!, v["MDIMC"]!, v["NDIMC"]!, v["MDIMA"]!, v["NDIMB"]!)
        let (vwm, vwn, sa, sb, strm, strn) = (v["VWM"]!, v["VWN"]!, v["SA"]!, v["SB"]!, v["STRM"]!, v["STRN"]!)
        let flags = [gemmk, sa, sb, strm, strn]
        let openCLVectorWidths = [1, 2, 4, 8, 16]
        guard flags.allSatisfy({ $0 <= 1 }), kreg > 0, kwg > 0, kwi > 0, mwg > 0, nwg > 0,
              openCLVectorWidths.contains(vwm), openCLVectorWidths.contains(vwn) else { return false }
        let threads = mdimc * ndimc
        // 4 bytes per float: A's tile [KWG][MWG] when SA, B's tile [KWG][NWG] when SB.
        let localBytes = 4 * (sa * kwg * mwg + sb * kwg * nwg)
        let shared = divides(kwg, kwi)                 // the K loop unrolls evenly
            && divides(mwg, mdimc * vwm)               // whole work per thread in M
            && divides(nwg, ndimc * vwn)               // ... and in N
            && divides(mwg, mdima * vwm)               // whole loads of A's tile
            && divides(nwg, ndimb * vwn)               // ... and of B's
            && limits.admit(threads: threads, localBytes: localBytes)
        guard shared else { return false }
        if gemmk == 0 {
            return kreg == 1
                && divides(threads, mdima) && divides(kwg, threads / mdima)  // KDIMA divides KWG
                && divides(threads, ndimb) && divides(kwg, threads / ndimb)  // KDIMB divides KWG
        }
        return kwg == 1 && kwi == 1 && sa == 0 && sb == 0 && strm == 0 && strn == 0
            && mdima == mdimc && ndimb == ndimc
            && divides(kreg, vwn)                      // B's registers hold whole vectors
    }

    /// Up to `count` distinct valid candidates: CLBlast's known-good sets that are valid here,
    /// then sets drawn from `kernel0Choices` and `kernel1Choices` (each draw picks a kernel,
    /// then every value, at random) in an order fixed by `seed`. The space has about 700,000
    /// combinations, too many to list, so draws are rejected until `count` are found or a bound
    /// on draws is reached.
    public func candidates(count: Int, seed: UInt64) -> [GEMMKernelParameters] {
        var chosen: [GEMMKernelParameters] = []
        var seen: Set<GEMMKernelParameters> = []
        for candidate in Self.knownGood where chosen.count < count && isValid(candidate) && seen.insert(candidate).inserted {
            chosen.append(candidate)
        }
        var random = SeededRandom(seed: seed)
        let maxDraws = 1000 + 200 * max(0, count)
        var draws = 0
        while chosen.count < count && draws < maxDraws {
            draws += 1
            let candidate = draw(using: &random)
            if isValid(candidate) && seen.insert(candidate).inserted { chosen.append(candidate) }
        }
        return chosen
    }

    /// One parameter set drawn uniformly from one kernel's choices; not necessarily valid.
    private func draw(using random: inout SeededRandom) -> GEMMKernelParameters {
        let choices = Bool.random(using: &random) ? Self.kernel0Choices : Self.kernel1Choices
        var values: [String: Int] = [:]
        for name in choices.keys.sorted() {
            values[name] = choices[name]!.randomElement(using: &random)!
        }
        values["MDIMA"] = values["MDIMA"] ?? values["MDIMC"]
        values["NDIMB"] = values["NDIMB"] ?? values["NDIMC"]
        return GEMMKernelParameters(kernel: Self.kernel, values: values)
    }
}

/// CLBlast's choice between its two GEMM kernels: an m x n x k GEMM runs XgemmDirect when
/// m * n * k < `XGEMM_MIN_INDIRECT_SIZE`^3, else the indirect path around Xgemm. CLBlast keeps
/// the threshold as the single parameter of its `GemmRoutine` database entry, so it is installed
/// and saved like a kernel's parameters.
public enum GEMMRoutineThreshold {
    public static let kernel = "GemmRoutine"
    public static let parameterName = "XGEMM_MIN_INDIRECT_SIZE"
    /// CLBlast 1.5.3's value for devices without a database entry.
    public static let clblastDefault = 704

    /// The override that sets the threshold to `size`.
    public static func parameters(_ size: Int) -> GEMMKernelParameters {
        GEMMKernelParameters(kernel: kernel, values: [parameterName: size])
    }

    /// Whether `parameters` sets exactly the threshold, to a positive size.
    public static func isValid(_ parameters: GEMMKernelParameters) -> Bool {
        parameters.kernel == kernel && parameters.values.keys.sorted() == [parameterName]
            && parameters.values[parameterName]! > 0
    }

    /// The kernel CLBlast runs for an n x n x n GEMM under `threshold`.
    public static func kernel(forSize n: Int, threshold: Int) -> String {
        n < threshold ? XgemmDirectSearchSpace.kernel : XgemmSearchSpace.kernel
    }
}

extension GEMMKernelParameters {
    /// Whether these are valid parameters of one of the kernels searched here (or of the
    /// threshold between them) on `device`.
    public func isValid(on device: OpenCLDevice) -> Bool {
        switch kernel {
        case XgemmDirectSearchSpace.kernel: XgemmDirectSearchSpace(device: device).isValid(self)
        case XgemmSearchSpace.kernel: XgemmSearchSpace(device: device).isValid(self)
        case GEMMRoutineThreshold.kernel: GEMMRoutineThreshold.isValid(self)
        default: false
        }
    }
}

// MARK: The search

/// How far a GEMM parameter search may go.
public struct GEMMTuningOptions: Sendable {
    /// GEMM sizes n to time (n x n times n x n); each kernel's time for a candidate is the sum
    /// over the sizes that kernel runs.
    public var sizes: [Int]
    /// Candidates to try at most per kernel (the parameters in force are measured besides).
    public var maxCandidates: Int
    /// Per kernel, stop starting new candidates after this many seconds of wall-clock time.
    public var seconds: Double
    /// Timed runs per size and candidate; the median counts.
    public var repetitions: Int
    /// Fixes the inputs and the order candidates are drawn in.
    public var seed: UInt64
    /// CLBlast's `XGEMM_MIN_INDIRECT_SIZE` to install for the search: sizes below it run (and
    /// tune) XgemmDirect, the others Xgemm.
    public var indirectThreshold: Int

    public init(sizes: [Int] = [256, 512], maxCandidates: Int = 24, seconds: Double = 30, repetitions: Int = 3,
                seed: UInt64 = 1, indirectThreshold: Int = GEMMRoutineThreshold.clblastDefault) {
        self.sizes = sizes
        self.maxCandidates = maxCandidates
        self.seconds = seconds
        self.repetitions = repetitions
        self.seed = seed
        self.indirectThreshold = indirectThreshold
    }
}

/// What the search of one kernel found.
public struct GEMMTuningResult: Sendable {
    /// The device searched.
    public let deviceName: String
    /// The CLBlast kernel searched, `"XgemmDirect"` or `"Xgemm"`.
    public let kernel: String
    /// The sizes timed, those of the requested sizes this kernel runs.
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

/// Searches CLBlast's GEMM kernel parameters for a backend's device.
public enum GEMMTuner {
    /// Installs `options.indirectThreshold`, then searches each kernel that some requested size
    /// runs: XgemmDirect over the sizes below the threshold, Xgemm over the others; results come
    /// in that order, one per kernel searched.
    ///
    /// Each search times the GEMM with the parameters in force, then with each of up to
    /// `options.maxCandidates` candidates from the kernel's search space (CLBlast refusing one,
    /// or its kernel failing to build or run, skips it), rejects candidates whose result differs
    /// from the first one's by more than float32 summation error, and keeps the fastest. Each
    /// kernel's best candidate, even one slower than the defaults, is left installed.
    public static func search(on backend: OpenCLBackend, options: GEMMTuningOptions) throws -> [GEMMTuningResult] {
        guard !options.sizes.isEmpty, options.sizes.allSatisfy({ $0 > 0 }) else {
            throw RecurError.invalidArgument(operation: "GEMMTuner.search", detail: "sizes must be positive, got \(options.sizes)")
        }
        guard options.maxCandidates >= 0, options.repetitions > 0, options.seconds > 0, options.indirectThreshold > 0 else {
            throw RecurError.invalidArgument(
                operation: "GEMMTuner.search",
                detail: "need maxCandidates >= 0, repetitions > 0, seconds > 0 and indirectThreshold > 0")
        }
        let device = backend.device
        try GEMMRoutineThreshold.parameters(options.indirectThreshold).install(on: device)
        let sizesByKernel = Dictionary(grouping: options.sizes) {
            GEMMRoutineThreshold.kernel(forSize: $0, threshold: options.indirectThreshold)
        }
        var results: [GEMMTuningResult] = []
        if let sizes = sizesByKernel[XgemmDirectSearchSpace.kernel] {
            results.append(try search(XgemmDirectSearchSpace(device: device), sizes: sizes, on: backend, options: options))
        }
        if let sizes = sizesByKernel[XgemmSearchSpace.kernel] {
            results.append(try search(XgemmSearchSpace(device: device), sizes: sizes, on: backend, options: options))
        }
        return results
    }

    /// The search of one kernel over `sizes`, all of which run that kernel.
    private static func search(_ space: some GEMMSearchSpace, sizes: [Int], on backend: OpenCLBackend,
                               options: GEMMTuningOptions) throws -> GEMMTuningResult {
        let clock = ContinuousClock()
        let start = clock.now
        var random = SeededRandom(seed: options.seed)
        let problems = try sizes.map { n in
            try GEMMProblem(backend: backend, size: n, random: &random)
        }
        // The parameters in force now: CLBlast's database values, or earlier installed ones.
        var references: [[Float]] = []
        for problem in problems {
            try problem.run()
            references.append(try backend.download(problem.c))
        }
        let defaultMilliseconds = try time(problems, on: backend, repetitions: options.repetitions)

        var best: (parameters: GEMMKernelParameters, milliseconds: Double)?
        var failures: [(parameters: GEMMKernelParameters, reason: String)] = []
        var tried = 0
        for candidate in space.candidates(count: options.maxCandidates, seed: options.seed) {
            let elapsed = clock.now - start
            if elapsed.inSeconds >= options.seconds {
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
            deviceName: backend.device.name, kernel: type(of: space).kernel, sizes: sizes,
            flops: sizes.reduce(0) { $0 + 2 * Double($1) * Double($1) * Double($1) },
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
