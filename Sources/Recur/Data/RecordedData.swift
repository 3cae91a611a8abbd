// What a checkpoint keeps about the data its model was trained with, in its metadata: the data
// source (JSON), a digest of the training examples, and the vocabulary, class names, tags and
// standardisation the model's inputs and outputs are numbered and scaled by. `recur train`
// writes these keys; evaluation, prediction and resumed runs read them back, so a model is
// always fed its inputs as it was in training.

/// The `data.*` metadata of a checkpoint, read.
public struct RecordedData: Sendable {
    public static let sourceKey = "data.source"
    public static let fingerprintKey = "data.fingerprint"
    public static let vocabularyKey = "data.vocabulary"
    public static let tagsKey = "data.tags"
    public static let classesKey = "data.classes"
    public static let standardizationKey = "data.standardization"
    /// A series of several columns: one `mean deviation` line per input feature.
    public static let standardizationsKey = "data.standardizations"
    /// A series of several columns: the input features' column names, one per line, targets first.
    public static let columnsKey = "data.columns"

    /// Where the data came from and how it was cut into examples; nil when not recorded.
    public var source: DataSource?
    /// The training examples' `fingerprint()`.
    public var fingerprint: String?
    /// The ids of the input tokens.
    public var vocabulary: Vocabulary?
    /// The ids of the tags (tagging).
    public var tags: Vocabulary?
    /// Class names in label order (classification).
    public var classNames: [String]?
    /// The standardisation of a series (forecasting).
    public var standardization: Standardization?
    /// Each input feature's standardisation (a series of several columns).
    public var standardizations: [Standardization]?
    /// Each input feature's column name (a series of several columns), targets first.
    public var columnNames: [String]?

    /// Reads the keys present in `metadata`.
    /// - Throws: `RecurError.malformed` naming the key whose value cannot be read.
    public init(metadata: [String: String]) throws {
        source = try metadata[Self.sourceKey].map { try DataSource(json: $0) }
        fingerprint = metadata[Self.fingerprintKey]
        vocabulary = try metadata[Self.vocabularyKey].map { try Vocabulary(serialized: $0) }
        tags = try metadata[Self.tagsKey].map { try Vocabulary(serialized: $0) }
        classNames = metadata[Self.classesKey].map {
            $0.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        }
        standardization = try metadata[Self.standardizationKey].map {
            try Self.standardization($0, key: Self.standardizationKey)
        }
        standardizations = try metadata[Self.standardizationsKey].map { text in
            try text.split(separator: "\n").map { try Self.standardization(String($0), key: Self.standardizationsKey) }
        }
        columnNames = metadata[Self.columnsKey].map {
            $0.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        }
        if let standardizations, standardizations.count != columnNames?.count {
            throw RecurError.malformed(
                source: Self.standardizationsKey,
                detail: "\(standardizations.count) standardisations for the columns \(columnNames ?? []) (\(Self.columnsKey))")
        }
    }

    /// `mean deviation` read back.
    private static func standardization(_ text: String, key: String) throws -> Standardization {
        let parts = text.split(separator: " ").compactMap { Float($0) }
        guard parts.count == 2, parts[1] > 0, parts.allSatisfy(\.isFinite) else {
            throw RecurError.malformed(source: key, detail: "not 'mean deviation' with a positive deviation: \(text)")
        }
        return Standardization(mean: parts[0], standardDeviation: parts[1])
    }

    /// The metadata that records `source` and what was fitted to it in `prepared`.
    public static func metadata(source: DataSource, prepared: PreparedData) throws -> [String: String] {
        var metadata = [sourceKey: try source.json(), fingerprintKey: prepared.training.fingerprint()]
        if let vocabulary = prepared.vocabulary { metadata[vocabularyKey] = vocabulary.serialized }
        if let tags = prepared.tagVocabulary { metadata[tagsKey] = tags.serialized }
        // Tag names are the tag vocabulary's, not classes.
        if !prepared.classNames.isEmpty, prepared.tagVocabulary == nil {
            metadata[classesKey] = prepared.classNames.joined(separator: "\n")
        }
        if let standardization = prepared.standardization {
            metadata[standardizationKey] = "\(standardization.mean) \(standardization.standardDeviation)"
        }
        if let standardizations = prepared.standardizations {
            metadata[standardizationsKey] = standardizations.map { "\($0.mean) \($0.standardDeviation)" }
                .joined(separator: "\n")
            metadata[columnsKey] = prepared.seriesNames.joined(separator: "\n")
        }
        return metadata
    }

    /// Reads `source` with the vocabulary, classes, tags and standardisation recorded here, so
    /// its examples are numbered and scaled as the model's training data was.
    public func prepare(_ source: DataSource) throws -> PreparedData {
        try source.prepare(vocabulary: vocabulary, classNames: classNames, tagVocabulary: tags,
                           standardization: standardization, standardizations: standardizations)
    }

    /// Reads the recorded source as `prepare(_:)` does, so a library user reopens a checkpoint's
    /// data without being told where it came from.
    /// - Returns: the recorded source's examples, numbered and scaled as the model's training
    ///   data was.
    /// - Throws: `RecurError.malformed` naming `data.source` when no source was recorded; the
    ///   source's own errors when it cannot be read.
    public func prepareRecordedSource() throws -> PreparedData {
        guard let source else {
            throw RecurError.malformed(source: Self.sourceKey, detail: "the checkpoint records no data source")
        }
        return try prepare(source)
    }
}
