// TextSearchTests: charsets to UTF-8, RFC 2047 decoding, the chunked case-insensitive matcher and
// the SEARCH helpers over the corpus.

import Testing

@testable import MailStore

func utf8(_ bytes: [UInt8], charset: String) -> String {
    let output = bytes.withUnsafeBytes { MIMECharsetDecoder.utf8($0, charsetName: Array(charset.utf8)) }
    return String(decoding: output, as: UTF8.self)
}

/// Whether `needle` is found in `text` fed as the given chunks.
func matches(_ needle: String, in chunks: [[UInt8]]) -> Bool {
    var matcher = MIMETextMatcher(needle: Array(needle.utf8))
    for chunk in chunks { chunk.withUnsafeBytes { _ = matcher.feed($0) } }
    return matcher.finish()
}

@Suite("Charsets")
struct CharsetTests {
    @Test("built-in single-byte charsets")
    func singleByte() {
        #expect(utf8([0x63, 0x61, 0x66, 0xE9], charset: "ISO-8859-1") == "café")
        #expect(utf8([0xA4], charset: "iso-8859-15") == "€")
        #expect(utf8([0xA4], charset: "latin1") == "¤")
        #expect(utf8([0x93, 0x68, 0x69, 0x94, 0x80], charset: "Windows-1252") == "\u{201C}hi\u{201D}€")
        // iso-8859-1 read as windows-1252 in 0x80-0x9F, as browsers do.
        #expect(utf8([0x93], charset: "iso-8859-1") == "\u{201C}")
    }

    @Test("UTF-8 and us-ascii: valid text passes, invalid bytes become U+FFFD")
    func utf8Validation() {
        #expect(utf8(Array("grüße €".utf8), charset: "utf-8") == "grüße €")
        #expect(utf8([0x61, 0xFF, 0x62], charset: "UTF-8") == "a\u{FFFD}b")
        #expect(utf8([0xC3], charset: "utf-8") == "\u{FFFD}")
        #expect(utf8([0xE0, 0x80, 0x80], charset: "utf-8").unicodeScalars.allSatisfy { $0 == "\u{FFFD}" })
        #expect(utf8([0xED, 0xA0, 0x80], charset: "utf-8").unicodeScalars.first == "\u{FFFD}")
        #expect(utf8(Array("plain".utf8), charset: "us-ascii") == "plain")
        #expect(utf8(Array("ü".utf8), charset: "us-ascii") == "ü")
    }

    @Test("other charsets through iconv, split anywhere; unknown names read as UTF-8")
    func iconvCharsets() {
        let koi8: [UInt8] = [0xF0, 0xD2, 0xC9, 0xD7, 0xC5, 0xD4]  // "Привет"
        #expect(utf8(koi8, charset: "KOI8-R") == "Привет")
        let shiftJIS: [UInt8] = [0x93, 0xFA, 0x96, 0x7B]  // "日本"
        #expect(utf8(shiftJIS, charset: "shift_jis") == "日本")
        for split in 0...shiftJIS.count {
            var decoder = MIMECharsetDecoder(charsetName: Array("Shift_JIS".utf8))
            var output: [UInt8] = []
            shiftJIS[0..<split].withUnsafeBytes { decoder.decode($0, into: &output) }
            shiftJIS[split...].withUnsafeBytes { decoder.decode($0, into: &output) }
            decoder.finish(into: &output)
            #expect(String(decoding: output, as: UTF8.self) == "日本", "split \(split)")
        }
        #expect(utf8(Array("ok".utf8), charset: "x-no-such-charset") == "ok")
    }

    @Test("UTF-8 fed whole, byte by byte or split anywhere decodes alike, ASCII runs around bad bytes too")
    func utf8AnySplit() {
        let mixed: [UInt8] = Array("ascii run ".utf8) + [0xC3, 0xBC, 0x61, 0xFF, 0x62, 0xE2, 0x82, 0x41, 0x42]
            + Array(" tail €".utf8) + [0xF0, 0x9F, 0x99, 0x82, 0x7F, 0xC3]
        let expected = Array("ascii run üa\u{FFFD}b\u{FFFD}AB tail €🙂\u{7F}\u{FFFD}".utf8)
        func decode(_ chunks: [ArraySlice<UInt8>]) -> [UInt8] {
            var decoder = MIMECharsetDecoder(charsetName: Array("utf-8".utf8))
            var output: [UInt8] = []
            for chunk in chunks { chunk.withUnsafeBytes { decoder.decode($0, into: &output) } }
            decoder.finish(into: &output)
            return output
        }
        #expect(decode([mixed[...]]) == expected)
        #expect(decode(mixed.map { [$0][...] }) == expected)
        for split in 0...mixed.count {
            #expect(decode([mixed[..<split], mixed[split...]]) == expected, "split \(split)")
        }
    }

