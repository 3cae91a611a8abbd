import COpenCL
import Synchronization

/// Platform and device discovery, done once per process under a lock.
///
/// The first `clGetDeviceIDs` makes a driver initialise its devices, and with ocl-icd 2.3 and
/// PoCL 3 two threads doing that at once crash the process. So discovery is serialised, and
/// its result kept: later calls never enter the driver, and device indices stay stable.
private enum Discovery {
    struct Result {
        var platforms: [OpenCLPlatform]
        var devices: [OpenCLDevice]
    }

    private static let cached = Mutex<Result?>(nil)

    /// Every platform and device; a failure is not cached, so a later call tries again.
    static func result() throws -> Result {
        try cached.withLock { cached in
            if let cached { return cached }
            let platforms = try OpenCLPlatform.discover()
            var devices: [OpenCLDevice] = []
            for platform in platforms {
                for id in try platform.devices() {
                    devices.append(try OpenCLDevice(id: id, platform: platform, index: devices.count))
                }
            }
            let result = Result(platforms: platforms, devices: devices)
            cached = result
            return result
        }
    }
}

/// One OpenCL platform (an installed driver: PoCL, NVIDIA CUDA, ...), with its properties read
/// once when it is listed.
public struct OpenCLPlatform: Hashable, @unchecked Sendable, CustomStringConvertible {
    // A platform id is a process-wide handle valid for the life of the process: safe to share.
    let id: cl_platform_id

    /// Position in `OpenCLPlatform.all()`.
    public let index: Int
    public let name: String
    public let vendor: String
    /// `CL_PLATFORM_VERSION`, e.g. `"OpenCL 3.0 CUDA 13.0.98"`.
    public let version: String
    public let extensions: [String]

    /// Every platform the ICD loader knows, in the loader's order. An empty list (not an error)
    /// when no OpenCL driver is installed. Read once per process.
    public static func all() throws -> [OpenCLPlatform] {
        try Discovery.result().platforms
    }

    /// Asks the ICD loader for its platforms. Only `Discovery` calls this.
    fileprivate static func discover() throws -> [OpenCLPlatform] {
        var count: cl_uint = 0
        let status = clGetPlatformIDs(0, nil, &count)
        if status == platformNotFound || (status == CL_SUCCESS && count == 0) {
            return []
        }
        try check(status, "clGetPlatformIDs", "counting OpenCL platforms")
        var ids = [cl_platform_id?](repeating: nil, count: Int(count))
        try check(clGetPlatformIDs(count, &ids, nil), "clGetPlatformIDs", "listing OpenCL platforms")
        return try ids.compactMap { $0 }.enumerated().map { index, id in
            try OpenCLPlatform(id: id, index: index)
        }
    }

    /// `CL_PLATFORM_NOT_FOUND_KHR` from cl_ext.h (not included by the shim): the ICD loader's
    /// answer when no driver is installed.
    private static let platformNotFound: cl_int = -1001

    init(id: cl_platform_id, index: Int) throws {
        self.id = id
        self.index = index
        name = try Self.string(id, CL_PLATFORM_NAME, "CL_PLATFORM_NAME")
        vendor = try Self.string(id, CL_PLATFORM_VENDOR, "CL_PLATFORM_VENDOR")
        version = try Self.string(id, CL_PLATFORM_VERSION, "CL_PLATFORM_VERSION")
        extensions = try Self.string(id, CL_PLATFORM_EXTENSIONS, "CL_PLATFORM_EXTENSIONS")
            .split(separator: " ").map(String.init)
    }

    /// The platform's devices of every type, in the driver's order; empty if it has none.
    fileprivate func devices() throws -> [cl_device_id] {
        var count: cl_uint = 0
        let status = clGetDeviceIDs(id, cl_device_type(CL_DEVICE_TYPE_ALL), 0, nil, &count)
        if status == CL_DEVICE_NOT_FOUND || (status == CL_SUCCESS && count == 0) {
            return []
        }
        try check(status, "clGetDeviceIDs", "counting the devices of platform '\(name)'")
        var ids = [cl_device_id?](repeating: nil, count: Int(count))
        try check(clGetDeviceIDs(id, cl_device_type(CL_DEVICE_TYPE_ALL), count, &ids, nil),
                  "clGetDeviceIDs", "listing the devices of platform '\(name)'")
        return ids.compactMap { $0 }
    }

