// IMAPFrontend tests: the relay after login, clients that vanish, and back ends that die.

import Glibc
import Reactor
import Telemetry
import Testing

@testable import IMAPFrontend

@Suite("Relay and failures")
struct RelayTests {
    private func loggedIn(_ port: UInt16, _ user: String) throws -> TestClient {
        let client = try TestClient(port: port)
        _ = try client.readResponse()
        try client.login(user)
        return client
    }

    /// The fake back end's connection numbers that saw `name`.
    private func connections(_ backend: FakeBackend, _ name: String) -> [Int] {
        backend.events.commands(name).compactMap { if case .command(let number, _, _) = $0 { number } else { nil } }
    }

    private func closed(_ backend: FakeBackend, _ number: Int) -> Bool {
        backend.events.all.contains(.closed(connection: number))
    }

    @Test func loginAnswerCarriesTheBackendCapabilityAndCommandsRelayUnchanged() throws {
        let backend = try FakeBackend()
        defer { backend.kill() }
        let harness = try FrontendHarness(backends: [("one", backend.port)])
        defer { harness.stop() }
        let client = try TestClient(port: harness.port)
        _ = try client.readResponse()
        // Pipelined: login, a command and LOGOUT in one write.
        try client.send("a LOGIN alice pw-alice\r\nb XSTATE\r\nc SELECT INBOX\r\nd LOGOUT\r\n")
        let lines = try client.readToEnd()
        #expect(lines.first == "a OK [CAPABILITY IMAP4rev2 ENABLE IDLE UNSELECT XSTATE] logged in as alice")
        #expect(lines.contains { $0.hasPrefix("* XSTATE user=alice selected=NIL") })
        #expect(lines.suffix(2) == ["* BYE Logging out", "d OK LOGOUT completed"])
        #expect(lines.firstIndex(of: "c OK [READ-WRITE] selected")! < lines.firstIndex(of: "* BYE Logging out")!)
    }

    @Test func literalsRelayBothWays() throws {
        var options = FakeBackendOptions()
        options.fetchBodySize = 200_000  // streamed through the relay in pieces
        let backend = try FakeBackend(options: options)
        defer { backend.kill() }
        let harness = try FrontendHarness(backends: [("one", backend.port)])
        defer { harness.stop() }
        let client = try loggedIn(harness.port, "alice")
        try client.send("a APPEND INBOX {10}\r\n")
        #expect(try client.readResponse() == "+ go ahead")
        try client.send("0123456789\r\n")
        #expect(try client.responses(until: "a").last?.hasPrefix("a OK appended") == true)
        #expect(try client.command("b", "APPEND INBOX {5+}\r\nabcde").last?.hasPrefix("b OK appended") == true)
        // A large message streams through (the relay holds none of it whole).
        try client.send("d APPEND INBOX {3000000}\r\n")
        #expect(try client.readResponse() == "+ go ahead")
        try client.send(String(repeating: "m", count: 3_000_000) + "\r\n")
        #expect(try client.responses(until: "d").last == "d OK appended 3000028 octets")
        // Both sides plain: most of the message went client to back end by splice(2), every byte counted.
        #expect(harness.metrics.counter("apus_imap4_spliced_bytes_total", help: "").current > 2_000_000)
        let fetched = try client.command("c", "FETCH 1 BODY[]")
        #expect(fetched.count == 2 && fetched[0].count == "* 1 FETCH (BODY[] {200000}\r\n".count + 200_000 + 1)
        #expect(fetched[1] == "c OK fetched")
    }

