// IMAPProtocol: the character classes of the IMAP formal syntax (RFC 3501 section 9, RFC 9051 section 9).

/// Character classes from the ABNF of RFC 3501 / RFC 9051, as cheap predicates on one byte.
public enum IMAPByteClass {
    // CTL = %x00-1F / %x7F
    @inlinable
    public static func isControl(_ byte: UInt8) -> Bool { byte < 0x20 || byte == 0x7F }

    // atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials / resp-specials
    // list-wildcards = "%" / "*";  quoted-specials = DQUOTE / "\";  resp-specials = "]"
    // ATOM-CHAR = <any CHAR except atom-specials>
    @inlinable
    public static func isAtomChar(_ byte: UInt8) -> Bool {
        switch byte {
        case 0x00...0x20, 0x7F...0xFF: return false
        case UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "{"), UInt8(ascii: "%"), UInt8(ascii: "*"),
            UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "]"):
            return false
        default: return true
        }
    }

    // ASTRING-CHAR = ATOM-CHAR / resp-specials
    @inlinable
    public static func isAStringChar(_ byte: UInt8) -> Bool { isAtomChar(byte) || byte == UInt8(ascii: "]") }

    // tag = 1*<any ASTRING-CHAR except "+">
    @inlinable
    public static func isTagChar(_ byte: UInt8) -> Bool { isAStringChar(byte) && byte != UInt8(ascii: "+") }

    // list-char = ATOM-CHAR / list-wildcards / resp-specials
    @inlinable
    public static func isListChar(_ byte: UInt8) -> Bool {
        isAStringChar(byte) || byte == UInt8(ascii: "%") || byte == UInt8(ascii: "*")
    }

    // TEXT-CHAR = <any CHAR except CR and LF>; RFC 9051 also allows UTF-8 in text and quoted strings,
    // so bytes 0x80-0xFF pass here and UTF-8 validity is the consumer's concern.
    // QUOTED-CHAR = <any TEXT-CHAR except quoted-specials> / "\" quoted-specials / UTF8-2 / UTF8-3 / UTF8-4
    @inlinable
    public static func isQuotedChar(_ byte: UInt8) -> Bool {
        byte != 0 && byte != 0x0D && byte != 0x0A && byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "\\")
    }

    // quoted-specials = DQUOTE / "\"
    @inlinable
    public static func isQuotedSpecial(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\")
    }

    // DIGIT = %x30-39
    @inlinable
    public static func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }

    /// ASCII upper-casing of one byte (only a-z change).
    @inlinable
    public static func upper(_ byte: UInt8) -> UInt8 {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) ? byte - 0x20 : byte
    }

    /// Whether `byte` may appear in a base64 SASL line (RFC 4648 alphabet and padding).
    @inlinable
    public static func isBase64Char(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "+"), UInt8(ascii: "/"), UInt8(ascii: "="):
            return true
        default: return false
        }
    }
}
