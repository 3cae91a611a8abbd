// The fused losses (Kernels/loss.cl), optimizer steps and clipping ops (Kernels/optimizer.cl) on
// OpenCL. Each matches CPUBackend+Training.swift within float32 rounding.
//
// Shape legend: N elements (or rows), C classes, G = reduceGroupSize work-items per group.

extension KernelFamily {
    static let loss = KernelFamily(name: "loss")
    static let optimizer = KernelFamily(name: "optimizer")
}

extension OpenCLBackend {
    // MARK: Losses

    public func sigmoidCrossEntropy(logits: Tensor, targets: Tensor, weights: Tensor?, gradient: Tensor,
                                    loss: Tensor, at index: Int) throws {
        let count = try checkElementwiseLoss(
            "sigmoidCrossEntropy", input: logits, targets: targets, gradient: gradient, loss: loss, at: index)
        try checkLossWeights("sigmoidCrossEntropy", weights, count: count)
        guard let weights else {
            try elementwiseLoss("sigmoid_cross_entropy_partial", logits, targets, gradient, count: count, loss: loss,
                                at: index)
            return
        }
        let kernel = "weighted_sigmoid_cross_entropy_partial"
        try checkIndexable(kernel, [logits, targets, weights, gradient, loss])
        let losses = try program(.loss)
        let groupSize = reduceGroupSize
        let groups = min(max(1, device.computeUnits) * 8, (count + groupSize - 1) / groupSize, 1024)
        let partials = try zeros([groups])  // [groups]
        let totals = try zeros([1])  // [0]: W = Σ w_i, read by every group
        try losses.launch(
            "loss_sum_final", globalSize: [groupSize], localSize: [groupSize],
            arguments: [.tensor(weights), .int(0), .int(count), .tensor(totals), .int(0)])
        try losses.launch(
            kernel, globalSize: [groups * groupSize], localSize: [groupSize],
            arguments: [.tensor(logits), .tensor(targets), .tensor(weights), .tensor(gradient), .int(count),
                        .tensor(totals), .tensor(partials)])
        try losses.launch(
            "loss_sum_final", globalSize: [groupSize], localSize: [groupSize],
            arguments: [.tensor(partials), .int(0), .int(groups), .tensor(loss), .int(index)])
    }

    public func meanSquaredError(predictions: Tensor, targets: Tensor, gradient: Tensor, loss: Tensor,
                                 at index: Int) throws {
        let count = try checkElementwiseLoss(
            "meanSquaredError", input: predictions, targets: targets, gradient: gradient, loss: loss, at: index)
        try elementwiseLoss("mean_squared_error_partial", predictions, targets, gradient, count: count, loss: loss,
                            at: index)
    }

    /// Stage 1 (`kernel`: gradient and per-group partial sums, already divided by N), then stage 2
    /// (their sum into the loss slot).
    private func elementwiseLoss(_ kernel: String, _ input: Tensor, _ targets: Tensor, _ gradient: Tensor,
                                 count: Int, loss: Tensor, at index: Int) throws {
        try checkIndexable(kernel, [input, targets, gradient, loss])
        let losses = try program(.loss)
        let groupSize = reduceGroupSize
        // A fixed number of groups per device and size keeps the summation order, and so the
        // result, the same from run to run.
        let groups = min(max(1, device.computeUnits) * 8, (count + groupSize - 1) / groupSize, 1024)
        let partials = try zeros([groups])  // [groups]
        try losses.launch(
            kernel, globalSize: [groups * groupSize], localSize: [groupSize],
            arguments: [.tensor(input), .tensor(targets), .tensor(gradient), .int(count),
                        .float(1 / Float(count)), .tensor(partials)])
        try losses.launch(
            "loss_sum_final", globalSize: [groupSize], localSize: [groupSize],
            arguments: [.tensor(partials), .int(0), .int(groups), .tensor(loss), .int(index)])
    }

