// IMAPFrontend tests: the back end's real mail clients (TestSupport's RealClients) again, through the
// front end in front of a real back end.
//
// Each client runs at least once and each client-side and hop mode at least once:
//
// | client      | client side                    | hop   |
// |-------------|--------------------------------|-------|
// | imaplib     | plain then STARTTLS; TLS       | plain |
// | curl        | plain; STARTTLS; TLS           | TLS   |
// | mbsync      | STARTTLS                       | TLS   |
// | offlineimap | TLS                            | plain |
// | neomutt     | STARTTLS                       | TLS   |

import IMAPBackend
import Reactor
import Testing
import TestSupport

@testable import IMAPFrontend

/// A real back end (trusting loopback as its proxy) and a front end of one loop before it; both
/// serve the back end's certificate, issued to `localhost`, which the clients and a TLS hop check.
final class ProxiedBackend {
    let backend: RunningServer
    let frontend: FrontendHarness
    /// Where the clients go: the front end's ports.
    let target: MailServerUnderTest

    init(hopTLS: Bool) throws {
        backend = try RunningServer { $0.trustedProxies = [TrustedNetwork("127.0.0.0/8")!] }
        let certificate = backend.certificatePath
        let serverTLS = TLSContextHolder(
            try TLSContext.server(certificateChain: certificate,
                                  privateKey: backend.accounts.directory.path + "/key.pem"))
        let hop = hopTLS ? try TLSContext.client(verify: true, caFile: certificate) : nil
        do {
            frontend = try FrontendHarness(backends: [("local", hopTLS ? backend.tlsPort : backend.plainPort)],
                                           loops: 1) {
                $0.tls = serverTLS
                $0.tlsListeners = [SocketAddress(host: "127.0.0.1", port: 0)]
                // curl's imap:// logs in without STARTTLS; the other plain-port clients use it.
                $0.loginDisabledOnPlain = false
                $0.backends[0].tls = hop
                $0.backends[0].serverName = "localhost"
            }
        } catch {
            backend.stop()
            throw error
        }
        target = MailServerUnderTest(plainPort: frontend.addresses[0].port, tlsPort: frontend.addresses[1].port,
                                     certificatePath: certificate, directory: backend.accounts.directory.path)
    }

    func stop() {
        frontend.stop()
        backend.stop()
    }

    /// The sessions went through the pool, and at least one reused a back-end connection.
    ///
    /// A client's login may come while the connection of the session before it is still in its
    /// UNAUTHENTICATE round trip; then one more session, once the clients are done, reuses one.
    func expectPooled(sourceLocation: SourceLocation = #_sourceLocation) {
        if frontend.server.poolStatus()[0].reused == 0, let client = try? TestClient(port: target.plainPort) {
            _ = try? client.command("L1", "LOGIN alice secret")
            _ = try? client.command("Z", "LOGOUT")
        }
        let status = frontend.server.poolStatus()[0]
        #expect(status.created >= 1 && status.reused >= 1 && !status.down, "\(status)",
                sourceLocation: sourceLocation)
    }
}

@Suite("Real clients through the front end")
struct RealClientTests {
    @Test(.enabled(if: toolsPresentOrCI("python3"), "python3 is not installed"))
    func imaplibEveryCommandOverPlainStartTLSAndTLSWithAPlainHop() throws {
        let stack = try ProxiedBackend(hopTLS: false)
        defer { stack.stop() }
        let problems = RealClients.imaplib(stack.target)
        #expect(problems.isEmpty, "\(problems)")
        stack.expectPooled()
    }

    @Test(.enabled(if: toolsPresentOrCI("curl"), "curl is not installed"))
    func curlOverPlainStartTLSAndTLSWithATLSHop() throws {
        let stack = try ProxiedBackend(hopTLS: true)
        defer { stack.stop() }
        let problems = RealClients.curl(stack.target, over: [.plain, .startTLS, .implicitTLS])
        #expect(problems.isEmpty, "\(problems)")
        stack.expectPooled()
    }

    @Test(.enabled(if: toolsPresentOrCI("mbsync"), "mbsync is not installed (Debian package isync)"))
    func mbsyncBothWaysOverStartTLSWithATLSHop() throws {
        let stack = try ProxiedBackend(hopTLS: true)
        defer { stack.stop() }
        let problems = try RealClients.mbsync(stack.target, over: .startTLS)
        #expect(problems.isEmpty, "\(problems)")
        stack.expectPooled()
    }

    @Test(.enabled(if: toolsPresentOrCI("offlineimap"), "offlineimap is not installed (Debian package offlineimap3)"))
    func offlineimapOverTLSWithAPlainHop() throws {
        let stack = try ProxiedBackend(hopTLS: false)
        defer { stack.stop() }
        let problems = try RealClients.offlineimap(stack.target, over: .implicitTLS)
        #expect(problems.isEmpty, "\(problems)")
        stack.expectPooled()
    }

    @Test(.enabled(if: toolsPresentOrCI("neomutt", "tmux"), "neomutt or tmux is not installed (Debian packages neomutt, tmux)"))
    func neomuttOverStartTLSWithATLSHop() throws {
        let stack = try ProxiedBackend(hopTLS: true)
        defer { stack.stop() }
        let problems = try RealClients.neomutt(stack.target, over: .startTLS)
        #expect(problems.isEmpty, "\(problems)")
        stack.expectPooled()
    }
}
