// IMAPBackendTests: an in-memory transport that drives a session without sockets (the real server,
// the blocking client, temporary directories and the users file are in TestSupport).

import Glibc
import IMAPProtocol
import MailStore
import Reactor
import Synchronization
import Telemetry
import Testing
import TestSupport
@testable import IMAPBackend

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

    func runBlocking<Result: Sendable>(on lane: WorkLane, _ work: @escaping @Sendable () -> Result,
                                       then completion: @escaping (Result) -> Void)
    {
        blockingLanes.append(lane)
        completion(work())
    }

    /// The lane of each piece of work the session handed to a worker (run inline here), in order.
    var blockingLanes: [WorkLane] = []

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
