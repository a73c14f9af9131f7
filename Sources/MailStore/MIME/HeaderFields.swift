// HeaderFields: walking RFC 5322 header fields over raw message bytes, with byte helpers shared by
// the MIME code.

import Glibc

/// Byte classes and comparisons used throughout the MIME layer (ASCII only, no allocation).
enum MIMEBytes {
    static let cr: UInt8 = 13
    static let lf: UInt8 = 10
    static let space: UInt8 = 32
    static let tab: UInt8 = 9

    static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == space || byte == tab || byte == cr || byte == lf
    }

    static func lowercased(_ byte: UInt8) -> UInt8 {
        byte &- 65 < 26 ? byte | 0x20 : byte
    }

    /// Case-insensitive ASCII equality of `bytes` and a lowercase literal.
    static func equalsLowercase<C: Collection>(_ bytes: C, _ lower: StaticString) -> Bool where C.Element == UInt8 {
        guard bytes.count == lower.utf8CodeUnitCount else { return false }
        let literal = lower.utf8Start
        var index = 0
        for byte in bytes {
            if lowercased(byte) != literal[index] { return false }
            index += 1
        }
        return true
    }

    /// Case-insensitive ASCII equality of two byte strings.
    static func equalsIgnoringCase<A: Collection, B: Collection>(_ left: A, _ right: B) -> Bool
    where A.Element == UInt8, B.Element == UInt8 {
        left.count == right.count && zip(left, right).allSatisfy { lowercased($0) == lowercased($1) }
    }

    /// Appends the inside of a quoted string: quoted-pairs unescaped, line breaks (folding) removed.
    static func unquote(_ bytes: Slice<UnsafeRawBufferPointer>, into output: inout [UInt8]) {
        var index = bytes.startIndex
        while index < bytes.endIndex {
            var byte = bytes[index]
            if byte == UInt8(ascii: "\\") && index + 1 < bytes.endIndex {
                index += 1
                byte = bytes[index]
            }
            if byte != cr && byte != lf { output.append(byte) }
            index += 1
        }
    }

    /// Offset of the first LF in `base[start..<end]`, or `end` (memchr: lines can be megabytes long).
    static func lineFeed(in base: UnsafeRawBufferPointer, from start: Int, to end: Int) -> Int {
        guard start < end, let address = base.baseAddress,
            let found = memchr(address + start, Int32(lf), end - start)
        else { return end }
        return address.distance(to: UnsafeRawPointer(found))
    }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 48...57: return byte - 48
        case 65...70: return byte - 55
        case 97...102: return byte - 87
        default: return nil
        }
    }
}

/// One header field found in message bytes. All positions are offsets in the scanned buffer.
struct HeaderField {
    /// The field name, trailing blanks before the colon removed.
    var name: Range<Int>
    /// The raw value: from after the colon (leading blanks skipped) to before the field's final
    /// line break; folded lines are still folded.
    var value: Range<Int>
    /// The whole field including its final line break (what HEADER.FIELDS returns).
    var field: Range<Int>
}

/// Iterates the header fields of a header block.
///
///     header-field = field-name ":" unstructured CRLF *(WSP unstructured CRLF)   ; RFC 5322 3.2.2, 3.6.8
///
/// Lenient as real mail needs: bare LF ends a line; a line without a colon (an mbox `From ` line,
/// garbage) is skipped; a continuation line before any field is skipped. Iteration stops at the
/// empty line or at `end`.
struct HeaderFieldIterator: IteratorProtocol {
    let base: UnsafeRawBufferPointer
    var position: Int
    let end: Int

    init(_ base: UnsafeRawBufferPointer, range: Range<Int>) {
        self.base = base
        self.position = range.lowerBound
        self.end = min(range.upperBound, base.count)
    }

    /// Offset just past the line starting at `start` (after its LF), or `end`.
    @inline(__always)
    private func lineEnd(from start: Int) -> Int {
        let lineFeed = MIMEBytes.lineFeed(in: base, from: start, to: end)
        return lineFeed < end ? lineFeed + 1 : end
    }

    mutating func next() -> HeaderField? {
        while position < end {
            let lineStart = position
            let first = base[lineStart]
            if first == MIMEBytes.lf || (first == MIMEBytes.cr && lineStart + 1 < end
                && base[lineStart + 1] == MIMEBytes.lf)
            {
                position = end
                return nil
            }
            var next = lineEnd(from: lineStart)
            if first == MIMEBytes.space || first == MIMEBytes.tab {
                position = next
                continue
            }
            var colon = lineStart
            while colon < next && base[colon] != UInt8(ascii: ":") && base[colon] != MIMEBytes.lf { colon += 1 }
            guard colon < next, base[colon] == UInt8(ascii: ":") else {
                position = next
                continue
            }
            // Continuation lines start with a blank.
            while next < end && (base[next] == MIMEBytes.space || base[next] == MIMEBytes.tab) {
                next = lineEnd(from: next)
            }
            var nameEnd = colon
            while nameEnd > lineStart && (base[nameEnd - 1] == MIMEBytes.space || base[nameEnd - 1] == MIMEBytes.tab) {
                nameEnd -= 1
            }
            var valueStart = colon + 1
            while valueStart < next && (base[valueStart] == MIMEBytes.space || base[valueStart] == MIMEBytes.tab) {
                valueStart += 1
            }
            var valueEnd = next
            if valueEnd > valueStart && base[valueEnd - 1] == MIMEBytes.lf { valueEnd -= 1 }
            if valueEnd > valueStart && base[valueEnd - 1] == MIMEBytes.cr { valueEnd -= 1 }
            position = next
            return HeaderField(name: lineStart..<nameEnd, value: valueStart..<max(valueStart, valueEnd),
                               field: lineStart..<next)
        }
        return nil
    }
}

extension UnsafeRawBufferPointer {
    /// Case-insensitive ASCII comparison of the bytes in `range` with a lowercase literal.
    func equalsLowercase(_ range: Range<Int>, _ lower: StaticString) -> Bool {
        MIMEBytes.equalsLowercase(self[range], lower)
    }
}
