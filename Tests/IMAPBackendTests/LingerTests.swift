// IMAPBackendTests: a user whose last session ended lingers open (`linger`, `linger_users`): the
// next login finds its mailboxes in memory, mail delivered meanwhile still shows at SELECT, and the
// user closes (clean index snapshot) when the linger ends, when too many users linger, or when the
// server stops.

import Glibc
import MailStore
import Synchronization
import Testing
import TestSupport
@testable import IMAPBackend

/// Counts the back end's reads of mailboxes from disk, by name.
private final class LoadCounter: Sendable {
    private let counts = Mutex<[String: Int]>([:])
    func record(_ name: String) { counts.withLock { $0[name, default: 0] += 1 } }
    func count(_ name: String) -> Int { counts.withLock { $0[name, default: 0] } }
}

/// Whether the user's INBOX index on disk is a clean snapshot (written at close), read from the
/// file's header: the `clean` word at offset 12 (MessageIndex's format).
private func inboxIndexIsClean(_ server: RunningServer, user: String) -> Bool {
    let path = server.accounts.dataDirectory + "/users/" + user + "/apus-index"
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var word: UInt32 = 0
    return pread(fd, &word, 4, 12) == 4 && UInt32(littleEndian: word) == 1
}

/// Logs `user` in, selects INBOX, changes a flag (so the index differs from any snapshot), logs out,
/// and waits until the server has let go of the session.
private func visitAndLeave(_ server: RunningServer, user: String, password: String) throws {
    let client = try TestClient(port: server.plainPort)
    _ = client.readLine()
    #expect(client.command("a", "LOGIN \(user) \(password)").contains("a OK"))
    #expect(client.command("b", "APPEND INBOX {5+}\r\nhello").contains("b OK"))
    #expect(client.command("c", "SELECT INBOX").contains("c OK"))
    #expect(client.command("d", "STORE 1 +FLAGS (\\Flagged)").contains("d OK"))
    #expect(client.command("e", "LOGOUT").contains("e OK"))
    #expect(waitUntil { server.server.sessionCount == 0 }, "the session ended on the server")
}

@Suite struct LingerTests {
    @Test func aUserComingBackWithinTheLingerFindsInboxOpen() throws {
        for linger in [Duration.seconds(30), .zero] {
            let loads = LoadCounter()
            let server = try RunningServer { configuration in
                configuration.linger = linger
                configuration.testsOnly_beforeMailboxLoad = { loads.record($0) }
            }
            defer { server.stop() }
            try visitAndLeave(server, user: "alice", password: "secret")
            let loadsBefore = loads.count("INBOX")
            #expect(loadsBefore >= 1)

            let again = try TestClient(port: server.plainPort)
            _ = again.readLine()
            #expect(again.command("a", "LOGIN alice secret").contains("a OK"))
            let select = again.command("b", "SELECT INBOX")
            #expect(select.contains("* 1 EXISTS") && select.contains("b OK"))
            #expect(again.command("c", "FETCH 1 FLAGS").contains("\\Flagged"), "the flag change is there either way")
            // Lingering, INBOX was still open; without it, it is read from disk again.
            #expect(loads.count("INBOX") == loadsBefore + (linger > .zero ? 0 : 1), "linger \(linger)")
        }
    }

    @Test func mailDeliveredWhileTheUserLingersShowsAtSelect() throws {
        let server = try RunningServer()
        defer { server.stop() }
        try visitAndLeave(server, user: "alice", password: "secret")
        // A delivery agent drops a message into new/ while nobody is logged in.
        let delivered = server.accounts.dataDirectory + "/users/alice/new/1700000000.delivered.host"
        writeFile(delivered, "From: x@example.com\r\nSubject: arrived\r\n\r\nbody\r\n")

        let client = try TestClient(port: server.plainPort)
        _ = client.readLine()
        #expect(client.command("a", "LOGIN alice secret").contains("a OK"))
        let select = client.command("b", "SELECT INBOX")
        #expect(select.contains("* 2 EXISTS"), "\(select)")
        #expect(client.command("c", "FETCH 2 BODY.PEEK[HEADER.FIELDS (SUBJECT)]").contains("Subject: arrived"))
    }

