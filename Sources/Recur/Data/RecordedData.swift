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

    /// Where the data came from and how it was cut into examples; nil when not recorded.
    public var source: DataSource?
    /// `Trainer.fingerprint` of the training examples.
    public var fingerprint: String?
    /// The ids of the input tokens.
    public var vocabulary: Vocabulary?
    /// The ids of the tags (tagging).
    public var tags: Vocabulary?
    /// Class names in label order (classification).
    public var classNames: [String]?
    /// The standardisation of a series (forecasting).
    public var standardization: Standardization?

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
        if let text = metadata[Self.standardizationKey] {
            let parts = text.split(separator: " ").compactMap { Float($0) }
            guard parts.count == 2, parts[1] > 0, parts.allSatisfy(\.isFinite) else {
                throw RecurError.malformed(
                    source: Self.standardizationKey, detail: "not 'mean deviation' with a positive deviation: \(text)")
            }
            standardization = Standardization(mean: parts[0], standardDeviation: parts[1])
        }
    }

    /// The metadata that records `source` and what was fitted to it in `prepared`.
    public static func metadata(source: DataSource, prepared: PreparedData) throws -> [String: String] {
        var metadata = [sourceKey: try source.json(), fingerprintKey: Trainer.fingerprint(prepared.training)]
        if let vocabulary = prepared.vocabulary { metadata[vocabularyKey] = vocabulary.serialized }
        if let tags = prepared.tagVocabulary { metadata[tagsKey] = tags.serialized }
        // Tag names are the tag vocabulary's, not classes.
        if !prepared.classNames.isEmpty, prepared.tagVocabulary == nil {
            metadata[classesKey] = prepared.classNames.joined(separator: "\n")
        }
        if let standardization = prepared.standardization {
            metadata[standardizationKey] = "\(standardization.mean) \(standardization.standardDeviation)"
        }
        return metadata
    }

    /// Reads `source` with the vocabulary, classes, tags and standardisation recorded here, so
    /// its examples are numbered and scaled as the model's training data was.
    public func prepare(_ source: DataSource) throws -> PreparedData {
        try source.prepare(vocabulary: vocabulary, classNames: classNames, tagVocabulary: tags,
                           standardization: standardization)
    }
}
