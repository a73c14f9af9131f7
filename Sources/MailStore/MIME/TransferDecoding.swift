// TransferDecoding: Content-Transfer-Encoding (RFC 2045 section 6) decoders that run over chunks,
// for BINARY[section] and BINARY.SIZE (RFC 3516) and for searching encoded text.

/// A part's Content-Transfer-Encoding, as far as decoding is concerned.
public enum MIMETransferEncoding: Sendable, Equatable {
    /// 7bit, 8bit, binary or none: the body bytes are the content.
    case identity
    case base64
    case quotedPrintable
    /// Anything else (`x-uuencode` ...): RFC 3516 section 4.3 has the server answer
    /// `NO [UNKNOWN-CTE]` to BINARY.
    case unknown

    /// Classifies an encoding name, case-insensitively and ignoring surrounding blanks.
    public init<C: Collection>(name: C?) where C.Element == UInt8 {
        guard let name else {
            self = .identity
            return
        }
        if MIMEBytes.equalsLowercase(name, "base64") {
            self = .base64
        } else if MIMEBytes.equalsLowercase(name, "quoted-printable") {
            self = .quotedPrintable
        } else if name.isEmpty || MIMEBytes.equalsLowercase(name, "7bit") || MIMEBytes.equalsLowercase(name, "8bit")
            || MIMEBytes.equalsLowercase(name, "binary")
        {
            self = .identity
        } else {
            self = .unknown
        }
    }

    /// The encoding of `part` in `structure`.
    public init(structure: MessageStructure, part: Int) {
        self.init(name: structure.parts[part].encoding.map { structure.bytes($0) })
    }
}

/// Decodes one transfer encoding chunk by chunk: feed any split of the body, get the same bytes.
public struct MIMETransferDecoder {
    private enum State {
        case identity
        case base64(Base64Decoder)
        case quotedPrintable(QuotedPrintableDecoder)
    }

    private var state: State

    /// `.unknown` decodes as identity; callers that must refuse it check the encoding first.
    public init(_ encoding: MIMETransferEncoding) {
        switch encoding {
        case .base64: state = .base64(Base64Decoder())
        case .quotedPrintable: state = .quotedPrintable(QuotedPrintableDecoder())
        case .identity, .unknown: state = .identity
        }
    }

    public mutating func decode(_ chunk: UnsafeRawBufferPointer, into output: inout [UInt8]) {
        switch state {
        case .identity:
            output.append(contentsOf: chunk)
        case .base64(var decoder):
            decoder.decode(chunk, into: &output)
            state = .base64(decoder)
        case .quotedPrintable(var decoder):
            decoder.decode(chunk, into: &output)
            state = .quotedPrintable(decoder)
        }
    }

    /// Flushes what an unfinished input left pending.
    public mutating func finish(into output: inout [UInt8]) {
        switch state {
        case .identity:
            break
        case .base64(var decoder):
            decoder.finish(into: &output)
            state = .base64(decoder)
        case .quotedPrintable(var decoder):
            decoder.finish(into: &output)
            state = .quotedPrintable(decoder)
        }
    }
}

/// Base64 (RFC 2045 section 6.8), tolerant as that section asks: characters outside the alphabet
/// (line breaks, blanks, garbage) are ignored; `=` ends a quantum early, and decoding goes on after
/// it (concatenated base64 blocks exist in the wild); a final unfinished quantum yields the whole
/// bytes it holds.
public struct Base64Decoder: Sendable {
    private var bits: UInt32 = 0
    private var count = 0

    public init() {}

    public mutating func decode(_ chunk: UnsafeRawBufferPointer, into output: inout [UInt8]) {
        for byte in chunk {
            let value = Self.table[Int(byte)]
            if value < 64 {
                bits = bits << 6 | UInt32(value)
                count += 1
                if count == 4 {
                    output.append(UInt8(truncatingIfNeeded: bits >> 16))
                    output.append(UInt8(truncatingIfNeeded: bits >> 8))
                    output.append(UInt8(truncatingIfNeeded: bits))
                    bits = 0
                    count = 0
                }
            } else if byte == UInt8(ascii: "=") {
                flushPartial(into: &output)
            }
        }
    }

