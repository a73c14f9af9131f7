// IMAPBackendTests: shared helpers: temporary directories, a users file, an in-memory transport that
// drives a session without sockets, and a bounded wait.

import Glibc
import IMAPProtocol
import MailStore
import Reactor
import Synchronization
import Telemetry
import Testing
@testable import IMAPBackend

/// A fresh temporary directory, removed by `remove()`.
struct TemporaryDirectory {
    let path: String

    init() {
        var template = Array("/tmp/apus-backend-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func remove() {
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
final class TestAccounts {
    let directory = TemporaryDirectory()
    var dataDirectory: String { directory.path + "/data" }
    var usersFile: String { directory.path + "/users" }

    /// The store all sessions of a test share (a data directory has one owner).
    private(set) lazy var store: MailStore? = openStore()

    private func openStore() -> MailStore? {
        try? MailStore(dataDirectory: dataDirectory,
                       configuration: StoreConfiguration(analyzer: MIMEMessageAnalyzer(),
                                                         contentSearcher: MIMEContentSearcher()))
    }

    /// A restart: drops the store (its lock and open mailboxes) and opens the data directory anew.
    func reopenStore() {
        store = nil
        store = openStore()
    }

    init() throws {
        let file = PasswordFile(path: usersFile)
        try file.setPassword(user: "alice", password: Array("secret".utf8))
        try file.setPassword(user: "bob", password: Array("hunter2".utf8))
    }

    func configuration(tls: TLSContextHolder? = nil, loginDisabledOnPlain: Bool = false,
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

/// The session's connection, in memory: output is collected, blocking work runs inline, timers are
/// kept for the test to fire.
final class MemoryTransport: IMAPSessionTransport {
    var output: [UInt8] = []
    var isTLS = false
    var closed = false
    var startedTLS = false
    var paused = false
    var idleTimeout: Duration?
    var timers: [(Duration, () -> Void)] = []
    var queuedOutputBytes = 0
    /// A client that reads only when the test says so (`drain()`): writes stay queued until then.
    var slowClient = false
    /// The most output ever queued at once.
    var largestQueue = 0

    /// How many times the session handed output over (one per socket write, for a real connection).
    var writeCount = 0

    func write(_ bytes: UnsafeRawBufferPointer) {
        output += bytes
        writeCount += 1
        queue(bytes.count)
    }

    func writeFile(descriptor: Int32, offset: Int64, count: Int) {
        output += IMAPSession.read(descriptor, Int(offset)..<Int(offset) + count)
        Glibc.close(descriptor)
        queue(count)
    }

    private func queue(_ count: Int) {
        guard slowClient else { return }
        queuedOutputBytes += count
        largestQueue = max(largestQueue, queuedOutputBytes)
    }

    /// The slow client reads everything queued.
    func drain() { queuedOutputBytes = 0 }

    func startTLS(_ context: TLSContext) {
        startedTLS = true
        isTLS = true
    }

    func close() { closed = true }
    var loopIndex: Int { 0 }
    func moveToLoop(_ index: Int) -> Bool { false }

    func runBlocking<Result: Sendable>(_ work: @escaping @Sendable () -> Result,
                                       then completion: @escaping (Result) -> Void)
    {
        completion(work())
    }

    /// Runs blocking work inline, counting it (what the loop would have handed to a worker).
    let inlineExecutor = InlineExecutor()
    var executor: (any BlockingExecutor)? { inlineExecutor }

    func schedule(after delay: Duration, _ action: @escaping () -> Void) -> () -> Void {
        timers.append((delay, action))
        let index = timers.count - 1
        return { [weak self] in self?.timers[index].1 = {} }
    }

    func fireTimers() {
        let due = timers
        timers = []
        for (_, action) in due { action() }
    }

    func pauseReading() { paused = true }
    func resumeReading() { paused = false }
    /// Kept input is offered again by `SessionDriver.send` (and `redeliver`).
    func redeliverInput() {
        paused = false
        redeliveries += 1
    }
    var redeliveries = 0
    func setIdleTimeout(_ timeout: Duration?) { idleTimeout = timeout }
}

/// A session driven without sockets: `send` feeds bytes and returns what the session answered.
final class SessionDriver {
    let accounts: TestAccounts
    let context: BackendContext
    let transport = MemoryTransport()
    let session: IMAPSession
    private var pending: [UInt8] = []

    init(accounts: TestAccounts, configuration: BackendConfiguration? = nil, peer: String = "192.0.2.7",
         store: MailStore? = nil, isTLS: Bool = false) throws
    {
        self.accounts = accounts
        let configuration = configuration ?? accounts.configuration()
        guard let store = store ?? accounts.store else { throw StoreError.dataDirectoryLocked(pid: nil) }
        context = BackendContext(configuration: configuration, store: store,
                                 logger: Logger(sink: LogSink(minimumLevel: .error), service: "test"),
                                 metrics: MetricsRegistry(), loopHandles: [], loopCount: 1)
        transport.isTLS = isTLS
        session = IMAPSession(context: context, transport: transport, peer: SocketAddress(host: peer, port: 40000),
                              sessionID: "t")
        session.start()
    }

    /// A second session on the same store and loop state (another client of the same user).
    init(sibling: SessionDriver) {
        accounts = sibling.accounts
        context = sibling.context
        session = IMAPSession(context: context, transport: transport, peer: SocketAddress(host: "192.0.2.8", port: 1),
                              sessionID: "t2")
        session.start()
    }

    /// Everything the session wrote since the last call.
    func take() -> String {
        let text = String(decoding: transport.output, as: UTF8.self)
        transport.output = []
        return text
    }

    @discardableResult
    func send(_ text: String) -> String {
        send(bytes: Array(text.utf8))
    }

    @discardableResult
    func send(bytes: [UInt8]) -> String {
        pending += bytes
        while !pending.isEmpty {
            let used = pending.withUnsafeBytes { session.receive($0) }
            if used == 0 { break }
            pending.removeFirst(used)
        }
        return take()
    }

    /// Logs in as alice and returns the answer.
    @discardableResult
    func login(_ user: String = "alice", _ password: String = "secret") -> String {
        send("l1 LOGIN \(user) \(password)\r\n")
    }
}

extension String {
    /// The lines of an answer without their CRLF.
    var lines: [String] { split(separator: "\r\n", omittingEmptySubsequences: true).map(String.init) }
}

/// Waits for `condition` with a deadline (polling; the only waits in these tests are bounded).
func waitUntil(timeout: Duration = .seconds(30), _ condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        var pause = timespec(tv_sec: 0, tv_nsec: 2_000_000)
        nanosleep(&pause, nil)
    }
    return condition()
}

/// Runs blocking work inline (no workers in session tests) and counts it.
final class InlineExecutor: BlockingExecutor {
    private(set) var runs = 0

    func runBlocking<Result: Sendable>(_ work: @escaping @Sendable () -> Result,
                                       then completion: @escaping (Result) -> Void)
    {
        runs += 1
        completion(work())
    }
}
