// IMAPBackendTests: the server over real loopback sockets: login moving to the user's loop, every
// core command, sessions of one user seeing each other's changes in IDLE and NOOP, pipelining,
// literals of 0, 1 and 50 MB, and a large FETCH under backpressure.

import Glibc
import IMAPProtocol
import MailStore
import Reactor
import Testing
import TestSupport
@testable import IMAPBackend

@Suite struct EndToEndTests {
    @Test func coreCommandsOverPlainSocket() throws {
        let server = try RunningServer()
        defer { server.stop() }
        let client = try TestClient(port: server.plainPort)
        #expect(client.readLine()?.hasPrefix("* OK [CAPABILITY IMAP4rev1") == true)
        #expect(client.command("a", "LOGIN alice secret").contains("a OK [CAPABILITY"))
        #expect(client.command("b", "CREATE Work").contains("b OK"))
        #expect(client.command("c", "LIST \"\" *").contains("\"Work\""))
        client.send("d APPEND Work (\\Seen) {1}\r\n")
        #expect(client.readLine() == "+ Ready for literal data\r\n")
        client.send("x\r\n")
        #expect(client.readUntil(tag: "d").contains("d OK [APPENDUID"))
        #expect(client.command("e", "APPEND Work {0+}\r\n").contains("e OK [APPENDUID"))
        let select = client.command("f", "SELECT Work")
        #expect(select.contains("* 2 EXISTS"))
        let fetch = client.command("g", "FETCH 1:2 (RFC822.SIZE BODY.PEEK[])")
        #expect(fetch.contains("* 1 FETCH (RFC822.SIZE 1 BODY[] {1}\r\nx)"))
        #expect(fetch.contains("* 2 FETCH (RFC822.SIZE 0 BODY[] {0}\r\n)"))
        #expect(client.command("h", "STORE 2 +FLAGS (\\Deleted)").contains("* 2 FETCH (FLAGS (\\Deleted"))
        #expect(client.command("i", "SEARCH DELETED").contains("* SEARCH 2"))
        #expect(client.command("j", "EXPUNGE").contains("* 2 EXPUNGE"))
        #expect(client.command("k", "COPY 1 INBOX").contains("k OK [COPYUID"))
        #expect(client.command("l", "MOVE 1 Trash").contains("* 1 EXPUNGE"))
        #expect(client.command("m", "STATUS INBOX (MESSAGES)").contains("(MESSAGES 1)"))
        #expect(client.command("n", "LOGOUT").contains("* BYE"))
        #expect(client.readLine() == nil, "the server closes after LOGOUT")
    }

