import CCLBlast
import COpenCL

/// A failed OpenCL (or CLBlast) call: which function failed, its status code and that code's
/// name, what Recur was doing at the time, and for a failed program build the compiler's log.
public struct OpenCLError: Error, CustomStringConvertible, Sendable {
    /// The C function that returned the status, e.g. `"clBuildProgram"` or `"CLBlastSgemm"`.
    public var function: String
    /// The status code it returned.
    public var code: Int32
    /// The symbolic name of `code`, e.g. `"CL_BUILD_PROGRAM_FAILURE"`.
    public var codeName: String
    /// What the call was for, e.g. `"building kernel family 'reduce'"`; may be empty.
    public var context: String
    /// The compiler's output when a program failed to build, otherwise `nil`.
    public var buildLog: String?

    public init(function: String, code: Int32, codeName: String? = nil, context: String = "",
                buildLog: String? = nil) {
        self.function = function
        self.code = code
        self.codeName = codeName ?? OpenCLStatus.name(of: code)
        self.context = context
        self.buildLog = buildLog
    }

    public var description: String {
        var text = "\(function) failed with \(codeName) (\(code))"
        if !context.isEmpty { text += " while \(context)" }
        if let buildLog, !buildLog.isEmpty { text += "\nbuild log:\n\(buildLog)" }
        return text
    }

    /// Whether the code says the device or host ran out of memory or resources, so that an
    /// allocation can report `RecurError.outOfMemory` instead.
    var isOutOfMemory: Bool {
        [CL_MEM_OBJECT_ALLOCATION_FAILURE, CL_OUT_OF_RESOURCES, CL_OUT_OF_HOST_MEMORY, CL_INVALID_BUFFER_SIZE]
            .contains(code)
    }
}

/// Throws an `OpenCLError` unless `status` is `CL_SUCCESS`. Every `cl*` call goes through this.
@inline(__always)
func check(_ status: cl_int, _ function: String, _ context: @autoclosure () -> String = "") throws {
    guard status == CL_SUCCESS else {
        throw OpenCLError(function: function, code: status, context: context())
    }
}

/// Throws an `OpenCLError` naming the CLBlast status unless it is `CLBlastSuccess`.
@inline(__always)
func check(_ status: CLBlastStatusCode, _ function: String, _ context: @autoclosure () -> String = "") throws {
    guard status != CLBlastSuccess else { return }
    let code = status.rawValue
    throw OpenCLError(function: function, code: code, codeName: OpenCLStatus.clblastName(of: code), context: context())
}

/// Names of OpenCL and CLBlast status codes.
enum OpenCLStatus {
    /// The OpenCL name of `code` (OpenCL 3.0 core codes plus the extension codes one meets in
    /// practice), or `"unknown OpenCL status"` for anything else.
    static func name(of code: Int32) -> String {
        openCLNames[code] ?? "unknown OpenCL status"
    }

    /// The CLBlast name of `code`; CLBlast reuses the OpenCL codes for OpenCL failures.
    static func clblastName(of code: Int32) -> String {
        clblastNames[code] ?? openCLNames[code] ?? "unknown CLBlast status"
    }

