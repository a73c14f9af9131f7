// IMAPProtocol: FETCH response items viewed in place, for a client that checks them without keeping them.

/// One item of a `* n FETCH (...)` response, validated against the grammar but viewed in the read
/// buffer instead of copied into an ``IMAPFetchItem`` (see
/// ``IMAPResponseParser/parse(_:visitingFetchItems:)``). Valid only during the visit.
public enum IMAPFetchItemView {
    /// `UID n`
    case uid(UInt32)
    /// `RFC822.SIZE n`
    case rfc822Size(UInt64)
    /// `FLAGS (...)`
    case flags(IMAPFlagListView)
    /// `ENVELOPE (...)`: the envelope's wire text.
    case envelope(IMAPValueText)
    /// `BODYSTRUCTURE (...)` (extensible) or `BODY (...)`: the structure's wire text.
    case bodyStructure(IMAPValueText, extensible: Bool)
    /// Any other item (INTERNALDATE, BODY[section] and its data, BINARY, MODSEQ...), as its whole wire text.
    case other(IMAPBytes)
}

/// The flags of a FETCH `FLAGS (...)` item, in place: the text between the parentheses.
public struct IMAPFlagListView: Sequence {
    /// The flags separated by single spaces (validated: `flag-fetch *(SP flag-fetch)`, maybe empty).
    public let text: IMAPBytes

    public init(text: IMAPBytes) { self.text = text }

    public func makeIterator() -> Iterator { Iterator(text: text) }

    /// Each flag's bytes (`\Seen`, `$Label`), in order.
    public struct Iterator: IteratorProtocol {
        let text: IMAPBytes
        var position = 0

        public mutating func next() -> IMAPBytes? {
            guard position < text.count else { return nil }
            let start = position
            while position < text.count, text[position] != 0x20 { position += 1 }
            let flag = text.slice(start..<position)
            position += 1
            return flag
        }
    }
}

/// The wire text of a structured FETCH value (an envelope, a body structure), validated.
public struct IMAPValueText {
    public let raw: IMAPBytes

    public init(raw: IMAPBytes) { self.raw = raw }

    /// A 64-bit digest of the value, not of its spelling: a string hashes the same quoted (with or
    /// without escapes) or as a literal, `NIL` the same in any case, a number by its value. Two
    /// values with equal digests are equal but for a 64-bit hash collision; a client that only
    /// needs to know whether a value changed keeps this instead of the parsed tree.
    public var digest: UInt64 {
        var digest = ValueDigest()
        var index = 0
        let count = raw.count
        while index < count {
            let byte = raw[index]
            switch byte {
            case UInt8(ascii: "("), UInt8(ascii: ")"):
                digest.mix(byte)
                index += 1
            case 0x20:
                index += 1
            case UInt8(ascii: "\""):
                // quoted = DQUOTE *QUOTED-CHAR DQUOTE  (QUOTED-CHAR may be "\" quoted-specials)
                digest.mix(ValueDigest.stringTag)
                var length = 0
                index += 1
                while index < count, raw[index] != UInt8(ascii: "\"") {
                    if raw[index] == UInt8(ascii: "\\") { index += 1 }
                    if index < count { digest.mix(raw[index]) }
                    length += 1
                    index += 1
                }
                digest.mix(UInt64(length))
                index += 1
            case UInt8(ascii: "{"), UInt8(ascii: "~"):
                // literal = "{" number64 ["+"] "}" CRLF *CHAR8  (literal8 with a leading "~")
                digest.mix(ValueDigest.stringTag)
                var length = 0
                while index < count, raw[index] != UInt8(ascii: "}") {
                    if IMAPByteClass.isDigit(raw[index]) { length = length &* 10 &+ Int(raw[index] - 0x30) }
                    index += 1
                }
                index += 3  // "}" CRLF
                let end = min(index + length, count)
                while index < end {
                    digest.mix(raw[index])
                    index += 1
                }
                digest.mix(UInt64(length))
            default:
                // An atom: NIL (any case) or a number in these values; other atoms by their upper-case bytes.
                let start = index
                while index < count, raw[index] != 0x20, raw[index] != UInt8(ascii: "("),
                    raw[index] != UInt8(ascii: ")")
                {
                    index += 1
                }
                let atom = raw.slice(start..<index)
                if let number = ValueDigest.number(atom) {
                    digest.mix(ValueDigest.numberTag)
                    digest.mix(number)
                } else {
                    digest.mix(ValueDigest.atomTag)
                    for offset in 0..<atom.count { digest.mix(IMAPByteClass.upper(atom[offset])) }
                    digest.mix(UInt64(atom.count))
                }
            }
        }
        return digest.value
    }
}

/// FNV-1a over a stream of tagged tokens: cheap, and enough to tell a changed value from an unchanged one.
struct ValueDigest {
    // Tags cannot be confused with the parentheses mixed as themselves.
    static let stringTag: UInt8 = 1
    static let numberTag: UInt8 = 2
    static let atomTag: UInt8 = 3

    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    mutating func mix(_ byte: UInt8) { value = (value ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }

    mutating func mix(_ word: UInt64) {
        for shift in stride(from: 0, to: 64, by: 8) { mix(UInt8(truncatingIfNeeded: word >> UInt64(shift))) }
    }

    /// The value of an all-digit atom (leading zeros do not change it), nil for any other atom.
    static func number(_ atom: IMAPBytes) -> UInt64? {
        guard !atom.isEmpty else { return nil }
        var value: UInt64 = 0
        for offset in 0..<atom.count {
            guard IMAPByteClass.isDigit(atom[offset]) else { return nil }
            value = value &* 10 &+ UInt64(atom[offset] - 0x30)
        }
        return value
    }
}
