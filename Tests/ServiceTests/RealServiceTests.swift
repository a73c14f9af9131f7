//===----------------------------------------------------------------------===//
// Apus Service tests: the seed's procedure and the operations endpoint's metrics with the real
// back end and front end (not the stand-in), each a daemon started by the built `apus`.
//===----------------------------------------------------------------------===//

import Glibc
import Reactor
import Service
import Testing
import TestSupport

/// A fixture for the real services: users `user1`…`userN` with ``password``, plain login
/// allowed (loopback tests), the front end's back end set once the back end's port is known.
final class RealServices {
    /// Every user's password: distinctive, so a test can look for it in the logs.
    static let password = "Xq7-never-logged"
    let fixture: ServiceFixture
    private var imap4beSection: String
    private var imap4Section: String
    private var globalSection: String
    private var backEndPort: UInt16?

    init(users: Int, imap4be: String = "", imap4: String = "", global: String = "") {
        globalSection = "login_disabled_on_plain = no" + (global.isEmpty ? "" : "\n" + global)
        imap4beSection = imap4be
        imap4Section = imap4
        fixture = ServiceFixture(imap4be: imap4be, imap4: imap4, global: globalSection)
        fixture.environment = ["APUS_STAND_IN=0"]
        mkdir(fixture.directory.path + "/data", 0o700)
        writeFile(
            fixture.directory.path + "/data/passwd",
            (1...users).map { "user\($0):{PLAIN}\(RealServices.password)\n" }.joined())
    }

    /// Points the front end at the running back end's plain listener (ports are ephemeral).
    func pointFrontEndAtBackEnd() throws {
        backEndPort = try #require(fixture.port(.imap4be))
        rewrite()
    }

    /// Writes the configuration again, with `global` in place of the `[global]` lines given before.
    func rewrite(global: String? = nil) {
        if let global { globalSection = "login_disabled_on_plain = no\n" + global }
        let backends = backEndPort.map { "backends = local=127.0.0.1:\($0)" } ?? ""
        fixture.writeConfiguration(
            imap4be: imap4beSection, imap4: [imap4Section, backends].filter { !$0.isEmpty }.joined(separator: "\n"),
            global: globalSection)
    }

    /// The admin endpoint's port of a running service.
    func adminPort(_ service: ServiceName) throws -> UInt16 {
        let admin = try #require(fixture.status(service)["admin"]?.stringValue)
        return try #require(UInt16(admin.split(separator: ":").last ?? ""))
    }
}

/// The value of `series` (name with labels, as printed) in Prometheus text; nil if absent.
func metric(_ series: String, in text: String) -> Double? {
    for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
        return Double(line.dropFirst(series.count + 1))
    }
    return nil
}

/// The subjects of the messages in a Maildir folder's cur/ and new/.
func maildirSubjects(_ folder: String) -> [String] {
    var subjects: [String] = []
    for part in ["cur", "new"] {
        guard let handle = opendir(folder + "/" + part) else { continue }
        defer { closedir(handle) }
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name.hasPrefix(".") { continue }
            let text = readFile(folder + "/" + part + "/" + name)
            if let line = text.split(separator: "\r\n").first(where: { $0.hasPrefix("Subject: ") }) {
                subjects.append(String(line.dropFirst("Subject: ".count)))
            }
        }
    }
    return subjects
}

/// A blocking client that logs in and reads up to a tagged reply.
extension LineClient {
    /// Lines up to and including the one tagged `tag`; the tagged line is last (nil at EOF).
    func readUntil(tag: String) -> [String]? {
        var lines: [String] = []
        while let line = readLine() {
            lines.append(line)
            if line.hasPrefix(tag + " ") { return lines }
        }
        return nil
    }

    func command(_ tag: String, _ text: String) -> String? {
        send("\(tag) \(text)\r\n")
        return readUntil(tag: tag)?.last
    }
}

