// A fingerprint of a data set's examples, stable across runs and processes.

extension TrainingExamples {
    /// A digest of every example's inputs and targets (FNV-1a over their bits, 1,024 examples
    /// at a time), with the count: processes that read different data disagree on it, and a
    /// checkpoint records it (`RecordedData.fingerprint`) so that a resumed run or an evaluation
    /// can tell whether it reads the data the model was trained on.
    /// - Returns: `N examples, digest HEX`.
    public func fingerprint() -> String {
        var hash = FNV1a64()
        func mix(_ value: UInt64) { hash.add(wholeWord: value) }
        for start in stride(from: 0, to: count, by: 1024) {
            let batch = self.batch(Array(start ..< min(start + 1024, count))[...])
            switch batch.input {
            case let .ids(ids, _, lengths, _):
                for id in ids { mix(UInt64(UInt32(bitPattern: id))) }
                for length in lengths { mix(UInt64(length)) }
            case let .values(values, _, _):
                for value in values { mix(UInt64(value.bitPattern)) }
            }
            switch batch.targets {
            case let .values(values, _): for value in values { mix(UInt64(value.bitPattern)) }
            case let .classes(classes): for value in classes { mix(UInt64(UInt32(bitPattern: value))) }
            }
        }
        return "\(count) examples, digest \(String(hash.value, radix: 16))"
    }
}