    public mutating func finish(into output: inout [UInt8]) {
        flushPartial(into: &output)
    }

    /// Two characters carry one byte, three carry two; a lone character carries none.
    private mutating func flushPartial(into output: inout [UInt8]) {
        switch count {
        case 2:
            output.append(UInt8(truncatingIfNeeded: bits >> 4))
        case 3:
            output.append(UInt8(truncatingIfNeeded: bits >> 10))
            output.append(UInt8(truncatingIfNeeded: bits >> 2))
        default:
            break
        }
        bits = 0
        count = 0
    }

    /// Alphabet value of each byte, 255 outside the alphabet.
    private static let table: [UInt8] = {
        var table = [UInt8](repeating: 255, count: 256)
        let alphabet: StaticString = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        for index in 0..<64 { table[Int(alphabet.utf8Start[index])] = UInt8(index) }
        return table
    }()
}

/// Quoted-printable (RFC 2045 section 6.7), tolerant as its note on robustness asks: `=XY` with a
/// non-hex digit is kept as it stands, lowercase hex is accepted, blanks at the end of a line are
/// dropped (transport padding), `=` followed by blanks and a line break is a soft line break, and
/// bare LF is a line break.
public struct QuotedPrintableDecoder: Sendable {
    private enum State: Sendable {
        case text
        /// After `=`.
        case equals
        /// After `=` and one hex digit.
        case equalsHex(UInt8)
        /// After `=` and blanks (a soft line break with transport padding, or junk).
        case equalsBlanks
        /// After a soft line break's CR: a following LF belongs to it.
        case softBreakCR
    }

    private var state = State.text
    /// Blanks not yet known to be inside a line (kept) or at its end (dropped).
    private var blanks: [UInt8] = []

    public init() {}

    public mutating func decode(_ chunk: UnsafeRawBufferPointer, into output: inout [UInt8]) {
        for byte in chunk { decodeByte(byte, into: &output) }
    }

    public mutating func finish(into output: inout [UInt8]) {
        switch state {
        case .equals, .equalsBlanks:
            output.append(UInt8(ascii: "="))
        case .equalsHex(let digit):
            output.append(UInt8(ascii: "="))
            output.append(digit)
        case .text, .softBreakCR:
            break
        }
        // Blanks at the very end are line-end padding too.
        blanks.removeAll()
        state = .text
    }

    private mutating func decodeByte(_ byte: UInt8, into output: inout [UInt8]) {
        switch state {
        case .text:
            switch byte {
            case UInt8(ascii: "="):
                flushBlanks(into: &output)
                state = .equals
            case MIMEBytes.space, MIMEBytes.tab:
                // A line is at most 998 bytes (RFC 5322); longer runs cannot be padding worth keeping apart.
                if blanks.count >= 998 { flushBlanks(into: &output) }
                blanks.append(byte)
            case MIMEBytes.cr, MIMEBytes.lf:
                blanks.removeAll(keepingCapacity: true)
                output.append(byte)
            default:
                flushBlanks(into: &output)
                output.append(byte)
            }
        case .equals:
            if MIMEBytes.hexValue(byte) != nil {
                state = .equalsHex(byte)
            } else if byte == MIMEBytes.space || byte == MIMEBytes.tab {
                state = .equalsBlanks
                blanks.append(byte)
            } else {
                endSoftBreakOrLiteral(byte, into: &output)
            }
        case .equalsHex(let first):
            if let high = MIMEBytes.hexValue(first), let low = MIMEBytes.hexValue(byte) {
                output.append(high << 4 | low)
                state = .text
            } else {
                output.append(UInt8(ascii: "="))
                output.append(first)
                state = .text
                decodeByte(byte, into: &output)
            }
        case .equalsBlanks:
            if byte == MIMEBytes.space || byte == MIMEBytes.tab {
                if blanks.count >= 998 {
                    output.append(UInt8(ascii: "="))
                    flushBlanks(into: &output)
                    state = .text
                }
                blanks.append(byte)
            } else if byte == MIMEBytes.cr || byte == MIMEBytes.lf {
                blanks.removeAll(keepingCapacity: true)
                endSoftBreakOrLiteral(byte, into: &output)
            } else {
                output.append(UInt8(ascii: "="))
                flushBlanks(into: &output)
                state = .text
                decodeByte(byte, into: &output)
            }
        case .softBreakCR:
            state = .text
            if byte != MIMEBytes.lf { decodeByte(byte, into: &output) }
        }
    }

