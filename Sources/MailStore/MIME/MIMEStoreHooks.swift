// MIMEStoreHooks: the MIME layer plugged into the store: the analyzer whose blob the index caches
// (a serialized MessageStructure) and the searcher that answers SEARCH's text keys from it.

/// Caches a serialized ``MessageStructure`` per message, so FETCH ENVELOPE, BODYSTRUCTURE and
/// section lookups read no message file once a message is analysed.
public struct MIMEMessageAnalyzer: MessageAnalyzer {
    public init() {}

    public func analyze(_ message: UnsafeRawBufferPointer) -> [UInt8] {
        var blob: [UInt8] = []
        var structure = MessageStructure(parsing: message)
        structure.keepHeader(of: message)
        structure.serialize(into: &blob)
        return blob
    }
}

/// Answers HEADER/FROM/TO/CC/BCC/BODY/TEXT by reading the message (case-insensitive, over decoded
/// UTF-8), and SUBJECT and SENT* from the envelope, which the cached structure holds: those read no
/// message file unless the cached blob is missing or damaged.
public struct MIMEContentSearcher: MessageContentSearcher {
    public init() {}

    /// A content key with its needle case-folded into a matcher once per SEARCH, which each message
    /// then copies (a copy shares the needle; it allocates nothing).
    public enum PreparedKey: Sendable {
        case header(field: [UInt8], MIMETextMatcher)
        case subject(MIMETextMatcher)
        case body(MIMETextMatcher)
        case text(MIMETextMatcher)
        case sentDate(comparison: Int, day: Int64)
    }

    public func prepare(_ key: ContentSearchKey) -> PreparedKey {
        switch key {
        case .header(let field, let value): return .header(field: Array(field.utf8), MIMETextMatcher(needle: value.utf8))
        case .subject(let value): return .subject(MIMETextMatcher(needle: value.utf8))
        case .body(let value): return .body(MIMETextMatcher(needle: value.utf8))
        case .text(let value): return .text(MIMETextMatcher(needle: value.utf8))
        case .sentDate(let comparison, let day): return .sentDate(comparison: comparison, day: day)
        }
    }

    public func answer(_ key: PreparedKey, cached: UnsafeRawBufferPointer) -> Bool? {
        switch key {
        case .subject(let matcher):
            // Every message of the mailbox is asked: the subject is read from the blob in place,
            // without building the structure.
            guard let subject = MessageStructure.envelopeSubject(inSerialized: cached) else { return nil }
            return MessageStructure.subject(subject, contains: matcher)
        case .sentDate:
            guard let structure = MessageStructure(serialized: cached) else { return nil }
            return Self.envelopeAnswer(key, structure)
        case .header, .body, .text:
            return nil
        }
    }

    public func matches(_ key: PreparedKey, message: UnsafeRawBufferPointer, cached: UnsafeRawBufferPointer) -> Bool {
        let structure = Self.structure(of: message, cached: cached)
        switch key {
        case .header(let field, let matcher):
            return structure.headerField(field, contains: matcher, in: message)
        case .body(let matcher):
            return structure.bodyContains(matcher, in: message)
        case .text(let matcher):
            return structure.textContains(matcher, in: message)
        case .subject, .sentDate:
            return Self.envelopeAnswer(key, structure)
        }
    }

    /// SUBJECT and SENT* from the message's envelope, the one place both the cached and the file
    /// path decide them (so a message answers the same whether or not its blob was cached).
    static func envelopeAnswer(_ key: PreparedKey, _ structure: MessageStructure) -> Bool {
        switch key {
        case .subject(let matcher):
            return structure.subjectContains(matcher)
        case .sentDate(let comparison, let day):
            guard let date = structure.envelope.date,
                  let sentDay = MIMEDateParser.day(of: Array(structure.bytes(date)))
            else { return false }
            switch comparison {
            case ..<0: return sentDay < day
            case 0: return sentDay == day
            default: return sentDay >= day
            }
        case .header, .body, .text:
            return false
        }
    }
}

extension MIMEContentSearcher {
    /// The message's structure from its cached blob when that describes this very message (reading a
    /// blob costs a fraction of parsing: SEARCH SUBJECT over a mailbox was mostly re-parsing), else
    /// parsed afresh.
    static func structure(of message: UnsafeRawBufferPointer, cached: UnsafeRawBufferPointer) -> MessageStructure {
        if !cached.isEmpty, let structure = MessageStructure(serialized: cached), structure.messageSize == message.count {
            return structure
        }
        return MessageStructure(parsing: message)
    }
}

/// The calendar day of an RFC 5322 Date: value (`Mon, 7 Feb 1994 21:52:25 -0800`), in days since
/// 1970-01-01 of the date as written (RFC 3501 SENT* ignores the time and zone).
enum MIMEDateParser {
    static let months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]

    // date = day month year (RFC 5322 section 3.3), optionally after "day-of-week ,"
    static func day(of value: [UInt8]) -> Int64? {
        var words: [[UInt8]] = []
        var current: [UInt8] = []
        for byte in value {
            if byte == 0x20 || byte == 0x09 || byte == 0x2C || byte == 0x0D || byte == 0x0A {
                if !current.isEmpty { words.append(current) }
                current = []
            } else {
                current.append(byte)
            }
        }
        if !current.isEmpty { words.append(current) }
        guard let start = words.firstIndex(where: { $0.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } }),
              start + 2 < words.count,
              let dayNumber = Int(String(decoding: words[start], as: UTF8.self)),
              let month = months.firstIndex(of: String(decoding: words[start + 1].map { $0 | 0x20 }, as: UTF8.self)),
              var year = Int(String(decoding: words[start + 2], as: UTF8.self))
        else { return nil }
        if year < 50 { year += 2000 } else if year < 1000 { year += 1900 }
        guard dayNumber >= 1, dayNumber <= 31 else { return nil }
        return SearchKey.day(year: year, month: month + 1, day: dayNumber)
    }
}
