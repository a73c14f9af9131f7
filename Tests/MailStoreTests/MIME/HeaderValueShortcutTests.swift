// HeaderValueShortcutTests: a header value that RFC 2047 decoding cannot change is matched as it
// stands, without the decoders; the shortcut must answer exactly as decoding first does.

import Testing

@testable import MailStore

@Suite("Header values matched without decoding")
struct HeaderValueShortcutTests {
    /// Every field value of every header in the corpus (attached messages' and parts' too).
    static let corpusValues: [[UInt8]] = {
        var values: [[UInt8]] = []
        for name in Corpus.names {
            let message = Corpus.message(name)
            let structure = MessageStructure(parsing: message)
            message.withUnsafeBytes { bytes in
                for part in structure.parts {
                    var fields = HeaderFieldIterator(bytes, range: part.headerRange)
                    while let field = fields.next() { values.append(Array(bytes[field.value])) }
                }
            }
        }
        return values
    }()

    /// Values at the shortcut's border: encoded words, folding, 8-bit and control bytes, `=?` that
    /// is not an encoded word, blanks where decoding might move them.
    static let edgeCases: [[UInt8]] = [
        "", " ", "Hello World", "  leading and trailing  ", "tab\there", "a \t b",
        "=?utf-8?q?caf=C3=A9?=", "Re: =?ISO-8859-1?Q?Andr=E9?= Pirard", "=?utf-8?B?SGVsbG8=?= =?utf-8?q?_x?=",
        "Hello\r\n World", "a\r\n\tb", "line\nfeed", "cr\ronly", "trailing\r\n",
        "=?", "price =? unknown", "=?utf-8?x?bad?=", "=?utf-8?q?no end", "a = b", "?=", "=", "x=?",
        "a\u{01}b", "del\u{7F}", "nul\u{00}",
    ].map { Array($0.utf8) } + [
        [0x63, 0x61, 0x66, 0xC3, 0xA9],  // "café" as raw UTF-8
        [0x41, 0x6E, 0x64, 0x72, 0xE9],  // "André" as raw Latin-1: not UTF-8
        [0x61, 0xC3],  // a cut UTF-8 sequence at the end
        [0x80], [0xFF, 0x20, 0x41],
    ]

    static let fixedNeedles: [[UInt8]] = [
        "", "hello", "HELLO WORLD", "world", "café", "CAFÉ", "andré", "=?", "?=", "a b", "\t", " ", "x", "\u{FFFD}",
    ].map { Array($0.utf8) }

    /// The full path: decode the whole value, then match its decoded text.
    static func decodedThenMatched(_ needle: [UInt8], _ value: [UInt8]) -> Bool {
        var matcher = MIMETextMatcher(needle: needle)
        _ = MIMEEncodedWords.decode(value).withUnsafeBytes { matcher.feed($0) }
        return matcher.finish()
    }

    /// Needles for one value: fixed ones, pieces of its decoded text in both cases, one that is absent.
    static func needles(for value: [UInt8]) -> [[UInt8]] {
        let decoded = MIMEEncodedWords.decode(value)
        var needles = fixedNeedles
        for (start, length) in [(0, 4), (decoded.count / 2, 6), (max(0, decoded.count - 3), 3)] {
            let piece = Array(decoded[min(start, decoded.count)..<min(start + length, decoded.count)])
            needles.append(piece)
            needles.append(Array(String(decoding: piece, as: UTF8.self).uppercased().utf8))
        }
        needles.append(decoded + [UInt8(ascii: "!")])
        return needles
    }

    @Test("a value the shortcut takes decodes to itself, over the corpus and the edge cases")
    func shortcutOnlyWhereDecodingChangesNothing() {
        var taken = 0
        for value in Self.corpusValues + Self.edgeCases {
            guard value.withUnsafeBytes({ MIMEEncodedWords.decodesToItself($0) }) else { continue }
            taken += 1
            #expect(MIMEEncodedWords.decode(value) == value, "\(String(decoding: value, as: UTF8.self))")
        }
        // The corpus is mostly plain headers: the shortcut must actually be exercised.
        #expect(taken > Self.corpusValues.count / 2)
    }