    /// After `=` (and blanks): a line break makes a soft line break; anything else keeps the `=`.
    private mutating func endSoftBreakOrLiteral(_ byte: UInt8, into output: inout [UInt8]) {
        switch byte {
        case MIMEBytes.cr:
            state = .softBreakCR
        case MIMEBytes.lf:
            state = .text
        default:
            output.append(UInt8(ascii: "="))
            state = .text
            decodeByte(byte, into: &output)
        }
    }

    private mutating func flushBlanks(into output: inout [UInt8]) {
        if !blanks.isEmpty {
            output.append(contentsOf: blanks)
            blanks.removeAll(keepingCapacity: true)
        }
    }
}

// MARK: - BINARY and BINARY.SIZE

extension MIMETransferDecoder {
    /// Decodes `input` in chunks of `chunkSize` bytes, calling `body` with each decoded piece, so a
    /// large part never needs a second whole-size buffer. `body` returns false to stop early.
    public static func decode(_ input: UnsafeRawBufferPointer, encoding: MIMETransferEncoding, chunkSize: Int = 16_384,
                              _ body: (ArraySlice<UInt8>) -> Bool)
    {
        var decoder = MIMETransferDecoder(encoding)
        var output: [UInt8] = []
        output.reserveCapacity(min(chunkSize, input.count))
        var start = 0
        while start < input.count {
            let end = min(start + max(chunkSize, 1), input.count)
            output.removeAll(keepingCapacity: true)
            decoder.decode(UnsafeRawBufferPointer(rebasing: input[start..<end]), into: &output)
            if !output.isEmpty && !body(output[...]) { return }
            start = end
        }
        output.removeAll(keepingCapacity: true)
        decoder.finish(into: &output)
        if !output.isEmpty { _ = body(output[...]) }
    }
}

extension MessageStructure {
    /// BINARY.SIZE[part] (RFC 3516 section 4.2): the size of the part's body once its transfer
    /// encoding is undone. Nil when there is no such part, or its encoding is unknown (the server
    /// answers `NO [UNKNOWN-CTE]`). Reads only the part's body.
    public func decodedBodySize(ofPart path: [Int], in message: UnsafeRawBufferPointer) -> Int? {
        guard let node = resolvePart(path), parts[node].bodyEnd <= message.count else { return nil }
        let encoding = MIMETransferEncoding(structure: self, part: node)
        guard encoding != .unknown else { return nil }
        if encoding == .identity { return parts[node].bodySize }
        var size = 0
        MIMETransferDecoder.decode(UnsafeRawBufferPointer(rebasing: message[parts[node].bodyRange]),
                                   encoding: encoding) {
            size += $0.count
            return true
        }
        return size
    }

    /// BINARY[part]<partial> (RFC 3516 section 4.1): the decoded body; nil as ``decodedBodySize(ofPart:in:)``.
    public func decodedBody(ofPart path: [Int], partial: MIMEPartial? = nil,
                            in message: UnsafeRawBufferPointer) -> [UInt8]?
    {
        guard let node = resolvePart(path), parts[node].bodyEnd <= message.count else { return nil }
        let encoding = MIMETransferEncoding(structure: self, part: node)
        guard encoding != .unknown else { return nil }
        var decoded: [UInt8] = []
        MIMETransferDecoder.decode(UnsafeRawBufferPointer(rebasing: message[parts[node].bodyRange]),
                                   encoding: encoding) {
            decoded.append(contentsOf: $0)
            return true
        }
        guard let partial else { return decoded }
        return Array(decoded[partial.clip(decoded.indices)])
    }
}
