import Testing
@testable import Recur

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The fused losses on every backend: against values PyTorch computed, against a float64
// reference at sizes that are not multiples of any work-group, against finite differences of the
// backend's own loss, and OpenCL against the CPU backend.

private let sizes = [1, 7, 257]

// MARK: Float64 references

// `TrainingReference` on float32 inputs, the gradient rounded to float32 for `assertClose`.

private func sigmoidCrossEntropyReference(_ x: [Float], _ y: [Float]) -> (loss: Double, gradient: [Float]) {
    let result = TrainingReference.sigmoidCrossEntropy(logits: x.map(Double.init), targets: y.map(Double.init))
    return (result.loss, result.gradient.map(Float.init))
}

private func softmaxCrossEntropyReference(_ x: [Float], classes: Int, _ targets: [Int32], ignoreIndex: Int32?)
    -> (loss: Double, gradient: [Float])
{
    let result = TrainingReference.softmaxCrossEntropy(logits: x.map(Double.init), classes: classes, targets: targets,
                                                       ignoreIndex: ignoreIndex)
    return (result.loss, result.gradient.map(Float.init))
}

private func meanSquaredErrorReference(_ p: [Float], _ y: [Float]) -> (loss: Double, gradient: [Float]) {
    let result = TrainingReference.meanSquaredError(predictions: p.map(Double.init), targets: y.map(Double.init))
    return (result.loss, result.gradient.map(Float.init))
}

// MARK: Running a loss

/// Which loss a check runs.
enum TrainingLossCase: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sigmoidCrossEntropy
    case softmaxCrossEntropy
    case softmaxCrossEntropyIgnoringZero
    case meanSquaredError

    var testDescription: String { rawValue }

    var loss: Loss {
        switch self {
        case .sigmoidCrossEntropy: .sigmoidCrossEntropy
        case .softmaxCrossEntropy: .softmaxCrossEntropy(ignoreIndex: nil)
        case .softmaxCrossEntropyIgnoringZero: .softmaxCrossEntropy(ignoreIndex: 0)
        case .meanSquaredError: .meanSquaredError
        }
    }
}

/// Runs `loss` on host values; returns the loss slot and the gradient. The loss goes into slot 1 of
/// a 3-slot tensor whose other slots must stay untouched.
private func runLoss(_ loss: Loss, on backend: any Backend, input: [Float], shape: Shape, floatTargets: [Float] = [],
                     classTargets: [Int32] = []) throws -> (loss: Float, gradient: [Float]) {
    let output = try backend.upload(input, shape: shape)
    let targets = classTargets.isEmpty
        ? try backend.upload(floatTargets, shape: shape)
        : try backend.upload(classTargets, shape: [classTargets.count])
    let slots = try backend.upload([7, -1, 9] as [Float], shape: [3])
    let gradient = try loss.evaluate(output: output, targets: targets, loss: slots, at: 1)
    let values = try backend.download(slots)
    #expect(values[0] == 7 && values[2] == 9, "\(loss): slots beside the loss's slot changed: \(values)")
    return (values[1], try backend.download(gradient))
}

@Suite("Training losses")
struct TrainingLossTests {
    // MARK: PyTorch

    // Expected values from PyTorch 2.15.0 (CPU, float32), tools/training_reference.py:
    //   torch.nn.BCEWithLogitsLoss()(logits, targets), torch.nn.CrossEntropyLoss(ignore_index=0)
    //   and CrossEntropyLoss() on the same rows, torch.nn.MSELoss(); loss.backward() for the
    //   gradients. Logits of ±30 and ±100 check that nothing overflows.

    @Test(arguments: TestBackend.allCases)
    func sigmoidCrossEntropyMatchesPyTorch(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        let logits: [Float] = [0.3, -1.2, 4.0, -30.0, 100.0, -100.0, 0.0]
        let targets: [Float] = [1.0, 0.0, 0.25, 1.0, 0.0, 0.0, 0.5]
        let result = try runLoss(.sigmoidCrossEntropy, on: backend, input: logits, shape: [7], floatTargets: targets)
        assertClose([result.loss], [19.21841812133789], relativeTolerance: 1e-6, "\(which) BCE loss")
        assertClose(result.gradient, [
            -0.0607939288020134, 0.033067889511585236, 0.10457339137792587, -0.1428571492433548,
            0.1428571492433548, 0.0, 0.0,
        ], relativeTolerance: 1e-6, absoluteTolerance: 1e-8, "\(which) BCE gradient")
    }

