import Testing
@testable import Recur

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Every op of the Backend protocol, each check written once and run on every backend against a
// host reference (float64 where a sum is involved), plus OpenCL-versus-CPU parity on the same
// inputs. Sizes are deliberately not multiples of any work-group or tile size.

private let sizes = [1, 7, 33, 257]

// MARK: Elementwise op descriptions

/// One elementwise op: how to run it on a backend and what it must compute.
struct ElementwiseCase: Sendable, CustomStringConvertible {
    let name: String
    /// Number of float inputs, each of the test size.
    let inputCount: Int
    /// Runs the op on tensors holding the inputs and returns the tensor holding the result.
    let run: @Sendable (any Backend, [Tensor]) throws -> Tensor
    /// The expected result from the input values.
    let reference: @Sendable ([[Float]]) -> [Float]
    var relativeTolerance: Float = 1e-6
    var absoluteTolerance: Float = 1e-7

    var description: String { name }

    static func zip2(_ inputs: [[Float]], _ f: (Float, Float) -> Float) -> [Float] {
        Swift.zip(inputs[0], inputs[1]).map(f)
    }

    static let all: [ElementwiseCase] = [
        ElementwiseCase(name: "fill", inputCount: 1, run: { backend, x in
            try backend.fill(x[0], with: -2.5)
            return x[0]
        }, reference: { $0[0].map { _ in -2.5 } }),
        ElementwiseCase(name: "add", inputCount: 2, run: { backend, x in
            let out = try backend.zeros(x[0].shape)
            try backend.add(x[0], x[1], into: out)
            return out
        }, reference: { zip2($0, +) }),
        ElementwiseCase(name: "add in place", inputCount: 2, run: { backend, x in
            try backend.add(x[0], x[1], into: x[0])
            return x[0]
        }, reference: { zip2($0, +) }),
        ElementwiseCase(name: "multiply", inputCount: 2, run: { backend, x in
            let out = try backend.zeros(x[0].shape)
            try backend.multiply(x[0], x[1], into: out)
            return out
        }, reference: { zip2($0, *) }),
        ElementwiseCase(name: "axpy", inputCount: 2, run: { backend, x in
            try backend.axpy(alpha: -0.75, x[0], x[1])
            return x[1]
        }, reference: { zip2($0) { x, y in y + -0.75 * x } }),
        ElementwiseCase(name: "scale", inputCount: 1, run: { backend, x in
            try backend.scale(x[0], by: 3.25)
            return x[0]
        }, reference: { $0[0].map { $0 * 3.25 } }),
    ] + Activation.allCases.flatMap(activationCases)

    /// Forward into a new tensor, forward in place, backward into a new tensor, backward in place.
    static func activationCases(_ f: Activation) -> [ElementwiseCase] {
        let forward: @Sendable (Float) -> Float = switch f {
        case .identity: { $0 }
        case .sigmoid: { Float(1 / (1 + exp(-Double($0)))) }
        case .tanh: { Float(tanh(Double($0))) }
        case .relu: { max($0, 0) }
        }
        let derivative: @Sendable (Float) -> Float = switch f {
        case .identity: { _ in 1 }
        case .sigmoid: { y in y * (1 - y) }
        case .tanh: { y in 1 - y * y }
        case .relu: { y in y > 0 ? 1 : 0 }
        }
        return [
            ElementwiseCase(name: "\(f) forward", inputCount: 1, run: { backend, x in
                let y = try backend.zeros(x[0].shape)
                try backend.activate(f, x[0], into: y)
                return y
            }, reference: { $0[0].map(forward) }, relativeTolerance: 1e-5, absoluteTolerance: 1e-6),
            ElementwiseCase(name: "\(f) forward in place", inputCount: 1, run: { backend, x in
                try backend.activate(f, x[0], into: x[0])
                return x[0]
            }, reference: { $0[0].map(forward) }, relativeTolerance: 1e-5, absoluteTolerance: 1e-6),
            ElementwiseCase(name: "\(f) backward", inputCount: 2, run: { backend, x in
                let dx = try backend.zeros(x[0].shape)
                try backend.activationBackward(f, output: x[0], outputGradient: x[1], into: dx)
                return dx
            }, reference: { zip2($0) { y, dy in dy * derivative(y) } }),
            ElementwiseCase(name: "\(f) backward in place", inputCount: 2, run: { backend, x in
                try backend.activationBackward(f, output: x[0], outputGradient: x[1], into: x[1])
                return x[1]
            }, reference: { zip2($0) { y, dy in dy * derivative(y) } }),
        ]
    }
}