    @Test func pipelinedCommandsAnswerInOrder() throws {
        let server = try RunningServer()
        defer { server.stop() }
        let client = try TestClient(port: server.plainPort)
        _ = client.readLine()
        // Login, then 20 commands in one packet, each depending on the one before.
        var batch = "a LOGIN alice secret\r\nb SELECT INBOX\r\n"
        for index in 0..<10 {
            batch += "p\(index) APPEND INBOX {4+}\r\nm\(index)\r\n\r\nq\(index) NOOP\r\n"
        }
        batch += "z SEARCH ALL\r\n"
        client.send(batch)
        let answer = client.readUntil(tag: "z")
        let tagged = answer.lines.filter { !$0.hasPrefix("*") && !$0.hasPrefix("+") }
        let expected = ["a OK", "b OK"] + (0..<10).flatMap({ ["p\($0) OK", "q\($0) OK"] }) + ["z OK"]
        #expect(tagged.count == expected.count)
        for (line, prefix) in zip(tagged, expected) { #expect(line.hasPrefix(prefix), "\(line) for \(prefix)") }
        #expect(answer.contains("* SEARCH 1 2 3 4 5 6 7 8 9 10"))
    }

    @Test func loginsTheAuthCacheAnswersGoOnWithTheirPipelinedCommands() throws {
        let server = try RunningServer()
        defer { server.stop() }
        let first = try TestClient(port: server.plainPort)
        _ = first.readLine()
        #expect(first.command("a", "LOGIN alice secret").contains("a OK"))
        #expect(server.server.authCacheHits == 0)
        // Reconnects: answered on the accepting loop from the cache, then moved to alice's home loop
        // (two loops: of eight, some arrive on the other one) with the commands sent behind the login.
        for reconnect in 1...8 {
            let client = try TestClient(port: server.plainPort)
            _ = client.readLine()
            client.send("a LOGIN alice secret\r\nb SELECT INBOX\r\nc NOOP\r\n")
            let tagged = client.readUntil(tag: "c").lines.filter { !$0.hasPrefix("*") }
            #expect(tagged.map { $0.prefix(4) } == ["a OK", "b OK", "c OK"], "\(tagged)")
            #expect(server.server.authCacheHits == reconnect)
        }
    }

    @Test func sessionsOfOneUserSeeEachOtherInIdleAndNoop() throws {
        let server = try RunningServer()
        defer { server.stop() }
        let watcher = try TestClient(port: server.plainPort)
        let actor = try TestClient(port: server.plainPort)
        let noop = try TestClient(port: server.plainPort)
        for client in [watcher, actor, noop] {
            _ = client.readLine()
            #expect(client.command("a", "LOGIN alice secret").contains("a OK"))
            #expect(client.command("b", "SELECT INBOX").contains("b OK"))
        }
        watcher.send("i IDLE\r\n")
        #expect(watcher.readLine() == "+ idling\r\n")
        #expect(actor.command("c", "APPEND INBOX {3+}\r\nabc").contains("c OK"))
        #expect(watcher.readLine() == "* 1 EXISTS\r\n")
        #expect(watcher.readLine() == "* 1 RECENT\r\n")
        #expect(actor.command("d", "STORE 1 +FLAGS (\\Flagged)").contains("d OK"))
        #expect(watcher.readLine()?.hasPrefix("* 1 FETCH (FLAGS (\\Flagged") == true)
        #expect(actor.command("e", "STORE 1 +FLAGS.SILENT (\\Deleted)").contains("e OK"))
        #expect(watcher.readLine()?.hasPrefix("* 1 FETCH (FLAGS (\\Flagged \\Deleted") == true)
        #expect(actor.command("f", "EXPUNGE").contains("* 1 EXPUNGE"))
        #expect(watcher.readLine() == "* 1 EXPUNGE\r\n")
        watcher.send("DONE\r\n")
        #expect(watcher.readUntil(tag: "i").hasSuffix("i OK IDLE terminated\r\n"))
        let polled = noop.command("n", "NOOP")
        #expect(polled.contains("* 1 EXISTS") && polled.contains("* 1 EXPUNGE"))
    }

    @Test func shutdownSaysByeToIdleSessionsAndStopsAccepting() throws {
        let server = try RunningServer()
        defer { server.stop() }
        let idle = try TestClient(port: server.plainPort)
        _ = idle.readLine()
        _ = idle.command("a", "LOGIN alice secret")
        _ = idle.command("b", "SELECT INBOX")
        idle.send("i IDLE\r\n")
        #expect(idle.readLine() == "+ idling\r\n")
        let waiting = try TestClient(port: server.plainPort)
        #expect(waiting.readLine()?.hasPrefix("* OK") == true)
        #expect(waitUntil { server.server.sessionCount == 2 })
        server.server.beginShutdown()
        // beginShutdown returns once every loop has closed its listener: nothing is accepted after.
        #expect((try? TestClient(port: server.plainPort)) == nil, "listeners are closed")
        #expect(idle.readLine()?.hasPrefix("* BYE") == true)
        #expect(waiting.readLine()?.hasPrefix("* BYE") == true)
        #expect(waitUntil { server.server.sessionCount == 0 })
    }

    @Test func literalOfFiftyMegabytesRoundTrips() throws {
        let server = try RunningServer()
        defer { server.stop() }
        let client = try TestClient(port: server.plainPort, timeoutSeconds: 120)
        _ = client.readLine()
        _ = client.command("a", "LOGIN alice secret")
        let size = 50 * 1024 * 1024
        var message = Array("Subject: big\r\n\r\n".utf8)
        let line = Array(String(repeating: "0123456789", count: 7).utf8) + [0x0D, 0x0A]
        while message.count + line.count <= size { message += line }
        message += [UInt8](repeating: UInt8(ascii: "z"), count: size - message.count)
        client.send("b APPEND INBOX {\(size)}\r\n")
        #expect(client.readLine() == "+ Ready for literal data\r\n")
        client.send(bytes: message)
        client.send("\r\n")
        #expect(client.readUntil(tag: "b").contains("b OK [APPENDUID"))
        _ = client.command("c", "SELECT INBOX")
        client.send("d FETCH 1 (RFC822.SIZE BODY.PEEK[])\r\n")
        let header = client.readLineHeader()
        #expect(header == "* 1 FETCH (RFC822.SIZE \(size) BODY[] {\(size)}\r\n")
        #expect(client.skip(size))
        #expect(client.readUntil(tag: "d").hasSuffix("d OK FETCH completed\r\n"))
        // Too large for APPENDLIMIT: refused before any byte is sent.
        client.send("e APPEND INBOX {\(UInt64(200) << 20)}\r\n")
        #expect(client.readLine()?.hasPrefix("e BAD") == true || client.readLine()?.hasPrefix("e NO") == true)
    }

    @Test func largeFetchWaitsForASlowClient() throws {
        let server = try RunningServer { $0.outputHighWaterMark = 256 * 1024 }
        defer { server.stop() }
        let client = try TestClient(port: server.plainPort, timeoutSeconds: 60)
        _ = client.readLine()
        _ = client.command("a", "LOGIN alice secret")
        let line = Array("0123456789012345678901234567890123456789012345678901234567890123456789\r\n".utf8)
        let message = Array("Subject: x\r\n\r\n".utf8) + Array(repeating: line, count: 14_000).flatMap { $0 }
        let count = 40
        for index in 0..<count {
            client.send(bytes: Array("p\(index) APPEND INBOX {\(message.count)+}\r\n".utf8) + message + [0x0D, 0x0A])
            #expect(client.readUntil(tag: "p\(index)").contains("p\(index) OK"))
        }
        _ = client.command("s", "SELECT INBOX")
        let before = server.bytesProduced
        // About 40 MB asked for, nothing read: the server must stop producing once the socket and its
        // queue are full, and wait. Bounded wait for the production count to settle.
        client.send("f UID FETCH 1:* (BODY.PEEK[])\r\n")
        var last = server.bytesProduced
        var stableSince = ContinuousClock.now
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline, ContinuousClock.now - stableSince < .milliseconds(500) {
            var pause = timespec(tv_sec: 0, tv_nsec: 20_000_000)
            nanosleep(&pause, nil)
            let now = server.bytesProduced
            if now != last {
                last = now
                stableSince = ContinuousClock.now
            }
        }
        let produced = Int(last - before)
        #expect(produced < count * message.count / 2, "produced \(produced) bytes without the client reading")
        var responses = 0
        while let header = client.readLineHeader() {
            if header.hasPrefix("f OK") { break }
            if header.hasPrefix("* ") {
                responses += 1
                #expect(header.hasSuffix("BODY[] {\(message.count)}\r\n"))
                #expect(client.skip(message.count))
            }
        }
        #expect(responses == count)
    }
}

extension TestClient {
    /// Reads one line without reading a literal that follows it (the caller skips it).
    func readLineHeader() -> String? {
        readRawLine()
    }
}
