// IMAPProtocol: IMAPLineScanner, the line-and-literal scanning both framers share.

/// Finds the lines of a frame (command or response) and the literal each may announce at its end,
/// remembering how far it has looked so every byte is examined once across reads. The framers decide
/// what a literal means (held inline, streamed, refused) and tell the scanner to step over inline ones.
struct IMAPLineScanner {
    /// How far into the current frame has been scanned (past the buffer's end while an inline literal's
    /// bytes are still arriving).
    private var scanned = 0
    /// Where the line being scanned starts (after the last inline literal).
    private var lineStart = 0

    /// What the next step of scanning found.
    enum Step {
        case needMoreBytes
        /// The frame has grown past `maxLength` without ending.
        case tooLong
        /// A line ends at `end` (just after its LF); `ending` says whether it announces a literal.
        case line(end: Int, ending: LineEnding)
    }

    /// Whether nothing of a frame has been scanned yet.
    var isAtStart: Bool { scanned == 0 }

    /// Forgets the frame (after it was reported).
    mutating func reset() {
        scanned = 0
        lineStart = 0
    }

    /// Steps over an inline literal of `size` bytes announced by the line ending at `lineEnd`.
    mutating func skipLiteral(lineEnd: Int, size: Int) {
        scanned = lineEnd + size
        lineStart = scanned
    }

    /// Scans for the end of the next line of the frame at the start of `buffer`.
    mutating func nextLine(_ buffer: UnsafeRawBufferPointer, maxLength: Int) -> Step {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return .needMoreBytes }
        // Inside an inline literal whose bytes have not all arrived.
        if scanned >= buffer.count { return .needMoreBytes }
        guard let lineFeed = findLineFeed(base, from: scanned, to: buffer.count) else {
            scanned = buffer.count
            return buffer.count > maxLength ? .tooLong : .needMoreBytes
        }
        let lineEnd = lineFeed + 1
        if lineEnd > maxLength { return .tooLong }
        let contentEnd =
            lineFeed > lineStart && base.load(fromByteOffset: lineFeed - 1, as: UInt8.self) == 0x0D
            ? lineFeed - 1 : lineFeed
        return .line(
            end: lineEnd, ending: IMAPLineScanner.literalAtEnd(base, lineStart: lineStart, contentEnd: contentEnd))
    }

    /// How a line ends: plainly, with a literal announcement, or with one too large to represent.
    enum LineEnding {
        case none
        case literal(IMAPLiteralHeader, braceOffset: Int)
        case tooLarge(isSynchronizing: Bool)
    }

    // literal = "{" number64 ["+"] "}" CRLF *CHAR8      (RFC 9051, RFC 7888)
    // literal8 = "~{" number64 ["+"] "}" CRLF *OCTET     (RFC 3516)
    /// Whether the line content `lineStart..<contentEnd` ends with a literal announcement. Sizes are
    /// read overflow-safely: more than 64 bits is `.tooLarge`, never a trap.
    static func literalAtEnd(_ base: UnsafeRawPointer, lineStart: Int, contentEnd: Int) -> LineEnding {
        var offset = contentEnd - 1
        guard offset > lineStart, base.load(fromByteOffset: offset, as: UInt8.self) == UInt8(ascii: "}") else {
            return .none
        }
        offset -= 1
        var isSynchronizing = true
        if base.load(fromByteOffset: offset, as: UInt8.self) == UInt8(ascii: "+") {
            isSynchronizing = false
            offset -= 1
        }
        let digitsEnd = offset + 1
        while offset >= lineStart, IMAPByteClass.isDigit(base.load(fromByteOffset: offset, as: UInt8.self)) {
            offset -= 1
        }
        let digitsStart = offset + 1
        guard digitsStart < digitsEnd, offset >= lineStart,
            base.load(fromByteOffset: offset, as: UInt8.self) == UInt8(ascii: "{")
        else { return .none }
        let braceOffset = offset
        let isBinary = offset > lineStart && base.load(fromByteOffset: offset - 1, as: UInt8.self) == UInt8(ascii: "~")
        var size: UInt64 = 0
        for index in digitsStart..<digitsEnd {
            let digit = UInt64(base.load(fromByteOffset: index, as: UInt8.self) - UInt8(ascii: "0"))
            let (times10, overflow1) = size.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(digit)
            if overflow1 || overflow2 {
                return .tooLarge(isSynchronizing: isSynchronizing)
            }
            size = sum
        }
        let header = IMAPLiteralHeader(size: size, isSynchronizing: isSynchronizing, isBinary: isBinary)
        return .literal(header, braceOffset: isBinary ? braceOffset - 1 : braceOffset)
    }
}

/// The offset of the first LF in `from..<to`, eight bytes at a time.
@inline(__always)
func findLineFeed(_ base: UnsafeRawPointer, from start: Int, to end: Int) -> Int? {
    var offset = start
    let ones: UInt64 = 0x0101_0101_0101_0101
    let highs: UInt64 = 0x8080_8080_8080_8080
    let lineFeeds: UInt64 = 0x0A0A_0A0A_0A0A_0A0A
    while offset + 8 <= end {
        let word = base.loadUnaligned(fromByteOffset: offset, as: UInt64.self) ^ lineFeeds
        // A zero byte in `word` is a LF in the input (the classic has-zero-byte test).
        if (word &- ones) & ~word & highs != 0 { break }
        offset += 8
    }
    while offset < end {
        if base.load(fromByteOffset: offset, as: UInt8.self) == 0x0A { return offset }
        offset += 1
    }
    return nil
}
