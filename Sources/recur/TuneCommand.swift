import ArgumentParser
import Recur

/// `recur tune`: searches CLBlast's GEMM kernel parameters for an OpenCL device and saves the
/// fastest per device and driver, for every later backend on that device to install.
///
/// CLBlast runs an n x n x n GEMM with XgemmDirect below `XGEMM_MIN_INDIRECT_SIZE` and with
/// Xgemm (its indirect path) from there on. The command installs that threshold
/// (`--indirect-threshold`), so the `--sizes` alone say which kernels are searched: each over
/// the sizes it runs, reported and saved on its own.
struct TuneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tune",
        abstract: "Search GEMM kernel parameters for an OpenCL device and save them per device and driver.",
        discussion: """
            CLBlast runs an n x n x n GEMM with XgemmDirect, a single kernel, when n is below its \
            indirect threshold XGEMM_MIN_INDIRECT_SIZE, and otherwise with Xgemm after copy and pad \
            kernels. The threshold is installed from --indirect-threshold (704, CLBlast's value for \
            devices without a database entry), so the --sizes choose the kernels: XgemmDirect is \
            searched over the sizes below it, Xgemm over the others. For each kernel, up to \
            --max-candidates valid parameter sets (for Xgemm, CLBlast's known-good sets first) \
            are checked against the result with the parameters in force and timed with profiling \
            events. Each kernel's fastest, if it beats the defaults, is saved as JSON in the \
            program binary cache folder ($RECUR_CACHE_DIR, else $XDG_CACHE_HOME/recur/kernels, \
            else ~/.cache/recur/kernels) together with the threshold, and installed whenever an \
            OpenCL backend opens that device with that driver. --reset deletes them.
            """
    )

    @OptionGroup var options: DeviceOptions

    @Option(name: .customLong("sizes"),
            help: "GEMM sizes n (n x n x n), comma-separated, to time; a kernel's time is the sum over the sizes it runs.")
    var sizeList = "256,512"
    @Option(help: "Parameter sets to try at most per kernel, besides the defaults.") var maxCandidates = 24
    @Option(help: "Per kernel, start no new candidate after this many seconds.") var seconds: Double = 30
    @Option(help: "Timed runs per size and candidate; the median counts.") var repetitions = 3
    @Option(help: "Seed for the inputs and the order candidates are drawn in.") var seed: UInt64 = 1
    @Option(help: "CLBlast's XGEMM_MIN_INDIRECT_SIZE: sizes below it tune XgemmDirect, the others Xgemm.")
    var indirectThreshold = GEMMRoutineThreshold.clblastDefault
    @Flag(help: "Search and report, but save nothing.") var dryRun = false
    @Flag(help: "Delete the saved parameters for the device, and search nothing.") var reset = false

    /// `--sizes` as numbers; `nil` when any part is not a positive integer.
    private var sizes: [Int]? {
        let parts = sizeList.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingPrefix(" ")) }
        guard !parts.isEmpty, parts.allSatisfy({ ($0 ?? 0) > 0 }) else { return nil }
        return parts.map { $0! }
    }

    func validate() throws {
        if sizes == nil { throw ValidationError("--sizes must be positive integers separated by commas, e.g. 256,512") }
        if maxCandidates < 0 { throw ValidationError("--max-candidates must be 0 or more") }
        if !(seconds > 0) { throw ValidationError("--seconds must be positive") }
        if repetitions < 1 { throw ValidationError("--repetitions must be positive") }
        if indirectThreshold < 1 { throw ValidationError("--indirect-threshold must be positive") }
    }

    func run() throws {
        let device = try Self.openCLDevice(try options.specification())
        guard let store = GEMMParameterStore.standard else {
            throw RecurError.io(path: "~/.cache/recur", detail: "no cache folder: set RECUR_CACHE_DIR, XDG_CACHE_HOME or HOME")
        }
        if reset {
            for kernel in GEMMParameterStore.kernels {
                let path = store.path(device: device, kernel: kernel)
                let removed = try store.remove(device: device, kernel: kernel)
                print(removed ? "deleted \(path)" : "no saved \(kernel) parameters for \(device.name) (\(path))")
            }
            return
        }

        // Every size's A, B and C stay on the device for the whole search; the host draws A and B
        // and downloads a result and its reference at a time.
        var estimate = MemoryEstimate()
        for n in sizes ?? [] {
            var matrices = MemoryEstimate.gemm(size: n)
            matrices.host = MemoryEstimate.product(2, matrices.host)
            estimate = estimate.adding(matrices)
        }
        try estimate.check(against: MemoryAvailability(device: device), operation: "recur tune",
                           advice: "lower --sizes")
        // A backend of its own that leaves saved parameters out, so the baseline is CLBlast's.
        let backend = try OpenCLBackend(device: device, loadingTunedGEMMParameters: false)
        let results = try GEMMTuner.search(on: backend, options: GEMMTuningOptions(
            sizes: sizes ?? [], maxCandidates: maxCandidates, seconds: seconds, repetitions: repetitions, seed: seed,
            indirectThreshold: indirectThreshold))

        print("device      \(device.name) (\(device.vendor), driver \(device.driverVersion))")
        print("threshold   \(GEMMRoutineThreshold.parameterName)=\(indirectThreshold): smaller n run "
            + "\(XgemmDirectSearchSpace.kernel), the others \(XgemmSearchSpace.kernel)")
        var saved = false
        for result in results {
            print("")
            saved = try report(result, store: store, device: device) || saved
        }
        if saved {
            let threshold = GEMMRoutineThreshold.parameters(indirectThreshold)
            print("")
            print("saved       \(threshold) to \(try store.save(threshold, device: device)), for the sizes to run the kernels tuned for them")
        }
    }

    /// Prints one kernel's search and saves its best when it beats the defaults (and this is
    /// no dry run); returns whether it saved.
    private func report(_ result: GEMMTuningResult, store: GEMMParameterStore, device: OpenCLDevice) throws -> Bool {
        let gflops = { (milliseconds: Double) in fixed(result.flops / (milliseconds * 1e6), 1) }
        let sizeList = result.sizes.map { "\($0)" }.joined(separator: ",")
        print("kernel      \(result.kernel), single precision, n = \(sizeList) (time summed over sizes)")
        print("candidates  \(result.tried) tried, \(result.failures.count) failed")
        print("default     \(fixed(result.defaultMilliseconds, 3)) ms  \(gflops(result.defaultMilliseconds)) GFLOP/s")
        guard let best = result.best, let bestMilliseconds = result.bestMilliseconds else {
            let why = result.tried == 0 ? "no candidate tried" : "none of the candidates ran correctly"
            print("best        \(why); nothing saved")
            printFailures(result)
            return false
        }
        print("best        \(fixed(bestMilliseconds, 3)) ms  \(gflops(bestMilliseconds)) GFLOP/s  "
            + "speed-up \(fixed(result.defaultMilliseconds / bestMilliseconds, 2))x")
        print("parameters  \(best)")
        printFailures(result)
        if dryRun {
            print("saved       nothing (--dry-run)")
        } else if !result.improves {
            print("saved       nothing (the defaults were fastest)")
        } else {
            print("saved       \(try store.save(best, device: device, result: result))")
            return true
        }
        return false
    }

    /// The first few failures, so that a search where everything failed says why.
    private func printFailures(_ result: GEMMTuningResult) {
        for failure in result.failures.prefix(3) {
            let reason = failure.reason.split(separator: "\n").first.map(String.init) ?? ""
            print("  failed    \(failure.parameters): \(reason)")
        }
    }

    /// The OpenCL device `specification` names; the CPU backend has no GEMM kernels to tune.
    static func openCLDevice(_ specification: DeviceSpecification) throws -> OpenCLDevice {
        switch specification {
        case .cpu:
            throw RecurError.invalidArgument(
                operation: "tune", detail: "the CPU backend's GEMM is OpenBLAS, which has nothing to tune: pick an OpenCL device (--device opencl)")
        case .opencl(let selector):
            return try selector.device()
        case .automatic:
            let devices = try OpenCLDevice.all()
            guard let device = devices.first(where: { $0.type == .gpu }) ?? devices.first(where: { $0.type == .cpu })
                ?? devices.first
            else {
                throw RecurError.deviceNotFound(specification: "opencl", detail: "no OpenCL device to tune")
            }
            return device
        }
    }
}
