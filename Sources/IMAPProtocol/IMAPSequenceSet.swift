// IMAPProtocol: IMAPSequenceSet, a validated sequence set kept as a view of its text.

/// One end of a sequence range: a number, or `*` (the largest number in use).
public enum IMAPSequenceNumber: Equatable, Sendable {
    case number(UInt32)
    /// `*`: the last message (or the largest UID).
    case last

    /// The value with `*` resolved to `largest`.
    public func resolved(largest: UInt32) -> UInt32 {
        switch self {
        case .number(let value): return value
        case .last: return largest
        }
    }
}

/// A range as written: `first:last` (either order, RFC 9051 section 9 "seq-range"), or one number.
public struct IMAPSequenceRange: Equatable, Sendable {
    public var first: IMAPSequenceNumber
    public var last: IMAPSequenceNumber

    public init(first: IMAPSequenceNumber, last: IMAPSequenceNumber) {
        self.first = first
        self.last = last
    }

    /// The range with `*` resolved and the ends put in order.
    public func resolved(largest: UInt32) -> ClosedRange<UInt32> {
        let lower = first.resolved(largest: largest)
        let upper = last.resolved(largest: largest)
        return min(lower, upper)...max(lower, upper)
    }
}

/// A sequence set (RFC 9051 section 9), validated once and kept as a view of its text: parsing costs no
/// allocation, and ``makeIterator()`` walks the ranges lazily. `$` (RFC 5182, RFC 9051 section 6.4.4.1)
/// refers to the result of the last `SEARCH RETURN (SAVE)`.
///
/// ```
/// C: A1 FETCH 1:4,7,9:* FLAGS
/// C: A2 UID FETCH $ FLAGS
/// ```
public struct IMAPSequenceSet: Equatable, Sequence {
    /// The set's text as sent (`1:4,7,9:*` or `$`).
    public let text: IMAPBytes
    /// How many ranges it has (0 for `$`).
    public let rangeCount: Int

    /// Validates `text` as a sequence set or `$`; nil if it is not one or has more than `maxRanges` ranges.
    public init?(_ text: IMAPBytes, maxRanges: Int = IMAPLimits().maxSequenceSetRanges) {
        var parser = IMAPParser(text, limits: IMAPLimits(maxSequenceSetRanges: maxRanges))
        guard let set = parser.sequenceSet(), parser.isAtEnd else { return nil }
        self = set
    }

    init(validatedText: IMAPBytes, rangeCount: Int) {
        text = validatedText
        self.rangeCount = rangeCount
    }

    /// Whether the set is `$`, the saved search result.
    public var isSavedResult: Bool { rangeCount == 0 }

    /// Whether `value` is in the set, with `*` meaning `largest`.
    public func contains(_ value: UInt32, largest: UInt32) -> Bool {
        for range in self where range.resolved(largest: largest).contains(value) {
            return true
        }
        return false
    }

    public static func == (lhs: IMAPSequenceSet, rhs: IMAPSequenceSet) -> Bool {
        lhs.rangeCount == rhs.rangeCount && lhs.elementsEqual(rhs)
    }

    public func makeIterator() -> Iterator { Iterator(text: text) }

    /// Walks the ranges of a validated set.
    public struct Iterator: IteratorProtocol {
        let text: IMAPBytes
        var offset = 0

        init(text: IMAPBytes) { self.text = text }

        public mutating func next() -> IMAPSequenceRange? {
            guard offset < text.count, text[0] != UInt8(ascii: "$") else { return nil }
            let first = readNumber()
            var last = first
            if offset < text.count, text[offset] == UInt8(ascii: ":") {
                offset += 1
                last = readNumber()
            }
            offset += 1  // the comma, or past the end
            return IMAPSequenceRange(first: first, last: last)
        }

        private mutating func readNumber() -> IMAPSequenceNumber {
            if text[offset] == UInt8(ascii: "*") {
                offset += 1
                return .last
            }
            var value: UInt32 = 0
            while offset < text.count, IMAPByteClass.isDigit(text[offset]) {
                // Validation has already checked the number fits.
                value = value &* 10 &+ UInt32(text[offset] &- 0x30)
                offset += 1
            }
            return .number(value)
        }
    }
}

extension IMAPParser {
    // sequence-set = (seq-number / seq-range) ["," sequence-set]
    // seq-range = seq-number ":" seq-number;  seq-number = nz-number / "*"
    // sequence-set =/ seq-last-command;  seq-last-command = "$"
    mutating func sequenceSet() -> IMAPSequenceSet? {
        let start = position
        if skip(UInt8(ascii: "$")) { return IMAPSequenceSet(validatedText: view(start, position), rangeCount: 0) }
        var ranges = 0
        while true {
            guard sequenceNumber() != nil else { return nil }
            if skip(UInt8(ascii: ":")) { guard sequenceNumber() != nil else { return nil } }
            ranges += 1
            guard ranges <= maxSequenceSetRanges else { return fail("Sequence set too large") }
            if !skip(UInt8(ascii: ",")) { break }
        }
        return IMAPSequenceSet(validatedText: view(start, position), rangeCount: ranges)
    }

    // seq-number = nz-number / "*"
    mutating func sequenceNumber() -> Bool? {
        if skip(UInt8(ascii: "*")) { return true }
        guard let byte = peek(), IMAPByteClass.isDigit(byte) else { return fail("Invalid sequence set") }
        return nzNumber().map { _ in true }
    }
}
