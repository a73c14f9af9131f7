// IMAPFrontend tests: lazy reset. A connection released by LOGOUT waits in the pool still logged in;
// the next login's one write starts with UNAUTHENTICATE, and nothing of the last user reaches the next.

import IMAPBackend
import Synchronization
import Telemetry
import Testing
import TestSupport

@testable import IMAPFrontend
@testable import Reactor

@Suite("Lazy reset")
struct LazyResetTests {
    /// A front end of one loop and a pool of `maximum` over `backend`, with a lazy-reset window
    /// long enough that only a login (or the test) ends it, unless given.
    private func frontend(_ backend: FakeBackend, maximum: Int = 1, window: Duration = .seconds(60),
                          configure: (inout FrontendConfiguration) -> Void = { _ in }) throws -> FrontendHarness {
        try FrontendHarness(backends: [("one", backend.port)], loops: 1) {
            $0.pool.maximumConnections = maximum
            $0.pool.lazyResetWindow = window
            configure(&$0)
        }
    }

    /// Logs `user` in, checks the back end's state is fresh, selects and enables something of the
    /// user's own, and logs out. Throws on anything else.
    private func session(port: UInt16, user: String) throws {
        let client = try TestClient(port: port)
        _ = try client.readResponse()
        let login = try client.command("L1", "LOGIN \(user) pw-\(user)")
        guard login.count == 1, login[0].hasPrefix("L1 OK") else { throw TestFailure("\(user)'s login gave \(login)") }
        let state = try client.command("s", "XSTATE")
        guard state.count == 2, state[0].hasPrefix("* XSTATE user=\(user) selected=NIL enabled=NIL session="),
              !state[0].hasSuffix("session=NIL")
        else {
            throw TestFailure("session of \(user) saw \(state)")
        }
        let selected = try client.command("t", "SELECT INBOX.\(user)")
        guard selected.last?.hasPrefix("t OK") == true else { throw TestFailure("\(user)'s SELECT gave \(selected)") }
        try client.command("u", "ENABLE X-\(user)")
        try client.send("v LOGOUT\r\n")
        let end = try client.readToEnd()
        guard end == ["* BYE Logging out", "v OK LOGOUT completed"] else { throw TestFailure("logout gave \(end)") }
    }

    /// Alice's session ends and her connection waits in the pool, still logged in as her.
    private func parkAlice(_ harness: FrontendHarness, _ backend: FakeBackend) throws {
        try session(port: harness.port, user: "alice")
        #expect(harness.waitForPool(0) { $0.idle == 1 && $0.busy == 0 })
        #expect(backend.connectionCount(of: "alice") == 1, "alice's connection is parked still logged in")
    }

    /// The commands of each read the back end saw, in order.
    private func writes(_ backend: FakeBackend) -> [[String]] {
        backend.events.all.compactMap { if case .received(_, let names) = $0 { names } else { nil } }
    }

    private func unauthenticates(by user: String, _ backend: FakeBackend) -> Int {
        backend.events.all.filter { if case .command(_, "UNAUTHENTICATE", user) = $0 { true } else { false } }.count
    }

    @Test func eachLoginOnAReleasedConnectionSendsUnauthenticateIDAndAuthenticateInOneWrite() throws {
        let backend = try FakeBackend()
        defer { backend.kill() }
        let harness = try frontend(backend)
        defer { harness.stop() }
        let users = ["alice", "bob", "alice", "carol", "bob", "alice"]
        for user in users { try session(port: harness.port, user: user) }
        #expect(backend.events.acceptedCount == 1)
        #expect(backend.events.violations.isEmpty, "\(backend.events.violations)")
        let logins = writes(backend).filter { $0.contains("AUTHENTICATE") }
        #expect(logins.count == users.count)
        #expect(logins.first == ["ID", "AUTHENTICATE"], "the first login is on a fresh connection")
        #expect(logins.dropFirst().allSatisfy { $0 == ["UNAUTHENTICATE", "ID", "AUTHENTICATE"] }, "\(logins)")
        // Each reset ended the session before it, of the user before.
        for (previous, user) in zip(users, users.dropFirst()) where previous != user {
            #expect(unauthenticates(by: previous, backend) >= 1)
        }
        // The last user's connection waits still logged in: no UNAUTHENTICATE yet.
        #expect(backend.events.commands("UNAUTHENTICATE").count == users.count - 1)
        #expect(backend.connectionCount(of: "alice") == 1)
    }

