import ArgumentParser
import Recur

/// The `--device` option every subcommand shares.
struct DeviceOptions: ParsableArguments {
    @Option(name: .long, help: "cpu | opencl | opencl:N | opencl:NAME (default: $RECUR_DEVICE, else automatic).")
    var device: String?

    /// The specification from `--device`, else from `RECUR_DEVICE`, else automatic.
    func specification() throws -> DeviceSpecification {
        if let device {
            return try DeviceSpecification(parsing: device)
        }
        return try DeviceSpecification.fromEnvironment()
    }

    func makeBackend() throws -> any Backend {
        try specification().makeBackend()
    }
}