    public var description: String { "\(name) (\(vendor), \(version))" }

    public static func == (lhs: OpenCLPlatform, rhs: OpenCLPlatform) -> Bool { lhs.id == rhs.id }
    public func hash(into hasher: inout Hasher) { hasher.combine(id) }

    private static func string(_ id: cl_platform_id, _ parameter: Int32, _ parameterName: String) throws -> String {
        var size = 0
        let info = cl_platform_info(parameter)
        try check(clGetPlatformInfo(id, info, 0, nil, &size), "clGetPlatformInfo", "reading \(parameterName)")
        var bytes = [CChar](repeating: 0, count: max(size, 1))
        try check(clGetPlatformInfo(id, info, size, &bytes, nil), "clGetPlatformInfo", "reading \(parameterName)")
        return decodeCString(bytes)
    }
}

/// The kind of an OpenCL device, from `CL_DEVICE_TYPE`.
public enum OpenCLDeviceType: String, Sendable, CustomStringConvertible {
    case gpu = "GPU"
    case cpu = "CPU"
    case accelerator = "accelerator"
    case other = "other"

    init(_ bits: cl_device_type) {
        if bits & cl_device_type(CL_DEVICE_TYPE_GPU) != 0 {
            self = .gpu
        } else if bits & cl_device_type(CL_DEVICE_TYPE_CPU) != 0 {
            self = .cpu
        } else if bits & cl_device_type(CL_DEVICE_TYPE_ACCELERATOR) != 0 {
            self = .accelerator
        } else {
            self = .other
        }
    }

    public var description: String { rawValue }
}

/// One OpenCL device with its properties and limits, read once when it is listed.
///
/// `OpenCLDevice.all()` lists every device of every platform; a device's `index` there is the
/// `N` of the device specification `opencl:N`.
public struct OpenCLDevice: Hashable, @unchecked Sendable, CustomStringConvertible {
    // A device id from clGetDeviceIDs (not a sub-device) lives as long as the process: safe to share.
    let id: cl_device_id

    /// Position in `OpenCLDevice.all()`: the `N` of `opencl:N`.
    public let index: Int
    public let platform: OpenCLPlatform
    public let name: String
    public let vendor: String
    /// `CL_DEVICE_VERSION`, e.g. `"OpenCL 3.0 CUDA"`.
    public let version: String
    /// `CL_DRIVER_VERSION`.
    public let driverVersion: String
    /// `CL_DEVICE_OPENCL_C_VERSION`, e.g. `"OpenCL C 1.2"`.
    public let openCLCVersion: String
    public let type: OpenCLDeviceType
    /// Number of compute units (streaming multiprocessors on NVIDIA, cores on a CPU).
    public let computeUnits: Int
    /// Maximum clock frequency in MHz.
    public let maxClockMHz: Int
    /// Global memory in bytes.
    public let globalMemoryBytes: Int
    /// Local (shared) memory per work-group in bytes.
    public let localMemoryBytes: Int
    /// The most work-items one work-group may have.
    public let maxWorkGroupSize: Int
    /// The largest single buffer the device allows, in bytes.
    public let maxAllocationBytes: Int
    /// `CL_DEVICE_MEM_BASE_ADDR_ALIGN` in bytes: where a sub-buffer may start within its parent.
    public let baseAddressAlignment: Int
    public let extensions: [String]

    /// The platform's name, e.g. `"NVIDIA CUDA"` or `"Portable Computing Language"`.
    public var platformName: String { platform.name }

    /// Whether PoCL (Portable Computing Language, OpenCL on the CPU) provides this device.
    public var isPoCL: Bool {
        platform.name.lowercased().contains("portable computing language")
            || platform.vendor.lowercased().contains("pocl")
    }

    /// Every device of every platform: platforms in the loader's order, then each platform's
    /// devices in the driver's order. Empty when no OpenCL driver is installed. Read once per
    /// process, so indices do not change while it runs.
    public static func all() throws -> [OpenCLDevice] {
        try Discovery.result().devices
    }

