//===----------------------------------------------------------------------===//
// Apus LoadGen tests: the state checker against fake servers that break each rule.
//===----------------------------------------------------------------------===//

import IMAPProtocol
import Testing
@testable import LoadGen

/// A quiet run against a local test server: `clients` sessions on `loops` loops, bounded by a
/// generous duration in case the server stops answering (a command limit normally ends it first).
func testConfiguration(port: UInt16, clients: Int = 1, loops: Int = 1) -> LoadConfiguration {
    var configuration = LoadConfiguration()
    configuration.port = port
    configuration.clients = clients
    configuration.loops = loops
    configuration.duration = .seconds(20)
    configuration.prefill = 0
    configuration.quiet = true
    return configuration
}

/// A short run of one session against `port`: `commands` commands of `mix`.
func runAgainst(port: UInt16, mix: String, commands: Int = 200) throws -> LoadReport {
    var configuration = testConfiguration(port: port)
    configuration.commandLimit = commands
    configuration.mix = try LoadCommandMix(parsing: mix)
    return try LoadRunner.run(configuration)
}

@Suite struct StateCheckerTests {
    /// Each misbehaviour, the violation it must raise, and a mix that provokes it.
    static let cases: [(Misbehaviour, LoadViolationKind, String)] = [
        (.sequenceBeyondExists, .sequenceBeyondExists, "fetch-flags=1"),
        (.uidChanged, .uidChanged, "fetch-flags=1"),
        (.uidValidityChanged, .uidValidityChanged, "select=1,noop=1"),
        (.flagsMismatch, .flagsMismatch, "fetch-flags=1,store=1"),
        (.sizeChanged, .sizeChanged, "fetch-headers=1"),
        (.envelopeChanged, .envelopeChanged, "fetch-headers=1"),
        (.bodyStructureChanged, .bodyStructureChanged, "fetch-headers=1"),
        (.expungeUnknownSequence, .expungeUnknownSequence, "noop=1"),
        (.unknownTag, .unknownTag, "noop=1"),
        (.existsShrank, .existsShrank, "noop=1"),
    ]

    @Test(arguments: 0..<cases.count)
    func eachMisbehaviourIsCaught(_ index: Int) throws {
        let (misbehaviour, expected, mix) = StateCheckerTests.cases[index]
        let server = try FakeIMAPServer(misbehaviour)
        defer { server.shutdown() }
        let report = try runAgainst(port: server.port, mix: mix)
        #expect(report.totals.totalCommands > 0)
        #expect(report.totals.violations[expected.rawValue] > 0, "\(misbehaviour) not reported as \(expected.name)")
        #expect(report.violationMessages.contains { $0.hasPrefix(expected.name + ":") })
        // Only the rule broken is reported.
        for kind in LoadViolationKind.allCases where kind != expected {
            #expect(report.totals.violations[kind.rawValue] == 0, "\(misbehaviour) also reported \(kind.name)")
        }
    }

    /// A checker that flags a correct server is wrong: the same mixes against the correct fake.
    @Test func correctServerHasNoViolations() throws {
        let server = try FakeIMAPServer(.correct)
        defer { server.shutdown() }
        let mix = "fetch-flags=3,fetch-headers=2,store=3,select=1,noop=2,logout=1"
        let report = try runAgainst(port: server.port, mix: mix, commands: 600)
        #expect(report.totals.totalCommands >= 500)
        #expect(report.totals.totalViolations == 0, "\(report.violationMessages)")
        #expect(report.totals.commands[LoadCommandKind.store.rawValue].ok > 0)
        #expect(report.totals.commands[LoadCommandKind.logout.rawValue].ok > 0)
    }

    @Test func storeAnswerChecksFlagsOfThatUID() {
        var checker = MailboxChecker(checksFlags: true)
        _ = checker.exists(2)
        var violations: [MailboxChecker.Violation] = []
        checker.fetch(1, facts("* 1 FETCH (UID 10 FLAGS ())"), stored: nil, into: &violations)
        let store = StoreExpectation(uid: 10, action: .add, flags: .flagged)
        checker.fetch(1, facts("* 1 FETCH (FLAGS (\\Flagged) UID 10)"), stored: store, into: &violations)
        #expect(violations.isEmpty)
        checker.fetch(1, facts("* 1 FETCH (UID 10 FLAGS ())"), stored: nil, into: &violations)
        #expect(violations.map(\.kind) == [.flagsMismatch])
    }

