// The recurrent step kernels' operands and the OpenCL side of each cell, described once.
//
// Every cell's step kernels come from one skeleton, Kernels/recurrent.cl, instantiated with the
// cell's file (Kernels/<cell>.cl). Their parameter lists are not written in the `.cl` files:
// the host generates them (`RECUR_FWD_PARAMETERS`, `RECUR_BWD_PARAMETERS`, and the locals that
// pick each operand's direction, `RECUR_FWD_OPERANDS`, `RECUR_BWD_OPERANDS`) from the same
// `StepKernelOperands` it fills by name at launch. So host and kernel cannot disagree silently: a
// step body that uses an operand the description lacks fails to build, with the compiler's log
// naming it; a launch that gives no value, or a value of the wrong kind, for an operand throws a
// `RecurError` naming it.

/// One parameter of a recurrent step kernel, as the kernel declares it and the host passes it.
struct StepKernelOperand: Sendable, Equatable {
    /// How the parameter is declared, and which `KernelArgument` it takes.
    enum Kind: Sendable, Equatable {
        /// `__global float*`: a tensor the kernel writes.
        case buffer
        /// `__global const float*`: a tensor the kernel only reads.
        case readOnlyBuffer
        /// `__global const int*`: an int32 tensor (the sequence lengths).
        case intBuffer
        /// `volatile __global int*`: the grid barrier's state.
        case gridSync
        /// `const int`.
        case int
        /// `const float`.
        case float
    }

    let name: String
    let kind: Kind
    /// Whether the directions of a bidirectional pair each have their own: the kernel then takes
    /// `name0` and `name1` and declares a local `name` holding its direction's (`RECUR_PICK`).
    let perDirection: Bool

    /// A tensor of each direction that the kernel writes.
    static func writes(_ name: String) -> Self { Self(name: name, kind: .buffer, perDirection: true) }
    /// A tensor of each direction that the kernel only reads.
    static func reads(_ name: String) -> Self { Self(name: name, kind: .readOnlyBuffer, perDirection: true) }
    /// An int of each direction (a flag, an offset).
    static func eachInt(_ name: String) -> Self { Self(name: name, kind: .int, perDirection: true) }
    /// An int both directions share (a size, a step range).
    static func int(_ name: String) -> Self { Self(name: name, kind: .int, perDirection: false) }
    /// A float both directions share.
    static func float(_ name: String) -> Self { Self(name: name, kind: .float, perDirection: false) }

    /// The OpenCL C type of the parameter.
    var declaredType: String {
        switch kind {
        case .buffer: "__global float*"
        case .readOnlyBuffer: "__global const float*"
        case .intBuffer: "__global const int*"
        case .gridSync: "volatile __global int*"
        case .int: "const int"
        case .float: "const float"
        }
    }

    /// Whether `argument` is something this parameter can take.
    func accepts(_ argument: KernelArgument) -> Bool {
        switch (kind, argument) {
        case (.buffer, .tensor), (.buffer, .memory), (.readOnlyBuffer, .tensor), (.readOnlyBuffer, .memory),
             (.intBuffer, .tensor), (.intBuffer, .memory), (.gridSync, .memory), (.gridSync, .tensor),
             (.int, .int), (.float, .float):
            true
        default:
            false
        }
    }
}

/// The operands of one step kernel in parameter order: the one description from which both the
/// kernel's parameter list (`macros(prefix:)`) and the host's argument list (`arguments(_:directions:)`)
/// are made.
struct StepKernelOperands: Sendable {
    /// The kernel's name, for errors.
    let kernel: String
    let operands: [StepKernelOperand]

    /// `#define <prefix>_PARAMETERS` (the parameter list) and `#define <prefix>_OPERANDS` (the
    /// per-direction locals, `type name = RECUR_PICK(name)`), one parameter or local a line.
    func macros(prefix: String) -> String {
        let parameters = operands.flatMap { operand in
            operand.perDirection
                ? ["\(operand.declaredType) \(operand.name)0", "\(operand.declaredType) \(operand.name)1"]
                : ["\(operand.declaredType) \(operand.name)"]
        }
        let locals = operands.filter(\.perDirection).map { operand in
            "\(operand.declaredType) \(operand.name) = RECUR_PICK(\(operand.name))"
        }
        let continuation = " \\\n    "
        return "#define \(prefix)_PARAMETERS\(continuation)" + parameters.joined(separator: ",\(continuation)") + "\n"
            + "#define \(prefix)_OPERANDS\(continuation)" + locals.joined(separator: ";\(continuation)") + "\n"
    }