    /// A large literal from a plain hop to a plain client is spliced (socket to pipe to socket);
    /// over a TLS hop it passes through the buffer. Either way the client gets it byte for byte,
    /// with the response boundaries (tagged line, next command) intact.
    @Test(arguments: [false, true])
    func largeLiteralsAreSplicedOnlyWhenBothSidesArePlain(tlsHop: Bool) throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        var options = FakeBackendOptions()
        options.fetchBodySize = 3 * 1024 * 1024
        if tlsHop { options.tls = certificates.serverHolder }
        let backend = try FakeBackend(options: options)
        defer { backend.kill() }
        let clientContext = try certificates.clientContext()
        let harness = try FrontendHarness(backends: [("one", backend.port)], loops: 1) {
            if tlsHop {
                $0.backends[0].tls = clientContext
                $0.backends[0].serverName = "localhost"
            }
        }
        defer { harness.stop() }
        let client = try loggedIn(harness.port, "alice")
        for round in 0..<2 {
            let fetched = try client.command("f\(round)", "FETCH 1 BODY[]")
            let header = "* 1 FETCH (BODY[] {\(options.fetchBodySize)}\r\n"
            #expect(fetched.count == 2 && fetched[0] == header + String(repeating: "x", count: options.fetchBodySize) + ")")
            #expect(fetched.last == "f\(round) OK fetched")
        }
        #expect(try client.command("n", "NOOP") == ["n OK done"])
        let spliced = harness.metrics.counter("apus_imap4_spliced_bytes_total", help: "").current
        if tlsHop {
            #expect(spliced == 0)
        } else {
            // All but what the first read of each literal brought with its line.
            #expect(spliced > UInt64(2 * (options.fetchBodySize - 256 * 1024)), "spliced \(spliced)")
        }
    }

    @Test func unauthenticateAndStartTLSAreRefusedAfterLogin() throws {
        let backend = try FakeBackend()
        defer { backend.kill() }
        let harness = try FrontendHarness(backends: [("one", backend.port)], loops: 1) {
            $0.pool.maximumConnections = 1
        }
        defer { harness.stop() }
        let client = try loggedIn(harness.port, "alice")
        #expect(try client.command("a", "UNAUTHENTICATE") == ["a BAD UNAUTHENTICATE is not available here"])
        #expect(try client.command("b", "STARTTLS") == ["b BAD STARTTLS is not allowed after login"])
        #expect(try client.command("c", "XSTATE").first?.hasPrefix("* XSTATE user=alice ") == true)
        #expect(backend.events.commands("UNAUTHENTICATE").isEmpty && backend.events.commands("STARTTLS").isEmpty)
    }

    @Test func compressedSessionsNeverReturnTheirConnection() throws {
        let backend = try FakeBackend()
        defer { backend.kill() }
        let harness = try FrontendHarness(backends: [("one", backend.port)], loops: 1)
        defer { harness.stop() }
        let client = try loggedIn(harness.port, "alice")
        #expect(try client.command("a", "COMPRESS DEFLATE").last == "a OK compression would start now")
        let first = try #require(connections(backend, "COMPRESS").first)
        try client.send("b LOGOUT\r\n")
        _ = try client.readToEnd()
        #expect(backend.events.wait { _ in closed(backend, first) })
        #expect(backend.events.commands("UNAUTHENTICATE").isEmpty)
    }

    /// Closed at once, not after some exchange timed out: the response timeout here is longer
    /// than the wait, so a front end that tried UNAUTHENTICATE inside the literal (where the back
    /// end takes it for message bytes) would fail this test. The large literal is being spliced
    /// when the client goes.
    @Test(arguments: [(100, 24), (8_000_000, 1_000_000)])
    func clientKilledMidLiteralClosesTheBackendConnection(literal: Int, sent: Int) throws {
        let backend = try FakeBackend()
        defer { backend.kill() }
        let harness = try FrontendHarness(backends: [("one", backend.port)], loops: 1) {
            $0.pool.maximumConnections = 1
            $0.pool.responseTimeout = .seconds(60)
        }
        defer { harness.stop() }
        do {
            let client = try loggedIn(harness.port, "alice")
            try client.command("s", "XSTATE")
            try client.send("a APPEND INBOX {\(literal)}\r\n")
            #expect(try client.readResponse() == "+ go ahead")
            try client.send(String(repeating: "m", count: sent))
        }  // the client is gone here
        let number = try #require(connections(backend, "XSTATE").first)
        #expect(backend.events.wait(timeout: .seconds(5)) { _ in closed(backend, number) })
        #expect(backend.events.commands("APPEND").isEmpty)
        // The pool opens a fresh connection; the next user starts clean.
        let next = try loggedIn(harness.port, "bob")
        #expect(try next.command("b", "XSTATE").first?.hasPrefix("* XSTATE user=bob selected=NIL enabled=NIL") == true)
        #expect(backend.events.violations.isEmpty)
    }

    @Test func clientKilledInIdleEndsIdleAndReleasesTheConnection() throws {
        let backend = try FakeBackend()
        defer { backend.kill() }
        let harness = try FrontendHarness(backends: [("one", backend.port)], loops: 1) {
            $0.pool.maximumConnections = 1
        }
        defer { harness.stop() }
        do {
            let client = try loggedIn(harness.port, "alice")
            try client.command("s", "SELECT INBOX")
            try client.send("a IDLE\r\n")
            #expect(try client.readResponse() == "+ idling")
        }
        // DONE, then UNAUTHENTICATE once the IDLE was answered; the connection stays open.
        #expect(backend.events.wait { _ in !backend.events.commands("UNAUTHENTICATE").isEmpty })
        let done = backend.events.all.firstIndex { if case .command(_, "DONE", _) = $0 { true } else { false } }
        let unauthenticate = backend.events.all.firstIndex {
            if case .command(_, "UNAUTHENTICATE", _) = $0 { true } else { false }
        }
        #expect(done != nil && unauthenticate != nil && done! < unauthenticate!)
        let next = try loggedIn(harness.port, "bob")
        #expect(try next.command("b", "XSTATE").first?.hasPrefix("* XSTATE user=bob selected=NIL enabled=NIL") == true)
        #expect(backend.events.acceptedCount == 1 && backend.events.closedCount == 0)
        #expect(backend.events.violations.isEmpty)
    }

    @Test func clientKilledMidFetchNeverLeavesADirtyConnection() throws {
        var options = FakeBackendOptions()
        options.fetchBodySize = 8 * 1024 * 1024
        let backend = try FakeBackend(options: options)
        defer { backend.kill() }
        let harness = try FrontendHarness(backends: [("one", backend.port)], loops: 1) {
            $0.pool.maximumConnections = 1
        }
        defer { harness.stop() }
        do {
            let client = try loggedIn(harness.port, "alice")
            try client.command("s", "SELECT INBOX")
            try client.send("a FETCH 1 BODY[]\r\n")
            var chunk = [UInt8](repeating: 0, count: 1000)
            _ = recv(client.descriptor, &chunk, chunk.count, 0)  // the answer has started
        }
        let number = try #require(connections(backend, "FETCH").first)
        // The rest of the answer is read and dropped up to the FETCH's tagged line, and only then
        // does UNAUTHENTICATE go: the connection is released, not closed, and serves the next
        // user clean. (Sent any earlier, the answer would reach the pool's connection and close it.)
        #expect(backend.events.wait { _ in connections(backend, "UNAUTHENTICATE").contains(number) })
        let next = try loggedIn(harness.port, "bob")
        #expect(try next.command("b", "XSTATE").first?.hasPrefix("* XSTATE user=bob selected=NIL enabled=NIL") == true)
        #expect(connections(backend, "XSTATE") == [number])
        #expect(backend.events.acceptedCount == 1 && !closed(backend, number))
        #expect(backend.events.violations.isEmpty)
    }

    @Test func backendLostMidSessionGivesTheClientBye() throws {
        let backend = try FakeBackend()
        let harness = try FrontendHarness(backends: [("one", backend.port)])
        defer { harness.stop() }
        let client = try loggedIn(harness.port, "alice")
        backend.kill()
        #expect(try client.readToEnd() == ["* BYE The connection to the mailbox server was lost"])
    }

    @Test func oneBackendKilledOthersUntouchedAndItsUsersComeBack() throws {
        let first = try FakeBackend()
        let second = try FakeBackend()
        defer { second.kill() }
        let harness = try FrontendHarness(backends: [("first", first.port), ("second", second.port)]) {
            $0.routes = ["alice": "first", "@one.example": "first", "bob": "second"]
        }
        defer { harness.stop() }
        let bob = try loggedIn(harness.port, "bob")
        _ = try loggedIn(harness.port, "carol@one.example")
        first.kill()
        // alice's back end is gone: NO [UNAVAILABLE] within a second, every time.
        try expectUnavailableWithinASecond(harness.port, "alice", attempts: 3)
        #expect(harness.server.poolStatus()[0].down)
        // bob's session and new sessions on the other back end are untouched.
        #expect(try bob.command("b", "XSTATE").first?.hasPrefix("* XSTATE user=bob ") == true)
        let dave = try loggedIn(harness.port, "bob")
        #expect(try dave.command("c", "NOOP") == ["c OK done"])
        #expect(!harness.server.poolStatus()[1].down)
        // The first back end comes back on its port: its users work again, no front-end restart.
        let restarted = try FakeBackend(port: first.port)
        defer { restarted.kill() }
        #expect(harness.waitForPool(0) { !$0.down })
        let alice = try loggedIn(harness.port, "alice")
        #expect(try alice.command("d", "XSTATE").first?.hasPrefix("* XSTATE user=alice ") == true)
    }

    /// A login answered `NO [UNAVAILABLE]` within `bound` (a second unless said), `attempts` times.
    private func expectUnavailableWithinASecond(_ port: UInt16, _ user: String, attempts: Int,
                                                bound: Duration = .seconds(1)) throws {
        for attempt in 0..<attempts {
            let client = try TestClient(port: port)
            _ = try client.readResponse()
            let started = ContinuousClock.now
            let answer = try client.command("u\(attempt)", "LOGIN \(user) pw-\(user)")
            #expect(answer.last?.hasPrefix("u\(attempt) NO [UNAVAILABLE]") == true, "\(answer)")
            #expect(ContinuousClock.now - started < bound)
        }
    }

    /// A back end that accepts and greets but then answers nothing: the first login gives up
    /// after the response timeout (2 s here) and marks it down; later logins are refused at once,
    /// well inside that timeout, because the reconnect probes (greeted, NOOP unanswered) do not
    /// mark it up again.
    @Test func hungBackendIsMarkedDownAndItsUsersAreRefusedAtOnce() throws {
        var options = FakeBackendOptions()
        options.silentAfterGreeting = true
        let hung = try FakeBackend(options: options)
        defer { hung.kill() }
        let harness = try FrontendHarness(backends: [("hung", hung.port)], loops: 1) {
            $0.pool.minimumIdle = 1
            $0.pool.responseTimeout = .seconds(2)
        }
        defer { harness.stop() }
        #expect(harness.waitForPool(0) { $0.idle == 1 })
        try expectUnavailableWithinASecond(harness.port, "alice", attempts: 1, bound: .seconds(3))
        #expect(harness.server.poolStatus()[0].down)
        // Reconnect probes come every 20 to 100 ms here; once one has been greeted and sent its
        // NOOP, the back end is still down.
        #expect(hung.events.wait { _ in !hung.events.commands("NOOP").isEmpty })
        #expect(harness.server.poolStatus()[0].down)
        try expectUnavailableWithinASecond(harness.port, "alice", attempts: 3)
    }

    @Test func shutdownSaysByeToIdleSessions() throws {
        let backend = try FakeBackend()
        defer { backend.kill() }
        let harness = try FrontendHarness(backends: [("one", backend.port)])
        defer { harness.stop() }
        let waiting = try TestClient(port: harness.port)
        _ = try waiting.readResponse()
        let relaying = try loggedIn(harness.port, "alice")
        #expect(harness.server.sessionCount == 2)
        harness.server.beginShutdown()
        // beginShutdown returns once every loop has closed the listeners: nothing is accepted after.
        #expect((try? TestClient(port: harness.port)) == nil, "listeners are closed")
        #expect(try waiting.readToEnd() == ["* BYE Server shutting down"])
        #expect(try relaying.readToEnd() == ["* BYE Server shutting down"])
    }
}
