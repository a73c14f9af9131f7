// IMAPBackendTests: literal sizes at the edges (0 and 1 byte, synchronizing and not) end to end, and a
// `UID FETCH 1:* (BODY.PEEK[])` over 200 MB of mail that the server produces only as fast as a
// slow client reads (a scaled-down form of the 10 GB mailbox of issue 5).

import Glibc
import IMAPProtocol
import MailStore
import Testing
import TestSupport
@testable import IMAPBackend

@Suite struct LargeMailboxTests {
    @Test func appendLiteralsOfZeroAndOneByte() throws {
        let server = try RunningServer()
        defer { server.stop() }
        let client = try TestClient(port: server.plainPort)
        _ = client.readLine()
        _ = client.command("a", "LOGIN alice secret")
        client.send("b APPEND INBOX {0}\r\n")
        #expect(client.readLine() == "+ Ready for literal data\r\n")
        client.send("\r\n")
        #expect(client.readUntil(tag: "b").contains("b OK [APPENDUID"))
        #expect(client.command("c", "APPEND INBOX {1+}\r\ny").contains("c OK [APPENDUID"))
        #expect(client.command("d", "APPEND INBOX {0+}\r\n").contains("d OK [APPENDUID"))
        client.send("e APPEND INBOX {1}\r\n")
        #expect(client.readLine() == "+ Ready for literal data\r\n")
        client.send("z\r\n")
        #expect(client.readUntil(tag: "e").contains("e OK [APPENDUID"))
        _ = client.command("s", "SELECT INBOX")
        let fetch = client.command("f", "FETCH 1:4 (RFC822.SIZE BODY.PEEK[])")
        #expect(fetch.contains("* 1 FETCH (RFC822.SIZE 0 BODY[] {0}\r\n)"))
        #expect(fetch.contains("* 2 FETCH (RFC822.SIZE 1 BODY[] {1}\r\ny)"))
        #expect(fetch.contains("* 3 FETCH (RFC822.SIZE 0 BODY[] {0}\r\n)"))
        #expect(fetch.contains("* 4 FETCH (RFC822.SIZE 1 BODY[] {1}\r\nz)"))
    }

    @Test func uidFetchOfTwoHundredMegabytesKeepsPaceWithTheClient() throws {
        let server = try RunningServer { $0.outputHighWaterMark = 256 * 1024 }
        defer { server.stop() }
        let client = try TestClient(port: server.plainPort, timeoutSeconds: 120, receiveBuffer: 64 * 1024)
        _ = client.readLine()
        _ = client.command("a", "LOGIN alice secret")  // makes alice's Maildir
        // 200 messages of 1 MiB, delivered into new/ as another program would (faster than APPEND).
        let messageSize = 1 << 20
        let count = 200
        var message = Array("Subject: bulk\r\n\r\n".utf8)
        let line = Array("0123456789012345678901234567890123456789012345678901234567890123456789\r\n".utf8)
        while message.count + line.count <= messageSize { message += line }
        message += [UInt8](repeating: UInt8(ascii: "z"), count: messageSize - message.count)
        for index in 0..<count {
            let path = server.accounts.dataDirectory + "/users/alice/new/\(1_000 + index).bulk"
            let file = try #require(fopen(path, "w"))
            _ = message.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
            fclose(file)
        }
        #expect(client.command("s", "SELECT INBOX").contains("* \(count) EXISTS"))

        let before = server.bytesProduced
        client.send("f UID FETCH 1:* (BODY.PEEK[])\r\n")
        // The server may run ahead of the client by its queue (high-water mark), one message's file
        // range queued for sendfile, and the socket buffers (the sender's autotunes up to 4 MB here,
        // the client's is fixed small): not by the mailbox.
        let bound: UInt64 = 8 << 20
        var consumed: UInt64 = 0
        var largestLead: UInt64 = 0
        var responses = 0
        while let header = client.readLineHeader() {
            consumed += UInt64(header.utf8.count)
            if header.hasPrefix("f OK") { break }
            guard header.hasPrefix("* ") else { continue }
            responses += 1
            #expect(header.hasSuffix("BODY[] {\(messageSize)}\r\n"))
            guard client.skip(messageSize) else { break }
            consumed += UInt64(messageSize)
            largestLead = max(largestLead, server.bytesProduced - before - min(consumed, server.bytesProduced - before))
        }
        #expect(responses == count)
        #expect(largestLead < bound, "the server ran \(largestLead) bytes ahead of the client")
        #expect(server.bytesProduced - before > UInt64(count * messageSize), "all of it was sent")
    }
}
