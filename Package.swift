// swift-tools-version: 6.1
import PackageDescription

// CLBlast links as a shared library by default. RECUR_STATIC_CLBLAST=1 (tools/build-static.sh)
// links its static archive instead, so the binary for another machine needs only libstdc++.
let staticCLBlast = Context.environment["RECUR_STATIC_CLBLAST"] == "1"
let clblastLinkerSettings: [LinkerSetting] = staticCLBlast
    ? [.unsafeFlags(["-Xlinker", "-l:libclblast.a"]), .linkedLibrary("stdc++")]
    : [.linkedLibrary("clblast")]

let package = Package(
    name: "Recur",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Recur", targets: ["Recur"]),
        .executable(name: "recur", targets: ["recur"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
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
            linkerSettings: clblastLinkerSettings,
            plugins: ["EmbedKernels"]
        ),
        .executableTarget(
            name: "recur",
            dependencies: [
                "Recur",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // MARK: Tests
        .testTarget(
            name: "RecurTests",
            dependencies: ["Recur", "recur"],
            resources: [.copy("Fixtures")]
        ),
    ]
)
