// IMAPFrontend tests: routing (table, domains, file reloads, rendezvous hashing) and SASL decoding.

import Glibc
import Testing

@testable import IMAPFrontend

@Suite("Routing and SASL")
struct RoutingTests {
    private func writeFile(_ path: String, _ text: String) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard descriptor >= 0 else { throw TestFailure("open \(path)") }
        defer { close(descriptor) }
        let bytes = Array(text.utf8)
        guard bytes.withUnsafeBytes({ write(descriptor, $0.baseAddress, $0.count) }) == bytes.count else {
            throw TestFailure("write \(path)")
        }
    }

    @Test func tableRoutesUsersAndDomainsCaseInsensitively() throws {
        let router = try BackendRouter(
            backendNames: ["a", "b", "c"],
            routes: ["Alice": "c", "@example.org": "b"], routesFile: nil)
        #expect(router.backendIndex(for: Array("alice".utf8)) == 2)
        #expect(router.backendIndex(for: Array("ALICE".utf8)) == 2)
        #expect(router.backendIndex(for: Array("bob@Example.ORG".utf8)) == 1)
        #expect(throws: FrontendConfigurationError.self) {
            _ = try BackendRouter(backendNames: ["a"], routes: ["x": "missing"], routesFile: nil)
        }
    }

    @Test func rendezvousHashingMovesFewUsersWhenABackendIsAdded() throws {
        let users = (0..<10_000).map { Array("user\($0)@example.com".utf8) }
        let four = try BackendRouter(backendNames: ["b1", "b2", "b3", "b4"], routes: [:], routesFile: nil)
        let five = try BackendRouter(backendNames: ["b1", "b2", "b3", "b4", "b5"], routes: [:], routesFile: nil)
        var perBackend = [Int](repeating: 0, count: 4)
        var moved = 0
        for user in users {
            let before = four.backendIndex(for: user)
            let after = five.backendIndex(for: user)
            perBackend[before] += 1
            if before != after {
                moved += 1
                #expect(after == 4, "a user may only move to the new back end")
            }
        }
        // About a fifth move (all to the new one); each of four back ends holds about a quarter.
        #expect(moved > 1_500 && moved < 2_500)
        #expect(perBackend.allSatisfy { $0 > 2_000 && $0 < 3_000 })
        // Stable: the same user always lands on the same back end.
        #expect(four.backendIndex(for: users[42]) == four.backendIndex(for: users[42]))
    }

    @Test func routesFileIsReadAndReReadWhenItChanges() throws {
        let certificates = try TestCertificates()  // only for its private temporary directory
        defer {
            unlink(certificates.directory + "/routes")
            certificates.remove()
        }
        let path = certificates.directory + "/routes"
        try writeFile(path, "# routes\nalice b\n@example.net c  # a domain\nbroken line here\n")
        let router = try BackendRouter(backendNames: ["a", "b", "c"], routes: ["alice": "a"], routesFile: path)
        let message = router.reloadIfChanged()
        #expect(message?.contains("2 routes") == true && message?.contains("line 4") == true)
        #expect(router.backendIndex(for: Array("alice".utf8)) == 1)  // the file overrides the table
        #expect(router.backendIndex(for: Array("x@example.net".utf8)) == 2)
        #expect(router.reloadIfChanged() == nil)  // unchanged: not read again
        try writeFile(path, "alice c\n")
        #expect(router.reloadIfChanged() != nil)
        #expect(router.backendIndex(for: Array("alice".utf8)) == 2)
        unlink(path)
        #expect(router.reloadIfChanged()?.contains("keeping the previous routes") == true)
        #expect(router.backendIndex(for: Array("alice".utf8)) == 2)
    }

    @Test func frontEndRoutesByTheRoutesFile() throws {
        let certificates = try TestCertificates()
        let path = certificates.directory + "/routes"
        defer {
            unlink(path)
            certificates.remove()
        }
        try writeFile(path, "alice second\n")
        let first = try FakeBackend()
        let second = try FakeBackend()
        defer {
            first.kill()
            second.kill()
        }
        let harness = try FrontendHarness(backends: [("first", first.port), ("second", second.port)]) {
            $0.routesFile = path
            $0.routesFileCheckInterval = .milliseconds(10)
        }
        defer { harness.stop() }
        // The first read happens on a worker just after start: wait for alice to land on "second".
        var landed = false
        for attempt in 0..<500 where !landed {
            let client = try TestClient(port: harness.port)
            _ = try client.readResponse()
            try client.login("alice")
            try client.command("x\(attempt)", "XSTATE")
            landed = second.events.commands("XSTATE").count > 0
        }
        #expect(landed)
    }

    @Test func base64AndPlainMessages() throws {
        let encoded = SASLBase64.encode(Array("\0alice\0secret".utf8))
        #expect(String(decoding: encoded, as: UTF8.self) == "AGFsaWNlAHNlY3JldA==")
        for text in ["", "f", "fo", "foo", "foob", "fooba", "foobar"] {
            let round = SASLBase64.encode(Array(text.utf8)).withUnsafeBytes { SASLBase64.decode($0) }
            #expect(round == Array(text.utf8))
        }
        for bad in ["abc", "ab=c", "a===", "ab!d"] {
            #expect(Array(bad.utf8).withUnsafeBytes { SASLBase64.decode($0) } == nil)
        }
        let plain = try #require(LoginCredentials(plainMessage: Array("admin\0alice\0secret".utf8)))
        #expect(plain.user == Array("alice".utf8) && plain.mailboxOwner == Array("admin".utf8))
        #expect(LoginCredentials(plainMessage: Array("\0\0secret".utf8)) == nil)  // empty user
        #expect(LoginCredentials(plainMessage: Array("alice secret".utf8)) == nil)  // no NULs
    }
}
