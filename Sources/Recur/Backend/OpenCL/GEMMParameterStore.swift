#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Tuned GEMM kernel parameters on disk, one small JSON file per device, driver, kernel and
/// precision, in the folder of the program binary cache (`ProgramBinaryCache.standard`). The
/// kernels are XgemmDirect, Xgemm and CLBlast's `GemmRoutine` threshold between them (see
/// `kernels`).
///
/// A file names its device, vendor, driver version, kernel and precision; `load` returns its
/// parameters only when all of them match the device asked for and the values satisfy the
/// kernel's constraints on that device. Anything else (unreadable, corrupt, another driver,
/// invalid values) is ignored with a warning, never an error: the defaults are always usable.
public struct GEMMParameterStore: Sendable {
    /// The folder holding the files.
    public let directory: String

    public init(directory: String) {
        self.directory = directory
    }

    /// The folder `ProgramBinaryCache` uses: `$RECUR_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/recur/kernels`, else `~/.cache/recur/kernels`; `nil` when none is known.
    public static var standard: GEMMParameterStore? {
        ProgramBinaryCache.standard.map { GEMMParameterStore(directory: $0.directory) }
    }

    /// Single precision, CLBlast's `CLBlastPrecisionSingle`.
    static let precision = 32

    /// The text every file is keyed by.
    static func key(device: OpenCLDevice, kernel: String) -> String {
        [device.name, device.vendor, device.driverVersion, kernel, "\(precision)"].joined(separator: "\n")
    }

    /// The file for `kernel` on `device`: readable kernel name plus a hash of the key.
    public func path(device: OpenCLDevice, kernel: String) -> String {
        let keyHash = String(FNV1a64.hash(Array(Self.key(device: device, kernel: kernel).utf8)), radix: 16)
        let safeKernel = String(kernel.map { $0.isLetter || $0.isNumber ? $0 : "_" })
        return "\(directory)/gemm-\(safeKernel)-\(Self.precision)-\(keyHash).json"
    }

    /// Writes `parameters` for `device` atomically, with the search's timings for reference.
    /// Returns the file's path.
    @discardableResult
    public func save(_ parameters: GEMMKernelParameters, device: OpenCLDevice, result: GEMMTuningResult? = nil)
        throws -> String
    {
        let file = GEMMParameterFile(
            format: GEMMParameterFile.currentFormat, device: device.name, vendor: device.vendor,
            driver: device.driverVersion, kernel: parameters.kernel, precision: Self.precision,
            parameters: parameters.values, sizes: result?.sizes,
            defaultMilliseconds: result?.defaultMilliseconds, tunedMilliseconds: result?.bestMilliseconds)
        try FileBytes.createDirectory(directory)
        let destination = path(device: device, kernel: parameters.kernel)
        try FileBytes.writeAtomically(Array(try RecurJSON.encoder().encode(file)), to: destination)
        return destination
    }

    /// The saved parameters of `kernel` for `device`, or `nil` with the reason when there are
    /// none usable. A missing file gives `nil` and no reason.
    public func load(device: OpenCLDevice, kernel: String) -> (parameters: GEMMKernelParameters?, warning: String?) {
        let path = path(device: device, kernel: kernel)
        guard FileManager.default.fileExists(atPath: path) else { return (nil, nil) }
        let ignored = { (why: String) in (GEMMKernelParameters?.none, "ignoring tuned GEMM parameters in \(path): \(why)") }
        let file: GEMMParameterFile
        do {
            let bytes = try FileBytes.read(contentsOf: path)
            file = try RecurJSON.decoder().decode(GEMMParameterFile.self, from: Data(bytes))
        } catch {
            return ignored("cannot read it (\(error))")
        }
        let expected = [("format", "\(GEMMParameterFile.currentFormat)", "\(file.format)"),
                        ("device", device.name, file.device), ("vendor", device.vendor, file.vendor),
                        ("driver", device.driverVersion, file.driver), ("kernel", kernel, file.kernel),
                        ("precision", "\(Self.precision)", "\(file.precision)")]
        if let (field, wanted, found) = expected.first(where: { $0.1 != $0.2 }) {
            return ignored("it is for \(field) '\(found)', not '\(wanted)'")
        }
        let parameters = GEMMKernelParameters(kernel: kernel, values: file.parameters)
        guard parameters.isValid(on: device) else {
            return ignored("\(parameters) are not valid \(kernel) parameters for \(device.name)")
        }
        return (parameters, nil)
    }

    /// Deletes the saved parameters of `kernel` for `device`; returns whether a file was there.
    @discardableResult
    public func remove(device: OpenCLDevice, kernel: String) throws -> Bool {
        let path = path(device: device, kernel: kernel)
        guard FileManager.default.fileExists(atPath: path) else { return false }
        guard unlink(path) == 0 else {
            throw RecurError.io(path: path, detail: "cannot delete (errno \(errno))")
        }
        return true
    }

    /// What a backend loads, in install order: the threshold between the two GEMM kernels, then
    /// each kernel's parameters. Files from before Xgemm was tuned hold only XgemmDirect's and
    /// still load: a kernel without a file keeps CLBlast's values.
    public static let kernels = [GEMMRoutineThreshold.kernel, XgemmDirectSearchSpace.kernel, XgemmSearchSpace.kernel]

    /// Loads and installs every saved kernel's parameters for `device`. Returns what was
    /// installed and the warnings for files that were ignored or refused by CLBlast.
    func applySaved(to device: OpenCLDevice) -> (installed: [GEMMKernelParameters], warnings: [String]) {
        var installed: [GEMMKernelParameters] = []
        var warnings: [String] = []
        for kernel in Self.kernels {
            let (parameters, warning) = load(device: device, kernel: kernel)
            if let warning { warnings.append(warning) }
            guard let parameters else { continue }
            do {
                try parameters.install(on: device)
                installed.append(parameters)
            } catch {
                warnings.append("ignoring tuned GEMM parameters for \(device.name): \(error)")
            }
        }
        return (installed, warnings)
    }
}

/// The JSON layout of one saved file.
struct GEMMParameterFile: Codable {
    static let currentFormat = 1

    var format: Int
    var device: String
    var vendor: String
    var driver: String
    var kernel: String
    var precision: Int
    var parameters: [String: Int]
    /// The GEMM sizes n the search timed, and its times over all of them (informative only).
    var sizes: [Int]?
    var defaultMilliseconds: Double?
    var tunedMilliseconds: Double?
}
