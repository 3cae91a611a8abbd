extension Duration {
    /// The duration in seconds as a `Double` (attosecond components included), for timings and
    /// rates printed or compared with a limit.
    public var inSeconds: Double {
        Double(components.seconds) + Double(components.attoseconds) * 1e-18
    }
}