    @Test("a UTF-8 character split across chunks is kept whole")
    func utf8AcrossChunks() {
        let bytes = Array("a€b".utf8)
        for split in 0...bytes.count {
            var decoder = MIMECharsetDecoder(charsetName: Array("utf-8".utf8))
            var output: [UInt8] = []
            bytes[0..<split].withUnsafeBytes { decoder.decode($0, into: &output) }
            bytes[split...].withUnsafeBytes { decoder.decode($0, into: &output) }
            decoder.finish(into: &output)
            #expect(output == bytes, "split \(split)")
        }
    }
}

@Suite("RFC 2047 encoded words")
struct EncodedWordTests {
    func decoded(_ text: String) -> String {
        String(decoding: MIMEEncodedWords.decode(Array(text.utf8)), as: UTF8.self)
    }

    @Test("B and Q words, charsets, white space between adjacent words dropped")
    func decoding() {
        let subject = "=?UTF-8?B?SGVsbG8gV29ybGQ=?= =?UTF-8?Q?_und_Gr=C3=BC=C3=9Fe?=\r\n =?iso-8859-1?q?caf=E9?= plain"
        #expect(decoded(subject) == "Hello World und Grüßecafé plain")
        #expect(decoded("=?ISO-8859-1?Q?Andr=E9?= Pirard") == "André Pirard")
        #expect(decoded("a =?utf-8?q?b?= c") == "a b c")
        #expect(decoded("=?utf-8*en?q?lang?=") == "lang")
        #expect(MIMEEncodedWords.decode([0x61, 0xC3] + Array("=?utf-8?q?b?=".utf8))
            == [0x61, 0xEF, 0xBF, 0xBD, 0x62])
    }

    @Test("malformed words stay as written")
    func malformed() {
        #expect(decoded("=?utf-8?x?bad?=") == "=?utf-8?x?bad?=")
        #expect(decoded("=?utf-8?q?no end") == "=?utf-8?q?no end")
        #expect(decoded("=?utf-8?q?with space?=") == "=?utf-8?q?with space?=")
        #expect(decoded("=?") == "=?")
        #expect(decoded("= ?") == "= ?")
    }
}

@Suite("Case-insensitive matcher")
struct TextMatcherTests {
    @Test("ASCII and Latin, Greek and Cyrillic letters fold; other text matches exactly")
    func folding() {
        #expect(matches("hello", in: [Array("Say HELLO there".utf8)]))
        #expect(matches("CAFÉ CRÈME", in: [Array("un café crème".utf8)]))
        #expect(matches("ŁÓDŹ", in: [Array("łódź".utf8)]))
        #expect(matches("ΑΘΗΝΑ", in: [Array("αθηνα".utf8)]))
        #expect(matches("МОСКВА", in: [Array("москва".utf8)]))
        #expect(matches("Ёлка", in: [Array("ёЛКА".utf8)]))
        #expect(!matches("cafe", in: [Array("café".utf8)]))
        #expect(!matches("strasse", in: [Array("straße".utf8)]))
        #expect(matches("", in: [Array("anything".utf8)]))
        #expect(matches("", in: []))
        #expect(!matches("x", in: []))
    }

    @Test("a needle straddling chunk boundaries is found at every split, byte by byte too")
    func straddling() {
        let text = Array("xxxx aaab Grüße AUS Köln xxxx".utf8)
        for needle in ["grüsse", "GRÜßE AUS KÖLN", "aab", "ö", "xxxx aaab grüße aus köln xxxx"] {
            let expected = needle != "grüsse"
            for split in 0...text.count {
                #expect(matches(needle, in: [Array(text[0..<split]), Array(text[split...])]) == expected,
                        "\(needle) split \(split)")
            }
            #expect(matches(needle, in: text.map { [$0] }) == expected, "\(needle) byte by byte")
        }
    }

    @Test("KMP restarts correctly on self-overlapping needles")
    func overlapping() {
        #expect(matches("aab", in: [Array("aaab".utf8)]))
        #expect(matches("abab", in: [Array("abaabab".utf8)]))
        #expect(!matches("abab", in: [Array("abaab".utf8)]))
    }

    @Test("reset forgets a partial match and a previous hit")
    func reset() {
        var matcher = MIMETextMatcher(needle: Array("abc".utf8))
        Array("ab".utf8).withUnsafeBytes { _ = matcher.feed($0) }
        matcher.reset()
        Array("c".utf8).withUnsafeBytes { _ = matcher.feed($0) }
        let found = matcher.finish()
        #expect(!found)
    }
}