    /// The kernel's arguments in parameter order, each looked up by name in `values`; a
    /// per-direction operand takes direction 0's value and direction `directions - 1`'s (the
    /// single direction's twice when there is one).
    ///
    /// - Throws: `RecurError.invalidArgument` naming the operand when `values` has no value for
    ///   it, one value where the kernel takes one per direction (or the reverse), or a value of
    ///   the wrong kind.
    func arguments(_ values: StepKernelArguments, directions: Int) throws -> ResolvedStepArguments {
        var list: [KernelArgument] = []
        var positions: [String: Int] = [:]
        for operand in operands {
            positions[operand.name] = list.count
            let given: [KernelArgument]
            if operand.perDirection {
                guard let each = values.perDirection[operand.name] else {
                    throw mismatch(operand, values.shared[operand.name] == nil
                        ? "has no value" : "takes one value per direction, but was given one for both")
                }
                guard each.count == directions else {
                    throw mismatch(operand, "takes \(directions) values (one per direction), but was given \(each.count)")
                }
                given = [each[0], each[directions - 1]]
            } else {
                guard let value = values.shared[operand.name] else {
                    throw mismatch(operand, values.perDirection[operand.name] == nil
                        ? "has no value" : "takes one value for both directions, but was given one per direction")
                }
                given = [value]
            }
            for argument in given where !operand.accepts(argument) {
                throw mismatch(operand, "is declared `\(operand.declaredType)`, but was given \(argument.kindName)")
            }
            list += given
        }
        return ResolvedStepArguments(kernel: kernel, list: list, positions: positions)
    }

    private func mismatch(_ operand: StepKernelOperand, _ detail: String) -> RecurError {
        RecurError.invalidArgument(operation: kernel, detail: "kernel argument '\(operand.name)' \(detail)")
    }
}

/// The values a host offers a step kernel, by operand name: one for both directions, or one per
/// direction. Values the kernel does not take are ignored, so one set serves every cell.
struct StepKernelArguments {
    fileprivate(set) var shared: [String: KernelArgument] = [:]
    fileprivate(set) var perDirection: [String: [KernelArgument]] = [:]

    /// Gives operand `name` one value for both directions.
    mutating func set(_ name: String, _ value: KernelArgument) {
        shared[name] = value
    }

    /// Gives operand `name` one value per direction, or none when any direction has none (a
    /// kernel that takes it then fails with its name).
    mutating func set(_ name: String, each values: [KernelArgument?]) {
        let present = values.compactMap { $0 }
        if present.count == values.count { perDirection[name] = present }
    }

    /// Gives the per-direction tensor `name` from each direction's optional tensor.
    mutating func set(_ name: String, eachTensor tensors: [Tensor?]) {
        set(name, each: tensors.map { $0.map(KernelArgument.tensor) })
    }
}

/// A step kernel's arguments in parameter order, with the operands that change between the
/// launches of a scan settable by name.
struct ResolvedStepArguments {
    let kernel: String
    private(set) var list: [KernelArgument]
    private let positions: [String: Int]

    fileprivate init(kernel: String, list: [KernelArgument], positions: [String: Int]) {
        self.kernel = kernel
        self.list = list
        self.positions = positions
    }

    /// Sets the shared operand `name`.
    /// - Throws: `RecurError.invalidArgument` when the kernel has no such operand.
    mutating func set(_ name: String, _ value: KernelArgument) throws {
        guard let position = positions[name] else {
            throw RecurError.invalidArgument(operation: kernel, detail: "the kernel has no argument '\(name)'")
        }
        list[position] = value
    }
}

