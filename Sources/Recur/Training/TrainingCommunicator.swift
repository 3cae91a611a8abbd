// How the processes of a synchronous data-parallel run exchange what training needs: initial
// weights, averaged gradients, reduced metrics. One process alone uses `LocalCommunicator`;
// the `RecurDistributed` library provides an MPI implementation.

/// The collective operations a data-parallel training loop needs. Every rank calls each method
/// the same number of times in the same order (they are collectives), with tensors of the same
/// shapes.
public protocol TrainingCommunicator: AnyObject {
    /// This process's index, 0 ..< `worldSize`. Rank 0 logs and writes checkpoints.
    var rank: Int { get }
    /// The number of processes.
    var worldSize: Int { get }
    /// Overwrites every parameter value with rank `root`'s values.
    func broadcast(_ parameters: [NamedParameter], from root: Int) throws
    /// Replaces every parameter's gradient with the mean of that gradient over all ranks.
    func averageGradients(_ parameters: [NamedParameter]) throws
    /// The element-wise sum of `values` over all ranks (metrics: loss sums, counts).
    func sum(_ values: [Double]) throws -> [Double]
    /// Throws `RecurError.invalidArgument` on every rank when `value` differs between ranks,
    /// naming `what` (a model specification, a data-set size, a seed).
    func requireIdentical(_ value: String, what: String) throws
}

/// The communicator of a single process: rank 0 of 1, where every collective is the identity.
public final class LocalCommunicator: TrainingCommunicator {
    public init() {}
    public var rank: Int { 0 }
    public var worldSize: Int { 1 }
    public func broadcast(_ parameters: [NamedParameter], from root: Int) throws {}
    public func averageGradients(_ parameters: [NamedParameter]) throws {}
    public func sum(_ values: [Double]) throws -> [Double] { values }
    public func requireIdentical(_ value: String, what: String) throws {}
}
