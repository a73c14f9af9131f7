// TextMatcher: case-insensitive substring search over UTF-8 text fed in chunks, for SEARCH BODY,
// TEXT and header keys (RFC 3501 section 6.4.4, RFC 9051 section 6.4.4).

/// Finds a needle in UTF-8 text, ignoring case, over any split of the text into chunks (the
/// needle may straddle chunk boundaries).
///
/// Folding is simple, one code point to one, and covers: ASCII A-Z; Latin-1 letters U+00C0-U+00DE
/// (not U+00D7); Latin Extended-A U+0100-U+017F (case pairs, U+0130 to i, U+0178 to U+00FF,
/// U+017F long s to s); Greek U+0391-U+03A9 and Cyrillic U+0400-U+042F. Other scripts match
/// exactly; ß does not match "ss" and accents are not stripped. Bytes that are not valid UTF-8
/// pass through unchanged. The search is Knuth-Morris-Pratt over folded UTF-8, so each text byte
/// costs constant time and nothing is allocated after `init`.
public struct MIMETextMatcher: Sendable {
    private let needle: [UInt8]
    /// KMP failure function over `needle`.
    private let failure: [Int]
    private var matched = 0
    private var folder = CaseFolder()
    /// Set once the needle was seen; stays set until ``reset()``.
    public private(set) var found: Bool

    /// - Parameter needle: the search string in UTF-8. An empty needle matches any text.
    public init<C: Collection>(needle: C) where C.Element == UInt8 {
        // The needle is folded in place when its bytes are contiguous (a String's are), into one
        // allocation (folding never lengthens UTF-8).
        var folded: [UInt8] = []
        folded.reserveCapacity(needle.count)
        var folder = CaseFolder()
        let foldedInPlace: Void? = needle.withContiguousStorageIfAvailable { bytes in
            folder.fold(UnsafeRawBufferPointer(bytes)) { folded.append($0) }
        }
        if foldedInPlace == nil { Array(needle).withUnsafeBytes { folder.fold($0) { folded.append($0) } } }
        folder.flush { folded.append($0) }
        self.needle = folded
        var failure = [Int](repeating: 0, count: max(folded.count, 1))
        var length = 0
        var index = 1
        while index < folded.count {
            if folded[index] == folded[length] {
                length += 1
                failure[index] = length
                index += 1
            } else if length > 0 {
                length = failure[length - 1]
            } else {
                failure[index] = 0
                index += 1
            }
        }
        self.failure = failure
        found = folded.isEmpty
    }

    /// Starts over (between message parts, so a match cannot span two parts).
    public mutating func reset() {
        matched = 0
        folder = CaseFolder()
        found = needle.isEmpty
    }

    /// Feeds the next chunk of text; returns ``found``.
    @discardableResult
    public mutating func feed(_ chunk: UnsafeRawBufferPointer) -> Bool {
        guard !found else { return true }
        var folder = folder
        folder.fold(chunk) { step($0) }
        self.folder = folder
        return found
    }

    /// ``feed(_:)`` for a chunk of ASCII only, which needs no UTF-8 decoding: only A-Z fold. Most
    /// header values SEARCH looks at are ASCII (``MIMEEncodedWords/decodesToItself(_:)``).
    @discardableResult
    mutating func feedASCII(_ chunk: UnsafeRawBufferPointer) -> Bool {
        assert(chunk.allSatisfy { $0 < 0x80 }, "feedASCII is for ASCII only")
        // After a cut UTF-8 sequence the general path flushes it first.
        guard !folder.isPending else { return feed(chunk) }
        for byte in chunk where !found {
            step(MIMEBytes.lowercased(byte))
        }
        return found
    }

    /// Ends the text (an unfinished UTF-8 sequence is matched as raw bytes); returns ``found``.
    @discardableResult
    public mutating func finish() -> Bool {
        var folder = folder
        folder.flush { step($0) }
        self.folder = folder
        return found
    }

    private mutating func step(_ byte: UInt8) {
        guard !found else { return }
        while matched > 0 && needle[matched] != byte { matched = failure[matched - 1] }
        if needle[matched] == byte { matched += 1 }
        if matched == needle.count { found = true }
    }
}

