//===----------------------------------------------------------------------===//
// Apus LoadGen tests: whole runs against the fake server (modes, pipelining) and their outputs.
//===----------------------------------------------------------------------===//

import Glibc
import Testing
@testable import LoadGen

@Suite struct LoadRunTests {
    @Test func pipelinedRunKeepsEverySessionBusyWithoutViolations() throws {
        let server = try FakeIMAPServer(.correct)
        defer { server.shutdown() }
        var configuration = testConfiguration(port: server.port, clients: 4, loops: 2)
        configuration.pipelineDepth = 8
        configuration.commandLimit = 2000
        configuration.mix = try LoadCommandMix(parsing: "noop=2,fetch-flags=2,fetch-headers=1,store=2")
        let report = try LoadRunner.run(configuration)
        #expect(report.totals.totalCommands >= 1900)
        #expect(report.totals.totalViolations == 0, "\(report.violationMessages)")
        #expect(report.totals.commands[LoadCommandKind.connect.rawValue].ok == 4)
        #expect(report.totals.commands[LoadCommandKind.store.rawValue].bad == 0)
    }

    /// A STORE that raced another session's expunge (NO [EXPUNGEISSUED], RFC 5530) is expected on a
    /// shared mailbox: counted apart from refusals, in the totals, the JSON and the text report.
    @Test func expungeRacesAreCountedApartFromRefusals() throws {
        let server = try FakeIMAPServer(.storesRaceExpunges)
        defer { server.shutdown() }
        var configuration = testConfiguration(port: server.port, clients: 1)
        configuration.commandLimit = 200
        // FETCH FLAGS first teaches the session UIDs, which its STOREs then name (UID STORE).
        configuration.mix = try LoadCommandMix(parsing: "fetch-flags=1,store=1")
        let report = try LoadRunner.run(configuration)
        let stores = report.totals.commands[LoadCommandKind.store.rawValue]
        #expect(stores.expungeIssued > 0 && stores.no > 0)
        #expect(stores.count == stores.ok + stores.no + stores.expungeIssued + stores.bad)
        #expect(report.totals.allCommands.expungeIssued == stores.expungeIssued)
        #expect(LoadReportJSON.render(report).contains("\"expunge_issued\": \(stores.expungeIssued)"))
        #expect(LoadReportText.summary(report).contains("NO [EXPUNGEISSUED]: \(stores.expungeIssued) "))
    }

    @Test func churnSessionsLogInSelectFetchAndLogOut() throws {
        let server = try FakeIMAPServer(.correct)
        defer { server.shutdown() }
        var configuration = testConfiguration(port: server.port, clients: 10)
        configuration.mode = .churn
        configuration.rate = 200
        configuration.commandLimit = 100
        let report = try LoadRunner.run(configuration)
        let logouts = report.totals.commands[LoadCommandKind.logout.rawValue].ok
        #expect(logouts >= 10)
        #expect(report.totals.commands[LoadCommandKind.login.rawValue].ok >= logouts)
        #expect(report.totals.commands[LoadCommandKind.select.rawValue].ok >= logouts)
        #expect(report.totals.commands[LoadCommandKind.fetchHeaders.rawValue].ok >= logouts)
        #expect(report.totals.failures[LoadFailureKind.unexpectedClose.rawValue] == 0)
        #expect(report.totals.totalViolations == 0)
    }

    @Test func churnWithoutARateReplacesEachSessionAsItEnds() throws {
        let server = try FakeIMAPServer(.correct)
        defer { server.shutdown() }
        var configuration = testConfiguration(port: server.port, clients: 4, loops: 2)
        configuration.mode = .churn
        configuration.commandLimit = 400
        // Paced at some fixed rate (say 10 sessions/s) the 400 commands would take longer than this.
        configuration.duration = .seconds(8)
        let report = try LoadRunner.run(configuration)
        #expect(report.elapsed < 7, "churn without --rate did not go as fast as the server answers")
        #expect(report.totals.commands[LoadCommandKind.logout.rawValue].ok >= 60)
        #expect(report.totals.sessionsStarted >= 60)
        #expect(report.totals.totalViolations == 0)
    }

    @Test func refusedConnectionsAreCountedNotFatal() throws {
        // A port nothing listens on: take an ephemeral one from a server and shut it down.
        let server = try FakeIMAPServer(.correct)
        let port = server.port
        server.shutdown()
        var configuration = testConfiguration(port: port, clients: 2)
        configuration.duration = .milliseconds(300)
        let report = try LoadRunner.run(configuration)
        #expect(report.totals.failures[LoadFailureKind.connectFailed.rawValue] >= 2)
        #expect(report.totals.commands[LoadCommandKind.connect.rawValue].ok == 0)
        #expect(report.failureMessages.first?.hasPrefix("connect-failed:") == true)
    }

