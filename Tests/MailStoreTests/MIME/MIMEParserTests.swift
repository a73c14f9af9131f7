// MIMEParserTests: structure, offsets, limits and robustness of the one-pass MIME parser.

import Testing

@testable import MailStore

/// Test helpers over a parsed structure.
extension MessageStructure {
    func text(_ value: MIMEText?) -> String? { value.map { string($0) } }

    func bytes(of range: Range<Int>, in message: [UInt8]) -> String {
        String(decoding: message[range], as: UTF8.self)
    }

    /// The `name` parameter's value of `part`, decoded.
    func parameter(_ name: String, of part: Int) -> String? {
        parameters[parts[part].parameters].first { string($0.name).lowercased() == name }.map { string($0.value) }
    }

    func dispositionParameter(_ name: String, of part: Int) -> String? {
        parameters[parts[part].dispositionParameters].first { string($0.name).lowercased() == name }
            .map { string($0.value) }
    }
}

/// `count` multiparts nested in one another, each with one text part beside its child.
func deeplyNestedMessage(depth count: Int) -> [UInt8] {
    var text = "From: deep@example.org\r\nSubject: deep\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n"
    for level in 1..<count {
        text += "--b\(level - 1)\r\nContent-Type: multipart/mixed; boundary=\"b\(level)\"\r\n\r\n"
    }
    text += "--b\(count - 1)\r\nContent-Type: text/plain\r\n\r\ninnermost\r\n"
    for level in stride(from: count - 1, through: 0, by: -1) { text += "--b\(level)--\r\n" }
    return Array(text.utf8)
}

@Suite("MIME parser")
struct MIMEParserTests {
    @Test("every corpus message yields a well-formed tree whose offsets stay inside the message and its parent")
    func corpusTreesAreWellFormed() {
        for name in Corpus.names {
            let message = Corpus.message(name)
            let structure = MessageStructure(parsing: message)
            #expect(structure.parts[0].headerStart == 0, "\(name)")
            #expect(structure.parts[0].bodyEnd == message.count, "\(name)")
            for (index, part) in structure.parts.enumerated() {
                #expect(part.headerStart <= part.bodyStart && part.bodyStart <= part.bodyEnd, "\(name) \(index)")
                #expect(part.bodyEnd <= message.count, "\(name) \(index)")
                if part.parent >= 0 {
                    let parent = structure.parts[part.parent]
                    #expect(part.headerStart >= parent.bodyStart && part.bodyEnd <= parent.bodyEnd, "\(name) \(index)")
                }
            }
        }
    }