    private static let openCLNames: [Int32: String] = [
        0: "CL_SUCCESS",
        -1: "CL_DEVICE_NOT_FOUND",
        -2: "CL_DEVICE_NOT_AVAILABLE",
        -3: "CL_COMPILER_NOT_AVAILABLE",
        -4: "CL_MEM_OBJECT_ALLOCATION_FAILURE",
        -5: "CL_OUT_OF_RESOURCES",
        -6: "CL_OUT_OF_HOST_MEMORY",
        -7: "CL_PROFILING_INFO_NOT_AVAILABLE",
        -8: "CL_MEM_COPY_OVERLAP",
        -9: "CL_IMAGE_FORMAT_MISMATCH",
        -10: "CL_IMAGE_FORMAT_NOT_SUPPORTED",
        -11: "CL_BUILD_PROGRAM_FAILURE",
        -12: "CL_MAP_FAILURE",
        -13: "CL_MISALIGNED_SUB_BUFFER_OFFSET",
        -14: "CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST",
        -15: "CL_COMPILE_PROGRAM_FAILURE",
        -16: "CL_LINKER_NOT_AVAILABLE",
        -17: "CL_LINK_PROGRAM_FAILURE",
        -18: "CL_DEVICE_PARTITION_FAILED",
        -19: "CL_KERNEL_ARG_INFO_NOT_AVAILABLE",
        -30: "CL_INVALID_VALUE",
        -31: "CL_INVALID_DEVICE_TYPE",
        -32: "CL_INVALID_PLATFORM",
        -33: "CL_INVALID_DEVICE",
        -34: "CL_INVALID_CONTEXT",
        -35: "CL_INVALID_QUEUE_PROPERTIES",
        -36: "CL_INVALID_COMMAND_QUEUE",
        -37: "CL_INVALID_HOST_PTR",
        -38: "CL_INVALID_MEM_OBJECT",
        -39: "CL_INVALID_IMAGE_FORMAT_DESCRIPTOR",
        -40: "CL_INVALID_IMAGE_SIZE",
        -41: "CL_INVALID_SAMPLER",
        -42: "CL_INVALID_BINARY",
        -43: "CL_INVALID_BUILD_OPTIONS",
        -44: "CL_INVALID_PROGRAM",
        -45: "CL_INVALID_PROGRAM_EXECUTABLE",
        -46: "CL_INVALID_KERNEL_NAME",
        -47: "CL_INVALID_KERNEL_DEFINITION",
        -48: "CL_INVALID_KERNEL",
        -49: "CL_INVALID_ARG_INDEX",
        -50: "CL_INVALID_ARG_VALUE",
        -51: "CL_INVALID_ARG_SIZE",
        -52: "CL_INVALID_KERNEL_ARGS",
        -53: "CL_INVALID_WORK_DIMENSION",
        -54: "CL_INVALID_WORK_GROUP_SIZE",
        -55: "CL_INVALID_WORK_ITEM_SIZE",
        -56: "CL_INVALID_GLOBAL_OFFSET",
        -57: "CL_INVALID_EVENT_WAIT_LIST",
        -58: "CL_INVALID_EVENT",
        -59: "CL_INVALID_OPERATION",
        -60: "CL_INVALID_GL_OBJECT",
        -61: "CL_INVALID_BUFFER_SIZE",
        -62: "CL_INVALID_MIP_LEVEL",
        -63: "CL_INVALID_GLOBAL_WORK_SIZE",
        -64: "CL_INVALID_PROPERTY",
        -65: "CL_INVALID_IMAGE_DESCRIPTOR",
        -66: "CL_INVALID_COMPILER_OPTIONS",
        -67: "CL_INVALID_LINKER_OPTIONS",
        -68: "CL_INVALID_DEVICE_PARTITION_COUNT",
        -69: "CL_INVALID_PIPE_SIZE",
        -70: "CL_INVALID_DEVICE_QUEUE",
        -71: "CL_INVALID_SPEC_ID",
        -72: "CL_MAX_SIZE_RESTRICTION_EXCEEDED",
        // Extension codes (cl_ext.h, cl_gl.h, cl_d3d*.h).
        -1000: "CL_INVALID_GL_SHAREGROUP_REFERENCE_KHR",
        -1001: "CL_PLATFORM_NOT_FOUND_KHR",
        -1002: "CL_INVALID_D3D10_DEVICE_KHR",
        -1003: "CL_INVALID_D3D10_RESOURCE_KHR",
        -1004: "CL_D3D10_RESOURCE_ALREADY_ACQUIRED_KHR",
        -1005: "CL_D3D10_RESOURCE_NOT_ACQUIRED_KHR",
        -1057: "CL_DEVICE_PARTITION_FAILED_EXT",
        -1058: "CL_INVALID_PARTITION_COUNT_EXT",
        -1059: "CL_INVALID_PARTITION_NAME_EXT",
        -1092: "CL_EGL_RESOURCE_NOT_ACQUIRED_KHR",
        -1093: "CL_INVALID_EGL_OBJECT_KHR",
        -1094: "CL_INVALID_ACCELERATOR_INTEL",
        -1095: "CL_INVALID_ACCELERATOR_TYPE_INTEL",
        -1096: "CL_INVALID_ACCELERATOR_DESCRIPTOR_INTEL",
        -1097: "CL_ACCELERATOR_TYPE_NOT_SUPPORTED_INTEL",
        -1098: "CL_INVALID_VA_API_MEDIA_ADAPTER_INTEL",
        -1099: "CL_INVALID_VA_API_MEDIA_SURFACE_INTEL",
        -1100: "CL_VA_API_MEDIA_SURFACE_ALREADY_ACQUIRED_INTEL",
        -1101: "CL_VA_API_MEDIA_SURFACE_NOT_ACQUIRED_INTEL",
        -1143: "CL_COMMAND_TERMINATED_ITSELF_WITH_FAILURE_ARM",
        // Not in any header: NVIDIA's driver reports an out-of-bounds access in a kernel so.
        -9999: "NVIDIA_ILLEGAL_MEMORY_ACCESS",
    ]

    /// CLBlast's own codes (clblast_c.h); the ones it shares with OpenCL are named by OpenCL.
    private static let clblastNames: [Int32: String] = [
        -1024: "CLBlastNotImplemented",
        -1022: "CLBlastInvalidMatrixA",
        -1021: "CLBlastInvalidMatrixB",
        -1020: "CLBlastInvalidMatrixC",
        -1019: "CLBlastInvalidVectorX",
        -1018: "CLBlastInvalidVectorY",
        -1017: "CLBlastInvalidDimension",
        -1016: "CLBlastInvalidLeadDimA",
        -1015: "CLBlastInvalidLeadDimB",
        -1014: "CLBlastInvalidLeadDimC",
        -1013: "CLBlastInvalidIncrementX",
        -1012: "CLBlastInvalidIncrementY",
        -1011: "CLBlastInsufficientMemoryA",
        -1010: "CLBlastInsufficientMemoryB",
        -1009: "CLBlastInsufficientMemoryC",
        -1008: "CLBlastInsufficientMemoryX",
        -1007: "CLBlastInsufficientMemoryY",
        -2050: "CLBlastInsufficientMemoryTemp",
        -2049: "CLBlastInvalidBatchCount",
        -2048: "CLBlastInvalidOverrideKernel",
        -2047: "CLBlastMissingOverrideParameter",
        -2046: "CLBlastInvalidLocalMemUsage",
        -2045: "CLBlastNoHalfPrecision",
        -2044: "CLBlastNoDoublePrecision",
        -2043: "CLBlastInvalidVectorScalar",
        -2042: "CLBlastInsufficientMemoryScalar",
        -2041: "CLBlastDatabaseError",
        -2040: "CLBlastUnknownError",
        -2039: "CLBlastUnexpectedError",
    ]
}
