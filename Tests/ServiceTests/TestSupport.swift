//===----------------------------------------------------------------------===//
// Apus Service tests: the built `apus` binary run as a real process, temp dirs, IMAP clients.
//===----------------------------------------------------------------------===//

import Glibc
import Reactor
import Service
import Synchronization
import TestSupport

func writeFile(_ path: String, _ text: String) {
    let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    precondition(descriptor >= 0, "cannot write \(path)")
    _ = Array(text.utf8).withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
    close(descriptor)
}

func fileExists(_ path: String) -> Bool { access(path, F_OK) == 0 }

extension Substring {
    var trimmingSpaces: String {
        var slice = self
        while slice.first == " " { slice = slice.dropFirst() }
        while slice.last == " " { slice = slice.dropLast() }
        return String(slice)
    }
}

/// What a finished `apus` run printed and how it exited.
struct CommandResult: CustomStringConvertible {
    var status: Int32
    var output: String
    var errors: String
    var description: String { "exit \(status)\nstdout: \(output)\nstderr: \(errors)" }
}

/// The `apus` executable built next to this test bundle.
let apusExecutable: String = {
    var buffer = [CChar](repeating: 0, count: 4096)
    let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    let path = String(decoding: buffer[0..<max(0, length)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    let directory = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
    return directory + "/apus"
}()

/// Starts the `apus` binary with `arguments`; stdout (unless `standardOutput`, a pipe's write
/// end) and stderr go to files in `directory`. The stand-in serves both services
/// (`APUS_STAND_IN=1`), so these tests need no mail store; a test may ask for the real services
/// with `APUS_STAND_IN=0` in `extra`.
func spawnApus(
    _ arguments: [String], in directory: String, environment extra: [String] = [],
    standardOutput: Int32? = nil, standardInput: String = "/dev/null"
) -> pid_t {
    let standIn = extra.contains { $0.hasPrefix("APUS_STAND_IN=") } ? [] : ["APUS_STAND_IN=1"]
    return spawnProgram(apusExecutable, name: "apus", arguments, in: directory,
                        environment: standIn + ["PATH=/usr/bin:/bin"] + extra, standardOutput: standardOutput,
                        standardInput: standardInput)
}

/// Starts `path` with `arguments`, standard input from the file `standardInput`, stdout (unless
/// `standardOutput`) and stderr to files in `directory`.
func spawnProgram(
    _ path: String, name: String, _ arguments: [String], in directory: String, environment: [String],
    standardOutput: Int32? = nil, standardInput: String = "/dev/null"
) -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, standardInput, O_RDONLY, 0)
    if let standardOutput {
        posix_spawn_file_actions_adddup2(&actions, standardOutput, 1)
    } else {
        posix_spawn_file_actions_addopen(&actions, 1, directory + "/stdout", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    }
    posix_spawn_file_actions_addopen(&actions, 2, directory + "/stderr", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    var argv: [UnsafeMutablePointer<CChar>?] = ([name] + arguments).map { strdup($0) } + [nil]
    var envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
    defer {
        for pointer in argv { free(pointer) }
        for pointer in envp { free(pointer) }
    }
    var pid = pid_t()
    let result = posix_spawn(&pid, path, &actions, nil, &argv, &envp)
    precondition(result == 0, "cannot run \(path): \(result)")
    return pid
}

/// Runs `path` to completion in `directory` and returns what it printed.
func runCommand(_ path: String, _ arguments: [String], in directory: String) -> CommandResult {
    let pid = spawnProgram(path, name: path, arguments, in: directory, environment: ["PATH=/usr/bin:/bin"])
    let status = reap(pid)
    return CommandResult(status: status, output: readFile(directory + "/stdout"), errors: readFile(directory + "/stderr"))
}

/// Waits for `pid` and returns its exit status (128 + signal when killed).
@discardableResult
func reap(_ pid: pid_t) -> Int32 {
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0, errno == EINTR {}
    return status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
}

/// One test's service setup: a temp directory with run_dir, log file and configuration, and
/// the knowledge to kill whatever daemons it left running.
final class ServiceFixture {
    let directory = TemporaryDirectory(prefix: "apus-service")
    var configurationPath: String { directory.path + "/apus.conf" }
    var runDirectory: String { directory.path + "/run" }
    var logPath: String { directory.path + "/apus.log" }
    /// Extra environment for every `apus` this fixture runs (`APUS_STAND_IN=0`: the real services).
    var environment: [String] = []
    private var commandNumber = 0

    /// A configuration with ephemeral ports everywhere; `extra` is appended to the file.
    init(imap4be: String = "", imap4: String = "", global: String = "") {
        writeConfiguration(imap4be: imap4be, imap4: imap4, global: global)
    }

    /// Writes the configuration: ephemeral ports, no TLS, files in the temp directory; a key
    /// given in `imap4be`, `imap4` or `global` replaces the default line of that key.
    func writeConfiguration(imap4be: String = "", imap4: String = "", global: String = "") {
        func section(_ defaults: [String], _ extra: String) -> String {
            let keys = extra.split(separator: "\n").compactMap { $0.split(separator: "=").first?.trimmingSpaces }
            return (defaults.filter { line in !keys.contains { line.hasPrefix($0 + " =") } } + [extra]).joined(
                separator: "\n")
        }
        let text =
            "[global]\n"
            + section(
                [
                    "run_dir = run", "data_dir = data", "log_file = apus.log", "log_level = debug",
                    "shutdown_timeout = 10s", "start_timeout = 20s",
                ], global)
            + "\n[imap4be]\n" + section(["listen = 127.0.0.1:0", "tls_listen ="], imap4be)
            + "\n[imap4]\n"
            + section(["listen = 127.0.0.1:0", "tls_listen =", "backends = local=127.0.0.1:1143"], imap4) + "\n"
        writeFile(configurationPath, text)
    }

    /// Runs `apus <arguments> --config <file>` to completion.
    func apus(_ arguments: String...) -> CommandResult {
        commandNumber += 1
        let outputDirectory = directory.path + "/command-\(commandNumber)"
        mkdir(outputDirectory, 0o755)
        let pid = spawnApus(arguments + ["--config", configurationPath], in: outputDirectory, environment: environment)
        let status = reap(pid)
        return CommandResult(
            status: status, output: readFile(outputDirectory + "/stdout"),
            errors: readFile(outputDirectory + "/stderr"))
    }

    func pidFile(_ service: ServiceName) -> String { runDirectory + "/\(service.rawValue).pid" }

    /// The status document of `service` from `apus status --json`.
    func status(_ service: ServiceName) -> JSONValue {
        let result = apus("status", "--json", service.rawValue)
        return JSONValue.parse(result.output)?["services"]?.arrayValue?.first ?? .null
    }

    /// The address of `service`'s first listener (plain unless `tls`).
    func port(_ service: ServiceName, tls: Bool = false) -> UInt16? {
        let listeners = status(service)["listeners"]?.arrayValue ?? []
        guard let address = listeners.first(where: { $0["tls"]?.boolValue == tls })?["address"]?.stringValue,
            let colon = address.lastIndex(of: ":")
        else { return nil }
        return UInt16(address[address.index(after: colon)...])
    }

    /// Kills every daemon this fixture's run_dir still knows (kill -9, then waits for the
    /// process to be gone) and removes the directory. Call from `defer` in every test.
    func cleanUp() {
        for service in ServiceName.allCases {
            let path = pidFile(service)
            if case .running(let pid?) = PidFile.probe(path: path) {
                kill(pid, SIGKILL)
                _ = PidFile.waitUntilFree(path: path, timeout: .seconds(10))
            }
        }
        directory.remove()
    }
}

/// A blocking IMAP-ish line client for tests (plain TCP, receive timeout 10 s).
final class LineClient {
    let descriptor: Int32
    private var buffer: [UInt8] = []

    init?(port: UInt16, host: String = "127.0.0.1") {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        inet_pton(AF_INET, host, &address.sin_addr)
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if connected != 0 {
            close(descriptor)
            return nil
        }
    }

    deinit { close(descriptor) }

    func send(_ text: String) {
        _ = Array(text.utf8).withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// The next line without CRLF; nil at EOF or after the receive timeout.
    func readLine() -> String? {
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return line.hasSuffix("\r") ? String(line.dropLast()) : line
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count <= 0 { return nil }
            buffer += chunk[0..<count]
        }
    }

    /// Everything up to EOF (the server closed).
    func readToEnd() -> [String] {
        var lines: [String] = []
        while let line = readLine() { lines.append(line) }
        return lines
    }

    /// Sends an HTTP GET and returns the whole response.
    func httpGet(_ path: String) -> String {
        send("GET \(path) HTTP/1.1\r\nHost: localhost\r\n\r\n")
        return readToEnd().joined(separator: "\n")
    }
}

/// A semaphore with a timeout, for waiting on loop threads (never a sleep).
final class TestSemaphore: @unchecked Sendable {
    private let pointer = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)
    init() { sem_init(pointer, 0, 0) }
    deinit {
        sem_destroy(pointer)
        pointer.deallocate()
    }
    func post() { sem_post(pointer) }
    func wait(seconds: Int = 20) -> Bool {
        var deadline = timespec()
        clock_gettime(CLOCK_REALTIME, &deadline)
        deadline.tv_sec += seconds
        while true {
            if sem_timedwait(pointer, &deadline) == 0 { return true }
            if errno != EINTR { return false }
        }
    }
}

/// Connects with TLS to 127.0.0.1:`port`, trusting only `caFile`; returns the greeting, or
/// nil when the handshake fails (the certificate is not the one trusted).
func tlsGreeting(port: UInt16, caFile: String, group: EventLoopGroup) throws -> String? {
    final class Handler: ConnectionHandler, @unchecked Sendable {
        let done = TestSemaphore()
        let greeting = Mutex<String?>(nil)
        func connectionRead(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int {
            guard let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) else { return 0 }
            greeting.withLock { $0 = String(decoding: bytes[..<newline], as: UTF8.self) }
            connection.close(.immediately)
            return bytes.count
        }
        func connectionClosed(_ connection: Connection, reason: CloseReason) { done.post() }
    }
    let handler = Handler()
    let context = try TLSContext.client(verify: true, caFile: caFile)
    let box = Mutex<Handler?>(handler)
    group.next().execute { loop in
        guard let handler = box.withLock({ $0 }) else { return }
        do {
            try loop.connect(host: "127.0.0.1", port: port, tls: context, handler: handler)
        } catch {
            handler.done.post()
        }
    }
    guard handler.done.wait() else { return nil }
    return handler.greeting.withLock { $0 }
}
