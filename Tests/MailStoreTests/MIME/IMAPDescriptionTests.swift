// IMAPDescriptionTests: the fast ENVELOPE and BODYSTRUCTURE writers against a slow, plain
// reference writer, byte for byte, over the MIME corpus and over messages made to need every
// string form (quoted, escaped, literal, empty, NIL).

import Testing

@testable import MailStore

@Suite("ENVELOPE and BODYSTRUCTURE bytes")
struct IMAPDescriptionTests {
    @Test("every corpus message renders exactly as the reference writer renders it", arguments: Corpus.names)
    func corpusMatchesReference(name: String) {
        expectSameAsReference(MessageStructure(parsing: Corpus.message(name)), name)
    }

    @Test("the cached structure (read back from its blob) renders as the parsed one")
    func cachedMatchesReference() throws {
        for name in Corpus.names {
            var blob: [UInt8] = []
            var parsed = MessageStructure(parsing: Corpus.message(name))
            Corpus.message(name).withUnsafeBytes { parsed.keepHeader(of: $0) }
            parsed.serialize(into: &blob)
            let cached = try #require(MessageStructure(serialized: blob), "\(name)")
            expectSameAsReference(cached, name)
        }
    }

    @Test("quotes and backslashes are escaped, 8-bit bytes go as literals, empty strings as \"\", absent ones NIL")
    func everyStringForm() {
        let message = Array("""
            Date: Mon, 7 Dec 2026 10:00:00 +0000\r
            From: "Ann \\"the\\" Writer" <ann@example.org>\r
            To: "back\\\\slash" <bo@example.org>, undisclosed:;\r
            Subject: caf\u{E9} \\"quoted\\" \\\\ end\r
            Message-ID: <"q\\"x"@example.org>\r
            In-Reply-To:\r
            MIME-Version: 1.0\r
            Content-Type: multipart/mixed; boundary="b\\"1"\r
            \r
            --b"1\r
            Content-Type: text/plain; charset="a\\\\b"; name*=utf-8''%E2%82%AC.txt\r
            Content-Description: \u{E9}t\u{E9}\r
            \r
            body\r
            --b"1\r
            Content-Type: application/octet-stream; name=""\r
            Content-Disposition: attachment; filename="\\"\\\\\\""\r
            \r
            x\r
            --b"1--\r

            """.utf8)
        let structure = MessageStructure(parsing: message)
        let rendered = expectSameAsReference(structure, "made message")
        // The forms the comparison must have covered, so it cannot pass on a message without them.
        for form in [#"\""#, #"\\"#, "{", "\"\"", "NIL", "name*"] {
            #expect(rendered.contains(form), "no \(form) in \(rendered)")
        }
    }

    @Test("every byte value, at every position of strings up to 20 bytes, takes the reference's form")
    func everyByteAtEveryPosition() {
        // The form is found eight bytes at a time: positions inside a word, across two words and in
        // the tail after the last whole word all count. An 8-byte scratch makes pieces straddle
        // its end and strings overflow it.
        for length in 1...20 {
            for position in 0..<length {
                for value in 0...255 {
                    var string = [UInt8](repeating: UInt8(ascii: "a"), count: length)
                    string[position] = UInt8(value)
                    let ours = written(string, scratchSize: 8)
                    if ours != Array("x".utf8) + ReferenceIMAPWriter.quoted(string) {
                        Issue.record("byte \(value) at \(position) of \(length): \(ours)")
                        return
                    }
                }
            }
        }
        #expect(written([], scratchSize: 8) == Array("x\"\"".utf8))
    }

    /// `string` as the writer writes it after an `x`, through a sink with `scratchSize` bytes of
    /// scratch.
    private func written(_ string: [UInt8], scratchSize: Int) -> [UInt8] {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: scratchSize) { scratch in
            var sink = IMAPDescriptionSink(appendingTo: Array("x".utf8), scratch: scratch)
            string.withUnsafeBufferPointer { IMAPDescriptionWriter.writeIMAPString($0, into: &sink) }
            return sink.finish()
        }
    }

    @Test("the writers append after what the output already holds, whatever its capacity")
    func appendsToExistingOutput() {
        let structure = MessageStructure(parsing: Corpus.message("02-nested-mixed-alternative-related"))
        var expected: [UInt8] = Array("* 1 FETCH (ENVELOPE ".utf8)
        ReferenceIMAPWriter(structure: structure).envelope(0, into: &expected)
        var output: [UInt8] = Array("* 1 FETCH (ENVELOPE ".utf8)
        output.reserveCapacity(1)
        structure.writeIMAPEnvelope(0, into: &output)
        #expect(output == expected)
    }

    /// Compares every envelope and every part, BODY and BODYSTRUCTURE, with the reference writer's
    /// bytes; returns the whole description as text.
    @discardableResult
    private func expectSameAsReference(_ structure: MessageStructure, _ name: String) -> String {
        let reference = ReferenceIMAPWriter(structure: structure)
        for index in structure.envelopes.indices {
            var ours: [UInt8] = []
            var theirs: [UInt8] = []
            structure.writeIMAPEnvelope(index, into: &ours)
            reference.envelope(index, into: &theirs)
            #expect(ours == theirs, "\(name) envelope \(index)")
        }
        for index in structure.parts.indices {
            for extensions in [false, true] {
                var ours: [UInt8] = []
                var theirs: [UInt8] = []
                structure.writeIMAPBody(index, extensions: extensions, into: &ours)
                reference.body(index, extensions: extensions, into: &theirs)
                #expect(ours == theirs, "\(name) part \(index) extensions \(extensions)")
            }
        }
        return structure.debugIMAPDescription
    }
}

