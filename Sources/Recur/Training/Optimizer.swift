// The optimizer protocol: an optimizer names its per-parameter state tensors and implements one
// update of one parameter (a fused backend op); stepping a whole model, creating the state on
// first use, and exporting and importing it are written once here.

/// A tensor with a name, as a checkpoint stores it.
public struct NamedTensor: Sendable {
    public let name: String
    public let tensor: Tensor

    public init(name: String, tensor: Tensor) {
        self.name = name
        self.tensor = tensor
    }
}

/// The state an optimizer keeps for each parameter, by parameter name: its state tensors (same
/// shape as the parameter, created as zeros on the parameter's first step) and its update count.
public final class OptimizerSlots {
    /// The tensors of each parameter, in the optimizer's `slotNames` order.
    fileprivate var tensors: [String: [Tensor]] = [:]
    /// How many updates each parameter has had.
    fileprivate var steps: [String: Int] = [:]
    /// How many times `step` ran.
    public fileprivate(set) var stepCount = 0

    public init() {}

    /// The names of the parameters that have state, sorted.
    public var parameterNames: [String] { steps.keys.sorted() }
}

/// A gradient-based optimizer over a model's `NamedParameter`s.
///
/// A conforming type declares its state tensors (`slotNames`, PyTorch's state keys) and one
/// update of one parameter (`update`, a fused backend op); `step`, `state()` and `load(state:)`
/// come from this protocol. State is keyed by parameter name, so a model must give its parameters
/// unique names (`Sequential` does).
public protocol Optimizer: AnyObject {
    var backend: any Backend { get }
    /// The base learning rate, used when `step` is given none (a schedule passes its own).
    var learningRate: Float { get set }
    /// The names of the state tensors kept per parameter, in the order `update` receives them:
    /// PyTorch's state keys (`momentum_buffer`, `exp_avg`, `exp_avg_sq`, `square_avg`).
    var slotNames: [String] { get }
    /// The per-parameter state.
    var slots: OptimizerSlots { get }
    /// Updates one parameter in place from its gradient.
    /// - Parameters:
    ///   - parameter: the parameter to update, with its gradient.
    ///   - state: the parameter's state tensors, in `slotNames` order, shaped like it.
    ///   - step: the parameter's update count including this one (1 on its first update).
    ///   - learningRate: the learning rate of this step.
    func update(_ parameter: NamedParameter, state: [Tensor], step: Int, learningRate: Float) throws
    /// Updates every parameter of one step, as `update` on each in turn; an optimizer whose backend
    /// can update several parameters in one op (Adam's `Backend.adamSteps`) does that instead.
    func updateAll(_ updates: [ParameterUpdate], learningRate: Float) throws
}

/// One parameter's part of `Optimizer.updateAll`: the arguments of its `update`.
public struct ParameterUpdate {
    public let parameter: NamedParameter
    /// The parameter's state tensors, in `slotNames` order.
    public let state: [Tensor]
    /// The parameter's update count including this one.
    public let step: Int
}

extension Optimizer {
    /// How many times `step` ran (also after `load(state:)`).
    public var stepCount: Int { slots.stepCount }

    /// Updates every parameter from its gradient, creating its state on its first update. The
    /// gradients are only read; zero them before the next accumulation.
    /// - Parameters:
    ///   - parameters: the model's parameters, with unique names.
    ///   - learningRate: this step's learning rate; nil uses `self.learningRate`.
    public func step(_ parameters: [NamedParameter], learningRate: Float? = nil) throws {
        let operation = "Optimizer.step"
        var seen = Set<String>()
        for parameter in parameters where !seen.insert(parameter.name).inserted {
            throw RecurError.invalidArgument(
                operation: operation, detail: "two parameters are named '\(parameter.name)'; state is kept by name")
        }
        let rate = learningRate ?? self.learningRate
        let updates = try parameters.map { parameter in
            ParameterUpdate(parameter: parameter, state: try stateTensors(for: parameter, operation: operation),
                            step: slots.steps[parameter.name, default: 0] + 1)
        }
        try updateAll(updates, learningRate: rate)
        for update in updates { slots.steps[update.parameter.name] = update.step }
        slots.stepCount += 1
    }

    public func updateAll(_ updates: [ParameterUpdate], learningRate: Float) throws {
        for update in updates {
            try self.update(update.parameter, state: update.state, step: update.step, learningRate: learningRate)
        }
    }

    /// Updates every parameter with the learning rate `schedule` gives at `stepCount`.
    public func step(_ parameters: [NamedParameter], schedule: LearningRateSchedule) throws {
        try step(parameters, learningRate: schedule.learningRate(atStep: stepCount))
    }

