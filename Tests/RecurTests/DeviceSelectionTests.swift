import Testing
@testable import Recur

@Suite struct DeviceSelectionTests {
    @Test(arguments: [
        ("cpu", DeviceSpecification.cpu),
        (" CPU ", .cpu),
        ("", .automatic),
        ("auto", .automatic),
        ("opencl", .opencl(.preferred)),
        ("OpenCL:0", .opencl(.index(0))),
        ("opencl:12", .opencl(.index(12))),
        ("opencl:pthread", .opencl(.nameContaining("pthread"))),
        ("opencl:NVIDIA H100", .opencl(.nameContaining("NVIDIA H100"))),
    ])
    func specificationsParse(_ text: String, _ expected: DeviceSpecification) throws {
        let parsed = try DeviceSpecification(parsing: text)
        #expect(parsed == expected)
        #expect(try DeviceSpecification(parsing: parsed.description) == parsed)
    }

    @Test(arguments: ["tpu", "opencl:", "gpu0", "cuda:0", "opencl0"])
    func badSpecificationsThrowDeviceNotFound(_ text: String) {
        expectRecurError("parsing '\(text)'", matches: { error in
            if case .deviceNotFound(_, let detail) = error { return detail.contains("available: cpu") }
            return false
        }) {
            _ = try DeviceSpecification(parsing: text)
        }
    }

    @Test func aSpecificationNamingNothingThrowsDeviceNotFound() throws {
        for specification in ["opencl:no-such-device-anywhere", "opencl:9999"] {
            expectRecurError(specification, matches: { error in
                if case .deviceNotFound(let named, let detail) = error {
                    return named == specification && detail.contains("available: cpu")
                }
                return false
            }) {
                _ = try DeviceSpecification(parsing: specification).makeBackend()
            }
        }
    }

    @Test func theEnvironmentVariableOverridesTheDefault() throws {
        #expect(try DeviceSpecification.fromEnvironment([:]) == .automatic)
        #expect(try DeviceSpecification.fromEnvironment(["RECUR_DEVICE": "cpu"]) == .cpu)
        #expect(try DeviceSpecification.fromEnvironment(["RECUR_DEVICE": "opencl:1"]) == .opencl(.index(1)))
        expectRecurError("RECUR_DEVICE=tpu", matches: { error in
            if case .deviceNotFound(let specification, _) = error { return specification == "RECUR_DEVICE=tpu" }
            return false
        }) {
            _ = try DeviceSpecification.fromEnvironment(["RECUR_DEVICE": "tpu"])
        }
    }

    @Test func cpuSpecificationGivesOneSharedCPUBackend() throws {
        let first = try DeviceSpecification.cpu.makeBackend()
        let second = try DeviceSpecification(parsing: "cpu").makeBackend()
        #expect(first.kind == .cpu)
        #expect(first === second)
    }

    @Test func openCLSpecificationsFindTheDevice() throws {
        guard let shared = try TestBackends.openCL() else { return }
        let device = shared.device
        let byIndex = try DeviceSpecification.opencl(.index(device.index)).makeBackend()
        #expect(byIndex === shared)
        let byName = try DeviceSpecification.opencl(.nameContaining(String(device.name.prefix(6)).uppercased()))
            .makeBackend()
        #expect(byName.kind == .opencl)
        #expect(try DeviceSpecification(parsing: "opencl").makeBackend() === shared)
        // The automatic choice is an OpenCL GPU or accelerator, never an OpenCL CPU device (PoCL
        // on the cores the CPU backend uses, and far slower there).
        let automatic = try DeviceSpecification.automatic.makeBackend()
        let devices = try OpenCLDevice.all()
        if let first = devices.first(where: { $0.type == .gpu }) ?? devices.first(where: { $0.type == .accelerator }) {
            #expect((automatic as? OpenCLBackend)?.device == first)
        } else {
            #expect(automatic.kind == .cpu)
        }
    }
}
