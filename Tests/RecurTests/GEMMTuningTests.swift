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

    @Test func xgemmCandidatesMeetCLBlastsConstraintsAndStartWithItsKnownGoodSets() throws {
        let space = XgemmSearchSpace(maxWorkGroupSize: 256, localMemoryBytes: 16 * 1024)
        let candidates = space.candidates(count: 200, seed: 5)
        #expect(candidates.count == 200 && Set(candidates).count == 200)
        #expect(candidates == space.candidates(count: 200, seed: 5))
        #expect(candidates != space.candidates(count: 200, seed: 6))
        // CLBlast's known-good sets that fit come first, in their order.
        let knownGood = XgemmSearchSpace.knownGood.filter(space.isValid)
        #expect(!knownGood.isEmpty)
        #expect(Array(candidates.prefix(knownGood.count)) == knownGood)
        #expect(space.candidates(count: 1, seed: 9) == [XgemmSearchSpace.knownGood[0]])
        for candidate in candidates {
            let v = candidate.values
            #expect(v.keys.sorted() == XgemmSearchSpace.parameterNames)
            let (mwg, nwg, kwg) = (v["MWG"]!, v["NWG"]!, v["KWG"]!)
            let threads = v["MDIMC"]! * v["NDIMC"]!
            #expect(kwg % v["KWI"]! == 0, "\(candidate)")
            #expect(mwg % (v["MDIMC"]! * v["VWM"]!) == 0, "\(candidate)")
            #expect(nwg % (v["NDIMC"]! * v["VWN"]!) == 0, "\(candidate)")
            #expect(mwg % (v["MDIMA"]! * v["VWM"]!) == 0, "\(candidate)")
            #expect(nwg % (v["NDIMB"]! * v["VWN"]!) == 0, "\(candidate)")
            #expect(threads <= 256, "\(candidate)")
            #expect(4 * (v["SA"]! * kwg * mwg + v["SB"]! * kwg * nwg) <= 16 * 1024, "\(candidate)")
            if v["GEMMK"] == 0 {
                #expect(v["KREG"] == 1, "\(candidate)")
                #expect(kwg % (threads / v["MDIMA"]!) == 0 && kwg % (threads / v["NDIMB"]!) == 0, "\(candidate)")
            } else {
                #expect(v["GEMMK"] == 1 && kwg == 1 && v["KWI"] == 1, "\(candidate)")
                #expect(v["SA"] == 0 && v["SB"] == 0 && v["STRM"] == 0 && v["STRN"] == 0, "\(candidate)")
                #expect(v["MDIMA"] == v["MDIMC"] && v["NDIMB"] == v["NDIMC"], "\(candidate)")
                #expect(v["KREG"]! % v["VWN"]! == 0, "\(candidate)")
            }
        }
        // The draws reach both kernels.
        #expect(candidates.contains { $0.values["GEMMK"] == 0 } && candidates.contains { $0.values["GEMMK"] == 1 })
        // The device limits bind: 16 KiB of local memory rules out caching two 32 x 128 tiles.
        #expect(!candidates.contains { $0.values["SA"] == 1 && $0.values["SB"] == 1 && $0.values["KWG"] == 32
            && $0.values["MWG"] == 128 && $0.values["NWG"] == 128 })
    }

    @Test func invalidXgemmParameterSetsAreRejected() {
        let space = XgemmSearchSpace(maxWorkGroupSize: 1024, localMemoryBytes: 64 * 1024)
        // CLBlast's default: GEMMK=0 KREG=1 KWG=32 KWI=2 MDIMA=8 MDIMC=8 MWG=32 NDIMB=16 NDIMC=16 NWG=32 SA=SB=1 VWM=4 VWN=2.
        let valid = XgemmSearchSpace.knownGood[0]
        #expect(space.isValid(valid))
        let kernel1 = XgemmSearchSpace.knownGood[4]
        #expect(kernel1.values["GEMMK"] == 1 && space.isValid(kernel1))
        func refused(_ base: GEMMKernelParameters, _ edits: [String: Int?], _ why: String) {
            var parameters = base
            for (name, value) in edits { parameters.values[name] = value }
            #expect(!space.isValid(parameters), "\(why): \(parameters)")
        }
        refused(valid, ["SB": nil], "a missing parameter")
        refused(valid, ["KWI": 3], "KWG not a multiple of KWI")
        refused(valid, ["MDIMC": 16], "MWG not a multiple of MDIMC * VWM")
        refused(valid, ["VWN": 4], "NWG not a multiple of NDIMC * VWN")
        refused(valid, ["MDIMA": 16], "MWG not a multiple of MDIMA * VWM")
        refused(valid, ["NDIMB": 32], "NWG not a multiple of NDIMB * VWN")
        refused(valid, ["KWG": 4, "KWI": 2], "KWG not a multiple of KDIMA")
        refused(valid, ["KREG": 2], "KREG other than 1 for kernel 0")
        refused(valid, ["GEMMK": 2], "no kernel 2")
        refused(valid, ["VWM": 3, "MWG": 96, "MDIMA": 8], "a vector width OpenCL lacks")
        refused(valid, ["SA": 2], "a flag other than 0 or 1")
        refused(valid, ["MDIMC": 0], "no threads")
        refused(kernel1, ["KWG": 2, "KWI": 2], "KWG other than 1 for kernel 1")
        refused(kernel1, ["SA": 1], "local memory for kernel 1")
        refused(kernel1, ["NDIMB": 4], "NDIMB other than NDIMC for kernel 1")
        refused(kernel1, ["KREG": 2], "KREG not a multiple of VWN for kernel 1")
        var otherKernel = valid
        otherKernel.kernel = XgemmDirectSearchSpace.kernel
        #expect(!space.isValid(otherKernel))
        // The device limits: 32 x 64 threads, and cached 64 x 128 and 64 x 256 tiles, are too many here.
        let crowded: [String: Int] = ["MDIMC": 32, "NDIMC": 64, "MWG": 128, "NWG": 128, "KWG": 64, "MDIMA": 32, "NDIMB": 64,
                                      "VWM": 1, "VWN": 1]
        var manyThreads = valid
        for (name, value) in crowded { manyThreads.values[name] = value }
        #expect(XgemmSearchSpace(maxWorkGroupSize: 2048, localMemoryBytes: 64 * 1024).isValid(manyThreads))
        #expect(!space.isValid(manyThreads), "more threads than the work-group limit")
        var bigTiles = valid
        for (name, value) in ["KWG": 64, "MWG": 128, "NWG": 256] { bigTiles.values[name] = value }
        #expect(XgemmSearchSpace(maxWorkGroupSize: 1024, localMemoryBytes: 128 * 1024).isValid(bigTiles))
        #expect(!space.isValid(bigTiles), "96 KiB of tiles in 64 KiB of local memory")
    }

    @Test func theThresholdSplitsSizesBetweenTheKernels() {
        #expect(GEMMRoutineThreshold.kernel(forSize: 703, threshold: 704) == XgemmDirectSearchSpace.kernel)
        #expect(GEMMRoutineThreshold.kernel(forSize: 704, threshold: 704) == XgemmSearchSpace.kernel)
        #expect(GEMMRoutineThreshold.isValid(GEMMRoutineThreshold.parameters(128)))
        #expect(!GEMMRoutineThreshold.isValid(GEMMRoutineThreshold.parameters(0)))
        #expect(!GEMMRoutineThreshold.isValid(GEMMKernelParameters(kernel: "GemmRoutine", values: ["OTHER": 1])))
    }

    // MARK: The search on the device

    @Test func tinySearchReturnsParametersThatStillComputeTheRightGEMM() throws {
        guard let device = try TestBackends.openCLDevice() else { return }
        let backend = try OpenCLBackend(device: device, loadingTunedGEMMParameters: false)
        let results = try GEMMTuner.search(on: backend, options: GEMMTuningOptions(
            sizes: [64, 96], maxCandidates: 2, seconds: 600, repetitions: 1, seed: 1))
        // Both sizes are below CLBlast's generic threshold: only XgemmDirect runs them.
        let result = try #require(results.count == 1 ? results.first : nil, "\(results.map(\.kernel))")
        #expect(result.kernel == XgemmDirectSearchSpace.kernel && result.sizes == [64, 96])
        #expect(result.tried == 2)
        #expect(result.defaultMilliseconds > 0)
        let best = try #require(result.best, "no candidate ran: \(result.failures.map(\.reason))")
        #expect(XgemmDirectSearchSpace(device: device).isValid(best))
        #expect((result.bestMilliseconds ?? 0) > 0)
        // The best is left installed: the GEMM with it must match the CPU.
        try expectGEMMMatchesCPU(on: backend, seed: 21, "after the search (\(best))")
    }

    @Test func sizesFromTheThresholdUpSearchXgemmAndItsBestComputesTheRightGEMM() throws {
        guard let device = try TestBackends.openCLDevice() else { return }
        let backend = try OpenCLBackend(device: device, loadingTunedGEMMParameters: false)
        // CLBlast's own threshold (704) would make PoCL spend seconds per run; 128 sends 192 to
        // the indirect path, with padding since 192 is no multiple of a 128 tile.
        defer { try? GEMMRoutineThreshold.parameters(GEMMRoutineThreshold.clblastDefault).install(on: device) }
        let results = try GEMMTuner.search(on: backend, options: GEMMTuningOptions(
            sizes: [64, 192], maxCandidates: 2, seconds: 600, repetitions: 1, seed: 4, indirectThreshold: 128))
        #expect(results.map(\.kernel) == [XgemmDirectSearchSpace.kernel, XgemmSearchSpace.kernel])
        #expect(results.map(\.sizes) == [[64], [192]])
        let indirect = results[1]
        #expect(indirect.tried == 2)
        #expect(indirect.defaultMilliseconds > 0)
        let best = try #require(indirect.best, "no Xgemm candidate ran: \(indirect.failures.map(\.reason))")
        #expect(XgemmSearchSpace(device: device).isValid(best))
        // The best is left installed; a tiny threshold sends even the check's odd shapes through it.
        try GEMMRoutineThreshold.parameters(16).install(on: device)
        try expectGEMMMatchesCPU(on: backend, seed: 23, "Xgemm after the search (\(best))")
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

    @Test func savedXgemmParametersAndThresholdLoadBackBesideXgemmDirectAndKeepGEMMCorrect() throws {
        guard let device = try TestBackends.openCLDevice() else { return }
        let directory = try makeStoreDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        defer { try? GEMMRoutineThreshold.parameters(GEMMRoutineThreshold.clblastDefault).install(on: device) }
        let store = GEMMParameterStore(directory: directory)
        let kernel = XgemmSearchSpace.kernel
        let direct = XgemmDirectSearchSpace(device: device).candidates(count: 1, seed: 3)[0]
        let indirect = try #require(XgemmSearchSpace(device: device).candidates(count: 2, seed: 3).last)
        let threshold = GEMMRoutineThreshold.parameters(16)

        #expect(store.load(device: device, kernel: kernel).parameters == nil)
        let directPath = try store.save(direct, device: device)
        let indirectPath = try store.save(indirect, device: device)
        try store.save(threshold, device: device)
        #expect(indirectPath == store.path(device: device, kernel: kernel) && indirectPath != directPath)
        #expect(store.load(device: device, kernel: kernel).parameters == indirect)
        #expect(store.load(device: device, kernel: XgemmDirectSearchSpace.kernel).parameters == direct)
        #expect(store.load(device: device, kernel: GEMMRoutineThreshold.kernel).parameters == threshold)

        // Installed threshold first, so that the tiny threshold sends the check's shapes through Xgemm.
        let applied = store.applySaved(to: device)
        #expect(applied.installed == [threshold, direct, indirect])
        #expect(applied.warnings.isEmpty, "\(applied.warnings)")
        let backend = try OpenCLBackend(device: device, loadingTunedGEMMParameters: false)
        try expectGEMMMatchesCPU(on: backend, seed: 24, "with saved Xgemm parameters \(indirect)")

        // Parameters CLBlast's kernel 1 cannot take are ignored with a warning.
        let original = try String(contentsOfFile: indirectPath, encoding: .utf8)
        var invalid = XgemmSearchSpace.knownGood[4]
        invalid.values["SA"] = 1
        #expect(!XgemmSearchSpace(device: device).isValid(invalid))
        try store.save(invalid, device: device)
        let refused = store.load(device: device, kernel: kernel)
        #expect(refused.parameters == nil && refused.warning?.contains(indirectPath) == true)
        try original.write(toFile: indirectPath, atomically: true, encoding: .utf8)
        #expect(store.load(device: device, kernel: kernel).parameters == indirect)

        #expect(try store.remove(device: device, kernel: kernel))
        #expect(store.load(device: device, kernel: kernel).parameters == nil)
        #expect(store.load(device: device, kernel: XgemmDirectSearchSpace.kernel).parameters == direct)
    }

    @Test func aFileWrittenBeforeXgemmWasTunedStillLoads() throws {
        guard let device = try TestBackends.openCLDevice() else { return }
        let directory = try makeStoreDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = GEMMParameterStore(directory: directory)
        // The layout `recur tune` wrote when it searched XgemmDirect alone.
        let text = """
            {"defaultMilliseconds":44.3,"device":\(try jsonString(device.name)),"driver":\(try jsonString(device.driverVersion)),\
            "format":1,"kernel":"XgemmDirect","parameters":{"KWID":2,"MDIMAD":8,"MDIMCD":8,"NDIMBD":8,"NDIMCD":8,\
            "PADA":1,"PADB":1,"VWMD":1,"VWND":1,"WGD":32},"precision":32,"sizes":[256,512],"tunedMilliseconds":18.3,\
            "vendor":\(try jsonString(device.vendor))}
            """
        try text.write(toFile: store.path(device: device, kernel: XgemmDirectSearchSpace.kernel), atomically: true, encoding: .utf8)
        let loaded = store.load(device: device, kernel: XgemmDirectSearchSpace.kernel)
        #expect(loaded.warning == nil, "\(loaded.warning ?? "")")
        #expect(loaded.parameters?.values["WGD"] == 32)
        let applied = store.applySaved(to: device)
        #expect(applied.installed.map(\.kernel) == [XgemmDirectSearchSpace.kernel] && applied.warnings.isEmpty)
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
