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
        checker.fetch(1, [.uid(10), .flags([])], stored: nil, into: &violations)
        let store = StoreExpectation(uid: 10, action: .add, flags: .flagged)
        checker.fetch(1, [.flags([Array("\\Flagged".utf8)]), .uid(10)], stored: store, into: &violations)
        #expect(violations.isEmpty)
        checker.fetch(1, [.uid(10), .flags([])], stored: nil, into: &violations)
        #expect(violations.map(\.kind) == [.flagsMismatch])
    }

    @Test func expungeRenumbersLaterMessages() {
        var checker = MailboxChecker(checksFlags: false)
        _ = checker.exists(3)
        var violations: [MailboxChecker.Violation] = []
        checker.fetch(3, [.uid(30)], stored: nil, into: &violations)
        #expect(checker.expunge(1) == nil)
        checker.fetch(2, [.uid(30)], stored: nil, into: &violations)
        #expect(violations.isEmpty)
        #expect(checker.expunge(3)?.kind == .expungeUnknownSequence)
    }
}