    @Test func statusOfAKeptMailboxCountsMailDeliveredMeanwhile() throws {
        let loads = LoadCounter()
        let server = try RunningServer { $0.testsOnly_beforeMailboxLoad = { loads.record($0) } }
        defer { server.stop() }
        try visitAndLeave(server, user: "alice", password: "secret")
        let client = try TestClient(port: server.plainPort)
        _ = client.readLine()
        #expect(client.command("a", "LOGIN alice secret").contains("a OK"))
        #expect(client.command("b", "STATUS INBOX (MESSAGES)").contains("(MESSAGES 1)"))
        let loadsBefore = loads.count("INBOX")
        writeFile(server.accounts.dataDirectory + "/users/alice/new/1700000001.delivered.host",
                  "Subject: later\r\n\r\nbody\r\n")
        #expect(client.command("c", "STATUS INBOX (MESSAGES)").contains("(MESSAGES 2)"))
        #expect(client.command("d", "LIST \"\" INBOX RETURN (STATUS (MESSAGES))").contains("(MESSAGES 2)"))
        #expect(loads.count("INBOX") > loadsBefore, "read again, on a worker, for the delivery")
    }

    @Test func statusOfOtherFoldersDoesNotPushInboxOut() throws {
        let loads = LoadCounter()
        let server = try RunningServer { $0.testsOnly_beforeMailboxLoad = { loads.record($0) } }
        defer { server.stop() }
        let client = try TestClient(port: server.plainPort)
        _ = client.readLine()
        #expect(client.command("a", "LOGIN alice secret").contains("a OK"))
        #expect(client.command("b", "SELECT INBOX").contains("b OK"))
        // A client's folder sweep: more folders than a user keeps open.
        for (index, folder) in ["Drafts", "Sent", "Trash", "Junk"].enumerated() {
            #expect(client.command("s\(index)", "STATUS \(folder) (MESSAGES)").contains("s\(index) OK"))
        }
        #expect(client.command("c", "LOGOUT").contains("c OK"))
        #expect(waitUntil { server.server.sessionCount == 0 })
        let loadsBefore = loads.count("INBOX")

        let again = try TestClient(port: server.plainPort)
        _ = again.readLine()
        #expect(again.command("a", "LOGIN alice secret").contains("a OK"))
        #expect(again.command("b", "SELECT INBOX").contains("b OK"))
        #expect(loads.count("INBOX") == loadsBefore, "INBOX, the mailbox selected, stayed open")
    }

    @Test func aLingeringUserClosesWhenTheLingerEnds() throws {
        let server = try RunningServer { $0.linger = .milliseconds(300) }
        defer { server.stop() }
        try visitAndLeave(server, user: "alice", password: "secret")
        #expect(!inboxIndexIsClean(server, user: "alice"), "still open right after the logout")
        #expect(waitUntil { inboxIndexIsClean(server, user: "alice") }, "closed with a clean snapshot once the linger ended")
    }

    @Test func beyondLingerUsersTheOldestCloses() throws {
        // One lingering user per loop (the limit is per process, shared by the two loops).
        let server = try RunningServer { $0.lingerUsers = 1 }
        defer { server.stop() }
        let file = PasswordFile(path: server.accounts.usersFile)
        try file.setPassword(user: "carol", password: Array("pw3".utf8))
        try visitAndLeave(server, user: "alice", password: "secret")
        try visitAndLeave(server, user: "bob", password: "hunter2")
        try visitAndLeave(server, user: "carol", password: "pw3")
        // Two of the three share a loop, so the earlier of them was closed to make room; carol, the
        // last to leave her loop, lingers.
        #expect(waitUntil { inboxIndexIsClean(server, user: "alice") || inboxIndexIsClean(server, user: "bob") })
        #expect(!inboxIndexIsClean(server, user: "carol"))
    }

    @Test func stoppingTheServerClosesLingeringUsers() throws {
        let server = try RunningServer()
        defer { server.stop() }
        try visitAndLeave(server, user: "alice", password: "secret")
        #expect(!inboxIndexIsClean(server, user: "alice"))
        server.server.beginShutdown()
        #expect(waitUntil { inboxIndexIsClean(server, user: "alice") }, "a graceful stop writes the clean snapshot")
    }
}
