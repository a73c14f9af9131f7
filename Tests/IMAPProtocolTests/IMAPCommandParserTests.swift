// IMAPProtocolTests: the command parser over fixtures from the RFCs, and its limits.

import Testing

@testable import IMAPProtocol

/// Parses one command line (which must end in CRLF) and hands the result to `body` while the views live.
func withParsedCommand(
    _ line: String, limits: IMAPLimits = IMAPLimits(), _ body: (IMAPParseResult<IMAPTaggedCommand>) -> Void
) {
    let input = Array(line.utf8)
    input.withUnsafeBytes { body(IMAPCommandParser(limits: limits).parseCommand($0)) }
}

func set(_ text: StaticString) -> IMAPSequenceSet { IMAPSequenceSet(IMAPBytes(text))! }
func mailbox(_ text: StaticString) -> IMAPMailboxName { IMAPMailboxName(text) }
func flags(_ text: StaticString) -> IMAPFlagList { IMAPFlagList(IMAPBytes(text))! }
func fetchList(_ text: StaticString) -> IMAPFetchAttributeList { IMAPFetchAttributeList(IMAPBytes(text))! }
func program(_ text: StaticString, charset: IMAPString? = nil) -> IMAPSearchProgram {
    IMAPSearchProgram(charset: charset, IMAPBytes(text))!
}

/// A line and the command it must give. Expected values are built from static text, so they never expire.
struct CommandFixture: CustomTestStringConvertible, Sendable {
    let line: String
    let expected: @Sendable () -> IMAPCommand
    var testDescription: String { line.replacingCRLF }
}

extension String {
    var replacingCRLF: String { split(separator: "\r\n", omittingEmptySubsequences: false).joined(separator: "⏎") }
}

