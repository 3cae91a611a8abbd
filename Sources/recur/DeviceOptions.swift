import ArgumentParser
import Recur

/// The `--device` option every subcommand shares.
struct DeviceOptions: ParsableArguments {
    @Option(name: .long, help: "cpu | opencl | opencl:N | opencl:NAME (default: $RECUR_DEVICE, else automatic).")
    var device: String?

    @Option(name: .long, help: ArgumentHelp(
        "OpenCL: run each recurrent scan as one persistent launch: auto | off | force.",
        discussion: """
            auto: where the device is a GPU (never PoCL or a CPU), the step grid has at most one \
            work-group per compute unit and a co-residency probe passed; off: one launch per time \
            step; force: always try (for testing), running the scan again step by step if the \
            grid barrier times out.
            """))
    var persistentScans = "auto"

    /// The specification from `--device`, else from `RECUR_DEVICE`, else automatic.
    func specification() throws -> DeviceSpecification {
        if let device {
            return try DeviceSpecification(parsing: device)
        }
        return try DeviceSpecification.fromEnvironment()
    }

    /// The policy `--persistent-scans` names.
    func persistentScanPolicy() throws -> PersistentScanPolicy {
        switch persistentScans.lowercased() {
        case "auto", "automatic": .automatic
        case "off", "disabled": .disabled
        case "force", "forced": .forced
        default: throw ValidationError("unknown --persistent-scans '\(persistentScans)': auto, off or force")
        }
    }

    func makeBackend() throws -> any Backend {
        let policy = try persistentScanPolicy()
        let backend = try specification().makeBackend()
        (backend as? OpenCLBackend)?.persistentScanPolicy = policy
        return backend
    }
}
