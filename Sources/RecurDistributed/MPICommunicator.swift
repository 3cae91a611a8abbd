// TrainingCommunicator over MPI_COMM_WORLD. Gradients are staged through host memory: every
// gradient is downloaded into one flat float32 buffer, reduced in place in a few contiguous
// buckets (one MPI_Allreduce each, not one per tensor), scaled by 1/N and uploaded back.

import CMPI
import Recur

#if canImport(Glibc)
import Glibc
#endif

/// Time spent in the collectives of `averageGradients`, summed since the communicator was made.
public struct CommunicationStatistics: Sendable, Equatable {
    /// How many times `averageGradients` ran.
    public var averagingCount = 0
    /// Seconds inside `MPI_Allreduce`: transfer and reduction, plus waiting for slower ranks
    /// unless `MPICommunicator.separatesWaiting` moves the waiting to `waitSeconds`.
    public var allreduceSeconds = 0.0
    /// Seconds in the barrier before the allreduce when `separatesWaiting` is set: the time this
    /// rank waited for the slowest one (load imbalance, not communication).
    public var waitSeconds = 0.0
    /// Seconds copying gradients between the device and the host buffer, and scaling by 1/N.
    public var stagingSeconds = 0.0
    /// Bytes of gradient each rank contributed per averaging.
    public var gradientBytes = 0
    /// `MPI_Allreduce` calls per averaging (the bucket count).
    public var bucketCount = 0
}

/// The ranks of an `mpirun` launch as a `TrainingCommunicator`. `broadcast` checks afterwards
/// that every rank holds the same values.
///
/// Make one per process, after any `execv` and before other MPI use; call `finalize()` when
/// training ends, or `abort(message:)` when this rank cannot go on, which ends every rank within
/// seconds instead of leaving them waiting in a collective. MPI errors are returned, not fatal,
/// and thrown as `RecurError.io` naming the call and this rank.
public final class MPICommunicator: TrainingCommunicator {
    public let rank: Int
    public let worldSize: Int
    /// This process's index among the ranks on its host (`OMPI_COMM_WORLD_LOCAL_RANK`), 0 when the
    /// launcher does not say: the index of the device this rank should use.
    public let localRank: Int
    /// The most float32 values one `MPI_Allreduce` of `averageGradients` carries.
    public let bucketCapacity: Int
    public private(set) var statistics = CommunicationStatistics()
    /// Whether `averageGradients` enters a barrier before its allreduces, so that the
    /// statistics tell waiting for slower ranks apart from the transfer. Costs one barrier per
    /// step (microseconds on one host); for profiling.
    public var separatesWaiting = false
    /// The flat host copy of every gradient, reused across steps.  // [total gradient values]
    private var staging: [Float] = []
    private var isFinalized = false

    /// Initialises MPI (once per process).
    /// - Parameter bucketBytes: the size of one gradient bucket; default 4 MiB, large enough that
    ///   per-call latency is small beside the transfer, small enough to keep several buckets for
    ///   large models.
    public init(bucketBytes: Int = 4 << 20) throws {
        precondition(bucketBytes >= MemoryLayout<Float>.size, "a bucket holds at least one value")
        var initialized: Int32 = 0
        MPI_Initialized(&initialized)
        if initialized == 0 {
            var provided: Int32 = 0
            let status = MPI_Init_thread(nil, nil, Int32(MPI_THREAD_FUNNELED), &provided)
            guard status == MPI_SUCCESS else {
                throw RecurError.io(path: "MPI", detail: "MPI_Init_thread failed with code \(status)")
            }
        }
        MPI_Comm_set_errhandler(recur_mpi_comm_world(), recur_mpi_errors_return())
        var rank: Int32 = 0
        var size: Int32 = 0
        MPI_Comm_rank(recur_mpi_comm_world(), &rank)
        MPI_Comm_size(recur_mpi_comm_world(), &size)
        self.rank = Int(rank)
        self.worldSize = Int(size)
        self.localRank = getenv("OMPI_COMM_WORLD_LOCAL_RANK").flatMap { Int(String(cString: $0)) } ?? 0
        self.bucketCapacity = bucketBytes / MemoryLayout<Float>.size
    }

