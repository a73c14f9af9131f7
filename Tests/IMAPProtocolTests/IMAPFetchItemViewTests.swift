// IMAPProtocolTests: FETCH items visited in place (IMAPFetchItemView) and value digests.

import Testing

@testable import IMAPProtocol

/// Parses all of `input` visiting FETCH items: the events, and each visited item described (views
/// are copied out as text; envelopes and body structures as their digests).
func visitResponses(_ input: [UInt8], threshold: Int = 16 * 1024) -> (events: [String], items: [String]) {
    var parser = IMAPResponseParser(streamingThreshold: threshold)
    var events: [String] = []
    var items: [String] = []
    var offset = 0
    input.withUnsafeBytes { buffer in
        while offset < buffer.count {
            let rest = UnsafeRawBufferPointer(rebasing: buffer[offset...])
            let (event, consumed) = parser.parse(rest) { number, item in
                switch item {
                case .uid(let uid): items.append("\(number) uid \(uid)")
                case .rfc822Size(let size): items.append("\(number) size \(size)")
                case .flags(let flags): items.append("\(number) flags \(flags.map(\.string))")
                case .envelope(let text): items.append("\(number) envelope \(text.digest)")
                case .bodyStructure(let text, let extensible):
                    items.append("\(number) body \(extensible) \(text.digest)")
                case .other(let text): items.append("\(number) other \(text.string)")
                }
            }
            switch event {
            case .needMoreBytes: return
            case .response(let response): events.append("\(response)")
            case .streamBytes: break
            case .fetchStreamBegin(let number, let before, _): events.append("begin \(number) \(before)")
            case .fetchStreamNext(let between, _): events.append("next \(between)")
            case .fetchStreamEnd(let after): events.append("end \(after)")
            case .error(let reason):
                events.append("error \(reason)")
                return
            }
            offset += consumed
        }
    }
    return (events, items)
}

/// The digest of one value's wire text.
func digest(_ text: String) -> UInt64 {
    var bytes = Array(text.utf8)
    return bytes.withUnsafeMutableBytes { IMAPValueText(raw: IMAPBytes(UnsafeRawBufferPointer($0))).digest }
}

func wire(_ response: IMAPResponse) -> [UInt8] {
    var output = IMAPOutputBuffer()
    output.write(response: response)
    return output.bytes
}

