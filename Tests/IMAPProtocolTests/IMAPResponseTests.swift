// IMAPProtocolTests: response encoders (wire form), the response parser, and response round trips.

import Testing

@testable import IMAPProtocol

func owned(_ text: String) -> [UInt8] { Array(text.utf8) }

let sampleEnvelope = IMAPEnvelope(
    date: owned("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)"), subject: owned("IMAP4rev1 WG mtg summary and minutes"),
    from: [IMAPAddress(name: owned("Terry Gray"), mailbox: owned("gray"), host: owned("cac.washington.edu"))],
    sender: [IMAPAddress(name: owned("Terry Gray"), mailbox: owned("gray"), host: owned("cac.washington.edu"))],
    replyTo: [IMAPAddress(name: owned("Terry Gray"), mailbox: owned("gray"), host: owned("cac.washington.edu"))],
    to: [IMAPAddress(name: nil, mailbox: owned("imap"), host: owned("cac.washington.edu"))],
    cc: [
        IMAPAddress(name: nil, mailbox: owned("minutes"), host: owned("CNRI.Reston.VA.US")),
        IMAPAddress(name: owned("John Klensin"), mailbox: owned("KLENSIN"), host: owned("MIT.EDU")),
    ],
    messageID: owned("<B27397-0100000@cac.washington.edu>"))

let textPart = IMAPBodyPart(
    type: owned("TEXT"), subtype: owned("PLAIN"),
    parameters: [IMAPBodyParameter(name: owned("CHARSET"), value: owned("US-ASCII"))],
    encoding: owned("7BIT"), size: 3028, kind: .text(lines: 92))

let sampleStructure = IMAPBodyStructure.multipart(
    parts: [
        .singlePart(textPart),
        .singlePart(
            IMAPBodyPart(
                type: owned("MESSAGE"), subtype: owned("RFC822"), encoding: owned("7BIT"), size: 500,
                kind: .message(envelope: sampleEnvelope, body: .singlePart(textPart), lines: 12))),
        .singlePart(
            IMAPBodyPart(
                type: owned("APPLICATION"), subtype: owned("PDF"), id: owned("<id@x>"),
                description: owned("a \"quoted\" file"), encoding: owned("BASE64"), size: 4096, kind: .basic,
                md5: owned("Q2hlY2s="),
                extensionData: IMAPBodyExtension(
                    disposition: IMAPBodyDisposition(
                        kind: owned("attachment"),
                        parameters: [IMAPBodyParameter(name: owned("filename"), value: owned("r.pdf"))]),
                    languages: [owned("en"), owned("de")], location: owned("http://x/")))),
    ],
    subtype: owned("MIXED"), parameters: [IMAPBodyParameter(name: owned("BOUNDARY"), value: owned("xyz"))],
    extensionData: nil)

/// The non-extensible form carries no extension data.
let sampleBody = IMAPBodyStructure.multipart(
    parts: [
        .singlePart(textPart),
        .singlePart(
            IMAPBodyPart(
                type: owned("IMAGE"), subtype: owned("GIF"),
                encoding: owned("BASE64"), size: 9, kind: .basic)),
    ],
    subtype: owned("MIXED"), parameters: [], extensionData: nil)

