// IMAPBackendTests: neomutt under tmux opens INBOX over IMAPS and reads a message (run in TestSupport).

import Testing
import TestSupport

@Suite struct MuttTests {
    @Test(.enabled(if: toolsPresentOrCI("neomutt", "tmux"), "neomutt or tmux is not installed (Debian packages neomutt, tmux)"))
    func neomuttOpensInboxAndReadsAMessage() throws {
        let server = try RunningServer()
        defer { server.stop() }
        let problems = try RealClients.neomutt(MailServerUnderTest(server), over: .implicitTLS)
        #expect(problems.isEmpty, "\(problems)")
    }
}
