import Testing
@testable import Recur

// The `Attention` layer: its parameters' names, shapes and seeded initialisation, its forward and
// backward against the float64 composition of its projections with `AttentionReference` (itself
// checked against finite differences), the shared-memory gradient, accumulation and argument
// checks.
//
// Shape legend: Ty target steps, Tx source steps, B batch, Dq query, Dk key, Dv value features,
// A the attention size.

/// The layer in float64: the projections of `kind`, the reference op, and their backward.
private struct LayerReference {
    var kind: AttentionKind
    var ty: Int, tx: Int, b: Int, dq: Int, dk: Int, a: Int
    var lengths: [Int]?
    var padding: PaddingSide
    /// The parameters by state-dict name, row-major.
    var parameters: [String: [Double]]

    /// x Wᵀ for x `[N, I]` and W `[O, I]`.
    static func project(_ x: [Double], _ w: [Double], inputs: Int) -> [Double] {
        let (rows, outputs) = (x.count / inputs, w.count / inputs)
        return (0..<(rows * outputs)).map { index in
            let (n, o) = (index / outputs, index % outputs)
            return (0..<inputs).reduce(0) { $0 + x[n * inputs + $1] * w[o * inputs + $1] }
        }
    }

    /// dx = dy W and dW = dyᵀ x, for y = x Wᵀ.
    static func projectBack(_ dy: [Double], _ x: [Double], _ w: [Double], inputs: Int)
        -> (dx: [Double], dw: [Double])
    {
        let (rows, outputs) = (x.count / inputs, w.count / inputs)
        var (dx, dw) = ([Double](repeating: 0, count: x.count), [Double](repeating: 0, count: w.count))
        for n in 0..<rows {
            for o in 0..<outputs {
                for i in 0..<inputs {
                    dx[n * inputs + i] += dy[n * outputs + o] * w[o * inputs + i]
                    dw[o * inputs + i] += dy[n * outputs + o] * x[n * inputs + i]
                }
            }
        }
        return (dx, dw)
    }

    func operands(_ q: [Double], _ k: [Double], _ v: [Double]) -> AttentionReference.Operands {
        let (queries, keys): ([Double], [Double]) = switch kind {
        case .dot: (q, k)
        case .general: (Self.project(q, parameters["weight"]!, inputs: dq), k)
        case .additive: (Self.project(q, parameters["query.weight"]!, inputs: dq),
                         Self.project(k, parameters["key.weight"]!, inputs: dk))
        }
        return AttentionReference.Operands(
            score: kind == .additive ? .additive : .dot, queries: queries, keys: keys, values: v,
            scoreVector: parameters["v"] ?? [], targetSteps: ty, sourceSteps: tx, batch: b, sourceLengths: lengths,
            padding: padding)
    }

    func context(_ q: [Double], _ k: [Double], _ v: [Double]) -> [Double] {
        AttentionReference.forward(operands(q, k, v)).context
    }

    /// dQ, dK, dV and the parameters' gradients by name.
    func gradients(_ q: [Double], _ k: [Double], _ v: [Double], _ dc: [Double])
        -> (dq: [Double], dk: [Double], dv: [Double], parameters: [String: [Double]])
    {
        let op = AttentionReference.backward(operands(q, k, v), contextGradient: dc)
        var parameterGradients: [String: [Double]] = [:]
        var (dQ, dK) = (op.queries, op.keys)
        switch kind {
        case .dot:
            break
        case .general:
            (dQ, parameterGradients["weight"]) = Self.projectBack(op.queries, q, parameters["weight"]!, inputs: dq)
        case .additive:
            (dQ, parameterGradients["query.weight"]) = Self.projectBack(op.queries, q, parameters["query.weight"]!,
                                                                        inputs: dq)
            (dK, parameterGradients["key.weight"]) = Self.projectBack(op.keys, k, parameters["key.weight"]!, inputs: dk)
            parameterGradients["v"] = op.scoreVector
        }
        return (dQ, dK, op.values, parameterGradients)
    }
}

