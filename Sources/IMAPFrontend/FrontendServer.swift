// IMAPFrontend: FrontendServer, the imap4 service: listeners, per-loop pools and the shared state.

import IMAPProtocol
import Reactor
import Synchronization
import Telemetry

/// The imap4 front end: mail clients connect to it; it logs them in, routes each user to the back
/// end holding the mailbox and relays the session over a pooled, persistent back-end connection
/// that is returned to the pool with RFC 8437 UNAUTHENTICATE after LOGOUT.
///
/// ```swift
/// var configuration = FrontendConfiguration()
/// configuration.listeners = [SocketAddress(host: "127.0.0.1", port: 0)]
/// configuration.backends = [BackendEndpoint(name: "local", host: "127.0.0.1", port: 1143)]
/// let server = try FrontendServer(configuration: configuration, logger: logger, metrics: metrics)
/// let addresses = try server.start(on: group)
/// ```
public final class FrontendServer: Sendable {
    let core: FrontendCore
    private let loopContexts = Mutex<[LoopContextBox]>([])
    /// The group and the bound addresses, for closing the listeners at shutdown.
    private let listening = Mutex<(group: EventLoopGroup, addresses: [SocketAddress])?>(nil)
    /// Bytes and TLS handshakes of every client connection (for the service's metrics).
    public let connectionCounters = ConnectionCounters()

    /// Checks the configuration (back ends named once, routes naming known back ends, a sane pool).
    public init(configuration: FrontendConfiguration, logger: Logger, metrics: MetricsRegistry) throws {
        core = try FrontendCore(configuration: configuration, logger: logger, metrics: metrics)
    }

    /// Opens the listeners on `group` and the pools' first connections; returns the bound
    /// addresses, plain listeners first (ports resolved when 0 was asked).
    public func start(on group: EventLoopGroup) throws -> [SocketAddress] {
        let configuration = core.configuration
        let boxes = group.loops.map { LoopContextBox(handle: $0) }
        loopContexts.withLock { $0 = boxes }
        let core = self.core
        let directory = PoolDirectory(handles: group.loops) { loop in
            boxes[loop.index].context(core: core, loop: loop).pools
        }
        for shared in core.poolShares { shared.setDirectory(directory) }
        for box in boxes {
            box.handle.execute { loop in box.context(core: core, loop: loop).start() }
        }
        if core.router.routesFile != nil, let first = boxes.first {
            first.handle.execute { loop in FrontendServer.watchRoutes(core: core, loop: loop) }
        }
        var addresses: [SocketAddress] = []
        var options = ConnectionOptions()
        options.counters = connectionCounters
        for address in configuration.listeners {
            var spec = ListenerSpec(host: address.host, port: address.port, options: options,
                                    makeHandler: FrontendServer.handlerMaker(core, boxes))
            spec.sharedWithOtherProcesses = configuration.listenersSharedWithOtherProcesses
            addresses.append(SocketAddress(host: address.host, port: try group.listen(spec)))
        }
        if let tls = configuration.tls {
            for address in configuration.tlsListeners {
                var spec = ListenerSpec(host: address.host, port: address.port, tls: tls, options: options,
                                        makeHandler: FrontendServer.handlerMaker(core, boxes))
                spec.sharedWithOtherProcesses = configuration.listenersSharedWithOtherProcesses
                addresses.append(SocketAddress(host: address.host, port: try group.listen(spec)))
            }
        }
        listening.withLock { $0 = (group, addresses) }
        core.logger.info("imap4 listening on \(addresses.map(\.description).joined(separator: ", "))")
        return addresses
    }

    private static func handlerMaker(_ core: FrontendCore, _ boxes: [LoopContextBox])
        -> @Sendable (Connection) -> ConnectionHandler {
        { connection in
            let context = boxes[connection.loop.index].context(core: core, loop: connection.loop)
            return ClientSession(context: context, connection: connection)
        }
    }

    /// Re-reads the routes file on a worker now and every check interval.
    private static func watchRoutes(core: FrontendCore, loop: EventLoop) {
        guard !core.isShuttingDown else { return }
        loop.runBlocking({ core.router.reloadIfChanged() }) { message in
            if let message { core.logger.notice(message) }
            loop.schedule(after: core.configuration.routesFileCheckInterval) {
                watchRoutes(core: core, loop: loop)
            }
        }
    }

    /// Stops taking sessions: the listeners close (returns once they are closed on every loop, so
    /// nothing is accepted after it returns; a connection accepted just before gets `* BYE`), idle
    /// and IDLE sessions get `* BYE` now, sessions with commands in flight once those are
    /// answered; pools close.
    public func beginShutdown() {
        core.shuttingDown.store(true, ordering: .releasing)
        if let (group, addresses) = listening.withLock({ $0 }) { group.closeListeners(addresses) }
        let core = self.core
        for box in loopContexts.withLock({ $0 }) {
            box.handle.execute { loop in box.context(core: core, loop: loop).beginShutdown() }
        }
    }

    /// Client sessions open now.
    public var sessionCount: Int { core.sessionCount.load(ordering: .relaxed) }

    /// Each back end's pool: idle, busy, down, created, reused.
    public func poolStatus() -> [BackendPoolStatus] { core.poolShares.map(\.status) }
}

/// What every loop shares: configuration, routing, address limits, pre-rendered replies.
final class FrontendCore: Sendable {
    let configuration: FrontendConfiguration
    let logger: Logger
    let router: BackendRouter
    let addressLimits: ClientAddressLimits
    let poolShares: [BackendPoolShared]
    let sessionCount = Atomic<Int>(0)
    let shuttingDown = Atomic<Bool>(false)
    let sessionsOpened: Counter
    let loginsSucceeded: Counter
    let loginsRejected: Counter
    let loginsUnavailable: Counter
    /// Literal bytes moved from back ends to clients with splice(2) (the rest passed through the buffer).
    let splicedBytes: Counter
    private let capabilitySets: [IMAPCapabilitySet]
    private let greetings: [[UInt8]]

