// The whole-sequence recurrent ops have no OpenCL kernels yet. They throw after validating the
// request, so a model on this backend fails with a clear message instead of a wrong result.
// Replace this file with the kernel-backed implementation.

extension OpenCLBackend {
    public func recurrentForward(_ request: RecurrentForward) throws {
        _ = try checkRecurrentForward(request)
        throw RecurError.invalidArgument(
            operation: "recurrentForward", detail: "\(request.scan.cell) is not implemented on the OpenCL backend yet")
    }

    public func recurrentBackward(_ request: RecurrentBackward) throws {
        _ = try checkRecurrentBackward(request)
        throw RecurError.invalidArgument(
            operation: "recurrentBackward", detail: "\(request.scan.cell) is not implemented on the OpenCL backend yet")
    }
}