    /// Ends MPI for this process after every rank got here. Call once, after the last collective.
    public func finalize() {
        guard !isFinalized else { return }
        isFinalized = true
        MPI_Finalize()
    }

    /// Writes `recur: rank R of N failed: <message>` to standard error and ends every rank of the
    /// launch with exit status `code`: the others may be blocked in a collective this rank will
    /// never join, and only `MPI_Abort` releases them.
    public func abort(message: String, code: Int32 = 1) -> Never {
        writeToStandardError("recur: rank \(rank) of \(worldSize) failed: \(message)\n")
        MPI_Abort(recur_mpi_comm_world(), code)
        exit(code)  // MPI_Abort does not return; this satisfies the compiler.
    }

    // MARK: TrainingCommunicator

    public func broadcast(_ parameters: [NamedParameter], from root: Int) throws {
        guard (0..<worldSize).contains(root) else {
            throw RecurError.invalidArgument(
                operation: "MPICommunicator.broadcast", detail: "root \(root) outside 0..<\(worldSize)")
        }
        try stage(parameters.map(\.value))
        try forEachBucket { start, count in
            try staging.withUnsafeMutableBufferPointer { values in
                try check(MPI_Bcast(values.baseAddress! + start, Int32(count), recur_mpi_float(), Int32(root),
                                    recur_mpi_comm_world()), call: "MPI_Bcast")
            }
        }
        try unstage(into: parameters.map(\.value), scale: 1)
        // Read back from the devices and compared, so a replica that failed to take the values
        // stops the run now rather than drifting silently.
        try stage(parameters.map(\.value))
        var fingerprint = FNV1a64()
        for value in staging { fingerprint.add(littleEndian: value.bitPattern) }
        try requireIdentical(String(fingerprint.value, radix: 16), what: "the fingerprint of the broadcast parameters")
    }

    public func averageGradients(_ parameters: [NamedParameter]) throws {
        let stagingStart = MPI_Wtime()
        try stage(parameters.map(\.gradient))
        let waitStart = MPI_Wtime()
        if separatesWaiting { try check(MPI_Barrier(recur_mpi_comm_world()), call: "MPI_Barrier") }
        let reduceStart = MPI_Wtime()
        var buckets = 0
        try forEachBucket { start, count in
            buckets += 1
            try staging.withUnsafeMutableBufferPointer { values in
                try check(MPI_Allreduce(recur_mpi_in_place(), values.baseAddress! + start, Int32(count),
                                        recur_mpi_float(), recur_mpi_sum(), recur_mpi_comm_world()),
                          call: "MPI_Allreduce")
            }
        }
        let reduceEnd = MPI_Wtime()
        try unstage(into: parameters.map(\.gradient), scale: 1 / Float(worldSize))
        statistics.averagingCount += 1
        statistics.allreduceSeconds += reduceEnd - reduceStart
        statistics.waitSeconds += reduceStart - waitStart
        statistics.stagingSeconds += (waitStart - stagingStart) + (MPI_Wtime() - reduceEnd)
        statistics.gradientBytes = staging.count * MemoryLayout<Float>.size
        statistics.bucketCount = buckets
    }

    public func sum(_ values: [Double]) throws -> [Double] {
        guard !values.isEmpty else { return [] }
        var result = values
        try result.withUnsafeMutableBufferPointer { buffer in
            try check(MPI_Allreduce(recur_mpi_in_place(), buffer.baseAddress!, Int32(buffer.count),
                                    recur_mpi_double(), recur_mpi_sum(), recur_mpi_comm_world()),
                      call: "MPI_Allreduce")
        }
        return result
    }

