import Synchronization
import Testing
@testable import Recur

import Foundation

// The OpenCL layer under the backend: device listing, error names, program building and its
// binary cache, profiling, and use from several threads at once.

@Suite struct OpenCLRuntimeTests {
    @Test func devicesAreListedWithTheirProperties() throws {
        guard try TestBackends.openCL() != nil else { return }
        let devices = try OpenCLDevice.all()
        #expect(!devices.isEmpty)
        for (position, device) in devices.enumerated() {
            #expect(device.index == position)
            #expect(!device.name.isEmpty)
            #expect(!device.platformName.isEmpty)
            #expect(device.openCLCVersion.hasPrefix("OpenCL C"))
            #expect(device.computeUnits > 0)
            #expect(device.globalMemoryBytes > 0)
            #expect(device.localMemoryBytes > 0)
            #expect(device.maxWorkGroupSize > 0)
            #expect(device.maxAllocationBytes > 0)
            #expect(device.description.hasPrefix("opencl:\(position) "))
        }
        #expect(try OpenCLPlatform.all().count >= 1)
    }

    @Test func everyStandardStatusCodeHasAName() {
        for code in Array(-19...0) + Array(-72 ... -30) {
            #expect(OpenCLStatus.name(of: Int32(code)).hasPrefix("CL_"), "code \(code)")
        }
        #expect(OpenCLStatus.name(of: -1001) == "CL_PLATFORM_NOT_FOUND_KHR")
        #expect(OpenCLStatus.clblastName(of: -2046) == "CLBlastInvalidLocalMemUsage")
        #expect(OpenCLStatus.clblastName(of: -54) == "CL_INVALID_WORK_GROUP_SIZE")

        let error = OpenCLError(function: "clEnqueueNDRangeKernel", code: -54, context: "launching add")
        #expect(error.description == "clEnqueueNDRangeKernel failed with CL_INVALID_WORK_GROUP_SIZE (-54) while launching add")
        #expect(OpenCLError(function: "clCreateBuffer", code: -4).isOutOfMemory)
    }

    @Test func aKernelThatFailsToCompileReportsItsBuildLog() throws {
        guard let backend = try TestBackends.openCL() else { return }
        let source = "__kernel void broken(__global float* x) { x[0] = undefined_value_in_test; }\n"
        do {
            _ = try backend.buildProgram(source: source, name: "broken", options: "-cl-std=CL1.2")
            Issue.record("a kernel with an undeclared identifier compiled")
        } catch let error as OpenCLError {
            #expect(error.function == "clBuildProgram")
            #expect(error.codeName == "CL_BUILD_PROGRAM_FAILURE")
            let log = try #require(error.buildLog)
            #expect(log.contains("undefined_value_in_test"), "build log: \(log)")
            #expect(error.description.contains(log))
        }
    }

    @Test func anAllocationBeyondTheDeviceLimitThrowsOutOfMemory() throws {
        guard let backend = try TestBackends.openCL() else { return }
        let elements = backend.device.maxAllocationBytes / MemoryLayout<Float>.size + 1
        expectRecurError("zeros of \(elements) floats", matches: { error in
            if case .outOfMemory(let operation, let bytes, _) = error { return operation == "zeros" && bytes == elements * 4 }
            return false
        }) {
            _ = try backend.zeros([elements])
        }
    }

    @Test func everyKernelFamilyBuilds() throws {
        guard let backend = try TestBackends.openCL() else { return }
        for family in [KernelFamily.elementwise, .reduce, .embedding] {
            _ = try backend.program(family)
        }
    }

    /// A second build loads the binary from the cache, and a damaged cache file falls back to a
    /// build from source instead of failing or crashing.
    @Test func programBinaryCacheStoresLoadsAndSurvivesCorruption() throws {
        guard let backend = try TestBackends.openCL() else { return }
        let directory = FileManager.default.temporaryDirectory.path + "/recur-cache-test-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cache = ProgramBinaryCache(directory: directory)
        let source = """
            __kernel void twice(__global float* x, const int n) {
                const int i = get_global_id(0);
                if (i < n) x[i] *= 2.0f;
            }
            """
        let options = "-cl-std=CL1.2"
        let key = ProgramBinaryCache.key(device: backend.device, options: options, source: source)

        _ = try backend.context.buildProgram(source: source, name: "twice", options: options, cache: cache)
        let path = cache.path(name: "twice", key: key)
        let stored = try #require(FileManager.default.contents(atPath: path))
        #expect(cache.load(name: "twice", key: key) != nil)
        #expect(cache.load(name: "twice", key: key + "other") == nil)
        let cached = try backend.context.buildProgram(source: source, name: "twice", options: options, cache: cache)
        let y = try backend.upload([1, -1] as [Float], shape: [2])
        try cached.launch("twice", globalSize: [2], arguments: [.tensor(y), .int(2)])
        #expect(try backend.download(y) == [2, -2])

        var corrupted = [UInt8](stored)
        corrupted[corrupted.count - 1] ^= 0xff
        for damaged in [corrupted, Array(stored.prefix(stored.count / 2)), Array("garbage".utf8), []] {
            #expect(FileManager.default.createFile(atPath: path, contents: Data(damaged)))
            #expect(cache.load(name: "twice", key: key) == nil)
            let program = try backend.context.buildProgram(source: source, name: "twice", options: options, cache: cache)
            let x = try backend.upload([1, 2, 3] as [Float], shape: [3])
            try program.launch("twice", globalSize: [3], arguments: [.tensor(x), .int(3)])
            #expect(try backend.download(x) == [2, 4, 6])
        }
    }

