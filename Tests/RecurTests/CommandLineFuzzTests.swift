import ArgumentParser
import Testing
@testable import recur

// Mutated argument lists for the `recur` command, parsed in-process as the executable parses
// them (`RecurCommand.parseAsRoot`, which also runs each command's `validate()`). Every list
// must parse or be rejected with a message for the user; nothing runs a command. A rejection
// costs ArgumentParser tens of milliseconds in a debug build (usage text, suggestions), so CI
// runs a few hundred lists; `tools/fuzz.sh cli` runs more.

@Suite("Command-line fuzzing")
struct CommandLineFuzzTests {
    static let seeds: [[String]] = [
        ["bench", "--device", "cpu", "--batch", "2", "--steps", "3", "--input", "4", "--hidden", "5"],
        ["bench", "--cell", "lstm", "--cell", "gru", "--pass", "forward", "--gemm", "0", "--json"],
        ["bench", "--model", "imdb", "--warmup", "0", "--repetitions", "1", "--recurrent-dropout", "0.2"],
        ["verify", "--device", "opencl:0", "--fixture", "a.safetensors", "b.safetensors", "--quiet"],
        ["verify", "--seed", "7", "--fixture-tolerance", "1e-4"],
        ["devices", "--extensions"],
        ["bench", "--layers", "2", "--bidirectional", "--all"],
        [],
    ]

    /// Option names and values that reach the parser's and validators' corners.
    static let tokens = [
        "--device", "--batch", "--steps", "--input", "--hidden", "--layers", "--cell", "--pass", "--model", "--gemm",
        "--warmup", "--repetitions", "--recurrent-dropout", "--fixture", "--fixture-tolerance", "--seed", "--quiet",
        "--json", "--help", "-h", "--", "-", "=", "--batch=", "nan", "inf", "-1", "0", "1e400", "bench", "verify",
        "devices", "help", "--version", "--generate-completion-script", "bash", "opencl:", "rnn-relu", "train-step",
    ]

    @Test func recurArgumentLists() {
        var mutator = Mutator(seed: FuzzBudget.seed &+ 10, maximumLength: 48)
        var random = SeededGenerator(seed: FuzzBudget.seed &+ 11)
        var tally = FuzzTally(parser: "recur arguments")
        for iteration in 0..<FuzzBudget.iterations(300) {
            var arguments = Self.seeds[Int.random(in: 0..<Self.seeds.count, using: &random)]
            for _ in 0..<Int.random(in: 1...3, using: &random) {
                let position = Int.random(in: 0...arguments.count, using: &random)
                switch Int.random(in: 0..<5, using: &random) {
                case 0 where position < arguments.count:
                    // Mutate one argument's bytes (invalid UTF-8 becomes U+FFFD, as argv decoding does).
                    arguments[position] = String(decoding: mutator.mutate([Array(arguments[position].utf8)]), as: UTF8.self)
                case 1 where position < arguments.count:
                    arguments.remove(at: position)
                case 2:
                    arguments.insert(Self.tokens[Int.random(in: 0..<Self.tokens.count, using: &random)], at: position)
                case 3:
                    arguments.insert(Mutator.boundaryIntegers[Int.random(in: 0..<Mutator.boundaryIntegers.count,
                                                                         using: &random)], at: position)
                default:
                    if position < arguments.count { arguments.insert(arguments[position], at: position) }
                }
            }
            do {
                _ = try RecurCommand.parseAsRoot(arguments)
                tally.accepted += 1
            } catch {
                tally.rejected += 1
                let message = RecurCommand.message(for: error)
                let code = RecurCommand.exitCode(for: error)
                // --help and friends exit cleanly with text; every other rejection explains itself.
                #expect(!message.isEmpty || code.isSuccess, "iteration \(iteration): \(arguments) rejected silently")
            }
        }
        print(tally)
        #expect(tally.accepted > 0 && tally.rejected > 0)
    }

    /// Values the commands' `validate()` must refuse before anything runs.
    @Test(arguments: [
        ["bench", "--cell", "lstn"], ["bench", "--pass", "backward"], ["bench", "--model", "imbd"],
        ["bench", "--gemm", "-1"], ["bench", "--batch", "0", "--steps", "1", "--input", "1", "--hidden", "1"],
        ["bench", "--recurrent-dropout", "nan"], ["verify", "--fixture-tolerance", "nan"],
        ["verify", "--fixture-tolerance", "-1"], ["bench", "--batch", "99999999999999999999"],
    ])
    func invalidOptionsAreRefusedAtParsing(_ arguments: [String]) {
        #expect(throws: (any Error).self, "\(arguments)") { _ = try RecurCommand.parseAsRoot(arguments) }
    }
}
