// IMAPBackend: BackendServer, the imap4be service: listeners, sessions on the reactor, shutdown.

import IMAPProtocol
import MailStore
import Reactor
import Synchronization
import Telemetry

/// Errors a user can act on when the back end cannot start.
public enum BackendError: Error, CustomStringConvertible, Sendable {
    /// The data directory could not be opened (or another process holds it).
    case store(StoreError)
    /// An implicit-TLS listener is configured without a certificate.
    case tlsListenerWithoutCertificate(BackendListener)
    /// A listener could not be opened (port in use, permission denied).
    case listen(BackendListener, IOError)
    /// The local socket could not be made (path too long, directory missing).
    case localSocket(String, IOError)

    public var description: String {
        switch self {
        case .store(.dataDirectoryLocked(let pid?)): return "the data directory is in use by process \(pid)"
        case .store(let error): return "cannot open the data directory: \(error)"
        case .tlsListenerWithoutCertificate(let listener):
            return "TLS listener \(listener.host):\(listener.port) needs [tls] cert and key"
        case .listen(let listener, let error): return "cannot listen on \(listener.host):\(listener.port): \(error)"
        case .localSocket(let path, let error) where error.errno == ENAMETOOLONG:
            return "local_socket: '\(path)' is longer than the \(SocketAddress.unixPathMaximum) bytes a UNIX socket path may have"
        case .localSocket(let path, let error) where error.errno == ENOTSOCK:
            return "local_socket: '\(path)' exists and is not a UNIX socket (left as it is: remove it or set local_socket to another path)"
        case .localSocket(let path, let error) where error.errno == EPERM:
            return "local_socket: '\(path)' is another user's socket (left as it is)"
        case .localSocket(let path, let error): return "local_socket: cannot listen on \(path): \(error)"
        }
    }
}

/// The back-end IMAP server (imap4be): a complete IMAP4rev1/IMAP4rev2 server over MailStore.
///
/// ```swift
/// let server = try BackendServer(configuration: configuration, logger: logger, metrics: metrics)
/// let addresses = try server.start(on: group)   // ports resolved when 0 was asked
/// …
/// server.beginShutdown()
/// group.shutdown()
/// ```
public final class BackendServer: Sendable {
    let configuration: BackendConfiguration
    let logger: Logger
    let metrics: MetricsRegistry
    let store: MailStore
    private let context = Mutex<BackendContext?>(nil)
    private let sessionCounter = Atomic<UInt64>(0)
    private let live = Atomic<Int>(0)
    private let group = Mutex<EventLoopGroup?>(nil)
    /// Bytes and TLS handshakes of every client connection (for the service's metrics).
    public let connectionCounters = ConnectionCounters()

    /// Opens the data directory (taking its lock).
    public init(configuration: BackendConfiguration, logger: Logger, metrics: MetricsRegistry) throws {
        self.configuration = configuration
        self.logger = logger
        self.metrics = metrics
        var storeConfiguration = StoreConfiguration(analyzer: MIMEMessageAnalyzer(),
                                                    contentSearcher: MIMEContentSearcher())
        storeConfiguration.maximumMessageSize = Int64(clamping: configuration.limits.maxAppendLiteralSize)
        storeConfiguration.fsyncPolicy = configuration.storeFsync
        do {
            store = try MailStore(dataDirectory: configuration.dataDirectory, configuration: storeConfiguration)
        } catch {
            throw BackendError.store(error)
        }
    }

    /// Opens the listeners on `group`; returns the bound addresses (ports resolved when 0 was asked).
    public func start(on group: EventLoopGroup) throws -> [SocketAddress] {
        // SIGPIPE is ignored by the EventLoopGroup: a client gone mid-response gives EPIPE.
        let context = BackendContext(configuration: configuration, store: store, logger: logger, metrics: metrics,
                                     loopHandles: group.loops)
        self.context.withLock { $0 = context }
        self.group.withLock { $0 = group }
        var addresses: [SocketAddress] = []
        let options = connectionOptions()
        for listener in configuration.listeners {
            var tls: TLSContextHolder? = nil
            if listener.implicitTLS {
                guard let holder = configuration.tls else { throw BackendError.tlsListenerWithoutCertificate(listener) }
                tls = holder
            }
            let spec = ListenerSpec(host: listener.host, port: listener.port, tls: tls, options: options) {
                [self] connection in
                self.makeHandler(connection, context: context)
            }
            do {
                let port = try group.listen(spec)
                addresses.append(SocketAddress(host: listener.host, port: port))
            } catch {
                throw BackendError.listen(listener, error)
            }
            logger.info("listening on \(listener.host):\(addresses.last!.port)\(listener.implicitTLS ? " (TLS)" : "")")
        }
        if let path = configuration.localSocketPath {
            // A stale file is replaced; a live one (another instance's) refused with EADDRINUSE.
            let spec = ListenerSpec(host: path, port: 0, options: options) { [self] connection in
                self.makeHandler(connection, context: context)
            }
            do {
                try group.listen(spec)
            } catch {
                throw BackendError.localSocket(path, error)
            }
            logger.info("listening on unix:\(path)")
        }
        return addresses
    }

    private func connectionOptions() -> ConnectionOptions {
        var options = ConnectionOptions()
        options.highWaterMark = configuration.outputHighWaterMark
        options.lowWaterMark = configuration.outputHighWaterMark / 4
        options.counters = connectionCounters
        // A command is at most maxCommandLength; more unconsumed input than that plus a margin is abuse.
        options.maximumBufferedInput = max(options.maximumBufferedInput, configuration.limits.maxCommandLength * 2,
                                           IMAPSession.waitingInputLimit * 2)
        return options
    }

