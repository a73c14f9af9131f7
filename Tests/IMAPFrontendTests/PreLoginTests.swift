// IMAPFrontend tests: what the front end answers by itself before login.

import Reactor
import Testing

@testable import IMAPFrontend

@Suite("Pre-login answers")
struct PreLoginTests {
    /// A front end whose only back end is a closed port: pre-login needs no back end at all.
    private func frontEndWithoutBackend(_ configure: (inout FrontendConfiguration) -> Void = { _ in }) throws
        -> FrontendHarness
    {
        try FrontendHarness(backends: [("nowhere", 1)], configure: configure)
    }

    @Test func greetingAndCapabilityWithoutAnyBackend() throws {
        let harness = try frontEndWithoutBackend()
        defer { harness.stop() }
        let client = try TestClient(port: harness.port)
        let greeting = try #require(try client.readResponse())
        #expect(greeting.hasPrefix("* OK [CAPABILITY IMAP4rev1 IMAP4rev2"))
        #expect(greeting.contains("AUTH=PLAIN") && greeting.contains("SASL-IR") && greeting.contains("ID"))
        let capability = try client.command("a", "CAPABILITY")
        #expect(capability.count == 2 && capability[0].hasPrefix("* CAPABILITY IMAP4rev1"))
        // Relayed after login and part of IMAP4rev2: clients that read the list once, before
        // login, must see them (imaplib refuses enable() otherwise).
        #expect(capability[0].contains(" ENABLE") && capability[0].contains(" IDLE"))
        #expect(capability[1] == "a OK CAPABILITY completed")
        #expect(try client.command("b", "NOOP") == ["b OK NOOP completed"])
        let id = try client.command("c", "ID (\"name\" \"test\")")
        #expect(id.first == "* ID (\"name\" \"Apus\")" && id.last == "c OK ID completed")
        #expect(try client.command("d", "SELECT INBOX") == ["d BAD Log in first"])
        #expect(try client.command("e", "FROB").last?.hasPrefix("e BAD") == true)
        #expect(try client.command("f", "UNAUTHENTICATE") == ["f BAD Not logged in"])
        #expect(try client.command("g", "STARTTLS") == ["g BAD STARTTLS is not available"])
        try client.send("h LOGOUT\r\n")
        #expect(try client.readToEnd() == ["* BYE Logging out", "h OK LOGOUT completed"])
    }

    @Test func loginDisabledUntilTLSOnThePlainPort() throws {
        let certificate = try TestCertificates()
        defer { certificate.remove() }
        let harness = try frontEndWithoutBackend { $0.tls = certificate.serverHolder }
        defer { harness.stop() }
        let client = try TestClient(port: harness.port)
        let greeting = try #require(try client.readResponse())
        #expect(greeting.contains("STARTTLS") && greeting.contains("LOGINDISABLED"))
        #expect(!greeting.contains("AUTH=PLAIN"))
        #expect(try client.command("a", "LOGIN alice pw-alice").last?.hasPrefix("a NO [PRIVACYREQUIRED]") == true)
        #expect(
            try client.command("b", "AUTHENTICATE PLAIN AGFsaWNlAHB3LWFsaWNl").last?.hasPrefix("b NO [PRIVACYREQUIRED]")
                == true)
        #expect(try client.command("c", "STARTTLS") == ["c OK Begin TLS negotiation now"])
    }

    @Test func loginToAnUnreachableBackendIsUnavailableAtOnce() throws {
        let harness = try frontEndWithoutBackend()
        defer { harness.stop() }
        let client = try TestClient(port: harness.port)
        _ = try client.readResponse()
        let started = ContinuousClock.now
        let answer = try client.command("a", "LOGIN alice pw-alice")
        #expect(answer.last?.hasPrefix("a NO [UNAVAILABLE]") == true)
        #expect(ContinuousClock.now - started < .seconds(1))
        // The session goes on: the client may try again or leave.
        #expect(try client.command("b", "NOOP") == ["b OK NOOP completed"])
    }

    @Test func authenticateContinuationsCancelAndMechanisms() throws {
        let backend = try FakeBackend()
        defer { backend.kill() }
        let harness = try FrontendHarness(backends: [("one", backend.port)])
        defer { harness.stop() }
        let client = try TestClient(port: harness.port)
        _ = try client.readResponse()
        // Unknown mechanism, bad base64, cancel.
        #expect(try client.command("a", "AUTHENTICATE CRAM-MD5") == ["a NO Unsupported authentication mechanism"])
        #expect(try client.command("b", "AUTHENTICATE PLAIN abc") == ["b BAD Invalid base64 in the initial response"])
        try client.send("c AUTHENTICATE PLAIN\r\n")
        #expect(try client.readResponse() == "+ ")
        try client.send("*\r\n")
        #expect(try client.responses(until: "c") == ["c BAD AUTHENTICATE cancelled"])
        // PLAIN over a continuation.
        try client.send("d AUTHENTICATE PLAIN\r\n")
        #expect(try client.readResponse() == "+ ")
        try client.send(base64("\0alice\0pw-alice") + "\r\n")
        #expect(try client.responses(until: "d").last?.hasPrefix("d OK") == true)
        try client.send("e LOGOUT\r\n")
        #expect(try client.readToEnd().last == "e OK LOGOUT completed")

        // LOGIN mechanism: user and password prompts.
        let second = try TestClient(port: harness.port)
        _ = try second.readResponse()
        try second.send("f AUTHENTICATE LOGIN\r\n")
        #expect(try second.readResponse() == "+ VXNlcm5hbWU6")
        try second.send(base64("bob") + "\r\n")
        #expect(try second.readResponse() == "+ UGFzc3dvcmQ6")
        try second.send(base64("pw-bob") + "\r\n")
        #expect(try second.responses(until: "f").last?.hasPrefix("f OK") == true)
        #expect(try second.command("g", "XSTATE").first?.hasPrefix("* XSTATE user=bob ") == true)

        // SASL-IR, and LOGIN with a synchronizing literal.
        let third = try TestClient(port: harness.port)
        _ = try third.readResponse()
        #expect(
            try third.command("h", "AUTHENTICATE PLAIN " + base64("\0carol\0pw-wrong")).last?
                .hasPrefix("h NO [AUTHENTICATIONFAILED]") == true)
        try third.send("i LOGIN {5}\r\n")
        #expect(try third.readResponse() == "+ Ready for literal data")
        try third.send("carol pw-carol\r\n")
        #expect(try third.responses(until: "i").last?.hasPrefix("i OK") == true)
        #expect(try third.command("j", "XSTATE").first?.hasPrefix("* XSTATE user=carol ") == true)
    }

    private func base64(_ text: String) -> String {
        String(decoding: SASLBase64.encode(Array(text.utf8)), as: UTF8.self)
    }
}
