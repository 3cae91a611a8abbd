// What a backend's device and the host have free now, read from the OpenCL device's limits and
// the operating system (/proc/meminfo and the cgroup's limits on Linux): the other half of the
// memory check in Layers/MemoryEstimate.swift. It sits with the backends because only they know
// their devices.

/// The memory a backend can still allocate, and the host's.
public struct MemoryAvailability: Sendable, Equatable {
    /// How the message names the device: `device 'NVIDIA H200'`, or `the host` for the CPU backend.
    public var deviceName: String
    /// Bytes the device can still allocate (its global memory less what the backend holds); nil
    /// where the device's memory is the host's and `hostBytes` covers it.
    public var deviceBytes: Int?
    /// The device's limit on one allocation (CL_DEVICE_MAX_MEM_ALLOC_SIZE); nil where none is known.
    public var maximumAllocationBytes: Int?
    /// Host memory available now (MemAvailable, or a cgroup's limit less its usage where lower);
    /// nil where it cannot be read.
    public var hostBytes: Int?
    /// Whether the device's buffers are host memory, so they count against `hostBytes` too.
    public var deviceSharesHostMemory: Bool

    public init(deviceName: String, deviceBytes: Int?, maximumAllocationBytes: Int?, hostBytes: Int?,
                deviceSharesHostMemory: Bool) {
        self.deviceName = deviceName
        self.deviceBytes = deviceBytes
        self.maximumAllocationBytes = maximumAllocationBytes
        self.hostBytes = hostBytes
        self.deviceSharesHostMemory = deviceSharesHostMemory
    }

    /// What `backend` and the host have free now.
    public init(_ backend: any Backend) {
        if let openCL = backend as? OpenCLBackend {
            self.init(device: openCL.device, liveBytes: backend.memoryStatistics.liveBytes)
        } else {
            self.init(deviceName: "the host", deviceBytes: nil, maximumAllocationBytes: nil,
                      hostBytes: Self.availableHostBytes(), deviceSharesHostMemory: true)
        }
    }

    /// What an OpenCL device has free while a backend on it holds `liveBytes`, and the host's.
    public init(device: OpenCLDevice, liveBytes: Int = 0) {
        self.init(
            deviceName: "device '\(device.name)'",
            deviceBytes: max(device.globalMemoryBytes - liveBytes, 0),
            maximumAllocationBytes: device.maxAllocationBytes > 0 ? device.maxAllocationBytes : nil,
            hostBytes: Self.availableHostBytes(), deviceSharesHostMemory: device.type == .cpu)
    }

    /// MemAvailable of /proc/meminfo, lowered to a cgroup v2 limit less its usage; elsewhere the
    /// available physical pages.
    public static func availableHostBytes() -> Int? {
        HostMemory.availableBytes()
    }
}