    private func makeHandler(_ connection: Connection, context: BackendContext) -> ConnectionHandler {
        let number = sessionCounter.wrappingAdd(1, ordering: .relaxed).newValue
        live.wrappingAdd(1, ordering: .relaxed)
        let handler = BackendConnection(connection: connection, context: context,
                                        sessionID: String(number, radix: 16)) { [self] in
            live.wrappingSubtract(1, ordering: .relaxed)
        }
        return handler
    }

    /// Stop accepting, `* BYE` to idle/IDLE sessions, let commands in flight finish. The loops' own
    /// graceful shutdown (`EventLoopGroup.shutdown`) delivers `connectionShutdownRequested` to each
    /// session, which answers it; this call starts that on every loop and returns once every loop
    /// has closed its listeners, so no connection is accepted after it returns.
    public func beginShutdown() {
        guard let group = group.withLock({ $0 }) else { return }
        // Lingering users close now, with clean index snapshots, while the loops still run.
        if let context = context.withLock({ $0 }) {
            for state in context.loopStates where state.index < context.loopHandles.count {
                context.loopHandles[state.index].execute { _ in state.closeLingering() }
            }
        }
        group.beginShutdown(gracePeriod: .seconds(10))
        // The listeners are closed now: the socket file goes with them (unless no longer ours).
        if let path = configuration.localSocketPath { group.removeUNIXSocket(path) }
    }

    /// Open sessions.
    public var sessionCount: Int { live.load(ordering: .relaxed) }

    /// Commits that ran on their loop without a round on a worker (name changes only).
    public var inlineCommitCount: Int {
        context.withLock { $0?.loopStates.reduce(0) { $0 + $1.inlineCommits.load(ordering: .relaxed) } ?? 0 }
    }

    /// Password checks the auth cache answered without hashing.
    public var authCacheHits: Int { context.withLock { $0?.authenticator.cacheHitCount ?? 0 } }
}

/// The reactor side of a session: a `ConnectionHandler` that feeds the session and carries out what it
/// asks of its connection.
final class BackendConnection: ConnectionHandler, IMAPSessionTransport {
    private weak var connection: Connection?
    private var session: IMAPSession!
    private let onClose: () -> Void
    private let context: BackendContext
    private var countedAddress: String?

    init(connection: Connection, context: BackendContext, sessionID: String, onClose: @escaping () -> Void) {
        self.connection = connection
        self.onClose = onClose
        self.context = context
        session = IMAPSession(context: context, transport: self, peer: connection.peer, sessionID: sessionID)
    }

    // MARK: ConnectionHandler

    func connectionActive(_ connection: Connection) {
        // Every local-socket connection has the same "address" (the socket's path), and comes
        // from a front end that limits its own clients per address: counting them together
        // would cap the front end's pool, so they are not counted.
        guard !connection.peer.isUNIX else { return session.start() }
        let address = connection.peer.host
        guard context.addressCounts.acquire(address, limit: context.configuration.maxConnectionsPerAddress) else {
            connection.write("* BYE Too many connections from your address\r\n")
            connection.close(.afterFlush)
            return
        }
        countedAddress = address
        session.start()
    }

    func connectionRead(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int {
        session.receive(bytes)
    }

    func connectionWritable(_ connection: Connection) { session.writable() }

    func connectionIdleTimeout(_ connection: Connection) { session.timedOut() }

    func connectionMoved(_ connection: Connection) { session.didMove() }

    func connectionShutdownRequested(_ connection: Connection) { session.shutdownRequested() }

    func connectionClosed(_ connection: Connection, reason: CloseReason) {
        if let countedAddress { context.addressCounts.release(countedAddress) }
        countedAddress = nil
        session.connectionClosed()
        onClose()
    }

    // MARK: IMAPSessionTransport

    func write(_ bytes: UnsafeRawBufferPointer) { connection?.write(bytes) }

    func writeFile(descriptor: Int32, offset: Int64, count: Int) {
        if let connection {
            connection.writeFile(descriptor: descriptor, offset: offset, count: count)
        } else {
            _ = Glibc.close(descriptor)
        }
    }

    var queuedOutputBytes: Int { connection?.queuedOutputBytes ?? 0 }
    var isTLS: Bool { connection?.isTLS ?? false }
    func startTLS(_ context: TLSContext) { connection?.startTLS(context: context) }
    func close() { connection?.close(.afterFlush) }
    var loopIndex: Int { connection?.loop.index ?? 0 }

    func moveToLoop(_ index: Int) -> Bool {
        guard let connection, connection.loop.index != index, index < context.loopStates.count else { return false }
        guard index < context.loopHandles.count else { return false }
        connection.transfer(to: context.loopHandles[index])
        return true
    }

    func runBlocking<Result: Sendable>(on lane: WorkLane, _ work: @escaping @Sendable () -> Result,
                                       then completion: @escaping (Result) -> Void) {
        guard let connection else { return }
        connection.loop.runBlocking(on: lane, work, then: completion)
    }

    var executor: (any BlockingExecutor)? { connection?.loop }

    func schedule(after delay: Duration, _ action: @escaping () -> Void) -> () -> Void {
        guard let connection else { return {} }
        let timer = connection.loop.schedule(after: delay, action)
        return { timer.cancel() }
    }

    func pauseReading() { connection?.pauseReading() }
    func resumeReading() { connection?.resumeReading() }
    // The reactor offers kept input again on resuming from a pause; a pause first makes sure of it.
    func redeliverInput() {
        connection?.pauseReading()
        connection?.resumeReading()
    }
    func setIdleTimeout(_ timeout: Duration?) { connection?.idleTimeout = timeout }
}

import Glibc