@Suite("Attention layer")
struct AttentionLayerTests {
    /// Sizes per kind: the dot score compares queries and keys of one width.
    private static func sizes(_ kind: AttentionKind) -> (ty: Int, tx: Int, b: Int, dq: Int, dk: Int, dv: Int, a: Int) {
        kind == .dot ? (3, 4, 2, 5, 5, 7, 5) : (3, 4, 2, 5, 6, 7, 3)
    }

    private static func layer(_ kind: AttentionKind, on backend: any Backend, seed: UInt64 = 7) throws -> Attention {
        let s = sizes(kind)
        return try Attention(kind: kind, querySize: s.dq, keySize: s.dk, attentionSize: s.a, seed: seed, backend: backend)
    }

    private static func reference(_ layer: Attention, lengths: [Int]?, padding: PaddingSide) throws -> LayerReference {
        let s = sizes(layer.kind)
        var parameters: [String: [Double]] = [:]
        for parameter in layer.parameters {
            parameters[parameter.name] = try layer.backend.download(parameter.value).map(Double.init)
        }
        return LayerReference(kind: layer.kind, ty: s.ty, tx: s.tx, b: s.b, dq: s.dq, dk: s.dk, a: s.a,
                              lengths: lengths, padding: padding, parameters: parameters)
    }