/// One response of every case (and of the interesting variants), for round trips.
let sampleResponses: [IMAPResponse] = [
    .tagged(tag: owned("a001"), IMAPStatusResponse(.ok, text: owned("LOGIN completed"))),
    .tagged(tag: owned("A142"), IMAPStatusResponse(.ok, code: .readWrite, text: owned("SELECT completed"))),
    .tagged(tag: owned("a"), IMAPStatusResponse(.no, code: .authenticationFailed, text: owned("Invalid credentials"))),
    .tagged(tag: owned("b"), IMAPStatusResponse(.bad, text: owned("Unknown command"))),
    .tagged(
        tag: owned("A003"),
        IMAPStatusResponse(
            .ok, code: .appendUID(uidValidity: 38505, uids: owned("3955")),
            text: owned("APPEND completed"))),
    .tagged(
        tag: owned("A004"),
        IMAPStatusResponse(
            .ok,
            code: .copyUID(
                uidValidity: 38505, source: owned("304,319:320"),
                destination: owned("3956:3958")), text: owned("Done"))),
    .tagged(
        tag: owned("c"), IMAPStatusResponse(.ok, code: .modified(owned("7,9")), text: owned("Conditional STORE failed"))
    ),
    .continuation(owned("Ready for literal data")),
    .continuation(owned("")),
    .untagged(
        .condition(
            IMAPStatusResponse(
                .ok, code: .capability([owned("IMAP4rev1"), owned("AUTH=PLAIN")]),
                text: owned("Apus ready")))),
    .untagged(
        .condition(
            IMAPStatusResponse(
                .ok, code: .permanentFlags([owned("\\Deleted"), owned("\\Seen"), owned("\\*")]),
                text: owned("Limited")))),
    .untagged(.condition(IMAPStatusResponse(.ok, code: .uidValidity(3_857_529_045), text: owned("UIDs valid")))),
    .untagged(.condition(IMAPStatusResponse(.ok, code: .uidNext(4392), text: owned("Predicted next UID")))),
    .untagged(.condition(IMAPStatusResponse(.ok, code: .unseen(12), text: owned("Message 12 is first unseen")))),
    .untagged(
        .condition(IMAPStatusResponse(.ok, code: .highestModificationSequence(715_194_045_007), text: owned("x")))),
    .untagged(
        .condition(IMAPStatusResponse(.no, code: .badCharset([owned("UTF-8"), owned("US-ASCII")]), text: owned("x")))),
    .untagged(
        .condition(
            IMAPStatusResponse(
                .no, code: .other(name: owned("X-CUSTOM"), text: owned("some text")), text: owned("y")))),
    .untagged(.condition(IMAPStatusResponse(.bye, code: .unavailable, text: owned("Shutting down")))),
    .untagged(.condition(IMAPStatusResponse(.preauth, text: owned("Logged in as Smith")))),
    .untagged(.capability([owned("IMAP4rev1"), owned("IMAP4rev2"), owned("STARTTLS"), owned("LITERAL+")])),
    .untagged(.enabled([owned("CONDSTORE"), owned("QRESYNC")])),
    .untagged(
        .list(
            IMAPListResponse(
                attributes: [owned("\\HasNoChildren"), owned("\\Sent")], delimiter: UInt8(ascii: "/"),
                mailbox: owned("Sent Items")))),
    .untagged(
        .list(IMAPListResponse(attributes: [owned("\\Noselect")], delimiter: UInt8(ascii: "\\"), mailbox: owned("foo")))
    ),
    .untagged(
        .list(
            IMAPListResponse(
                attributes: [], delimiter: nil, mailbox: owned("INBOX"),
                extendedData: owned("(\"CHILDINFO\" (\"SUBSCRIBED\"))")))),
    .untagged(
        .list(
            IMAPListResponse(
                isLSUB: true, attributes: [], delimiter: UInt8(ascii: "."), mailbox: owned("#news.comp")))),
    .untagged(
        .mailboxStatus(
            mailbox: owned("blurdybloop"),
            IMAPMailboxStatus(
                messages: 231, uidNext: 44292, uidValidity: 7,
                unseen: 3, deleted: 1, size: 1_000_000_000_000, recent: 0,
                highestModificationSequence: 9_000_000_000_000,
                appendLimit: 1024))),
    .untagged(
        .flags([owned("\\Answered"), owned("\\Flagged"), owned("\\Deleted"), owned("\\Seen"), owned("\\Draft")])),
    .untagged(.exists(23)),
    .untagged(.recent(5)),
    .untagged(.expunge(44)),
    .untagged(.search([2, 84, 882], modificationSequence: nil)),
    .untagged(.search([], modificationSequence: nil)),
    .untagged(.search([2, 5], modificationSequence: 917_162_500)),
    .untagged(.extendedSearch(IMAPExtendedSearchResponse(tag: owned("A282"), min: 2, count: 3))),
    .untagged(
        .extendedSearch(
            IMAPExtendedSearchResponse(
                tag: owned("A283"), uid: true, max: 900, all: owned("2,10:11"),
                modificationSequence: 5))),
    .untagged(.vanished(earlier: true, uids: owned("300:310,405,411"))),
    .untagged(.vanished(earlier: false, uids: owned("405"))),
    .untagged(
        .fetch(
            12,
            [
                .flags([owned("\\Seen")]), .uid(4_827_313),
                .internalDate(
                    IMAPDateTime(
                        date: IMAPDate(year: 1996, month: 7, day: 7), hour: 2, minute: 44, second: 25, zoneMinutes: -420
                    )),
                .rfc822Size(4286), .modificationSequence(624_140_003),
            ])),
    .untagged(.fetch(1, [.envelope(sampleEnvelope)])),
    .untagged(.fetch(2, [.bodyStructure(sampleStructure, extensible: true)])),
    .untagged(.fetch(3, [.bodyStructure(sampleBody, extensible: false)])),
    .untagged(
        .fetch(
            4,
            [
                .body(section: owned("HEADER.FIELDS (DATE FROM)"), origin: nil, data: owned("Date: x\r\n\r\n")),
                .body(section: owned(""), origin: 0, data: owned("short")),
                .body(section: owned("3"), origin: nil, data: nil),
            ])),
    .untagged(
        .fetch(
            5,
            [
                .binary(section: owned("1"), data: [0x00, 0x01, 0x02]), .binarySize(section: owned("1"), size: 3),
                .binary(section: owned("2"), data: owned("plain")),
            ])),
    .untagged(
        .fetch(6, [.rfc822(data: owned("A\r\n")), .rfc822Header(data: owned("H: v\r\n")), .rfc822Text(data: nil)])),
    .untagged(
        .namespace(
            personal: [IMAPNamespace(prefix: owned(""), delimiter: UInt8(ascii: "/"))],
            otherUsers: [IMAPNamespace(prefix: owned("~"), delimiter: UInt8(ascii: "/"))], shared: [])),
    .untagged(
        .id([IMAPIDPair(field: owned("name"), value: owned("Apus")), IMAPIDPair(field: owned("os"), value: nil)])),
    .untagged(.id(nil)),
    .untagged(.quota(root: owned(""), [IMAPQuotaResource(name: owned("STORAGE"), usage: 10, limit: 512)])),
    .untagged(.quotaRoot(mailbox: owned("INBOX"), roots: [owned("")])),
    .untagged(.sort([2, 84, 882])),
    .untagged(.thread([])),
    // RFC 5256's example: (2)(3 6 (4 23)(44 7 96))
    .untagged(
        .thread([
            IMAPThread(members: [2]),
            IMAPThread(members: [3, 6], children: [IMAPThread(members: [4, 23]), IMAPThread(members: [44, 7, 96])]),
        ])),
    // ((3)(5)): a thread whose root is missing.
    .untagged(.thread([IMAPThread(members: [], children: [IMAPThread(members: [3]), IMAPThread(members: [5])])])),
]