@Suite("SEARCH helpers")
struct MessageSearchTests {
    func search(_ name: String, body needle: String) -> Bool {
        let message = Corpus.message(name)
        let structure = MessageStructure(parsing: message)
        return message.withUnsafeBytes { structure.bodyContains(MIMETextMatcher(needle: Array(needle.utf8)), in: $0) }
    }

    func search(_ name: String, text needle: String) -> Bool {
        let message = Corpus.message(name)
        let structure = MessageStructure(parsing: message)
        return message.withUnsafeBytes { structure.textContains(MIMETextMatcher(needle: Array(needle.utf8)), in: $0) }
    }

    func search(_ name: String, header field: String, _ needle: String) -> Bool {
        let message = Corpus.message(name)
        let structure = MessageStructure(parsing: message)
        return message.withUnsafeBytes {
            structure.headerField(Array(field.utf8), contains: MIMETextMatcher(needle: Array(needle.utf8)), in: $0)
        }
    }

    /// SUBJECT as the store answers it: from the message's cached blob, never reading the message.
    func search(_ name: String, subject needle: String) -> Bool {
        let blob = Corpus.message(name).withUnsafeBytes { MIMEMessageAnalyzer().analyze($0) }
        return MIMEContentSearcher().answer(.subject(needle), cached: blob) == true
    }

    @Test("SUBJECT from the cached envelope finds what the Subject field search of the message finds")
    func subjectFromTheEnvelopeMatchesTheField() {
        let searcher = MIMEContentSearcher()
        // Encoded words (04), 8-bit raw text (08), a folded value (20), no Subject (12), case folding.
        let needles = ["", "hello world und grüße", "GRÜßE", "grüsse", "folded\tsubject", "folded subject", "MEETING",
                       "notes", "=?", " ", "digest", "é"]
        var found = 0
        for name in Corpus.names {
            let message = Corpus.message(name)
            message.withUnsafeBytes { bytes in
                let blob = MIMEMessageAnalyzer().analyze(bytes)
                let structure = MessageStructure(parsing: bytes)
                for needle in needles {
                    let field = structure.headerField(Array("Subject".utf8), contains: MIMETextMatcher(needle: Array(needle.utf8)),
                                                      in: bytes)
                    if field { found += 1 }
                    #expect(searcher.answer(.subject(needle), cached: blob) == field, "\(name) \(needle)")
                    // The file path (no usable blob) decides from the parsed envelope, the same way.
                    #expect(searcher.matches(.subject(needle), message: bytes, cached: []) == field, "\(name) \(needle)")
                }
            }
        }
        #expect(found > 20, "the needles find subjects in the corpus")
        // A damaged or foreign blob is no answer: the store then reads the message.
        #expect(searcher.answer(.subject("x"), cached: [1, 2, 3]) == nil)
        #expect(searcher.answer(.subject("x"), cached: []) == nil)
        #expect(searcher.answer(.header(field: "Subject", value: "x"), cached: [1, 2, 3]) == nil)
    }

    @Test("BODY decodes quoted-printable and charsets before matching")
    func bodyDecoded() {
        #expect(search("15-quoted-printable", body: "CAFÉ CRÈME BRÛLÉE"))
        #expect(search("15-quoted-printable", body: "soft-broken here and continues"))
        #expect(search("02-nested-mixed-alternative-related", body: "sale — everything"))
        #expect(search("04-encoded-words", body: "grüße aus köln"))
    }

    @Test("BODY looks into text parts only, and into attached messages (header included)")
    func bodyScope() {
        #expect(search("05-rfc2231-filename", body: "latin-1 name"))
        #expect(!search("05-rfc2231-filename", body: "Hello"))  // base64 of an application/octet-stream part
        #expect(search("03-rfc822-attachment", body: "ship it"))
        #expect(search("03-rfc822-attachment", body: "Subject: Meeting notes"))
        #expect(!search("03-rfc822-attachment", body: "Fwd: Meeting"))  // the message's own header
        #expect(search("10-digest", body: "second body"))
    }