    init(id: cl_device_id, platform: OpenCLPlatform, index: Int) throws {
        self.id = id
        self.platform = platform
        self.index = index
        name = try Self.string(id, CL_DEVICE_NAME, "CL_DEVICE_NAME")
        vendor = try Self.string(id, CL_DEVICE_VENDOR, "CL_DEVICE_VENDOR")
        version = try Self.string(id, CL_DEVICE_VERSION, "CL_DEVICE_VERSION")
        driverVersion = try Self.string(id, CL_DRIVER_VERSION, "CL_DRIVER_VERSION")
        openCLCVersion = try Self.string(id, CL_DEVICE_OPENCL_C_VERSION, "CL_DEVICE_OPENCL_C_VERSION")
        type = OpenCLDeviceType(try Self.scalar(id, CL_DEVICE_TYPE, "CL_DEVICE_TYPE", as: cl_device_type.self))
        computeUnits = Int(try Self.scalar(id, CL_DEVICE_MAX_COMPUTE_UNITS, "CL_DEVICE_MAX_COMPUTE_UNITS", as: cl_uint.self))
        maxClockMHz = Int(try Self.scalar(id, CL_DEVICE_MAX_CLOCK_FREQUENCY, "CL_DEVICE_MAX_CLOCK_FREQUENCY", as: cl_uint.self))
        globalMemoryBytes = Int(try Self.scalar(id, CL_DEVICE_GLOBAL_MEM_SIZE, "CL_DEVICE_GLOBAL_MEM_SIZE", as: cl_ulong.self))
        localMemoryBytes = Int(try Self.scalar(id, CL_DEVICE_LOCAL_MEM_SIZE, "CL_DEVICE_LOCAL_MEM_SIZE", as: cl_ulong.self))
        maxWorkGroupSize = try Self.scalar(id, CL_DEVICE_MAX_WORK_GROUP_SIZE, "CL_DEVICE_MAX_WORK_GROUP_SIZE", as: Int.self)
        maxAllocationBytes = Int(try Self.scalar(id, CL_DEVICE_MAX_MEM_ALLOC_SIZE, "CL_DEVICE_MAX_MEM_ALLOC_SIZE", as: cl_ulong.self))
        let alignmentBits = try Self.scalar(id, CL_DEVICE_MEM_BASE_ADDR_ALIGN, "CL_DEVICE_MEM_BASE_ADDR_ALIGN", as: cl_uint.self)
        baseAddressAlignment = max(4, Int(alignmentBits) / 8)
        extensions = try Self.string(id, CL_DEVICE_EXTENSIONS, "CL_DEVICE_EXTENSIONS")
            .split(separator: " ").map(String.init)
    }

    /// One line: index, name, type, platform, compute units and memory.
    public var description: String {
        "opencl:\(index) \(name) (\(type), \(platformName), \(computeUnits) compute units, "
            + "\(globalMemoryBytes / (1 << 20)) MiB)"
    }

    public static func == (lhs: OpenCLDevice, rhs: OpenCLDevice) -> Bool { lhs.id == rhs.id }
    public func hash(into hasher: inout Hasher) { hasher.combine(id) }

    private static func string(_ id: cl_device_id, _ parameter: Int32, _ parameterName: String) throws -> String {
        var size = 0
        let info = cl_device_info(parameter)
        try check(clGetDeviceInfo(id, info, 0, nil, &size), "clGetDeviceInfo", "reading \(parameterName)")
        var bytes = [CChar](repeating: 0, count: max(size, 1))
        try check(clGetDeviceInfo(id, info, size, &bytes, nil), "clGetDeviceInfo", "reading \(parameterName)")
        return decodeCString(bytes)
    }

    private static func scalar<Value: FixedWidthInteger>(
        _ id: cl_device_id, _ parameter: Int32, _ parameterName: String, as _: Value.Type
    ) throws -> Value {
        var value: Value = 0
        try check(clGetDeviceInfo(id, cl_device_info(parameter), MemoryLayout<Value>.size, &value, nil),
                  "clGetDeviceInfo", "reading \(parameterName)")
        return value
    }
}

/// The text of a NUL-terminated C string in `bytes`, without trailing whitespace (some drivers
/// pad names with spaces).
func decodeCString(_ bytes: [CChar]) -> String {
    let end = bytes.firstIndex(of: 0) ?? bytes.endIndex
    let text = String(decoding: bytes[..<end].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    var trimmed = Substring(text)
    while let last = trimmed.last, last.isWhitespace { trimmed.removeLast() }
    while let first = trimmed.first, first.isWhitespace { trimmed.removeFirst() }
    return String(trimmed)
}
