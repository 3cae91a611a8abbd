// What a run will allocate, computed from its sizes alone, and a check of that against the memory
// the device and the host have: a request for more than the machine holds is refused with the
// numbers before anything is allocated, instead of ending in an allocation failure midway (or a
// trap in an array the size of the request).
//
// Every count saturates at Int.max: sizes whose product overflows Int describe no memory that
// exists, and the check refuses them like any other size too large.
//
// Shape legend: T time steps, B batch, I input features, H hidden units, G = gates * H,
// D directions, L layers, V vocabulary, E embedding width, K outputs.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Bytes a run is expected to allocate at its peak, by what they hold. An estimate: the buffers of
/// the layers, losses and optimizers as they are made, without small per-step scratch, so the
/// measured peak of a backend lies within a small factor of `total`.
public struct MemoryEstimate: Sendable, Equatable, CustomStringConvertible {
    /// Parameter values on the device.
    public var parameters = 0
    /// One gradient buffer per parameter (every layer makes them, also for inference).
    public var gradients = 0
    /// The optimizer's state (Adam: two moments per parameter).
    public var optimizerState = 0
    /// A batch's inputs, lengths and targets on the device.
    public var data = 0
    /// What the forward pass keeps for backpropagation through time: per layer and direction the
    /// workspace `[T, B, G]` and `[T, B, H]` buffers, the layer outputs, dropout masks, the head's
    /// output.
    public var activations = 0
    /// What the backward pass allocates on top: gate gradients `[T * B, G]`, dL/dx, the loss's
    /// and the head's gradients.
    public var workspace = 0
    /// The largest single buffer among all of these (a device caps one allocation).
    public var largestBuffer = 0
    /// Host memory the run takes at its peak besides the device's buffers: a batch's arrays, drawn
    /// or gathered before their upload. On a device that shares host memory (the CPU backend, an
    /// OpenCL CPU device) it adds to `total`.
    public var host = 0
    /// Host memory for the initial values of the largest layer, built before their upload while
    /// the parameters and gradients made before them are allocated (not yet the rest).
    public var initialization = 0

    public init() {}

    /// Device bytes at the peak: the sum of every part but `host`.
    public var total: Int {
        Self.sum(parameters, gradients, optimizerState, data, activations, workspace)
    }

    /// The parts that are not zero, in a fixed order.
    var parts: [(name: String, bytes: Int)] {
        [("parameters", parameters), ("gradients", gradients), ("optimizer state", optimizerState),
         ("data", data), ("activations", activations), ("backward workspace", workspace)]
            .filter { $0.1 > 0 }
    }

    /// e.g. `6.4 GiB (parameters 1.6 GiB, gradients 1.6 GiB, activations 3.2 GiB)`.
    public var description: String {
        let list = parts.map { "\($0.name) \(Self.text(bytes: $0.bytes))" }.joined(separator: ", ")
        return Self.text(bytes: total) + (list.isEmpty ? "" : " (\(list))")
    }

    // MARK: Estimates

    /// Which passes a recurrent stack runs.
    public enum Pass: Sendable {
        /// Forward only (evaluation, prediction, `recur bench --pass forward`).
        case inference
        /// Forward and backward (training, gradient checks).
        case training
    }