/// Twenty clients APPEND in a loop until their connection ends, each to its own user; prints
/// `ready` once every client has had an APPEND acknowledged, then, at the end, one
/// `acked <subject>` line per tagged OK.
let appenderScript = """
    import socket, sys, threading
    port, count, password = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    lock = threading.Lock()
    started = [0]
    everyone = threading.Event()
    acked = []
    def client(number):
        user = "user%d" % number
        first = True
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=20)
            f = s.makefile("rb")
            def reply(tag):
                while True:
                    line = f.readline()
                    if not line:
                        raise EOFError
                    if line.startswith(tag + b" "):
                        return line
            f.readline()
            s.sendall(b"L LOGIN " + user.encode() + b" " + password.encode() + b"\\r\\n")
            if not reply(b"L").startswith(b"L OK"):
                return
            i = 0
            while True:
                subject = "%s-%d" % (user, i)
                body = ("Subject: %s\\r\\n\\r\\nhello\\r\\n" % subject).encode()
                tag = b"A%d" % i
                s.sendall(tag + b" APPEND INBOX {%d+}\\r\\n" % len(body) + body + b"\\r\\n")
                if reply(tag).startswith(tag + b" OK"):
                    with lock:
                        acked.append(subject)
                        if first:
                            first = False
                            started[0] += 1
                            if started[0] == count:
                                everyone.set()
                i += 1
        except (EOFError, OSError):
            pass
    threads = [threading.Thread(target=client, args=(n,)) for n in range(1, count + 1)]
    for t in threads:
        t.start()
    print("ready" if everyone.wait(20) else "not ready", flush=True)
    for t in threads:
        t.join()
    for subject in acked:
        print("acked " + subject)
    """

@Suite("Real services")
struct RealServiceTests {
    /// The seed's procedure end to end with imap4be and imap4 as they ship.
    @Test func seedProcedureWithTheRealServices() throws {
        let services = RealServices(users: 20)
        let fixture = services.fixture
        defer { fixture.cleanUp() }

        // Both stopped; apus start imap4be: the back end runs, the front end does not.
        startBackEndWithBothStopped(fixture)
        #expect(fixture.status(.imap4be)["stand_in"]?.boolValue == false)

        // apus start imap4; a client logs in through it.
        try services.pointFrontEndAtBackEnd()
        var result = fixture.apus("start", "imap4")
        #expect(result.status == 0, "\(result)")
        #expect(states(fixture.apus("status").output) == ["imap4": "Running", "imap4be": "Running"])
        let front = try #require(fixture.port(.imap4))
        let client = try #require(LineClient(port: front))
        #expect(client.readLine()?.hasPrefix("* OK ") == true)
        #expect(client.command("a", "LOGIN user1 \(RealServices.password)")?.hasPrefix("a OK") == true)
        #expect(client.command("b", "LOGOUT")?.hasPrefix("b OK") == true)

        // apus stop imap4 with a session in IDLE: it gets BYE, the back end keeps running.
        let idle = try #require(LineClient(port: front))
        #expect(idle.readLine()?.hasPrefix("* OK ") == true)
        #expect(idle.command("a", "LOGIN user2 \(RealServices.password)")?.hasPrefix("a OK") == true)
        #expect(idle.command("b", "SELECT INBOX")?.hasPrefix("b OK") == true)
        idle.send("c IDLE\r\n")
        #expect(idle.readLine() == "+ idling")
        result = fixture.apus("stop", "imap4")
        #expect(result.status == 0, "\(result)")
        #expect(idle.readToEnd().contains { $0.hasPrefix("* BYE ") })
        #expect(fixture.status(.imap4be)["state"]?.stringValue == "Running")

        // apus stop imap4be while 20 clients append: every acknowledged APPEND is in the mailbox.
        let back = try #require(fixture.port(.imap4be))
        writeFile(fixture.directory.path + "/append.py", appenderScript)
        var pipeEnds: [Int32] = [0, 0]
        try #require(pipe(&pipeEnds) == 0)
        mkdir(fixture.directory.path + "/append-output", 0o755)
        let appender = spawnProgram(
            "/usr/bin/python3", name: "python3", [fixture.directory.path + "/append.py", String(back), "20", RealServices.password],
            in: fixture.directory.path + "/append-output", environment: ["PATH=/usr/bin:/bin"],
            standardOutput: pipeEnds[1])
        close(pipeEnds[1])
        var reaped = false
        defer {
            close(pipeEnds[0])
            if !reaped {
                kill(appender, SIGKILL)
                reap(appender)
            }
        }
        let output = PipeLineReader(descriptor: pipeEnds[0])
        #expect(output.readLine() == "ready", "\(readFile(fixture.directory.path + "/append-output/stderr"))")
        result = fixture.apus("stop", "imap4be")
        #expect(result.status == 0, "\(result)")
        var acknowledged: [String] = []
        while let line = output.readLine() {
            if line.hasPrefix("acked ") { acknowledged.append(String(line.dropFirst("acked ".count))) }
        }
        #expect(reap(appender) == 0)
        reaped = true
        #expect(acknowledged.count >= 20)
        var stored = Set<String>()
        for number in 1...20 {
            stored.formUnion(maildirSubjects(fixture.directory.path + "/data/users/user\(number)"))
        }
        let lost = acknowledged.filter { !stored.contains($0) }
        #expect(lost.isEmpty, "acknowledged but not in the mailbox: \(lost.prefix(10))")

        // Both stopped: status says so and fails.
        result = fixture.apus("status")
        #expect(result.status == 1)
        #expect(states(result.output) == ["imap4": "Stopped", "imap4be": "Stopped"])

        // The log (at debug level) names the logins but never a password, in clear or as the
        // front end's AUTHENTICATE PLAIN to the back end.
        let log = readFile(fixture.logPath)
        #expect(log.contains("login user=user1"))
        #expect(!log.contains(RealServices.password))
        let plainResponse = base64(Array("\0user1\0\(RealServices.password)".utf8))
        #expect(!log.contains(plainResponse))
    }