/// Runs the response parser over `input` in pieces of `chunk` bytes, copying events out.
func parseResponses(_ input: [UInt8], chunk: Int, threshold: Int = 16 * 1024) -> [String] {
    parseResponses(input, chunkSizes: [chunk], threshold: threshold)
}

/// Runs the response parser over `input` in pieces of the given sizes (the last one repeats).
func parseResponses(_ input: [UInt8], chunkSizes: [Int], threshold: Int = 16 * 1024) -> [String] {
    var chunkIndex = 0
    var parser = IMAPResponseParser(streamingThreshold: threshold)
    var pending: [UInt8] = []
    var events: [String] = []
    var fed = 0
    var streamed: [UInt8] = []
    while true {
        if fed < input.count {
            let chunk = max(1, chunkSizes[min(chunkIndex, chunkSizes.count - 1)])
            chunkIndex += 1
            let end = min(input.count, fed + chunk)
            pending.append(contentsOf: input[fed..<end])
            fed = end
        }
        var stop = false
        while !stop {
            let (event, consumed) = pending.withUnsafeBytes { parser.parse($0) }
            switch event {
            case .needMoreBytes: stop = true
            case .response(let response): events.append("\(response)")
            case .streamBytes(let bytes): streamed.append(contentsOf: bytes.copyBytes())
            case .fetchStreamBegin(let number, let before, let body): events.append("begin \(number) \(before) \(body)")
            case .fetchStreamNext(let between, let body):
                events.append("bytes \(streamed.count)")
                streamed.removeAll()
                events.append("next \(between) \(body)")
            case .fetchStreamEnd(let after):
                events.append("bytes \(streamed.count)")
                streamed.removeAll()
                events.append("end \(after)")
            case .error(let reason):
                events.append("error \(reason)")
                return events
            }
            pending.removeFirst(consumed)
        }
        if fed >= input.count { return events }
    }
}

