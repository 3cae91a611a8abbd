import ArgumentParser
import Recur

/// `recur devices`: every device a `--device` specification can name, with its properties.
struct DevicesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "devices",
        abstract: "List the CPU backend and every OpenCL platform and device, with their limits."
    )

    @OptionGroup var options: DeviceOptions

    @Flag(help: "Also list each device's OpenCL extensions.")
    var extensions = false

    func run() throws {
        let devices = try OpenCLDevice.all()
        let chosen = try options.specification().makeBackend()

        print("cpu       CPU backend (Swift + OpenBLAS)" + (chosen.kind == .cpu ? "   <- selected" : ""))
        if devices.isEmpty {
            print("no OpenCL platform found (install an OpenCL driver, e.g. pocl-opencl-icd)")
        }
        for device in devices {
            let selected = (chosen as? OpenCLBackend)?.device == device
            print("")
            print("opencl:\(device.index)  \(device.name)" + (selected ? "   <- selected" : ""))
            let rows: [(String, String)] = [
                ("type", device.type.description),
                ("platform", "\(device.platform.name) (\(device.platform.version))"),
                ("vendor", device.vendor),
                ("version", device.version),
                ("driver", device.driverVersion),
                ("OpenCL C", device.openCLCVersion),
                ("compute units", "\(device.computeUnits) at \(device.maxClockMHz) MHz"),
                ("global memory", bytes(device.globalMemoryBytes)),
                ("max allocation", bytes(device.maxAllocationBytes)),
                ("local memory", bytes(device.localMemoryBytes)),
                ("max work-group", "\(device.maxWorkGroupSize)"),
                ("extensions", extensions ? device.extensions.joined(separator: " ") : "\(device.extensions.count) (--extensions lists them)"),
            ]
            for (key, value) in rows {
                print("    " + padded(key, 16) + value)
            }
        }
    }
}