    /// The optimizer's state as named tensors, for a checkpoint: `"<parameter>.<slot>"` for every
    /// state tensor (copies, float32, shaped like the parameter), `"<parameter>.step"` for each
    /// parameter's update count and `"step"` for `stepCount` (int32 `[1]` each).
    public func state() throws -> [NamedTensor] {
        var result: [NamedTensor] = [
            NamedTensor(name: "step", tensor: try backend.upload([Int32(clamping: slots.stepCount)], shape: [1])),
        ]
        for name in slots.parameterNames {
            for (slot, tensor) in zip(slotNames, slots.tensors[name] ?? []) {
                let copy = try backend.zeros(tensor.shape)
                try backend.copy(tensor, sourceOffset: 0, into: copy, destinationOffset: 0, count: tensor.count)
                result.append(NamedTensor(name: "\(name).\(slot)", tensor: copy))
            }
            let steps = Int32(clamping: slots.steps[name] ?? 0)
            result.append(NamedTensor(name: "\(name).step", tensor: try backend.upload([steps], shape: [1])))
        }
        return result
    }

    /// Replaces the optimizer's state with one `state()` exported (from any backend).
    /// - Throws: `RecurError.invalidArgument` for a missing `step`, a name that is not
    ///   `"<parameter>.<slot>"` or `"<parameter>.step"` of this optimizer's slots, or a parameter
    ///   without all of its slots; `RecurError.shapeMismatch` (at the next `step`) when a state
    ///   tensor's shape differs from its parameter's.
    public func load(state: [NamedTensor]) throws {
        let operation = "Optimizer.load"
        var stepCount: Int?
        var tensors: [String: [String: Tensor]] = [:]
        var steps: [String: Int] = [:]
        for entry in state {
            if entry.name == "step" {
                stepCount = try count(entry, operation: operation)
                continue
            }
            guard let dot = entry.name.lastIndex(of: ".") else {
                throw RecurError.invalidArgument(
                    operation: operation, detail: "'\(entry.name)' is not '<parameter>.<slot>' or '<parameter>.step'")
            }
            let parameter = String(entry.name[..<dot])
            let slot = String(entry.name[entry.name.index(after: dot)...])
            if slot == "step" {
                steps[parameter] = try count(entry, operation: operation)
            } else if slotNames.contains(slot) {
                guard entry.tensor.dtype == .float32 else {
                    throw RecurError.invalidArgument(
                        operation: operation, detail: "'\(entry.name)' must be float32, got \(entry.tensor.dtype)")
                }
                tensors[parameter, default: [:]][slot] = try onThisBackend(entry.tensor)
            } else {
                throw RecurError.invalidArgument(
                    operation: operation,
                    detail: "'\(entry.name)': '\(slot)' is not a state of this optimizer (\(slotNames + ["step"]))")
            }
        }
        guard let stepCount else {
            throw RecurError.invalidArgument(operation: operation, detail: "the state has no 'step'")
        }
        for parameter in Set(tensors.keys).union(steps.keys) {
            guard steps[parameter] != nil else {
                throw RecurError.invalidArgument(operation: operation, detail: "'\(parameter)' has no '\(parameter).step'")
            }
            let missing = slotNames.filter { tensors[parameter]?[$0] == nil }
            guard missing.isEmpty else {
                throw RecurError.invalidArgument(
                    operation: operation, detail: "'\(parameter)' lacks its state \(missing)")
            }
        }
        slots.tensors = tensors.mapValues { bySlot in slotNames.map { bySlot[$0]! } }
        slots.steps = steps
        slots.stepCount = stepCount
    }

    /// The state of `parameter`, made as zeros on its first update; checks the shapes of state
    /// loaded from a checkpoint.
    private func stateTensors(for parameter: NamedParameter, operation: String) throws -> [Tensor] {
        if let existing = slots.tensors[parameter.name] {
            for (slot, tensor) in zip(slotNames, existing) where tensor.shape != parameter.value.shape {
                throw RecurError.shapeMismatch(
                    operation: operation,
                    detail: "state '\(parameter.name).\(slot)' is \(tensor.shape), the parameter is \(parameter.value.shape)")
            }
            return existing
        }
        let created = try slotNames.map { _ in try backend.zeros(parameter.value.shape) }
        slots.tensors[parameter.name] = created
        return created
    }

    /// The value of an int32 `[1]` step count.
    private func count(_ entry: NamedTensor, operation: String) throws -> Int {
        guard entry.tensor.dtype == .int32, entry.tensor.count == 1 else {
            throw RecurError.invalidArgument(
                operation: operation, detail: "'\(entry.name)' must be one int32, got \(entry.tensor)")
        }
        let value = Int(try entry.tensor.backend.downloadInt32(entry.tensor)[0])
        guard value >= 0 else {
            throw RecurError.invalidArgument(operation: operation, detail: "'\(entry.name)' is negative: \(value)")
        }
        return value
    }

    /// A copy of `tensor` on this optimizer's backend, so the caller's tensor stays its own.
    private func onThisBackend(_ tensor: Tensor) throws -> Tensor {
        if tensor.backend === backend {
            let copy = try backend.zeros(tensor.shape)
            try backend.copy(tensor, sourceOffset: 0, into: copy, destinationOffset: 0, count: tensor.count)
            return copy
        }
        return try backend.upload(try tensor.backend.download(tensor), shape: tensor.shape)
    }
}