    @Test("values decoding may change are left to the decoders")
    func notTaken() {
        let decodable = [
            "=?utf-8?q?caf=C3=A9?=", "Hello\r\n World", "line\nfeed", "=?", "price =? unknown", "=?utf-8?x?bad?=",
            "a\u{01}b", "del\u{7F}",
        ].map { Array($0.utf8) } + [[0x63, 0x61, 0x66, 0xC3, 0xA9], [0x41, 0x6E, 0x64, 0x72, 0xE9], [0x80]]
        for value in decodable {
            #expect(!value.withUnsafeBytes { MIMEEncodedWords.decodesToItself($0) },
                    "\(String(decoding: value, as: UTF8.self))")
        }
        for value in ["", "Hello World", "tab\there", "a = b", "?=", "x="].map({ Array($0.utf8) }) {
            #expect(value.withUnsafeBytes { MIMEEncodedWords.decodesToItself($0) })
        }
    }

    @Test("header matching answers as decoding then matching does, for every value and needle")
    func sameAnswers() {
        var decoded: [UInt8] = []
        var found = 0
        for value in Self.corpusValues + Self.edgeCases {
            for needle in Self.needles(for: value) {
                let expected = Self.decodedThenMatched(needle, value)
                let answer = value.withUnsafeBytes {
                    MIMETextMatcher(needle: needle).matchesHeaderValue($0, scratch: &decoded)
                }
                #expect(answer == expected, "\(String(decoding: needle, as: UTF8.self)) in \(value)")
                if answer { found += 1 }
            }
        }
        #expect(found > Self.corpusValues.count)
    }

    @Test("ASCII fed without UTF-8 decoding matches as the general feed does, after a cut sequence too")
    func asciiFeed() {
        let texts = ["Hello World", "HELLO", "xhellox", "hel", "lo", "", "Hé"].map { Array($0.utf8) }
        // [0xC3, "h"]: the cut sequence's raw byte must come out before the ASCII that follows it.
        for needle in ["hello", "LO W", "o", "", "\u{FFFD}"].map({ Array($0.utf8) }) + [[0xC3, 0x68]] {
            for prefix in [[], [0xC3], Array("hel".utf8)] as [[UInt8]] {
                for text in texts where text.allSatisfy({ $0 < 0x80 }) {
                    var general = MIMETextMatcher(needle: needle)
                    var ascii = general
                    prefix.withUnsafeBytes { _ = general.feed($0); _ = ascii.feed($0) }
                    text.withUnsafeBytes { _ = general.feed($0); _ = ascii.feedASCII($0) }
                    #expect(general.finish() == ascii.finish(), "\(needle) in \(prefix) + \(text)")
                }
            }
        }
    }

    @Test("SUBJECT over a cached blob answers as SUBJECT over the message, across the corpus")
    func subjectFromBlobAndMessage() {
        let searcher = MIMEContentSearcher()
        for name in Corpus.names {
            let message = Corpus.message(name)
            let blob = message.withUnsafeBytes { MIMEMessageAnalyzer().analyze($0) }
            var needles = Self.fixedNeedles
            let structure = MessageStructure(parsing: message)
            if let subject = structure.envelope.subject {
                needles += Self.needles(for: Array(structure.bytes(subject)))
            }
            for needle in needles {
                let key = ContentSearchKey.subject(String(decoding: needle, as: UTF8.self))
                let cached = searcher.answer(key, cached: blob)
                let fromMessage = message.withUnsafeBytes { searcher.matches(key, message: $0, cached: []) }
                #expect(cached == fromMessage, "\(name): \(String(decoding: needle, as: UTF8.self))")
            }
        }
    }
}
