// Which device each rank computes on when several ranks share a host: with several GPUs, rank
// k on the host takes the k-th one, so the ranks do not pile onto one device.

import Recur

extension DeviceSpecification {
    /// The device for the rank with index `localRank` among the ranks on its host.
    ///
    /// `auto` and `opencl` become `opencl:<i>` for the `localRank % g`-th of the host's `g`
    /// OpenCL GPUs (`i` its index in `OpenCLDevice.all()`) when `g > 1`; with one GPU or none they
    /// keep their usual meaning. An explicit `cpu`, `opencl:N` or `opencl:NAME` is used as given.
    public func forLocalRank(_ localRank: Int) -> DeviceSpecification {
        switch self {
        case .automatic, .opencl(.preferred):
            // A host without an OpenCL platform lists no devices; the usual meaning then applies.
            let devices = (try? OpenCLDevice.all()) ?? []
            let gpus = devices.indices.filter { devices[$0].type == .gpu }
            guard gpus.count > 1 else { return self }
            return .opencl(.index(gpus[localRank % gpus.count]))
        case .cpu, .opencl(.index), .opencl(.nameContaining):
            return self
        }
    }
}
