// IMAPFrontend: BackendPool, one loop's share of the persistent connections to one back end.

import Reactor
import Synchronization
import Telemetry

/// The counts and the down mark of one back end, shared by every loop's pool of it: read by
/// `FrontendServer.poolStatus()` from any thread, and the down mark makes every loop answer
/// `NO [UNAVAILABLE]` as soon as one loop finds the back end unreachable.
final class BackendPoolShared: Sendable {
    let name: String
    let idle = Atomic<Int>(0)
    let busy = Atomic<Int>(0)
    let created = Atomic<Int>(0)
    let reused = Atomic<Int>(0)
    let tlsResumed = Atomic<Int>(0)
    let closed = Atomic<Int>(0)
    let down = Atomic<Bool>(false)

    init(name: String) { self.name = name }

    var isDown: Bool { down.load(ordering: .acquiring) }

    var status: BackendPoolStatus {
        BackendPoolStatus(name: name, idle: idle.load(ordering: .relaxed), busy: busy.load(ordering: .relaxed),
                          down: isDown, created: created.load(ordering: .relaxed),
                          reused: reused.load(ordering: .relaxed), tlsResumed: tlsResumed.load(ordering: .relaxed),
                          closed: closed.load(ordering: .relaxed))
    }
}

/// What a login gets when it asks the pool for a connection.
enum BackendCheckout {
    /// A greeted, unauthenticated connection, now the caller's.
    case ready(BackendConnection)
    /// None free yet: the pool calls the session's `backendReady` or `backendUnavailable` later.
    case waiting
    /// The back end is down: answer `NO [UNAVAILABLE]` now.
    case unavailable
}

/// One loop's connections to one back end. Everything here runs on that loop's thread.
///
/// Connections are opened ahead (`minimumIdle`), handed out last-in first-out (the warmest
/// first), and come back after a clean UNAUTHENTICATE or a failed login. A connect that fails
/// marks the back end down for every loop; reconnect attempts follow with exponential backoff
/// and the first success marks it up again.
final class BackendPool {
    let endpoint: BackendEndpoint
    let settings: BackendPoolSettings
    let shared: BackendPoolShared
    unowned let loop: EventLoop
    /// This loop's share of the back end's maximum and minimum idle.
    let maximum: Int
    let minimumIdle: Int
    let logger: Logger
    /// Options for hop connections (the connect timeout rides on the handshake timeout).
    private let options: ConnectionOptions

    private var idle: [BackendConnection] = []
    private var waiters: [ClientSession] = []
    /// Connections not yet closed, in any state.
    private(set) var openCount = 0
    /// Connections connecting, greeting or probing capabilities.
    private var openingCount = 0
    /// Idle connections in a NOOP health check: back within a round trip, so a login waits for
    /// one of them rather than opening a connection of its own.
    private var checkingCount = 0
    /// Connections whose UNAUTHENTICATE is under way: also back within a round trip.
    private var returningCount = 0
    /// The last TLS session the back end gave us, offered on the next connect.
    private var tlsSession: TLSSession?
    private var backoff: Duration
    private var reconnectTimer: Timer?
    private var healthTimer: Timer?
    private var sourceIndex = 0
    private var stopped = false

    init(endpoint: BackendEndpoint, settings: BackendPoolSettings, shared: BackendPoolShared, loop: EventLoop,
         maximum: Int, minimumIdle: Int, logger: Logger) {
        self.endpoint = endpoint
        self.settings = settings
        self.shared = shared
        self.loop = loop
        self.maximum = maximum
        self.minimumIdle = minimumIdle
        self.logger = logger
        backoff = settings.reconnectInitialBackoff
        var options = ConnectionOptions()
        options.handshakeTimeout = settings.connectTimeout
        options.closingGracePeriod = settings.responseTimeout
        self.options = options
    }

    /// Opens the minimum idle connections and starts the health checks.
    func start() {
        refill()
        scheduleHealthCheck()
    }

    /// Stops opening connections and closes the idle ones (shutdown); busy ones close when released.
    func stop() {
        stopped = true
        reconnectTimer?.cancel()
        healthTimer?.cancel()
        for connection in idle { connection.close() }
        for waiter in waiters { waiter.backendUnavailable() }
        waiters.removeAll()
    }

    // MARK: - Checking out and in

    /// A connection for `session`'s login, now or later.
    func checkout(for session: ClientSession) -> BackendCheckout {
        if shared.isDown || stopped { return .unavailable }
        if let connection = idle.popLast() {
            shared.idle.subtract(1, ordering: .relaxed)
            return .ready(handOut(connection))
        }
        waiters.append(session)
        refill()
        return .waiting
    }

    /// A waiting session gave up (its client left, or the checkout timeout passed).
    func cancelWait(_ session: ClientSession) {
        waiters.removeAll { $0 === session }
    }

    private func handOut(_ connection: BackendConnection) -> BackendConnection {
        shared.busy.add(1, ordering: .relaxed)
        if connection.sessionsServed > 0 { shared.reused.add(1, ordering: .relaxed) }
        connection.sessionsServed += 1
        connection.markCheckedOut()
        return connection
    }

    /// Takes back a connection that is unauthenticated again (after UNAUTHENTICATE, or a failed login).
    func checkin(_ connection: BackendConnection) {
        if connection.state == .unauthenticating { returningCount -= 1 }
        shared.busy.subtract(1, ordering: .relaxed)
        makeAvailable(connection)
    }

