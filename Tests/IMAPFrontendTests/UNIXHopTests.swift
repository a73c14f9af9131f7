// IMAPFrontend tests: the hop to a back end on the same host over its local (UNIX) socket.

import CShims
import Glibc
import IMAPBackend
import MailStore
import Reactor
import Synchronization
import Telemetry
import Testing
import TestSupport

@testable import IMAPFrontend

/// A real back end that listens on a local socket and trusts no TCP address, and a front end of
/// one loop whose only back end is that socket.
private final class UNIXHop {
    let socketDirectory = TemporaryDirectory(prefix: "apus-unixhop")
    let backend: RunningServer
    let frontend: FrontendHarness
    var socketPath: String { socketDirectory.path + "/imap4be-imap.sock" }

    init(poolMaximum: Int) throws {
        let path = socketDirectory.path + "/imap4be-imap.sock"
        backend = try RunningServer { $0.localSocketPath = path }
        do {
            frontend = try FrontendHarness(backends: [("local", 0)], loops: 1) {
                $0.backends = [BackendEndpoint(name: "local", host: path, port: 0)]
                $0.pool.maximumConnections = poolMaximum
            }
        } catch {
            backend.stop()
            throw error
        }
        for (user, password) in [("carol", "carol-pw"), ("dave", "dave-pw")] {
            try PasswordFile(path: backend.accounts.usersFile).setPassword(user: user, password: Array(password.utf8))
        }
    }

    /// Back-end connections accepted so far, counted by the back end.
    var backendConnections: UInt64 {
        backend.metrics.counter("apus_imap4be_connections_total", help: "").current
    }

    var splicedBytes: UInt64 { frontend.metrics.counter("apus_imap4_spliced_bytes_total", help: "").current }

    func stop() {
        frontend.stop()
        backend.stop()
        socketDirectory.remove()
    }
}

@Suite("UNIX hop")
struct UNIXHopTests {
    static let users = [("alice", "secret"), ("bob", "hunter2"), ("carol", "carol-pw"), ("dave", "dave-pw")]

    /// A message of about 3 MB: far above the splice threshold.
    static let largeMessage: String = {
        var text = "From: a@example.com\r\nSubject: large\r\n\r\n"
        let line = String(repeating: "0123456789", count: 7) + "abcd\r\n"
        for _ in 0..<40_000 { text += line }
        return text
    }()

    @Test func sessionWithALargeFetchThroughTheUNIXHop() throws {
        let hop = try UNIXHop(poolMaximum: 2)
        defer { hop.stop() }
        let client = try TestClient(port: hop.frontend.port)
        #expect(try client.readResponse()?.hasPrefix("* OK") == true)
        let login = try client.command("a", "LOGIN alice secret")
        #expect(login.last?.hasPrefix("a OK") == true, "\(login)")
        let size = Self.largeMessage.utf8.count
        try client.send("b APPEND INBOX {\(size)+}\r\n" + Self.largeMessage + "\r\n")
        #expect(try client.responses(until: "b").last?.hasPrefix("b OK") == true)
        #expect(try client.command("c", "SELECT INBOX").contains("* 1 EXISTS"))
        let splicedBefore = hop.splicedBytes
        let fetched = try client.command("d", "FETCH 1 BODY.PEEK[]")
        #expect(fetched.count == 2 && fetched.last?.hasPrefix("d OK") == true, "\(fetched.map { $0.prefix(80) })")
        let whole = fetched.first == "* 1 FETCH (BODY[] {\(size)}\r\n" + Self.largeMessage + ")"
        #expect(whole, "the body came back changed: \(fetched.first?.prefix(80) ?? "nothing")")
        // Both sides plain: the body went back end to client by splice(2) from the UNIX socket.
        #expect(hop.splicedBytes - splicedBefore > UInt64(size / 2), "spliced \(hop.splicedBytes - splicedBefore)")
        try client.send("e LOGOUT\r\n")
        #expect(try client.readToEnd() == ["* BYE Logging out", "e OK LOGOUT completed"])
    }

    /// Sequential sessions of four users reuse the pool's two connections (counted by the back
    /// end), and each session starts clean: nothing selected, and only its own mailbox.
    @Test func sequentialSessionsReuseThePoolAndStayApart() throws {
        let hop = try UNIXHop(poolMaximum: 2)
        defer { hop.stop() }
        for number in 0..<24 {
            let (user, password) = Self.users[number % Self.users.count]
            let client = try TestClient(port: hop.frontend.port)
            _ = try client.readResponse()
            #expect(try client.command("a", "LOGIN \(user) \(password)").last?.hasPrefix("a OK") == true)
            // Nothing selected after a reuse.
            #expect(try client.command("b", "FETCH 1 FLAGS").last?.hasPrefix("b BAD") == true)
            if number < Self.users.count {
                // Each user leaves one message of their own in their INBOX on the first visit.
                let note = "Subject: \(user)\r\n\r\nfor \(user)\r\n"
                #expect(try client.command("c", "APPEND INBOX {\(note.utf8.count)+}\r\n\(note)").last?
                    .hasPrefix("c OK") == true)
            }
            let selected = try client.command("d", "SELECT INBOX")
            #expect(selected.contains("* 1 EXISTS"), "\(user): \(selected)")
            let subject = try client.command("e", "FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]")
            #expect(subject.first?.contains("Subject: \(user)\r\n") == true, "\(user) saw \(subject)")
            try client.send("f LOGOUT\r\n")
            _ = try client.readToEnd()
        }
        #expect(hop.backendConnections <= 2, "the back end accepted \(hop.backendConnections)")
        let status = hop.frontend.server.poolStatus()[0]
        #expect(status.reused >= 22 && !status.down, "\(status)")
    }

    /// AF_UNIX connects fail at once (EAGAIN) when the listener's backlog is full, where TCP's
    /// would wait: a burst of pool refills must not mark the back end down (failing every login).
    @Test func aFullBacklogDefersConnectsWithoutMarkingTheBackEndDown() throws {
        let directory = TemporaryDirectory(prefix: "apus-unixfull")
        defer { directory.remove() }
        let path = directory.path + "/imap4be-imap.sock"
        // A listener of backlog 1 that never accepts: the third connect finds the backlog full.
        var device: UInt64 = 0, inode: UInt64 = 0
        let listener = cshim_listen_unix(path, 1, &device, &inode)
        try #require(listener >= 0)
        defer { close(listener) }
        let frontend = try FrontendHarness(backends: [("local", 0)], loops: 1) {
            $0.backends = [BackendEndpoint(name: "local", host: path, port: 0)]
            $0.pool.minimumIdle = 6
            $0.pool.maximumConnections = 6
            // The two queued connects must not time out (and count as a silent back end) first.
            $0.pool.connectTimeout = .seconds(60)
        }
        defer { frontend.stop() }
        let shared = frontend.server.core.poolShares[0]
        // Deferred more than once: the pool went on retrying rather than giving up.
        #expect(frontend.waitFor { shared.deferredConnects.load(ordering: .relaxed) >= 3 })
        #expect(!frontend.server.poolStatus()[0].down)
    }
}