    @Test func sessionsBindTheGivenSourceAddressesInTurn() throws {
        let server = try FakeIMAPServer(.correct, host: "0.0.0.0")
        defer { server.shutdown() }
        var configuration = testConfiguration(port: server.port, clients: 4)
        configuration.sourceAddresses = ["127.0.0.2", "127.0.0.3"]
        configuration.commandLimit = 100
        configuration.mix = try LoadCommandMix(parsing: "noop=1")
        let report = try LoadRunner.run(configuration)
        #expect(report.totals.commands[LoadCommandKind.connect.rawValue].ok == 4)
        #expect(server.peerHosts == ["127.0.0.2", "127.0.0.3"])
    }

    @Test func connectsTheEndOfTheRunCutShortAreNotFailures() throws {
        // A listener nobody accepts from: the kernel completes TCP connects, but no TLS handshake
        // ever finishes, so every session is still connecting when the run ends.
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(listener >= 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, length) == 0 && listen(listener, 16) == 0 && getsockname(listener, $0, &length) == 0
            }
        }
        try #require(bound)
        var configuration = testConfiguration(port: UInt16(bigEndian: address.sin_port), clients: 3)
        configuration.security = .tls
        configuration.verifyCertificate = false
        configuration.duration = .milliseconds(300)
        let report = try LoadRunner.run(configuration)
        #expect(report.totals.sessionsStarted == 3)
        #expect(report.totals.failures[LoadFailureKind.connectFailed.rawValue] == 0, "\(report.failureMessages)")
        #expect(report.totals.commands[LoadCommandKind.connect.rawValue].no == 0)
    }

    @Test func byeGreetingIsAFailedConnectNotASession() throws {
        let server = try FakeIMAPServer(.byeGreeting)
        defer { server.shutdown() }
        var configuration = testConfiguration(port: server.port)
        configuration.duration = .milliseconds(300)
        let report = try LoadRunner.run(configuration)
        #expect(report.totals.failures[LoadFailureKind.connectFailed.rawValue] >= 1)
        #expect(report.totals.failures[LoadFailureKind.unexpectedClose.rawValue] == 0)
        #expect(report.totals.commands[LoadCommandKind.login.rawValue].count == 0)
        #expect(report.failureMessages.first?.contains("too many connections") == true)
    }

    @Test func jsonAndPlotDescribeTheRun() throws {
        let server = try FakeIMAPServer(.correct)
        defer { server.shutdown() }
        var configuration = testConfiguration(port: server.port, clients: 2)
        configuration.commandLimit = 300
        configuration.label = "fake \"server\""
        configuration.mix = try LoadCommandMix(parsing: "noop=1,fetch-flags=1")
        let report = try LoadRunner.run(configuration)
        let json = LoadReportJSON.render(report)
        #expect(json.contains("\"label\": \"fake \\\"server\\\"\""))
        #expect(json.contains("\"commands_total\": \(report.totals.totalCommands),"))
        #expect(json.contains("\"noop\": {\"count\": \(report.totals.commands[LoadCommandKind.noop.rawValue].count),"))
        #expect(json.contains("\"violations_total\": 0,"))
        let svg = LoadPlot.render(report)
        #expect(svg.hasPrefix("<svg xmlns=\"http://www.w3.org/2000/svg\""))
        #expect(svg.hasSuffix("</svg>\n"))
        #expect(svg.contains("fake &quot;server&quot;"))
        // Throughput (all, noop, fetch-flags and the set-up commands) and the two latency lines.
        #expect(svg.ranges(of: "<polyline").count >= 4)
        let summary = LoadReportText.summary(report)
        #expect(summary.contains("noop"))
        #expect(summary.contains("violations: 0"))
    }

    @Test func jsonStringsAreEscaped() {
        #expect(LoadReportJSON.quoted("a\"b\\c\nd\u{1}") == "\"a\\\"b\\\\c\\nd\\u0001\"")
        #expect(fixed(0.125, 2) == "0.13")
        #expect(fixed(3.14159, 3) == "3.142")
        #expect(fixed(-2.5, 1) == "-2.5")
        #expect(fixed(1234.0, 0) == "1234")
        #expect(LoadPlot.niceCeiling(3700) == 5000)
        #expect(LoadPlot.niceCeiling(0.013) == 0.02)
    }
}