    @Test(arguments: TestBackend.allCases)
    func softmaxCrossEntropyMatchesPyTorch(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        let logits: [Float] = [0.5, -1.0, 2.0, 1.5, 0.2, -0.3, -50.0, 60.0, 0.0, 0.1, 0.1, 0.1, 3.0, -2.0, 1.0]
        let targets: [Int32] = [2, 0, 1, 0, 0]
        let ignoring = try runLoss(.softmaxCrossEntropy(ignoreIndex: 0), on: backend, input: logits, shape: [5, 3],
                                   classTargets: targets)
        assertClose([ignoring.loss], [0.12065566331148148], relativeTolerance: 1e-6, "\(which) CE ignoring 0")
        assertClose(ignoring.gradient, [
            0.08764519542455673, 0.019556285813450813, -0.107201486825943, 0, 0, 0, 0, 0, 4.37825544636038e-27,
            0, 0, 0, 0, 0, 0,
        ], relativeTolerance: 1e-6, absoluteTolerance: 1e-8, "\(which) CE gradient ignoring 0")

        let all = try runLoss(.softmaxCrossEntropy(ignoreIndex: nil), on: backend, input: logits, shape: [5, 3],
                              classTargets: targets)
        assertClose([all.loss], [0.36718088388442993], relativeTolerance: 1e-6, "\(which) CE")
        assertClose(all.gradient, [
            0.03505807742476463, 0.00782251451164484, -0.0428805947303772, -0.060901571065187454,
            0.03790874406695366, 0.02299281768500805, 0.0, 0.0, 1.751302217062751e-27, -0.13333334028720856,
            0.06666666269302368, 0.06666666269302368, -0.024879885837435722, 0.0011799499625340104,
            0.023699933663010597,
        ], relativeTolerance: 1e-6, absoluteTolerance: 1e-8, "\(which) CE gradient")
    }

    @Test(arguments: TestBackend.allCases)
    func meanSquaredErrorMatchesPyTorch(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        let result = try runLoss(.meanSquaredError, on: backend, input: [0.5, -1.0, 2.0, 3.5, -0.25], shape: [5],
                                 floatTargets: [0.0, -1.5, 2.5, 1.0, 0.25])
        assertClose([result.loss], [1.4500000476837158], relativeTolerance: 1e-6, "\(which) MSE loss")
        assertClose(result.gradient, [0.2, 0.2, -0.2, 1.0, -0.2], relativeTolerance: 1e-6, "\(which) MSE gradient")
    }

    // MARK: Float64 reference

    @Test(arguments: TestBackend.allCases)
    func elementwiseLossesMatchAFloat64Reference(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        var random = SeededGenerator(seed: 21)
        for size in sizes + [4099] {
            let x = random.values(size, -6, 6)
            let y = random.values(size, 0, 1)
            let bce = try runLoss(.sigmoidCrossEntropy, on: backend, input: x, shape: [size], floatTargets: y)
            let bceExpected = sigmoidCrossEntropyReference(x, y)
            assertClose([bce.loss], [Float(bceExpected.loss)], relativeTolerance: 1e-5, "\(which) BCE n=\(size)")
            assertClose(bce.gradient, bceExpected.gradient, relativeTolerance: 1e-5, absoluteTolerance: 1e-9,
                        "\(which) BCE gradient n=\(size)")

            let mse = try runLoss(.meanSquaredError, on: backend, input: x, shape: [size], floatTargets: y)
            let mseExpected = meanSquaredErrorReference(x, y)
            assertClose([mse.loss], [Float(mseExpected.loss)], relativeTolerance: 1e-5, "\(which) MSE n=\(size)")
            assertClose(mse.gradient, mseExpected.gradient, relativeTolerance: 1e-6, absoluteTolerance: 1e-9,
                        "\(which) MSE gradient n=\(size)")
        }
    }

