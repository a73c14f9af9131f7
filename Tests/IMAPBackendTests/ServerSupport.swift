// IMAPBackendTests: a real server on loopback (ephemeral ports, self-made certificate), a blocking
// test client, and child processes (python3, curl) run with a deadline.

import Glibc
import IMAPProtocol
import MailStore
import Reactor
import Synchronization
import Telemetry
import Testing
@testable import IMAPBackend

/// A back end on 127.0.0.1: a plain listener and an implicit-TLS one, two loops so logins move.
final class RunningServer {
    let accounts: TestAccounts
    let group: EventLoopGroup
    let server: BackendServer
    let metrics = MetricsRegistry()
    let plainPort: UInt16
    let tlsPort: UInt16
    var certificatePath: String { accounts.directory.path + "/cert.pem" }

    init(loginDisabledOnPlain: Bool = false, configure: (inout BackendConfiguration) -> Void = { _ in }) throws {
        accounts = try TestAccounts()
        let path = accounts.directory.path
        try SelfSignedCertificate.make(certificatePath: path + "/cert.pem", keyPath: path + "/key.pem",
                                       commonName: "localhost")
        let tls = TLSContextHolder(try TLSContext.server(certificateChain: path + "/cert.pem",
                                                         privateKey: path + "/key.pem"))
        var configuration = accounts.configuration(tls: tls, loginDisabledOnPlain: loginDisabledOnPlain)
        configuration.listeners = [BackendListener(host: "127.0.0.1", port: 0),
                                   BackendListener(host: "127.0.0.1", port: 0, implicitTLS: true)]
        configure(&configuration)
        group = try EventLoopGroup(loopCount: 2, workerCount: 2, name: "betest")
        server = try BackendServer(configuration: configuration,
                                   logger: Logger(sink: LogSink(minimumLevel: .error), service: "imap4be"),
                                   metrics: metrics)
        let addresses = try server.start(on: group)
        plainPort = addresses[0].port
        tlsPort = addresses[1].port
    }

    /// Response bytes the server has produced so far (queued for the socket).
    var bytesProduced: UInt64 {
        metrics.counter("apus_imap4be_bytes_out_total", help: "Response bytes queued").current
    }

    func stop() {
        group.shutdown(gracePeriod: .seconds(2))
    }
}

/// A blocking IMAP client over a plain socket, for tests. Every read has a timeout.
final class TestClient {
    let descriptor: Int32
    private var buffer: [UInt8] = []

    /// `receiveBuffer` fixes the socket's receive buffer (no autotuning, which on Linux lets it grow
    /// to tens of megabytes), for tests that bound what the server runs ahead.
    init(port: UInt16, timeoutSeconds: Int = 30, receiveBuffer: Int32? = nil) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        if var size = receiveBuffer {
            setsockopt(descriptor, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else { throw StoreError.system(call: "connect", errno: errno) }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { Glibc.close(descriptor) }

    func send(_ text: String) { send(bytes: Array(text.utf8)) }

    func send(bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { return }
            offset += sent
        }
    }

    /// Reads more bytes; false on EOF, error or timeout.
    private func fill() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 256 * 1024)
        let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return false }
        buffer += chunk[0..<count]
        return true
    }

    /// One line (with literals inline), nil on timeout or EOF.
    func readLine() -> String? {
        while true {
            if let end = buffer.firstIndex(of: 0x0A) {
                let line = Array(buffer[...end])
                buffer.removeFirst(end + 1)
                // A literal at the end of the line: read its bytes too.
                if let open = line.lastIndex(of: UInt8(ascii: "{")), line.count >= 3,
                   let size = Int(String(decoding: line[(open + 1)..<(line.count - 3)].filter { $0 != UInt8(ascii: "+") },
                                         as: UTF8.self))
                {
                    while buffer.count < size { guard fill() else { return nil } }
                    let literal = Array(buffer[0..<size])
                    buffer.removeFirst(size)
                    guard let rest = readLine() else { return nil }
                    return String(decoding: line + literal, as: UTF8.self) + rest
                }
                return String(decoding: line, as: UTF8.self)
            }
            guard fill() else { return nil }
        }
    }

    /// One line as it is, literal bytes not included.
    func readRawLine() -> String? {
        while true {
            if let end = buffer.firstIndex(of: 0x0A) {
                let line = Array(buffer[...end])
                buffer.removeFirst(end + 1)
                return String(decoding: line, as: UTF8.self)
            }
            guard fill() else { return nil }
        }
    }

    /// Reads lines until the tagged answer for `tag`; returns all of them.
    func readUntil(tag: String) -> String {
        var text = ""
        while let line = readLine() {
            text += line
            if line.hasPrefix(tag + " ") { break }
        }
        return text
    }

    /// Sends a command and returns the answer up to its tagged line.
    func command(_ tag: String, _ text: String) -> String {
        send("\(tag) \(text)\r\n")
        return readUntil(tag: tag)
    }

    /// Reads a literal's worth of bytes and counts them without keeping them (large FETCHes).
    func skip(_ count: Int) -> Bool {
        var remaining = count
        while remaining > 0 {
            if buffer.isEmpty { guard fill() else { return false } }
            let used = min(remaining, buffer.count)
            buffer.removeFirst(used)
            remaining -= used
        }
        return true
    }
}

