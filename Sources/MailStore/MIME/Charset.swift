// Charset: converting text in a MIME charset to UTF-8, chunk by chunk.

import Glibc

/// Converts bytes in a named charset to UTF-8, fed in chunks of any size (a multi-byte character
/// may straddle chunks).
///
/// Built in, without iconv: utf-8, us-ascii, iso-8859-1, iso-8859-15 and windows-1252. Other names
/// go to glibc's iconv; a name iconv does not know is treated as UTF-8. Bytes that are not valid in
/// their charset become U+FFFD, never an error. Two deliberate leniencies, as browsers do:
/// us-ascii text with 8-bit bytes is read as UTF-8, and iso-8859-1 bytes 0x80-0x9F (C1 controls,
/// never meant in mail) are read as windows-1252.
public struct MIMECharsetDecoder {
    enum Kind {
        case utf8
        case latin1
        case latin9
        case windows1252
        case iconv(IconvConverter)
    }

    let kind: Kind
    /// UTF-8 validation state: the bytes of an unfinished sequence and how many more it needs.
    private var pending: [UInt8] = []
    private var needed = 0

    /// - Parameter charsetName: the charset as written in the message (`"ISO-8859-1"`,
    ///   `"utf-8"`); case does not matter. Empty means us-ascii.
    public init<C: Collection>(charsetName: C) where C.Element == UInt8 {
        kind = Self.kind(for: charsetName)
    }

    /// Charsets converted without iconv, by lowercase name.
    private enum BuiltIn: Sendable {
        case utf8, latin1, latin9, windows1252
    }

    private static let builtInNames: [(StaticString, BuiltIn)] = [
        ("utf-8", .utf8), ("utf8", .utf8), ("us-ascii", .utf8), ("ascii", .utf8), ("", .utf8),
        ("ansi_x3.4-1968", .utf8), ("iso-8859-1", .latin1), ("iso8859-1", .latin1), ("iso_8859-1", .latin1),
        ("latin1", .latin1), ("l1", .latin1), ("iso-8859-15", .latin9), ("iso8859-15", .latin9),
        ("latin9", .latin9), ("windows-1252", .windows1252), ("cp1252", .windows1252),
    ]

    static func kind<C: Collection>(for name: C) -> Kind where C.Element == UInt8 {
        for (known, builtIn) in builtInNames where MIMEBytes.equalsLowercase(name, known) {
            switch builtIn {
            case .utf8: return .utf8
            case .latin1: return .latin1
            case .latin9: return .latin9
            case .windows1252: return .windows1252
            }
        }
        if let converter = IconvConverter(charsetName: name) { return .iconv(converter) }
        return .utf8
    }

    /// Appends the UTF-8 form of `chunk` to `output`; an unfinished character waits for the next chunk.
    public mutating func decode(_ chunk: UnsafeRawBufferPointer, into output: inout [UInt8]) {
        switch kind {
        case .utf8:
            var index = 0
            while index < chunk.count {
                // A run of ASCII outside an unfinished sequence passes whole: most text is ASCII.
                if needed == 0 && chunk[index] < 0x80 {
                    let start = index
                    repeat { index += 1 } while index < chunk.count && chunk[index] < 0x80
                    output.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk[start..<index]))
                    continue
                }
                validateUTF8(chunk[index], into: &output)
                index += 1
            }
        case .latin1:
            for byte in chunk {
                if byte >= 0x80 && byte < 0xA0 {
                    Self.appendScalar(Self.windows1252High[Int(byte - 0x80)], to: &output)
                } else {
                    Self.appendScalar(UInt32(byte), to: &output)
                }
            }
        case .latin9:
            for byte in chunk { Self.appendScalar(Self.latin9Scalar(byte), to: &output) }
        case .windows1252:
            for byte in chunk {
                let scalar = byte >= 0x80 && byte < 0xA0 ? Self.windows1252High[Int(byte - 0x80)] : UInt32(byte)
                Self.appendScalar(scalar, to: &output)
            }
        case .iconv(let converter):
            converter.convert(chunk, into: &output)
        }
    }

    /// Ends the text: an unfinished character becomes U+FFFD.
    public mutating func finish(into output: inout [UInt8]) {
        switch kind {
        case .utf8:
            if needed > 0 || !pending.isEmpty {
                Self.appendScalar(0xFFFD, to: &output)
                pending.removeAll(keepingCapacity: true)
                needed = 0
            }
        case .iconv(let converter):
            converter.finish(into: &output)
        default:
            break
        }
    }

    /// Converts a whole string at once.
    public static func utf8<C: Collection>(_ bytes: UnsafeRawBufferPointer, charsetName: C) -> [UInt8]
    where C.Element == UInt8 {
        var decoder = MIMECharsetDecoder(charsetName: charsetName)
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count)
        decoder.decode(bytes, into: &output)
        decoder.finish(into: &output)
        return output
    }

    // MARK: - UTF-8 validation

    private mutating func validateUTF8(_ byte: UInt8, into output: inout [UInt8]) {
        if needed > 0 {
            let second = pending.count == 1
            let lead = pending.first ?? 0
            var valid = byte & 0xC0 == 0x80
            if valid && second {
                // Overlong, surrogate and beyond-U+10FFFF forms (RFC 3629 section 4).
                switch lead {
                case 0xE0: valid = byte >= 0xA0
                case 0xED: valid = byte < 0xA0
                case 0xF0: valid = byte >= 0x90
                case 0xF4: valid = byte < 0x90
                default: break
                }
            }
            if valid {
                pending.append(byte)
                needed -= 1
                if needed == 0 {
                    output.append(contentsOf: pending)
                    pending.removeAll(keepingCapacity: true)
                }
                return
            }
            Self.appendScalar(0xFFFD, to: &output)
            pending.removeAll(keepingCapacity: true)
            needed = 0
        }
        switch byte {
        case 0..<0x80:
            output.append(byte)
        case 0xC2...0xDF:
            pending.append(byte)
            needed = 1
        case 0xE0...0xEF:
            pending.append(byte)
            needed = 2
        case 0xF0...0xF4:
            pending.append(byte)
            needed = 3
        default:
            Self.appendScalar(0xFFFD, to: &output)
        }
    }

    // MARK: - Single-byte tables

    /// windows-1252 0x80-0x9F; U+FFFD where the code page leaves a hole.
    static let windows1252High: [UInt32] = [
        0x20AC, 0xFFFD, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
        0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0xFFFD, 0x017D, 0xFFFD,
        0xFFFD, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
        0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0xFFFD, 0x017E, 0x0178,
    ]

    /// iso-8859-15 differs from iso-8859-1 in eight places (the euro sign and seven letters).
    static func latin9Scalar(_ byte: UInt8) -> UInt32 {
        switch byte {
        case 0xA4: return 0x20AC
        case 0xA6: return 0x0160
        case 0xA8: return 0x0161
        case 0xB4: return 0x017D
        case 0xB8: return 0x017E
        case 0xBC: return 0x0152
        case 0xBD: return 0x0153
        case 0xBE: return 0x0178
        default: return UInt32(byte)
        }
    }

    /// Appends the UTF-8 encoding of a scalar below U+10000 or up to U+10FFFF.
    @inline(__always)
    static func appendScalar(_ scalar: UInt32, to output: inout [UInt8]) {
        switch scalar {
        case 0..<0x80:
            output.append(UInt8(scalar))
        case 0x80..<0x800:
            output.append(UInt8(0xC0 | scalar >> 6))
            output.append(UInt8(0x80 | scalar & 0x3F))
        case 0x800..<0x10000:
            output.append(UInt8(0xE0 | scalar >> 12))
            output.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            output.append(UInt8(0x80 | scalar & 0x3F))
        default:
            output.append(UInt8(0xF0 | scalar >> 18 & 0x07))
            output.append(UInt8(0x80 | scalar >> 12 & 0x3F))
            output.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            output.append(UInt8(0x80 | scalar & 0x3F))
        }
    }
}

