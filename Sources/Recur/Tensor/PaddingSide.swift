// Below the backends: the data readers pad batches and the recurrent ops read the same side.

/// Where the padding of a shorter sequence sits in a `[T, B, F]` batch.
/// `post`: the valid steps are t < length. `pre`: the valid steps are t >= T - length.
public enum PaddingSide: String, Sendable, CaseIterable, Codable {
    case pre
    case post
}
