// IMAPBackendTests: FETCH of the message's own header (HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT,
// what a client's message list asks for) is answered from the copy the cached structure keeps,
// without reading the message file; other sections still come from the file.

import Glibc
import Testing
import TestSupport

/// The path of the one message file of alice's INBOX.
func onlyMessageFile(_ server: RunningServer) throws -> String {
    let cur = server.accounts.dataDirectory + "/users/alice/cur"
    guard let directory = opendir(cur) else { throw TestFailure("no cur/") }
    defer { closedir(directory) }
    var names: [String] = []
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if !name.hasPrefix(".") { names.append(name) }
    }
    guard names.count == 1 else { throw TestFailure("expected one message, found \(names)") }
    return cur + "/" + names[0]
}

private struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

private func appendAndSelect(_ client: TestClient, _ message: String) {
    _ = client.readLine()
    #expect(client.command("a", "LOGIN alice secret").contains("a OK"))
    #expect(client.command("b", "APPEND INBOX {\(message.utf8.count)+}\r\n\(message)").contains("b OK"))
    #expect(client.command("c", "SELECT INBOX").contains("c OK"))
}

@Suite struct HeaderCacheTests {
    @Test func headerSectionsComeFromTheCachedStructureNotTheFile() throws {
        let server = try RunningServer()
        defer { server.stop() }
        let client = try TestClient(port: server.plainPort)
        let message = "From: a@example.com\r\nSubject: original\r\nX-Other: kept\r\n\r\nthe body\r\n"
        appendAndSelect(client, message)
        // Behind the server's back, the file's bytes change (same size): what the server answers
        // for the header shows whether it read the file.
        let changed = "From: a@example.com\r\nSubject: ORIGINAL\r\nX-Other: kept\r\n\r\nTHE BODY\r\n"
        writeFile(try onlyMessageFile(server), changed)

        let fields = client.command("d", "FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]")
        #expect(fields.contains("Subject: original\r\n\r\n"), "\(fields)")
        let header = client.command("e", "FETCH 1 BODY.PEEK[HEADER]")
        #expect(header.contains("{57}\r\nFrom: a@example.com\r\nSubject: original\r\nX-Other: kept\r\n\r\n"), "\(header)")
        let not = client.command("f", "FETCH 1 BODY.PEEK[HEADER.FIELDS.NOT (FROM SUBJECT)]<0.7>")
        #expect(not.contains("{7}\r\nX-Other"), "\(not)")
        // The body is not cached: it is read from the file.
        #expect(client.command("g", "FETCH 1 BODY.PEEK[TEXT]").contains("THE BODY"))
    }

    @Test func bareLineFeedHeadersGoOutWithCRLF() throws {
        let server = try RunningServer()
        defer { server.stop() }
        let client = try TestClient(port: server.plainPort)
        appendAndSelect(client, "From: a@example.com\nSubject: unix\n\nbody\n")
        let fields = client.command("d", "FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]")
        #expect(fields.contains("{17}\r\nSubject: unix\r\n\r\n"), "\(fields)")
        let header = client.command("e", "FETCH 1 BODY.PEEK[HEADER]")
        #expect(header.contains("{38}\r\nFrom: a@example.com\r\nSubject: unix\r\n\r\n"), "\(header)")
    }

    @Test func aHeaderTooLargeToKeepIsReadFromTheFile() throws {
        let server = try RunningServer()
        defer { server.stop() }
        let client = try TestClient(port: server.plainPort)
        let filler = "X-Filler: " + String(repeating: "a", count: 20_000) + "\r\n"
        appendAndSelect(client, "Subject: big\r\n" + filler + "\r\nbody\r\n")
        let fields = client.command("d", "FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]")
        #expect(fields.contains("{16}\r\nSubject: big\r\n\r\n"), "\(fields)")
        let header = client.command("e", "FETCH 1 BODY.PEEK[HEADER]")
        #expect(header.contains("{\(16 + filler.utf8.count)}\r\nSubject: big\r\n"))
    }
}
