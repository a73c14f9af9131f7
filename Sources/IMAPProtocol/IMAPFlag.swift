// IMAPProtocol: flags, keywords and flag lists.

/// A message flag or keyword as sent: `\Seen`, `\Answered`, `$Forwarded`, `NonJunk`, or `\*` in a
/// PERMANENTFLAGS list (RFC 9051 section 2.3.2).
public struct IMAPFlag: Equatable, CustomStringConvertible {
    /// The flag's bytes, with the backslash of a system flag.
    public let bytes: IMAPBytes

    public init(_ bytes: IMAPBytes) { self.bytes = bytes }
    public init(_ text: StaticString) { self.init(IMAPBytes(text)) }

    /// Whether it is a system flag or extension flag (starts with a backslash).
    public var isSystemFlag: Bool { bytes.count > 0 && bytes[0] == UInt8(ascii: "\\") }

    /// The system flags of RFC 9051 section 2.3.2 (and `\Recent` of RFC 3501).
    public enum System: Sendable, CaseIterable {
        case answered, flagged, deleted, seen, draft, recent
    }

    /// The system flag it names, ignoring case; nil for keywords and extension flags.
    public var system: System? {
        guard isSystemFlag else { return nil }
        let name = bytes.slice(1..<bytes.count)
        if name.equalsCaseInsensitive("SEEN") { return .seen }
        if name.equalsCaseInsensitive("ANSWERED") { return .answered }
        if name.equalsCaseInsensitive("FLAGGED") { return .flagged }
        if name.equalsCaseInsensitive("DELETED") { return .deleted }
        if name.equalsCaseInsensitive("DRAFT") { return .draft }
        if name.equalsCaseInsensitive("RECENT") { return .recent }
        return nil
    }

    public var description: String { bytes.string }

    /// Flags compare case-insensitively (RFC 9051 section 2.3.2).
    public static func == (lhs: IMAPFlag, rhs: IMAPFlag) -> Bool { lhs.bytes.equalsCaseInsensitive(rhs.bytes) }
}

/// A validated list of flags, kept as the view between its parentheses and walked lazily.
///
/// `C: A3 STORE 2:4 +FLAGS.SILENT (\Deleted $Junk)`
public struct IMAPFlagList: Equatable, Sequence {
    /// The text between the parentheses (or of the flags separated by spaces).
    public let text: IMAPBytes
    /// How many flags it holds.
    public let count: Int

    init(validatedText: IMAPBytes, count: Int) {
        text = validatedText
        self.count = count
    }

    /// Validates `text` as space-separated flags (without parentheses); nil if it is not.
    public init?(_ text: IMAPBytes) {
        if text.isEmpty {
            self.init(validatedText: text, count: 0)
            return
        }
        var parser = IMAPParser(text, limits: IMAPLimits())
        var count = 0
        while true {
            guard parser.flag() != nil else { return nil }
            count += 1
            if parser.isAtEnd { break }
            guard parser.space() != nil else { return nil }
        }
        self.init(validatedText: text, count: count)
    }

    public func makeIterator() -> Iterator { Iterator(text: text) }

    public static func == (lhs: IMAPFlagList, rhs: IMAPFlagList) -> Bool {
        lhs.count == rhs.count && lhs.elementsEqual(rhs)
    }

    /// Walks the flags of a validated list.
    public struct Iterator: IteratorProtocol {
        let text: IMAPBytes
        var offset = 0

        public mutating func next() -> IMAPFlag? {
            guard offset < text.count else { return nil }
            let start = offset
            while offset < text.count, text[offset] != 0x20 { offset += 1 }
            defer { offset += 1 }
            return IMAPFlag(text.slice(start..<offset))
        }
    }
}

extension IMAPParser {
    // flag = "\Answered" / "\Flagged" / "\Deleted" / "\Seen" / "\Draft" / flag-keyword / flag-extension
    // flag-keyword = "$MDNSent" / "$Forwarded" / ... / atom;  flag-extension = "\" atom
    mutating func flag() -> IMAPFlag? {
        let start = position
        _ = skip(UInt8(ascii: "\\"))
        guard atom() != nil else { return fail("Invalid flag") }
        return IMAPFlag(view(start, position))
    }

    // flag-perm = flag / "\*"
    mutating func permanentFlag() -> IMAPFlag? {
        if peek() == UInt8(ascii: "\\"), peek(at: 1) == UInt8(ascii: "*") {
            position += 2
            return IMAPFlag(view(position - 2, position))
        }
        return flag()
    }

    // flag-list = "(" [flag *(SP flag)] ")"
    mutating func flagList() -> IMAPFlagList? {
        guard let list = parenthesizedList(allowEmpty: true, { $0.flag().map { _ in true } }) else { return nil }
        return IMAPFlagList(validatedText: list.text, count: list.count)
    }
}
