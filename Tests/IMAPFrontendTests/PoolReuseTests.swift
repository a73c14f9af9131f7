// IMAPFrontend tests: pooled back-end connections are really reused, and never carry a user's state.

import IMAPBackend
import Synchronization
import Telemetry
import Testing
import TestSupport

@testable import IMAPFrontend
@testable import Reactor

@Suite("Pool reuse")
struct PoolReuseTests {
    /// One whole session: login, check the back end's state is fresh, dirty it, log out.
    /// Returns the session id the back end was given.
    private func session(port: UInt16, user: String) throws -> String {
        let client = try TestClient(port: port)
        _ = try client.readResponse()
        try client.login(user)
        let state = try client.command("s", "XSTATE")
        guard state.count == 2, state[0].hasPrefix("* XSTATE user=\(user) selected=NIL enabled=NIL session="),
            state[1].hasPrefix("s OK")
        else {
            throw TestFailure("session of \(user) saw \(state)")
        }
        try client.command("t", "SELECT INBOX.\(user)")
        try client.command("u", "ENABLE X-\(user)")
        try client.send("v LOGOUT\r\n")
        let end = try client.readToEnd()
        guard end == ["* BYE Logging out", "v OK LOGOUT completed"] else { throw TestFailure("logout gave \(end)") }
        return String(state[0].split(separator: "=").last!)
    }

    @Test func thousandSessionsOfHundredUsersUseAtMostFourBackendConnections() throws {
        let backend = try FakeBackend()
        defer { backend.kill() }
        let harness = try FrontendHarness(backends: [("one", backend.port)]) { $0.pool.maximumConnections = 4 }
        defer { harness.stop() }
        var sessionIDs = Set<String>()
        for number in 0..<1000 {
            sessionIDs.insert(try session(port: harness.port, user: "user\(number % 100)"))
        }
        #expect(backend.events.acceptedCount <= 4)
        #expect(backend.events.violations.isEmpty)
        // Each session's ID reached the back end afresh (ID state never survives a reuse).
        #expect(sessionIDs.count == 1000 && !sessionIDs.contains("NIL"))
        let status = harness.server.poolStatus()[0]
        #expect(status.created <= 4 && status.reused >= 996 && !status.down)
        #expect(backend.events.commands("UNAUTHENTICATE").count >= 996)
    }

    /// The most back-end connections open at once, from the back end's own accept and close events.
    private func peakOpen(_ events: [FakeEvent]) -> Int {
        var open = 0
        var peak = 0
        for event in events {
            if case .accepted = event { open += 1 }
            if case .closed = event { open -= 1 }
            peak = max(peak, open)
        }
        return peak
    }

    /// The maximum is the back end's, not a loop's: 8 clients at once over 2 loops with a pool of
    /// 4 never make the back end see a fifth connection, and every session still gets one. With a
    /// pool of 1 the single connection serves both loops' clients (lent from loop to loop).
    @Test(arguments: [4, 1])
    func poolMaximumHoldsAcrossLoops(maximum: Int) throws {
        let backend = try FakeBackend()
        defer { backend.kill() }
        let harness = try FrontendHarness(backends: [("one", backend.port)], loops: 2) {
            $0.pool.maximumConnections = maximum
            $0.pool.minimumIdle = min(2, maximum)
        }
        defer { harness.stop() }
        let failures = Mutex<[String]>([])
        let port = harness.port
        let clients = (0..<8).map { client in
            JoinableThread(name: "fe-client\(client)") {
                for number in 0..<25 {
                    do {
                        _ = try self.session(port: port, user: "user\(client)x\(number)")
                    } catch {
                        failures.withLock { $0.append("\(error)") }
                    }
                }
            }
        }
        for client in clients { client.join() }
        #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0 })")
        #expect(peakOpen(backend.events.all) <= maximum, "the back end saw \(peakOpen(backend.events.all)) at once")
        #expect(backend.events.acceptedCount <= maximum)
        #expect(backend.events.violations.isEmpty)
        let status = harness.server.poolStatus()[0]
        #expect(status.created <= maximum && status.reused >= 200 - maximum)
        if maximum == 1 {
            // Both loops' clients were served: the one connection moved between them.
            #expect(harness.server.core.poolShares[0].lent.load(ordering: .relaxed) > 0)
        }
    }

