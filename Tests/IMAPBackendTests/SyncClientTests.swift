// IMAPBackendTests: Maildir synchronisers against the back end: mbsync (isync) both ways, with flag
// changes, deletions and new local mail, and offlineimap3 pulling a mailbox (runs in TestSupport).

import Testing
import TestSupport

@Suite struct SyncClientTests {
    @Test(.enabled(if: toolsPresentOrCI("mbsync"), "mbsync is not installed (Debian package isync)"))
    func mbsyncBothWaysWithFlagsAndDeletions() throws {
        let server = try RunningServer()
        defer { server.stop() }
        let problems = try RealClients.mbsync(MailServerUnderTest(server), over: .implicitTLS)
        #expect(problems.isEmpty, "\(problems)")
    }

    @Test(.enabled(if: toolsPresentOrCI("offlineimap"), "offlineimap is not installed (Debian package offlineimap3)"))
    func offlineimapPullsAMailbox() throws {
        let server = try RunningServer()
        defer { server.stop() }
        let problems = try RealClients.offlineimap(MailServerUnderTest(server), over: .implicitTLS)
        #expect(problems.isEmpty, "\(problems)")
    }
}