    init(configuration: FrontendConfiguration, logger: Logger, metrics: MetricsRegistry) throws {
        guard !configuration.backends.isEmpty else { throw FrontendConfigurationError("no back ends configured") }
        let names = configuration.backends.map(\.name)
        guard Set(names).count == names.count else { throw FrontendConfigurationError("back-end names repeat") }
        let pool = configuration.pool
        guard pool.minimumIdle >= 0, pool.maximumConnections >= 1, pool.minimumIdle <= pool.maximumConnections else {
            throw FrontendConfigurationError("pool minimum idle must lie between 0 and the pool maximum")
        }
        self.configuration = configuration
        self.logger = logger
        router = try BackendRouter(backendNames: names, routes: configuration.routes,
                                   routesFile: configuration.routesFile)
        addressLimits = ClientAddressLimits(maximumConnections: configuration.maximumConnectionsPerAddress,
                                            baseDelay: configuration.failedLoginDelay,
                                            maximumDelay: configuration.failedLoginMaximumDelay)
        poolShares = names.enumerated().map {
            BackendPoolShared(name: $1, index: $0, maximum: pool.maximumConnections, minimumIdle: pool.minimumIdle)
        }
        sessionsOpened = metrics.counter("apus_imap4_sessions_total", help: "Client sessions accepted by the front end")
        let loginHelp = "Logins through the front end, by outcome"
        loginsSucceeded = metrics.counter("apus_imap4_logins_total", help: loginHelp, labels: [("result", "ok")])
        loginsRejected = metrics.counter("apus_imap4_logins_total", help: loginHelp, labels: [("result", "rejected")])
        loginsUnavailable = metrics.counter("apus_imap4_logins_total", help: loginHelp,
                                            labels: [("result", "unavailable")])
        splicedBytes = metrics.counter("apus_imap4_spliced_bytes_total",
                                       help: "Literal bytes relayed with splice(2): FETCH bodies to clients, APPEND messages to back ends")
        // Pre-rendered CAPABILITY variants: [secure, plain with STARTTLS and login, plain before STARTTLS].
        // ENABLE and IDLE are part of IMAP4rev2 and relayed to the back end after login; clients
        // such as Python's imaplib only use them when the list they read before login names them.
        let base = ["IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE"]
        let auth = ["AUTH=PLAIN", "AUTH=LOGIN"]
        let secure = IMAPCapabilitySet(base + auth)
        let plain = IMAPCapabilitySet(base + (configuration.tls != nil ? ["STARTTLS"] : []) + auth)
        let disabled = IMAPCapabilitySet(base + ["STARTTLS", "LOGINDISABLED"])
        capabilitySets = [secure, plain, disabled]
        greetings = capabilitySets.map { set in
            Array("* OK [".utf8) + set.responseCode + Array("] \(configuration.greetingText)\r\n".utf8)
        }
    }

    var isShuttingDown: Bool { shuttingDown.load(ordering: .acquiring) }

    private func variant(secure: Bool, loginDisabled: Bool) -> Int { secure ? 0 : loginDisabled ? 2 : 1 }

    func capabilities(secure: Bool, loginDisabled: Bool) -> IMAPCapabilitySet {
        capabilitySets[variant(secure: secure, loginDisabled: loginDisabled)]
    }

    func greeting(secure: Bool, loginDisabled: Bool) -> [UInt8] {
        greetings[variant(secure: secure, loginDisabled: loginDisabled)]
    }
}

/// One loop's share of the front end: its pools and its sessions. Used only on that loop.
final class FrontendLoopContext {
    let core: FrontendCore
    unowned let loop: EventLoop
    let pools: [BackendPool]
    /// This loop's session IDs (`x-session-id`).
    var sessionIDs = SessionIDGenerator()
    private var sessions: [ObjectIdentifier: ClientSession] = [:]

    init(core: FrontendCore, loop: EventLoop) {
        self.core = core
        self.loop = loop
        let settings = core.configuration.pool
        pools = zip(core.configuration.backends, core.poolShares).map { endpoint, shared in
            BackendPool(endpoint: endpoint, settings: settings, shared: shared, loop: loop,
                        logger: core.logger.with("backend", endpoint.name))
        }
    }

    func start() {
        for pool in pools { pool.start() }
    }

    func register(_ session: ClientSession) {
        sessions[ObjectIdentifier(session)] = session
        core.sessionCount.add(1, ordering: .relaxed)
        core.sessionsOpened.increment()
    }

    func unregister(_ session: ClientSession) {
        if sessions.removeValue(forKey: ObjectIdentifier(session)) != nil {
            core.sessionCount.subtract(1, ordering: .relaxed)
        }
    }

    func beginShutdown() {
        for session in Array(sessions.values) { session.beginShutdown() }
        for pool in pools { pool.stop() }
    }
}

/// Holds a loop's context for the listener's handler factory, which other threads may capture.
/// Sendable by confinement: `context(core:loop:)` is called only on the box's own loop thread, so
/// the context is made and used there alone.
final class LoopContextBox: @unchecked Sendable {
    let handle: EventLoopHandle
    private var made: FrontendLoopContext?

    init(handle: EventLoopHandle) {
        self.handle = handle
    }

    func context(core: FrontendCore, loop: EventLoop) -> FrontendLoopContext {
        if let made { return made }
        let context = FrontendLoopContext(core: core, loop: loop)
        made = context
        return context
    }
}
