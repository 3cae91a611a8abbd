#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Gradient flow over time: how large dL/dh_t is at every step t of a recurrent layer, the picture
// of vanishing and exploding gradients (Bengio, Simard, Frasconi 1994; Pascanu, Mikolov, Bengio
// 2013). Recorded by `RecurrentLayer` when `recordsGradientFlow` is set, from the backward scans'
// `hiddenStateGradients`.
//
// Shape legend: T time steps, B batch, H hidden units.

/// The size of dL/dh_t at every time step of one layer-direction after one backward pass.
public struct GradientFlow: Sendable, Equatable {
    /// The layer-direction: `l0`, `l0_reverse`, `l1`, … (PyTorch's parameter suffixes), prefixed
    /// with the layer's index in a `Sequential` (`1.l0`).
    public var name: String
    /// `[T]`, indexed by time t (not by scan step): the L2 (Frobenius) norm of dL/dh_t over the
    /// whole batch, √(Σ_b Σ_j (dL/dh_t[b, j])²), where L is the loss of the batch (a mean over the
    /// batch when the loss is one). Padded steps contribute 0.
    public var norms: [Float]

    public init(name: String, norms: [Float]) {
        self.name = name
        self.norms = norms
    }

    /// The norms of a `[T, B, H]` host array of dL/dh_t, summed in float64.
    public init(name: String, hiddenStateGradients values: [Float], steps: Int) {
        precondition(steps > 0 && values.count % steps == 0, "values must hold [T, B, H] for T = \(steps)")
        let width = values.count / steps  // B * H
        var norms = [Float](repeating: 0, count: steps)
        for t in 0..<steps {
            var sum = 0.0
            for value in values[(t * width)..<((t + 1) * width)] { sum += Double(value) * Double(value) }
            norms[t] = Float(sum.squareRoot())
        }
        self.init(name: name, norms: norms)
    }

    /// The step whose gradient comes straight from the loss: the last time step for a forward
    /// scan, the first for a reverse one (named `…_reverse`).
    public var lossEnd: Int { name.hasSuffix("_reverse") ? 0 : norms.count - 1 }

    /// The norms ordered by distance from `lossEnd`: element k is ‖dL/dh‖ k steps before the
    /// loss end in scan order.
    public var normsByDistance: [Float] { name.hasSuffix("_reverse") ? norms : norms.reversed() }

    /// How much the gradient shrinks (< 1) or grows (> 1) per step of distance from the loss end:
    /// exp of the least-squares slope of ln ‖dL/dh‖ against distance over the finite, positive
    /// norms of the first `window` distances (all when nil). nil when fewer than two qualify.
    /// A vanishing gradient gives a rate below 1, an exploding one a rate above 1.
    public func decayRate(window: Int? = nil) -> Double? {
        let distances = normsByDistance.prefix(window ?? norms.count)
        var points: [(x: Double, y: Double)] = []
        for (distance, norm) in distances.enumerated() where norm.isFinite && norm > 0 {
            points.append((Double(distance), log(Double(norm))))
        }
        guard points.count >= 2 else { return nil }
        let meanX = points.map(\.x).reduce(0, +) / Double(points.count)
        let meanY = points.map(\.y).reduce(0, +) / Double(points.count)
        var (covariance, variance) = (0.0, 0.0)
        for point in points {
            covariance += (point.x - meanX) * (point.y - meanY)
            variance += (point.x - meanX) * (point.x - meanX)
        }
        return exp(covariance / variance)
    }

    /// ‖dL/dh‖ at the scan's far end over that at the loss end (first time step over last for a
    /// forward scan): how much of the gradient survives the whole sequence. nil when the loss
    /// end's norm is 0 or either is not finite.
    public var endToEndRatio: Double? {
        let byDistance = normsByDistance
        guard let near = byDistance.first, let far = byDistance.last, near.isFinite, far.isFinite, near > 0
        else { return nil }
        return Double(far) / Double(near)
    }
}

extension Sequential {
    /// Whether every recurrent layer records `gradientFlow` on its backward passes.
    public var recordsGradientFlow: Bool {
        get { recurrentLayers.allSatisfy { $0.layer.recordsGradientFlow } }
        set { for entry in recurrentLayers { entry.layer.recordsGradientFlow = newValue } }
    }

    /// The gradient flow of every recurrent layer's last backward pass, in layer order, named
    /// `"\(index).l\(k)"` and `"\(index).l\(k)_reverse"` after the layer's index in the model
    /// (the prefix of its parameter names). Empty until a backward pass ran while recording.
    public var gradientFlow: [GradientFlow] {
        recurrentLayers.flatMap { index, layer in
            layer.gradientFlow.map { GradientFlow(name: "\(index).\($0.name)", norms: $0.norms) }
        }
    }

    private var recurrentLayers: [(index: Int, layer: any GradientFlowRecording)] {
        layers.enumerated().compactMap { index, layer in
            (layer as? any GradientFlowRecording).map { (index, $0) }
        }
    }
}
