import Testing
@testable import Recur

#if canImport(Glibc)
import Glibc
#endif

// Class weights: the balanced weights from counts, the weighted cross-entropies against hand
// computations on every backend, OpenCL against the CPU backend, gradients against finite
// differences.

/// Runs a cross-entropy with per-example weights; returns the loss and the gradient.
private func runWeighted(_ loss: Loss, on backend: any Backend, input: [Float], shape: Shape, weights: [Float],
                         floatTargets: [Float] = [], classTargets: [Int32] = []) throws -> (loss: Float, gradient: [Float]) {
    let output = try backend.upload(input, shape: shape)
    let targets = classTargets.isEmpty
        ? try backend.upload(floatTargets, shape: shape)
        : try backend.upload(classTargets, shape: [classTargets.count])
    let slot = try backend.zeros([1])
    let gradient = try loss.evaluate(output: output, targets: targets,
                                     weights: try backend.upload(weights, shape: [weights.count]), loss: slot, at: 0)
    return (try backend.download(slot)[0], try backend.download(gradient))
}

@Suite("Class weights")
struct ClassWeightTests {
    @Test func balancedWeightsAreNOverKTimesTheClassCount() throws {
        // N = 9, K = 3: 9 / (3 · 6), 9 / (3 · 2), 9 / (3 · 1).
        #expect(try ClassWeights.balanced(counts: [6, 2, 1]) == [0.5, 1.5, 3])
        // N = 8, K = 2: 8 / (2 · 7), 8 / (2 · 1).
        #expect(try ClassWeights.balanced(counts: [7, 1]) == [Float(8.0 / 14.0), 4])
        #expect(try ClassWeights.balanced(counts: [5, 5]) == [1, 1])
        #expect(throws: RecurError.self) { try ClassWeights.balanced(counts: [3, 0]) }
        #expect(throws: RecurError.self) { try ClassWeights.balanced(counts: [3]) }

        let data = try markerExamples(count: 40, vocabulary: 12, steps: 5, seed: 8)
        let ones = data.labels.count { $0 == 1 }
        #expect(ClassWeights.counts(in: data, classes: 2) == [40 - ones, ones])
    }

    @Test(arguments: TestBackend.allCases)
    func weightedSoftmaxCrossEntropyMatchesAHandComputation(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        // Rows (0, 0), (1, 0), (0, 2) with targets 0, 1, 1 and weights 1, 2, 3:
        //   ℓ_0 = log 2, ℓ_1 = log(e + 1) − 0, ℓ_2 = log(1 + e²) − 2
        //   L = (1 ℓ_0 + 2 ℓ_1 + 3 ℓ_2) / 6, dL/dx_nc = w_n (p_nc − [c = y_n]) / 6.
        let e = M_E
        let losses = [log(2.0), log(e + 1), log(1 + e * e) - 2]
        let expectedLoss = (losses[0] + 2 * losses[1] + 3 * losses[2]) / 6
        let p1 = e / (e + 1), p2 = 1 / (1 + e * e)  // p(class 0) of rows 1 and 2
        let rowGradients: [[Double]] = [[0.5 - 1, 0.5], [p1, (1 - p1) - 1], [p2, (1 - p2) - 1]]
        let rowWeights: [Double] = [1, 2, 3]
        var expectedGradient: [Float] = []
        for (row, weight) in zip(rowGradients, rowWeights) {
            expectedGradient += row.map { Float(weight * $0 / 6) }
        }
        let result = try runWeighted(.softmaxCrossEntropy(ignoreIndex: nil), on: backend, input: [0, 0, 1, 0, 0, 2],
                                     shape: [3, 2], weights: [1, 2, 3], classTargets: [0, 1, 1])
        assertClose([result.loss], [Float(expectedLoss)], relativeTolerance: 1e-6, "\(which) weighted CE")
        assertClose(result.gradient, expectedGradient, relativeTolerance: 1e-6, absoluteTolerance: 1e-8,
                    "\(which) weighted CE gradient")

        // An ignored row counts neither in the sum nor in the total weight: row 0 ignored leaves
        // (2 ℓ_1 + 3 ℓ_2) / 5.
        let ignoring = try runWeighted(.softmaxCrossEntropy(ignoreIndex: 0), on: backend, input: [0, 0, 1, 0, 0, 2],
                                       shape: [3, 2], weights: [1, 2, 3], classTargets: [0, 1, 1])
        assertClose([ignoring.loss], [Float((2 * losses[1] + 3 * losses[2]) / 5)], relativeTolerance: 1e-6,
                    "\(which) weighted CE ignoring 0")
        // Equal weights give the unweighted mean.
        let equal = try runWeighted(.softmaxCrossEntropy(ignoreIndex: nil), on: backend, input: [0, 0, 1, 0, 0, 2],
                                    shape: [3, 2], weights: [4, 4, 4], classTargets: [0, 1, 1])
        assertClose([equal.loss], [Float(losses.reduce(0, +) / 3)], relativeTolerance: 1e-6, "\(which) equal weights")
    }