    @Test("TEXT adds the message header, RFC 2047-decoded")
    func text() {
        #expect(search("03-rfc822-attachment", text: "Fwd: Meeting"))
        #expect(search("04-encoded-words", text: "und Grüße"))
        #expect(!search("01-simple-plain", text: "nowhere"))
    }

    @Test("header fields: decoded, case-insensitive names, empty needle means the field exists")
    func headerFields() {
        #expect(search("04-encoded-words", header: "subject", "hello world und grüße"))
        #expect(search("04-encoded-words", header: "FROM", "andré"))
        #expect(search("08-8bit-header", header: "Subject", "GRÜSSE") == false)
        #expect(search("08-8bit-header", header: "Subject", "GRÜßE"))
        #expect(search("01-simple-plain", header: "Message-ID", ""))
        #expect(!search("01-simple-plain", header: "X-Missing", ""))
        #expect(search("20-folded-and-defaults", header: "subject", "folded\tsubject"))
    }

    /// Searches where Apus finds more than Dovecot 2.3, on purpose.
    static let differentByDesign: [String: String] = [
        // The header of an attached message is part of the outer message's body (RFC 3501 BODY);
        // Dovecot leaves it out.
        "BODY\tSubject: Meeting notes": "03-rfc822-attachment",
        // An encoded message/rfc822 part is searched as decoded text; Dovecot does not decode it.
        "BODY\thidden body": "27-rfc822-base64",
    ]

    @Test("SEARCH BODY, TEXT and header keys find the same messages as Dovecot")
    func matchesDovecot() {
        let data = Corpus.read(Corpus.directory + "/search.dovecot")
        let names = Corpus.names.filter { !Corpus.dovecotAnswer($0).starts(with: Array("NO ".utf8)) }
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: true)
        #expect(lines.count > 20)
        for line in lines {
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
            let key = String(fields[0])
            let needle = String(fields[1])
            var expected = fields[2].split(separator: " ").map(String.init)
            if let extra = Self.differentByDesign[key + "\t" + needle] { expected = (expected + [extra]).sorted() }
            let found = names.filter { name in
                switch key {
                case "BODY": return search(name, body: needle)
                case "TEXT": return search(name, text: needle)
                case "SUBJECT": return search(name, subject: needle)
                case "FROM", "TO", "CC": return search(name, header: key, needle)
                default: return search(name, header: String(key.dropFirst("HEADER ".count)), needle)
                }
            }
            #expect(found == expected, "\(key) \(needle)")
        }
    }

    @Test("the store's searcher answers from the cached structure as from the message, and ignores another message's")
    func searcherUsesTheCachedStructure() {
        let searcher = MIMEContentSearcher()
        let keys: [ContentSearchKey] = [.header(field: "Subject", value: "meeting"), .subject("meeting"),
                                        .header(field: "From", value: "andré"),
                                        .body("ship it"), .body("CAFÉ"), .text("Fwd: Meeting"),
                                        .text("und Grüße"), .header(field: "Message-ID", value: "")]
        let other = MIMEMessageAnalyzer().analyze(UnsafeRawBufferPointer(start: nil, count: 0))
        var hits = 0
        for name in Corpus.names {
            let message = Corpus.message(name)
            message.withUnsafeBytes { bytes in
                let blob = MIMEMessageAnalyzer().analyze(bytes)
                for key in keys {
                    let parsed = searcher.matches(key, message: bytes, cached: [])
                    if parsed { hits += 1 }
                    #expect(searcher.matches(key, message: bytes, cached: blob) == parsed, "\(name) \(key)")
                    if !message.isEmpty {
                        #expect(searcher.matches(key, message: bytes, cached: other) == parsed, "\(name) \(key)")
                    }
                }
            }
        }
        #expect(hits > 10, "the keys find something in the corpus")
    }

    @Test("a needle that straddles the internal 16 KiB decode chunks is found")
    func largeBody() {
        var text = "Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        text += String(repeating: "filler line =3D padding\r\n", count: 700)
        text += "the NEEDLE=\r\n is here\r\n"
        let message = Array(text.utf8)
        let structure = MessageStructure(parsing: message)
        for needle in ["needle is here", "padding\r\nthe"] {
            let found = message.withUnsafeBytes {
                structure.bodyContains(MIMETextMatcher(needle: Array(needle.utf8)), in: $0)
            }
            #expect(found, "\(needle)")
        }
    }
}