@Suite("Responses")
struct IMAPResponseTests {
    @Test("Every response encodes and parses back to the same value", arguments: sampleResponses)
    func roundTrip(_ response: IMAPResponse) {
        var output = IMAPOutputBuffer()
        output.write(response: response)
        let wire = String(decoding: output.bytes, as: UTF8.self)
        let events = parseResponses(output.bytes, chunk: output.bytes.count)
        #expect(events == ["\(response)"], "wire: \(wire.replacingCRLF)")
        // Drip-fed, and split at every index, the same.
        #expect(parseResponses(output.bytes, chunk: 1) == events)
        for split in 1..<output.bytes.count {
            let chunked = parseResponses(output.bytes, chunkSizes: [split, output.bytes.count])
            if chunked != events {
                Issue.record("split at \(split): \(chunked)")
                break
            }
        }
    }

    static let everyCode: [IMAPResponseCode] = [
        .alert, .parse, .readOnly, .readWrite, .tryCreate, .uidNotSticky, .noModificationSequence, .closed,
        .badCharset([]), .badCharset([owned("UTF-8")]), .capability([owned("IMAP4rev2")]), .permanentFlags([]),
        .uidNext(1), .uidValidity(2), .unseen(3), .appendUID(uidValidity: 4, uids: owned("5:6")),
        .copyUID(uidValidity: 7, source: owned("1,3"), destination: owned("10:11")), .highestModificationSequence(9),
        .modified(owned("1:2")), .unavailable, .authenticationFailed, .authorizationFailed, .expired, .privacyRequired,
        .contactAdmin, .noPermission, .inUse, .expungeIssued, .corruption, .serverBug, .clientBug, .cannotDo, .limit,
        .overQuota, .alreadyExists, .nonExistent, .tooBig, .notSaved, .compressionActive, .useAttribute, .unknownCTE,
        .hasChildren, .other(name: owned("X-ONE"), text: nil), .other(name: owned("X-TWO"), text: owned("a b")),
    ]

    @Test("Every response code round-trips in a tagged response", arguments: everyCode)
    func responseCodeRoundTrip(_ code: IMAPResponseCode) {
        let response = IMAPResponse.tagged(tag: owned("t"), IMAPStatusResponse(.no, code: code, text: owned("text")))
        var output = IMAPOutputBuffer()
        output.write(response: response)
        #expect(parseResponses(output.bytes, chunk: output.bytes.count) == ["\(response)"])
    }

    @Test("Encoders write the RFC's wire forms")
    func wireForms() {
        var output = IMAPOutputBuffer()
        output.writeTagged(tag: IMAPBytes("a1"), .ok, code: .readWrite, text: "SELECT completed")
        output.writeUntagged(number: 23, "EXISTS")
        output.writeContinuation()
        output.write(response: .untagged(.fetch(12, [.flags([owned("\\Seen")]), .uid(7)])))
        output.write(response: .untagged(.fetch(1, [.envelope(sampleEnvelope)])))
        let expected =
            "a1 OK [READ-WRITE] SELECT completed\r\n* 23 EXISTS\r\n+ Ready for literal data\r\n"
            + "* 12 FETCH (FLAGS (\\Seen) UID 7)\r\n"
            + "* 1 FETCH (ENVELOPE (\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" \"IMAP4rev1 WG mtg summary and minutes\" "
            + "((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
            + "((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
            + "((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) ((NIL NIL \"imap\" \"cac.washington.edu\")) "
            + "((NIL NIL \"minutes\" \"CNRI.Reston.VA.US\")(\"John Klensin\" NIL \"KLENSIN\" \"MIT.EDU\")) NIL NIL "
            + "\"<B27397-0100000@cac.washington.edu>\"))\r\n"
        #expect(String(decoding: output.bytes, as: UTF8.self) == expected)
    }

