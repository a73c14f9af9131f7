// IMAPFrontend tests: TLS on both sides (STARTTLS, implicit TLS, a TLS hop) and Python's imaplib.

import Glibc
import Reactor
import Testing
import TestSupport

@testable import IMAPFrontend

@Suite("TLS and real clients")
struct TLSTests {
    @Test func pythonImaplibThroughTheFrontEndWithSTARTTLSAndImplicitTLS() throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let backend = try FakeBackend()
        defer { backend.kill() }
        let harness = try FrontendHarness(backends: [("one", backend.port)]) {
            $0.tls = certificates.serverHolder
            $0.tlsListeners = [SocketAddress(host: "127.0.0.1", port: 0)]
        }
        defer { harness.stop() }
        let script = """
            import imaplib, ssl, sys
            port, tls_port, cafile = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
            context = ssl.create_default_context(cafile=cafile)
            m = imaplib.IMAP4('127.0.0.1', port)
            assert 'LOGINDISABLED' in m.capabilities, m.capabilities
            m.starttls(ssl_context=context)
            assert 'AUTH=PLAIN' in m.capabilities and 'LOGINDISABLED' not in m.capabilities, m.capabilities
            # No second greeting after the handshake (it would arrive as an untagged OK).
            assert not m.untagged_responses.get('OK'), m.untagged_responses
            typ, data = m.login('alice', 'pw-alice')
            assert typ == 'OK', data
            typ, data = m.select('INBOX')
            assert typ == 'OK' and data == [b'3'], data
            typ, data = m.fetch('1', '(BODY[])')
            assert typ == 'OK' and data[0][1] == b'x' * 100, data
            assert m.logout()[0] == 'BYE'
            m = imaplib.IMAP4_SSL('127.0.0.1', tls_port, ssl_context=context)
            typ, data = m.authenticate('PLAIN', lambda _: b'\\0bob\\0pw-bob')
            assert typ == 'OK', data
            assert m.noop()[0] == 'OK'
            try:
                m.login('bob', 'pw-bob')
                raise SystemExit('second login accepted')
            except imaplib.IMAP4.error:
                pass
            m.logout()
            print('imaplib ok')
            """
        let path = certificates.directory + "/client.py"
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        _ = Array(script.utf8).withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        close(descriptor)
        defer { unlink(path) }
        let result = runProcess([
            "python3", path, "\(harness.addresses[0].port)", "\(harness.addresses[1].port)",
            certificates.certificatePath,
        ], timeout: .seconds(60))
        #expect(result.status == 0 && !result.timedOut, "\(result.output)")
        #expect(result.output.contains("imaplib ok"))
        #expect(backend.events.violations.isEmpty)
        // Every session, STARTTLS ones included, is counted once and released once.
        #expect(harness.waitFor { harness.server.sessionCount == 0 }, "sessions left: \(harness.server.sessionCount)")
    }

    @Test func tlsHopWithCertificateCheckAndSessionResumption() throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        var options = FakeBackendOptions()
        options.tls = certificates.serverHolder
        options.supportsUnauthenticate = false  // one connection per session: every session reconnects
        let backend = try FakeBackend(options: options)
        defer { backend.kill() }
        let clientContext = try certificates.clientContext()
        let harness = try FrontendHarness(backends: [("tls", backend.port)], loops: 1) {
            $0.backends[0].tls = clientContext
            $0.backends[0].serverName = "localhost"
        }
        defer { harness.stop() }
        for user in ["alice", "bob", "carol", "dave"] {
            let client = try TestClient(port: harness.port)
            _ = try client.readResponse()
            try client.login(user)
            #expect(try client.command("s", "XSTATE").first?.hasPrefix("* XSTATE user=\(user) ") == true)
            try client.send("t LOGOUT\r\n")
            _ = try client.readToEnd()
        }
        let status = harness.server.poolStatus()[0]
        #expect(status.created >= 4)
        #expect(status.tlsResumed >= 1)
    }

    @Test func tlsHopRefusesABackendWhoseCertificateDoesNotCheck() throws {
        let certificates = try TestCertificates()
        let other = try TestCertificates()
        defer {
            certificates.remove()
            other.remove()
        }
        var options = FakeBackendOptions()
        options.tls = certificates.serverHolder
        let backend = try FakeBackend(options: options)
        defer { backend.kill() }
        let wrongAuthority = try other.clientContext()
        let harness = try FrontendHarness(backends: [("tls", backend.port)]) { $0.backends[0].tls = wrongAuthority }
        defer { harness.stop() }
        let client = try TestClient(port: harness.port)
        _ = try client.readResponse()
        #expect(try client.command("a", "LOGIN alice pw-alice").last?.hasPrefix("a NO [UNAVAILABLE]") == true)
        #expect(backend.events.commands("AUTHENTICATE").isEmpty)
    }
}
