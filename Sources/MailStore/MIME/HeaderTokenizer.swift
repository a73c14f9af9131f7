// HeaderTokenizer: RFC 5322 / RFC 2045 lexical tokens (words, quoted strings, comments, specials)
// over a raw, possibly folded header value.

/// Reads structured header values token by token without allocating.
///
///     CFWS          = (1*([FWS] comment) [FWS]) / FWS                 ; RFC 5322 3.2.2
///     comment       = "(" *([FWS] ccontent) [FWS] ")"
///     quoted-string = [CFWS] DQUOTE *([FWS] qcontent) [FWS] DQUOTE [CFWS]
///
/// Line breaks inside a value are folding white space. Comments nest; an unclosed comment or
/// quoted string runs to the end of the value (best effort, never an error).
struct HeaderTokenizer {
    let base: UnsafeRawBufferPointer
    var position: Int
    let end: Int
    /// The inside of the last comment skipped by ``skipCFWS()`` (without its parentheses).
    var lastComment: Range<Int>?

    init(_ base: UnsafeRawBufferPointer, range: Range<Int>) {
        self.base = base
        self.position = range.lowerBound
        self.end = range.upperBound
    }

    var atEnd: Bool { position >= end }

    /// The byte at the current position, or nil at the end.
    var peek: UInt8? { position < end ? base[position] : nil }

    /// Skips white space, line breaks and (nested) comments.
    mutating func skipCFWS() {
        while position < end {
            let byte = base[position]
            if MIMEBytes.isWhitespace(byte) {
                position += 1
            } else if byte == UInt8(ascii: "(") {
                let start = position + 1
                var depth = 0
                while position < end {
                    let current = base[position]
                    if current == UInt8(ascii: "\\") {
                        position += 2
                        continue
                    }
                    if current == UInt8(ascii: "(") { depth += 1 }
                    if current == UInt8(ascii: ")") {
                        depth -= 1
                        if depth == 0 { break }
                    }
                    position += 1
                }
                lastComment = start..<min(position, end)
                position = min(position + 1, end)
            } else {
                return
            }
        }
    }

    /// Reads a quoted string whose opening quote is at the current position; returns the range
    /// between the quotes, escapes still in place (`MIMEBytes.unquote` undoes them).
    ///
    ///     qcontent = qtext / quoted-pair ; quoted-pair = "\" (VCHAR / WSP)
    mutating func readQuotedString() -> Range<Int> {
        position += 1
        let start = position
        while position < end {
            let byte = base[position]
            if byte == UInt8(ascii: "\\") {
                position += 2
                continue
            }
            if byte == UInt8(ascii: "\"") { break }
            position += 1
        }
        let stop = min(position, end)
        position = min(position + 1, end)
        return start..<stop
    }

    /// Reads a run of bytes that are not white space, not `(` or `"`, and not in `stops`.
    /// Eight-bit bytes are accepted (RFC 6532 and real-world headers).
    mutating func readWord(stoppingAt stops: StaticString) -> Range<Int> {
        // One mask test per byte: comparing each byte with every stop was the hottest Swift code
        // of message analysis.
        let ends = ASCIIByteSet.wordEnds.adding(stops)
        let start = position
        while position < end, !ends.contains(base[position]) { position += 1 }
        return start..<position
    }

    /// Moves past the next occurrence of `byte` outside quoted strings and comments (or to the end).
    mutating func skip(past byte: UInt8) {
        while position < end {
            skipCFWS()
            guard let current = peek else { return }
            if current == UInt8(ascii: "\"") {
                _ = readQuotedString()
            } else {
                position += 1
                if current == byte { return }
            }
        }
    }
}

/// A set of ASCII bytes as a 128-bit mask; bytes above 127 are never members.
struct ASCIIByteSet {
    private var low: UInt64 = 0
    private var high: UInt64 = 0

    /// What ends a word whatever the field: white space, line breaks, `(` and `"`.
    static let wordEnds = ASCIIByteSet().adding(" \t\r\n(\"")

    /// The set with the ASCII bytes of `bytes` added.
    func adding(_ bytes: StaticString) -> ASCIIByteSet {
        var set = self
        let pointer = bytes.utf8Start
        for index in 0..<bytes.utf8CodeUnitCount {
            let byte = pointer[index]
            if byte < 64 {
                set.low |= 1 << UInt64(byte)
            } else if byte < 128 {
                set.high |= 1 << UInt64(byte - 64)
            }
        }
        return set
    }

    func contains(_ byte: UInt8) -> Bool {
        if byte < 64 { return low & (1 << UInt64(byte)) != 0 }
        return byte < 128 && high & (1 << UInt64(byte &- 64)) != 0
    }
}
