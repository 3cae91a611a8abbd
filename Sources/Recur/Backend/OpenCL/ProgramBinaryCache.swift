#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Compiled OpenCL program binaries on disk, so that a second run skips the compiler.
///
/// An entry is keyed by everything that changes the binary: device name, driver version,
/// platform, build options and a hash of the full source. Every failure (missing directory,
/// unreadable or corrupt file, full disk) makes the cache miss silently; the caller then builds
/// from source. A file is written to a temporary name and renamed into place, so a reader never
/// sees half a file, and it carries a checksum of its payload, so a damaged file is never handed
/// to the driver.
struct ProgramBinaryCache: Sendable {
    /// The folder holding the cache files.
    let directory: String
    /// Whether entries hold the device binary. A driver that keeps its own cache of compiled
    /// kernels (PoCL) gets a small marker instead: asking PoCL for a program's binary makes it
    /// compile every kernel of the program once more, for any work-group size, on top of the
    /// sizes actually launched, which doubled the kernel compilation of a first run for nothing
    /// its own cache does not already give.
    var keepsBinaries = true

    /// The payload of an entry that records a build without its binary (`keepsBinaries` off).
    static let compiledMarker = Array("recur: compiled, binary kept by the driver".utf8)

    init(directory: String, keepsBinaries: Bool = true) {
        self.directory = directory
        self.keepsBinaries = keepsBinaries
    }

    /// `$RECUR_CACHE_DIR`, else `$XDG_CACHE_HOME/recur/kernels`, else `~/.cache/recur/kernels`;
    /// `nil` when none of those can be found.
    static var standard: ProgramBinaryCache? {
        let environment = ProcessInfo.processInfo.environment
        if let directory = environment["RECUR_CACHE_DIR"], !directory.isEmpty {
            return ProgramBinaryCache(directory: directory)
        }
        if let base = environment["XDG_CACHE_HOME"], !base.isEmpty {
            return ProgramBinaryCache(directory: base + "/recur/kernels")
        }
        if let home = environment["HOME"], !home.isEmpty {
            return ProgramBinaryCache(directory: home + "/.cache/recur/kernels")
        }
        return nil
    }

    /// The text every entry is keyed by.
    static func key(device: OpenCLDevice, options: String, source: String) -> String {
        let sourceHash = String(FNV1a64.hash(Array(source.utf8)), radix: 16)
        return [
            "device=\(device.name)", "driver=\(device.driverVersion)",
            "platform=\(device.platform.name) \(device.platform.version)",
            "options=\(options)", "source=\(sourceHash)",
        ].joined(separator: "\n")
    }

    /// The file an entry lives in: readable name plus the hash of its key.
    func path(name: String, key: String) -> String {
        let safeName = String(name.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" })
        let keyHash = String(FNV1a64.hash(Array(key.utf8)), radix: 16)
        return "\(directory)/\(safeName)-\(keyHash).bin"
    }

    /// The cached binary for `key`, or `nil` if there is none or the file fails any check.
    func load(name: String, key: String) -> [UInt8]? {
        guard let data = FileManager.default.contents(atPath: path(name: name, key: key)) else { return nil }
        return CacheFile.decode(Array(data), expectedKey: key)
    }

    /// Writes `binary` for `key`; any failure is ignored (the cache is an optimisation).
    func store(_ binary: [UInt8], name: String, key: String) {
        let destination = path(name: name, key: key)
        let temporary = "\(destination).\(getpid()).\(UInt32.random(in: 0...UInt32.max)).tmp"
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try Data(CacheFile.encode(binary, key: key)).write(to: URL(fileURLWithPath: temporary))
            if rename(temporary, destination) != 0 {
                unlink(temporary)
            }
        } catch {
            unlink(temporary)
        }
    }
}

/// Layout of one cache file, all integers little-endian:
/// magic `RECURCL1` | key length u64 | key UTF-8 | payload length u64 | payload FNV-1a u64 | payload.
private enum CacheFile {
    static let magic = Array("RECURCL1".utf8)

    static func encode(_ payload: [UInt8], key: String) -> [UInt8] {
        let keyBytes = Array(key.utf8)
        var bytes = magic
        append(UInt64(keyBytes.count), to: &bytes)
        bytes += keyBytes
        append(UInt64(payload.count), to: &bytes)
        append(FNV1a64.hash(payload), to: &bytes)
        bytes += payload
        return bytes
    }

    static func decode(_ bytes: [UInt8], expectedKey: String) -> [UInt8]? {
        var reader = ByteReader(bytes: bytes)
        guard reader.take(magic.count) == magic,
              let keyLength = reader.takeUInt64(), keyLength <= UInt64(bytes.count),
              let keyBytes = reader.take(Int(keyLength)), keyBytes == Array(expectedKey.utf8),
              let payloadLength = reader.takeUInt64(), payloadLength > 0,
              let checksum = reader.takeUInt64(),
              payloadLength == UInt64(reader.remaining),
              let payload = reader.take(Int(payloadLength)),
              FNV1a64.hash(payload) == checksum
        else { return nil }
        return payload
    }

    private static func append(_ value: UInt64, to bytes: inout [UInt8]) {
        for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }

    private struct ByteReader {
        let bytes: [UInt8]
        var position = 0

        var remaining: Int { bytes.count - position }

        mutating func take(_ count: Int) -> [UInt8]? {
            guard count >= 0, count <= remaining else { return nil }
            defer { position += count }
            return Array(bytes[position..<position + count])
        }

        mutating func takeUInt64() -> UInt64? {
            guard let raw = take(8) else { return nil }
            return raw.reversed().reduce(0) { $0 << 8 | UInt64($1) }
        }
    }
}