    public func softmaxCrossEntropy(logits: Tensor, targets: Tensor, ignoreIndex: Int32?, weights: Tensor?,
                                    gradient: Tensor, loss: Tensor, at index: Int) throws {
        let operation = "softmaxCrossEntropy"
        let (rows, classes) = try checkSoftmaxCrossEntropy(
            logits: logits, targets: targets, gradient: gradient, loss: loss, at: index)
        try checkLossWeights(operation, weights, count: rows)
        try checkIndexable(operation, [logits, targets, gradient, loss] + (weights.map { [$0] } ?? []))
        guard rows <= 1 << 24 else {
            throw RecurError.invalidArgument(
                operation: operation, detail: "\(rows) rows: the kernels count kept rows exactly up to 2^24")
        }
        // The id range recorded at upload answers the check without a read-back; read the targets
        // only when it is unknown or reaches outside the classes, to name the offending position.
        let range = targets.openCLBuffer.int32Range
        let withinClasses = range.map { $0.lowerBound >= 0 && Int($0.upperBound) < classes } ?? false
        if !withinClasses {
            try checkClassTargets(try downloadInt32(targets), classes: classes, ignoreIndex: ignoreIndex)
        }

        let losses = try program(.loss)
        let groupSize = reduceGroupSize
        let scratch = try zeros([1 + rows])  // [0]: M; [1 + n]: row n's share of the loss
        let (ignored, hasIgnoreIndex) = (Int(ignoreIndex ?? 0), ignoreIndex == nil ? 0 : 1)
        // Without weights the kernels never read the weights argument; the logits stand in.
        let (weightArgument, hasWeights) = (weights ?? logits, weights == nil ? 0 : 1)
        try losses.launch(
            "softmax_cross_entropy_count", globalSize: [groupSize], localSize: [groupSize],
            arguments: [.tensor(targets), .int(rows), .int(ignored), .int(hasIgnoreIndex), .tensor(weightArgument),
                        .int(hasWeights), .tensor(scratch)])
        let rowArguments: [KernelArgument] = [
            .tensor(logits), .tensor(targets), .tensor(gradient), .int(rows), .int(classes), .int(ignored),
            .int(hasIgnoreIndex), .tensor(weightArgument), .int(hasWeights), .tensor(scratch),
        ]
        // A row of a few classes leaves most of a work-group idle: one work-item per row then.
        let fewClasses = classes < 64
        if fewClasses {
            try losses.launch("softmax_cross_entropy_rows_per_item", globalSize: [rows], arguments: rowArguments)
        } else {
            try losses.launch(
                "softmax_cross_entropy_rows_per_group", globalSize: [rows * groupSize], localSize: [groupSize],
                arguments: rowArguments)
        }
        try losses.launch(
            "loss_sum_final", globalSize: [groupSize], localSize: [groupSize],
            arguments: [.tensor(scratch), .int(1), .int(rows), .tensor(loss), .int(index)])
    }

    // MARK: Optimizer steps

    public func sgdStep(parameter: Tensor, gradient: Tensor, momentumBuffer: Tensor?,
                        hyperparameters h: SGDUpdate) throws {
        try checkSGD(parameter: parameter, gradient: gradient, momentumBuffer: momentumBuffer, hyperparameters: h)
        try checkIndexable("sgdStep", [parameter])
        let count = parameter.count
        if let momentumBuffer {
            try launch(.optimizer, "sgd_momentum_step", count: count, arguments: [
                .tensor(parameter), .tensor(gradient), .tensor(momentumBuffer), .int(count),
                .float(h.learningRate), .float(h.momentum), .float(h.dampening), .float(h.weightDecay),
                .int(h.nesterov ? 1 : 0), .int(h.isFirstStep ? 1 : 0),
            ])
        } else {
            try launch(.optimizer, "sgd_step", count: count, arguments: [
                .tensor(parameter), .tensor(gradient), .int(count), .float(h.learningRate), .float(h.weightDecay),
            ])
        }
    }