@Suite struct BackendOpTests {
    // MARK: Buffers

    @Test(arguments: TestBackend.allCases)
    func zerosAreZeroAndUploadsRoundTrip(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        var random = SeededGenerator(seed: 1)
        for size in sizes {
            let zeros = try backend.zeros([size])
            #expect(try backend.download(zeros) == [Float](repeating: 0, count: size))
            let zeroIDs = try backend.zeros([size], dtype: .int32)
            #expect(try backend.downloadInt32(zeroIDs) == [Int32](repeating: 0, count: size))

            let values = random.floats(size)
            #expect(try backend.download(try backend.upload(values, shape: [size])) == values)
            let ids = random.ids(size, below: 1000).map { $0 - 500 }
            #expect(try backend.downloadInt32(try backend.upload(ids, shape: [size])) == ids)
        }
    }

    // MARK: Elementwise

    @Test(arguments: TestBackend.allCases)
    func elementwiseOpsMatchTheReference(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        var random = SeededGenerator(seed: 2)
        for size in sizes {
            for op in ElementwiseCase.all {
                let inputs = (0..<op.inputCount).map { _ in random.floats(size) }
                let tensors = try inputs.map { try backend.upload($0, shape: [size]) }
                let result = try op.run(backend, tensors)
                assertClose(try backend.download(result), op.reference(inputs),
                            relativeTolerance: op.relativeTolerance, absoluteTolerance: op.absoluteTolerance,
                            "\(which) \(op) n=\(size)")
            }
        }
    }

    @Test func openCLMatchesCPUOnElementwiseOps() throws {
        guard let openCL = try TestBackends.openCL() else { return }
        let cpu = TestBackends.cpu
        var random = SeededGenerator(seed: 3)
        for size in sizes {
            for op in ElementwiseCase.all {
                let inputs = (0..<op.inputCount).map { _ in random.floats(size) }
                let onCPU = try op.run(cpu, try inputs.map { try cpu.upload($0, shape: [size]) })
                let onOpenCL = try op.run(openCL, try inputs.map { try openCL.upload($0, shape: [size]) })
                assertClose(try openCL.download(onOpenCL), try cpu.download(onCPU),
                            relativeTolerance: op.relativeTolerance, absoluteTolerance: op.absoluteTolerance,
                            "OpenCL vs CPU \(op) n=\(size)")
            }
        }
    }

    @Test(arguments: TestBackend.allCases)
    func copyMovesARangeBetweenOffsets(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        var random = SeededGenerator(seed: 4)
        for size in sizes {
            let source = random.floats(size + 5)
            let destination = random.floats(size + 9)
            let sourceTensor = try backend.upload(source, shape: [size + 5])
            let destinationTensor = try backend.upload(destination, shape: [size + 9])
            try backend.copy(sourceTensor, sourceOffset: 3, into: destinationTensor, destinationOffset: 6, count: size)
            var expected = destination
            expected[6..<6 + size] = source[3..<3 + size]
            #expect(try backend.download(destinationTensor) == expected, "\(which) copy n=\(size)")
        }
        // Overlapping ranges of one tensor behave like memmove.
        let values = random.floats(40)
        let tensor = try backend.upload(values, shape: [40])
        try backend.copy(tensor, sourceOffset: 0, into: tensor, destinationOffset: 5, count: 30)
        var expected = values
        expected[5..<35] = values[0..<30]
        #expect(try backend.download(tensor) == expected, "\(which) overlapping copy")
    }