    @Test func failedLoginReturnsTheConnectionUnauthenticated() throws {
        let backend = try FakeBackend()
        defer { backend.kill() }
        let harness = try FrontendHarness(backends: [("one", backend.port)], loops: 1) {
            $0.pool.maximumConnections = 1
        }
        defer { harness.stop() }
        let client = try TestClient(port: harness.port)
        _ = try client.readResponse()
        let refused = try client.command("a", "LOGIN alice wrong")
        #expect(refused == ["a NO [AUTHENTICATIONFAILED] wrong password"])
        try client.login("alice", tag: "b")
        #expect(try client.command("c", "XSTATE").first?.hasPrefix("* XSTATE user=alice ") == true)
        #expect(backend.events.acceptedCount == 1)
        #expect(backend.events.violations.isEmpty)
        let metrics = harness.metrics.prometheusText()
        #expect(metrics.contains("apus_imap4_logins_total{result=\"ok\"} 1\n"))
        #expect(metrics.contains("apus_imap4_logins_total{result=\"rejected\"} 1\n"))
    }

    @Test func failedLoginsAreSlowedPerAddress() throws {
        let backend = try FakeBackend()
        defer { backend.kill() }
        let harness = try FrontendHarness(backends: [("one", backend.port)]) {
            $0.failedLoginDelay = .milliseconds(150)
            $0.failedLoginMaximumDelay = .milliseconds(400)
        }
        defer { harness.stop() }
        let client = try TestClient(port: harness.port)
        _ = try client.readResponse()
        var started = ContinuousClock.now
        try client.command("a", "LOGIN alice wrong")
        #expect(ContinuousClock.now - started >= .milliseconds(150))
        started = ContinuousClock.now
        try client.command("b", "LOGIN alice wrong")
        #expect(ContinuousClock.now - started >= .milliseconds(300))
        // A success clears the count: the next failure is slowed by the base delay only.
        try client.login("alice", tag: "c")
        try client.send("d LOGOUT\r\n")
        _ = try client.readToEnd()
        let again = try TestClient(port: harness.port)
        _ = try again.readResponse()
        started = ContinuousClock.now
        try again.command("e", "LOGIN alice wrong")
        #expect(ContinuousClock.now - started < .milliseconds(300))
    }

    @Test func connectionsPerClientAddressAreLimited() throws {
        let harness = try FrontendHarness(backends: [("nowhere", 1)]) { $0.maximumConnectionsPerAddress = 2 }
        defer { harness.stop() }
        let first = try TestClient(port: harness.port)
        let second = try TestClient(port: harness.port)
        #expect(try first.readResponse()?.hasPrefix("* OK") == true)
        #expect(try second.readResponse()?.hasPrefix("* OK") == true)
        let third = try TestClient(port: harness.port)
        #expect(try third.readToEnd() == ["* BYE Too many connections from your address"])
        try first.send("a LOGOUT\r\n")
        _ = try first.readToEnd()
        // The limit counts open connections: a slot freed is a slot offered again. The close is
        // seen by the front end's loop a moment later, so allow a few attempts, all bounded.
        var admitted = false
        for _ in 0..<200 where !admitted {
            let fourth = try TestClient(port: harness.port)
            admitted = try fourth.readResponse()?.hasPrefix("* OK") == true
        }
        #expect(admitted)
    }