    @Test("A string with CR LF goes as a literal; a BINARY with NUL as literal8")
    func literalChoice() {
        var output = IMAPOutputBuffer()
        output.write(fetchItem: .body(section: owned(""), origin: nil, data: owned("a\r\nb")))
        output.write(byte: 0x20)
        output.write(fetchItem: .binary(section: owned(""), data: [0, 1]))
        #expect(output.bytes == owned("BODY[] {4}\r\na\r\nb BINARY[] ~{2}\r\n") + [0, 1])
    }

    @Test("THREAD writes the RFC 5256 form; a single branch continues the chain")
    func threadWireForm() {
        var output = IMAPOutputBuffer()
        output.write(
            response: sampleResponses.first { if case .untagged(.thread(let t)) = $0 { t.count == 2 } else { false } }!)
        output.write(response: .untagged(.thread([IMAPThread(members: [1], children: [IMAPThread(members: [2])])])))
        #expect(
            String(decoding: output.bytes, as: UTF8.self) == "* THREAD (2)(3 6 (4 23)(44 7 96))\r\n* THREAD (1 2)\r\n")
    }

    @Test("Capability sets are rendered once in both forms")
    func capabilitySet() {
        let set = IMAPCapabilitySet(["IMAP4rev1", "STARTTLS", "AUTH=PLAIN"])
        #expect(set.untaggedLine == owned("* CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN\r\n"))
        #expect(set.responseCode == owned("CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN"))
        #expect(set.contains("starttls"))
        #expect(!set.contains("LOGINDISABLED"))
    }

    @Test("A large FETCH body streams in slices, before and after items kept, drip-fed or whole")
    func streamingFetch() {
        let body = [UInt8](repeating: UInt8(ascii: "x"), count: 100_000)
        var output = IMAPOutputBuffer()
        output.beginFetch(sequenceNumber: 7)
        output.write(fetchItem: .uid(42))
        output.write(byte: 0x20)
        output.writeBodyLiteralHeader(section: IMAPBytes(""), origin: nil, size: UInt64(body.count))
        output.write(contentsOf: body)
        output.write(" FLAGS (\\Seen)")
        output.endFetch()
        output.write(response: .tagged(tag: owned("a"), IMAPStatusResponse(.ok, text: owned("done"))))
        let expected = [
            "begin 7 [IMAPProtocol.IMAPFetchItem.uid(42)] "
                + "IMAPStreamedBody(item: IMAPProtocol.IMAPStreamedBody.Item.body("
                + "section: [], origin: nil), size: 100000)",
            "bytes 100000",
            "end [IMAPProtocol.IMAPFetchItem.flags([[92, 83, 101, 101, 110]])]",
            "\(IMAPResponse.tagged(tag: owned("a"), IMAPStatusResponse(.ok, text: owned("done"))))",
        ]
        #expect(parseResponses(output.bytes, chunk: output.bytes.count) == expected)
        #expect(parseResponses(output.bytes, chunk: 4096) == expected)
        #expect(parseResponses(output.bytes, chunk: 7) == expected)
    }

    @Test("Malformed responses are errors, never traps")
    func malformed() {
        #expect(parseResponses(owned("* 1 FETCH (FLAGS (\\Seen)\r\n"), chunk: 100) == ["error Expected a space"])
        #expect(parseResponses(owned("* FROB\r\n"), chunk: 100) == ["error Unknown response"])
        #expect(parseResponses(owned("* OK [BADCHARSET (\r\n"), chunk: 100).first?.hasPrefix("error") == true)
        let deep = "* 1 FETCH (BODY " + String(repeating: "(", count: 3000) + "\r\n"
        #expect(parseResponses(owned(deep), chunk: 100) == ["error Too deeply nested"])
        #expect(parseResponses(owned("* OK x {18446744073709551616}\r\n"), chunk: 100) == ["error Response too large"])
    }

    @Test("Quoted strings of every length around the 8-byte steps: escapes and bad bytes found anywhere")
    func quotedAtEveryPosition() {
        func fetch(_ data: [UInt8]) -> [String] { parseResponses(owned("* 1 FETCH (BODY[] ") + data + owned(")\r\n"), chunk: 100) }
        for length in 0..<20 {
            let plain = [UInt8](repeating: UInt8(ascii: "x"), count: length)
            for position in 0...length {
                for special in [UInt8(ascii: "\""), UInt8(ascii: "\\")] {
                    var content = plain
                    content.insert(special, at: position)
                    var escaped = plain
                    escaped.insert(contentsOf: [UInt8(ascii: "\\"), special], at: position)
                    let literal = owned("{\(content.count)}\r\n") + content
                    #expect(fetch(literal).first?.hasPrefix("error") == false)
                    #expect(fetch([0x22] + escaped + [0x22]) == fetch(literal))
                }
                for (bad, reason) in [(UInt8(0), "NUL in quoted string"), (0x0D, "Invalid character in quoted string")] {
                    var content = plain
                    content.insert(bad, at: position)
                    #expect(fetch([0x22] + content + [0x22]) == ["error \(reason)"])
                }
                var badEscape = plain
                badEscape.insert(contentsOf: owned("\\a"), at: position)
                #expect(fetch([0x22] + badEscape + [0x22]) == ["error Invalid escape in quoted string"])
            }
        }
    }

    @Test("A server's ID answer is read in place; NIL and malformed lines give nil")
    func idAnswerView() {
        func pairs(_ line: String) -> [String]? {
            Array(line.utf8).withUnsafeBytes { bytes in
                IMAPIDParameters(idResponse: bytes).map { parameters in
                    parameters.map { "\($0.field.string)=\($0.value?.string ?? "NIL")" }
                }
            }
        }
        #expect(pairs("* ID (\"name\" \"Apus\" \"x-apus-loop\" \"1\" \"x-apus-loops\" \"2\")\r\n")
                == ["name=Apus", "x-apus-loop=1", "x-apus-loops=2"])
        #expect(pairs("* id (\"os\" NIL \"q\" {1}\r\nx)\r\n") == ["os=NIL", "q=x"])
        #expect(pairs("* ID ()\r\n") == [])
        for notOne in ["* ID NIL\r\n", "* CAPABILITY IMAP4rev1\r\n", "* ID (\"name\")\r\n", "* ID (\"a\" \"b\"\r\n",
                       "a1 ID (\"a\" \"b\")\r\n", "* IDX (\"a\" \"b\")\r\n"] {
            #expect(pairs(notOne) == nil, "\(notOne)")
        }
    }

    @Test("A NUL anywhere in a literal is refused (checked a word at a time), in a literal8 allowed")
    func nulInLiteral() {
        for length in [1, 7, 8, 9, 16, 23] {
            let clean = [UInt8](repeating: UInt8(ascii: "x"), count: length)
            let prefix = owned("* 1 FETCH (BODY[] {\(length)}\r\n")
            #expect(parseResponses(prefix + clean + owned(")\r\n"), chunk: 100).first?.hasPrefix("error") == false)
            for position in 0..<length {
                var data = clean
                data[position] = 0
                #expect(parseResponses(prefix + data + owned(")\r\n"), chunk: 100) == ["error NUL in literal"])
                let binary = owned("* 1 FETCH (BINARY[] ~{\(length)}\r\n") + data + owned(")\r\n")
                #expect(parseResponses(binary, chunk: 100).first?.hasPrefix("error") == false)
            }
        }
    }
}