    @Test(arguments: TestBackend.allCases)
    func copyRowsMovesABlockBetweenRowLayouts(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        var random = SeededGenerator(seed: 40)
        // (rows, width, source offset and stride, destination offset and stride): a feature
        // slice out of wider rows, one part of a concatenation, contiguous rows, one row.
        for (rows, width, so, ss, d0, ds) in [(7, 3, 2, 5, 1, 4), (5, 4, 0, 4, 3, 9), (6, 8, 1, 8, 0, 8), (1, 11, 4, 11, 2, 11)] {
            let source = random.floats(so + rows * ss + 3)
            let destination = random.floats(d0 + rows * ds + 3)
            let sourceTensor = try backend.upload(source, shape: [source.count])
            let destinationTensor = try backend.upload(destination, shape: [destination.count])
            try backend.copyRows(rows, width: width, from: sourceTensor, offset: so, stride: ss, into: destinationTensor,
                                 offset: d0, stride: ds)
            var expected = destination
            for r in 0..<rows {
                expected[(d0 + r * ds)..<(d0 + r * ds + width)] = source[(so + r * ss)..<(so + r * ss + width)]
            }
            #expect(try backend.download(destinationTensor) == expected, "\(which) \(rows) rows of \(width)")
        }
        let tensor = try backend.upload(random.floats(40), shape: [40])
        let other = try backend.upload(random.floats(12), shape: [12])
        let before = try backend.download(other)
        #expect(throws: RecurError.self, "overlapping blocks") {
            try backend.copyRows(4, width: 3, from: tensor, offset: 0, stride: 6, into: tensor, offset: 4, stride: 6)
        }
        #expect(throws: RecurError.self, "a block past the end") {
            try backend.copyRows(4, width: 3, from: tensor, offset: 0, stride: 3, into: other, offset: 1, stride: 3)
        }
        #expect(throws: RecurError.self, "a stride below the width") {
            try backend.copyRows(2, width: 3, from: tensor, offset: 0, stride: 2, into: other, offset: 0, stride: 3)
        }
        #expect(try backend.download(other) == before, "\(which): a refused copy writes nothing")
    }

    // MARK: GEMM

    /// C = alpha op(A) op(B) + beta C on views inside larger buffers, checked against float64, and
    /// every element of C's buffer outside the view must be left alone.
    @Test(arguments: TestBackend.allCases)
    func gemmMatchesAFloat64Reference(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        var random = SeededGenerator(seed: 5)
        let shapes: [(m: Int, n: Int, k: Int)] = [(1, 1, 1), (7, 33, 1), (33, 7, 257), (257, 33, 7), (1, 257, 33)]
        for (m, n, k) in shapes {
            for transposeA in [false, true] {
                for transposeB in [false, true] {
                    try checkGEMM(on: backend, m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB,
                                  random: &random, what: "\(which) gemm m=\(m) n=\(n) k=\(k) tA=\(transposeA) tB=\(transposeB)")
                }
            }
        }
    }

    /// The CPU backend cuts a large GEMM into one OpenBLAS call per core, along C's rows or its
    /// columns, whichever is longer: forced to split everything into 3 parts, every transpose,
    /// both cut directions and parts of unequal size still match float64 on views.
    @Test func cpuGEMMSplitAcrossCoresMatchesAFloat64Reference() throws {
        let backend = CPUBackend(scanSplitMinimumWork: 0, scanPartLimit: 3)
        var random = SeededGenerator(seed: 17)
        let shapes: [(m: Int, n: Int, k: Int)] = [(83, 21, 19), (21, 83, 19), (50, 49, 3)]
        for (m, n, k) in shapes {
            for transposeA in [false, true] {
                for transposeB in [false, true] {
                    try checkGEMM(on: backend, m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB,
                                  random: &random, what: "split gemm m=\(m) n=\(n) k=\(k) tA=\(transposeA) tB=\(transposeB)")
                }
            }
        }
    }

    private func checkGEMM(on backend: any Backend, m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool,
                           random: inout SeededGenerator, what: String) throws {
        let (alpha, beta): (Float, Float) = (0.75, -1.25)
        // Stored extents (rows x columns) of each operand, with padding columns and a leading offset.
        let (rowsA, columnsA) = transposeA ? (k, m) : (m, k)
        let (rowsB, columnsB) = transposeB ? (n, k) : (k, n)
        let (ldA, ldB, ldC) = (columnsA + 3, columnsB + 2, n + 5)
        let (offsetA, offsetB, offsetC) = (4, 1, 6)
        let a = random.floats(offsetA + rowsA * ldA + 2)
        let b = random.floats(offsetB + rowsB * ldB)
        let c = random.floats(offsetC + m * ldC + 3)

        var expected = c
        for i in 0..<m {
            for j in 0..<n {
                var total = 0.0
                for p in 0..<k {
                    let aValue = transposeA ? a[offsetA + p * ldA + i] : a[offsetA + i * ldA + p]
                    let bValue = transposeB ? b[offsetB + j * ldB + p] : b[offsetB + p * ldB + j]
                    total += Double(aValue) * Double(bValue)
                }
                let index = offsetC + i * ldC + j
                expected[index] = Float(Double(alpha) * total + Double(beta) * Double(c[index]))
            }
        }

        let aTensor = try backend.upload(a, shape: [a.count])
        let bTensor = try backend.upload(b, shape: [b.count])
        let cTensor = try backend.upload(c, shape: [c.count])
        try backend.gemm(
            m: m, n: n, k: k, alpha: alpha,
            a: MatrixOperand(aTensor, offset: offsetA, leadingDimension: ldA, transposed: transposeA),
            b: MatrixOperand(bTensor, offset: offsetB, leadingDimension: ldB, transposed: transposeB),
            beta: beta, c: MatrixOperand(cTensor, offset: offsetC, leadingDimension: ldC))
        assertClose(try backend.download(cTensor), expected, relativeTolerance: 1e-5, absoluteTolerance: 2e-5, what)
    }

    /// Sizes past CLBlast's threshold for its indirect GEMM (pad, transpose, then a tiled kernel),
    /// on views with offsets and padded rows; checked against the CPU backend (OpenBLAS).
    @Test func openCLMatchesCPUOnALargeGEMM() throws {
        guard let openCL = try TestBackends.openCL() else { return }
        let cpu = TestBackends.cpu
        var random = SeededGenerator(seed: 11)
        let (m, n, k) = (389, 403, 397)
        let (ldA, ldB, ldC) = (m + 3, k + 1, n + 2)  // A and B stored transposed
        let a = random.floats(2 + k * ldA)
        let b = random.floats(5 + n * ldB)
        let c = random.floats(1 + m * ldC)
        var results: [[Float]] = []
        for backend in [cpu, openCL] as [any Backend] {
            let cTensor = try backend.upload(c, shape: [c.count])
            try backend.gemm(
                m: m, n: n, k: k, alpha: -0.5,
                a: MatrixOperand(try backend.upload(a, shape: [a.count]), offset: 2, leadingDimension: ldA, transposed: true),
                b: MatrixOperand(try backend.upload(b, shape: [b.count]), offset: 5, leadingDimension: ldB, transposed: true),
                beta: 0.25, c: MatrixOperand(cTensor, offset: 1, leadingDimension: ldC))
            results.append(try backend.download(cTensor))
        }
        assertClose(results[1], results[0], relativeTolerance: 1e-4, absoluteTolerance: 1e-4, "OpenCL vs CPU large gemm")
    }

    @Test(arguments: TestBackend.allCases)
    func matmulOfWholeMatrices(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        var random = SeededGenerator(seed: 6)
        let (m, n, k) = (7, 5, 33)
        let a = random.floats(m * k)
        let b = random.floats(n * k)
        let c = try backend.zeros([m, n])
        try backend.matmul(try backend.upload(a, shape: [m, k]), try backend.upload(b, shape: [n, k]),
                           transposeB: true, into: c)
        var expected = [Float](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                expected[i * n + j] = Float((0..<k).reduce(0.0) { $0 + Double(a[i * k + $1]) * Double(b[j * k + $1]) })
            }
        }
        assertClose(try backend.download(c), expected, relativeTolerance: 1e-5, absoluteTolerance: 1e-5, "\(which) matmul")
    }

    // MARK: Reductions

    @Test(arguments: TestBackend.allCases)
    func sumAlongEachAxisOfARank3Tensor(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        var random = SeededGenerator(seed: 7)
        // [3, 257, 7] along axis 1 has few outputs and long rows (one work-group per output on
        // OpenCL); the other axes have many outputs (one work-item each).
        let shapes: [[Int]] = [[3, 257, 7], [7, 33, 1], [1, 1, 1], [2, 1, 300]]
        for dimensions in shapes {
            let values = random.floats(dimensions.reduce(1, *))
            let x = try backend.upload(values, shape: Shape(dimensions))
            for axis in 0..<3 {
                var reduced = dimensions
                reduced.remove(at: axis)
                let outer = dimensions[..<axis].reduce(1, *)
                let length = dimensions[axis]
                let inner = dimensions[(axis + 1)...].reduce(1, *)
                var expected = [Float](repeating: 0, count: outer * inner)
                for o in 0..<outer {
                    for i in 0..<inner {
                        let total = (0..<length).reduce(0.0) { $0 + Double(values[(o * length + $1) * inner + i]) }
                        expected[o * inner + i] = Float(total)
                    }
                }
                let out = try backend.upload(random.floats(outer * inner), shape: Shape(reduced))
                try backend.sum(x, alongAxis: axis, into: out)
                assertClose(try backend.download(out), expected, relativeTolerance: 1e-5, absoluteTolerance: 1e-5,
                            "\(which) sum of \(dimensions) along \(axis)")
            }
        }
    }

    @Test(arguments: TestBackend.allCases)
    func sumOfSquaresWritesOneSlot(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        var random = SeededGenerator(seed: 8)
        for size in sizes + [100_003] {
            let values = random.floats(size)
            let slots = random.floats(4)
            let out = try backend.upload(slots, shape: [4])
            try backend.sumOfSquares(try backend.upload(values, shape: [size]), into: out, at: 2)
            var expected = slots
            expected[2] = Float(values.reduce(0.0) { $0 + Double($1) * Double($1) })
            assertClose(try backend.download(out), expected, relativeTolerance: 1e-5, absoluteTolerance: 1e-6,
                        "\(which) sumOfSquares n=\(size)")
        }
        let single = try backend.sumOfSquares(try backend.upload([3, -4] as [Float], shape: [2]))
        #expect(single == 25)
    }

    @Test func openCLMatchesCPUOnReductions() throws {
        guard let openCL = try TestBackends.openCL() else { return }
        let cpu = TestBackends.cpu
        var random = SeededGenerator(seed: 9)
        let dimensions = [5, 129, 33]
        let values = random.floats(dimensions.reduce(1, *))
        for axis in 0..<3 {
            var reduced = dimensions
            reduced.remove(at: axis)
            var results: [[Float]] = []
            for backend in [cpu, openCL] as [any Backend] {
                let out = try backend.zeros(Shape(reduced))
                try backend.sum(try backend.upload(values, shape: Shape(dimensions)), alongAxis: axis, into: out)
                results.append(try backend.download(out))
            }
            assertClose(results[1], results[0], relativeTolerance: 1e-5, absoluteTolerance: 1e-5,
                        "OpenCL vs CPU sum along \(axis)")
        }
        let onCPU = try cpu.sumOfSquares(try cpu.upload(values, shape: [values.count]))
        let onOpenCL = try openCL.sumOfSquares(try openCL.upload(values, shape: [values.count]))
        assertClose([onOpenCL], [onCPU], relativeTolerance: 1e-5, "OpenCL vs CPU sumOfSquares")
    }

    // MARK: Embedding

    @Test(arguments: TestBackend.allCases)
    func gatherAndScatterAddWithRepeatedIDs(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        var random = SeededGenerator(seed: 10)
        for width in [1, 7, 33] {
            let (vocabulary, count) = (7, 40)  // 40 ids over 7 rows: every row repeats
            let table = random.floats(vocabulary * width)
            let ids = random.ids(count, below: vocabulary)
            let idTensor = try backend.upload(ids, shape: [5, 8])

            let rows = try backend.zeros([count, width])
            try backend.gather(rowsOf: try backend.upload(table, shape: [vocabulary, width]), ids: idTensor, into: rows)
            let expectedRows = ids.flatMap { table[Int($0) * width..<(Int($0) + 1) * width] }
            #expect(try backend.download(rows) == expectedRows, "\(which) gather width \(width)")

            let gradient = random.floats(count * width)
            let initial = random.floats(vocabulary * width)
            let tableGradient = try backend.upload(initial, shape: [vocabulary, width])
            try backend.scatterAdd(try backend.upload(gradient, shape: [count, width]), ids: idTensor,
                                   into: tableGradient)
            var expected = initial.map(Double.init)
            for (n, id) in ids.enumerated() {
                for d in 0..<width { expected[Int(id) * width + d] += Double(gradient[n * width + d]) }
            }
            assertClose(try backend.download(tableGradient), expected.map { Float($0) },
                        relativeTolerance: 1e-5, absoluteTolerance: 1e-5, "\(which) scatterAdd width \(width)")
        }
    }

    @Test(arguments: TestBackend.allCases)
    func outOfRangeIDsThrowBeforeTouchingMemory(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        let table = try backend.upload([1, 2, 3, 4, 5, 6] as [Float], shape: [3, 2])
        let rows = try backend.upload([9, 9, 9, 9] as [Float], shape: [2, 2])
        for badIDs in [[0, 3], [-1, 1]] as [[Int32]] {
            let ids = try backend.upload(badIDs, shape: [2])
            expectRecurError("\(which) gather \(badIDs)", matches: { error in
                if case .invalidArgument(let operation, let detail) = error {
                    return operation == "gather" && detail.contains("position")
                }
                return false
            }) {
                try backend.gather(rowsOf: table, ids: ids, into: rows)
            }
            expectRecurError("\(which) scatterAdd \(badIDs)", matches: { error in
                if case .invalidArgument(let operation, _) = error { return operation == "scatterAdd" }
                return false
            }) {
                try backend.scatterAdd(rows, ids: ids, into: table)
            }
        }
        #expect(try backend.download(rows) == [9, 9, 9, 9])
        #expect(try backend.download(table) == [1, 2, 3, 4, 5, 6])
    }

    // MARK: Errors

    @Test(arguments: TestBackend.allCases)
    func shapeMismatchThrows(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        let a = try backend.zeros([3])
        let b = try backend.zeros([4])
        let out = try backend.upload([1, 2, 3] as [Float], shape: [3])
        expectRecurError("\(which) add", matches: { if case .shapeMismatch = $0 { true } else { false } }) {
            try backend.add(a, b, into: out)
        }
        expectRecurError("\(which) sum", matches: { if case .shapeMismatch = $0 { true } else { false } }) {
            try backend.sum(try backend.zeros([2, 3]), alongAxis: 0, into: b)
        }
        expectRecurError("\(which) matmul", matches: { if case .shapeMismatch = $0 { true } else { false } }) {
            try backend.matmul(try backend.zeros([2, 3]), try backend.zeros([2, 3]), into: try backend.zeros([2, 3]))
        }
        #expect(try backend.download(out) == [1, 2, 3])
    }

    @Test(arguments: TestBackend.allCases)
    func gemmViewOutOfBoundsThrows(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        let a = try backend.zeros([12])
        let b = try backend.zeros([12])
        let c = try backend.upload([Float](repeating: 7, count: 12), shape: [12])
        // A is 3 x 4 with leading dimension 4 from offset 1: its last element would be index 12.
        expectRecurError("\(which) gemm A past the end", matches: { if case .invalidArgument = $0 { true } else { false } }) {
            try backend.gemm(m: 3, n: 3, k: 4, alpha: 1, a: MatrixOperand(a, offset: 1, leadingDimension: 4),
                             b: MatrixOperand(b, leadingDimension: 3), beta: 0, c: MatrixOperand(c, leadingDimension: 3))
        }
        expectRecurError("\(which) gemm C leading dimension", matches: { if case .invalidArgument = $0 { true } else { false } }) {
            try backend.gemm(m: 2, n: 3, k: 2, alpha: 1, a: MatrixOperand(a, leadingDimension: 2),
                             b: MatrixOperand(b, leadingDimension: 3), beta: 0, c: MatrixOperand(c, leadingDimension: 2))
        }
        #expect(try backend.download(c) == [Float](repeating: 7, count: 12))
    }

    @Test(arguments: TestBackend.allCases)
    func tensorFromAnotherBackendThrowsWrongDevice(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        // For the CPU, another CPUBackend instance is another device; for OpenCL, the CPU is.
        let other: any Backend = which == .cpu ? CPUBackend() : TestBackends.cpu
        let foreign = try other.zeros([4])
        let local = try backend.zeros([4])
        let isWrongDevice: (RecurError) -> Bool = { if case .wrongDevice = $0 { true } else { false } }
        expectRecurError("\(which) add", matches: isWrongDevice) { try backend.add(local, foreign, into: local) }
        expectRecurError("\(which) download", matches: isWrongDevice) { _ = try backend.download(foreign) }
        expectRecurError("\(which) gemm", matches: isWrongDevice) {
            try backend.matmul(try backend.zeros([2, 2]), try other.zeros([2, 2]), into: try backend.zeros([2, 2]))
        }
    }

    // MARK: Memory

    /// Releasing every tensor brings the live-buffer count back. Uses a backend of its own, since
    /// the shared ones serve tests running in parallel.
    @Test(arguments: TestBackend.allCases)
    func liveBuffersReturnToTheirEarlierValue(_ which: TestBackend) throws {
        let backend: any Backend
        switch which {
        case .cpu:
            backend = CPUBackend()
        case .openCL:
            guard let device = try TestBackends.openCLDevice() else { return }
            backend = try OpenCLBackend(device: device)
        }
        let before = backend.memoryStatistics
        do {
            let a = try backend.upload([1, 2, 3] as [Float], shape: [3])
            let b = try backend.zeros([3])
            let ids = try backend.zeros([2], dtype: .int32)
            try backend.copy(a, sourceOffset: 0, into: b, destinationOffset: 0, count: 3)
            try backend.synchronize()
            #expect(backend.memoryStatistics.liveBuffers == before.liveBuffers + 3)
            #expect(backend.memoryStatistics.liveBytes == before.liveBytes + 32)
            withExtendedLifetime((a, b, ids)) {}
        }
        #expect(backend.memoryStatistics.liveBuffers == before.liveBuffers)
        #expect(backend.memoryStatistics.liveBytes == before.liveBytes)
        #expect(backend.memoryStatistics.peakBytes >= before.liveBytes + 32)
    }
}
