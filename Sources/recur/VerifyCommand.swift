import ArgumentParser
import Recur

/// `recur verify`: the built-in self-check of the selected device against the CPU backend and, for
/// the losses and optimizer steps, the float64 `TrainingReference`.
struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check every op of the selected device against the CPU backend and a float64 reference, and PyTorch fixtures.",
        discussion: """
            The base and recurrent ops are compared with the CPU backend; the losses, optimizer \
            steps, clamp, row norms and the attention ops with a plain float64 reference, on the \
            selected device and on the CPU backend. Errors are norm-wise relative: max |device - reference| / max \
            |reference| (for fixtures over max(max |reference|, 0.1), so an all-zero reference \
            compares absolutely). Each \
            --fixture file (safetensors, the format of tools/make_fixtures.py) is run through a \
            recurrent stack on the device and every output and gradient is compared with \
            PyTorch's float64 values. Exits with status 1 when any check exceeds its tolerance.
            """
    )

    @OptionGroup var options: DeviceOptions

    @Option(help: "Seed of the random inputs.")
    var seed: UInt64 = 0x5EED

    @Flag(help: "Print only failures and the summary.")
    var quiet = false

    @Option(name: .customLong("fixture"), parsing: .upToNextOption,
            help: "PyTorch parity fixtures (.safetensors) to check as well.")
    var fixtures: [String] = []

    @Option(help: "Norm-wise relative error allowed for fixtures.")
    var fixtureTolerance: Double = FixtureCheck.tolerance

    func validate() throws {
        guard fixtureTolerance.isFinite && fixtureTolerance > 0 else {
            throw ValidationError("--fixture-tolerance must be a positive number, got \(fixtureTolerance)")
        }
    }

    func run() throws {
        let backend = try options.makeBackend()
        print("verifying \(backend.kind.rawValue) device '\(backend.deviceName)' against the CPU backend")
        var check = SelfCheck(backend: backend, seed: seed)
        var results = try check.baseOps()
        results += try check.recurrentOps()
        report(results)
        let deviceName = backend is CPUBackend ? "the CPU backend" : "the device and the CPU backend"
        print("\ntraining ops of \(deviceName) against the float64 reference")
        let training = try check.trainingOps()
        report(training)
        results += training
        print("\nattention ops of \(deviceName) against the float64 reference")
        let attention = try check.attentionOps()
        report(attention)
        results += attention
        if let openCL = backend as? OpenCLBackend {
            // Where the scans above ran as persistent launches, the one-launch-per-step path is
            // checked too (the same kernels with one step per launch).
            let statistics = openCL.persistentScanStatistics
            if statistics.persistentScans > 0 {
                let policy = openCL.persistentScanPolicy
                openCL.persistentScanPolicy = .disabled
                defer { openCL.persistentScanPolicy = policy }
                print("\nrecurrent ops again, one launch per time step")
                let stepwise = try check.recurrentOps()
                report(stepwise)
                results += stepwise
            }
            print("persistent scans (\(openCL.persistentScanPolicy.rawValue)): \(statistics.persistentScans) ran in one "
                  + "launch (\(statistics.residentScans) with resident weights), \(statistics.timedOut) timed out, "
                  + "\(statistics.refused) refused by the device; co-residency probes: \(statistics.probesPassed) of "
                  + "\(statistics.probes) passed")
        }
        for path in fixtures {
            print("\nfixture \(path)")
            let comparisons = try FixtureCheck.run(path: path, backend: backend, tolerance: fixtureTolerance)
            report(comparisons)
            results += comparisons
        }
        let failed = results.filter { !$0.passed }.count
        print("\nall: \(results.count - failed) passed, \(failed) failed")
        if results.contains(where: { !$0.passed }) {
            throw ExitCode(1)
        }
    }

    private func report(_ results: [Comparison]) {
        let width = max(40, results.map(\.name.count).max() ?? 0)
        for result in results where !quiet || !result.passed {
            let verdict = result.passed ? "ok  " : "FAIL"
            print("\(verdict) \(padded(result.name, width)) \(scientific(result.relativeError))"
                  + "  (tolerance \(scientific(result.tolerance)))" + (result.note.map { ": " + $0 } ?? ""))
        }
        let failed = results.filter { !$0.passed }.count
        print("\(results.count - failed) passed, \(failed) failed")
    }
}