    /// User A's mailbox changes while A's connection is parked (a delivery, flags changed by
    /// another session of A, an expunge), and more changes come with the UNAUTHENTICATE answer:
    /// B, logging in on that connection, sees none of it and none of A's state.
    @Test func nothingOfTheLastUserReachesTheNext() throws {
        let backend = try FakeBackend()
        defer { backend.kill() }
        let harness = try frontend(backend)
        defer { harness.stop() }
        try parkAlice(harness, backend)
        let pushed = backend.announce(
            "* 5 EXISTS\r\n* 2 FETCH (FLAGS (\\Seen \\Flagged))\r\n* 3 EXPUNGE\r\n* XLEAK alice\r\n",
            toSessionsOf: "alice")
        #expect(pushed == 1)

        let client = try TestClient(port: harness.port)
        _ = try client.readResponse()
        let login = try client.command("L1", "LOGIN bob pw-bob")
        #expect(login.count == 1 && login[0].hasPrefix("L1 OK"), "\(login)")
        let state = try client.command("s", "XSTATE")
        #expect(state.count == 2 && state[0].hasPrefix("* XSTATE user=bob selected=NIL enabled=NIL "), "\(state)")
        // Anything of alice's still in flight would come before NOOP's answer.
        let noop = try client.command("n", "NOOP")
        #expect(noop == ["n OK done"])
        let everything = (login + state + noop).joined(separator: "\n")
        for leak in ["EXISTS", "EXPUNGE", "FETCH", "XLEAK", "alice", "X-alice"] {
            #expect(!everything.contains(leak), "bob saw \(leak): \(everything)")
        }
        #expect(backend.events.acceptedCount == 1)
        #expect(unauthenticates(by: "alice", backend) == 1)
        #expect(backend.events.violations.isEmpty, "\(backend.events.violations)")
        try client.send("z LOGOUT\r\n")
        _ = try client.readToEnd()
    }

    /// The same against the real back end: alice selects INBOX (IMAP4rev2 enabled) and logs out;
    /// while her connection is parked, another session of hers delivers a message, flags one and
    /// expunges one. Bob, on that connection, sees none of it, is not in selected state, and is
    /// back to IMAP4rev1 (alice's ENABLE reset).
    @Test func nothingOfTheLastUserReachesTheNextOnTheRealBackEnd() throws {
        let backend = try RunningServer { $0.trustedProxies = [TrustedNetwork("127.0.0.0/8")!] }
        defer { backend.stop() }
        let harness = try FrontendHarness(backends: [("local", backend.plainPort)], loops: 1) {
            $0.pool.maximumConnections = 1
            $0.pool.lazyResetWindow = .seconds(60)
            $0.loginDisabledOnPlain = false
        }
        defer { harness.stop() }
        let message = "Subject: hello\r\n\r\nbody\r\n"
        let alice = try TestClient(port: harness.port)
        _ = try alice.readResponse()
        #expect(try alice.command("a1", "LOGIN alice secret").last?.hasPrefix("a1 OK") == true)
        for tag in ["a2", "a3"] {
            #expect(try alice.command(tag, "APPEND INBOX {\(message.utf8.count)+}\r\n\(message)").last?
                .hasPrefix("\(tag) OK") == true)
        }
        #expect(try alice.command("a4", "ENABLE IMAP4rev2").contains("* ENABLED IMAP4rev2"))
        #expect(try alice.command("a5", "SELECT INBOX").last?.hasPrefix("a5 OK") == true)
        try alice.send("a6 LOGOUT\r\n")
        _ = try alice.readToEnd()
        #expect(harness.waitForPool(0) { $0.idle == 1 && $0.busy == 0 })