    /// Rows × classes on both sides of the per-item / per-group switch (64 classes), with and
    /// without an ignored index.
    @Test(arguments: TestBackend.allCases)
    func softmaxCrossEntropyMatchesAFloat64Reference(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        var random = SeededGenerator(seed: 22)
        for (rows, classes) in [(1, 1), (7, 1), (1, 7), (257, 7), (7, 257), (1, 257), (257, 65)] {
            let x = random.values(rows * classes, -8, 8)
            let targets = random.ids(rows, below: classes)
            for ignoreIndex in [nil, Int32(0)] as [Int32?] {
                let result = try runLoss(.softmaxCrossEntropy(ignoreIndex: ignoreIndex), on: backend, input: x,
                                         shape: [rows, classes], classTargets: targets)
                let expected = softmaxCrossEntropyReference(x, classes: classes, targets, ignoreIndex: ignoreIndex)
                let what = "\(which) CE rows=\(rows) classes=\(classes) ignore=\(String(describing: ignoreIndex))"
                assertClose([result.loss], [Float(expected.loss)], relativeTolerance: 1e-5, absoluteTolerance: 1e-6, what)
                assertClose(result.gradient, expected.gradient, relativeTolerance: 1e-4, absoluteTolerance: 1e-7,
                            "\(what) gradient")
            }
        }
    }

    /// Logits `[T, B, V]` with targets `[T, B]`: the layout of a language model's output.
    @Test(arguments: TestBackend.allCases)
    func softmaxCrossEntropyReadsTheLastAxisAsClasses(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        var random = SeededGenerator(seed: 23)
        let (steps, batch, vocabulary) = (3, 2, 5)
        let x = random.values(steps * batch * vocabulary, -2, 2)
        let targets: [Int32] = [1, 0, 4, 2, 0, 3]  // [T, B], 0 is padding
        let logits = try backend.upload(x, shape: [steps, batch, vocabulary])
        let gradient = try backend.zeros([steps, batch, vocabulary])
        let slot = try backend.zeros([1])
        try backend.softmaxCrossEntropy(logits: logits, targets: try backend.upload(targets, shape: [steps, batch]),
                                        ignoreIndex: 0, gradient: gradient, loss: slot, at: 0)
        let expected = softmaxCrossEntropyReference(x, classes: vocabulary, targets, ignoreIndex: 0)
        assertClose(try backend.download(slot), [Float(expected.loss)], relativeTolerance: 1e-5, "\(which) [T, B, V] loss")
        assertClose(try backend.download(gradient), expected.gradient, relativeTolerance: 1e-5, absoluteTolerance: 1e-7,
                    "\(which) [T, B, V] gradient")
    }

    // MARK: Finite differences

    /// Central differences of the backend's own mean loss (float32, eps = 1e-2; the losses are
    /// smooth, so the truncation error eps² f‴/6 stays near 1e-5 and float32 rounding of a loss of
    /// O(1) divided by 2 eps near 1e-5 too) against the gradient the same call wrote.
    @Test(arguments: TestBackend.allCases, TrainingLossCase.allCases)
    func lossGradientsMatchFiniteDifferences(_ which: TestBackend, _ lossCase: TrainingLossCase) throws {
        guard let backend = try which.backend() else { return }
        var random = SeededGenerator(seed: 24)
        let (rows, classes) = (6, 5)
        let x = random.values(rows * classes, -2, 2)
        let floatTargets = random.values(rows * classes, 0, 1)
        var classTargets = random.ids(rows, below: classes)
        classTargets[1] = 0
        classTargets[4] = 0  // ignored rows when the index is 0
        let usesClasses = lossCase == .softmaxCrossEntropy || lossCase == .softmaxCrossEntropyIgnoringZero
        func run(_ values: [Float]) throws -> (loss: Float, gradient: [Float]) {
            try runLoss(lossCase.loss, on: backend, input: values, shape: [rows, classes],
                        floatTargets: usesClasses ? [] : floatTargets, classTargets: usesClasses ? classTargets : [])
        }
        let analytic = try run(x).gradient
        let numeric = try trainingNumericGradient(x, eps: 1e-2) { Double(try run($0).loss) }
        expectGradientsMatch(numeric: numeric, analytic: analytic, absolute: 2e-4, relative: 1e-2,
                             "\(which) \(lossCase)")
        if lossCase == .softmaxCrossEntropyIgnoringZero {
            #expect(analytic[(1 * classes)..<(2 * classes)].allSatisfy { $0 == 0 }, "ignored row 1 has a gradient")
            #expect(analytic[(4 * classes)..<(5 * classes)].allSatisfy { $0 == 0 }, "ignored row 4 has a gradient")
        }
    }

    // MARK: Edge cases