    public func requireIdentical(_ value: String, what: String) throws {
        // Rank 0's text goes to every rank (length, then bytes); each compares its own, and one
        // allreduce of a per-rank flag tells every rank which ranks differ, so all throw together.
        let bytes = Array(value.utf8)
        var length = Int32(bytes.count)
        try check(MPI_Bcast(&length, 1, recur_mpi_int(), 0, recur_mpi_comm_world()), call: "MPI_Bcast")
        var rootBytes = [UInt8](repeating: 0, count: Int(length))
        if rank == 0 { rootBytes = bytes }
        if length > 0 {
            try check(MPI_Bcast(&rootBytes, length, recur_mpi_byte(), 0, recur_mpi_comm_world()), call: "MPI_Bcast")
        }
        var differs = [Int32](repeating: 0, count: worldSize)
        differs[rank] = rootBytes == bytes ? 0 : 1
        try check(MPI_Allreduce(recur_mpi_in_place(), &differs, Int32(worldSize), recur_mpi_int(), recur_mpi_max(),
                                recur_mpi_comm_world()), call: "MPI_Allreduce")
        let differing = differs.indices.filter { differs[$0] != 0 }
        guard differing.isEmpty else {
            let rootValue = String(decoding: rootBytes, as: UTF8.self)
            let ownValue = rank == 0 ? "" : "; rank \(rank) has \(value)"
            throw RecurError.invalidArgument(
                operation: "MPICommunicator.requireIdentical",
                detail: "\(what) differs between ranks: rank(s) \(differing.map(String.init).joined(separator: ", ")) "
                    + "disagree with rank 0, which has \(rootValue)\(ownValue)")
        }
    }

    // MARK: Staging through host memory

    /// Downloads every tensor into `staging`, one after another in order.
    private func stage(_ tensors: [Tensor]) throws {
        let total = tensors.reduce(0) { $0 + $1.count }
        if staging.count != total { staging = [Float](repeating: 0, count: total) }
        var offset = 0
        for tensor in tensors {
            let values = try tensor.backend.download(tensor)
            staging.replaceSubrange(offset ..< offset + values.count, with: values)
            offset += values.count
        }
    }

    /// Copies `staging`, times `scale`, back into the tensors `stage` read.
    private func unstage(into tensors: [Tensor], scale: Float) throws {
        if scale != 1 {
            staging.withUnsafeMutableBufferPointer { values in
                for index in values.indices { values[index] *= scale }
            }
        }
        var offset = 0
        for tensor in tensors {
            let backend = tensor.backend
            let upload = try backend.upload(Array(staging[offset ..< offset + tensor.count]), shape: tensor.shape)
            try backend.copy(upload, sourceOffset: 0, into: tensor, destinationOffset: 0, count: tensor.count)
            offset += tensor.count
        }
    }

    /// Calls `body(start, count)` for each bucket of `staging`, in order.
    private func forEachBucket(_ body: (Int, Int) throws -> Void) throws {
        var start = 0
        while start < staging.count {
            let count = min(bucketCapacity, staging.count - start)
            try body(start, count)
            start += count
        }
    }

    private func check(_ status: Int32, call: String) throws {
        guard status != MPI_SUCCESS else { return }
        var text = [CChar](repeating: 0, count: Int(MPI_MAX_ERROR_STRING) + 1)
        var length: Int32 = 0
        MPI_Error_string(status, &text, &length)
        let message = String(decoding: text.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        throw RecurError.io(path: "MPI rank \(rank)", detail: "\(call) failed: \(message)")
    }
}

/// Writes `text` to file descriptor 2 unbuffered (the C `stderr` global is not concurrency-safe
/// in Swift 6, and an unbuffered write is what a process about to abort needs).
public func writeToStandardError(_ text: String) {
    var bytes = Array(text.utf8)
    var start = 0
    while start < bytes.count {
        let written = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress! + start, $0.count - start) }
        guard written > 0 else { return }
        start += written
    }
}
