// MIMESectionTests: BODY[section]<partial> against Dovecot's answers and RFC 3501's rules.

import Testing

@testable import MailStore

/// One captured `BODY.PEEK[spec]<partial>` answer.
struct CapturedSection {
    var spec: String
    var section: MIMESection
    var partial: MIMEPartial?
    var answer: [UInt8]

    /// Reads a `.sections` capture: records of `SPEC LENGTH` LF bytes LF.
    static func load(_ name: String) -> [CapturedSection] {
        let data = Corpus.read(Corpus.directory + "/" + name + ".sections")
        var records: [CapturedSection] = []
        var position = 0
        while position < data.count {
            guard let lineEnd = data[position...].firstIndex(of: 10) else { break }
            let line = String(decoding: data[position..<lineEnd], as: UTF8.self)
            let space = line.lastIndex(of: " ")!
            let spec = String(line[..<space])
            let length = Int(line[line.index(after: space)...]) ?? 0
            let answer = Array(data[(lineEnd + 1)..<(lineEnd + 1 + length)])
            position = lineEnd + 1 + length + 1
            let (section, partial) = parse(spec)
            records.append(CapturedSection(spec: spec, section: section, partial: partial, answer: answer))
        }
        return records
    }

    /// `1.2.HEADER.FIELDS (A B)<0.10>` into a section and a partial.
    static func parse(_ spec: String) -> (MIMESection, MIMEPartial?) {
        var text = Substring(spec)
        var partial: MIMEPartial?
        if let open = text.firstIndex(of: "<") {
            let numbers = text[text.index(after: open)..<text.index(before: text.endIndex)].split(separator: ".")
            partial = MIMEPartial(origin: Int(numbers[0])!, length: Int(numbers[1])!)
            text = text[..<open]
        }
        var part: [Int] = []
        while let first = text.first, first.isNumber {
            let end = text.firstIndex(of: ".") ?? text.endIndex
            part.append(Int(text[..<end])!)
            text = end == text.endIndex ? "" : text[text.index(after: end)...]
        }
        func names() -> [[UInt8]] {
            let list = text[text.index(after: text.firstIndex(of: "(")!)..<text.firstIndex(of: ")")!]
            return list.split(separator: " ").map { Array($0.utf8) }
        }
        let kind: MIMESection.Text
        switch text {
        case "": kind = .all
        case "HEADER": kind = .header
        case "TEXT": kind = .text
        case "MIME": kind = .mime
        default: kind = text.hasPrefix("HEADER.FIELDS.NOT") ? .headerFieldsNot(names()) : .headerFields(names())
        }
        return (MIMESection(part: part, text: kind), partial)
    }
}

@Suite("BODY[section]")
struct MIMESectionTests {
    /// Messages whose sections differ from Dovecot's for a reason documented in CorpusTests
    /// (`DocumentedDifference`): bare LF (Dovecot sends CRLF), a prefix-matched boundary, and an
    /// encoded message/rfc822 that Dovecot parses and Apus leaves opaque.
    static let differentByDesign: [String: Set<String>] = [
        "14-boundary-prefix-in-body": ["1", "2", "2.MIME", "1.1", "2.1", "2.1.MIME"],
        "27-rfc822-base64": ["1", "1.1", "1.HEADER", "1.TEXT", "1.2", "1.2.2", "1.2.2.MIME", "2.1", "2.1.MIME"],
    ]

    @Test("every captured section of every corpus message is what Dovecot sent", arguments: Corpus.names)
    func matchesDovecot(name: String) {
        let message = Corpus.message(name)
        let structure = MessageStructure(parsing: message)
        let bareLineFeeds = message.indices.contains { message[$0] == 10 && ($0 == 0 || message[$0 - 1] != 13) }
        for record in CapturedSection.load(name) {
            if Self.differentByDesign[name]?.contains(record.spec) == true { continue }
            var ours = message.withUnsafeBytes {
                structure.content(of: record.section, partial: bareLineFeeds ? nil : record.partial, in: $0)
            } ?? []
            if bareLineFeeds {
                // Dovecot sends bare LF as CRLF (documented difference 07-lf-only): compare that way,
                // the partial applying to the converted bytes.
                var converted: [UInt8] = []
                for (index, byte) in ours.enumerated() {
                    if byte == 10 && (index == 0 || ours[index - 1] != 13) { converted.append(13) }
                    converted.append(byte)
                }
                ours = Array(converted[record.partial?.clip(converted.indices) ?? converted.indices])
            }
            #expect(ours == record.answer, "\(name) BODY[\(record.spec)] \(ours.count) \(record.answer.count)")
        }
    }

