// swift-tools-version: 6.1
import Foundation
import PackageDescription

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

// CLBlast links as a shared library by default. RECUR_STATIC_CLBLAST=1 (tools/build-static.sh)
// links its static archive instead, so the binary for another machine needs only libstdc++.
let staticCLBlast = Context.environment["RECUR_STATIC_CLBLAST"] == "1"
let clblastLinkerSettings: [LinkerSetting] = staticCLBlast
    ? [.unsafeFlags(["-Xlinker", "-l:libclblast.a"]), .linkedLibrary("stdc++")]
    : [.linkedLibrary("clblast")]

// MARK: MPI (optional)
// RecurDistributed (`MPICommunicator`), its C module CMPI and `recur train --distributed` exist
// only in a build that can see MPI, so the core library and `recur` still build on machines
// without it. The rule: RECUR_MPI=1 forces them in, RECUR_MPI=0 leaves them out, and
// otherwise they are in when Open MPI's pkg-config file (ompi-c.pc, from Debian's
// libopenmpi-dev) lies in a pkg-config folder (PKG_CONFIG_PATH, /usr/lib/<triple>/pkgconfig,
// /usr/lib/pkgconfig, /usr/local/lib/pkgconfig, /opt/homebrew/lib/pkgconfig).
func openMPIIsInstalled() -> Bool {
    var folders = (Context.environment["PKG_CONFIG_PATH"] ?? "").split(separator: ":").map(String.init)
    folders += ["/usr/lib/pkgconfig", "/usr/share/pkgconfig", "/usr/local/lib/pkgconfig", "/opt/homebrew/lib/pkgconfig"]
    let files = FileManager.default
    for triple in (try? files.contentsOfDirectory(atPath: "/usr/lib")) ?? [] where triple.hasSuffix("-linux-gnu") {
        folders.append("/usr/lib/\(triple)/pkgconfig")
    }
    return folders.contains { files.fileExists(atPath: $0 + "/ompi-c.pc") }
}
let buildsWithMPI = switch Context.environment["RECUR_MPI"] {
case "1": true
case "0": false
default: openMPIIsInstalled()
}

let mpiProducts: [Product] = buildsWithMPI
    ? [.library(name: "RecurDistributed", targets: ["RecurDistributed"])]
    : []
let mpiTargets: [Target] = buildsWithMPI
    ? [
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .target(name: "RecurDistributed", dependencies: ["Recur", "CMPI"]),
        // Launches `mpirun` on the built `recur train --distributed`: equivalence with one process,
        // resuming on other rank counts, faults, mismatched ranks.
        .testTarget(name: "RecurDistributedTests", dependencies: ["Recur", "recur"]),
    ]
    : []

// MARK: Target processor
// The CPU backend's step loops are Swift SIMD code. Compiled for the x86-64 baseline (SSE2, no FMA)
// an eight-lane multiply-add takes four instructions instead of one. RECUR_TARGET_CPU names the
// processor to compile the library for (an LLVM CPU name: haswell, skylake-avx512, znver3, x86-64
// for the baseline); unset, an x86-64 Linux build host whose /proc/cpuinfo lists avx512f gets
// skylake-avx512 (AVX-512 F/CD/BW/DQ/VL, common to every AVX-512 processor since 2017), one that
// lists avx2 and fma gets haswell (AVX2 + FMA), so a binary meant for older processors must set
// RECUR_TARGET_CPU=x86-64; an empty RECUR_TARGET_CPU adds no flag at all.
// A package that depends on Recur checks it out under a `checkouts` folder; there the flag is
// left out unless RECUR_TARGET_CPU asks for it, because SwiftPM refuses unsafe flags in
// dependencies.
let isDependencyCheckout = Context.packageDirectory.contains("/checkouts/")
let targetCPU: String? = Context.environment["RECUR_TARGET_CPU"].map { $0.isEmpty ? nil : $0 } ?? {
    guard !isDependencyCheckout else { return nil }
    #if arch(x86_64) && os(Linux)
    guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
          let flags = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return nil }
    let names = Set(flags.split(separator: " ").map(String.init))
    if names.contains("avx512f") && names.contains("avx512bw") && names.contains("avx512vl") { return "skylake-avx512" }
    return names.contains("avx2") && names.contains("fma") ? "haswell" : nil
    #else
    return nil
    #endif
}()
// On a processor with AVX-512 the step loops work on sixteen lanes (RECUR_AVX512) instead of eight:
// twice the multiply-adds per instruction, and 32 vector registers for larger register tiles.
let avx512TargetCPUs: Set<String> = [
    "skylake-avx512", "cascadelake", "cooperlake", "cannonlake", "icelake-client", "icelake-server", "tigerlake",
    "rocketlake", "sapphirerapids", "emeraldrapids", "graniterapids", "znver4", "znver5",
]
let targetCPUSettings: [SwiftSetting] = targetCPU.map { cpu in
    [.unsafeFlags(["-target-cpu", cpu])] + (avx512TargetCPUs.contains(cpu) ? [.define("RECUR_AVX512")] : [])
} ?? []

let package = Package(
    name: "Recur",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Recur", targets: ["Recur"]),
        .library(name: "RecurExport", targets: ["RecurExport"]),
        .executable(name: "recur", targets: ["recur"]),
    ] + mpiProducts,
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        // `swift package generate-documentation` (tools/docs.sh); a command plugin, so it is
        // resolved but never built into `recur`, the library or the tests.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // MARK: C interop (no logic)
        .systemLibrary(name: "COpenCL", pkgConfig: "OpenCL",
                       providers: [.apt(["ocl-icd-opencl-dev", "opencl-headers"])]),
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CCLBlast", providers: [.apt(["libclblast-dev"])]),
        .systemLibrary(name: "CFloatControl"),

        // MARK: Kernel embedding: Kernels/*.cl become string constants in the Recur module
        .executableTarget(name: "KernelEmbedder"),
        .plugin(name: "EmbedKernels", capability: .buildTool(), dependencies: ["KernelEmbedder"]),

        // MARK: The library and the CLI
        .target(
            name: "Recur",
            dependencies: ["COpenCL", "CBLAS", "CCLBlast", "CFloatControl"],
            swiftSettings: targetCPUSettings,
            linkerSettings: clblastLinkerSettings,
            plugins: ["EmbedKernels"]
        ),
        // MARK: Export: ONNX (through the generated ONNX messages) and PyTorch state dicts.
        // In targets of their own, so the library builds without SwiftProtobuf.
        .target(
            name: "ONNX",
            dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        .target(name: "RecurExport", dependencies: ["Recur", "ONNX"]),
        .executableTarget(
            name: "recur",
            dependencies: [
                "Recur",
                "RecurExport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ] + (buildsWithMPI ? ["RecurDistributed"] : []),
            // `recur train --distributed` compiles under RECUR_MPI (not canImport, which a module
            // left in .build by an earlier build with MPI would satisfy).
            swiftSettings: buildsWithMPI ? [.define("RECUR_MPI")] : []
        ),

        // MARK: Tests
        // Fixtures: PyTorch parity files. Datasets: small excerpts of real data sets (each with its
        // source and licence), so that the data tests need nothing beside the checkout.
        .testTarget(
            name: "RecurTests",
            dependencies: ["Recur", "RecurExport", "ONNX", "recur"],
            resources: [.copy("Fixtures"), .copy("Datasets")]
        ),
    ] + mpiTargets
)
