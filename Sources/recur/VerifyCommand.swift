import ArgumentParser
import Recur

/// `recur verify`: the built-in self-check of the selected device against the CPU reference.
struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check every op of the selected device against the CPU backend on random data.",
        discussion: """
            Errors are norm-wise relative: max |device - reference| / max |reference|. \
            Exits with status 1 when any check exceeds its tolerance.
            """
    )

    @OptionGroup var options: DeviceOptions

    @Option(help: "Seed of the random inputs.")
    var seed: UInt64 = 0x5EED

    @Flag(help: "Print only failures and the summary.")
    var quiet = false

    func run() throws {
        let backend = try options.makeBackend()
        print("verifying \(backend.kind.rawValue) device '\(backend.deviceName)' against the CPU reference")
        var check = SelfCheck(backend: backend, seed: seed)
        let results = try check.baseOps()
        report(results)
        if results.contains(where: { !$0.passed }) {
            throw ExitCode(1)
        }
    }

    private func report(_ results: [Comparison]) {
        let width = max(40, results.map(\.name.count).max() ?? 0)
        for result in results where !quiet || !result.passed {
            let verdict = result.passed ? "ok  " : "FAIL"
            print("\(verdict) \(padded(result.name, width)) \(scientific(result.relativeError))"
                  + "  (tolerance \(scientific(result.tolerance)))")
        }
        let failed = results.filter { !$0.passed }.count
        print("\(results.count - failed) passed, \(failed) failed")
    }
}
