// The registry of recurrent cells: the one list every name lookup, checkpoint and test reads,
// and the cells' names in JSON. A new cell is its file in this folder plus one entry in
// `allCases`.

extension RecurrentCell: Codable {
    /// Every cell Recur knows. A new cell is its file plus one entry here.
    public static let allCases: [RecurrentCell] = [
        .rnnTanh, .rnnRelu, .lstm, .gru, .gruResetBefore, .layerNormLSTM, .layerNormGRU, .lstmProjection,
    ]

    /// The registered cell called `name` (case-insensitive; `-` reads as `_`), including the
    /// spellings older versions wrote (`rnnTanh`, `gruResetBefore`, `rnn`, `gru-reset-before`);
    /// nil for an unknown name.
    ///
    /// - Parameter name: a cell's name, as `--cell`, a checkpoint or a fixture spells it.
    public init?(named name: String) {
        let wanted = Self.normalized(name)
        guard let cell = Self.allCases.first(where: { cell in
            ([cell.name] + cell.formerNames).contains { Self.normalized($0) == wanted }
        }) else { return nil }
        self = cell
    }

    /// The names of every registered cell, for messages that list the choices.
    public static var names: [String] { allCases.map(\.name) }

    private static func normalized(_ name: String) -> String {
        String(name.lowercased().map { $0 == "-" ? "_" : $0 })
    }

    /// The cell that runs this one with a projection of h to `projectionSize` features: itself
    /// without one (nil or 0), the registered cell that projects it otherwise (`lstm` →
    /// `lstm_projection`, which is also its own projected form).
    ///
    /// - Parameters:
    ///   - projectionSize: P, or nil / 0 for none.
    ///   - hiddenSize: H, which P must be below (as PyTorch's `proj_size`).
    ///   - operation: names the caller in errors.
    /// - Throws: `RecurError.invalidArgument` for a cell no registered cell projects, for a
    ///   projecting cell without a size, and for P outside 1 ..< H.
    public func projected(to projectionSize: Int?, hiddenSize: Int, operation: String) throws -> RecurrentCell {
        guard let size = projectionSize, size != 0 else {
            guard !projectsHiddenState else {
                throw RecurError.invalidArgument(
                    operation: operation, detail: "the \(name) cell needs a projection size (--projection P, 0 < P < H)")
            }
            return self
        }
        let projecting = projectsHiddenState ? self : Self.allCases.first { $0.projectedCellName == name }
        guard let projecting else {
            let projectable = Self.allCases.compactMap(\.projectedCellName)
            throw RecurError.invalidArgument(
                operation: operation,
                detail: "a projection of h is only valid with the \(projectable.joined(separator: ", ")) cell, not \(name)")
        }
        guard size > 0, size < hiddenSize else {
            throw RecurError.invalidArgument(
                operation: operation,
                detail: "the projection size must lie in 1 ..< H = \(hiddenSize) (PyTorch's proj_size < hidden_size), got \(size)")
        }
        return projecting
    }

    /// Reads a cell by its name or a former spelling.
    ///
    /// - Parameter decoder: the decoder holding the name as a single string.
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let cell = RecurrentCell(named: text) else {
            throw DecodingError.dataCorrupted(DecodingError.Context(
                codingPath: decoder.codingPath,
                debugDescription: "unknown cell '\(text)' (\(Self.names.joined(separator: ", ")))"))
        }
        self = cell
    }

    /// Writes the cell's one name.
    ///
    /// - Parameter encoder: the encoder receiving the name as a single string.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(name)
    }
}