    @Test("offsets of a nested message point at the exact bytes of each header and body")
    func offsetsAreExact() {
        let message = Corpus.message("03-rfc822-attachment")
        let structure = MessageStructure(parsing: message)
        let text = structure.children(of: 0)[0]
        #expect(structure.bytes(of: structure.parts[text].headerRange, in: message)
            == "Content-Type: text/plain; charset=us-ascii\r\n\r\n")
        #expect(structure.bytes(of: structure.parts[text].bodyRange, in: message)
            == "See the forwarded message below.\r\n")
        let attached = structure.children(of: 0)[1]
        #expect(structure.parts[attached].kind == .message)
        let inner = attached + 1
        #expect(structure.bytes(of: structure.parts[inner].headerRange, in: message).hasPrefix("Date: Tue, 3 Mar"))
        let innerEnvelope = structure.envelopes[structure.parts[attached].envelope]
        #expect(structure.text(innerEnvelope.subject) == "Meeting notes")
        #expect(structure.text(innerEnvelope.inReplyTo) == "<agenda-1@example.com>")
        let alternatives = structure.children(of: inner)
        #expect(alternatives.map { structure.bytes(of: structure.parts[$0].bodyRange, in: message) }
            == ["Notes: ship it.\r\n", "<p>Notes: ship it.</p>\r\n"])
    }

    @Test("bare LF line ends: parts found, offsets exact, no CR assumed")
    func bareLineFeeds() {
        let message = Corpus.message("07-lf-only")
        #expect(!message.contains(13))
        let structure = MessageStructure(parsing: message)
        let children = structure.children(of: 0)
        #expect(children.count == 2)
        #expect(structure.bytes(of: structure.parts[children[0]].bodyRange, in: message) == "line one\nline two\n")
        #expect(structure.bytes(of: structure.parts[children[0]].headerRange, in: message)
            == "Content-Type: text/plain; charset=us-ascii\n\n")
    }

    @Test("an empty message is one empty text/plain part with an all-NIL envelope")
    func emptyMessage() {
        let structure = MessageStructure(parsing: [UInt8]())
        #expect(structure.parts.count == 1)
        #expect(structure.parts[0].bodySize == 0)
        #expect(structure.text(structure.parts[0].type) == "text")
        #expect(structure.envelope == MIMEEnvelope())
        #expect(structure.debugIMAPDescription == "(ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODYSTRUCTURE "
            + "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL))")
    }

    @Test("a header with no empty line and no body still gives its envelope")
    func headerOnly() {
        let message = Corpus.message("13-header-only")
        let structure = MessageStructure(parsing: message)
        #expect(structure.text(structure.envelope.subject) == "Header only, no empty line, no body")
        #expect(structure.parts[0].bodyStart == message.count && structure.parts[0].bodySize == 0)
    }

    @Test("10,000 nested multiparts: no trap, depth capped, the rest is an opaque leaf")
    func tenThousandDeep() {
        let message = deeplyNestedMessage(depth: 10_000)
        let structure = MessageStructure(parsing: message)
        let deepest = structure.parts.max { $0.depth < $1.depth }!
        #expect(deepest.depth == MIMELimits.maximumNestingDepth)
        #expect(deepest.kind == .leaf)
        #expect(structure.parts.count == MIMELimits.maximumNestingDepth + 1)
        #expect(structure.parts.allSatisfy { $0.bodyEnd <= message.count })
        var rendered: [UInt8] = []
        structure.writeIMAPDescription(into: &rendered)
        #expect(IMAPTree.parse(rendered) != nil)
    }

    @Test("10,000 nested message/rfc822 parts: capped too")
    func deepMessageNesting() {
        var text = ""
        for level in 0..<10_000 { text += "Subject: level \(level)\r\nContent-Type: message/rfc822\r\n\r\n" }
        text += "Subject: bottom\r\n\r\nbody\r\n"
        let structure = MessageStructure(parsing: Array(text.utf8))
        #expect(structure.parts.count == MIMELimits.maximumNestingDepth + 1)
        #expect(structure.envelopes.count == MIMELimits.maximumNestingDepth + 1)
        #expect(structure.parts.last!.kind == .leaf)
    }

    @Test("more parts than the limit: later delimiters start no part and the structure stays whole")
    func partCountLimit() {
        var text = "Content-Type: multipart/mixed; boundary=p\r\n\r\n"
        for index in 0..<(MIMELimits.maximumPartCount + 50) { text += "--p\r\n\r\npart \(index)\r\n" }
        text += "--p--\r\n"
        let message = Array(text.utf8)
        let structure = MessageStructure(parsing: message)
        #expect(structure.parts.count == MIMELimits.maximumPartCount)
        let last = structure.parts[structure.parts.count - 1]
        #expect(structure.bytes(of: last.bodyRange, in: message).hasSuffix("part \(MIMELimits.maximumPartCount + 49)"))
    }

    @Test("RFC 2231: continuations joined, percent-decoded, charset converted to UTF-8")
    func rfc2231Parameters() {
        let structure = MessageStructure(parsing: Corpus.message("05-rfc2231-filename"))
        let parts = structure.children(of: 0)
        #expect(structure.dispositionParameter("filename", of: parts[0]) == "日本語の文書.txt")
        #expect(structure.parameter("name", of: parts[0]) == "日本語の文書.txt")
        #expect(structure.parameter("name", of: parts[1]) == "été.txt")
        #expect(structure.dispositionParameter("title", of: parts[1]) == "Part one, part two")
        #expect(structure.parameter("title", of: parts[2]) == "This is even more ***fun*** isn't it!")
    }

    @Test("RFC 2231 oddities: sections out of order, a gap, no section 0, each name gives one parameter")
    func rfc2231Oddities() {
        let text = "Content-Type: application/x; a*1=\"two\"; a*0=\"one-\"; b*1=\"orphan\"; b*2=x; "
            + "c*0=\"kept\"; c*2=\"after gap\"; d*=utf-8''%E2%82%AC\r\n\r\n"
        let structure = MessageStructure(parsing: Array(text.utf8))
        let names = structure.parameters[structure.parts[0].parameters].map { structure.string($0.name) }
        #expect(names == ["a", "b", "c", "d"])
        #expect(structure.parameter("a", of: 0) == "one-two")
        #expect(structure.parameter("b", of: 0) == "")
        #expect(structure.parameter("c", of: 0) == "kept")
        #expect(structure.parameter("d", of: 0) == "€")
    }

    @Test("parameters per field are capped")
    func parameterLimit() {
        var text = "Content-Type: application/x"
        for index in 0..<(MIMELimits.maximumParametersPerField + 20) { text += "; p\(index)=v" }
        let structure = MessageStructure(parsing: Array((text + "\r\n\r\n").utf8))
        #expect(structure.parts[0].parameters.count == MIMELimits.maximumParametersPerField)
    }

    @Test("addresses per message are capped")
    func addressLimit() {
        let list = (0..<(MIMELimits.maximumAddressCount + 10)).map { "u\($0)@x.org" }.joined(separator: ", ")
        let structure = MessageStructure(parsing: Array(("To: " + list + "\r\nCc: a@b.c\r\n\r\n").utf8))
        #expect(structure.addresses.count == MIMELimits.maximumAddressCount)
        #expect(structure.envelope.cc.isEmpty)
    }

    @Test("RFC 2045 defaults: no Content-Type is text/plain us-ascii 7bit; digest parts are message/rfc822")
    func defaults() {
        let plain = MessageStructure(parsing: Corpus.message("09-no-content-type"))
        #expect(plain.text(plain.parts[0].type) == "text" && plain.text(plain.parts[0].subtype) == "plain")
        #expect(plain.parameter("charset", of: 0) == "us-ascii")
        #expect(plain.parts[0].encoding == nil)
        let digest = MessageStructure(parsing: Corpus.message("10-digest"))
        let kinds = digest.children(of: 0).map { digest.parts[$0].kind }
        #expect(kinds == [.message, .message, .leaf])
        #expect(digest.text(digest.envelopes[digest.parts[digest.children(of: 0)[1]].envelope].subject)
            == "Second post")
    }

    @Test("envelope: groups, routes, comments as names, sender and reply-to defaults")
    func envelopeAddresses() {
        let structure = MessageStructure(parsing: Corpus.message("11-groups"))
        let envelope = structure.envelope
        let to = structure.addresses[envelope.to].map { [structure.text($0.name), structure.text($0.mailbox),
                                                          structure.text($0.host)] }
        #expect(to == [[nil, "Team", nil], [nil, "alice", "example.org"], ["Bob B.", "bob", "example.org"],
                       [nil, nil, nil], [nil, "undisclosed-recipients", nil], [nil, nil, nil]])
        let cc = Array(structure.addresses[envelope.cc])
        #expect(structure.text(cc[0].adl) == "@relay1.example,@relay2.example")
        #expect(structure.text(cc[1].name) == "Carl Comment")
        let defaulted = MessageStructure(parsing: Corpus.message("20-folded-and-defaults"))
        #expect(defaulted.envelope.sender == defaulted.envelope.from)
        #expect(defaulted.envelope.replyTo == defaulted.envelope.from)
        #expect(defaulted.text(defaulted.envelope.messageID) == " <folded-20@example.org>")
    }

    @Test("malformed input never traps", arguments: [
        "Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n--\r\n",
        "Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n--x\r\n--x--\r\n--x--\r\n",
        "Content-Type: multipart/mixed; boundary=x\r\n\r\n--x",
        "Content-Type: message/rfc822\r\n\r\n",
        "Content-Type: message/rfc822",
        "To: \"unterminated\r\nFrom: (unterminated comment\r\nCc: <a@b\r\nBcc: ;;;,,,:::<<>>@@@\r\n\r\n",
        "Content-Type: text/plain; a*0*=%; a*1*=%Z; b*=''; c*99999999999999999999=x; d*=utf-8'\r\n\r\n",
        "Subject: =?utf-8?B?\r\n\r\n",
        ":\r\n \r\n\t\r\n\r\n",
        "\r\n\r\n\r\n",
        "\n",
        "\r",
    ])
    func malformed(text: String) {
        let message = Array(text.utf8)
        let structure = MessageStructure(parsing: message)
        #expect(structure.parts[0].bodyEnd == message.count)
        var rendered: [UInt8] = []
        structure.writeIMAPDescription(into: &rendered)
        #expect(IMAPTree.parse(rendered) != nil)
    }

    @Test("every prefix of a corpus message parses without trapping")
    func everyPrefix() {
        let message = Corpus.message("02-nested-mixed-alternative-related")
        for length in stride(from: 0, through: message.count, by: 7) {
            let structure = MessageStructure(parsing: Array(message[0..<length]))
            #expect(structure.parts[0].bodyEnd == length)
        }
    }
}
