import ArgumentParser

/// `recur`: train, run, benchmark and verify recurrent networks on the CPU or OpenCL devices.
@main
struct RecurCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recur",
        abstract: "Recurrent neural networks (RNN, LSTM, GRU) on OpenCL devices and the CPU.",
        discussion: """
            Every subcommand takes --device: cpu, opencl, opencl:N (index in `recur devices`) or \
            opencl:NAME (part of a device name). Without it, RECUR_DEVICE decides; without that, \
            the first OpenCL GPU, else an OpenCL CPU device, else the CPU backend.
            """,
        subcommands: [DevicesCommand.self, VerifyCommand.self, BenchCommand.self]
    )
}
