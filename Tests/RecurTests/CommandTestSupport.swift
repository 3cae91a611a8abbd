import Foundation
import Testing

/// What one run of the `recur` executable did.
struct CommandRun {
    var status: Int32
    var stdout: String
    var stderr: String
    /// Whether the run was killed for outliving its time limit.
    var timedOut: Bool
    /// Whether it ended by a signal (a crash or a trap) rather than exiting.
    var signalled: Bool
}

/// The `recur` executable built beside the test bundle (the test target depends on it).
let recurExecutablePath: String = {
    URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("recur").path
}()

/// Runs `recur` with `arguments` (in `directory`, else the test's own) and returns its exit status
/// and output; kills it after `timeLimit` seconds, so that a command that hangs fails its test
/// instead of stalling the run.
func runRecur(_ arguments: [String], in directory: String? = nil, timeLimit: Double = 240,
              environment: [String: String] = [:], input: String? = nil) throws -> CommandRun {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: recurExecutablePath)
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
    if !environment.isEmpty {
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    let stdin = Pipe()
    process.standardInput = input == nil ? FileHandle.nullDevice : stdin
    try process.run()
    if let input {
        stdin.fileHandleForWriting.write(Data(input.utf8))
        try? stdin.fileHandleForWriting.close()
    }
    // Both pipes are drained at once: a child that fills one while the test waits on the
    // other would otherwise stall.
    final class Collected: @unchecked Sendable { var out = Data(); var err = Data() }
    let collected = Collected()
    let group = DispatchGroup()
    DispatchQueue.global().async(group: group) { collected.out = out.fileHandleForReading.readDataToEndOfFile() }
    DispatchQueue.global().async(group: group) { collected.err = err.fileHandleForReading.readDataToEndOfFile() }
    let deadline = Date().addingTimeInterval(timeLimit)
    var timedOut = false
    while process.isRunning {
        if Date() > deadline {
            timedOut = true
            process.terminate()
            Thread.sleep(forTimeInterval: 0.5)
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            break
        }
        Thread.sleep(forTimeInterval: 0.01)
    }
    process.waitUntilExit()
    group.wait()
    return CommandRun(status: process.terminationStatus, stdout: String(decoding: collected.out, as: UTF8.self),
                      stderr: String(decoding: collected.err, as: UTF8.self), timedOut: timedOut,
                      signalled: process.terminationReason == .uncaughtSignal)
}

/// Expects `run` to have ended with a clear error: exit status 1 or 2 (not a signal, not a time
/// out), nothing on stdout but what the command printed before, and a message on stderr that
/// contains every one of `phrases`.
func expectCleanFailure(_ run: CommandRun, _ phrases: String..., sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(!run.timedOut && !run.signalled, "the command crashed or hung: \(run.stderr)", sourceLocation: sourceLocation)
    #expect(run.status == 1 || run.status == 2, "exit status \(run.status): \(run.stderr)", sourceLocation: sourceLocation)
    for phrase in phrases {
        #expect(run.stderr.contains(phrase), "stderr lacks '\(phrase)': \(run.stderr)", sourceLocation: sourceLocation)
    }
}
