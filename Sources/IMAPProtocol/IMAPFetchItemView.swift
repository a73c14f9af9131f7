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

    /// A 64-bit digest of the exact bytes (8 at a time: much cheaper than ``digest``). Equal spelling
    /// digests mean equal values (but for a collision); different ones say nothing, as one value
    /// may be spelt several ways: then compare ``digest``.
    public var spellingDigest: UInt64 {
        var digest = ValueDigest()
        digest.mix(ValueDigest.stringTag, raw.buffer)
        return digest.value
    }

    /// A 64-bit digest of the value, not of its spelling: a string hashes the same quoted (with or
    /// without escapes) or as a literal, `NIL` the same in any case, a number by its value. Two
    /// values with equal digests are equal but for a 64-bit hash collision; a client that only
    /// needs to know whether a value changed keeps this instead of the parsed tree.
    public var digest: UInt64 {
        var digest = ValueDigest()
        let bytes = raw.buffer
        let count = bytes.count
        var index = 0
        while index < count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "("), UInt8(ascii: ")"):
                digest.mix(UInt64(byte))
                index += 1
            case 0x20:
                index += 1
            case UInt8(ascii: "\""):
                // quoted = DQUOTE *QUOTED-CHAR DQUOTE  (QUOTED-CHAR may be "\" quoted-specials)
                index += 1
                let start = index
                var hasEscapes = false
                while index < count {
                    // Strings are mostly plain text: skip 8 bytes at a time while none is a quote or backslash.
                    while index + 8 <= count {
                        let word = bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)
                        if hasZeroByte(word ^ 0x2222_2222_2222_2222) || hasZeroByte(word ^ 0x5c5c_5c5c_5c5c_5c5c) {
                            break
                        }
                        index += 8
                    }
                    guard index < count, bytes[index] != UInt8(ascii: "\"") else { break }
                    if bytes[index] == UInt8(ascii: "\\") {
                        hasEscapes = true
                        index += 1
                    }
                    index += 1
                }
                let content = UnsafeRawBufferPointer(rebasing: bytes[start..<min(index, count)])
                if hasEscapes { digest.mix(unescaping: content) } else { digest.mix(ValueDigest.stringTag, content) }
                index += 1
            case UInt8(ascii: "{"), UInt8(ascii: "~"):
                // literal = "{" number64 ["+"] "}" CRLF *CHAR8  (literal8 with a leading "~")
                var length = 0
                while index < count, bytes[index] != UInt8(ascii: "}") {
                    if IMAPByteClass.isDigit(bytes[index]) { length = length &* 10 &+ Int(bytes[index] - 0x30) }
                    index += 1
                }
                index = min(index + 3, count)  // "}" CRLF
                let end = min(index + length, count)
                digest.mix(ValueDigest.stringTag, UnsafeRawBufferPointer(rebasing: bytes[index..<end]))
                index = end
            default:
                // An atom: NIL (any case) or a number in these values (by value: leading zeros do not count).
                let start = index
                var number: UInt64 = 0
                var isNumber = true
                while index < count, bytes[index] != 0x20, bytes[index] != UInt8(ascii: "("),
                    bytes[index] != UInt8(ascii: ")")
                {
                    isNumber = isNumber && IMAPByteClass.isDigit(bytes[index])
                    number = number &* 10 &+ UInt64(bytes[index] &- 0x30)
                    index += 1
                }
                let atom = raw.slice(start..<index)
                if isNumber {
                    digest.mix(ValueDigest.numberTag)
                    digest.mix(number)
                } else if atom.equalsCaseInsensitive("NIL") {
                    digest.mix(ValueDigest.nilTag)
                } else {
                    digest.mix(ValueDigest.atomTag, atom.buffer)
                }
            }
        }
        return digest.value
    }
}

/// A 64-bit multiply-xorshift hash over a stream of tagged tokens, 8 bytes at a time: cheap, and
/// enough to tell a changed value from an unchanged one.
struct ValueDigest {
    // Tags cannot be confused with the parentheses, mixed as their byte values.
    static let stringTag: UInt64 = 1
    static let numberTag: UInt64 = 2
    static let nilTag: UInt64 = 3
    static let atomTag: UInt64 = 4

    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    @inline(__always)
    mutating func mix(_ word: UInt64) {
        value = (value ^ word) &* 0x9e37_79b9_7f4a_7c15
        value ^= value >> 32
    }

    /// A run of bytes: `tag`, the bytes as little-endian words (the last one zero-padded), the length.
    mutating func mix(_ tag: UInt64, _ bytes: UnsafeRawBufferPointer) {
        mix(tag)
        var offset = 0
        while offset + 8 <= bytes.count {
            mix(UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)))
            offset += 8
        }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while offset < bytes.count {
            tail |= UInt64(bytes[offset]) << shift
            shift += 8
            offset += 1
        }
        mix(tail)
        mix(UInt64(bytes.count))
    }

    /// A quoted string's content with escapes: the same digest as its unescaped bytes would give.
    mutating func mix(unescaping bytes: UnsafeRawBufferPointer) {
        mix(ValueDigest.stringTag)
        var word: UInt64 = 0
        var shift: UInt64 = 0
        var length: UInt64 = 0
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "\\") && index + 1 < bytes.count { index += 1 }
            word |= UInt64(bytes[index]) << shift
            shift += 8
            length += 1
            index += 1
            if shift == 64 {
                mix(word)
                word = 0
                shift = 0
            }
        }
        mix(word)
        mix(length)
    }
}