    @Test("locate gives byte ranges of the file; HEADER.FIELDS asks for the header range only")
    func locations() {
        let message = Corpus.message("03-rfc822-attachment")
        let structure = MessageStructure(parsing: message)
        let attached = structure.children(of: 0)[1]
        let inner = attached + 1
        #expect(structure.locate(MIMESection(part: [2], text: .header)) == .bytes(structure.parts[inner].headerRange))
        #expect(structure.locate(MIMESection(part: [2], text: .mime)) == .bytes(structure.parts[attached].headerRange))
        let html = structure.children(of: inner)[1]
        #expect(structure.locate(MIMESection(part: [2, 2])) == .bytes(structure.parts[html].bodyRange))
        #expect(structure.locate(MIMESection(text: .headerFields([Array("to".utf8)])))
            == .filteredHeader(structure.parts[0].headerRange, fields: [Array("to".utf8)], excluding: false))
        #expect(structure.locate(MIMESection(text: .text), partial: MIMEPartial(origin: 10, length: 5))
            == .bytes((structure.parts[0].bodyStart + 10)..<(structure.parts[0].bodyStart + 15)))
    }

    @Test("sections that do not exist or do not apply give nil", arguments: [
        MIMESection(part: [3]), MIMESection(part: [0]), MIMESection(part: [1, 2]), MIMESection(text: .mime),
        MIMESection(part: [1], text: .header), MIMESection(part: [1], text: .text), MIMESection(part: [2, 3]),
        MIMESection(part: [2, 1, 2]),
    ])
    func missing(section: MIMESection) {
        let structure = MessageStructure(parsing: Corpus.message("03-rfc822-attachment"))
        #expect(structure.locate(section) == nil)
    }

    @Test("a single-part message has part 1, its body, and 1.MIME is its header; 1.1 is 1 again")
    func singlePart() {
        let message = Corpus.message("01-simple-plain")
        let structure = MessageStructure(parsing: message)
        #expect(structure.locate(MIMESection(part: [1])) == .bytes(structure.parts[0].bodyRange))
        #expect(structure.locate(MIMESection(part: [1], text: .mime)) == .bytes(structure.parts[0].headerRange))
        #expect(structure.locate(MIMESection(part: [2])) == nil)
        #expect(structure.locate(MIMESection(part: [1, 1])) == nil)
    }

    @Test("partial clipping follows RFC 3501: origin past the end is empty, length is cut at the end")
    func partials() {
        let range = 100..<150
        #expect(MIMEPartial(origin: 0, length: 10).clip(range) == 100..<110)
        #expect(MIMEPartial(origin: 45, length: 10).clip(range) == 145..<150)
        #expect(MIMEPartial(origin: 50, length: 10).clip(range) == 150..<150)
        #expect(MIMEPartial(origin: 5000, length: 10).clip(range) == 150..<150)
        #expect(MIMEPartial(origin: 10, length: 0).clip(range) == 110..<110)
        #expect(MIMEPartial(origin: -3, length: Int.max).clip(range) == 100..<150)
    }

    @Test("HEADER.FIELDS keeps folded fields whole and ends with the empty line; a last line without LF gets CRLF")
    func headerFilter() {
        let header = Array("Subject: a\r\n b\r\nX-A: 1\r\nsubject: again\r\nTo: t\n\r\n".utf8)
        let fields = header.withUnsafeBytes {
            MIMEHeaderFilter.filter($0, fields: [Array("SUBJECT".utf8), Array("to".utf8)], excluding: false)
        }
        #expect(String(decoding: fields, as: UTF8.self) == "Subject: a\r\n b\r\nsubject: again\r\nTo: t\n\r\n")
        let others = header.withUnsafeBytes {
            MIMEHeaderFilter.filter($0, fields: [Array("subject".utf8)], excluding: true)
        }
        #expect(String(decoding: others, as: UTF8.self) == "X-A: 1\r\nTo: t\n\r\n")
        // A header cut short by the end of the message: no empty line to keep.
        let cut = Array("Subject: a\r\nTo: t".utf8)
        let cutFields = cut.withUnsafeBytes {
            MIMEHeaderFilter.filter($0, fields: [Array("to".utf8)], excluding: false)
        }
        #expect(String(decoding: cutFields, as: UTF8.self) == "To: t\r\n")
    }
}
