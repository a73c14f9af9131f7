//===----------------------------------------------------------------------===//
// Apus LoadGen tests: 30 seconds against the peer Dovecot with no violation (APUS_PEER_TESTS=1).
//===----------------------------------------------------------------------===//

import Glibc
import Testing
@testable import LoadGen

/// The peers' Dovecot (../shared/peers/start-dovecot.sh): 127.0.0.1:10143, user1..user200, password pass.
/// .ci/run sets APUS_PEER_TESTS=1 after install-peers.sh and start-dovecot.sh; without it the test is
/// skipped, with it an unreachable Dovecot is a failure, not a skip.
@Suite struct PeerDovecotTests {
    /// Whether something accepts TCP connections on 127.0.0.1:`port`.
    static func accepts(port: UInt16) -> Bool {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    static var enabled: Bool { getenv("APUS_PEER_TESTS").map { String(cString: $0) == "1" } ?? false }

    @Test(.enabled(if: PeerDovecotTests.enabled, "set APUS_PEER_TESTS=1 with the peer Dovecot running"))
    func thirtySecondsAgainstDovecotWithoutViolations() throws {
        try #require(PeerDovecotTests.accepts(port: 10143),
                     "APUS_PEER_TESTS=1 but Dovecot does not accept on 127.0.0.1:10143 (start-dovecot.sh)")
        var configuration = LoadConfiguration()
        configuration.port = 10143
        configuration.users = .template("user%d", 1...200)
        configuration.password = "pass"
        configuration.clients = 20
        configuration.duration = .seconds(30)
        configuration.label = "dovecot"
        configuration.quiet = true
        let report = try LoadRunner.run(configuration)
        let connects = report.totals.commands[LoadCommandKind.connect.rawValue]
        try #require(connects.ok > 0, "Dovecot unreachable on 127.0.0.1:10143: \(report.failureMessages)")
        #expect(report.totals.failures[LoadFailureKind.loginFailed.rawValue] == 0, "\(report.failureMessages)")
        #expect(report.totals.totalViolations == 0, "\(report.violationMessages)")
        // Every command of the standard mix ran and most succeeded.
        for kind in LoadCommandKind.mixable where configuration.mix.weight(of: kind) > 0 {
            #expect(report.totals.commands[kind.rawValue].ok > 0, "\(kind.name) never succeeded")
        }
        #expect(report.elapsed >= 29)
    }
}
