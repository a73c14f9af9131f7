// IMAPFrontend: ResponseLine, the few looks at a back-end response line the proxy needs (no full parse).

/// A read-only view of one response frame from a back end, enough to tell a tagged line from an
/// untagged one, read its status and find a capability token. The relay never parses more.
struct ResponseLine {
    let bytes: UnsafeRawBufferPointer

    /// The kinds of response (RFC 9051 section 7).
    enum Kind: Equatable { case untagged, continuation, tagged }

    /// The status of a tagged or untagged status response.
    enum Status: Equatable { case ok, no, bad, bye, preauth, other }

    // response = *(continue-req / response-data) response-done
    var kind: Kind {
        guard let first = bytes.first else { return .tagged }
        if first == UInt8(ascii: "*") { return .untagged }
        if first == UInt8(ascii: "+") { return .continuation }
        return .tagged
    }

    /// Whether the line begins with `tag` followed by a space.
    func hasTag(_ tag: [UInt8]) -> Bool {
        guard bytes.count > tag.count, bytes[tag.count] == UInt8(ascii: " ") else { return false }
        for index in 0..<tag.count where bytes[index] != tag[index] { return false }
        return true
    }

    /// Where the text after the tag (or `*`) and its space starts.
    var afterTag: Int {
        var index = 0
        while index < bytes.count && bytes[index] != UInt8(ascii: " ") { index += 1 }
        return min(index + 1, bytes.count)
    }

    // resp-cond-state = ("OK" / "NO" / "BAD") SP resp-text;  resp-cond-bye = "BYE" SP resp-text
    /// The status word after the tag.
    var status: Status {
        let start = afterTag
        var end = start
        while end < bytes.count, bytes[end] != UInt8(ascii: " "), bytes[end] != 0x0D, bytes[end] != 0x0A { end += 1 }
        let word = UnsafeRawBufferPointer(rebasing: bytes[start..<end])
        if ResponseLine.equalsUppercase(word, "OK") { return .ok }
        if ResponseLine.equalsUppercase(word, "NO") { return .no }
        if ResponseLine.equalsUppercase(word, "BAD") { return .bad }
        if ResponseLine.equalsUppercase(word, "BYE") { return .bye }
        if ResponseLine.equalsUppercase(word, "PREAUTH") { return .preauth }
        return .other
    }

    /// Whether the untagged data is of this kind (`* CAPABILITY ...`, `* ID ...`).
    func untaggedIs(_ word: StaticString) -> Bool {
        let start = afterTag
        let count = word.utf8CodeUnitCount
        guard bytes.count >= start + count else { return false }
        let candidate = UnsafeRawBufferPointer(rebasing: bytes[start..<(start + count)])
        guard ResponseLine.equalsUppercase(candidate, word) else { return false }
        guard bytes.count > start + count else { return true }
        let next = bytes[start + count]
        return next == 0x20 || next == 0x0D || next == 0x0A
    }

    /// Whether a space-, bracket- or end-delimited word of the line equals `token` (any case):
    /// `UNAUTHENTICATE` in `* OK [CAPABILITY IMAP4rev2 UNAUTHENTICATE] ready`.
    func containsToken(_ token: StaticString) -> Bool {
        var start = 0
        while start < bytes.count {
            var end = start
            while end < bytes.count, !ResponseLine.isDelimiter(bytes[end]) { end += 1 }
            if end > start, ResponseLine.equalsUppercase(UnsafeRawBufferPointer(rebasing: bytes[start..<end]), token) {
                return true
            }
            start = end + 1
        }
        return false
    }

    private static func isDelimiter(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == UInt8(ascii: "[") || byte == UInt8(ascii: "]") || byte == 0x0D || byte == 0x0A
    }

    /// ASCII case-insensitive comparison with an upper-case constant.
    static func equalsUppercase(_ candidate: UnsafeRawBufferPointer, _ word: StaticString) -> Bool {
        guard candidate.count == word.utf8CodeUnitCount else { return false }
        return word.withUTF8Buffer { expected in
            for index in 0..<expected.count {
                var byte = candidate[index]
                if byte >= 0x61 && byte <= 0x7A { byte -= 0x20 }
                if byte != expected[index] { return false }
            }
            return true
        }
    }
}
