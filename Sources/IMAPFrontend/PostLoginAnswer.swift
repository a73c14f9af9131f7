// IMAPFrontend: PostLoginAnswer, what a client is told when the back end accepted its login.

import Glibc

/// The back end's answer to a client's login, as the client gets it: UNAUTHENTICATE taken out of
/// the capabilities (it is offered to us as a trusted proxy; clients get BAD for it through the
/// front end, so they must not see it advertised), and the post-login CAPABILITY line kept for the
/// front end to answer CAPABILITY from.
struct PostLoginAnswer {
    /// Untagged lines for the client (a `* CAPABILITY` line, say), CRLFs included.
    let untagged: [UInt8]
    /// What follows the client's tag and a space in the tagged answer, CRLF included.
    let taggedText: [UInt8]
    /// `* CAPABILITY …\r\n` after login, or empty when the back end did not say.
    let capabilityLine: [UInt8]
    /// Whether the back end advertised UNAUTHENTICATE (RFC 8437 section 3: it may do so only
    /// after login), so the connection can be reset and lent to another user.
    let backendOffersUnauthenticate: Bool

    init(backendUntagged: [UInt8], backendTaggedText: UnsafeRawBufferPointer) {
        backendOffersUnauthenticate = ResponseLine(bytes: backendTaggedText).containsToken("UNAUTHENTICATE")
            || backendUntagged.withUnsafeBytes { ResponseLine(bytes: $0).containsToken("UNAUTHENTICATE") }
        untagged = PostLoginAnswer.removingToken("UNAUTHENTICATE", from: backendUntagged)
        taggedText = PostLoginAnswer.removingToken("UNAUTHENTICATE", from: Array(backendTaggedText))
        capabilityLine = PostLoginAnswer.capabilityLine(untagged: untagged, tagged: taggedText)
    }

    /// `bytes` without the capability token `token` (matched case-insensitively as a whole word
    /// after a space, before a space, `]` or CR).
    static func removingToken(_ token: String, from bytes: [UInt8]) -> [UInt8] {
        let needle = Array(token.utf8)
        var result: [UInt8] = []
        result.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            let end = index + 1 + needle.count
            if bytes[index] == 0x20, end <= bytes.count,
               zip(bytes[(index + 1)..<end], needle).allSatisfy({ ($0 & 0xDF) == $1 }),
               end == bytes.count || bytes[end] == 0x20 || bytes[end] == UInt8(ascii: "]") || bytes[end] == 0x0D {
                index = end
                continue
            }
            result.append(bytes[index])
            index += 1
        }
        return result
    }

    /// The `* CAPABILITY …\r\n` line from the login's untagged data, or built from the
    /// `[CAPABILITY …]` code of its tagged answer; empty when the back end gave neither.
    static func capabilityLine(untagged: [UInt8], tagged: [UInt8]) -> [UInt8] {
        let prefix = Array("* CAPABILITY ".utf8)
        var start = 0
        while start < untagged.count {
            var end = start
            while end < untagged.count, untagged[end] != 0x0A { end += 1 }
            let line = untagged[start..<min(end + 1, untagged.count)]
            if line.count > prefix.count, zip(line, prefix).allSatisfy({ ($0 & 0xDF) == ($1 & 0xDF) }) { return Array(line) }
            start = end + 1
        }
        let code = Array("[CAPABILITY ".utf8)
        guard let open = tagged.indices.first(where: { tagged[$0...].starts(with: code) }),
              let close = tagged[open...].firstIndex(of: UInt8(ascii: "]")) else { return [] }
        return prefix + tagged[(open + code.count)..<close] + [0x0D, 0x0A]
    }
}

/// The last login answer a pool's back end gave and its rewrite. A back end answers every login
/// with the same capabilities and words, so the rewrite (a few thousand instructions) is done once
/// and each later login only compares bytes. One per pool, on the pool's loop.
struct PostLoginAnswerCache {
    private var backendUntagged: [UInt8] = []
    private var backendTaggedText: [UInt8] = []
    private var last: PostLoginAnswer?

    mutating func answer(untagged: [UInt8], taggedText: UnsafeRawBufferPointer) -> PostLoginAnswer {
        if let last, untagged.withUnsafeBytes({ PostLoginAnswerCache.same(backendUntagged, $0) }),
           PostLoginAnswerCache.same(backendTaggedText, taggedText) {
            return last
        }
        let answer = PostLoginAnswer(backendUntagged: untagged, backendTaggedText: taggedText)
        backendUntagged = untagged
        backendTaggedText = Array(taggedText)
        last = answer
        return answer
    }

    private static func same(_ known: [UInt8], _ candidate: UnsafeRawBufferPointer) -> Bool {
        guard known.count == candidate.count else { return false }
        guard known.count > 0, let other = candidate.baseAddress else { return known.isEmpty }
        return known.withUnsafeBytes { memcmp($0.baseAddress!, other, known.count) } == 0
    }
}