/// The outcome of a child process.
struct ProcessResult {
    var status: Int32
    var output: String
    var timedOut: Bool
}

/// Whether an external tool is on PATH.
func toolExists(_ name: String) -> Bool {
    for directory in (String(cString: getenv("PATH") ?? strdup("/usr/bin")).split(separator: ":")) {
        if access("\(directory)/\(name)", X_OK) == 0 { return true }
    }
    return false
}

/// Whether a test whose tool is missing must fail (CI) rather than skip.
var isCI: Bool { getenv("CI") != nil }

/// Runs a program with arguments and optional stdin bytes; stdout and stderr are collected. Killed
/// (and reported) when it runs past `timeout`.
func runProcess(_ arguments: [String], input: [UInt8] = [], environment: [String] = [],
                timeout: Duration = .seconds(120)) -> ProcessResult
{
    var outputPipe: [Int32] = [0, 0]
    var inputPipe: [Int32] = [0, 0]
    pipe(&outputPipe)
    pipe(&inputPipe)
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    posix_spawn_file_actions_adddup2(&actions, inputPipe[0], 0)
    posix_spawn_file_actions_adddup2(&actions, outputPipe[1], 1)
    posix_spawn_file_actions_adddup2(&actions, outputPipe[1], 2)
    posix_spawn_file_actions_addclose(&actions, outputPipe[0])
    posix_spawn_file_actions_addclose(&actions, inputPipe[1])
    var environmentStrings: [String] = []
    var index = 0
    while let entry = environ[index] {
        environmentStrings.append(String(cString: entry))
        index += 1
    }
    environmentStrings += environment
    let argv = arguments.map { strdup($0) } + [nil]
    let envp = environmentStrings.map { strdup($0) } + [nil]
    defer {
        argv.forEach { free($0) }
        envp.forEach { free($0) }
        posix_spawn_file_actions_destroy(&actions)
    }
    var pid: pid_t = 0
    let spawned = posix_spawnp(&pid, arguments[0], &actions, nil, argv, envp)
    Glibc.close(outputPipe[1])
    Glibc.close(inputPipe[0])
    guard spawned == 0 else {
        Glibc.close(outputPipe[0])
        Glibc.close(inputPipe[1])
        return ProcessResult(status: -1, output: "spawn failed: \(spawned)", timedOut: false)
    }
    // Feed stdin from a thread so a child that writes a lot first cannot deadlock us.
    let writer = inputPipe[1]
    let payload = input
    var feeder = pthread_t()
    let box = Unmanaged.passRetained(FeedJob(descriptor: writer, bytes: payload)).toOpaque()
    pthread_create(&feeder, nil, { context in
        let job = Unmanaged<FeedJob>.fromOpaque(context!).takeRetainedValue()
        job.run()
        return nil
    }, box)
    var output: [UInt8] = []
    let deadline = ContinuousClock.now + timeout
    var timedOut = false
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let remaining = deadline - ContinuousClock.now
        if remaining <= .zero {
            timedOut = true
            kill(pid, SIGKILL)
            break
        }
        var poller = pollfd(fd: outputPipe[0], events: Int16(POLLIN), revents: 0)
        let milliseconds = Int32(min(1000, max(1, remaining.components.seconds * 1000)))
        let ready = poll(&poller, 1, milliseconds)
        if ready < 0 && errno == EINTR { continue }
        if ready == 0 { continue }
        let count = chunk.withUnsafeMutableBytes { read(outputPipe[0], $0.baseAddress, $0.count) }
        if count <= 0 { break }
        output += chunk[0..<count]
    }
    Glibc.close(outputPipe[0])
    pthread_join(feeder, nil)
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let exitCode = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : -(status & 0x7F)
    return ProcessResult(status: exitCode, output: String(decoding: output, as: UTF8.self), timedOut: timedOut)
}

private final class FeedJob {
    let descriptor: Int32
    let bytes: [UInt8]
    init(descriptor: Int32, bytes: [UInt8]) {
        self.descriptor = descriptor
        self.bytes = bytes
    }
    func run() {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            if written <= 0 { break }
            offset += written
        }
        Glibc.close(descriptor)
    }
}