extension KernelArgument {
    /// What the argument passes, for errors.
    var kindName: String {
        switch self {
        case .tensor: "a tensor"
        case .memory: "a buffer"
        case .int: "an int"
        case .float: "a float"
        case .localFloats: "local memory"
        }
    }
}

// MARK: Cells

/// The OpenCL side of one recurrent cell: its step-math file, the operands its step bodies use
/// beyond the skeleton's, and what its scans need around the kernels. Looked up in one place,
/// `OpenCLCellKernels.of(_:)`; a new cell adds an entry to `all` and a `Kernels/<name>.cl` file.
struct OpenCLCellKernels: Sendable {
    /// Which skeleton the cell's step kernels are instantiated from.
    enum Skeleton: Sendable {
        /// Kernels/recurrent.cl: one work-item per (b, j) unit, one launch per step or a persistent
        /// scan with a grid barrier.
        case units
        /// Kernels/recurrent_rows.cl: one work-group per sequence row, which runs the whole scan in
        /// one launch; for cells whose step needs values over all H units of the row.
        case rows
    }

    /// Where a row cell's parameter gradients go. Its backward kernel sums each row's part over
    /// the steps into `parameterGradients` `[B, P]` (rows never share an element, so no atomics);
    /// after the scan the host adds the sum over the B rows of columns
    /// `[column H, (column + count) H)` to `RecurrentWeights.all[parameter]` from element `offset H`.
    struct ParameterGradientSum: Sendable {
        let parameter: Int
        let offset: Int
        let column: Int
        let count: Int
    }

    let cell: RecurrentCell
    /// `Kernels/<name>.cl`, and its kernels' name stem (`CELL_NAME`): `<name>_fwd_step`,
    /// `<name>_bwd_step`.
    let name: String
    let skeleton: Skeleton
    /// The kernels' operand names of the cell's own parameters (`RecurrentWeights.extra`), in
    /// the cell's order.
    let parameterOperands: [String]
    /// P / H: the width of a row of `parameterGradients` in units of H (0: the cell has none).
    let parameterGradientColumns: Int
    /// How the rows of `parameterGradients` become parameter gradients; empty for the cells whose
    /// bias gradients are column sums of dG and dGh.
    let parameterGradientSums: [ParameterGradientSum]
    /// The kernels' operands, the skeleton's and the cell's.
    let forward: StepKernelOperands
    let backward: StepKernelOperands
    /// Int operands the cell fixes (the simple RNN's `relu` flag).
    let constants: [String: Int]
    /// Whether a step is two phases (`CELL_PHASES 2`, "Two phases" in Kernels/recurrent.cl): the
    /// kernels then take a `phases` operand.
    let isPhased: Bool
    /// Whether the kernels also build with the resident-weights split (`ResidentScanLayout`).
    let hasResidentSplit: Bool
    /// Whether the gradient seen by W_hh, b_hh and h̃ (dGh, `recurrentGateGradients`) differs
    /// from dG and needs its own buffer (the reset-after GRU's n block is scaled by r).
    let separateRecurrentGateGradients: Bool
    /// Whether W_hn multiplies r ⊙ h̃ (`candidateRecurrent`) instead of h̃ (the reset-before GRU):
    /// its weight gradient then reads that, and the backward keeps dq ⊙ r (`dhTildeReset`)
    /// between its phases.
    let resetsBeforeProduct: Bool

    /// The program holding this cell's kernels: common.cl, the operand macros, the cell's file and
    /// the skeleton. Cells that share a file (tanh and ReLU RNNs) share the program.
    let family: KernelFamily