    @Test func expungeRenumbersLaterMessages() {
        var checker = MailboxChecker(checksFlags: false)
        _ = checker.exists(3)
        var violations: [MailboxChecker.Violation] = []
        checker.fetch(3, FetchFacts(uid: 30), stored: nil, into: &violations)
        #expect(checker.expunge(1) == nil)
        checker.fetch(2, FetchFacts(uid: 30), stored: nil, into: &violations)
        #expect(violations.isEmpty)
        #expect(checker.expunge(3)?.kind == .expungeUnknownSequence)
    }

    /// ENVELOPE and BODYSTRUCTURE are kept as digests: a changed value of a known UID is still
    /// reported, the same value spelt differently (a literal instead of a quoted string, nil for NIL) is not.
    @Test func changedEnvelopeOrBodyStructureOfAKnownUIDIsReported() {
        let envelope = "ENVELOPE (\"Mon, 7 Dec 2026\" \"report\" ((\"A\" NIL \"a\" \"x\")) NIL NIL NIL NIL NIL NIL \"<1@x>\")"
        let structure = "BODYSTRUCTURE (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"UTF-8\") NIL NIL \"7BIT\" 120 4 NIL NIL NIL NIL)"
        var checker = MailboxChecker(checksFlags: false)
        _ = checker.exists(2)
        var violations: [MailboxChecker.Violation] = []
        checker.fetch(1, facts("* 1 FETCH (UID 10 RFC822.SIZE 120 \(envelope) \(structure))"), stored: nil,
                      into: &violations)
        let respelt = envelope.replacing("\"report\"", with: "{6}\r\nreport").replacing("NIL", with: "nil")
        checker.fetch(1, facts("* 1 FETCH (\(structure) UID 10 \(respelt))"), stored: nil, into: &violations)
        #expect(violations.isEmpty, "\(violations.map(\.detail))")

        checker.fetch(1, facts("* 1 FETCH (UID 10 \(envelope.replacing("report", with: "rep0rt")))"), stored: nil,
                      into: &violations)
        #expect(violations.map(\.kind) == [.envelopeChanged])
        checker.fetch(1, facts("* 1 FETCH (UID 10 \(structure.replacing("120", with: "121")))"), stored: nil,
                      into: &violations)
        #expect(violations.map(\.kind) == [.envelopeChanged, .bodyStructureChanged])
        // A server contradicting itself within one response is caught too.
        checker.fetch(2, facts("* 2 FETCH (UID 11 RFC822.SIZE 5 RFC822.SIZE 6)"), stored: nil, into: &violations)
        #expect(violations.map(\.kind) == [.envelopeChanged, .bodyStructureChanged, .sizeChanged])
        let other = envelope.replacing("report", with: "other")
        checker.fetch(2, facts("* 2 FETCH (UID 11 \(envelope) \(respelt) \(other))"), stored: nil, into: &violations)
        #expect(violations.map(\.kind) == [.envelopeChanged, .bodyStructureChanged, .sizeChanged, .envelopeChanged])
    }

    /// A user's sessions share what they learnt: a later session is held to what an earlier one
    /// was told about a UID, until UIDVALIDITY changes.
    @Test func laterSessionOfTheUserIsCheckedAgainstEarlierOnes() {
        let shared = MessageFacts()
        var violations: [MailboxChecker.Violation] = []
        var first = MailboxChecker(checksFlags: false, messageFacts: shared)
        _ = first.uidValidity(7, known: nil)
        _ = first.exists(1)
        first.fetch(1, facts("* 1 FETCH (UID 10 RFC822.SIZE 120)"), stored: nil, into: &violations)
        var second = MailboxChecker(checksFlags: false, messageFacts: shared)
        _ = second.uidValidity(7, known: 7)
        _ = second.exists(1)
        second.fetch(1, facts("* 1 FETCH (UID 10 RFC822.SIZE 121)"), stored: nil, into: &violations)
        #expect(violations.map(\.kind) == [.sizeChanged])
        var third = MailboxChecker(checksFlags: false, messageFacts: shared)
        #expect(third.uidValidity(8, known: 7)?.kind == .uidValidityChanged)
        _ = third.exists(1)
        third.fetch(1, facts("* 1 FETCH (UID 10 RFC822.SIZE 5)"), stored: nil, into: &violations)
        #expect(violations.map(\.kind) == [.sizeChanged])
    }
}

/// What the load session gathers from one FETCH response, read from its wire text (`text` without CRLF).
func facts(_ text: String) -> FetchFacts {
    var parser = IMAPResponseParser()
    var facts = FetchFacts()
    let bytes = Array((text + "\r\n").utf8)
    let (event, _) = bytes.withUnsafeBytes { buffer in
        let result = parser.parse(buffer) { _, item in facts.add(item) }
        facts.settle()  // before the bytes go
        return result
    }
    if case .error(let reason) = event { Issue.record("\(text): \(reason)") }
    return facts
}