    @Test func backendWithoutUnauthenticateServesOneSessionPerConnection() throws {
        var options = FakeBackendOptions()
        options.supportsUnauthenticate = false
        options.capabilityInGreeting = false
        let backend = try FakeBackend(options: options)
        defer { backend.kill() }
        let harness = try FrontendHarness(backends: [("dovecot-like", backend.port)], loops: 1)
        defer { harness.stop() }
        _ = try session(port: harness.port, user: "alice")
        _ = try session(port: harness.port, user: "bob")
        #expect(
            backend.events.wait { events in events.filter { if case .closed = $0 { true } else { false } }.count >= 2 })
        #expect(backend.events.acceptedCount >= 2)
        #expect(backend.events.commands("UNAUTHENTICATE").isEmpty)
        #expect(backend.events.commands("CAPABILITY").count >= 1)  // asked, since the greeting did not say
        #expect(backend.events.violations.isEmpty)
    }

    @Test func unauthenticateAdvertisedOnlyAfterLoginIsStillUsed() throws {
        var options = FakeBackendOptions()
        options.unauthenticateOnlyAfterLogin = true
        let backend = try FakeBackend(options: options)
        defer { backend.kill() }
        let harness = try FrontendHarness(backends: [("one", backend.port)], loops: 1)
        defer { harness.stop() }
        _ = try session(port: harness.port, user: "alice")
        _ = try session(port: harness.port, user: "bob")
        #expect(backend.events.acceptedCount == 1)
        #expect(backend.events.wait { _ in backend.events.commands("UNAUTHENTICATE").count == 2 })
        #expect(backend.events.violations.isEmpty)
    }

    /// The hop's UNAUTHENTICATE is the front end's business: clients never see it advertised,
    /// neither in the login answer nor in CAPABILITY after login.
    @Test func clientsNeverSeeUnauthenticateAdvertised() throws {
        for afterLoginOnly in [false, true] {
            var options = FakeBackendOptions()
            options.unauthenticateOnlyAfterLogin = afterLoginOnly
            let backend = try FakeBackend(options: options)
            defer { backend.kill() }
            let harness = try FrontendHarness(backends: [("one", backend.port)], loops: 1)
            defer { harness.stop() }
            let client = try TestClient(port: harness.port)
            _ = try client.readResponse()
            let login = try client.command("L1", "LOGIN alice pw-alice")
            #expect(login.last?.hasPrefix("L1 OK") == true, "\(login)")
            #expect(!login.joined().uppercased().contains("UNAUTHENTICATE"), "\(login)")
            let capability = try client.command("c", "CAPABILITY")
            #expect(capability.count == 2 && capability[0].hasPrefix("* CAPABILITY IMAP4rev"), "\(capability)")
            #expect(!capability[0].uppercased().contains("UNAUTHENTICATE"))
            #expect(capability[0].contains("IDLE"), "the rest of the back end's list is kept")
            try client.send("z LOGOUT\r\n")
            _ = try client.readToEnd()
        }
    }

    /// The minimum idle is the back end's, not each loop's: 2 loops with a minimum of 2 open 2
    /// ahead, greeted; a login takes one of them and the pool opens one more to stay at 2.
    @Test func minimumIdleConnectionsAreOpenedAheadAndGreeted() throws {
        let backend = try FakeBackend()
        defer { backend.kill() }
        let harness = try FrontendHarness(backends: [("one", backend.port)], loops: 2) {
            $0.pool.minimumIdle = 2
            $0.pool.maximumConnections = 8
        }
        defer { harness.stop() }
        #expect(harness.waitForPool(0) { $0.idle == 2 })
        #expect(backend.events.acceptedCount == 2)
        let client = try TestClient(port: harness.port)
        _ = try client.readResponse()
        try client.login("alice")
        #expect(harness.waitForPool(0) { $0.idle == 2 && $0.busy == 1 })
        #expect(backend.events.acceptedCount == 3)
        try client.send("z LOGOUT\r\n")
        _ = try client.readToEnd()
        #expect(harness.waitForPool(0) { $0.idle == 3 && $0.busy == 0 })
        #expect(backend.events.acceptedCount == 3)
    }

    @Test func idleConnectionsAreHealthCheckedWithNOOP() throws {
        let backend = try FakeBackend()
        defer { backend.kill() }
        let harness = try FrontendHarness(backends: [("one", backend.port)], loops: 1) {
            $0.pool.minimumIdle = 1
            $0.pool.healthCheckInterval = .milliseconds(50)
        }
        defer { harness.stop() }
        #expect(
            backend.events.wait { events in
                events.contains { if case .command(_, "NOOP", nil) = $0 { true } else { false } }
            })
        _ = try session(port: harness.port, user: "alice")
        // Checked connections stay open: at most the one checked and one opened to keep the
        // minimum while the session had the first.
        #expect(backend.events.acceptedCount <= 2 && backend.events.closedCount == 0)
    }

    /// A real back end's count of logins that moved to the user's home loop (`moved`) or found
    /// the connection already there (`home`).
    private func backendLogins(_ backend: RunningServer, _ placement: String) -> Int {
        let prefix = "apus_imap4be_login_loop_total{loop=\"\(placement)\"} "
        let line = backend.metrics.prometheusText().split(separator: "\n").first { $0.hasPrefix(prefix) }
        return line.flatMap { Int($0.dropFirst(prefix.count)) } ?? -1
    }

    /// One session of a real back end's user through the front end: login, NOOP, logout.
    private func realSession(port: UInt16, user: String, password: String) throws {
        let client = try TestClient(port: port)
        _ = try client.readResponse()
        let login = try client.command("L", "LOGIN \(user) \(password)")
        guard login.last?.hasPrefix("L OK") == true else { throw TestFailure("login \(user): \(login)") }
        try client.command("n", "NOOP")
        try client.send("z LOGOUT\r\n")
        _ = try client.readToEnd()
    }

    /// Behind the front end, an Apus back end of 2 loops says in its ID answers where each hop
    /// connection is; after a login a connection is on the user's home loop. Once the pool holds
    /// one connection on each back-end loop, every login takes the one already on its user's home
    /// loop and the back end moves none. (Without the preference, alternating users would move at
    /// every login: the most recently returned connection is on the other user's loop.)
    @Test func loginsTakeTheHopConnectionAlreadyOnTheUsersHomeLoop() throws {
        let backend = try RunningServer { $0.trustedProxies = [TrustedNetwork("127.0.0.0/8")!] }
        defer { backend.stop() }
        let harness = try FrontendHarness(backends: [("apus", backend.plainPort)], loops: 1) {
            $0.pool.maximumConnections = 2
        }
        defer { harness.stop() }
        // alice's home is loop 1, bob's loop 0 (HomeLoopTests). Logged in at once, they leave one
        // connection on each loop.
        let users = [("alice", "secret"), ("bob", "hunter2")]
        let clients = try users.map { user, password in
            let client = try TestClient(port: harness.port)
            _ = try client.readResponse()
            let login = try client.command("L", "LOGIN \(user) \(password)")
            #expect(login.last?.hasPrefix("L OK") == true, "\(login)")
            return client
        }
        for client in clients {
            try client.send("z LOGOUT\r\n")
            _ = try client.readToEnd()
        }
        #expect(harness.waitForPool(0) { $0.idle == 2 })
        let movedBefore = backendLogins(backend, "moved")
        let homeBefore = backendLogins(backend, "home")
        #expect(movedBefore + homeBefore == 2)
        for number in 0..<20 {
            // Each login finds both connections back in the pool, so the choice is the pool's alone.
            #expect(harness.waitForPool(0) { $0.idle == 2 })
            let (user, password) = users[number % 2]
            try realSession(port: harness.port, user: user, password: password)
        }
        #expect(backendLogins(backend, "moved") == movedBefore)
        #expect(backendLogins(backend, "home") == homeBefore + 20)
        #expect(harness.server.poolStatus()[0].created == 2)
    }

    /// A login looks for a connection on its user's home loop among the most recently returned
    /// ``BackendPool/homeLoopScanLimit`` idle connections only; past them it takes the warmest.
    /// alice's connection (on her home loop, 1) went back first, then `others` of bob (home loop
    /// 0): within the limit alice gets hers back, one deeper she gets the last of bob's.
    @Test(arguments: [BackendPool.homeLoopScanLimit - 1, BackendPool.homeLoopScanLimit])
    func theHomeLoopSearchLooksAtTheWarmestConnectionsOnly(others: Int) throws {
        var options = FakeBackendOptions()
        options.idFields = " \"x-apus-loop\" \"0\" \"x-apus-loops\" \"2\""
        let backend = try FakeBackend(options: options)
        defer { backend.kill() }
        let harness = try FrontendHarness(backends: [("one", backend.port)], loops: 1) {
            $0.pool.maximumConnections = others + 1
            $0.pool.lazyResetWindow = .seconds(60)
        }
        defer { harness.stop() }
        let clients = try (0...others).map { number in
            let client = try TestClient(port: harness.port)
            _ = try client.readResponse()
            try client.login(number == 0 ? "alice" : "bob")
            return client
        }
        // One at a time, so the pool's list is in this order, alice's deepest.
        for (number, client) in clients.enumerated() {
            try client.send("z LOGOUT\r\n")
            _ = try client.readToEnd()
            #expect(harness.waitForPool(0) { $0.idle == number + 1 })
        }
        _ = try session(port: harness.port, user: "alice")
        // The connection a login takes is reset first: by the user it was left logged in as.
        let resetBy = backend.events.commands("UNAUTHENTICATE").compactMap { event -> String? in
            if case .command(_, _, let user) = event { user } else { nil }
        }
        let expected = others < BackendPool.homeLoopScanLimit ? "alice" : "bob"
        #expect(resetBy == [expected], "\(resetBy)")
    }

    /// Loop fields a back end gets wrong (out of range, not numbers, one without the other) are
    /// ignored: logins go on over the pooled connection as with a back end that sends none.
    @Test(arguments: [
        " \"x-apus-loop\" \"5\" \"x-apus-loops\" \"2\"",
        " \"x-apus-loop\" \"0\" \"x-apus-loops\" \"99999999999999999999\"",
        " \"X-APUS-LOOP\" \"-1\" \"x-apus-loops\" \"two\"",
        " \"x-apus-loops\" \"2\"",
    ])
    func malformedLoopFieldsAreIgnored(fields: String) throws {
        var options = FakeBackendOptions()
        options.idFields = fields
        let backend = try FakeBackend(options: options)
        defer { backend.kill() }
        let harness = try FrontendHarness(backends: [("one", backend.port)], loops: 1) { $0.pool.maximumConnections = 2 }
        defer { harness.stop() }
        for user in ["alice", "bob", "alice", "carol"] {
            #expect(harness.waitForPool(0) { $0.busy == 0 })
            _ = try session(port: harness.port, user: user)
        }
        #expect(backend.events.acceptedCount == 1)
        #expect(backend.events.violations.isEmpty)
    }

    @Test func hopConnectionsComeFromTheConfiguredSourceAddressesInTurn() throws {
        let backend = try FakeBackend()
        defer { backend.kill() }
        let harness = try FrontendHarness(backends: [("one", backend.port)], loops: 1) {
            $0.pool.sourceAddresses = ["127.0.0.2", "127.0.0.3"]
            $0.pool.minimumIdle = 4
        }
        defer { harness.stop() }
        #expect(harness.waitForPool(0) { $0.idle == 4 })
        let peers = backend.events.all.compactMap { if case .peer(let host) = $0 { host } else { nil } }
        #expect(peers.sorted() == ["127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3"])
    }
}
