import COpenCL

// Ops over a list of tensors that would otherwise cost one launch per tensor: zeroing a model's
// gradients, the sums of squares and scaling of gradient clipping, and the Adam step. On a GPU a launch costs a few microseconds however little it does,
// and a model has one gradient and one optimizer update per parameter (a stacked bidirectional
// encoder-decoder has dozens), so each op takes one launch per `groupSlots` tensors instead
// (`zero_tensors` and `scale_tensors` in elementwise.cl, `sums_of_squares_partial` and
// `sums_of_squares_final` in reduce.cl, `adam_steps` in optimizer.cl).

extension OpenCLBackend {
    /// Tensors one grouped launch takes: the kernels' slot count.
    static let groupSlots = 8

    public func zero(_ tensors: [Tensor]) throws {
        try checkOperands("zero", tensors)
        try checkIndexable("zero", tensors)
        for group in Self.launchGroups(tensors.map(\.count)) {
            let members = group.map { tensors[$0] }
            let ends = Self.cumulativeEnds(members.map(\.count))
            try launch(.elementwise, "zero_tensors", count: ends.last!, arguments:
                Self.padded(members.map { KernelArgument.tensor($0) }) + ends.map { .int($0) })
        }
    }

    public func scale(_ tensors: [Tensor], by factors: [Float]) throws {
        try checkScales(tensors, factors)
        try checkIndexable("scale", tensors)
        for group in Self.launchGroups(tensors.map(\.count)) {
            let ends = Self.cumulativeEnds(group.map { tensors[$0].count })
            let alphas = group.map { factors[$0] }
            try launch(.elementwise, "scale_tensors", count: ends.last!, arguments:
                Self.padded(group.map { KernelArgument.tensor(tensors[$0]) })
                + (alphas + Array(repeating: alphas.last!, count: Self.groupSlots - alphas.count)).map { .float($0) }
                + ends.map { .int($0) })
        }
    }

    /// A tensor's stage-1 groups and the order of its partials depend only on its size, so each
    /// sum equals `sumOfSquares` of that tensor alone (the one-tensor case) bit for bit.
    public func sumsOfSquares(_ tensors: [Tensor], into out: Tensor, at index: Int) throws {
        try checkSumsOfSquares(tensors, into: out, at: index)
        try checkIndexable("sumsOfSquares", tensors + [out])
        let reduce = try program(.reduce)
        let groupSize = reduceGroupSize
        var first = 0
        for group in Self.launchGroups(tensors.map(\.count)) {
            let members = group.map { tensors[$0] }
            let groupEnds = Self.cumulativeEnds(members.map { min(maximumPartials, ($0.count + groupSize - 1) / groupSize) })
            try sumOfSquaresPartials.withLock { partials in
                try reduce.launch(
                    "sums_of_squares_partial", globalSize: [groupEnds.last! * groupSize], localSize: [groupSize],
                    arguments: Self.padded(members.map { KernelArgument.tensor($0) })
                        + Self.padded(members.map { KernelArgument.int($0.count) }) + groupEnds.map { .int($0) }
                        + [.memory(partials.memory)])
                try reduce.launch(
                    "sums_of_squares_final", globalSize: [members.count * groupSize], localSize: [groupSize],
                    arguments: [.memory(partials.memory)] + groupEnds.map { .int($0) } + [.tensor(out), .int(index + first)])
            }
            first += members.count
        }
    }

    public func adamSteps(_ steps: [AdamStep]) throws {
        try checkAdamSteps(steps)
        try checkIndexable("adamSteps", steps.map(\.parameter))
        // Per-occurrence squares take their own kernel; the rest group by their shared scalars.
        var groups: [AdamSharedScalars: [AdamStep]] = [:]
        var order: [AdamSharedScalars] = []
        for step in steps {
            guard step.squaredGradient == nil else {
                try adamStep(parameter: step.parameter, gradient: step.gradient, squaredGradient: step.squaredGradient,
                             firstMoment: step.firstMoment, secondMoment: step.secondMoment,
                             hyperparameters: step.hyperparameters)
                continue
            }
            let key = AdamSharedScalars(step.hyperparameters)
            if groups[key] == nil { order.append(key) }
            groups[key, default: []].append(step)
        }
        for key in order {
            let members = groups[key]!
            for group in Self.launchGroups(members.map(\.parameter.count)) {
                let slots = group.map { members[$0] }
                let ends = Self.cumulativeEnds(slots.map(\.parameter.count))
                var arguments: [KernelArgument] = []
                for slot in 0..<Self.groupSlots {
                    // An unused slot repeats the last member with the last end: never reached.
                    let step = slots[min(slot, slots.count - 1)]
                    let h = step.hyperparameters
                    arguments += [
                        .tensor(step.parameter), .tensor(step.gradient), .tensor(step.firstMoment),
                        .tensor(step.secondMoment), .int(ends[min(slot, ends.count - 1)]), .float(h.stepSize),
                        .float(h.secondMomentCorrection),
                    ]
                }
                arguments += [.float(key.decayFactor), .float(key.l2), .float(key.beta1), .float(key.beta2),
                              .float(key.epsilon)]
                try launch(.optimizer, "adam_steps", count: ends.last!, arguments: arguments)
            }
        }
    }

    /// Consecutive runs of indices into `counts`, each of at most `groupSlots` tensors whose
    /// counts add up to no more than a kernel index reaches.
    static func launchGroups(_ counts: [Int]) -> [[Int]] {
        var groups: [[Int]] = []
        var current: [Int] = []
        var total = 0
        for (index, count) in counts.enumerated() {
            if current.count == groupSlots || (!current.isEmpty && total + count > Int(Int32.max)) {
                groups.append(current)
                (current, total) = ([], 0)
            }
            current.append(index)
            total += count
        }
        if !current.isEmpty { groups.append(current) }
        return groups
    }

    /// end_s = count_0 + ... + count_s, repeated to `groupSlots` entries.
    static func cumulativeEnds(_ counts: [Int]) -> [Int] {
        var ends: [Int] = []
        var total = 0
        for count in counts {
            total += count
            ends.append(total)
        }
        return ends + Array(repeating: total, count: groupSlots - ends.count)
    }

    /// `arguments` with the last repeated to `groupSlots` entries (an unused slot's buffer).
    static func padded(_ arguments: [KernelArgument]) -> [KernelArgument] {
        arguments + Array(repeating: arguments.last!, count: groupSlots - arguments.count)
    }
}

/// The scalars of an Adam update that one grouped launch shares across its parameters.
private struct AdamSharedScalars: Hashable {
    let decayFactor: Float
    let l2: Float
    let beta1: Float
    let beta2: Float
    let epsilon: Float

    init(_ h: AdamUpdate) {
        (decayFactor, l2, beta1, beta2, epsilon) = (h.decayFactor, h.gradientWeightDecay, h.beta1, h.beta2, h.epsilon)
    }
}