    /// A training run of `specification` on batches of `batchSize` sequences of `steps` time steps,
    /// with `optimizer`'s state (nil: none); `pass: .inference` for evaluation, where nothing is
    /// back-propagated.
    public init(_ specification: ModelSpecification, batchSize: Int, steps: Int,
                optimizer: OptimizerSpecification?, pass: Pass = .training) {
        let s = specification
        let (b, t) = (max(batchSize, 0), max(steps, 0))
        let d = s.bidirectional ? 2 : 1
        let k = max(s.outputSize, 0)
        let input = s.readsIDs ? max(s.embeddingSize ?? 0, 0) : max(s.inputFeatures ?? 0, 0)
        self = Self.stack(
            cell: s.cell, inputSize: input, hiddenSize: s.hiddenSize, layerCount: s.layerCount,
            bidirectional: s.bidirectional, batchSize: b, steps: t, pass: pass,
            returnsSequences: s.returnsSequences, inputDropout: s.inputDropout > 0, layerDropout: s.layerDropout > 0,
            recordsGradientFlow: false)
        let rows = s.returnsSequences ? Self.product(t, b) : b  // N: the head's rows
        let width = Self.product(d, s.hiddenSize)  // D * H
        var extraParameters = Self.sum(Self.product(width, k), k)  // Dense [K, D H] and [K]
        let batchInput: Int  // bytes of a batch's ids [T, B] int32 or values [T, B, F]
        if s.readsIDs {
            let table = Self.product(max(s.vocabularySize ?? 0, 0), input)  // Embedding [V, E]
            extraParameters = Self.sum(extraParameters, table)
            largestBuffer = max(largestBuffer, Self.bytes(table))
            batchInput = Self.bytes(Self.product(t, b))
            activations = Self.sum(activations, Self.bytes(Self.product(t, b, input)))  // the embedding's output
        } else {
            batchInput = Self.bytes(Self.product(t, b, input))
        }
        data = Self.sum(data, batchInput)
        parameters = Self.sum(parameters, Self.bytes(extraParameters))
        gradients = Self.sum(gradients, Self.bytes(extraParameters))
        let logits = Self.bytes(Self.product(rows, k))  // [N, K]
        data = Self.sum(data, s.returnsSequences ? Self.bytes(rows) : logits)  // targets
        let headInput = Self.bytes(Self.product(rows, width))  // [N, D H]
        activations = Self.sum(activations, logits, s.outputDropout > 0 ? Self.product(2, headInput) : 0)
        if pass == .training {
            // The loss's gradient and the head's dL/dz [N, K], and its dL/dx [N, D H].
            workspace = Self.sum(workspace, Self.product(2, logits), headInput)
        }
        // Also for evaluation: a checkpoint's optimizer state is restored with the model.
        let moments: Int = switch optimizer {
        case .adam?, .adamW?: 2
        case .sgd(_, let momentum, _, _)?: momentum != 0 ? 1 : 0
        case .rmsProp(_, let momentum, _)?: momentum != 0 ? 2 : 1
        case nil: 0
        }
        optimizerState = Self.product(moments, parameters)
        largestBuffer = max(largestBuffer, logits, Self.bytes(Self.product(width, k)))
        // The host builds the largest layer's initial values, and a batch's ids or values (the
        // examples' rows, then the time-major array uploaded).
        initialization = max(initialization, Self.bytes(extraParameters))
        host = max(host, Self.product(2, batchInput))
    }

    /// A bare recurrent stack over `[T, B, I]` input of `steps` × `batchSize`, as `recur bench`
    /// and the fixture checks run it: the input and (training) an output gradient of the output's
    /// shape are data.
    public static func recurrentStack(cell: RecurrentCell, inputSize: Int, hiddenSize: Int, layerCount: Int = 1,
                                      bidirectional: Bool = false, batchSize: Int, steps: Int, pass: Pass,
                                      recordsGradientFlow: Bool = false)
        -> MemoryEstimate
    {
        var estimate = stack(cell: cell, inputSize: inputSize, hiddenSize: hiddenSize, layerCount: layerCount,
                             bidirectional: bidirectional, batchSize: batchSize, steps: steps, pass: pass,
                             returnsSequences: true, inputDropout: false, layerDropout: false,
                             recordsGradientFlow: recordsGradientFlow)
        let width = product(bidirectional ? 2 : 1, hiddenSize)
        let input = bytes(product(steps, batchSize, inputSize))
        let outputGradient = pass == .training ? bytes(product(steps, batchSize, width)) : 0
        estimate.data = sum(estimate.data, input, outputGradient)
        estimate.largestBuffer = max(estimate.largestBuffer, input, outputGradient)
        // The host draws the input and the output gradient as arrays before uploading them.
        estimate.host = max(estimate.host, sum(input, outputGradient))
        return estimate
    }

    /// Two runs' estimate when both stay allocated: the device parts add up, the largest buffer
    /// and the host's transient arrays are the larger of the two.
    public func adding(_ other: MemoryEstimate) -> MemoryEstimate {
        var result = self
        result.parameters = Self.sum(parameters, other.parameters)
        result.gradients = Self.sum(gradients, other.gradients)
        result.optimizerState = Self.sum(optimizerState, other.optimizerState)
        result.data = Self.sum(data, other.data)
        result.activations = Self.sum(activations, other.activations)
        result.workspace = Self.sum(workspace, other.workspace)
        result.largestBuffer = max(largestBuffer, other.largestBuffer)
        result.host = max(host, other.host)
        result.initialization = max(initialization, other.initialization)
        return result
    }

    /// C[n, n] = A[n, n] B[n, n]: three matrices, A and B drawn on the host first.
    public static func gemm(size n: Int) -> MemoryEstimate {
        var estimate = MemoryEstimate()
        let matrix = bytes(product(n, n))
        estimate.data = product(3, matrix)
        estimate.largestBuffer = matrix
        estimate.host = product(2, matrix)
        return estimate
    }

