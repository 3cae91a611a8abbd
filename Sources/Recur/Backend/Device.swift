#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

import Synchronization

/// Which OpenCL device an `opencl` specification means.
public enum OpenCLDeviceSelector: Sendable, Hashable {
    /// The first GPU, else the first device of any kind.
    case preferred
    /// The device at this position in `OpenCLDevice.all()`.
    case index(Int)
    /// The first device whose name contains this text, ignoring case.
    case nameContaining(String)

    /// The device this selector names among `OpenCLDevice.all()`.
    /// - Throws: `RecurError.deviceNotFound` listing the devices present when none matches.
    public func device() throws -> OpenCLDevice {
        let devices = try OpenCLDevice.all()
        let match: OpenCLDevice? = switch self {
        case .preferred:
            devices.first(where: { $0.type == .gpu }) ?? devices.first
        case .index(let index):
            devices.indices.contains(index) ? devices[index] : nil
        case .nameContaining(let text):
            devices.first(where: { $0.name.lowercased().contains(text.lowercased()) })
        }
        guard let match else {
            throw RecurError.deviceNotFound(
                specification: DeviceSpecification.opencl(self).description,
                detail: DeviceSpecification.describe(devices))
        }
        return match
    }
}

/// The device to compute on, written as text in one syntax everywhere (command line,
/// `RECUR_DEVICE`, configuration):
///
/// | text | meaning |
/// |---|---|
/// | `auto` (or empty) | the first OpenCL GPU, else an OpenCL accelerator, else the CPU backend |
/// | `cpu` | the CPU backend (Swift + OpenBLAS) |
/// | `opencl` | the first OpenCL GPU, else the first OpenCL device |
/// | `opencl:N` | the OpenCL device at index N of `OpenCLDevice.all()` |
/// | `opencl:NAME` | the first OpenCL device whose name contains NAME, ignoring case |
///
/// ```swift
/// let backend = try DeviceSpecification.fromEnvironment().makeBackend()
/// let gpu = try DeviceSpecification(parsing: "opencl:h100").makeBackend()
/// ```
public enum DeviceSpecification: Sendable, Hashable, CustomStringConvertible {
    case automatic
    case cpu
    case opencl(OpenCLDeviceSelector)

    /// The environment variable that overrides the automatic choice.
    public static let environmentVariable = "RECUR_DEVICE"

    /// Parses the syntax in the type's description.
    /// - Throws: `RecurError.deviceNotFound` for text that follows no form, listing the devices.
    public init(parsing text: String) throws {
        let trimmed = text.trimmedOfWhitespace
        let lowered = trimmed.lowercased()
        switch lowered {
        case "", "auto", "automatic":
            self = .automatic
        case "cpu":
            self = .cpu
        case "opencl":
            self = .opencl(.preferred)
        default:
            guard lowered.hasPrefix("opencl:") else {
                throw RecurError.deviceNotFound(
                    specification: text,
                    detail: "expected cpu, opencl, opencl:N or opencl:NAME. \(DeviceSpecification.availableDevices())")
            }
            let argument = trimmed.dropFirst("opencl:".count).trimmedOfWhitespace
            if argument.isEmpty {
                throw RecurError.deviceNotFound(
                    specification: text,
                    detail: "opencl: needs an index or a name. \(DeviceSpecification.availableDevices())")
            }
            if let index = Int(argument) {
                self = .opencl(.index(index))
            } else {
                self = .opencl(.nameContaining(argument))
            }
        }
    }

    /// The specification in `RECUR_DEVICE`, or `.automatic` when it is unset or empty.
    /// - Parameter environment: the variables to read; the process's by default.
    public static func fromEnvironment(
        _ environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> DeviceSpecification {
        let value = environment[environmentVariable] ?? ""
        do {
            return try DeviceSpecification(parsing: value)
        } catch let RecurError.deviceNotFound(specification, detail) {
            throw RecurError.deviceNotFound(specification: "\(environmentVariable)=\(specification)", detail: detail)
        }
    }

    /// The text form, which `init(parsing:)` reads back.
    public var description: String {
        switch self {
        case .automatic: "auto"
        case .cpu: "cpu"
        case .opencl(.preferred): "opencl"
        case .opencl(.index(let index)): "opencl:\(index)"
        case .opencl(.nameContaining(let name)): "opencl:\(name)"
        }
    }

    /// The backend for this device. OpenCL backends are shared per device process-wide
    /// (`OpenCLBackend.shared(for:)`), and `cpu` always gives the same `CPUBackend`, so tensors
    /// made through two calls naming one device work together.
    ///
    /// - Throws: `RecurError.deviceNotFound` when no device matches, listing those present;
    ///   `OpenCLError` when the device is there but cannot be opened.
    public func makeBackend() throws -> any Backend {
        switch self {
        case .cpu:
            return DeviceSpecification.sharedCPUBackend
        case .automatic:
            // A broken or missing OpenCL driver must not make the library unusable: fall back.
            // An OpenCL CPU device (PoCL) runs on the cores the CPU backend uses, 12 to 40 times
            // slower than it in `recur bench`'s training steps (LSTM and GRU, 2-core AMD EPYC,
            // 2026-12-03), so only a GPU or an accelerator is worth choosing over it.
            guard let devices = try? OpenCLDevice.all(),
                  let device = devices.first(where: { $0.type == .gpu })
                      ?? devices.first(where: { $0.type == .accelerator })
            else {
                return DeviceSpecification.sharedCPUBackend
            }
            return try OpenCLBackend.shared(for: device)
        case .opencl(let selector):
            return try OpenCLBackend.shared(for: try selector.device())
        }
    }

    private static let sharedCPUBackend = CPUBackend()

    /// A sentence listing every device a specification can name.
    static func availableDevices() -> String {
        do {
            return describe(try OpenCLDevice.all())
        } catch {
            return "available: cpu (listing OpenCL devices failed: \(error))"
        }
    }

    static func describe(_ devices: [OpenCLDevice]) -> String {
        let openCL = devices.map { "opencl:\($0.index) (\($0.name), \($0.type), \($0.platformName))" }
        return "available: " + (["cpu"] + openCL).joined(separator: ", ")
    }
}

extension StringProtocol {
    /// The text without leading and trailing whitespace.
    fileprivate var trimmedOfWhitespace: String {
        var text = Substring(self)
        while let first = text.first, first.isWhitespace { text.removeFirst() }
        while let last = text.last, last.isWhitespace { text.removeLast() }
        return String(text)
    }
}