/// RFC 3501's `envelope` and `body` written the plain way: a byte at a time, numbers through
/// String. Slow and obviously right; the fast writers must produce the same bytes.
private struct ReferenceIMAPWriter {
    let structure: MessageStructure

    func envelope(_ index: Int, into output: inout [UInt8]) {
        let envelope = structure.envelopes[index]
        output += Array("(".utf8)
        string(envelope.date, into: &output)
        output += Array(" ".utf8)
        string(envelope.subject, into: &output)
        for list in [envelope.from, envelope.sender, envelope.replyTo, envelope.to, envelope.cc, envelope.bcc] {
            output += Array(" ".utf8)
            if list.isEmpty {
                output += Array("NIL".utf8)
                continue
            }
            output += Array("(".utf8)
            for address in structure.addresses[list] {
                output += Array("(".utf8)
                strings([address.name, address.adl, address.mailbox, address.host], into: &output)
                output += Array(")".utf8)
            }
            output += Array(")".utf8)
        }
        output += Array(" ".utf8)
        string(envelope.inReplyTo, into: &output)
        output += Array(" ".utf8)
        string(envelope.messageID, into: &output)
        output += Array(")".utf8)
    }

    func body(_ index: Int, extensions: Bool, into output: inout [UInt8]) {
        let part = structure.parts[index]
        output += Array("(".utf8)
        if lowercased(part.type) == "multipart" {
            let children = structure.children(of: index)
            if children.isEmpty { emptyBody(extensions: extensions, into: &output) }
            for child in children { body(child, extensions: extensions, into: &output) }
            output += Array(" ".utf8)
            string(part.subtype, into: &output)
            if extensions {
                output += Array(" ".utf8)
                parameters(part.parameters, into: &output)
                extensionTail(part, into: &output)
            }
            output += Array(")".utf8)
            return
        }
        strings([part.type, part.subtype], into: &output)
        output += Array(" ".utf8)
        parameters(part.parameters, into: &output)
        output += Array(" ".utf8)
        strings([part.id, part.description, part.encoding ?? .sevenBit], into: &output)
        output += Array(" \(part.bodySize)".utf8)
        if lowercased(part.type) == "message" && lowercased(part.subtype) == "rfc822" {
            output += Array(" ".utf8)
            if part.kind == .message, part.envelope >= 0, index + 1 < part.subtreeEnd {
                envelope(part.envelope, into: &output)
                output += Array(" ".utf8)
                body(index + 1, extensions: extensions, into: &output)
            } else {
                output += Array("(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) ".utf8)
                emptyBody(extensions: extensions, into: &output)
            }
            output += Array(" \(part.bodyLines)".utf8)
        } else if lowercased(part.type) == "text" {
            output += Array(" \(part.bodyLines)".utf8)
        }
        if extensions {
            output += Array(" ".utf8)
            string(part.md5, into: &output)
            extensionTail(part, into: &output)
        }
        output += Array(")".utf8)
    }

    private func extensionTail(_ part: MIMEPart, into output: inout [UInt8]) {
        output += Array(" ".utf8)
        if let disposition = part.disposition {
            output += Array("(".utf8)
            string(disposition, into: &output)
            output += Array(" ".utf8)
            parameters(part.dispositionParameters, into: &output)
            output += Array(")".utf8)
        } else {
            output += Array("NIL".utf8)
        }
        output += Array(" ".utf8)
        if part.languages.isEmpty {
            output += Array("NIL".utf8)
        } else {
            let tags = structure.languageTags[part.languages].map { Self.quoted(Array(structure.bytes($0))) }
            output += Array("(".utf8) + tags.joined(separator: Array(" ".utf8)) + Array(")".utf8)
        }
        output += Array(" ".utf8)
        string(part.location, into: &output)
    }

    private func emptyBody(extensions: Bool, into output: inout [UInt8]) {
        output += Array("(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0".utf8)
        if extensions { output += Array(" NIL NIL NIL NIL".utf8) }
        output += Array(")".utf8)
    }

    private func parameters(_ range: Range<Int>, into output: inout [UInt8]) {
        if range.isEmpty {
            output += Array("NIL".utf8)
            return
        }
        let pairs = structure.parameters[range].map { parameter -> [UInt8] in
            if let extended = parameter.extendedValue {
                return Self.quoted(Array(structure.bytes(parameter.name)) + Array("*".utf8)) + Array(" ".utf8)
                    + Self.quoted(Array(structure.bytes(extended)))
            }
            return Self.quoted(Array(structure.bytes(parameter.name))) + Array(" ".utf8)
                + Self.quoted(Array(structure.bytes(parameter.value)))
        }
        output += Array("(".utf8) + pairs.joined(separator: Array(" ".utf8)) + Array(")".utf8)
    }

    /// The strings separated by spaces.
    private func strings(_ texts: [MIMEText?], into output: inout [UInt8]) {
        for (position, text) in texts.enumerated() {
            if position > 0 { output += Array(" ".utf8) }
            string(text, into: &output)
        }
    }

    private func string(_ text: MIMEText?, into output: inout [UInt8]) {
        guard let text else {
            output += Array("NIL".utf8)
            return
        }
        output += Self.quoted(Array(structure.bytes(text)))
    }

    /// A quoted string when every byte is printable ASCII or a tab, else a literal.
    static func quoted(_ bytes: [UInt8]) -> [UInt8] {
        let printable = bytes.allSatisfy { (0x20..<0x7F).contains($0) || $0 == 0x09 }
        guard printable else { return Array("{\(bytes.count)}\r\n".utf8) + bytes }
        var result = Array("\"".utf8)
        for byte in bytes {
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { result.append(UInt8(ascii: "\\")) }
            result.append(byte)
        }
        return result + Array("\"".utf8)
    }

    private func lowercased(_ text: MIMEText) -> String { structure.string(text).lowercased() }
}