    /// The recurrent stack's parameters, gradients, activations and backward workspace.
    private static func stack(cell: RecurrentCell, inputSize: Int, hiddenSize: Int, layerCount: Int,
                              bidirectional: Bool, batchSize: Int, steps: Int, pass: Pass, returnsSequences: Bool,
                              inputDropout: Bool, layerDropout: Bool, recordsGradientFlow: Bool) -> MemoryEstimate {
        let (i, h, l) = (max(inputSize, 0), max(hiddenSize, 0), max(layerCount, 0))
        let (t, b) = (max(steps, 0), max(batchSize, 0))
        let d = bidirectional ? 2 : 1
        let g = product(cell.gateCount, h)
        let tb = product(t, b)
        // Per layer-direction, with input width `x`: W_ih [G, x], W_hh [G, H], two biases [G].
        func layerParameters(_ x: Int) -> Int { sum(product(g, x), product(g, h), product(2, g)) }
        // The first layer reads I; the L - 1 above it read D * H: a closed form, not a loop over L.
        let upper = product(d, h)
        let parameterCount = product(d, sum(layerParameters(i), product(max(l - 1, 0), layerParameters(upper))))

        // Forward, per layer-direction: gates [T, B, G], h̃ [T, B, H], c_t (LSTM) or h_t and the
        // candidate's recurrent part (GRU) [T, B, H]; per layer the output [T, B, D H].
        let stateBuffers = 1 + (cell.hasCellState ? 1 : 0) + (cell.isGRU ? 2 : 0)
        let perDirection = sum(product(tb, g), product(stateBuffers, tb, h))
        var perLayer = sum(product(d, perDirection), product(tb, upper))
        if layerDropout, pass == .training { perLayer = sum(perLayer, product(2, tb, upper)) }  // mask, masked copy
        var activations = product(l, perLayer)
        if inputDropout, pass == .training { activations = sum(activations, product(2, tb, i)) }
        // h_n (and c_n) [L D, B, H], and the many-to-one output [B, D H].
        activations = sum(activations, product(cell.hasCellState ? 2 : 1, l, d, b, h),
                          returnsSequences ? 0 : product(b, upper))

        var workspace = 0
        if pass == .training {
            // The widest layer's backward: dL/dx [T, B, max(I, D H)] while the layer above's
            // gradient [T, B, D H] is alive, and dG [T * B, G] per direction (the reset-after
            // GRU's dGh a second one).
            let gateGradients = product(d, cell == .gru ? 2 : 1, tb, g)
            workspace = sum(product(tb, max(i, upper)), product(tb, upper), gateGradients,
                            product(cell.hasCellState ? 2 : 1, l, d, b, h))  // dh0 (and dc0)
            if recordsGradientFlow { workspace = sum(workspace, product(l, d, tb, h)) }
        }

        var estimate = MemoryEstimate()
        estimate.parameters = bytes(parameterCount)
        estimate.gradients = bytes(parameterCount)
        estimate.activations = bytes(activations)
        estimate.workspace = bytes(workspace)
        estimate.largestBuffer = bytes(max(product(d, tb, g), product(tb, upper), product(tb, i),
                                           product(d, g, max(i, upper))))
        // The host builds a layer's initial values as float arrays, both directions before either
        // is uploaded, and for orthogonal recurrent blocks two [H, H] matrices of doubles.
        let widest = l > 1 ? max(i, upper) : i
        estimate.initialization = sum(bytes(product(d, layerParameters(widest))), product(16, h, h))
        return estimate
    }

    // MARK: Checking

    /// Throws `InsufficientMemoryError` when the estimate exceeds what `availability` reports:
    /// the device's free memory, its largest allocation, or the host's available memory (with the
    /// device's bytes added where the device's buffers are host memory).
    /// - Parameters:
    ///   - availability: the memory the device and the host have free.
    ///   - operation: names the request in the message (`recur train`, `Benchmark.measure`).
    ///   - advice: what to lower, appended to the message (`lower --hidden or --batch-size`).
    public func check(against availability: MemoryAvailability, operation: String, advice: String? = nil) throws {
        func refuse(_ reason: String) -> InsufficientMemoryError {
            InsufficientMemoryError(operation: operation, estimate: self, reason: reason, advice: advice)
        }
        if let free = availability.deviceBytes, total > free {
            throw refuse("needs about \(self) but \(availability.deviceName) has \(Self.text(bytes: free)) free")
        }
        if let limit = availability.maximumAllocationBytes, largestBuffer > limit {
            throw refuse("needs a buffer of about \(Self.text(bytes: largestBuffer)) but \(availability.deviceName) "
                + "allocates at most \(Self.text(bytes: limit)) at once")
        }
        if let free = availability.hostBytes {
            // The initial values are built while only the parameters and gradients made before
            // them exist; a batch's arrays while everything does.
            let shares = availability.deviceSharesHostMemory
            let atInitialization = shares ? Self.sum(parameters, gradients, initialization) : initialization
            let atPeak = shares ? Self.sum(total, host) : host
            if max(atInitialization, atPeak) > free {
                let what: String
                if atInitialization > atPeak {
                    let held = Self.text(bytes: Self.sum(parameters, gradients))
                    what = (shares ? "\(held) for parameters and gradients and " : "")
                        + "\(Self.text(bytes: initialization)) to build a layer's initial values"
                } else {
                    what = shares ? "\(self)" + (host > 0 ? " and \(Self.text(bytes: host)) of host arrays" : "")
                        : "\(Self.text(bytes: host)) of host arrays"
                }
                throw refuse("needs about \(what) but the host has \(Self.text(bytes: free)) available")
            }
        }
    }

