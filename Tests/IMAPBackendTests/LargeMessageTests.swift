// IMAPBackendTests: FETCH of messages far larger than the session's buffers, through a client that
// reads slowly: bare-LF conversion, BINARY decoding and HEADER.FIELDS keep the session's output
// bounded, and the bytes that arrive are the right ones.

import Glibc
import IMAPProtocol
import MailStore
import Testing
import TestSupport
@testable import IMAPBackend

@Suite struct LargeMessageTests {
    /// `count` bytes of a fixed pseudo-random sequence (NULs included).
    static func noise(_ count: Int) -> [UInt8] {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        return (0..<count).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
    }

    /// Base64 in lines of 76 characters, each ended by `lineEnd`.
    static func base64(_ bytes: [UInt8], lineEnd: [UInt8]) -> [UInt8] {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count * 4 / 3 + bytes.count / 50 + 8)
        var column = 0
        var index = 0
        while index < bytes.count {
            let chunk = bytes[index..<min(index + 3, bytes.count)]
            var value = 0
            for (offset, byte) in chunk.enumerated() { value |= Int(byte) << (16 - 8 * offset) }
            for position in 0..<4 {
                output.append(position <= chunk.count ? alphabet[(value >> (18 - 6 * position)) & 63] : UInt8(ascii: "="))
            }
            index += 3
            column += 4
            if column == 76 {
                output += lineEnd
                column = 0
            }
        }
        if column > 0 { output += lineEnd }
        return output
    }

    /// Where `needle` starts in `haystack` at or after `from`.
    static func find(_ needle: [UInt8], in haystack: [UInt8], from: Int = 0) -> Int? {
        guard needle.count <= haystack.count else { return nil }
        var index = from
        while index <= haystack.count - needle.count {
            if haystack[index] == needle[0], Array(haystack[index..<index + needle.count]) == needle { return index }
            index += 1
        }
        return nil
    }

    /// Runs a command against a slow client: the test drains the client only when the session stops
    /// producing, and checks the queue never grew past the high-water mark by more than a chunk.
    static func runSlowly(_ driver: SessionDriver, _ command: String) -> [UInt8] {
        driver.transport.output = []
        driver.transport.slowClient = true
        _ = Array(command.utf8).withUnsafeBytes { driver.session.receive($0) }
        var rounds = 0
        while driver.session.fetchJob != nil && rounds < 100_000 {
            driver.transport.drain()
            driver.session.writable()
            rounds += 1
        }
        driver.transport.drain()
        driver.transport.slowClient = false
        let output = driver.transport.output
        driver.transport.output = []
        return output
    }

    @Test func largeBareLineFeedMessageStreamsInBoundedMemory() throws {
        let accounts = try TestAccounts()
        let driver = try SessionDriver(accounts: accounts)
        driver.login()
        // A 20 MB message another server wrote with LF line ends: a base64 attachment of 15 MB.
        let payload = LargeMessageTests.noise(15 << 20)
        let header = Array("Subject: big\nFrom: a@b\nMIME-Version: 1.0\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n".utf8)
        let lfMessage = header + LargeMessageTests.base64(payload, lineEnd: [0x0A])
        #expect(lfMessage.count > 20_000_000)
        let path = accounts.dataDirectory + "/users/alice/new/1.big:2,"
        let file = fopen(path, "w")!
        _ = lfMessage.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
        fclose(file)
        _ = driver.send("s SELECT INBOX\r\n")

        var canonical: [UInt8] = []
        canonical.reserveCapacity(lfMessage.count * 103 / 100)
        for byte in lfMessage {
            if byte == 0x0A { canonical.append(0x0D) }
            canonical.append(byte)
        }

        let whole = LargeMessageTests.runSlowly(driver, "f FETCH 1 (BODY.PEEK[])\r\n")
        let wholeStart = LargeMessageTests.find(Array("BODY[] {\(canonical.count)}\r\n".utf8), in: whole)
        #expect(wholeStart != nil)
        if let wholeStart {
            let body = wholeStart + "BODY[] {\(canonical.count)}\r\n".utf8.count
            #expect(Array(whole[body..<body + canonical.count]) == canonical)
        }
        #expect(Array(whole.suffix(25)) == Array(")\r\nf OK FETCH completed\r\n".utf8))

        let binary = LargeMessageTests.runSlowly(driver, "g FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1])\r\n")
        let binaryHeader = Array("BINARY[1] ~{\(payload.count)}\r\n".utf8)
        let binaryStart = LargeMessageTests.find(binaryHeader, in: binary)
        #expect(binaryStart != nil, "a decoded NUL makes a literal8")
        if let binaryStart {
            let body = binaryStart + binaryHeader.count
            #expect(Array(binary[body..<body + payload.count]) == payload)
            #expect(LargeMessageTests.find(Array(" BINARY.SIZE[1] \(payload.count))".utf8), in: binary,
                                           from: body + payload.count) != nil)
        }

        let partial = LargeMessageTests.runSlowly(driver, "h FETCH 1 (BINARY.PEEK[1]<10000000.5>)\r\n")
        #expect(LargeMessageTests.find(Array("BINARY[1]<10000000> ".utf8) , in: partial) != nil)
        let slice = Array(payload[10_000_000..<10_000_005])
        #expect(LargeMessageTests.find(slice, in: partial) != nil)

        let fields = LargeMessageTests.runSlowly(driver, "i FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n")
        #expect(String(decoding: fields, as: UTF8.self)
            == "* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {16}\r\nSubject: big\r\n\r\n)\r\ni OK FETCH completed\r\n")

        // The session never held more than a flush's worth, and the client's queue never grew past the
        // high-water mark by more than that: not the 20 MB message.
        let bound = IMAPSession.fetchFlushThreshold + 4 * LiteralStream.chunkSize
        #expect(driver.session.largestFlush <= bound)
        #expect(driver.transport.largestQueue <= driver.context.configuration.outputHighWaterMark + bound)
    }

    /// HEADER.FIELDS filters the mapped file: a header of megabytes answers with the fields asked
    /// for, and the session holds only those.
    @Test func headerFieldsOfAHugeHeaderHoldOnlyTheFields() throws {
        let accounts = try TestAccounts()
        let driver = try SessionDriver(accounts: accounts)
        driver.login()
        var message = Array("Subject: tall\r\n".utf8)
        let filler = Array("X-Filler: 0123456789012345678901234567890123456789012345678901234567890123\r\n".utf8)
        for _ in 0..<(5 << 20) / filler.count { message += filler }
        message += Array("From: a@b\r\n\r\nbody\r\n".utf8)
        let path = accounts.dataDirectory + "/users/alice/new/1.tall:2,"
        let file = fopen(path, "w")!
        _ = message.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
        fclose(file)
        _ = driver.send("s SELECT INBOX\r\n")
        let fields = LargeMessageTests.runSlowly(
            driver, "f FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)] BODY.PEEK[HEADER.FIELDS.NOT (X-FILLER)])\r\n")
        let expected = "Subject: tall\r\nFrom: a@b\r\n\r\n"
        #expect(String(decoding: fields, as: UTF8.self) == "* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT FROM)] {28}\r\n\(expected) "
            + "BODY[HEADER.FIELDS.NOT (X-FILLER)] {28}\r\n\(expected))\r\nf OK FETCH completed\r\n")
        #expect(driver.session.largestFlush < 64 * 1024)
    }
}
