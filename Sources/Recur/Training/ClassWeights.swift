// Class weights for an imbalanced classifier, from the training split's class counts.

/// Per-class loss weights.
public enum ClassWeights {
    /// scikit-learn's `compute_class_weight("balanced")`: w_k = N / (K · n_k) for N examples of
    /// K classes, n_k of class k. Every class then carries the same total weight N / K, and the
    /// mean weight over the training examples is 1.
    /// - Throws: `RecurError.invalidArgument` when a class has no example (its weight would be
    ///   infinite) or there are fewer than two classes.
    public static func balanced(counts: [Int]) throws -> [Float] {
        let operation = "ClassWeights.balanced"
        guard counts.count >= 2 else {
            throw RecurError.invalidArgument(operation: operation, detail: "needs at least 2 classes, got \(counts.count)")
        }
        if let empty = counts.firstIndex(where: { $0 <= 0 }) {
            throw RecurError.invalidArgument(
                operation: operation,
                detail: "class \(empty) has no training example, so no balanced weight (N / (K · 0))")
        }
        let total = Double(counts.reduce(0, +))
        let classes = Double(counts.count)
        return counts.map { Float(total / (classes * Double($0))) }
    }

    /// How many examples of `data` (a classifier's) belong to each of `classes` classes, read
    /// 1,024 at a time.
    public static func counts(in data: any TrainingExamples, classes: Int) -> [Int] {
        var counts = [Int](repeating: 0, count: classes)
        for start in stride(from: 0, to: data.count, by: 1024) {
            let batch = data.batch(Array(start ..< min(start + 1024, data.count))[...])
            for k in Self.classes(of: batch.targets) where (0..<classes).contains(k) { counts[k] += 1 }
        }
        return counts
    }

    /// The class of each example of a classifier's targets: the ids themselves, or for a single
    /// sigmoid output, 1 for a label ≥ 0.5 and 0 below.
    static func classes(of targets: TrainingBatch.Targets) -> [Int] {
        switch targets {
        case .classes(let ids): ids.map { Int($0) }
        case .values(let labels, _): labels.map { $0 >= 0.5 ? 1 : 0 }
        }
    }
}