    @Test func fnv1aMatchesPublishedValues() {
        #expect(FNV1a64.hash([]) == 0xcbf2_9ce4_8422_2325)
        #expect(FNV1a64.hash(Array("a".utf8)) == 0xaf63_dc4c_8601_ec8c)
        #expect(FNV1a64.hash(Array("foobar".utf8)) == 0x8594_4171_f739_67e8)
    }

    @Test func profilingEventsTimeEnqueuedWork() throws {
        guard let backend = try TestBackends.openCL() else { return }
        let x = try backend.zeros([1 << 20])
        try backend.fill(x, with: 1)
        let nanoseconds = try backend.measureDeviceNanoseconds {
            for _ in 0..<4 { try backend.scale(x, by: 2) }
        }
        #expect(nanoseconds > 0)
        #expect(nanoseconds < 60_000_000_000)
        #expect(try backend.download(x).allSatisfy { $0 == 16 })
    }

    /// Many tasks share one backend; each checks its own results.
    @Test func oneBackendServesManyThreads() async throws {
        guard let backend = try TestBackends.openCL() else { return }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<8 {
                group.addTask {
                    var random = SeededGenerator(seed: 100 + UInt64(task))
                    for size in [7, 257, 1000] {
                        let a = random.floats(size)
                        let b = random.floats(size)
                        let out = try backend.zeros([size])
                        try backend.add(try backend.upload(a, shape: [size]), try backend.upload(b, shape: [size]),
                                        into: out)
                        try backend.scale(out, by: 0.5)
                        let squares = try backend.sumOfSquares(out)
                        let expected = zip(a, b).map { ($0 + $1) * 0.5 }
                        #expect(try backend.download(out) == expected)
                        let expectedSquares = Float(expected.reduce(0.0) { $0 + Double($1) * Double($1) })
                        assertClose([squares], [expectedSquares], relativeTolerance: 1e-5, "task \(task) n=\(size)")
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    /// Six threads, each making a backend (a context of its own), launching one kernel source over
    /// grids of changing width and work-group size, and releasing it, ten times over. When kernel
    /// commands of one process overlap on PoCL 3.1, this aborts the process in
    /// `pocl_release_dlhandle_cache` (`Assertion 'found->ref_count > 0' failed`): with the one-at-a-time
    /// launches of `OpenCLContext.launchingKernels` turned off it aborted in 2 runs of 8; with them,
    /// in none of 10. A regression here crashes the test run, which is the point.
    @Test func backendsMadeAndReleasedOnManyThreadsLaunchSafely() throws {
        guard let device = try TestBackends.openCLDevice() else { return }
        let source = """
            __kernel void add_one(__global float* x, const int n) {
                const int i = get_global_id(0);
                if (i < n) {
                    float v = x[i];
                    for (int k = 0; k < 64; ++k) v = v * 0.5f + 0.5f;  // some work, so launches overlap
                    x[i] += 1.0f + (v - 1.0f) * 0.0f;
                }
            }
            __kernel void add_two(__global float* x, const int n) {
                const int i = get_global_id(0);
                if (i < n) x[i] += 2.0f;
            }
            """
        // Threads of their own, not tasks: the task pool has one thread per core, too few to overlap.
        let failures = Mutex<[String]>([])
        let finished = DispatchGroup()
        for task in 0..<6 {
            finished.enter()
            let thread = Thread {
                defer { finished.leave() }
                do {
                    var random = SeededGenerator(seed: 300 + UInt64(task))
                    for _ in 0..<10 {
                        let backend = try OpenCLBackend(device: device, loadingTunedGEMMParameters: false)
                        let program = try backend.buildProgram(source: source, name: "add", options: "-cl-std=CL1.2")
                        let kernel = random.next() & 1 == 0 ? "add_one" : "add_two"
                        let x = try backend.zeros([64 * 2000])
                        // What each element should hold, kept as differences: +v at 0, −v at count.
                        var steps = [Float](repeating: 0, count: 64 * 2000 + 1)
                        for _ in 0..<16 {
                            let count = 64 * Int.random(in: 1...2000, using: &random)
                            let group = random.next() & 1 == 0 ? 64 : 32
                            try program.launch(kernel, globalSize: [count], localSize: [group],
                                               arguments: [.tensor(x), .int(count)])
                            let value: Float = kernel == "add_one" ? 1 : 2
                            steps[0] += value
                            steps[count] -= value
                        }
                        var running: Float = 0
                        let expected = steps.dropLast().map { step -> Float in
                            running += step
                            return running
                        }
                        if try backend.download(x) != expected { failures.withLock { $0.append("task \(task): wrong sums") } }
                    }
                } catch {
                    failures.withLock { $0.append("task \(task): \(error)") }
                }
            }
            thread.start()
        }
        finished.wait()
        #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0 })")
    }
}
