// IMAPProtocol: mailbox names, in modified UTF-7 (IMAP4rev1) or UTF-8 (IMAP4rev2).

/// A mailbox name as sent (RFC 9051 section 5.1). `INBOX` is case-insensitive; other names are
/// compared byte for byte. In IMAP4rev1 non-ASCII names travel in modified UTF-7 (RFC 3501 section
/// 5.1.3); once UTF8=ACCEPT or IMAP4rev2 is enabled they travel as UTF-8 (RFC 9051 section 5.1).
public struct IMAPMailboxName: Equatable, CustomStringConvertible {
    /// The name as it was on the wire.
    public let raw: IMAPString

    public init(_ raw: IMAPString) { self.raw = raw }
    public init(_ text: StaticString) { self.init(IMAPString(text)) }

    /// Whether this is INBOX (any case).
    public var isInbox: Bool { raw.equalsCaseInsensitive("INBOX") }

    public static func == (lhs: IMAPMailboxName, rhs: IMAPMailboxName) -> Bool {
        if lhs.isInbox || rhs.isInbox { return lhs.isInbox == rhs.isInbox }
        return lhs.raw == rhs.raw
    }

    public var description: String { raw.string }

    /// The name as Unicode: UTF-8 when `isUTF8` (IMAP4rev2 / UTF8=ACCEPT), else decoded from modified
    /// UTF-7; nil when the bytes are not valid in that form. INBOX comes back as "INBOX".
    public func decoded(isUTF8: Bool) -> String? {
        if isInbox { return "INBOX" }
        let bytes = raw.copyBytes()
        if isUTF8 {
            var decoder = UTF8()
            var iterator = bytes.makeIterator()
            var scalars = String.UnicodeScalarView()
            while true {
                switch decoder.decode(&iterator) {
                case .scalarValue(let scalar): scalars.append(scalar)
                case .emptyInput: return String(scalars)
                case .error: return nil
                }
            }
        }
        return IMAPModifiedUTF7.decode(bytes)
    }
}

/// Modified UTF-7 (RFC 3501 section 5.1.3): printable ASCII stands for itself, `&` is `&-`, and other
/// characters are UTF-16 in modified base64 (`,` for `/`) between `&` and `-`.
public enum IMAPModifiedUTF7 {
    private static let alphabet: [UInt8] = Array(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,".utf8)

    /// Encodes a Unicode name.
    public static func encode(_ name: String) -> [UInt8] {
        var output: [UInt8] = []
        var pending: [UInt16] = []
        func flush() {
            guard !pending.isEmpty else { return }
            output.append(UInt8(ascii: "&"))
            var bits: UInt32 = 0
            var bitCount = 0
            for unit in pending {
                bits = (bits << 16) | UInt32(unit)
                bitCount += 16
                while bitCount >= 6 {
                    bitCount -= 6
                    output.append(alphabet[Int((bits >> UInt32(bitCount)) & 0x3F)])
                }
            }
            if bitCount > 0 { output.append(alphabet[Int((bits << UInt32(6 - bitCount)) & 0x3F)]) }
            output.append(UInt8(ascii: "-"))
            pending.removeAll()
        }
        for scalar in name.unicodeScalars {
            if scalar.value >= 0x20 && scalar.value <= 0x7E {
                flush()
                output.append(UInt8(scalar.value))
                if scalar == "&" { output.append(UInt8(ascii: "-")) }
            } else {
                pending.append(contentsOf: String(scalar).utf16)
            }
        }
        flush()
        return output
    }

    /// Decodes modified UTF-7; nil when malformed.
    public static func decode(_ bytes: [UInt8]) -> String? {
        var units: [UInt16] = []
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            guard byte >= 0x20 && byte <= 0x7E else { return nil }
            index += 1
            guard byte == UInt8(ascii: "&") else {
                units.append(UInt16(byte))
                continue
            }
            if index < bytes.count && bytes[index] == UInt8(ascii: "-") {
                units.append(UInt16(UInt8(ascii: "&")))
                index += 1
                continue
            }
            var bits: UInt32 = 0
            var bitCount = 0
            var sawEnd = false
            while index < bytes.count {
                let char = bytes[index]
                index += 1
                if char == UInt8(ascii: "-") {
                    sawEnd = true
                    break
                }
                guard let value = alphabet.firstIndex(of: char) else { return nil }
                bits = (bits << 6) | UInt32(value)
                bitCount += 6
                if bitCount >= 16 {
                    bitCount -= 16
                    units.append(UInt16(truncatingIfNeeded: bits >> UInt32(bitCount)))
                }
            }
            // Leftover bits must be zero padding; an unterminated run is malformed.
            guard sawEnd, bitCount < 6, bits & ((1 << UInt32(bitCount)) - 1) == 0 else { return nil }
        }
        var result = ""
        for scalar in Unicode.UTF16.decode(units) {
            guard let scalar else { return nil }
            result.unicodeScalars.append(scalar)
        }
        return result
    }
}

extension Unicode.UTF16 {
    /// Decodes code units into scalars, nil for each invalid sequence.
    fileprivate static func decode(_ units: [UInt16]) -> [Unicode.Scalar?] {
        var decoder = Unicode.UTF16()
        var iterator = units.makeIterator()
        var scalars: [Unicode.Scalar?] = []
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar): scalars.append(scalar)
            case .emptyInput: return scalars
            case .error: scalars.append(nil)
            }
        }
    }
}
