import Foundation
import PackagePlugin

/// Embeds every `Kernels/*.cl` file of the package into the target as `EmbeddedKernels.sources`.
///
/// SwiftPM evaluates a build-tool plugin once and keeps the commands it returned, so a file list
/// computed here goes stale when a kernel file is added or removed. The command therefore names
/// the folder itself: the embedder lists it when it runs, and the folder is an input next to the
/// files, so adding or removing a file (which changes the folder) reruns it as editing one does.
@main
struct EmbedKernels: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let kernelsDirectory = context.package.directoryURL.appending(path: "Kernels")
        let names = try FileManager.default.contentsOfDirectory(atPath: kernelsDirectory.path())
        let files = names.filter { $0.hasSuffix(".cl") }.sorted()
            .map { kernelsDirectory.appending(path: $0) }
        let output = context.pluginWorkDirectoryURL.appending(path: "EmbeddedKernels.swift")
        return [
            .buildCommand(
                displayName: "Embedding the OpenCL kernel files of Kernels/",
                executable: try context.tool(named: "KernelEmbedder").url,
                arguments: [output.path(), kernelsDirectory.path()],
                inputFiles: [kernelsDirectory] + files,
                outputFiles: [output]
            )
        ]
    }
}
