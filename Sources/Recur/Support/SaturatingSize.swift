// Sizes that saturate at Int.max instead of overflowing: a count whose product overflows Int
// describes no memory that exists, and the memory checks refuse it like any other size too large.

/// The product of non-negative sizes, Int.max when it overflows (negative sizes count as 0).
func saturatingProduct(_ factors: [Int]) -> Int {
    var result = 1
    for factor in factors {
        let (value, overflow) = result.multipliedReportingOverflow(by: max(factor, 0))
        if overflow { return Int.max }
        result = value
    }
    return result
}

/// The sum of non-negative sizes, Int.max when it overflows (negative sizes count as 0).
func saturatingSum(_ terms: [Int]) -> Int {
    var result = 0
    for term in terms {
        let (value, overflow) = result.addingReportingOverflow(max(term, 0))
        if overflow { return Int.max }
        result = value
    }
    return result
}

/// A byte count in the largest binary unit that keeps it at or above 1, e.g. `6.4 GiB`.
func byteCountText(_ count: Int) -> String {
    if count == Int.max { return "more than 8 EiB" }
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    var value = Double(count)
    var unit = 0
    while value >= 1024, unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    guard unit > 0 else { return "\(count) B" }
    let tenths = (value * 10).rounded()  // below 10240: no overflow
    let whole = Int(tenths) / 10
    return "\(whole).\(Int(tenths) % 10) \(units[unit])"
}