    private init(cell: RecurrentCell, name: String, skeleton: Skeleton = .units, forward: [StepKernelOperand],
                 backward: [StepKernelOperand], constants: [String: Int] = [:], isPhased: Bool = false,
                 separateRecurrentGateGradients: Bool = false, resetsBeforeProduct: Bool = false,
                 parameterOperands: [String] = [], parameterGradientColumns: Int = 0,
                 parameterGradientSums: [ParameterGradientSum] = []) {
        self.cell = cell
        self.name = name
        self.skeleton = skeleton
        self.parameterOperands = parameterOperands
        self.parameterGradientColumns = parameterGradientColumns
        self.parameterGradientSums = parameterGradientSums
        let phases: [StepKernelOperand] = isPhased ? [.int("phases")] : []
        // The skeleton's operands around the cell's; their order is the parameter order.
        let head: [StepKernelOperand] = [.int("batch"), .int("hidden"), .int("steps"), .eachInt("reverse"),
                                         .int("firstStep"), .int("stepCount")] + phases
        // A row scan has no grid barrier.
        let gridBarrier: [StepKernelOperand] = skeleton == .rows ? [] : [
            StepKernelOperand(name: "gridSync", kind: .gridSync, perDirection: false), .int("spinLimit"),
        ]
        let tail: [StepKernelOperand] = [
            .reads("mask"), .eachInt("hasMask"),
            StepKernelOperand(name: "lengths", kind: .intBuffer, perDirection: false), .int("hasLengths"),
            .int("prePadding"),
        ] + gridBarrier
        self.forward = StepKernelOperands(kernel: "\(name)_fwd_step", operands: head + [
            .reads("recurrentWeights"), .reads("inputBias"), .reads("recurrentBias"), .writes("gates"),
            .writes("recurrentInput"), .reads("hInitial"), .writes("hState"),
            .writes("output"), .eachInt("outputOffset"), .eachInt("outputStride"),
        ] + forward + tail)
        self.backward = StepKernelOperands(kernel: "\(name)_bwd_step", operands: head + [
            .reads("recurrentWeights"), .reads("gates"), .writes("gateGradients"), .writes("dhState"),
            .reads("outputGradient"), .eachInt("hasOutputGradient"), .eachInt("outputGradientOffset"),
            .eachInt("outputGradientStride"), .writes("hiddenGradients"), .eachInt("hasHiddenGradients"),
        ] + backward + tail)
        self.constants = constants
        self.isPhased = isPhased
        hasResidentSplit = !isPhased && skeleton == .units
        self.separateRecurrentGateGradients = separateRecurrentGateGradients
        self.resetsBeforeProduct = resetsBeforeProduct
        let files = skeleton == .rows ? ["rows", name, "recurrent_rows"] : [name, "recurrent"]
        family = KernelFamily(name: name, files: files,
                              prelude: self.forward.macros(prefix: "RECUR_FWD")
                                  + self.backward.macros(prefix: "RECUR_BWD"))
    }