/// A glibc iconv conversion to UTF-8, closed when the last decoder using it goes away.
final class IconvConverter {
    private let handle: iconv_t
    /// Bytes of an unfinished multi-byte character carried to the next chunk.
    private var pending: [UInt8] = []

    init?<C: Collection>(charsetName: C) where C.Element == UInt8 {
        guard charsetName.count < 64 else { return nil }
        var name = Array(charsetName)
        name.append(0)
        let handle = name.withUnsafeBufferPointer { pointer in
            pointer.withMemoryRebound(to: CChar.self) { iconv_open("UTF-8", $0.baseAddress!) }
        }
        guard let handle, Int(bitPattern: handle) != -1 else { return nil }
        self.handle = handle
    }

    deinit { iconv_close(handle) }

    func convert(_ chunk: UnsafeRawBufferPointer, into output: inout [UInt8]) {
        if pending.isEmpty {
            let consumed = run(chunk, into: &output)
            pending.append(contentsOf: chunk[consumed...])
        } else {
            pending.append(contentsOf: chunk)
            let input = pending
            let consumed = input.withUnsafeBytes { run($0, into: &output) }
            pending.removeFirst(consumed)
        }
    }

    func finish(into output: inout [UInt8]) {
        if !pending.isEmpty {
            MIMECharsetDecoder.appendScalar(0xFFFD, to: &output)
            pending.removeAll()
        }
        _ = iconv(handle, nil, nil, nil, nil)
    }

    /// Converts as much of `input` as forms whole characters; returns how many bytes it used.
    private func run(_ input: UnsafeRawBufferPointer, into output: inout [UInt8]) -> Int {
        guard let start = input.baseAddress, input.count > 0 else { return 0 }
        var inPointer = UnsafeMutablePointer(mutating: start.assumingMemoryBound(to: CChar.self))
        var inLeft = input.count
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: 1024) { buffer in
            while inLeft > 0 {
                var outPointer: UnsafeMutablePointer<CChar>? = buffer.baseAddress!
                var outLeft = buffer.count
                var inOptional: UnsafeMutablePointer<CChar>? = inPointer
                let result = iconv(handle, &inOptional, &inLeft, &outPointer, &outLeft)
                let failure = result == -1 ? errno : 0
                inPointer = inOptional!
                let produced = buffer.count - outLeft
                output.append(contentsOf: UnsafeRawBufferPointer(start: buffer.baseAddress, count: produced))
                if result != -1 || failure == E2BIG { continue }
                if failure == EINVAL { break }  // unfinished character: wait for more bytes
                // EILSEQ (or anything else): replace one byte and go on.
                MIMECharsetDecoder.appendScalar(0xFFFD, to: &output)
                inPointer += 1
                inLeft -= 1
            }
            return input.count - inLeft
        }
    }
}