    /// A reload with a new certificate: new TLS connections to either service get it, sessions
    /// logged in before go on.
    @Test func reloadGivesNewConnectionsTheNewCertificateAndKeepsSessions() throws {
        let tlsEverywhere = "tls_listen = 127.0.0.1:0"
        let services = RealServices(
            users: 2, imap4be: tlsEverywhere, imap4: tlsEverywhere, global: "certificate = a.pem\nprivate_key = a.key")
        let fixture = services.fixture
        defer { fixture.cleanUp() }
        let directory = fixture.directory.path
        try SelfSignedCertificate.make(certificatePath: directory + "/a.pem", keyPath: directory + "/a.key")
        try SelfSignedCertificate.make(certificatePath: directory + "/b.pem", keyPath: directory + "/b.key")
        #expect(fixture.apus("start", "imap4be").status == 0)
        try services.pointFrontEndAtBackEnd()
        #expect(fixture.apus("start", "imap4").status == 0)
        let group = try EventLoopGroup(loopCount: 1, workerCount: 1, name: "svc-test")
        defer { group.shutdown(gracePeriod: .seconds(1)) }
        let tlsPorts = try ServiceName.allCases.map { try #require(fixture.port($0, tls: true)) }
        var sessions: [LineClient] = []
        for (number, service) in [ServiceName.imap4be, .imap4].enumerated() {
            let port = try #require(fixture.port(service))
            let session = try #require(LineClient(port: port))
            #expect(session.readLine()?.hasPrefix("* OK ") == true)
            let login = session.command("a", "LOGIN user\(number + 1) \(RealServices.password)")
            #expect(login?.hasPrefix("a OK") == true, "\(service)")
            sessions.append(session)
        }
        for port in tlsPorts {
            #expect(try tlsGreeting(port: port, caFile: directory + "/a.pem", group: group)?.hasPrefix("* OK") == true)
        }

        services.rewrite(global: "certificate = b.pem\nprivate_key = b.key")
        let reloaded = fixture.apus("reload")
        #expect(reloaded.status == 0, "\(reloaded)")
        for service in ServiceName.allCases {
            #expect(reloaded.output.contains("\(service.rawValue) reloaded: certificate reloaded: \(directory)/b.pem"))
        }
        for port in tlsPorts {
            #expect(try tlsGreeting(port: port, caFile: directory + "/b.pem", group: group)?.hasPrefix("* OK") == true)
            #expect(try tlsGreeting(port: port, caFile: directory + "/a.pem", group: group) == nil)
        }
        for session in sessions {
            #expect(session.command("b", "SELECT INBOX")?.hasPrefix("b OK") == true)
        }
    }

    /// kill -9 of the real back end: status reads Stopped, start works, the mail is all there.
    @Test func killNineOfTheBackEndReadsStoppedAndStartRecovers() throws {
        let services = RealServices(users: 1)
        let fixture = services.fixture
        defer { fixture.cleanUp() }
        #expect(fixture.apus("start", "imap4be").status == 0)
        let port = try #require(fixture.port(.imap4be))
        let client = try #require(LineClient(port: port))
        #expect(client.readLine()?.hasPrefix("* OK ") == true)
        #expect(client.command("a", "LOGIN user1 \(RealServices.password)")?.hasPrefix("a OK") == true)
        let message = "Subject: before the kill\r\n\r\nhello\r\n"
        #expect(client.command("b", "APPEND INBOX {\(message.utf8.count)+}\r\n\(message)")?.hasPrefix("b OK") == true)
        let pid = try #require(fixture.status(.imap4be)["pid"]?.intValue)
        kill(pid_t(pid), SIGKILL)
        #expect(client.readToEnd().isEmpty, "no BYE from a killed process")
        #expect(PidFile.waitUntilFree(path: fixture.pidFile(.imap4be), timeout: .seconds(10)))

        let status = fixture.apus("status", "imap4be")
        #expect(status.status == 1)
        #expect(states(status.output) == ["imap4be": "Stopped"])
        let started = fixture.apus("start", "imap4be")
        #expect(started.status == 0, "\(started)")
        let againPort = try #require(fixture.port(.imap4be))
        let again = try #require(LineClient(port: againPort))
        #expect(again.readLine()?.hasPrefix("* OK ") == true)
        #expect(again.command("a", "LOGIN user1 \(RealServices.password)")?.hasPrefix("a OK") == true)
        again.send("b SELECT INBOX\r\n")
        #expect(again.readUntil(tag: "b")?.contains("* 1 EXISTS") == true)
    }

    /// /metrics carries TLS handshakes, the store's fsyncs, the front end's bytes and its pool
    /// per back end, and each moves with what it counts.
    @Test func metricsCountHandshakesFsyncsBytesAndThePool() throws {
        let services = RealServices(
            users: 1, imap4be: "tls_listen = 127.0.0.1:0",
            global: "certificate = cert.pem\nprivate_key = key.pem")
        let fixture = services.fixture
        defer { fixture.cleanUp() }
        let directory = fixture.directory.path
        try SelfSignedCertificate.make(certificatePath: directory + "/cert.pem", keyPath: directory + "/key.pem")
        #expect(fixture.apus("start", "imap4be").status == 0)
        try services.pointFrontEndAtBackEnd()
        #expect(fixture.apus("start", "imap4").status == 0)
        let backAdmin = try services.adminPort(.imap4be)
        let frontAdmin = try services.adminPort(.imap4)
        func scrape(_ port: UInt16) throws -> String { try #require(LineClient(port: port)).httpGet("/metrics") }

        // TLS handshakes on the back end: one completed, one failed (plain text to the TLS port).
        let tlsPort = try #require(fixture.port(.imap4be, tls: true))
        let group = try EventLoopGroup(loopCount: 1, workerCount: 1, name: "svc-test")
        defer { group.shutdown(gracePeriod: .seconds(1)) }
        #expect(try tlsGreeting(port: tlsPort, caFile: directory + "/cert.pem", group: group)?.hasPrefix("* OK") == true)
        let plain = try #require(LineClient(port: tlsPort))
        plain.send("a LOGIN user1 \(RealServices.password)\r\n")
        _ = plain.readToEnd()
        var back = try scrape(backAdmin)
        #expect(metric("apus_imap4be_tls_handshakes_total{result=\"completed\"}", in: back) == 1, "\(back)")
        #expect(metric("apus_imap4be_tls_handshakes_total{result=\"failed\"}", in: back) == 1)
        let fsyncsBefore = try #require(metric("apus_imap4be_store_fsync_seconds_count", in: back))
        #expect(back.contains("apus_imap4be_store_fsync_seconds_bucket{le=\"0.001\"} "))

        // Sessions through the front end, one after another: an APPEND, and the pool's reuse.
        var front = try scrape(frontAdmin)
        #expect(metric("apus_imap4_bytes_in_total", in: front) == 0)
        #expect(metric("apus_imap4_tls_handshakes_total{result=\"completed\"}", in: front) == 0)
        let frontPort = try #require(fixture.port(.imap4))
        for session in 1...3 {
            let client = try #require(LineClient(port: frontPort))
            #expect(client.readLine()?.hasPrefix("* OK ") == true)
            #expect(client.command("a", "LOGIN user1 \(RealServices.password)")?.hasPrefix("a OK") == true)
            if session == 1 {
                let message = "Subject: counted\r\n\r\nhello\r\n"
                #expect(client.command("b", "APPEND INBOX {\(message.utf8.count)+}\r\n\(message)")?.hasPrefix("b OK") == true)
            }
            #expect(client.command("c", "LOGOUT")?.hasPrefix("c OK") == true)
            // The hop goes back to the pool once the back end has answered UNAUTHENTICATE.
            #expect(eventually { metric("apus_imap4_pool_connections{backend=\"local\",state=\"busy\"}", in: (try? scrape(frontAdmin)) ?? "") == 0 })
        }
        back = try scrape(backAdmin)
        #expect(try #require(metric("apus_imap4be_store_fsync_seconds_count", in: back)) > fsyncsBefore)
        front = try scrape(frontAdmin)
        #expect(try #require(metric("apus_imap4_bytes_in_total", in: front)) > 0)
        #expect(try #require(metric("apus_imap4_bytes_out_total", in: front)) > 0)
        #expect(try #require(metric("apus_imap4_pool_created_total{backend=\"local\"}", in: front)) >= 1)
        // Three sessions over two loops: two shared a loop, and the second of them a warm hop.
        #expect(try #require(metric("apus_imap4_pool_reused_total{backend=\"local\"}", in: front)) >= 1, "\(front)")
        #expect(metric("apus_imap4_pool_down{backend=\"local\"}", in: front) == 0)
        #expect(metric("apus_imap4_pool_closed_total{backend=\"local\"}", in: front) == 0)

        // The back end stops: the front end's hops close and the back end reads as down.
        #expect(fixture.apus("stop", "imap4be").status == 0)
        #expect(eventually { metric("apus_imap4_pool_down{backend=\"local\"}", in: (try? scrape(frontAdmin)) ?? "") == 1 })
        front = try scrape(frontAdmin)
        #expect(try #require(metric("apus_imap4_pool_closed_total{backend=\"local\"}", in: front)) >= 1)
        #expect(metric("apus_imap4_pool_connections{backend=\"local\",state=\"idle\"}", in: front) == 0)
    }
}

/// Base64 (RFC 4648 section 4) of `bytes`, padded.
func base64(_ bytes: [UInt8]) -> String {
    let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
    var text = ""
    for start in stride(from: 0, to: bytes.count, by: 3) {
        let chunk = Array(bytes[start..<min(start + 3, bytes.count)]) + [0, 0]
        let bits = UInt32(chunk[0]) << 16 | UInt32(chunk[1]) << 8 | UInt32(chunk[2])
        let available = min(3, bytes.count - start) + 1
        for index in 0..<4 {
            text.append(index < available ? alphabet[Int(bits >> UInt32(18 - 6 * index)) & 63] : "=")
        }
    }
    return text
}

/// Polls `condition` until it holds or 10 s pass, for state another process changes without
/// telling the test (a pool count after the back end's answer).
func eventually(_ condition: () -> Bool) -> Bool {
    let deadline = Deadline.now().adding(.seconds(10))
    while !condition() {
        if Deadline.now() >= deadline { return false }
        var pause = timespec(tv_sec: 0, tv_nsec: 20_000_000)
        nanosleep(&pause, nil)
    }
    return true
}
