import Foundation
import Testing
@testable import Recur

/// A fresh empty folder for a parameter store, removed by the caller.
private func makeStoreDirectory() throws -> String {
    let path = FileManager.default.temporaryDirectory
        .appendingPathComponent("recur-gemm-tuning-\(UUID().uuidString)", isDirectory: true).path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// Expects OpenCL GEMMs of odd shapes, plain and transposed, to match the CPU backend's.
private func expectGEMMMatchesCPU(on backend: OpenCLBackend, seed: UInt64, _ what: String) throws {
    var random = SeededGenerator(seed: seed)
    for (m, n, k, transposeA, transposeB) in [(37, 53, 29, false, false), (64, 48, 80, true, false),
                                              (33, 65, 17, false, true), (96, 96, 96, true, true)] {
        let aShape: Shape = transposeA ? [k, m] : [m, k]
        let bShape: Shape = transposeB ? [n, k] : [k, n]
        let aValues = random.floats(m * k)
        let bValues = random.floats(k * n)
        var results: [[Float]] = []
        for device in [backend as any Backend, TestBackends.cpu] {
            let a = try device.upload(aValues, shape: aShape)
            let b = try device.upload(bValues, shape: bShape)
            let c = try device.zeros([m, n])
            try device.matmul(a, transposeA: transposeA, b, transposeB: transposeB, into: c)
            results.append(try device.download(c))
        }
        assertClose(results[0], results[1], relativeTolerance: 1e-4, absoluteTolerance: 1e-4,
                    "\(what): \(m)x\(k) by \(k)x\(n) GEMM, transposed A \(transposeA), B \(transposeB)")
    }
}

@Suite(.serialized) struct GEMMTuningTests {
    // MARK: The search space

    @Test func generatorYieldsOnlyCombinationsThatMeetCLBlastsConstraints() throws {
        let space = XgemmDirectSearchSpace(maxWorkGroupSize: 256, localMemoryBytes: 16 * 1024)
        let candidates = space.allCandidates()
        #expect(!candidates.isEmpty)
        for candidate in candidates {
            let v = candidate.values
            #expect(v.keys.sorted() == XgemmDirectSearchSpace.parameterNames)
            let wgd = v["WGD"]!, threads = v["MDIMCD"]! * v["NDIMCD"]!
            #expect(wgd % v["KWID"]! == 0, "\(candidate)")
            #expect(wgd % (v["MDIMCD"]! * v["VWMD"]!) == 0, "\(candidate)")
            #expect(wgd % (v["NDIMCD"]! * v["VWND"]!) == 0, "\(candidate)")
            #expect(wgd % (v["MDIMAD"]! * v["VWMD"]!) == 0, "\(candidate)")
            #expect(wgd % (v["NDIMBD"]! * v["VWND"]!) == 0, "\(candidate)")
            #expect(threads % v["MDIMAD"]! == 0 && wgd % (threads / v["MDIMAD"]!) == 0, "\(candidate)")
            #expect(threads % v["NDIMBD"]! == 0 && wgd % (threads / v["NDIMBD"]!) == 0, "\(candidate)")
            #expect(threads <= 256, "\(candidate)")
            #expect(4 * (wgd * (wgd + v["PADA"]!) + wgd * (wgd + v["PADB"]!)) <= 16 * 1024, "\(candidate)")
        }
        // The device limits bind: 16 KiB of local memory rules out 64 x 64 tiles, 256 work-items 32 x 16 groups.
        #expect(!candidates.contains { $0.values["WGD"] == 64 })
        #expect(!candidates.contains { $0.values["MDIMCD"]! * $0.values["NDIMCD"]! > 256 })
        let roomier = XgemmDirectSearchSpace(maxWorkGroupSize: 1024, localMemoryBytes: 64 * 1024).allCandidates()
        #expect(roomier.contains { $0.values["WGD"] == 64 })
        #expect(roomier.count > candidates.count)

        // Drawn candidates: as many as asked, distinct, the same for the same seed.
        let drawn = space.candidates(count: 5, seed: 3)
        #expect(drawn.count == 5 && Set(drawn).count == 5)
        #expect(drawn == space.candidates(count: 5, seed: 3))
    }

    @Test func invalidParameterSetsAreRejected() {
        let space = XgemmDirectSearchSpace(maxWorkGroupSize: 1024, localMemoryBytes: 64 * 1024)
        let valid = space.allCandidates()[0]
        #expect(space.isValid(valid))
        var missing = valid
        missing.values["PADB"] = nil
        #expect(!space.isValid(missing))
        var unevenUnroll = valid
        unevenUnroll.values["WGD"] = 8
        unevenUnroll.values["KWID"] = 16
        #expect(!space.isValid(unevenUnroll))
        var otherKernel = valid
        otherKernel.kernel = "Xgemm"
        #expect(!space.isValid(otherKernel))
        var zero = valid
        zero.values["VWMD"] = 0
        #expect(!space.isValid(zero))
    }

    // MARK: The search on the device

    @Test func tinySearchReturnsParametersThatStillComputeTheRightGEMM() throws {
        guard let device = try TestBackends.openCLDevice() else { return }
        let backend = try OpenCLBackend(device: device, loadingTunedGEMMParameters: false)
        let result = try GEMMTuner.search(on: backend, options: GEMMTuningOptions(
            sizes: [64, 96], maxCandidates: 2, seconds: 600, repetitions: 1, seed: 1))
        #expect(result.tried == 2)
        #expect(result.defaultMilliseconds > 0)
        let best = try #require(result.best, "no candidate ran: \(result.failures.map(\.reason))")
        #expect(XgemmDirectSearchSpace(device: device).isValid(best))
        #expect((result.bestMilliseconds ?? 0) > 0)
        // The best is left installed: the GEMM with it must match the CPU.
        try expectGEMMMatchesCPU(on: backend, seed: 21, "after the search (\(best))")
    }

    // MARK: Saving and loading

    @Test func savedParametersLoadBackAndApplyingThemKeepsGEMMCorrect() throws {
        guard let device = try TestBackends.openCLDevice() else { return }
        let directory = try makeStoreDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = GEMMParameterStore(directory: directory)
        let space = XgemmDirectSearchSpace(device: device)
        let parameters = space.candidates(count: 1, seed: 1)[0]

        let before = store.load(device: device, kernel: XgemmDirectSearchSpace.kernel)
        #expect(before.parameters == nil && before.warning == nil)
        let path = try store.save(parameters, device: device)
        #expect(path == store.path(device: device, kernel: XgemmDirectSearchSpace.kernel))
        let loaded = store.load(device: device, kernel: XgemmDirectSearchSpace.kernel)
        #expect(loaded.parameters == parameters)
        #expect(loaded.warning == nil)

        let applied = store.applySaved(to: device)
        #expect(applied.installed == [parameters])
        #expect(applied.warnings.isEmpty)
        let backend = try OpenCLBackend(device: device, loadingTunedGEMMParameters: false)
        try expectGEMMMatchesCPU(on: backend, seed: 22, "with saved parameters \(parameters)")

        #expect(try store.remove(device: device, kernel: XgemmDirectSearchSpace.kernel))
        #expect(store.load(device: device, kernel: XgemmDirectSearchSpace.kernel).parameters == nil)
        #expect(try !store.remove(device: device, kernel: XgemmDirectSearchSpace.kernel))
    }

    @Test func corruptMismatchedOrInvalidFilesAreIgnoredWithAWarning() throws {
        guard let device = try TestBackends.openCLDevice() else { return }
        let directory = try makeStoreDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = GEMMParameterStore(directory: directory)
        let kernel = XgemmDirectSearchSpace.kernel
        let parameters = XgemmDirectSearchSpace(device: device).candidates(count: 1, seed: 2)[0]
        let path = try store.save(parameters, device: device)
        let original = try String(contentsOfFile: path, encoding: .utf8)

        let damaged: [(String, String)] = [
            ("truncated", String(original.prefix(original.count / 2))),
            ("not JSON", "\u{0}\u{1}garbage"),
            ("empty", ""),
            ("another driver", original.replacingOccurrences(
                of: "\"driver\":\(try jsonString(device.driverVersion))", with: "\"driver\":\"0.0-other\"")),
            ("another device", original.replacingOccurrences(
                of: "\"device\":\(try jsonString(device.name))", with: "\"device\":\"Some Other GPU\"")),
            ("a newer format", original.replacingOccurrences(of: "\"format\":1", with: "\"format\":99")),
            ("an uneven unroll", original.replacingOccurrences(
                of: "\"KWID\":\(parameters.values["KWID"]!)", with: "\"KWID\":3")),
            ("a missing parameter", original.replacingOccurrences(of: "\"PADA\":\(parameters.values["PADA"]!),", with: "")),
        ]
        for (what, text) in damaged {
            #expect(text != original, "the \(what) edit changed nothing")
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            let loaded = store.load(device: device, kernel: kernel)
            #expect(loaded.parameters == nil, "\(what)")
            #expect(loaded.warning?.contains(path) == true, "\(what): \(loaded.warning ?? "no warning")")
            let applied = store.applySaved(to: device)
            #expect(applied.installed.isEmpty && applied.warnings.count == 1, "\(what)")
        }
    }
}

/// `text` as a JSON string literal, as the library's encoder writes it.
private func jsonString(_ text: String) throws -> String {
    String(decoding: try RecurJSON.encoder().encode(text), as: UTF8.self)
}
