// TestSupport: a real back end on loopback (ephemeral ports, self-made certificate, a users file
// in a temporary directory) and a blocking test client, for the back end's and the front end's tests.

import Glibc
import IMAPBackend
import MailStore
import Reactor
import Telemetry

/// A fresh temporary directory, removed by `remove()`.
public struct TemporaryDirectory {
    public let path: String

    /// Makes `/tmp/<prefix>-XXXXXX`; the prefix says which tests left a directory behind.
    public init(prefix: String = "apus-backend") {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public func remove() {
        var stack = [path]
        var directories: [String] = []
        while let directory = stack.popLast() {
            directories.append(directory)
            guard let handle = opendir(directory) else { continue }
            while let entry = readdir(handle) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) {
                    String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
                }
                if name == "." || name == ".." { continue }
                if entry.pointee.d_type == UInt8(DT_DIR) {
                    stack.append(directory + "/" + name)
                } else {
                    unlink(directory + "/" + name)
                }
            }
            closedir(handle)
        }
        for directory in directories.reversed() { rmdir(directory) }
    }
}

/// A data directory and a users file with alice/secret and bob/hunter2.
public final class TestAccounts {
    public let directory = TemporaryDirectory()
    public var dataDirectory: String { directory.path + "/data" }
    public var usersFile: String { directory.path + "/users" }

    /// The store all sessions of a test share (a data directory has one owner).
    public private(set) lazy var store: MailStore? = openStore()

    private func openStore() -> MailStore? {
        try? MailStore(dataDirectory: dataDirectory,
                       configuration: StoreConfiguration(analyzer: MIMEMessageAnalyzer(),
                                                         contentSearcher: MIMEContentSearcher()))
    }

    /// A restart: drops the store (its lock and open mailboxes) and opens the data directory anew.
    public func reopenStore() {
        store = nil
        store = openStore()
    }

    public init() throws {
        let file = PasswordFile(path: usersFile)
        try file.setPassword(user: "alice", password: Array("secret".utf8))
        try file.setPassword(user: "bob", password: Array("hunter2".utf8))
    }

    public func configuration(tls: TLSContextHolder? = nil, loginDisabledOnPlain: Bool = false,
                       trustedProxies: [TrustedNetwork] = []) -> BackendConfiguration
    {
        var configuration = BackendConfiguration(
            listeners: [BackendListener(host: "127.0.0.1", port: 0)], tls: tls,
            loginDisabledOnPlain: loginDisabledOnPlain, dataDirectory: dataDirectory, usersFile: usersFile,
            trustedProxies: trustedProxies)
        configuration.failedLoginDelay = .milliseconds(1)
        configuration.maxFailedLoginDelay = .milliseconds(5)
        return configuration
    }

    deinit { directory.remove() }
}

/// A back end on 127.0.0.1: a plain listener and an implicit-TLS one, two loops so logins move.
public final class RunningServer {
    public let accounts: TestAccounts
    public let group: EventLoopGroup
    public let server: BackendServer
    public let metrics = MetricsRegistry()
    public let plainPort: UInt16
    public let tlsPort: UInt16
    public var certificatePath: String { accounts.directory.path + "/cert.pem" }

    /// The group's storage workers (a test that occupies them all needs the number).
    public static let storageWorkerCount = 2

    public init(loginDisabledOnPlain: Bool = false, configure: (inout BackendConfiguration) -> Void = { _ in }) throws {
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
        group = try EventLoopGroup(loopCount: 2, workerCount: Self.storageWorkerCount, name: "betest")
        server = try BackendServer(configuration: configuration,
                                   logger: Logger(sink: LogSink(minimumLevel: .error), service: "imap4be"),
                                   metrics: metrics)
        let addresses = try server.start(on: group)
        plainPort = addresses[0].port
        tlsPort = addresses[1].port
    }

    /// Response bytes the server has produced so far (queued for the socket).
    public var bytesProduced: UInt64 {
        metrics.counter("apus_imap4be_bytes_out_total", help: "Response bytes queued").current
    }

    public func stop() {
        group.shutdown(gracePeriod: .seconds(2))
    }
}

/// A blocking TCP socket connected to 127.0.0.1:`port` whose reads give up after `timeout`
/// (SO_RCVTIMEO), so a hang fails a test instead of stalling it. `receiveBuffer` fixes the receive
/// buffer (no autotuning, which on Linux lets it grow to tens of megabytes), for tests that bound
/// what the server runs ahead.
public func connectToLoopback(port: UInt16, timeout: Duration, receiveBuffer: Int32? = nil) throws -> Int32 {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard descriptor >= 0 else { throw StoreError.system(call: "socket", errno: errno) }
    if var size = receiveBuffer {
        setsockopt(descriptor, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    try connect(descriptor, to: &address, "connect to port \(port)", timeout: timeout)
    return descriptor
}

/// A blocking socket connected to the UNIX stream socket at `path`, reads bounded like
/// ``connectToLoopback(port:timeout:receiveBuffer:)``'s.
public func connectToUNIXSocket(path: String, timeout: Duration) throws -> Int32 {
    let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard descriptor >= 0 else { throw StoreError.system(call: "socket", errno: errno) }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { bytes in
        for (index, byte) in path.utf8.prefix(bytes.count - 1).enumerated() { bytes[index] = byte }
    }
    try connect(descriptor, to: &address, "connect to \(path)", timeout: timeout)
    return descriptor
}

/// Connects `descriptor` to `address` (a sockaddr_in or sockaddr_un), closing it on failure,
/// then bounds its reads by `timeout`.
private func connect<Address>(_ descriptor: Int32, to address: inout Address, _ call: String, timeout: Duration) throws {
    let result = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<Address>.size))
        }
    }
    guard result == 0 else {
        let code = errno
        Glibc.close(descriptor)
        throw StoreError.system(call: call, errno: code)
    }
    let (seconds, attoseconds) = timeout.components
    var limit = timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
    setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
}

/// A blocking IMAP client over a plain socket, for tests. Every read has a timeout.
public final class TestClient {
    public let descriptor: Int32
    private var buffer: [UInt8] = []

    /// `receiveBuffer` fixes the socket's receive buffer (no autotuning, which on Linux lets it grow
    /// to tens of megabytes), for tests that bound what the server runs ahead.
    public init(port: UInt16, timeoutSeconds: Int = 30, receiveBuffer: Int32? = nil) throws {
        descriptor = try connectToLoopback(port: port, timeout: .seconds(timeoutSeconds), receiveBuffer: receiveBuffer)
    }

    /// A client of the UNIX stream socket at `unixPath` (a back end's local socket).
    public init(unixPath: String, timeoutSeconds: Int = 30) throws {
        descriptor = try connectToUNIXSocket(path: unixPath, timeout: .seconds(timeoutSeconds))
    }

    deinit { Glibc.close(descriptor) }

    public func send(_ text: String) { send(bytes: Array(text.utf8)) }

    public func send(bytes: [UInt8]) {
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
    public func readLine() -> String? {
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
    public func readRawLine() -> String? {
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
    public func readUntil(tag: String) -> String {
        var text = ""
        while let line = readLine() {
            text += line
            if line.hasPrefix(tag + " ") { break }
        }
        return text
    }

    /// Sends a command and returns the answer up to its tagged line.
    public func command(_ tag: String, _ text: String) -> String {
        send("\(tag) \(text)\r\n")
        return readUntil(tag: tag)
    }

    /// Reads a literal's worth of bytes and counts them without keeping them (large FETCHes).
    public func skip(_ count: Int) -> Bool {
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

