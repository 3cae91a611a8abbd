import ArgumentParser
import Recur

#if canImport(Glibc)
import Glibc
#endif

/// `recur`: train, run, benchmark and verify recurrent networks on the CPU or OpenCL devices.
@main
struct RecurCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recur",
        abstract: "Recurrent neural networks (RNN, LSTM, GRU) on OpenCL devices and the CPU.",
        discussion: """
            Every subcommand takes --device: cpu, opencl, opencl:N (index in `recur devices`) or \
            opencl:NAME (part of a device name). Without it, RECUR_DEVICE decides; without that, \
            the first OpenCL GPU, else an OpenCL accelerator, else the CPU backend (an OpenCL CPU \
            device such as PoCL only when named: it is far slower than the CPU backend).
            """,
        subcommands: [DemoCommand.self, TrainCommand.self, EvaluateCommand.self, GenerateCommand.self, PredictCommand.self, TranslateCommand.self, ExportCommand.self,
                      BenchCommand.self, TuneCommand.self, VerifyCommand.self, DevicesCommand.self]
    )

    static func main() {
        selectBLASKernels()
        // A first run on a device waits seconds to minutes for the kernel compiler: say why.
        KernelCompilationNotice.setHandler { device in
            printError("compiling kernels for \(device.name) (cached for next time)")
        }
        var command: any ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            // ArgumentParser exits 64 (EX_USAGE) for a usage error; recur exits 2 for one, as most
            // command-line tools do, so every refused input ends with 1 (a failure) or 2 (usage).
            guard exitCode(for: error) == .validationFailure else { exit(withError: error) }
            printError(fullMessage(for: error))
            Glibc.exit(2)
        }
        do {
            try command.run()
        } catch let error as ValidationError {
            // Found while running (data, a checkpoint, a resumed run): one line and status 1,
            // without the usage text that a mistyped option gets.
            printError("Error: \(error.message)")
            Glibc.exit(1)
        } catch {
            exit(withError: error)
        }
    }

    /// Restarts the process once with `OPENBLAS_CORETYPE` set when OpenBLAS did not recognise
    /// the processor and fell back to its slowest kernels (see `BLASCoreType`). The variable only
    /// takes effect before the library loads, hence the restart; it is set, so there is no loop.
    private static func selectBLASKernels() {
        guard let coreType = BLASCoreType.recommendedOverride else { return }
        setenv("OPENBLAS_CORETYPE", coreType, 1)
        let arguments = CommandLine.unsafeArgv
        execv("/proc/self/exe", arguments)
        // execv returns only on failure: carry on with the kernels already loaded.
    }
}