    @Test(arguments: TestBackend.allCases)
    func weightedSigmoidCrossEntropyMatchesAHandComputation(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        // x = (0, 2, −1), y = (1, 0, 1), w = (0.5, 2, 1): ℓ_i = log(1 + e^x) − x y, so
        //   ℓ = (log 2, log(1 + e²), log(1 + e^−1) + 1), L = Σ w_i ℓ_i / 3.5,
        //   dL/dx_i = w_i (σ(x_i) − y_i) / 3.5.
        let x = [0.0, 2, -1], y = [1.0, 0, 1], w = [0.5, 2, 1]
        let terms = (0..<3).map { log(1 + exp(x[$0])) - x[$0] * y[$0] }
        let expectedLoss = (0..<3).reduce(0) { $0 + w[$1] * terms[$1] } / 3.5
        let expectedGradient = (0..<3).map { Float(w[$0] * (1 / (1 + exp(-x[$0])) - y[$0]) / 3.5) }
        let result = try runWeighted(.sigmoidCrossEntropy, on: backend, input: x.map(Float.init), shape: [3, 1],
                                     weights: w.map(Float.init), floatTargets: y.map(Float.init))
        assertClose([result.loss], [Float(expectedLoss)], relativeTolerance: 1e-6, "\(which) weighted BCE")
        assertClose(result.gradient, expectedGradient, relativeTolerance: 1e-6, absoluteTolerance: 1e-8,
                    "\(which) weighted BCE gradient")
    }

    @Test(arguments: TestBackend.allCases)
    func weightedGradientsMatchFiniteDifferences(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        var random = SeededGenerator(seed: 41)
        // Central differences of the backend's own loss: (L(x + h e_j) − L(x − h e_j)) / 2h.
        func check(_ loss: Loss, shape: Shape, input: [Float], weights: [Float], floatTargets: [Float] = [],
                   classTargets: [Int32] = []) throws {
            let analytic = try runWeighted(loss, on: backend, input: input, shape: shape, weights: weights,
                                           floatTargets: floatTargets, classTargets: classTargets).gradient
            let h: Float = 1e-2
            var numeric: [Float] = []
            for j in input.indices {
                var plus = input, minus = input
                plus[j] += h
                minus[j] -= h
                let up = try runWeighted(loss, on: backend, input: plus, shape: shape, weights: weights,
                                         floatTargets: floatTargets, classTargets: classTargets).loss
                let down = try runWeighted(loss, on: backend, input: minus, shape: shape, weights: weights,
                                           floatTargets: floatTargets, classTargets: classTargets).loss
                numeric.append((up - down) / (2 * h))
            }
            assertClose(analytic, numeric, relativeTolerance: 2e-2, absoluteTolerance: 2e-4, "\(which) \(loss) gradient")
        }
        try check(.sigmoidCrossEntropy, shape: [6, 1], input: random.values(6, -3, 3), weights: random.values(6, 0.2, 3),
                  floatTargets: random.ids(6, below: 2).map(Float.init))
        try check(.softmaxCrossEntropy(ignoreIndex: nil), shape: [5, 3], input: random.values(15, -3, 3),
                  weights: random.values(5, 0.2, 3), classTargets: random.ids(5, below: 3))
    }