    public func adamStep(parameter: Tensor, gradient: Tensor, squaredGradient: Tensor?, firstMoment: Tensor,
                         secondMoment: Tensor, hyperparameters h: AdamUpdate) throws {
        try checkAdam(parameter: parameter, gradient: gradient, squaredGradient: squaredGradient,
                      firstMoment: firstMoment, secondMoment: secondMoment, hyperparameters: h)
        try checkIndexable("adamStep", [parameter])
        let count = parameter.count
        if let squaredGradient {
            try launch(.optimizer, "adam_squares_step", count: count, arguments: [
                .tensor(parameter), .tensor(gradient), .tensor(squaredGradient), .tensor(firstMoment),
                .tensor(secondMoment), .int(count), .float(h.decayFactor), .float(h.beta1), .float(h.beta2),
                .float(h.stepSize), .float(h.secondMomentCorrection), .float(h.epsilon),
            ])
            return
        }
        try launch(.optimizer, "adam_step", count: count, arguments: [
            .tensor(parameter), .tensor(gradient), .tensor(firstMoment), .tensor(secondMoment), .int(count),
            .float(h.decayFactor), .float(h.gradientWeightDecay), .float(h.beta1), .float(h.beta2),
            .float(h.stepSize), .float(h.secondMomentCorrection), .float(h.epsilon),
        ])
    }

    public func rmsPropStep(parameter: Tensor, gradient: Tensor, squaredGradient: Tensor?, squareAverage: Tensor,
                            momentumBuffer: Tensor?, hyperparameters h: RMSPropUpdate) throws {
        try checkRMSProp(parameter: parameter, gradient: gradient, squaredGradient: squaredGradient,
                         squareAverage: squareAverage, momentumBuffer: momentumBuffer, hyperparameters: h)
        try checkIndexable("rmsPropStep", [parameter])
        let count = parameter.count
        switch (squaredGradient, momentumBuffer) {
        case let (squares?, buffer?):
            try launch(.optimizer, "rmsprop_momentum_squares_step", count: count, arguments: [
                .tensor(parameter), .tensor(gradient), .tensor(squares), .tensor(squareAverage), .tensor(buffer),
                .int(count), .float(h.learningRate), .float(h.alpha), .float(h.epsilon), .float(h.momentum),
            ])
            return
        case let (squares?, nil):
            try launch(.optimizer, "rmsprop_squares_step", count: count, arguments: [
                .tensor(parameter), .tensor(gradient), .tensor(squares), .tensor(squareAverage), .int(count),
                .float(h.learningRate), .float(h.alpha), .float(h.epsilon),
            ])
            return
        case (nil, _):
            break
        }
        if let momentumBuffer {
            try launch(.optimizer, "rmsprop_momentum_step", count: count, arguments: [
                .tensor(parameter), .tensor(gradient), .tensor(squareAverage), .tensor(momentumBuffer), .int(count),
                .float(h.learningRate), .float(h.alpha), .float(h.epsilon), .float(h.weightDecay),
                .float(h.momentum),
            ])
        } else {
            try launch(.optimizer, "rmsprop_step", count: count, arguments: [
                .tensor(parameter), .tensor(gradient), .tensor(squareAverage), .int(count),
                .float(h.learningRate), .float(h.alpha), .float(h.epsilon), .float(h.weightDecay),
            ])
        }
    }

    // MARK: Clipping and constraints

    public func clamp(_ x: Tensor, minimum: Float, maximum: Float) throws {
        try checkClamp(x, minimum: minimum, maximum: maximum)
        try checkIndexable("clamp", [x])
        try launch(.optimizer, "clamp_values", count: x.count,
                   arguments: [.tensor(x), .int(x.count), .float(minimum), .float(maximum)])
    }

    public func constrainRowNorms(_ x: Tensor, rowLength: Int, maxNorm: Float) throws {
        let rows = try checkRowNorms(x, rowLength: rowLength, maxNorm: maxNorm)
        try checkIndexable("constrainRowNorms", [x])
        try launch(.optimizer, "constrain_row_norms", count: rows,
                   arguments: [.tensor(x), .int(rows), .int(rowLength), .float(maxNorm)])
    }
}
