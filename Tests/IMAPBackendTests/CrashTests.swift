// IMAPBackendTests: kill -9 during 50 concurrent appends. The server is this test binary itself,
// re-executed with `--filter backendCrashChild` and APUS_BACKEND_CHILD_DIR set (which enables the
// otherwise skipped child test). The parent drives 50 sessions appending pipelined messages, kills the
// child with SIGKILL part way, reopens the store, and checks that every APPEND answered OK is there,
// byte for byte.

import Glibc
import MailStore
import Reactor
import Telemetry
import Testing
import TestSupport
@testable import IMAPBackend

enum BackendCrashChild {
    static let directoryVariable = "APUS_BACKEND_CHILD_DIR"
    static var directory: String? { getenv(directoryVariable).map { String(cString: $0) } }
    static var isActive: Bool { directory != nil }

    static func message(client: Int, index: Int) -> String {
        let filler = String(repeating: "payload \(client)-\(index) ", count: 50 + (client * 7 + index) % 200)
        return "Subject: crash \(client)-\(index)\r\nX-Apus-Mark: \(client)-\(index)\r\n\r\n\(filler)\r\n"
    }
}

@Suite struct CrashTests {
    @Test(.enabled(if: BackendCrashChild.isActive, "runs only as the child of killNineDuringConcurrentAppends"))
    func backendCrashChild() throws {
        guard let directory = BackendCrashChild.directory else { return }
        var configuration = BackendConfiguration(
            listeners: [BackendListener(host: "127.0.0.1", port: 0)], loginDisabledOnPlain: false,
            dataDirectory: directory + "/data", usersFile: directory + "/users")
        configuration.maxConnectionsPerUser = 0
        let group = try EventLoopGroup(loopCount: 2, workerCount: 4, name: "crashchild")
        let server = try BackendServer(configuration: configuration,
                                       logger: Logger(sink: LogSink(minimumLevel: .error), service: "imap4be"),
                                       metrics: MetricsRegistry())
        let port = try server.start(on: group)[0].port
        writeFile(directory + "/port.tmp", "\(port)\n")
        rename(directory + "/port.tmp", directory + "/port")
        // Serve until killed; the parent gives up on us after its own deadline.
        var pause = timespec(tv_sec: 300, tv_nsec: 0)
        nanosleep(&pause, nil)
        group.shutdown()
    }

    @Test func killNineDuringConcurrentAppends() throws {
        let accounts = try TestAccounts()
        let directory = accounts.directory.path
        // Re-execute this binary as the server.
        var pid: pid_t = 0
        let arguments = ["/proc/self/exe", "--testing-library", "swift-testing", "--filter", "backendCrashChild"]
        let argv = arguments.map { strdup($0) } + [nil]
        var environment: [String] = []
        var index = 0
        while let entry = environ[index] {
            environment.append(String(cString: entry))
            index += 1
        }
        environment.append("\(BackendCrashChild.directoryVariable)=\(directory)")
        let envp = environment.map { strdup($0) } + [nil]
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let spawned = posix_spawn(&pid, "/proc/self/exe", &actions, nil, argv, envp)
        posix_spawn_file_actions_destroy(&actions)
        argv.forEach { free($0) }
        envp.forEach { free($0) }
        try #require(spawned == 0)
        var killed = false
        var reaped = false
        defer {
            if !reaped {
                kill(pid, SIGKILL)
                var status: Int32 = 0
                waitpid(pid, &status, 0)
            }
        }
        // The child writes its port once it listens.
        var port: UInt16 = 0
        let found = waitUntil(timeout: .seconds(60)) {
            guard let file = fopen(directory + "/port", "r") else { return false }
            defer { fclose(file) }
            var buffer = [CChar](repeating: 0, count: 16)
            guard fgets(&buffer, 16, file) != nil else { return false }
            let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            port = UInt16(text.split(separator: "\n").first ?? "") ?? 0
            return port != 0
        }
        try #require(found)

        let clientCount = 50
        let perClient = 6
        var clients: [TestClient] = []
        for _ in 0..<clientCount {
            let client = try TestClient(port: port, timeoutSeconds: 30)
            _ = client.readLine()
            client.send("a LOGIN alice secret\r\n")
            clients.append(client)
        }
        for client in clients { try #require(client.readUntil(tag: "a").contains("a OK")) }
        // Every client pipelines its appends at once.
        for (number, client) in clients.enumerated() {
            var batch = ""
            for index in 0..<perClient {
                let message = BackendCrashChild.message(client: number, index: index)
                batch += "p\(index) APPEND INBOX {\(message.utf8.count)+}\r\n\(message)\r\n"
            }
            client.send(batch)
        }
        // Collect OKs; kill the server once some, not all, are acknowledged.
        var acknowledged: [String] = []
        let killAfter = clientCount * perClient / 3
        outer: for index in 0..<perClient {
            for (number, client) in clients.enumerated() {
                guard let line = client.readLine() else { continue }
                if line.hasPrefix("p\(index) OK") { acknowledged.append("\(number)-\(index)") }
                if acknowledged.count >= killAfter && !killed {
                    kill(pid, SIGKILL)
                    killed = true
                    break outer
                }
            }
        }
        #expect(killed, "the server was killed while appends were in flight")
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        reaped = true

        // Restart: the store reopens (the lock died with the child) and every acknowledged message is there.
        let store = try MailStore(dataDirectory: directory + "/data",
                                  configuration: StoreConfiguration(analyzer: MIMEMessageAnalyzer()))
        let mailbox = try store.openUser(UserName("alice")).mailbox(.inbox)
        var present: [String: [UInt8]] = [:]
        for position in 0..<mailbox.count {
            let uid = mailbox.message(at: position).uid
            let (file, size) = try mailbox.openMessage(uid: uid)
            let bytes = IMAPSession.read(file.fd, 0..<Int(size))
            let text = String(decoding: bytes, as: UTF8.self)
            if let markStart = text.split(separator: "\r\n").first(where: { $0.hasPrefix("X-Apus-Mark: ") }) {
                present[String(markStart.dropFirst("X-Apus-Mark: ".count))] = bytes
            }
        }
        #expect(acknowledged.count >= killAfter)
        for mark in acknowledged {
            let parts = mark.split(separator: "-").compactMap { Int($0) }
            let expected = Array(BackendCrashChild.message(client: parts[0], index: parts[1]).utf8)
            #expect(present[mark] == expected, "acknowledged append \(mark) lost or damaged after kill -9")
        }
    }
}
