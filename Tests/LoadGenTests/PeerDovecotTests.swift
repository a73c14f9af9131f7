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
    static var enabled: Bool { getenv("APUS_PEER_TESTS").map { String(cString: $0) == "1" } ?? false }

    @Test(.enabled(if: PeerDovecotTests.enabled, "set APUS_PEER_TESTS=1 with the peer Dovecot running"))
    func thirtySecondsAgainstDovecotWithoutViolations() throws {
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
