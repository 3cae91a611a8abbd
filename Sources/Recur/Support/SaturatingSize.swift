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