/// Decodes UTF-8 across chunks, folds each code point and emits its UTF-8 bytes.
struct CaseFolder: Sendable {
    /// An unfinished UTF-8 sequence: its value so far, its bytes (at most 3) and how many more it needs.
    private var pending: UInt32 = 0
    private var pendingBytes: (UInt8, UInt8, UInt8) = (0, 0, 0)
    private var pendingCount = 0
    private var needed = 0

    /// Whether an unfinished sequence waits for more bytes.
    var isPending: Bool { pendingCount > 0 }

    // MARK: - Folding

    mutating func fold(_ chunk: UnsafeRawBufferPointer, _ emit: (UInt8) -> Void) {
        for byte in chunk {
            if needed > 0 {
                if byte & 0xC0 == 0x80 {
                    remember(byte)
                    pending = pending << 6 | UInt32(byte & 0x3F)
                    needed -= 1
                    if needed == 0 {
                        Self.emitScalar(Self.fold(pending), emit)
                        pendingCount = 0
                    }
                    continue
                }
                flush(emit)
            }
            switch byte {
            case 0..<0x80:
                emit(byte < 0x5B && byte > 0x40 ? byte | 0x20 : byte)
            case 0xC2...0xDF:
                (pending, needed) = (UInt32(byte & 0x1F), 1)
                remember(byte)
            case 0xE0...0xEF:
                (pending, needed) = (UInt32(byte & 0x0F), 2)
                remember(byte)
            case 0xF0...0xF4:
                (pending, needed) = (UInt32(byte & 0x07), 3)
                remember(byte)
            default:
                emit(byte)
            }
        }
    }

    private mutating func remember(_ byte: UInt8) {
        switch pendingCount {
        case 0: pendingBytes.0 = byte
        case 1: pendingBytes.1 = byte
        default: pendingBytes.2 = byte
        }
        pendingCount += 1
    }

    /// An unfinished sequence goes out as its raw bytes.
    mutating func flush(_ emit: (UInt8) -> Void) {
        if pendingCount > 0 { emit(pendingBytes.0) }
        if pendingCount > 1 { emit(pendingBytes.1) }
        if pendingCount > 2 { emit(pendingBytes.2) }
        pendingCount = 0
        needed = 0
    }

    private static func emitScalar(_ scalar: UInt32, _ emit: (UInt8) -> Void) {
        switch scalar {
        case 0..<0x80:
            emit(UInt8(scalar))
        case 0x80..<0x800:
            emit(UInt8(0xC0 | scalar >> 6))
            emit(UInt8(0x80 | scalar & 0x3F))
        case 0x800..<0x10000:
            emit(UInt8(0xE0 | scalar >> 12))
            emit(UInt8(0x80 | scalar >> 6 & 0x3F))
            emit(UInt8(0x80 | scalar & 0x3F))
        default:
            emit(UInt8(0xF0 | scalar >> 18 & 0x07))
            emit(UInt8(0x80 | scalar >> 12 & 0x3F))
            emit(UInt8(0x80 | scalar >> 6 & 0x3F))
            emit(UInt8(0x80 | scalar & 0x3F))
        }
    }

    /// Simple lowercase folding of one code point (see the type's documentation for the ranges).
    static func fold(_ scalar: UInt32) -> UInt32 {
        switch scalar {
        case 0x41...0x5A, 0xC0...0xD6, 0xD8...0xDE, 0x391...0x3A1, 0x3A3...0x3A9, 0x410...0x42F:
            return scalar + 0x20
        case 0x400...0x40F:
            return scalar + 0x50
        case 0x130:
            return 0x69
        case 0x178:
            return 0xFF
        case 0x17F:
            return 0x73
        case 0x100...0x12F, 0x132...0x137, 0x14A...0x177:
            return scalar | 1
        case 0x139...0x148, 0x179...0x17E:
            return scalar & 1 == 1 ? scalar + 1 : scalar
        default:
            return scalar
        }
    }
}
