// JSON as checkpoints and logs hold it, and decoding errors that name the field at fault.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// JSON as Recur writes it in checkpoints and logs: sorted keys, and NaN and infinities as the
/// strings `"nan"`, `"inf"`, `"-inf"` (a diverged run's metrics must still be writable).
enum RecurJSON {
    static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return encoder
    }

    static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return decoder
    }

    static func string(_ value: some Encodable) throws -> String {
        String(decoding: try encoder().encode(value), as: UTF8.self)
    }

    /// Decodes `text`, or throws `RecurError.malformed` naming `source` and `what` was expected.
    static func decode<Value: Decodable>(_ type: Value.Type, from text: String, source: String,
                                         what: String) throws -> Value {
        do {
            return try decoder().decode(type, from: Data(text.utf8))
        } catch let error as DecodingError {
            var detail = describe(error)
            if case .dataCorrupted(let context) = error, context.codingPath.isEmpty,
               let parsed = try? SafeTensorsJSON.parse(Array(text.utf8)[...]) {
                // The text is JSON, so the decoder refused a number that does not fit its field
                // (1.5 or 1e30 where an integer belongs) without saying which: name the
                // candidates, numbers that are no integer held under names of integer fields.
                let misfits = integerMisfits(in: parsed, integerFields: integerFieldNames(of: Value.self))
                detail = "a number does not fit its field" + (misfits.isEmpty ? "" : ": " + misfits.joined(separator: ", "))
            }
            throw RecurError.malformed(source: source, detail: "\(what): \(detail)")
        } catch {
            throw RecurError.malformed(source: source, detail: "\(what) is not valid: \(error)")
        }
    }

    /// Names of the integer properties of `type`, read from a default value where it has one.
    private static func integerFieldNames<Value>(of type: Value.Type) -> Set<String> {
        guard let template = (type as? any DefaultConstructible.Type)?.init() else { return [] }
        return Set(Mirror(reflecting: template).children.compactMap { child in
            // By the static type: a nil of any optional type would pass `is Int?`.
            let fieldType = Swift.type(of: child.value)
            return fieldType == Int.self || fieldType == Int?.self ? child.label : nil
        })
    }

    /// "field 'name' is 1.5 (an integer belongs there)" for every number under one of
    /// `integerFields` that is not an integer Swift's Int can hold, at any depth.
    private static func integerMisfits(in value: SafeTensorsJSON, integerFields: Set<String>) -> [String] {
        switch value {
        case .array(let items):
            return items.flatMap { integerMisfits(in: $0, integerFields: integerFields) }
        case .object(let members):
            return members.flatMap { member -> [String] in
                if case .number(let text) = member.value, integerFields.contains(member.key), Int(text) == nil {
                    return ["field '\(member.key)' is \(text) where an integer belongs"]
                }
                return integerMisfits(in: member.value, integerFields: integerFields)
            }
        default:
            return []
        }
    }

    /// A decoding error as one line naming the field: "field 'epoch': expected an integer, …".
    static func describe(_ error: DecodingError) -> String {
        func field(_ path: [any CodingKey]) -> String {
            let names = path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
            return names.isEmpty ? "the top level" : "field '\(names.joined(separator: "."))'"
        }
        func kind(_ type: Any.Type) -> String {
            switch type {
            case is Int.Type, is Int32.Type, is Int64.Type, is UInt64.Type, is UInt32.Type: "an integer"
            case is Double.Type, is Float.Type: "a number"
            case is String.Type: "a string"
            case is Bool.Type: "true or false"
            default: "\(type)"
            }
        }
        switch error {
        case let .typeMismatch(type, context):
            return "\(field(context.codingPath)): expected \(kind(type))"
        case let .valueNotFound(type, context):
            return "\(field(context.codingPath)): expected \(kind(type)), found null"
        case let .keyNotFound(key, context):
            return "\(field(context.codingPath + [key])) is missing"
        case let .dataCorrupted(context):
            // Foundation reports a number that does not fit its field (1.5 or 1e30 for an
            // integer) here, with the number in the description.
            return "\(field(context.codingPath)): \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }
}

/// A type with a default value, whose properties `RecurJSON` can list to explain a decoding error.
protocol DefaultConstructible {
    init()
}
