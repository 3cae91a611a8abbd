import CFloatControl

/// Runs `body` with subnormal floats flushed to zero on this thread (FTZ and DAZ on x86), then
/// restores the caller's mode. Backpropagation through many time steps drives gradients into the
/// subnormal range, where x86 arithmetic is 10-100x slower; results that small are far below
/// float32's resolution of any gradient that matters. Only the calling thread's mode changes, and
/// only for the duration of `body`.
func withSubnormalsFlushed<Result>(_ body: () throws -> Result) rethrows -> Result {
    let saved = recur_flush_subnormals_begin()
    defer { recur_flush_subnormals_end(saved) }
    return try body()
}