let commandFixtures: [CommandFixture] = [
    CommandFixture(line: "abcd CAPABILITY\r\n") { .capability },
    CommandFixture(line: "a002 NOOP\r\n") { .noop },
    CommandFixture(line: "A023 LOGOUT\r\n") { .logout },
    CommandFixture(line: "a001 starttls\r\n") { .startTLS },
    CommandFixture(line: "a001 AUTHENTICATE GSSAPI\r\n") {
        .authenticate(mechanism: IMAPBytes("GSSAPI"), initialResponse: nil)
    },
    CommandFixture(line: "A01 AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n") {
        .authenticate(mechanism: IMAPBytes("PLAIN"), initialResponse: IMAPBytes("dGVzdAB0ZXN0AHRlc3Q="))
    },
    CommandFixture(line: "A01 AUTHENTICATE EXTERNAL =\r\n") {
        .authenticate(mechanism: IMAPBytes("EXTERNAL"), initialResponse: .empty)
    },
    CommandFixture(line: "a001 LOGIN SMITH SESAME\r\n") {
        .login(user: IMAPString("SMITH"), password: IMAPString("SESAME"))
    },
    CommandFixture(line: "a001 LOGIN \"fred\" \"a\\\"b\\\\c\"\r\n") {
        .login(user: IMAPString("fred"), password: IMAPString(raw: IMAPBytes("a\\\"b\\\\c"), hasEscapes: true))
    },
    CommandFixture(line: "a LOGIN {4+}\r\nfred {3+}\r\nx y\r\n") {
        .login(user: IMAPString("fred"), password: IMAPString("x y"))
    },
    CommandFixture(line: "t2 ENABLE CONDSTORE QRESYNC\r\n") { .enable(IMAPAtomList(IMAPBytes("CONDSTORE QRESYNC"))!) },
    CommandFixture(line: "A142 SELECT INBOX\r\n") { .select(mailbox("INBOX"), IMAPSelectParameters()) },
    CommandFixture(line: "A142 SELECT inbox (CONDSTORE)\r\n") {
        .select(mailbox("INBOX"), IMAPSelectParameters(condStore: true))
    },
    CommandFixture(line: "A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n") {
        .select(
            mailbox("INBOX"),
            IMAPSelectParameters(
                qresync: IMAPQResyncParameters(
                    uidValidity: 67_890_007, modificationSequence: 20_050_715_194_045_000,
                    knownUIDs: set("41,43:211,214:541"))))
    },
    CommandFixture(
        line: "B04 SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541 (1:15,19 41:55,77)))\r\n"
    ) {
        .select(
            mailbox("INBOX"),
            IMAPSelectParameters(
                qresync: IMAPQResyncParameters(
                    uidValidity: 67_890_007, modificationSequence: 90_060_115_194_045_000,
                    knownUIDs: set("41:211,214:541"),
                    knownSequenceSet: set("1:15,19"), knownUIDSet: set("41:55,77"))))
    },
    CommandFixture(line: "A932 EXAMINE blurdybloop\r\n") { .examine(mailbox("blurdybloop"), IMAPSelectParameters()) },
    CommandFixture(line: "A003 CREATE owatagusiam/\r\n") { .create(mailbox("owatagusiam/"), specialUse: nil) },
    CommandFixture(line: "t1 CREATE \"Important Messages\" (USE (\\Important))\r\n") {
        .create(mailbox("Important Messages"), specialUse: flags("\\Important"))
    },
    CommandFixture(line: "A683 DELETE blurdybloop\r\n") { .delete(mailbox("blurdybloop")) },
    CommandFixture(line: "A683 RENAME blurdybloop sarasoop\r\n") {
        .rename(from: mailbox("blurdybloop"), to: mailbox("sarasoop"))
    },
    CommandFixture(line: "A002 SUBSCRIBE #news.comp.mail.mime\r\n") { .subscribe(mailbox("#news.comp.mail.mime")) },
    CommandFixture(line: "A002 UNSUBSCRIBE #news.comp.mail.mime\r\n") { .unsubscribe(mailbox("#news.comp.mail.mime")) },
    CommandFixture(line: "A101 LIST \"\" \"\"\r\n") {
        .list(IMAPListCommand(reference: mailbox(""), patterns: IMAPPatternList("\"\"")))
    },
    CommandFixture(line: "A202 LIST ~/Mail/ %\r\n") {
        .list(IMAPListCommand(reference: mailbox("~/Mail/"), patterns: IMAPPatternList("%")))
    },
    CommandFixture(
        line:
            "A02 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (\"%\" \"Other/%\") "
                + "RETURN (CHILDREN STATUS (MESSAGES UNSEEN))\r\n"
    ) {
        .list(
            IMAPListCommand(
                selectOptions: [.subscribed, .recursiveMatch], reference: mailbox(""),
                patterns: IMAPPatternList(text: IMAPBytes("\"%\" \"Other/%\""), count: 2, isList: true),
                returnOptions: [.children, .status], statusAttributes: [.messages, .unseen]))
    },
    CommandFixture(line: "A002 LSUB \"#news.\" \"comp.mail.*\"\r\n") {
        .lsub(reference: mailbox("#news."), pattern: IMAPString("comp.mail.*"))
    },
    CommandFixture(line: "A001 NAMESPACE\r\n") { .namespace },
    CommandFixture(line: "A042 STATUS blurdybloop (UIDNEXT MESSAGES SIZE HIGHESTMODSEQ DELETED)\r\n") {
        .status(mailbox("blurdybloop"), [.uidNext, .messages, .size, .highestModificationSequence, .deleted])
    },
    CommandFixture(line: "A003 APPEND saved-messages (\\Seen) \" 7-Feb-1994 21:52:25 -0800\" {310}\r\n") {
        .append(
            mailbox("saved-messages"),
            IMAPAppendMessage(
                flags: flags("\\Seen"),
                internalDate: IMAPDateTime(
                    date: IMAPDate(year: 1994, month: 2, day: 7), hour: 21, minute: 52, second: 25,
                    zoneMinutes: -480),
                literal: IMAPLiteralHeader(size: 310, isSynchronizing: true, isBinary: false)))
    },
    CommandFixture(line: "A002 IDLE\r\n") { .idle },
    CommandFixture(line: "FXXZ CHECK\r\n") { .check },
    CommandFixture(line: "A341 CLOSE\r\n") { .close },
    CommandFixture(line: "A342 UNSELECT\r\n") { .unselect },
    CommandFixture(line: "A202 EXPUNGE\r\n") { .expunge },
    CommandFixture(line: "A003 UID EXPUNGE 3000:3002\r\n") { .uidExpunge(set("3000:3002")) },
    CommandFixture(line: "A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n") {
        .search(IMAPSearchCommand(program: program("FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"")), uid: false)
    },
    CommandFixture(line: "A284 SEARCH CHARSET UTF-8 TEXT {12+}\r\nXXXXXXXXXXXX\r\n") {
        .search(IMAPSearchCommand(program: program("TEXT XXXXXXXXXXXX", charset: IMAPString("UTF-8"))), uid: false)
    },
    CommandFixture(line: "A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994\r\n") {
        .search(
            IMAPSearchCommand(returnOptions: [.min, .count], program: program("FLAGGED SINCE 1-Feb-1994")), uid: false)
    },
    CommandFixture(
        line: "A1 UID SEARCH RETURN (SAVE) MODSEQ \"/flags/\\\\draft\" all 620162338 UID $ OR 1:5 (SEEN LARGER 5)\r\n"
    ) {
        .search(
            IMAPSearchCommand(
                returnOptions: [.save],
                program: program("MODSEQ \"/flags/\\\\draft\" all 620162338 UID $ OR 1:5 (SEEN LARGER 5)")), uid: true)
    },
    CommandFixture(
        line: "A1 SEARCH CHARSET \"UTF-8\" ALL ANSWERED BCC b BEFORE 1-Feb-1994 BODY x CC c DELETED DRAFT FLAGGED "
            + "FROM f HEADER X-H v KEYWORD $k LARGER 10 NEW NOT SEEN OLD ON 2-Mar-2000 OR RECENT SEEN "
            + "SENTBEFORE 3-Apr-2001 SENTON 4-May-2002 SENTSINCE 5-Jun-2003 SINCE 6-Jul-2004 SMALLER 20 "
            + "SUBJECT s TEXT t TO o UID 1:* UNANSWERED "
            + "UNDELETED UNDRAFT UNFLAGGED UNKEYWORD $u UNSEEN 1,3:5 $ (SEEN FLAGGED) MODSEQ 5\r\n"
    ) {
        .search(
            IMAPSearchCommand(
                program: program(
                    """
                    ALL ANSWERED BCC b BEFORE 1-Feb-1994 BODY x CC c DELETED DRAFT FLAGGED \
                    FROM f HEADER X-H v KEYWORD $k LARGER 10 NEW NOT SEEN OLD ON 2-Mar-2000 OR RECENT SEEN \
                    SENTBEFORE 3-Apr-2001 \
                    SENTON 4-May-2002 SENTSINCE 5-Jun-2003 SINCE 6-Jul-2004 SMALLER 20 \
                    SUBJECT s TEXT t TO o UID 1:* UNANSWERED \
                    UNDELETED UNDRAFT UNFLAGGED UNKEYWORD $u UNSEEN 1,3:5 $ (SEEN FLAGGED) MODSEQ 5
                    """, charset: IMAPString("UTF-8"))), uid: false)
    },
    CommandFixture(
        line: "A2 FETCH 1:3 (ENVELOPE FLAGS INTERNALDATE RFC822.SIZE BODY BODYSTRUCTURE UID MODSEQ RFC822 "
            + "RFC822.HEADER RFC822.TEXT BODY[] BODY[TEXT] BODY[HEADER]<10.20> BODY.PEEK[HEADER.FIELDS.NOT (Received)] "
            + "BODY[1.2] BODY[2.TEXT] BINARY[] BINARY.PEEK[1]<0.5> BINARY.SIZE[3])\r\n"
    ) {
        .fetch(
            set("1:3"),
            fetchList(
                """
                ENVELOPE FLAGS INTERNALDATE RFC822.SIZE BODY BODYSTRUCTURE UID MODSEQ RFC822 \
                RFC822.HEADER RFC822.TEXT BODY[] BODY[TEXT] BODY[HEADER]<10.20> \
                BODY.PEEK[HEADER.FIELDS.NOT (Received)] \
                BODY[1.2] BODY[2.TEXT] BINARY[] BINARY.PEEK[1]<0.5> BINARY.SIZE[3]
                """), IMAPFetchModifiers(), uid: false)
    },
    CommandFixture(line: "A3 FETCH 1 FAST\r\n") {
        .fetch(set("1"), IMAPFetchAttributeList(macro: .fast), IMAPFetchModifiers(), uid: false)
    },
    CommandFixture(line: "A4 FETCH 1 FULL\r\n") {
        .fetch(set("1"), IMAPFetchAttributeList(macro: .full), IMAPFetchModifiers(), uid: false)
    },
    CommandFixture(line: "A5 UID COPY $ Trash\r\n") { .copy(set("$"), mailbox("Trash"), uid: true) },
    CommandFixture(line: "A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n") {
        .fetch(set("2:4"), fetchList("FLAGS BODY[HEADER.FIELDS (DATE FROM)]"), IMAPFetchModifiers(), uid: false)
    },
    CommandFixture(line: "a FETCH 1:* ALL\r\n") {
        .fetch(set("1:*"), IMAPFetchAttributeList(macro: .all), IMAPFetchModifiers(), uid: false)
    },
    CommandFixture(line: "a FETCH 1 (BODY.PEEK[1.2.MIME]<0.2048> BINARY[1] BINARY.SIZE[2] RFC822.SIZE UID MODSEQ)\r\n")
    {
        .fetch(
            set("1"), fetchList("BODY.PEEK[1.2.MIME]<0.2048> BINARY[1] BINARY.SIZE[2] RFC822.SIZE UID MODSEQ"),
            IMAPFetchModifiers(), uid: false)
    },
    CommandFixture(line: "s100 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n") {
        .fetch(set("300:500"), fetchList("FLAGS"), IMAPFetchModifiers(changedSince: 12345, vanished: true), uid: true)
    },
    CommandFixture(line: "A003 STORE 2:4 +FLAGS (\\Deleted)\r\n") {
        .store(
            set("2:4"), IMAPStoreAction(kind: .add, silent: false, flags: flags("\\Deleted")), unchangedSince: nil,
            uid: false)
    },
    CommandFixture(line: "d105 STORE 7,5,9 (UNCHANGEDSINCE 320162338) -FLAGS.SILENT \\Deleted $Junk\r\n") {
        .store(
            set("7,5,9"), IMAPStoreAction(kind: .remove, silent: true, flags: flags("\\Deleted $Junk")),
            unchangedSince: 320_162_338, uid: false)
    },
    CommandFixture(line: "A003 COPY 2:4 MEETING\r\n") { .copy(set("2:4"), mailbox("MEETING"), uid: false) },
    CommandFixture(line: "a UID MOVE 42:69 foo\r\n") { .move(set("42:69"), mailbox("foo"), uid: true) },
    CommandFixture(line: "a023 ID (\"name\" \"sodr\" \"version\" \"19.34\" \"os\" NIL)\r\n") {
        .id(IMAPIDParameters(text: IMAPBytes("\"name\" \"sodr\" \"version\" \"19.34\" \"os\" NIL"), count: 3))
    },
    CommandFixture(line: "a ID NIL\r\n") { .id(nil) },
    CommandFixture(line: "A3 UNAUTHENTICATE\r\n") { .unauthenticate },
    CommandFixture(line: "t1 COMPRESS DEFLATE\r\n") { .compress(IMAPBytes("DEFLATE")) },
    CommandFixture(line: "G0001 GETQUOTA \"!partition.sda4\"\r\n") { .getQuota(root: IMAPString("!partition.sda4")) },
    CommandFixture(line: "G0002 GETQUOTAROOT INBOX\r\n") { .getQuotaRoot(mailbox("INBOX")) },
    CommandFixture(line: "A283 SORT (SUBJECT REVERSE DATE) UTF-8 ALL\r\n") {
        .sort(
            IMAPSortCriteria(text: IMAPBytes("SUBJECT REVERSE DATE"), count: 2),
            program("ALL", charset: IMAPString("UTF-8")),
            uid: false)
    },
    CommandFixture(line: "A284 UID THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000\r\n") {
        .thread(
            algorithm: IMAPBytes("ORDEREDSUBJECT"), program("SINCE 5-MAR-2000", charset: IMAPString("UTF-8")), uid: true
        )
    },
]

@Suite("Command parser")
struct IMAPCommandParserTests {
    @Test("RFC examples parse to the expected command", arguments: commandFixtures)
    func fixture(_ fixture: CommandFixture) {
        withParsedCommand(fixture.line) { result in
            guard case .success(let tagged) = result else {
                Issue.record("failed: \(result)")
                return
            }
            #expect(tagged.command == fixture.expected())
        }
    }

    @Test("Every fixture frames the same whole, drip-fed and split at every index", arguments: commandFixtures)
    func fixtureChunking(_ fixture: CommandFixture) {
        let (independent, events) = framingIsChunkingIndependent(bytes(fixture.line))
        #expect(independent)
        #expect(!events.contains { if case .badCommand = $0 { return true } else { return false } })
    }

    /// Bad lines and the reason the client is told, with the tag kept.
    static let badLines: [(String, String?, String)] = [
        ("a1 FROB\r\n", "a1", "Unknown command"),
        ("a1 FETCH 0 FLAGS\r\n", "a1", "Number must not be zero"),
        ("a1 FETCH 1:4294967296 FLAGS\r\n", "a1", "Number out of range"),
        ("a1 FETCH 1 (FLAGS BODY[HEADER.FIELDS ()])\r\n", "a1", "Empty list"),
        ("a1 FETCH 1 (FLAGS) (VANISHED)\r\n", "a1", "VANISHED needs UID FETCH and CHANGEDSINCE"),
        ("a1 SEARCH FROB\r\n", "a1", "Unknown search key"),
        ("a1 SEARCH SINCE 31-Foo-2000\r\n", "a1", "Invalid month in date"),
        ("a1 STORE 1 FLAGS (\\Seen\r\n", "a1", "Expected a space"),
        ("a1 LOGIN \"unterminated\r\n", "a1", "Invalid character in quoted string"),
        ("+x NOOP\r\n", nil, "Missing or invalid tag"),
        ("a1 NOOP extra\r\n", "a1", "Unexpected characters at end of command"),
        ("a1 LOGIN a\u{0}b c\r\n", "a1", "Expected a space"),
        ("a1 SELECT INBOX (FROB)\r\n", "a1", "Unknown SELECT parameter"),
    ]

    @Test("A bad command yields its tag and a precise reason", arguments: badLines.indices)
    func badCommand(index: Int) {
        let (line, tag, reason) = IMAPCommandParserTests.badLines[index]
        withParsedCommand(line) { result in
            guard case .failure(let badTag, let badReason) = result else {
                Issue.record("parsed: \(result)")
                return
            }
            #expect(badTag?.string == tag)
            #expect("\(badReason)" == reason)
        }
    }

    @Test("A tag longer than the limit is refused")
    func tagLimit() {
        withParsedCommand(String(repeating: "t", count: 65) + " NOOP\r\n") { result in
            guard case .failure(nil, let reason) = result else {
                Issue.record("parsed: \(result)")
                return
            }
            #expect("\(reason)" == "Tag too long")
        }
    }

    @Test("A 20,000-range sequence set is refused past the limit and accepted under it")
    func largeSequenceSet() {
        let ranges = (0..<20_000).map { "\($0 * 3 + 1):\($0 * 3 + 2)" }.joined(separator: ",")
        let line = "a1 UID FETCH \(ranges) FLAGS\r\n"
        withParsedCommand(line) { result in
            guard case .failure("a1"?, let reason) = result.tagText else {
                Issue.record("parsed")
                return
            }
            #expect("\(reason)" == "Sequence set too large")
        }
        withParsedCommand(line, limits: IMAPLimits(maxSequenceSetRanges: 20_000)) { result in
            guard case .success(let tagged) = result, case .fetch(let set, _, _, true) = tagged.command else {
                Issue.record("failed: \(result)")
                return
            }
            #expect(set.rangeCount == 20_000)
            #expect(set.contains(59_999, largest: 100_000))
            #expect(!set.contains(59_997, largest: 100_000))
        }
    }

    @Test("3,000-deep parentheses are refused at the nesting limit, without recursion overflow")
    func deepNesting() {
        let depth = 3000
        let line =
            "a1 SEARCH " + String(repeating: "(", count: depth) + "ALL" + String(repeating: ")", count: depth) + "\r\n"
        withParsedCommand(line) { result in
            guard case .failure("a1"?, let reason) = result.tagText else {
                Issue.record("parsed")
                return
            }
            #expect("\(reason)" == "Too deeply nested")
        }
        let notChain = "a1 SEARCH " + String(repeating: "NOT ", count: depth) + "ALL\r\n"
        withParsedCommand(notChain) { result in
            guard case .failure("a1"?, let reason) = result.tagText else {
                Issue.record("parsed")
                return
            }
            #expect("\(reason)" == "Too deeply nested")
        }
        let fetch =
            "a1 FETCH 1 " + String(repeating: "(", count: depth) + "FLAGS" + String(repeating: ")", count: depth)
            + "\r\n"
        withParsedCommand(fetch) { result in
            guard case .failure("a1"?, _) = result.tagText else {
                Issue.record("parsed")
                return
            }
        }
    }

    @Test("A search tree within the limit builds; its keys come back in order")
    func searchTree() {
        withParsedCommand("a SEARCH OR (SEEN UNDELETED) NOT UID 1:* HEADER X-Y \"z\" 5\r\n") { result in
            guard case .success(let tagged) = result, case .search(let search, false) = tagged.command else {
                Issue.record("failed: \(result)")
                return
            }
            let keys = Array(search.program.keys)
            #expect(
                keys == [
                    .or(.and([.seen, .undeleted]), .not(.uid(set("1:*")))),
                    .header(name: IMAPString("X-Y"), value: IMAPString("z")),
                    .sequenceNumbers(set("5")),
                ])
        }
    }

    @Test("FETCH attributes: bit set for simple ones, sections iterate")
    func fetchAttributes() {
        withParsedCommand("a UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (From Subject)]<0.100>)\r\n") { result in
            guard case .success(let tagged) = result, case .fetch(_, let list, _, true) = tagged.command else {
                Issue.record("failed: \(result)")
                return
            }
            #expect(list.simple == [.uid, .flags, .sections])
            let all = Array(list)
            #expect(all.count == 3)
            guard case .bodySection(let section, let partial, true) = all[2],
                case .headerFields(let names) = section.text
            else {
                Issue.record("\(all)")
                return
            }
            #expect(names.map(\.string) == ["From", "Subject"])
            #expect(partial == IMAPPartial(offset: 0, length: 100))
        }
    }

    @Test("IDLE's DONE and AUTHENTICATE lines")
    func continuationLines() {
        let parser = IMAPCommandParser()
        bytes("done\r\n").withUnsafeBytes { #expect(parser.parseIdleDone($0).isSuccess) }
        bytes("DONE x\r\n").withUnsafeBytes { #expect(!parser.parseIdleDone($0).isSuccess) }
        bytes("*\r\n").withUnsafeBytes { #expect(parser.parseAuthenticationResponse($0).value == .cancel) }
        bytes("dGVzdA==\r\n").withUnsafeBytes {
            #expect(parser.parseAuthenticationResponse($0).value == .response(IMAPBytes("dGVzdA==")))
        }
        bytes("dGV zdA==\r\n").withUnsafeBytes { #expect(!parser.parseAuthenticationResponse($0).isSuccess) }
    }

    @Test("Mailbox names: modified UTF-7 both ways, UTF-8 when enabled, INBOX in any case")
    func mailboxNames() {
        let name = "~peter/mail/台北/日本語"
        let encoded = IMAPModifiedUTF7.encode(name)
        #expect(String(decoding: encoded, as: UTF8.self) == "~peter/mail/&U,BTFw-/&ZeVnLIqe-")
        #expect(IMAPModifiedUTF7.decode(encoded) == name)
        #expect(IMAPModifiedUTF7.decode(Array("a&-b".utf8)) == "a&b")
        #expect(IMAPModifiedUTF7.decode(Array("&U,BTFw".utf8)) == nil)
        #expect(IMAPMailboxName("InBoX") == IMAPMailboxName("INBOX"))
        #expect(IMAPMailboxName("InBoX").decoded(isUTF8: false) == "INBOX")
        #expect(IMAPMailboxName("Entwürfe").decoded(isUTF8: true) == "Entwürfe")
        #expect(IMAPMailboxName("Other") != IMAPMailboxName("other"))
    }
}

extension IMAPParseResult {
    var isSuccess: Bool {
        if case .success = self { return true }
        return false
    }

    var value: Value? {
        if case .success(let value) = self { return value }
        return nil
    }

    /// The failure with its tag as text (views compared as strings).
    var tagText: IMAPParseResult<Value>.TagText {
        switch self {
        case .success: return .success
        case .failure(let tag, let reason): return .failure(tag?.string, reason)
        }
    }

    enum TagText {
        case success
        case failure(String?, IMAPParseFailure)
    }
}