    @Test func openCLMatchesCPUWithWeights() throws {
        guard let openCL = try TestBackends.openCL() else { return }
        let cpu = TestBackends.cpu
        var random = SeededGenerator(seed: 43)
        for size in [1, 7, 257] {
            let x = random.values(size, -10, 10)
            let y = random.ids(size, below: 2).map(Float.init)
            let w = random.values(size, 0.1, 5)
            let onCPU = try runWeighted(.sigmoidCrossEntropy, on: cpu, input: x, shape: [size, 1], weights: w, floatTargets: y)
            let onOpenCL = try runWeighted(.sigmoidCrossEntropy, on: openCL, input: x, shape: [size, 1], weights: w,
                                           floatTargets: y)
            assertClose([onOpenCL.loss], [onCPU.loss], relativeTolerance: 1e-5, "OpenCL vs CPU weighted BCE n=\(size)")
            assertClose(onOpenCL.gradient, onCPU.gradient, relativeTolerance: 1e-5, absoluteTolerance: 1e-9,
                        "OpenCL vs CPU weighted BCE gradient n=\(size)")
            // 3 classes take a work-item per row, 70 a work-group per row.
            for classes in [3, 70] {
                let logits = random.values(size * classes, -10, 10)
                let targets = random.ids(size, below: classes)
                for ignoreIndex in [nil, Int32(0)] as [Int32?] {
                    let loss = Loss.softmaxCrossEntropy(ignoreIndex: ignoreIndex)
                    let onCPU = try runWeighted(loss, on: cpu, input: logits, shape: [size, classes], weights: w,
                                                classTargets: targets)
                    let onOpenCL = try runWeighted(loss, on: openCL, input: logits, shape: [size, classes], weights: w,
                                                   classTargets: targets)
                    let what = "OpenCL vs CPU weighted \(loss) rows=\(size) classes=\(classes)"
                    assertClose([onOpenCL.loss], [onCPU.loss], relativeTolerance: 1e-5, absoluteTolerance: 1e-6, what)
                    assertClose(onOpenCL.gradient, onCPU.gradient, relativeTolerance: 1e-4, absoluteTolerance: 1e-7,
                                "\(what) gradient")
                }
            }
        }
    }

    @Test func weightsOfTheWrongCountOrForAnotherTaskAreRefused() throws {
        let backend = TestBackends.cpu
        #expect(throws: RecurError.self) {
            _ = try runWeighted(.softmaxCrossEntropy(ignoreIndex: nil), on: backend, input: [0, 0, 1, 0], shape: [2, 2],
                                weights: [1, 2, 3], classTargets: [0, 1])
        }
        var configuration = markerConfiguration(epochs: 1)
        configuration.classWeights = [1, 2, 3]  // the marker model has 2 classes
        #expect(throws: RecurError.self) {
            _ = try Trainer(specification: markerSpecification, configuration: configuration, backend: backend)
        }
        configuration.classWeights = [1, -2]
        #expect(throws: RecurError.self) {
            _ = try Trainer(specification: markerSpecification, configuration: configuration, backend: backend)
        }
    }

    @Test func aWeightedTrainerReportsTheWeightedLossAndUnweightedAccuracy() throws {
        let data = try markerExamples(count: 48, vocabulary: 12, steps: 5, seed: 12)
        var configuration = markerConfiguration(epochs: 1)
        let plain = try Trainer(specification: markerSpecification, configuration: configuration, backend: TestBackends.cpu)
        configuration.classWeights = [1, 3]
        let weighted = try Trainer(specification: markerSpecification, configuration: configuration,
                                   backend: TestBackends.cpu)
        // Same initial weights: the loss differs, accuracy does not.
        let before = try plain.evaluate(data), weightedBefore = try weighted.evaluate(data)
        #expect(before["accuracy"] == weightedBefore["accuracy"])
        // The weighted loss by hand from the logits: Σ w_y ℓ / Σ w_y.
        let logits = try weighted.predict(data)
        var (sum, total) = (0.0, 0.0)
        for (logit, label) in zip(logits.map(Double.init), data.labels) {
            let weight = label == 1 ? 3.0 : 1.0
            sum += weight * (log(1 + exp(logit)) - logit * Double(label))
            total += weight
        }
        #expect(abs(weightedBefore["loss"]! - sum / total) < 1e-6, "\(weightedBefore["loss"]!) vs \(sum / total)")
    }
}
