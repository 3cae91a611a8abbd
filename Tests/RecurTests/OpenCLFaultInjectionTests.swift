import COpenCL
import Foundation
import Testing
@testable import Recur

// Faults injected into the OpenCL layer (`OpenCLFaultInjector`) in the middle of a training
// step: forward, backward, clipping and the optimizer. Each must stop the step with an error
// that names the failed call and its status, leak no buffer, and leave the backend usable, or,
// for a lost device, report itself lost and refuse every later op.
//
// Each test makes its own backend, since faults must not reach the shared one other tests use.

/// A fresh OpenCL backend on the test device, or nil when OpenCL tests may be skipped.
private func privateBackend() throws -> OpenCLBackend? {
    guard let device = try TestBackends.openCLDevice() else { return nil }
    return try OpenCLBackend(device: device)
}

/// The text an error shows a user: what failed, with which status.
private func text(of error: any Error) -> String { String(describing: error) }

/// How many calls at `point` one training step makes (after a first step created the
/// optimizer state and compiled every program).
private func callsPerStep(_ point: OpenCLFaultInjector.Point, backend: OpenCLBackend) throws -> Int {
    let trainer = try TinyTrainer(backend: backend)
    try trainer.step()
    backend.faultInjector.countCalls()
    try trainer.step()
    try backend.synchronize()
    let calls = backend.faultInjector.calls(at: point)
    backend.faultInjector.reset()
    return calls
}

/// Injects `code` at call n of `point` within a training step, for n spread over the step's
/// calls, and checks the error, the live buffer count and that the next step succeeds.
private func injectDuringTrainingSteps(
    _ point: OpenCLFaultInjector.Point, code: Int32, expecting expected: [String], samples: Int = 64,
    sourceLocation: SourceLocation = #_sourceLocation
) throws {
    guard let backend = try privateBackend() else { return }
    let total = try callsPerStep(point, backend: backend)
    #expect(total > 0, "a training step makes no \(point) call", sourceLocation: sourceLocation)
    let baseline = backend.memoryStatistics.liveBuffers
    let calls = Array(Swift.stride(from: 1, through: total, by: max(1, total / samples)))
    print("fault injection \(point): \(total) calls per training step, faults injected at calls \(calls)")
    for call in calls {
        do {
            let trainer = try TinyTrainer(backend: backend)
            try trainer.step()
            backend.faultInjector.fail(point, onCall: call, with: code)
            do {
                try trainer.step()
                try backend.synchronize()
                Issue.record("\(point) call \(call) of \(total): the step succeeded despite the fault",
                             sourceLocation: sourceLocation)
            } catch {
                let message = text(of: error)
                #expect(expected.allSatisfy { message.contains($0) },
                        "\(point) call \(call): \(message) should name \(expected)", sourceLocation: sourceLocation)
                #expect(error is OpenCLError || error is RecurError, sourceLocation: sourceLocation)
            }
            #expect(backend.faultInjector.injectedCount == 1, sourceLocation: sourceLocation)
            backend.faultInjector.reset()
            // The backend is still usable: the same model trains on.
            try trainer.step()
            try backend.synchronize()
        }
        #expect(backend.memoryStatistics.liveBuffers == baseline,
                "\(point) call \(call): \(backend.memoryStatistics.liveBuffers) buffers live, \(baseline) before",
                sourceLocation: sourceLocation)
        #expect(!backend.isDeviceLost, sourceLocation: sourceLocation)
    }
}

@Suite("OpenCL fault injection", .serialized)
struct OpenCLFaultInjectionTests {
    @Test func kernelEnqueueFailureStopsTheStep() throws {
        try injectDuringTrainingSteps(.enqueue, code: CL_OUT_OF_RESOURCES, expecting: ["CL_OUT_OF_RESOURCES", "(-5)"])
    }

    @Test func bufferAllocationFailureIsOutOfMemory() throws {
        try injectDuringTrainingSteps(
            .allocation, code: CL_MEM_OBJECT_ALLOCATION_FAILURE,
            expecting: ["out of memory allocating", "clCreateBuffer", "CL_MEM_OBJECT_ALLOCATION_FAILURE"])
    }

    @Test func transferFailureStopsTheStep() throws {
        try injectDuringTrainingSteps(.transfer, code: CL_INVALID_COMMAND_QUEUE, expecting: ["CL_INVALID_COMMAND_QUEUE"])
    }

    /// A program that fails to build fails the op that needed it, with the compiler's log; the
    /// program is not cached, so the next op builds it again and succeeds.
    @Test func programBuildFailureNamesTheProgramAndIsRetried() throws {
        guard let backend = try privateBackend() else { return }
        let x = try backend.upload([Float]([1, -2, 3]), shape: [3])
        let y = try backend.zeros([3])
        backend.faultInjector.fail(.programBuild, with: CL_BUILD_PROGRAM_FAILURE)
        do {
            try backend.activate(.tanh, x, into: y)
            Issue.record("the build fault was not reported")
        } catch let error as OpenCLError {
            #expect(error.function == "clBuildProgram")
            #expect(error.codeName == "CL_BUILD_PROGRAM_FAILURE")
            #expect(error.context.contains("elementwise"), "\(error.context) should name the program")
            #expect(error.buildLog != nil)
        }
        try backend.activate(.tanh, x, into: y)
        assertClose(try backend.download(y), [1.0, -2, 3].map { Float(tanh($0)) }, "tanh after a retried build")
        #expect(backend.faultInjector.calls(at: .programBuild) == 2)
    }

    /// A device lost in the middle of a step: the step throws, the backend says it is lost and
    /// every later op fails, and releasing everything still returns every buffer.
    @Test func lostDeviceIsReportedAndStaysLost() throws {
        guard let backend = try privateBackend() else { return }
        let baseline = backend.memoryStatistics.liveBuffers
        do {
            let trainer = try TinyTrainer(backend: backend)
            try trainer.step()
            #expect(!backend.isDeviceLost)
            backend.faultInjector.loseDevice()
            #expect(throws: OpenCLError.self) {
                try trainer.step()
                try backend.synchronize()
            }
            #expect(backend.isDeviceLost)
            do {
                _ = try backend.upload([Float(1)], shape: [1])
                Issue.record("an upload to a lost device succeeded")
            } catch {
                #expect(text(of: error).contains("CL_DEVICE_NOT_AVAILABLE"), "\(error)")
            }
            #expect(throws: (any Error).self) { try trainer.step() }
        }
        #expect(backend.memoryStatistics.liveBuffers == baseline)
    }

    /// Disarmed, the injector changes nothing: a step runs and no fault is counted.
    @Test func disarmedInjectorInjectsNothing() throws {
        guard let backend = try privateBackend() else { return }
        let trainer = try TinyTrainer(backend: backend)
        try trainer.step()
        try trainer.step()
        #expect(backend.faultInjector.injectedCount == 0)
        #expect(backend.faultInjector.calls(at: .enqueue) == 0)
        #expect(!backend.isDeviceLost)
    }
}