    /// `check(against: MemoryAvailability(backend), ...)`.
    public func check(on backend: any Backend, operation: String, advice: String? = nil) throws {
        try check(against: MemoryAvailability(backend), operation: operation, advice: advice)
    }

    // MARK: Arithmetic

    /// The product of non-negative sizes, Int.max when it overflows (negative sizes count as 0).
    public static func product(_ factors: Int...) -> Int {
        var result = 1
        for factor in factors {
            let (value, overflow) = result.multipliedReportingOverflow(by: max(factor, 0))
            if overflow { return Int.max }
            result = value
        }
        return result
    }

    /// The sum of non-negative sizes, Int.max when it overflows.
    public static func sum(_ terms: Int...) -> Int {
        var result = 0
        for term in terms {
            let (value, overflow) = result.addingReportingOverflow(max(term, 0))
            if overflow { return Int.max }
            result = value
        }
        return result
    }

    /// Bytes of `count` float32 or int32 elements.
    static func bytes(_ count: Int) -> Int { product(count, 4) }

    /// A byte count in the largest binary unit that keeps it at or above 1, e.g. `6.4 GiB`.
    public static func text(bytes count: Int) -> String {
        if count == Int.max { return "more than 8 EiB" }
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        var value = Double(count)
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        guard unit > 0 else { return "\(count) B" }
        let tenths = (value * 10).rounded()  // below 10240: no overflow
        let whole = Int(tenths) / 10
        return "\(whole).\(Int(tenths) % 10) \(units[unit])"
    }
}

/// A request refused before anything was allocated because its estimate exceeds the memory the
/// device or the host has.
public struct InsufficientMemoryError: Error, CustomStringConvertible, Equatable {
    public var operation: String
    public var estimate: MemoryEstimate
    /// Which limit the estimate exceeds, with both numbers.
    public var reason: String
    /// What to lower, for the user.
    public var advice: String?

    public var description: String {
        "\(operation): \(reason)" + (advice.map { "; \($0)" } ?? "")
    }
}

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
        #if os(Linux)
        var available = keyedValue("/proc/meminfo", "MemAvailable").map { MemoryEstimate.product($0, 1024) }
        if let limit = firstInteger("/sys/fs/cgroup/memory.max"), let used = firstInteger("/sys/fs/cgroup/memory.current") {
            let left = max(limit - used, 0)
            available = min(available ?? left, left)
        }
        if let available { return available }
        #endif
        let pages = sysconf(Int32(_SC_AVPHYS_PAGES)), size = sysconf(Int32(_SC_PAGESIZE))
        return pages > 0 && size > 0 ? MemoryEstimate.product(pages, size) : nil
    }

    /// The lines of a small text file (/proc, /sys); none when it cannot be opened.
    private static func lines(_ path: String) -> [Substring] {
        guard let file = fopen(path, "r") else { return [] }
        defer { fclose(file) }
        var text = ""
        var buffer = [CChar](repeating: 0, count: 4096)
        while fgets(&buffer, Int32(buffer.count), file) != nil {
            text += String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        return text.split(separator: "\n")
    }

    /// The number after "key:" in a "Key:   1234 kB" file (/proc/meminfo).
    private static func keyedValue(_ path: String, _ key: String) -> Int? {
        for line in lines(path) where line.hasPrefix(key + ":") {
            return line.dropFirst(key.count + 1).split(separator: " ").first.flatMap { Int($0) }
        }
        return nil
    }

    /// The file's first line as a number; nil for "max" (no limit) or no file.
    private static func firstInteger(_ path: String) -> Int? {
        lines(path).first.flatMap { Int($0.split(separator: " ").first ?? "") }
    }
}