    @Test(arguments: TestBackend.allCases)
    func everyTargetIgnoredGivesZeroLossAndGradient(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        let result = try runLoss(.softmaxCrossEntropy(ignoreIndex: 0), on: backend, input: [1, 2, 3, 4, 5, 6],
                                 shape: [2, 3], classTargets: [0, 0])
        #expect(result.loss == 0)
        #expect(result.gradient == [Float](repeating: 0, count: 6))
    }

    @Test(arguments: TestBackend.allCases)
    func aTargetOutsideTheClassesThrowsNamingItsPosition(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        for (targets, ignoreIndex) in [([0, 3, 1], nil), ([-100, 1, 3], Int32(-100)), ([1, 2, -1], nil)] as [([Int32], Int32?)] {
            let position = targets.firstIndex { $0 != ignoreIndex && !(0..<3).contains($0) }!
            expectRecurError("\(which) target \(targets)", matches: { error in
                guard case .invalidArgument(_, let detail) = error else { return false }
                return detail.contains("target \(targets[position]) at position \(position)")
            }) {
                _ = try runLoss(.softmaxCrossEntropy(ignoreIndex: ignoreIndex), on: backend,
                                input: [Float](repeating: 0.5, count: 9), shape: [3, 3], classTargets: targets)
            }
        }
        // PyTorch's default ignore index, -100, is accepted as a target when it is the one ignored.
        let result = try runLoss(.softmaxCrossEntropy(ignoreIndex: -100), on: backend, input: [0, 1, 2, 3, 4, 5],
                                 shape: [2, 3], classTargets: [-100, 2])
        #expect(result.gradient[0..<3].allSatisfy { $0 == 0 })
    }

    @Test(arguments: TestBackend.allCases)
    func mismatchedShapesThrow(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        let logits = try backend.zeros([4, 3])
        let slot = try backend.zeros([1])
        expectRecurError("\(which) targets of the wrong count", matches: { error in
            if case .shapeMismatch = error { return true }
            return false
        }) {
            try backend.softmaxCrossEntropy(logits: logits, targets: try backend.upload([Int32](repeating: 0, count: 3), shape: [3]),
                                            ignoreIndex: nil, gradient: try backend.zeros([4, 3]), loss: slot, at: 0)
        }
        expectRecurError("\(which) loss slot outside", matches: { error in
            if case .invalidArgument = error { return true }
            return false
        }) {
            try backend.meanSquaredError(predictions: logits, targets: try backend.zeros([4, 3]),
                                         gradient: try backend.zeros([4, 3]), loss: slot, at: 1)
        }
    }

    // MARK: OpenCL against CPU

    @Test func openCLMatchesCPUOnEveryLoss() throws {
        guard let openCL = try TestBackends.openCL() else { return }
        let cpu = TestBackends.cpu
        var random = SeededGenerator(seed: 25)
        for size in sizes {
            let x = random.values(size, -10, 10)
            let y = random.values(size, 0, 1)
            for loss in [Loss.sigmoidCrossEntropy, .meanSquaredError] {
                let onCPU = try runLoss(loss, on: cpu, input: x, shape: [size], floatTargets: y)
                let onOpenCL = try runLoss(loss, on: openCL, input: x, shape: [size], floatTargets: y)
                assertClose([onOpenCL.loss], [onCPU.loss], relativeTolerance: 1e-5, "OpenCL vs CPU \(loss) n=\(size)")
                assertClose(onOpenCL.gradient, onCPU.gradient, relativeTolerance: 1e-5, absoluteTolerance: 1e-9,
                            "OpenCL vs CPU \(loss) gradient n=\(size)")
            }
            for classes in sizes {
                let logits = random.values(size * classes, -10, 10)
                let targets = random.ids(size, below: classes)
                for ignoreIndex in [nil, Int32(0)] as [Int32?] {
                    let loss = Loss.softmaxCrossEntropy(ignoreIndex: ignoreIndex)
                    let onCPU = try runLoss(loss, on: cpu, input: logits, shape: [size, classes], classTargets: targets)
                    let onOpenCL = try runLoss(loss, on: openCL, input: logits, shape: [size, classes],
                                               classTargets: targets)
                    let what = "OpenCL vs CPU \(loss) rows=\(size) classes=\(classes)"
                    assertClose([onOpenCL.loss], [onCPU.loss], relativeTolerance: 1e-5, absoluteTolerance: 1e-6, what)
                    assertClose(onOpenCL.gradient, onCPU.gradient, relativeTolerance: 1e-4, absoluteTolerance: 1e-8,
                                "\(what) gradient")
                }
            }
        }
    }
}
