// EncodedWords: RFC 2047 encoded words in header values, decoded to UTF-8 for SEARCH.

/// Decodes header values for searching: unfolds, decodes `=?charset?B|Q?text?=` words and
/// converts everything to UTF-8.
///
///     encoded-word = "=?" charset ["*" language] "?" encoding "?" encoded-text "?="   ; RFC 2047 2, RFC 2231 5
///
/// White space between two encoded words is dropped (RFC 2047 section 6.2). A malformed encoded
/// word stays as written. Raw 8-bit text outside encoded words is read as UTF-8 (U+FFFD where it
/// is not).
public enum MIMEEncodedWords {
    /// Appends the decoded UTF-8 form of `value` to `output`.
    public static func decode(_ value: UnsafeRawBufferPointer, into output: inout [UInt8]) {
        var plain = MIMECharsetDecoder(charsetName: "utf-8".utf8)
        var index = 0
        var pendingBlanks = 0..<0
        var afterEncodedWord = false
        var scratch: [UInt8] = []
        while index < value.count {
            let byte = value[index]
            if byte == MIMEBytes.cr || byte == MIMEBytes.lf {
                index += 1
                continue
            }
            if byte == MIMEBytes.space || byte == MIMEBytes.tab {
                let start = index
                while index < value.count && MIMEBytes.isWhitespace(value[index]) { index += 1 }
                pendingBlanks = start..<index
                continue
            }
            if byte == UInt8(ascii: "="), let word = EncodedWord(value, at: index) {
                plain.finish(into: &output)  // a cut UTF-8 sequence before the word stays before it
                if !afterEncodedWord { emitBlanks(value, pendingBlanks, &output) }
                pendingBlanks = 0..<0
                scratch.removeAll(keepingCapacity: true)
                word.decodeText(value, into: &scratch)
                var decoder = MIMECharsetDecoder(charsetName: value[word.charset])
                scratch.withUnsafeBytes { decoder.decode($0, into: &output) }
                decoder.finish(into: &output)
                afterEncodedWord = true
                index = word.end
                continue
            }
            emitBlanks(value, pendingBlanks, &output)
            pendingBlanks = 0..<0
            afterEncodedWord = false
            plain.decode(UnsafeRawBufferPointer(rebasing: value[index..<index + 1]), into: &output)
            index += 1
        }
        emitBlanks(value, pendingBlanks, &output)
        plain.finish(into: &output)
    }

    /// Whether ``decode(_:into:)`` gives `value` back byte for byte, so a matcher may read it as it
    /// stands: printable ASCII and tabs only (the UTF-8 decoder passes them, blanks are kept where
    /// they are), no CR or LF (which unfolding drops) and no `=?` (which may start an encoded word).
    /// Most subjects are like this, and skipping the decoders is most of SEARCH SUBJECT's work.
    public static func decodesToItself(_ value: UnsafeRawBufferPointer) -> Bool {
        var previous: UInt8 = 0
        for byte in value {
            guard (byte >= MIMEBytes.space && byte < 0x7F) || byte == MIMEBytes.tab else { return false }
            if byte == UInt8(ascii: "?") && previous == UInt8(ascii: "=") { return false }
            previous = byte
        }
        return true
    }

    /// Decodes a whole value to a new array.
    public static func decode(_ value: [UInt8]) -> [UInt8] {
        var output: [UInt8] = []
        value.withUnsafeBytes { decode($0, into: &output) }
        return output
    }

    private static func emitBlanks(_ value: UnsafeRawBufferPointer, _ blanks: Range<Int>, _ output: inout [UInt8]) {
        for index in blanks where value[index] != MIMEBytes.cr && value[index] != MIMEBytes.lf {
            output.append(value[index])
        }
    }
}

/// One well-formed encoded word found in a value.
private struct EncodedWord {
    var charset: Range<Int>
    var isBase64: Bool
    var text: Range<Int>
    /// Just past the closing `?=`.
    var end: Int

    /// Recognises an encoded word starting at `start` (which holds `=`), or fails.
    init?(_ value: UnsafeRawBufferPointer, at start: Int) {
        var index = start + 1
        guard index < value.count, value[index] == UInt8(ascii: "?") else { return nil }
        index += 1
        let charsetStart = index
        while index < value.count, value[index] != UInt8(ascii: "?"), !MIMEBytes.isWhitespace(value[index]) {
            index += 1
        }
        guard index + 2 < value.count, value[index] == UInt8(ascii: "?"), index > charsetStart,
            value[index + 2] == UInt8(ascii: "?")
        else { return nil }
        var charsetEnd = index
        // RFC 2231 section 5: charset*language.
        if let star = value[charsetStart..<index].firstIndex(of: UInt8(ascii: "*")) { charsetEnd = star }
        switch value[index + 1] {
        case UInt8(ascii: "B"), UInt8(ascii: "b"): isBase64 = true
        case UInt8(ascii: "Q"), UInt8(ascii: "q"): isBase64 = false
        default: return nil
        }
        index += 3
        let textStart = index
        while index + 1 < value.count {
            let byte = value[index]
            if MIMEBytes.isWhitespace(byte) { return nil }
            if byte == UInt8(ascii: "?") {
                guard value[index + 1] == UInt8(ascii: "=") else { return nil }
                charset = charsetStart..<charsetEnd
                text = textStart..<index
                end = index + 2
                return
            }
            index += 1
        }
        return nil
    }

    /// The encoded text's bytes, still in the word's charset.
    func decodeText(_ value: UnsafeRawBufferPointer, into output: inout [UInt8]) {
        let bytes = UnsafeRawBufferPointer(rebasing: value[text])
        if isBase64 {
            var decoder = Base64Decoder()
            decoder.decode(bytes, into: &output)
            decoder.finish(into: &output)
            return
        }
        // Q: like quoted-printable, with "_" for space (RFC 2047 section 4.2).
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "_") {
                output.append(MIMEBytes.space)
            } else if byte == UInt8(ascii: "="), index + 2 < bytes.count,
                let high = MIMEBytes.hexValue(bytes[index + 1]), let low = MIMEBytes.hexValue(bytes[index + 2])
            {
                output.append(high << 4 | low)
                index += 2
            } else {
                output.append(byte)
            }
            index += 1
        }
    }
}
