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

    /// A bare recurrent stack over `[T, B, I]` input of `steps` × `batchSize`, as `recur bench`
    /// and the fixture checks run it: the input and (training) an output gradient of the output's
    /// shape are data.
    ///
    /// - Parameters:
    ///   - cell: the cell every layer-direction runs.
    ///   - inputSize: I.
    ///   - hiddenSize: H.
    ///   - projectionSize: P, the width of h for a cell that projects it; nil means H.
    ///   - layerCount: L.
    ///   - bidirectional: whether D = 2.
    ///   - batchSize: B.
    ///   - steps: T.
    ///   - pass: forward only, or forward and backward.
    ///   - recordsGradientFlow: whether the backward records dL/dh_t of every step.
    public static func recurrentStack(cell: RecurrentCell, inputSize: Int, hiddenSize: Int,
                                      projectionSize: Int? = nil, layerCount: Int = 1,
                                      bidirectional: Bool = false, batchSize: Int, steps: Int, pass: Pass,
                                      recordsGradientFlow: Bool = false)
        -> MemoryEstimate
    {
        var estimate = stack(cell: cell, inputSize: inputSize, hiddenSize: hiddenSize, projectionSize: projectionSize,
                             layerCount: layerCount, bidirectional: bidirectional, batchSize: batchSize, steps: steps,
                             pass: pass, returnsSequences: true, inputDropout: false, layerDropout: false,
                             recordsGradientFlow: recordsGradientFlow)
        let width = product(bidirectional ? 2 : 1, projectionSize ?? hiddenSize)
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

    /// The recurrent stack's parameters, gradients, activations and backward workspace. With a
    /// projection, h, h̃, the outputs and their gradients have P features where c and the gates
    /// keep H.
    static func stack(cell: RecurrentCell, inputSize: Int, hiddenSize: Int, projectionSize: Int? = nil,
                      layerCount: Int, bidirectional: Bool, batchSize: Int, steps: Int, pass: Pass,
                      returnsSequences: Bool, inputDropout: Bool, layerDropout: Bool,
                      recordsGradientFlow: Bool) -> MemoryEstimate {
        let (i, h, l) = (max(inputSize, 0), max(hiddenSize, 0), max(layerCount, 0))
        let p = max(projectionSize ?? hiddenSize, 0)
        let (t, b) = (max(steps, 0), max(batchSize, 0))
        let d = bidirectional ? 2 : 1
        let g = product(cell.gateCount, h)
        let tb = product(t, b)
        // Per layer-direction, with input width `x`: the cell's parameters (W_ih [G, x], W_hh [G, H],
        // two biases [G], and any of its own), counted without overflow.
        func layerParameters(_ x: Int) -> Int {
            cell.parameters.reduce(0) { total, parameter in
                sum(total, parameter.shape(gates: g, inputSize: x, hiddenSize: h, projectionSize: p)
                    .dimensions.reduce(1) { product($0, $1) })
            }
        }
        // The first layer reads I; the L - 1 above it read D * P: a closed form, not a loop over L.
        let upper = product(d, p)
        let parameterCount = product(d, sum(layerParameters(i), product(max(l - 1, 0), layerParameters(upper))))

        // Forward, per layer-direction: gates [T, B, G], h̃ [T, B, P], c_t (LSTM) or h_t and the
        // candidate's recurrent part (GRU) [T, B, H]; per layer the output [T, B, D P].
        let stateBuffers = (cell.hasCellState ? 1 : 0) + (cell.keepsStepStates ? 2 : 0)
        let perDirection = sum(product(tb, g), product(tb, p), product(stateBuffers, tb, h))
        var perLayer = sum(product(d, perDirection), product(tb, upper))
        if layerDropout, pass == .training { perLayer = sum(perLayer, product(2, tb, upper)) }  // mask, masked copy
        var activations = product(l, perLayer)
        if inputDropout, pass == .training { activations = sum(activations, product(2, tb, i)) }
        // h_n [L D, B, P] (and c_n [L D, B, H]), and the many-to-one output [B, D P].
        activations = sum(activations, product(l, d, b, p), cell.hasCellState ? product(l, d, b, h) : 0,
                          returnsSequences ? 0 : product(b, upper))

        var workspace = 0
        if pass == .training {
            // The widest layer's backward: dL/dx [T, B, max(I, D H)] while the layer above's
            // gradient [T, B, D H] is alive, and dG [T * B, G] per direction (a second one, dGh,
            // for a cell whose recurrent side sees other gate gradients).
            let gateGradients = product(d, cell.hasSeparateRecurrentGateGradients ? 2 : 1, tb, g)
            workspace = sum(product(tb, max(i, upper)), product(tb, upper), gateGradients,
                            product(l, d, b, p), cell.hasCellState ? product(l, d, b, h) : 0)  // dh0 (and dc0)
            if recordsGradientFlow { workspace = sum(workspace, product(l, d, tb, p)) }
            // A projecting cell's backward keeps every step's u [T, B, H] and dL/dh_t [T, B, P].
            if cell.projectsHiddenState { workspace = sum(workspace, product(tb, h), product(tb, p)) }
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
        saturatingProduct(factors)
    }

    /// The sum of non-negative sizes, Int.max when it overflows.
    public static func sum(_ terms: Int...) -> Int {
        saturatingSum(terms)
    }

    /// Bytes of `count` float32 or int32 elements.
    static func bytes(_ count: Int) -> Int { product(count, 4) }

    /// A byte count in the largest binary unit that keeps it at or above 1, e.g. `6.4 GiB`.
    public static func text(bytes count: Int) -> String {
        byteCountText(count)
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
