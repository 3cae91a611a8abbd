#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Directory access for the folder-based readers, on POSIX `opendir`/`readdir`.
enum DirectoryListing {
    /// The names of the entries in the directory at `path`, without `.` and `..`, in the order
    /// the file system returns them (not sorted: callers sort by what they need).
    static func names(in path: String) throws -> [String] {
        guard let directory = opendir(path) else {
            let reason = String(cString: strerror(errno))
            throw RecurError.io(path: path, detail: "cannot open directory: \(reason)")
        }
        defer { closedir(directory) }

        var names: [String] = []
        // readdir returns nil both at the end and on failure; errno tells them apart.
        errno = 0
        while let entry = readdir(directory) {
            // d_name is a fixed-size C array, imported as a tuple; the name ends at its first NUL.
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        if errno != 0 {
            let reason = String(cString: strerror(errno))
            throw RecurError.io(path: path, detail: "cannot list directory: \(reason)")
        }
        return names
    }

    /// Whether `path` names an existing directory (following symbolic links).
    static func isDirectory(_ path: String) -> Bool {
        var status = stat()
        return stat(path, &status) == 0 && (status.st_mode & S_IFMT) == S_IFDIR
    }
}
