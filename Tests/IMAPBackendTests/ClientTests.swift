// IMAPBackendTests: real clients against a real server: Python's imaplib (every command it offers,
// plain, STARTTLS and TLS, plus a STARTTLS injection attempt) and curl (imap:// and imaps://). The
// runs themselves are in TestSupport's RealClients, shared with the front end's tests.

import Testing
import TestSupport

@Suite struct ClientTests {
    @Test(.enabled(if: toolsPresentOrCI("python3"), "python3 is not installed"))
    func pythonImaplibEveryCommand() throws {
        let server = try RunningServer()
        defer { server.stop() }
        let problems = RealClients.imaplib(MailServerUnderTest(server))
        #expect(problems.isEmpty, "\(problems)")
    }

    @Test(.enabled(if: toolsPresentOrCI("curl"), "curl is not installed"))
    func curlListFetchAppendPlainAndTLS() throws {
        let server = try RunningServer()
        defer { server.stop() }
        let problems = RealClients.curl(MailServerUnderTest(server), over: [.plain, .implicitTLS])
        #expect(problems.isEmpty, "\(problems)")
    }
}