    /// Every cell the OpenCL backend runs.
    static let all: [OpenCLCellKernels] = [
        OpenCLCellKernels(cell: .rnnTanh, name: "rnn", forward: [.int("relu")], backward: [.int("relu")],
                          constants: ["relu": 0]),
        OpenCLCellKernels(cell: .rnnRelu, name: "rnn", forward: [.int("relu")], backward: [.int("relu")],
                          constants: ["relu": 1]),
        OpenCLCellKernels(cell: .lstm, name: "lstm",
                          forward: [.float("cellClip"), .writes("cellStates"), .reads("cInitial"), .writes("cState")],
                          backward: [.float("cellClip"), .reads("cellStates"), .reads("cInitial"), .writes("dcState")]),
        OpenCLCellKernels(cell: .gru, name: "gru",
                          forward: [.writes("hiddenStates"), .writes("candidateRecurrent")],
                          backward: [.reads("hiddenStates"), .reads("candidateRecurrent"), .reads("hInitial"),
                                     .writes("recurrentGateGradients")],
                          separateRecurrentGateGradients: true),
        OpenCLCellKernels(cell: .gruResetBefore, name: "gru_reset_before",
                          forward: [.writes("hiddenStates"), .writes("candidateRecurrent")],
                          backward: [.reads("recurrentInput"), .reads("hiddenStates"), .reads("hInitial"),
                                     .writes("dhTildeReset")],
                          isPhased: true, resetsBeforeProduct: true),
        // The layer-normalised cells keep the raw pre-activations (a, W_hn h̃) and recompute LN's
        // statistics in the backward; their bias gradients are sums of the gradients before LN,
        // so they come from `parameterGradients`, not from dG.
        OpenCLCellKernels(cell: .layerNormLSTM, name: "layer_norm_lstm", skeleton: .rows,
                          forward: [.float("cellClip"), .writes("cellStates"), .reads("cInitial"), .writes("cState"),
                                    .reads("gateGain"), .reads("cellGain"), .reads("cellBias")],
                          backward: [.float("cellClip"), .reads("cellStates"), .reads("cInitial"), .writes("dcState"),
                                     .reads("inputBias"), .reads("recurrentBias"), .reads("gateGain"),
                                     .reads("cellGain"), .reads("cellBias"), .writes("parameterGradients")],
                          parameterOperands: ["gateGain", "cellGain", "cellBias"], parameterGradientColumns: 10,
                          parameterGradientSums: [
                              // db (b_ih and b_hh alike), dγ, dγ_c, dβ_c: Kernels/layer_norm_lstm.cl
                              ParameterGradientSum(parameter: 2, offset: 0, column: 0, count: 4),
                              ParameterGradientSum(parameter: 3, offset: 0, column: 0, count: 4),
                              ParameterGradientSum(parameter: 4, offset: 0, column: 4, count: 4),
                              ParameterGradientSum(parameter: 5, offset: 0, column: 8, count: 1),
                              ParameterGradientSum(parameter: 6, offset: 0, column: 9, count: 1),
                          ]),
        // The projection h_t = W_hr u mixes all H units of a row, so the cell is a row scan over
        // h of P features (`state`); its backward keeps every step's u for the dW_hr GEMM.
        OpenCLCellKernels(cell: .lstmProjection, name: "lstm_projection", skeleton: .rows,
                          forward: [.int("state"), .float("cellClip"), .writes("cellStates"), .reads("cInitial"),
                                    .writes("cState"), .reads("projectionWeights"), .writes("unprojected")],
                          backward: [.int("state"), .float("cellClip"), .reads("cellStates"), .reads("cInitial"),
                                     .writes("dcState"), .reads("projectionWeights"), .writes("unprojected"),
                                     .writes("unprojectedStates")],
                          parameterOperands: ["projectionWeights"]),
        OpenCLCellKernels(cell: .layerNormGRU, name: "layer_norm_gru", skeleton: .rows,
                          forward: [.writes("hiddenStates"), .writes("candidateRecurrent"), .reads("gateGain"),
                                    .reads("candidateGain")],
                          backward: [.reads("hiddenStates"), .reads("candidateRecurrent"), .reads("hInitial"),
                                     .writes("recurrentGateGradients"), .reads("inputBias"), .reads("recurrentBias"),
                                     .reads("gateGain"), .reads("candidateGain"), .writes("parameterGradients")],
                          separateRecurrentGateGradients: true,
                          parameterOperands: ["gateGain", "candidateGain"], parameterGradientColumns: 8,
                          parameterGradientSums: [
                              // db_ih; db_hr, db_hz (the same columns); db_hn; dγ; dγ_hn: Kernels/layer_norm_gru.cl
                              ParameterGradientSum(parameter: 2, offset: 0, column: 0, count: 3),
                              ParameterGradientSum(parameter: 3, offset: 0, column: 0, count: 2),
                              ParameterGradientSum(parameter: 3, offset: 2, column: 3, count: 1),
                              ParameterGradientSum(parameter: 4, offset: 0, column: 4, count: 3),
                              ParameterGradientSum(parameter: 5, offset: 0, column: 7, count: 1),
                          ]),
    ]

    /// Whether the OpenCL backend runs `cell` (it refuses the others by name).
    static func exist(for cell: RecurrentCell) -> Bool { all.contains { $0.cell == cell } }

    /// The OpenCL side of `cell`.
    /// - Throws: `RecurError.invalidArgument` for a cell without OpenCL kernels.
    static func of(_ cell: RecurrentCell) throws -> OpenCLCellKernels {
        guard let kernels = all.first(where: { $0.cell == cell }) else {
            throw RecurError.invalidArgument(operation: "OpenCL recurrent step",
                                             detail: "no OpenCL kernels for the \(cell) cell")
        }
        return kernels
    }
}