@Suite("FETCH item views")
struct IMAPFetchItemViewTests {
    @Test("Visiting a FETCH hands over every item in place and leaves the event's items empty")
    func visitsEveryItem() {
        let response = IMAPResponse.untagged(.fetch(7, [
            .uid(42), .rfc822Size(3028), .flags([owned("\\Seen"), owned("$LoadA")]), .envelope(sampleEnvelope),
            .bodyStructure(sampleStructure, extensible: true), .bodyStructure(sampleBody, extensible: false),
            .body(section: owned("HEADER.FIELDS (FROM TO)"), origin: nil, data: owned("From: a\r\n\r\n")),
        ]))
        var envelopeOnly = IMAPOutputBuffer()
        envelopeOnly.write(envelope: sampleEnvelope)
        var structureOnly = IMAPOutputBuffer()
        structureOnly.write(bodyStructure: sampleStructure, extensible: true)
        let (events, items) = visitResponses(wire(response))
        #expect(events == ["\(IMAPResponse.untagged(.fetch(7, [])))"])
        #expect(items == [
            "7 uid 42", "7 size 3028", "7 flags [\"\\\\Seen\", \"$LoadA\"]",
            "7 envelope \(digest(envelopeOnly.bytes.string))", "7 body true \(digest(structureOnly.bytes.string))",
            items[5], "7 other BODY[HEADER.FIELDS (FROM TO)] {11}\r\nFrom: a\r\n\r\n",
        ])
        #expect(items[5].hasPrefix("7 body false "))
        // An empty flag list has no flags.
        #expect(visitResponses(owned("* 1 FETCH (FLAGS ())\r\n")).items == ["1 flags []"])
    }

    @Test("Every response parses the same visited: FETCH items go to the visitor, the rest is unchanged")
    func otherResponsesUnchanged() {
        for response in sampleResponses {
            let bytes = wire(response)
            let (events, _) = visitResponses(bytes)
            if case .untagged(.fetch(let number, _)) = response {
                #expect(events == ["\(IMAPResponse.untagged(.fetch(number, [])))"])
            } else {
                #expect(events == ["\(response)"])
            }
        }
    }

    @Test("Visiting checks the grammar as building does: a malformed FETCH is an error either way")
    func malformedIsStillAnError() {
        let malformed = [
            "* 1 FETCH (ENVELOPE (NIL \"s\" NIL NIL NIL NIL NIL NIL NIL))\r\n",  // a field short
            "* 1 FETCH (ENVELOPE (NIL NIL (\"a\" NIL \"b\") NIL NIL NIL NIL NIL NIL NIL))\r\n",  // address not in a list
            "* 1 FETCH (BODYSTRUCTURE (\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\"))\r\n",  // no size
            "* 1 FETCH (BODYSTRUCTURE (\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 10))\r\n",  // TEXT without lines
            "* 1 FETCH (FLAGS (\\Seen  \\Draft))\r\n",
            "* 1 FETCH (UID 0)\r\n",
        ]
        for text in malformed {
            #expect(parseResponses(owned(text), chunk: 1000).first?.hasPrefix("error") == true, "\(text)")
            #expect(visitResponses(owned(text)).events.first?.hasPrefix("error") == true, "\(text)")
        }
    }

    @Test("A streamed FETCH: items before and after the literal are visited with its sequence number")
    func streamedItemsAreVisited() {
        var output = IMAPOutputBuffer()
        output.beginFetch(sequenceNumber: 9)
        output.write(fetchItem: .uid(5))
        output.write(byte: 0x20)
        output.writeBodyLiteralHeader(section: IMAPBytes(""), origin: nil, size: 100)
        output.write(contentsOf: [UInt8](repeating: UInt8(ascii: "x"), count: 100))
        output.write(" RFC822.SIZE 100")
        output.endFetch()
        let (events, items) = visitResponses(output.bytes, threshold: 10)
        #expect(events == ["begin 9 []", "end []"])
        #expect(items == ["9 uid 5", "9 size 100"])
    }

    @Test("A digest follows the value, not its spelling; any change of the value changes it")
    func digestIsOfTheValue() {
        let quoted = "(\"Mon, 7 Dec 2026\" \"a \\\"b\\\"\" ((\"N\" NIL \"m\" \"h\")) NIL NIL NIL NIL NIL NIL \"<id>\")"
        let literal = "(\"Mon, 7 Dec 2026\" {5}\r\na \"b\" ((\"N\" nil \"m\" \"h\")) Nil NIL NIL NIL NIL NIL \"<id>\")"
        #expect(digest(quoted) == digest(literal))
        // Strings of every length around the 8-byte steps, with an escaped quote or backslash anywhere.
        for length in 0..<20 {
            let plain = String(repeating: "x", count: length)
            #expect(digest("(\"\(plain)\")") == digest("({\(length)}\r\n\(plain))"))
            for position in 0...length {
                for special in ["\"", "\\"] {
                    var content = Array(plain)
                    content.insert(Character(special), at: position)
                    let escaped = String(content).replacing(special, with: "\\" + special)
                    #expect(digest("(\"\(escaped)\" NIL)") == digest("({\(length + 1)}\r\n\(String(content)) NIL)"))
                    #expect(digest("(\"\(escaped)\" NIL)") != digest("(\"\(plain)\" NIL)"))
                }
            }
        }
        #expect(digest("(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 0010 1)") == digest("(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 10 1)"))
        let changes = [
            quoted.replacing("Mon", with: "Tue"),  // a string's content
            quoted.replacing("\"N\"", with: "NIL"),  // a string became NIL
            quoted.replacing("\"N\"", with: "\"\""),  // ... or empty
            quoted.replacing("((\"N\" NIL \"m\" \"h\"))", with: "((\"N\" NIL \"m\" \"h\")(\"N\" NIL \"m\" \"h\"))"),  // an address more
            quoted.replacing("\"m\" \"h\"", with: "\"mh\" \"\""),  // bytes moved between strings
        ]
        for changed in changes {
            #expect(changed != quoted)
            #expect(digest(changed) != digest(quoted), "\(changed)")
        }
        #expect(digest("(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 10 1)") != digest("(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 11 1)"))
    }
}

extension [UInt8] {
    var string: String { String(decoding: self, as: UTF8.self) }
}
