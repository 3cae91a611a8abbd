#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Whole-file reads and crash-safe whole-file writes on POSIX file descriptors.
///
/// Checkpoints and exported weights go through `writeAtomically`, so an interrupted write
/// (crash, power loss, full disk) leaves either the previous file or the new one, never a torn mix.
public enum FileBytes {
    /// The contents of the regular file at `path`.
    static func read(contentsOf path: String) throws -> [UInt8] {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw failure(path, "cannot open for reading") }
        defer { close(descriptor) }

        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw failure(path, "cannot stat") }
        guard (status.st_mode & S_IFMT) == S_IFREG else {
            throw RecurError.io(path: path, detail: "not a regular file")
        }
        let size = Int(status.st_size)
        var bytes = [UInt8](repeating: 0, count: size)
        var filled = 0
        while filled < size {
            let count = bytes.withUnsafeMutableBytes { buffer in
                readSome(descriptor, buffer.baseAddress! + filled, size - filled)
            }
            if count < 0 {
                if errno == EINTR { continue }
                throw failure(path, "read failed")
            }
            // The file shrank while being read; what was read is all there is.
            if count == 0 { return Array(bytes[..<filled]) }
            filled += count
        }
        return bytes
    }

    /// Replaces the file at `path` with `bytes` so that a crash at any moment leaves either the
    /// old contents or the new ones: the bytes go to a fresh temporary file in the same
    /// directory, which is flushed to disk, renamed over `path` (atomic within one file system),
    /// and then the directory is flushed so the rename itself survives a power loss.
    public static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        let directory = directoryName(of: path)
        let base = String(path.split(separator: "/", omittingEmptySubsequences: false).last ?? "")
        guard !base.isEmpty else { throw RecurError.io(path: path, detail: "path names a directory, not a file") }

        let temporary = directory + "/." + base + ".tmp-" + String(getpid()) + "-"
            + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw failure(temporary, "cannot create temporary file") }

        var renamed = false
        defer { if !renamed { unlink(temporary) } }
        do {
            defer { close(descriptor) }
            try writeAll(bytes, to: descriptor, path: temporary)
            try flush(descriptor, path: temporary)
        }
        guard rename(temporary, path) == 0 else { throw failure(path, "cannot rename \(temporary) over it") }
        renamed = true

        let directoryDescriptor = open(directory, O_RDONLY | O_CLOEXEC)
        guard directoryDescriptor >= 0 else { throw failure(directory, "cannot open directory to flush it") }
        defer { close(directoryDescriptor) }
        // Some file systems cannot sync a directory and say so with EINVAL; the rename is
        // then as durable as that file system makes it, which is all we can ask for.
        if fsync(directoryDescriptor) != 0 && errno != EINVAL {
            throw failure(directory, "cannot flush directory")
        }
    }

    /// Creates the folder at `path` if needed and proves that files can be written in it, by
    /// writing and removing a small probe file the way `writeAtomically` writes; then removes the
    /// temporary files that writers killed mid-write left there (`removeStaleTemporaries`).
    /// - Returns: the names of the stale temporary files removed.
    /// - Throws: `RecurError.io` naming the folder and the system's reason.
    @discardableResult
    static func prepareWritableDirectory(_ path: String) throws -> [String] {
        try createDirectory(path)
        try writeAtomically(Array("probe\n".utf8), to: path + "/.recur-write-probe-" + String(getpid()))
        unlink(path + "/.recur-write-probe-" + String(getpid()))
        return removeStaleTemporaries(in: path)
    }

    /// Removes `.<name>.tmp-<pid>-<hex>` files in `directory` whose writing process no longer
    /// runs: what `writeAtomically` leaves behind when its process is killed between creating the
    /// temporary file and renaming it. A live writer's file (another run using the folder) stays.
    static func removeStaleTemporaries(in directory: String) -> [String] {
        guard let names = try? DirectoryListing.names(in: directory) else { return [] }
        var removed: [String] = []
        for name in names.sorted() where name.hasPrefix(".") {
            guard let marker = name.ranges(of: ".tmp-").last else { continue }
            let fields = name[marker.upperBound...].split(separator: "-")
            guard fields.count == 2, let pid = Int32(fields[0]), pid > 0,
                  fields[1].allSatisfy(\.isHexDigit) else { continue }
            // kill(pid, 0) fails with ESRCH only when no such process exists.
            if kill(pid, 0) != 0 && errno == ESRCH && unlink(directory + "/" + name) == 0 {
                removed.append(name)
            }
        }
        return removed
    }

    /// The directory part of `path` (`"."` for a bare file name, `"/"` for a file in the root).
    /// Creates the folder at `path` and any missing parents (as `mkdir -p`); an existing folder
    /// is fine.
    /// - Throws: `RecurError.io` when a part of the path can't be created or is not a folder.
    static func createDirectory(_ path: String) throws {
        var prefix = path.hasPrefix("/") ? "/" : ""
        for component in path.split(separator: "/") {
            prefix += component
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw failure(prefix, "cannot create the folder")
            }
            guard DirectoryListing.isDirectory(prefix) else {
                throw RecurError.io(path: prefix, detail: "exists and is not a folder")
            }
            prefix += "/"
        }
    }

    static func directoryName(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let directory = String(path[..<slash])
        return directory.isEmpty ? "/" : directory
    }

    private static func writeAll(_ bytes: [UInt8], to descriptor: Int32, path: String) throws {
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { buffer in
                write(descriptor, buffer.baseAddress! + written, bytes.count - written)
            }
            if count < 0 {
                if errno == EINTR { continue }
                throw failure(path, "write failed")
            }
            written += count
        }
    }

    private static func flush(_ descriptor: Int32, path: String) throws {
        #if canImport(Darwin)
        // On Darwin fsync only reaches the drive's cache; F_FULLFSYNC asks the drive to persist.
        if fcntl(descriptor, F_FULLFSYNC) == 0 { return }
        #endif
        guard fsync(descriptor) == 0 else { throw failure(path, "cannot flush to disk") }
    }

    /// An `io` error naming the operation and the system's reason (`errno`).
    private static func failure(_ path: String, _ action: String) -> RecurError {
        let reason = String(cString: strerror(errno))
        return RecurError.io(path: path, detail: "\(action): \(reason)")
    }
}

/// POSIX `read`, reachable under another name inside `FileBytes`, whose own `read` shadows it.
private func readSome(_ descriptor: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int {
    read(descriptor, buffer, count)
}