        let other = try TestClient(port: backend.plainPort)
        _ = try other.readResponse()
        #expect(try other.command("o1", "LOGIN alice secret").last?.hasPrefix("o1 OK") == true)
        #expect(try other.command("o2", "APPEND INBOX {\(message.utf8.count)+}\r\n\(message)").last?
            .hasPrefix("o2 OK") == true)
        #expect(try other.command("o3", "SELECT INBOX").last?.hasPrefix("o3 OK") == true)
        #expect(try other.command("o4", "STORE 1 +FLAGS (\\Flagged)").last?.hasPrefix("o4 OK") == true)
        #expect(try other.command("o5", "STORE 2 +FLAGS (\\Deleted)").last?.hasPrefix("o5 OK") == true)
        #expect(try other.command("o6", "EXPUNGE").last?.hasPrefix("o6 OK") == true)
        try other.send("o7 LOGOUT\r\n")
        _ = try other.readToEnd()

        let bob = try TestClient(port: harness.port)
        _ = try bob.readResponse()
        let login = try bob.command("b1", "LOGIN bob hunter2")
        #expect(login.last?.hasPrefix("b1 OK") == true, "\(login)")
        let noop = try bob.command("b2", "NOOP")
        #expect(noop.count == 1 && noop[0].hasPrefix("b2 OK"), "\(noop)")
        let fetch = try bob.command("b3", "FETCH 1 FLAGS")
        #expect(fetch.count == 1 && fetch[0].hasPrefix("b3 BAD"), "not in selected state: \(fetch)")
        let selected = try bob.command("b4", "SELECT INBOX")
        #expect(selected.contains("* 0 EXISTS") && selected.contains("* 0 RECENT"), "IMAP4rev1, bob's INBOX: \(selected)")
        let everything = (login + noop + fetch).joined(separator: "\n")
        for leak in ["EXISTS", "EXPUNGE", "FETCH (", "Flagged", "RECENT"] {
            #expect(!everything.contains(leak), "bob saw \(leak): \(everything)")
        }
        // It was alice's connection, reset by bob's login.
        let status = harness.server.poolStatus()[0]
        #expect(status.created == 1 && status.reused == 1, "\(status)")
        #expect(backend.metrics.prometheusText().contains("command=\"UNAUTHENTICATE\"} 1\n"))
        try bob.send("b5 LOGOUT\r\n")
        _ = try bob.readToEnd()
    }

    @Test func aConnectionNotTakenWithinTheWindowIsResetByItself() throws {
        let backend = try FakeBackend()
        defer { backend.kill() }
        let harness = try frontend(backend, window: .milliseconds(100))
        defer { harness.stop() }
        try session(port: harness.port, user: "alice")
        // The back end sees the UNAUTHENTICATE without another login, and alice's session ends there.
        #expect(backend.events.wait { _ in unauthenticates(by: "alice", backend) == 1 })
        #expect(harness.waitFor { backend.connectionCount(of: "alice") == 0 })
        #expect(harness.waitForPool(0) { $0.idle == 1 && $0.busy == 0 })
        // The next login finds it clean: ID and AUTHENTICATE only.
        try session(port: harness.port, user: "bob")
        #expect(writes(backend).filter { $0.contains("AUTHENTICATE") }.last == ["ID", "AUTHENTICATE"])
        #expect(backend.events.acceptedCount == 1)
    }

    /// The health check must not NOOP a parked connection as the last user's session: it resets it.
    @Test func theHealthCheckResetsAParkedConnectionInsteadOfCheckingIt() throws {
        let backend = try FakeBackend()
        defer { backend.kill() }
        let harness = try frontend(backend) { $0.pool.healthCheckInterval = .milliseconds(50) }
        defer { harness.stop() }
        try session(port: harness.port, user: "alice")
        #expect(backend.events.wait { _ in unauthenticates(by: "alice", backend) == 1 })
        // Checked again once clean: the NOOPs come from no user.
        #expect(backend.events.wait { events in
            events.contains { if case .command(_, "NOOP", nil) = $0 { true } else { false } }
        })
        #expect(backend.events.commands("NOOP").allSatisfy { if case .command(_, _, nil) = $0 { true } else { false } })
    }

    /// A parked connection past the pool's idle timeout (above the minimum) is closed like a clean
    /// one, which ends its user's session on the back end too.
    @Test func theIdleTimeoutClosesAParkedConnection() throws {
        let backend = try FakeBackend()
        defer { backend.kill() }
        let harness = try frontend(backend) {
            $0.pool.idleTimeout = .milliseconds(1)
            $0.pool.healthCheckInterval = .milliseconds(50)
        }
        defer { harness.stop() }
        try session(port: harness.port, user: "alice")
        #expect(backend.events.wait { _ in backend.events.closedCount == 1 })
        #expect(harness.waitFor { backend.connectionCount(of: "alice") == 0 })
        #expect(harness.waitForPool(0) { $0.idle == 0 && $0.busy == 0 })
    }

    /// The front end's shutdown closes parked connections with the idle ones.
    @Test func shutdownClosesAParkedConnection() throws {
        let backend = try FakeBackend()
        defer { backend.kill() }
        let harness = try frontend(backend)
        defer { harness.stop() }
        try parkAlice(harness, backend)
        harness.server.beginShutdown()
        #expect(backend.events.wait { _ in backend.events.closedCount == 1 })
        #expect(harness.waitFor { backend.connectionCount(of: "alice") == 0 })
    }

    /// UNAUTHENTICATE refused, BYE or a close at checkout: that connection is closed, nothing it
    /// said reaches the new client, and the login goes through on a new connection.
    @Test(arguments: UnauthenticateFailure.allCases)
    func aFailedResetClosesTheConnectionAndTheLoginTriesAnother(failure: UnauthenticateFailure) throws {
        var options = FakeBackendOptions()
        options.unauthenticateFailure = failure
        let backend = try FakeBackend(options: options)
        defer { backend.kill() }
        let harness = try frontend(backend)
        defer { harness.stop() }
        try parkAlice(harness, backend)
        #expect(backend.announce("* XLEAK alice\r\n", toSessionsOf: "alice") == 1)

        let client = try TestClient(port: harness.port)
        _ = try client.readResponse()
        let login = try client.command("L1", "LOGIN bob pw-bob")
        #expect(login.count == 1 && login[0].hasPrefix("L1 OK") && login[0].contains("logged in as bob"), "\(login)")
        let state = try client.command("s", "XSTATE")
        #expect(state.count == 2 && state[0].hasPrefix("* XSTATE user=bob selected=NIL enabled=NIL "), "\(state)")
        #expect(try client.command("n", "NOOP") == ["n OK done"])
        let everything = (login + state).joined(separator: "\n")
        for leak in ["EXISTS", "EXPUNGE", "FETCH", "XLEAK", "alice", "BYE"] {
            #expect(!everything.contains(leak), "bob saw \(leak): \(everything)")
        }
        // The failed connection was closed (and alice's session with it), bob's is a new one.
        #expect(backend.events.wait { events in events.contains { if case .closed = $0 { true } else { false } } })
        #expect(harness.waitFor { backend.connectionCount(of: "alice") == 0 })
        #expect(backend.events.acceptedCount == 2)
        try client.send("z LOGOUT\r\n")
        _ = try client.readToEnd()
    }

    /// Two parked connections whose resets both fail: one retry, then a clear `NO [UNAVAILABLE]`
    /// rather than a hang, and the next login works on a fresh connection.
    @Test func aLoginWhoseRetryFailsTooIsAnsweredUnavailable() throws {
        var options = FakeBackendOptions()
        options.unauthenticateFailure = .no
        let backend = try FakeBackend(options: options)
        defer { backend.kill() }
        let harness = try frontend(backend, maximum: 2)
        defer { harness.stop() }
        // Two sessions at once, so two connections are parked.
        let first = try TestClient(port: harness.port)
        let second = try TestClient(port: harness.port)
        for (client, user) in [(first, "alice"), (second, "carol")] {
            _ = try client.readResponse()
            try client.login(user)
        }
        for client in [first, second] {
            try client.send("v LOGOUT\r\n")
            _ = try client.readToEnd()
        }
        #expect(harness.waitForPool(0) { $0.idle == 2 && $0.busy == 0 })

        let client = try TestClient(port: harness.port)
        _ = try client.readResponse()
        let refused = try client.command("L1", "LOGIN bob pw-bob")
        #expect(refused == ["L1 NO [UNAVAILABLE] The mailbox server is not available; try again later"])
        #expect(backend.events.wait { events in events.filter { if case .closed = $0 { true } else { false } }.count == 2 })
        let login = try client.command("L2", "LOGIN bob pw-bob")
        #expect(login.count == 1 && login[0].hasPrefix("L2 OK"), "\(login)")
        #expect(try client.command("s", "XSTATE").first?.hasPrefix("* XSTATE user=bob selected=NIL") == true)
        try client.send("z LOGOUT\r\n")
        _ = try client.readToEnd()
    }

    /// Whether a login on the front end waits for a connection (every slot taken).
    private func aLoginWaits(_ harness: FrontendHarness) -> Bool {
        harness.waitFor { harness.server.core.poolShares[0].wantingLoops.load(ordering: .relaxed) != 0 }
    }

    /// A failed login's untagged lines (sent ahead of its NO) are the failed client's: bob, whose
    /// login was waiting for that connection, sees none of them.
    @Test func untaggedLinesOfAFailedLoginNeverReachTheNextLogin() throws {
        var options = FakeBackendOptions()
        options.failedLoginUntagged = "* XLEAK carol\r\n* OK [ALERT] carol, check your password\r\n"
        options.holdFailedLogins = true
        let backend = try FakeBackend(options: options)
        defer { backend.kill() }
        let harness = try frontend(backend)
        defer { harness.stop() }
        let carol = try TestClient(port: harness.port)
        _ = try carol.readResponse()
        try carol.send("c1 LOGIN carol wrong\r\n")
        #expect(backend.events.wait { _ in !backend.events.commands("AUTHENTICATE").isEmpty })
        let bob = try TestClient(port: harness.port)
        _ = try bob.readResponse()
        try bob.send("L1 LOGIN bob pw-bob\r\n")
        #expect(aLoginWaits(harness))
        #expect(backend.releaseHeldAnswers() == 1)

        let refused = try carol.responses(until: "c1")
        #expect(refused.last?.hasPrefix("c1 NO [AUTHENTICATIONFAILED]") == true, "\(refused)")
        let login = try bob.responses(until: "L1")
        #expect(login.count == 1 && login[0].hasPrefix("L1 OK"), "\(login)")
        let everything = login.joined(separator: "\n")
        for leak in ["XLEAK", "carol", "ALERT"] { #expect(!everything.contains(leak), "bob saw \(leak): \(everything)") }
        #expect(backend.events.acceptedCount == 1, "bob's login took carol's connection")
        try bob.send("z LOGOUT\r\n")
        _ = try bob.readToEnd()
    }

    /// A zero window is the eager reset: UNAUTHENTICATE on its own at release, as before.
    @Test func aZeroWindowResetsAtRelease() throws {
        let backend = try FakeBackend()
        defer { backend.kill() }
        let harness = try frontend(backend, window: .zero)
        defer { harness.stop() }
        try session(port: harness.port, user: "alice")
        // On its own: a write of the UNAUTHENTICATE alone, with no login behind it.
        #expect(backend.events.wait { _ in writes(backend).contains(["UNAUTHENTICATE"]) })
        #expect(unauthenticates(by: "alice", backend) == 1)
    }
}