    /// A connection is greeted and unauthenticated: give it to a waiting login or keep it.
    private func makeAvailable(_ connection: BackendConnection, keepIdleSince: Bool = false) {
        if stopped {
            connection.close()
            return
        }
        if !waiters.isEmpty {
            let session = waiters.removeFirst()
            session.backendReady(handOut(connection))
            return
        }
        connection.markIdle(since: keepIdleSince ? connection.idleSince : loop.now)
        idle.append(connection)
        shared.idle.add(1, ordering: .relaxed)
    }

    /// A connection sent UNAUTHENTICATE and should be back shortly.
    func connectionReturning() { returningCount += 1 }

    // MARK: - Opening and losing connections

    /// Opens connections until the idle ones (and those on their way) cover the minimum and the
    /// waiting logins, within this loop's maximum.
    private func refill() {
        guard !stopped, !shared.isDown else { return }
        while openCount < maximum
            && openingCount + checkingCount + returningCount
                < waiters.count + max(0, minimumIdle - idle.count - checkingCount - returningCount) {
            if !open() { return }
        }
    }

    /// Starts one connection; false when not even a socket could be made (the back end is then down).
    @discardableResult
    private func open() -> Bool {
        let connection = BackendConnection(pool: self)
        var source: String?
        if !settings.sourceAddresses.isEmpty {
            source = settings.sourceAddresses[sourceIndex % settings.sourceAddresses.count]
            sourceIndex &+= 1
        }
        do {
            connection.connection = try loop.connect(
                host: endpoint.host, port: endpoint.port, sourceAddress: source, tls: endpoint.tls,
                serverName: endpoint.serverName, session: tlsSession, handler: connection, options: options)
        } catch {
            logger.warning("connect to back end \(endpoint.name) failed: \(error)")
            markDown()
            return false
        }
        openCount += 1
        openingCount += 1
        shared.created.add(1, ordering: .relaxed)
        return true
    }

    /// A new connection was greeted and its capabilities are known.
    func connectionGreeted(_ connection: BackendConnection) {
        openingCount -= 1
        if let hop = connection.connection, hop.isTLS {
            if hop.tlsSessionReused { shared.tlsResumed.add(1, ordering: .relaxed) }
            if let session = hop.tlsSessionForResumption() { tlsSession = session }
        }
        markUp()
        makeAvailable(connection)
        refill()
    }

    /// A connection closed, in any state; `state` is the one it was in.
    func connectionClosed(_ connection: BackendConnection, state: BackendConnection.State) {
        openCount -= 1
        shared.closed.add(1, ordering: .relaxed)
        switch state {
        case .connecting, .greeting, .probing:
            openingCount -= 1
            if !stopped {
                logger.warning("back end \(endpoint.name) at \(endpoint.host):\(endpoint.port) did not greet")
                markDown()
            }
        case .idle:
            if let index = idle.firstIndex(where: { $0 === connection }) {
                idle.remove(at: index)
                shared.idle.subtract(1, ordering: .relaxed)
            }
            refill()
        case .checking:
            checkingCount -= 1
            refill()
        case .reserved, .loggingIn, .relaying, .draining, .unauthenticating:
            if state == .unauthenticating { returningCount -= 1 }
            shared.busy.subtract(1, ordering: .relaxed)
            refill()
        case .closed:
            break
        }
    }

    // MARK: - Down and up

    private func markDown() {
        if !shared.down.exchange(true, ordering: .acquiringAndReleasing) {
            logger.warning("back end \(endpoint.name) marked down")
        }
        let waiting = waiters
        waiters.removeAll()
        for session in waiting { session.backendUnavailable() }
        scheduleReconnect()
    }

    private func markUp() {
        backoff = settings.reconnectInitialBackoff
        reconnectTimer?.cancel()
        reconnectTimer = nil
        if shared.down.exchange(false, ordering: .acquiringAndReleasing) {
            logger.notice("back end \(endpoint.name) is up again")
        }
    }

    private func scheduleReconnect() {
        guard !stopped, reconnectTimer?.isPending != true else { return }
        let delay = backoff
        backoff = min(backoff * 2, settings.reconnectMaximumBackoff)
        reconnectTimer = loop.schedule(after: delay) { [weak self] in
            guard let self else { return }
            self.reconnectTimer = nil
            // One probe; its greeting marks the back end up, its failure schedules the next.
            if self.openingCount == 0 && self.openCount < self.maximum { self.open() } else { self.scheduleReconnect() }
        }
    }

    // MARK: - Health

    private func scheduleHealthCheck() {
        guard !stopped else { return }
        healthTimer = loop.schedule(after: settings.healthCheckInterval) { [weak self] in
            self?.checkIdleConnections()
            self?.scheduleHealthCheck()
        }
    }

    /// Closes idle connections unused past the idle timeout (above the minimum) and sends NOOP
    /// on the others; one that does not answer OK in time is closed.
    private func checkIdleConnections() {
        let now = loop.now
        let candidates = idle
        idle.removeAll()
        shared.idle.subtract(candidates.count, ordering: .relaxed)
        var kept = 0
        for connection in candidates {
            if candidates.count - kept > minimumIdle && now > connection.idleSince.adding(settings.idleTimeout) {
                connection.closeWhileIdle()
                continue
            }
            kept += 1
            checkingCount += 1
            connection.startHealthCheck()
        }
    }

    /// A health check answered OK.
    func healthCheckPassed(_ connection: BackendConnection) {
        checkingCount -= 1
        makeAvailable(connection, keepIdleSince: true)
    }
}
