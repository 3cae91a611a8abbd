import Testing
@testable import Recur

// `SelfCheck.trainingOps()`, the check `recur verify` runs on the losses, optimizer steps, clamp
// and row norms: it passes on both backends against the float64 reference, and it can fail.

@Suite("Training op self-check")
struct TrainingOpCheckTests {
    @Test(arguments: TestBackend.allCases)
    func everyTrainingOpMatchesTheFloat64Reference(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        var check = SelfCheck(backend: backend, seed: 41)
        let results = try check.trainingOps()
        for result in results where !result.passed {
            Issue.record("\(which) \(result)")
        }
        // Every op of the Backend protocol's training section is among the checks, and an OpenCL
        // run checks the CPU backend against the same reference too.
        for op in ["sigmoidCrossEntropy", "softmaxCrossEntropy", "meanSquaredError", "sgdStep", "adamStep",
                   "rmsPropStep", "clamp", "constrainRowNorms"] {
            #expect(results.contains { $0.name.hasPrefix(op + " ") }, "\(which) checks \(op)")
        }
        let kinds = Set(results.compactMap { $0.name.split(separator: "[").last?.dropLast() }.map(String.init))
        #expect(kinds == (which == .cpu ? ["cpu"] : ["opencl", "cpu"]), "\(which) \(kinds)")
    }

    /// A reference off by one part in 10^4 in one element fails the check of that op, and only
    /// that check: the tolerances are tight enough to catch a wrong update.
    @Test func aWrongReferenceValueFailsTheCheck() throws {
        var check = SelfCheck(backend: TestBackends.cpu, seed: 42)
        var checks = check.trainingChecks()
        let index = try #require(checks.firstIndex { $0.name.hasPrefix("adamStep W step 4 n=257") })
        let passing = try checks[index].compare(on: TestBackends.cpu)
        #expect(passing.allSatisfy { $0.passed }, "\(passing)")

        let parameter = checks[index].expected[0]
        let largest = try #require(parameter.indices.max { abs(parameter[$0]) < abs(parameter[$1]) })
        checks[index].expected[0][largest] *= 1 + 1e-4
        let failing = try checks[index].compare(on: TestBackends.cpu)
        #expect(!failing[0].passed && failing[0].worstIndex == largest, "\(failing[0])")
        #expect(failing.dropFirst().allSatisfy { $0.passed }, "\(failing)")
    }
}
