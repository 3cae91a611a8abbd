/// Writing reports (plots, summaries) into an output folder.
public enum ReportFile {
    /// Replaces the file at `path` with `text` (UTF-8) atomically: a crash leaves the old file or
    /// the new one, never a torn mix.
    /// - Throws: `RecurError.io` when the file cannot be written.
    public static func write(_ text: String, to path: String) throws {
        try FileBytes.writeAtomically(Array(text.utf8), to: path)
    }

    /// Creates the directory at `path` and any missing parents (`mkdir -p`); an existing
    /// directory is fine.
    /// - Throws: `RecurError.io` when a component exists but is not a directory, or cannot be made.
    public static func createDirectory(_ path: String) throws {
        guard !path.isEmpty else { throw RecurError.io(path: path, detail: "empty directory path") }
        try FileBytes.createDirectory(path)
    }

    /// Creates the directory at `path` if needed and checks that files can be written in it, so
    /// that a run can refuse a folder it could not save into before it starts, not after its
    /// first epoch. Also removes the temporary files of writes that were killed midway.
    /// - Returns: the names of the leftover temporary files removed.
    /// - Throws: `RecurError.io` naming the folder and the reason.
    @discardableResult
    public static func prepareWritableDirectory(_ path: String) throws -> [String] {
        guard !path.isEmpty else { throw RecurError.io(path: path, detail: "empty directory path") }
        return try FileBytes.prepareWritableDirectory(path)
    }
}