    @Test func parametersHaveStateDictNamesAndShapes() throws {
        let backend = TestBackends.cpu
        let names = try AttentionKind.allCases.map { kind in
            try Attention(kind: kind, querySize: 5, keySize: kind == .dot ? 5 : 6, attentionSize: 3, backend: backend)
                .parameters.map { "\($0.name) \($0.value.shape)" }
        }
        #expect(names[0] == [])
        #expect(names[1] == ["weight [6, 5]"])
        #expect(names[2] == ["query.weight [3, 5]", "key.weight [3, 6]", "v [3]"])
        let additive = try Attention(kind: .additive, querySize: 5, keySize: 6, backend: backend)
        #expect(additive.attentionSize == 6, "A defaults to Dk")
        #expect(additive.parameters(prefixedBy: "attention").map(\.name)
                == ["attention.query.weight", "attention.key.weight", "attention.v"])
        expectRecurError("dot with Dq != Dk", matches: { _ in true }) {
            _ = try Attention(kind: .dot, querySize: 5, keySize: 6, backend: backend)
        }
        expectRecurError("attention size 0", matches: { _ in true }) {
            _ = try Attention(kind: .additive, querySize: 5, keySize: 6, attentionSize: 0, backend: backend)
        }
    }

    /// Seeded: the same values on every backend, other values for another seed, and within each
    /// initialisation's bounds.
    @Test func initialisationIsSeededAndBounded() throws {
        let cpu = try Self.layer(.additive, on: TestBackends.cpu)
        let values = try cpu.parameters.map { try cpu.backend.download($0.value) }
        if let openCL = try TestBackend.openCL.backend() {
            let device = try Self.layer(.additive, on: openCL)
            #expect(try device.parameters.map { try openCL.download($0.value) } == values)
        }
        let other = try Self.layer(.additive, on: TestBackends.cpu, seed: 8)
        #expect(try other.parameters.map { try other.backend.download($0.value) } != values)
        // PyTorch: U(±1/√fan_in) for [3, 5], [3, 6]; v U(±1/√3). Glorot: √(6 / (fan_in + fan_out)), v √(3 / A).
        for (parameter, bound) in zip(values, [1 / 5.0.squareRoot(), 1 / 6.0.squareRoot(), 1 / 3.0.squareRoot()]) {
            #expect(parameter.allSatisfy { abs(Double($0)) <= bound })
            #expect(parameter.count < 10 || parameter.contains { abs(Double($0)) > bound / 2 }, "spread over the range")
        }
        let glorot = try Attention(kind: .additive, querySize: 5, keySize: 6, attentionSize: 3,
                                   initialization: .glorotUniform, backend: TestBackends.cpu)
        let glorotValues = try glorot.parameters.map { try glorot.backend.download($0.value) }
        for (parameter, bound) in zip(glorotValues, [(6 / 8.0).squareRoot(), (6 / 9.0).squareRoot(), 1.0]) {
            #expect(parameter.allSatisfy { abs(Double($0)) <= bound })
        }
    }

    /// The float64 composition this file compares the layer with is the derivative of itself.
    @Test(arguments: AttentionKind.allCases)
    func float64CompositionMatchesFiniteDifferences(_ kind: AttentionKind) throws {
        let layer = try Self.layer(kind, on: TestBackends.cpu)
        let reference = try Self.reference(layer, lengths: [3, 4], padding: .pre)
        let s = Self.sizes(kind)
        var random = SeededGenerator(seed: 71)
        let (q, k, v) = (random.floats(s.ty * s.b * s.dq), random.floats(s.tx * s.b * s.dk), random.floats(s.tx * s.b * s.dv))
        let (qD, kD, vD) = (q.map(Double.init), k.map(Double.init), v.map(Double.init))
        let dc = random.floats(s.ty * s.b * s.dv).map(Double.init)
        let analytic = reference.gradients(qD, kD, vD, dc)
        func loss(_ r: LayerReference, _ q: [Double], _ k: [Double]) -> Double {
            zip(r.context(q, k, vD), dc).reduce(0) { $0 + $1.0 * $1.1 }
        }
        func expectMatch(_ analytic: [Double], _ numeric: [Double], _ what: String) {
            let error = zip(analytic, numeric).map { abs($0 - $1) }.max()!
            #expect(error <= 1e-7 * max(numeric.map(abs).max()!, 1), "\(kind) \(what): error \(error)")
        }
        expectMatch(analytic.dq, attentionFiniteDifferences(qD) { loss(reference, $0, kD) }, "dQ")
        expectMatch(analytic.dk, attentionFiniteDifferences(kD) { loss(reference, qD, $0) }, "dK")
        for (name, value) in reference.parameters {
            let numeric = attentionFiniteDifferences(value) { x in
                var changed = reference
                changed.parameters[name] = x
                return loss(changed, qD, kD)
            }
            expectMatch(analytic.parameters[name]!, numeric, name)
        }
    }

    /// Context, weights, input gradients and parameter gradients on each backend, against the
    /// float64 composition.
    @Test(arguments: TestBackend.allCases, AttentionKind.allCases)
    func layerMatchesTheFloat64Composition(_ which: TestBackend, _ kind: AttentionKind) throws {
        guard let backend = try which.backend() else { return }
        for (lengths, padding) in [(nil, PaddingSide.post), ([2, 4], .post), ([4, 1], .pre)] as [([Int]?, PaddingSide)] {
            let layer = try Self.layer(kind, on: backend)
            let reference = try Self.reference(layer, lengths: lengths, padding: padding)
            let s = Self.sizes(kind)
            var random = SeededGenerator(seed: 81)
            let (q, k, v) = (random.floats(s.ty * s.b * s.dq), random.floats(s.tx * s.b * s.dk),
                             random.floats(s.tx * s.b * s.dv))
            let dc = random.floats(s.ty * s.b * s.dv)
            let context = try layer.forward(
                queries: try backend.upload(q, shape: [s.ty, s.b, s.dq]), keys: try backend.upload(k, shape: [s.tx, s.b, s.dk]),
                values: try backend.upload(v, shape: [s.tx, s.b, s.dv]), sourceLengths: lengths, padding: padding)
            let gradients = try layer.backward(from: try backend.upload(dc, shape: [s.ty, s.b, s.dv]))
            let (qD, kD, vD) = (q.map(Double.init), k.map(Double.init), v.map(Double.init))
            let expected = reference.gradients(qD, kD, vD, dc.map(Double.init))
            let what = "\(which) \(kind) \(lengths.map { "\($0)" } ?? "full") \(padding)"
            let tolerance = 1e-5
            expectAttentionClose(try backend.download(context), reference.context(qD, kD, vD), tolerance: tolerance, "\(what) context")
            expectAttentionClose(try backend.download(try #require(layer.attentionWeights)),
                        AttentionReference.forward(reference.operands(qD, kD, vD)).weights, tolerance: tolerance, "\(what) weights")
            expectAttentionClose(try backend.download(gradients.queries), expected.dq, tolerance: tolerance, "\(what) dQ")
            expectAttentionClose(try backend.download(gradients.keys), expected.dk, tolerance: tolerance, "\(what) dK")
            expectAttentionClose(try backend.download(gradients.values), expected.dv, tolerance: tolerance, "\(what) dV")
            #expect(gradients.memory == nil)
            for parameter in layer.parameters {
                expectAttentionClose(try backend.download(parameter.gradient), expected.parameters[parameter.name]!, tolerance: tolerance,
                            "\(what) d\(parameter.name)")
            }
        }
    }

    /// One tensor as keys and values: the memory gradient is dK + dV.
    @Test(arguments: TestBackend.allCases)
    func memoryGradientIsKeysPlusValues(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        let layer = try Attention(kind: .additive, querySize: 5, keySize: 6, attentionSize: 4, seed: 3, backend: backend)
        var random = SeededGenerator(seed: 91)
        let memory = try backend.upload(random.floats(4 * 2 * 6), shape: [4, 2, 6])
        let context = try layer.forward(queries: try backend.upload(random.floats(3 * 2 * 5), shape: [3, 2, 5]),
                                        memory: memory, sourceLengths: [4, 2])
        #expect(context.shape == [3, 2, 6])
        let gradients = try layer.backward(from: try backend.upload(random.floats(3 * 2 * 6), shape: [3, 2, 6]))
        let sum = zip(try backend.download(gradients.keys), try backend.download(gradients.values)).map { $0 + $1 }
        #expect(try backend.download(try #require(gradients.memory)) == sum)
    }

    /// Parameter gradients add up over backward passes until zeroed.
    @Test func parameterGradientsAccumulateUntilZeroed() throws {
        let backend = TestBackends.cpu
        let layer = try Self.layer(.additive, on: backend)
        let s = Self.sizes(.additive)
        var random = SeededGenerator(seed: 101)
        let queries = try backend.upload(random.floats(s.ty * s.b * s.dq), shape: [s.ty, s.b, s.dq])
        let keys = try backend.upload(random.floats(s.tx * s.b * s.dk), shape: [s.tx, s.b, s.dk])
        let values = try backend.upload(random.floats(s.tx * s.b * s.dv), shape: [s.tx, s.b, s.dv])
        let dc = try backend.upload(random.floats(s.ty * s.b * s.dv), shape: [s.ty, s.b, s.dv])
        _ = try layer.forward(queries: queries, keys: keys, values: values)
        _ = try layer.backward(from: dc)
        let once = try layer.parameters.map { try backend.download($0.gradient) }
        #expect(once.allSatisfy { $0.contains { $0 != 0 } })
        _ = try layer.backward(from: dc)
        let twice = try layer.parameters.map { try backend.download($0.gradient) }
        for (first, second) in zip(once, twice) {
            assertClose(second, first.map { 2 * $0 }, "twice the gradient")
        }
        try layer.zeroGradients()
        #expect(try layer.parameters.allSatisfy { try backend.download($0.gradient).allSatisfy { $0 == 0 } })
    }

    @Test func badCallsThrow() throws {
        let backend = TestBackends.cpu
        let layer = try Self.layer(.general, on: backend)
        let s = Self.sizes(.general)
        expectRecurError("backward before forward", matches: { _ in true }) {
            _ = try layer.backward(from: try backend.zeros([s.ty, s.b, s.dv]))
        }
        let queries = try backend.zeros([s.ty, s.b, s.dq])
        let keys = try backend.zeros([s.tx, s.b, s.dk])
        let values = try backend.zeros([s.tx, s.b, s.dv])
        for lengths in [[0, 4], [4, 5], [4]] {
            expectRecurError("lengths \(lengths)", matches: { _ in true }) {
                _ = try layer.forward(queries: queries, keys: keys, values: values, sourceLengths: lengths)
            }
        }
        expectRecurError("queries of the keys' width", matches: { _ in true }) {
            _ = try layer.forward(queries: try backend.zeros([s.ty, s.b, s.dk]), keys: keys, values: values)
        }
        _ = try layer.forward(queries: queries, keys: keys, values: values)
        expectRecurError("context gradient of another shape", matches: { _ in true }) {
            _ = try layer.backward(from: try backend.zeros([s.ty, s.b, s.dv + 1]))
        }
    }
}
