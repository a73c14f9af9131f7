// IMAPFrontend: BackendPool, one loop's share of the persistent connections to one back end.

import Glibc
import IMAPProtocol
import Reactor
import Synchronization
import Telemetry

/// The counts and the down mark of one back end, shared by every loop's pool of it: read by
/// `FrontendServer.poolStatus()` from any thread, and the down mark makes every loop answer
/// `NO [UNAVAILABLE]` as soon as one loop finds the back end unreachable.
///
/// The maximum and the minimum idle are the back end's, not a loop's: `open` counts the
/// connections of every loop and a loop takes a slot with one compare-and-swap before it
/// connects (no lock anywhere). A loop whose logins wait while every slot is taken asks the
/// other loops for an idle connection, which moves to it (``Connection/transfer(to:)``) greeted
/// and unauthenticated, so a pool of 4 serves 2 loops without a fifth connection.
final class BackendPoolShared: Sendable {
    let name: String
    /// Position in the configuration's back-end list (the same in every loop's pool list).
    let index: Int
    let maximum: Int
    let minimumIdle: Int
    let idle = Atomic<Int>(0)
    let busy = Atomic<Int>(0)
    let created = Atomic<Int>(0)
    let reused = Atomic<Int>(0)
    let tlsResumed = Atomic<Int>(0)
    let closed = Atomic<Int>(0)
    let down = Atomic<Bool>(false)
    /// Connections open or opening on all loops; never above `maximum`.
    let open = Atomic<Int>(0)
    /// Connections connecting, greeting or probing on all loops (the minimum idle counts them).
    let opening = Atomic<Int>(0)
    /// Idle connections in a NOOP health check on all loops (spare, like the idle ones).
    let checking = Atomic<Int>(0)
    /// One bit per loop whose logins wait for a connection another loop may lend.
    let wantingLoops = Atomic<UInt64>(0)
    /// Connections moved to another loop's pool (internal: for tests and logs, not the status).
    let lent = Atomic<Int>(0)
    /// Connects put off because the back end's UNIX backlog was full (internal, like `lent`).
    let deferredConnects = Atomic<Int>(0)
    private let directory = Mutex<PoolDirectory?>(nil)

    init(name: String, index: Int = 0, maximum: Int = 1, minimumIdle: Int = 0) {
        self.name = name
        self.index = index
        self.maximum = maximum
        self.minimumIdle = minimumIdle
    }

    var isDown: Bool { down.load(ordering: .acquiring) }

    var status: BackendPoolStatus {
        BackendPoolStatus(name: name, idle: idle.load(ordering: .relaxed), busy: busy.load(ordering: .relaxed),
                          down: isDown, created: created.load(ordering: .relaxed),
                          reused: reused.load(ordering: .relaxed), tlsResumed: tlsResumed.load(ordering: .relaxed),
                          closed: closed.load(ordering: .relaxed))
    }

    /// Takes one of the back end's connection slots; false when all `maximum` are taken.
    func reserveSlot() -> Bool {
        var current = open.load(ordering: .relaxed)
        while current < maximum {
            let (exchanged, original) = open.compareExchange(
                expected: current, desired: current + 1, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
        return false
    }

    /// Gives back a slot taken by ``reserveSlot()`` (its connection closed).
    func releaseSlot() { open.subtract(1, ordering: .relaxed) }

    /// Tells the shared state how to reach each loop's pool of this back end (set once at start).
    func setDirectory(_ directory: PoolDirectory) { self.directory.withLock { $0 = directory } }

    /// Runs `action` on every other loop, with that loop's pool of this back end.
    func onOtherLoops(than loopIndex: Int, _ action: @escaping @Sendable (BackendPool) -> Void) {
        guard let directory = directory.withLock({ $0 }) else { return }
        for handle in directory.handles where handle.index != loopIndex {
            let backend = index
            handle.execute { loop in action(directory.pools(loop)[backend]) }
        }
    }

    /// The handle of loop `index`.
    func handle(ofLoop index: Int) -> EventLoopHandle? {
        directory.withLock { $0 }?.handles.first { $0.index == index }
    }

    /// This back end's pool on `loop`; call on that loop's thread.
    func pool(on loop: EventLoop) -> BackendPool? {
        directory.withLock { $0 }.map { $0.pools(loop)[index] }
    }
}

/// How a back end's shared state reaches the pools of every loop.
struct PoolDirectory: Sendable {
    let handles: [EventLoopHandle]
    /// The pools (one per back end) of the loop it is called on, on that loop's thread.
    let pools: @Sendable (EventLoop) -> [BackendPool]
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
/// Connections are opened ahead (the back end's `minimumIdle`, counted over all loops), handed
/// out last-in first-out (the warmest first), and come back after a clean UNAUTHENTICATE, a
/// failed login or, still logged in, after a client's LOGOUT (lazy reset: the next login sends the
/// UNAUTHENTICATE in its own write; one timer per pool resets those not taken within the window).
/// Last-in first-out also hands out the most recently released first, so none stays dirty long.
/// The back end's `maximum` holds across loops (``BackendPoolShared/reserveSlot()``); a loop at
/// the maximum borrows an idle connection from another loop. A connect that fails
/// marks the back end down for every loop; reconnect attempts follow with exponential backoff
/// and the first success marks it up again.
final class BackendPool {
    let endpoint: BackendEndpoint
    let settings: BackendPoolSettings
    let shared: BackendPoolShared
    unowned let loop: EventLoop
    let logger: Logger
    /// Options for hop connections (the connect timeout rides on the handshake timeout).
    private let options: ConnectionOptions

    private var idle: [BackendConnection] = []
    private var waiters: [ClientSession] = []
    /// This loop's connections not yet closed, in any state.
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
    /// The delay before refilling after a connect deferred for a full backlog (``scheduleBusyRetry()``).
    private var busyBackoff: Duration
    private var busyRetryTimer: Timer?
    private var healthTimer: Timer?
    /// Due when the oldest connection parked still logged in reaches the lazy-reset window.
    private var lazyResetTimer: Timer?
    private var sourceIndex = 0
    private var stopped = false
    /// Where a login's commands are written (``BackendConnection/beginLogin``): one per pool, since
    /// a loop builds one login at a time, rather than one per pooled connection.
    private var commandBuffer = IMAPOutputBuffer(capacity: 256)
    /// The back end's last login answer and what the client is told of it.
    private var loginAnswers = PostLoginAnswerCache()

    init(endpoint: BackendEndpoint, settings: BackendPoolSettings, shared: BackendPoolShared, loop: EventLoop,
         logger: Logger) {
        self.endpoint = endpoint
        self.settings = settings
        self.shared = shared
        self.loop = loop
        self.logger = logger
        backoff = settings.reconnectInitialBackoff
        busyBackoff = settings.reconnectInitialBackoff
        var options = ConnectionOptions()
        options.handshakeTimeout = settings.connectTimeout
        options.closingGracePeriod = settings.responseTimeout
        self.options = options
    }

    private var loopBit: UInt64 { 1 << UInt64(loop.index & 63) }

    /// The pool's command buffer, emptied; give it back with ``returnCommandBuffer(_:)``.
    func takeCommandBuffer() -> IMAPOutputBuffer {
        var buffer = commandBuffer
        commandBuffer = IMAPOutputBuffer(capacity: 0)
        buffer.clear()
        return buffer
    }

    func returnCommandBuffer(_ buffer: IMAPOutputBuffer) { commandBuffer = buffer }

    /// What the client is told of a successful login the back end answered with `untagged` lines
    /// and `taggedText` after our tag: worked out once per distinct answer, not per login.
    func postLoginAnswer(untagged: [UInt8], taggedText: UnsafeRawBufferPointer) -> PostLoginAnswer {
        loginAnswers.answer(untagged: untagged, taggedText: taggedText)
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
        busyRetryTimer?.cancel()
        healthTimer?.cancel()
        lazyResetTimer?.cancel()
        // Parked connections still logged in close too: closing ends the user's session as well.
        for connection in idle { connection.close() }
        for waiter in waiters { waiter.backendUnavailable() }
        waiters.removeAll()
        shared.wantingLoops.bitwiseAnd(~loopBit, ordering: .relaxed)
    }

    // MARK: - Checking out and in

    /// A connection for `session`'s login of `user`, now or later.
    func checkout(for session: ClientSession, user: [UInt8]) -> BackendCheckout {
        if shared.isDown || stopped { return .unavailable }
        if let connection = takeIdle(forUser: user) {
            shared.idle.subtract(1, ordering: .relaxed)
            // Top the back end's idle connections up again (nothing to do when min idle is 0).
            if shared.minimumIdle > 0 { refill() }
            return .ready(handOut(connection))
        }
        waiters.append(session)
        refill()
        return .waiting
    }

    /// How many event loops the back end runs, as its ID answers say (0: not said, as Dovecot).
    /// The one copy: a connection's login reads it here to know the loop it ends on.
    private(set) var backendLoopCount = 0

    /// A back-end connection's ID answer said how many event loops the back end runs.
    func backendReported(loopCount: Int) { backendLoopCount = loopCount }

    /// How many of the most recently returned idle connections a login looks through for one on
    /// its user's home loop. Why a cap: a pool can hold thousands of idle connections, and every
    /// login would pay a scan of them all plus a removal from deep in the list; with a few back-end
    /// loops, 32 of the warmest almost always include one on any given loop, and missing it costs
    /// only the back end's move of the session, not a failure.
    static let homeLoopScanLimit = 32

    /// The idle connection that already sits on `user`'s home loop in the back end (its login then
    /// skips the back end's move to that loop), the most recently returned of them among the last
    /// ``homeLoopScanLimit``; otherwise the most recently returned one (the warmest). No allocation.
    private func takeIdle(forUser user: [UInt8]) -> BackendConnection? {
        guard backendLoopCount > 1, idle.count > 1 else { return idle.popLast() }
        let home = HomeLoop.index(ofUser: user, loopCount: backendLoopCount)
        let lowest = max(0, idle.count - BackendPool.homeLoopScanLimit)
        var index = idle.count - 1
        while index >= lowest {
            if idle[index].backendLoop == home { return idle.remove(at: index) }
            index -= 1
        }
        return idle.popLast()
    }

    /// A waiting session gave up (its client left, or the checkout timeout passed).
    func cancelWait(_ session: ClientSession) {
        waiters.removeAll { $0 === session }
        if waiters.isEmpty { shared.wantingLoops.bitwiseAnd(~loopBit, ordering: .relaxed) }
    }

    private func handOut(_ connection: BackendConnection) -> BackendConnection {
        shared.busy.add(1, ordering: .relaxed)
        if connection.sessionsServed > 0 { shared.reused.add(1, ordering: .relaxed) }
        connection.sessionsServed += 1
        connection.markCheckedOut()
        return connection
    }

    /// Takes back a connection that is unauthenticated again (after UNAUTHENTICATE, or a failed
    /// login), or still logged in after a LOGOUT (``BackendConnection/needsReset``).
    func checkin(_ connection: BackendConnection) {
        if connection.state == .unauthenticating { returningCount -= 1 }
        shared.busy.subtract(1, ordering: .relaxed)
        makeAvailable(connection)
    }

    /// A connection is greeted (and unauthenticated, or waiting for its lazy reset): give it to a
    /// waiting login (whose write then starts with the reset), lend it to a loop whose logins wait,
    /// or keep it.
    private func makeAvailable(_ connection: BackendConnection, keepIdleSince: Bool = false) {
        // First, for every branch below: reading resumed, nothing of the last use kept.
        connection.prepareForPool()
        if stopped {
            connection.close()
            return
        }
        if !waiters.isEmpty {
            let session = waiters.removeFirst()
            if waiters.isEmpty { shared.wantingLoops.bitwiseAnd(~loopBit, ordering: .relaxed) }
            session.backendReady(handOut(connection))
            return
        }
        if shared.wantingLoops.load(ordering: .relaxed) & ~loopBit != 0 {
            // Only clean connections move between loops: this one is lent once its reset is done.
            if connection.needsReset { return reset(connection) }
            if lend(connection) { return }
        }
        connection.markIdle(since: keepIdleSince ? connection.idleSince : loop.now)
        idle.append(connection)
        shared.idle.add(1, ordering: .relaxed)
        if connection.needsReset { scheduleLazyReset() }
    }

    /// Sends UNAUTHENTICATE on a connection the pool holds still logged in (taken off the idle
    /// list); it counts as busy until the OK brings it back through `checkin`.
    private func reset(_ connection: BackendConnection) {
        shared.busy.add(1, ordering: .relaxed)
        connection.unauthenticate()
    }

    /// Arms the pool's one lazy-reset timer (not one per connection) for the oldest connection
    /// parked still logged in.
    private func scheduleLazyReset() {
        guard !stopped, lazyResetTimer?.isPending != true,
              let oldest = idle.lazy.filter({ $0.needsReset }).map({ $0.idleSince }).min() else { return }
        let due = oldest.adding(settings.lazyResetWindow)
        let now = loop.now
        let delay = now < due ? Duration.nanoseconds(Int64(due.nanoseconds - now.nanoseconds)) : .zero
        lazyResetTimer = loop.schedule(after: delay) { [weak self] in
            guard let self else { return }
            self.lazyResetTimer = nil
            self.resetExpiredParkedConnections()
        }
    }

    /// Resets the connections parked still logged in for the whole window, so the back end does
    /// not hold their user's session (a per-user connection slot, a selected mailbox) for long.
    private func resetExpiredParkedConnections() {
        let now = loop.now
        var expired: [BackendConnection] = []
        idle.removeAll { connection in
            let due = connection.needsReset && !(now < connection.idleSince.adding(settings.lazyResetWindow))
            if due { expired.append(connection) }
            return due
        }
        shared.idle.subtract(expired.count, ordering: .relaxed)
        for connection in expired { reset(connection) }
        scheduleLazyReset()
    }

    /// A connection sent UNAUTHENTICATE and should be back shortly.
    func connectionReturning() { returningCount += 1 }

    // MARK: - Lending between loops

    /// Moves an idle connection to a loop whose logins wait (asked by that loop): a clean one if
    /// any, else one still logged in, lent once its reset is done.
    func lendIdleConnection() {
        guard waiters.isEmpty, shared.wantingLoops.load(ordering: .relaxed) & ~loopBit != 0, !idle.isEmpty
        else { return }
        let connection = idle.remove(at: idle.lastIndex { !$0.needsReset } ?? idle.count - 1)
        shared.idle.subtract(1, ordering: .relaxed)
        if connection.needsReset {
            reset(connection)
        } else if !lend(connection) {
            makeAvailable(connection)
        }
    }

    /// Hands `connection` to the lowest loop waiting; false when none waits any more.
    private func lend(_ connection: BackendConnection) -> Bool {
        let wanting = shared.wantingLoops.load(ordering: .relaxed) & ~loopBit
        guard wanting != 0, let hop = connection.connection, hop.isOpen,
              let target = shared.handle(ofLoop: wanting.trailingZeroBitCount), hop.transfer(to: target)
        else { return false }
        connection.markLent()
        openCount -= 1
        shared.lent.add(1, ordering: .relaxed)
        return true
    }

    /// A connection lent by another loop arrived here (called on this loop).
    func adopt(_ connection: BackendConnection) {
        openCount += 1
        makeAvailable(connection)
    }

    // MARK: - Opening and losing connections

    /// Opens connections for the logins waiting here (beyond those on their way back) and until
    /// the back end's idle connections, on all loops, cover its minimum; within its maximum.
    private func refill() {
        guard !stopped, !shared.isDown, !loop.isShuttingDown else { return }
        while waiters.count > openingCount + checkingCount + returningCount {
            guard open() else {
                // Every slot is taken: another loop may have one idle to lend.
                shared.wantingLoops.bitwiseOr(loopBit, ordering: .relaxed)
                shared.onOtherLoops(than: loop.index) { $0.lendIdleConnection() }
                return
            }
        }
        // Counted as opening before the check, so two loops racing never open past the minimum.
        while true {
            let opening = shared.opening.add(1, ordering: .relaxed).newValue
            let spare = shared.idle.load(ordering: .relaxed) + shared.checking.load(ordering: .relaxed) + opening
            guard spare <= shared.minimumIdle, open(countedAsOpening: true) else {
                shared.opening.subtract(1, ordering: .relaxed)
                return
            }
        }
    }

    /// Starts one connection; false at the back end's maximum or when not even a socket could be
    /// made (the back end is then down).
    @discardableResult
    private func open(countedAsOpening: Bool = false) -> Bool {
        guard shared.reserveSlot() else { return false }
        let connection = BackendConnection(pool: self)
        var source: String?
        let overUNIXSocket = SocketAddress(host: endpoint.host, port: endpoint.port).isUNIX
        // Source addresses spread TCP ports; a UNIX hop has none to spread.
        if !settings.sourceAddresses.isEmpty && !overUNIXSocket {
            source = settings.sourceAddresses[sourceIndex % settings.sourceAddresses.count]
            sourceIndex &+= 1
        }
        do {
            connection.connection = try loop.connect(
                host: endpoint.host, port: endpoint.port, sourceAddress: source, tls: endpoint.tls,
                serverName: endpoint.serverName, session: tlsSession, handler: connection, options: options)
        } catch where error.errno == EAGAIN && overUNIXSocket {
            // The back end's UNIX listener has a full backlog: AF_UNIX connects fail at once
            // where TCP's would wait. The back end is busy, not down: its users keep waiting
            // (within their checkout timeout) and the pool tries again shortly.
            shared.releaseSlot()
            shared.deferredConnects.add(1, ordering: .relaxed)
            scheduleBusyRetry()
            return false
        } catch {
            shared.releaseSlot()
            logger.warning("connect to back end \(endpoint.name) failed: \(error)")
            markDown()
            return false
        }
        openCount += 1
        openingCount += 1
        if !countedAsOpening { shared.opening.add(1, ordering: .relaxed) }
        shared.created.add(1, ordering: .relaxed)
        return true
    }

    /// Refills after a connect deferred for a full backlog, backing off while it stays full.
    private func scheduleBusyRetry() {
        guard !stopped, busyRetryTimer?.isPending != true else { return }
        let delay = busyBackoff
        busyBackoff = min(busyBackoff * 2, settings.reconnectMaximumBackoff)
        busyRetryTimer = loop.schedule(after: delay) { [weak self] in
            guard let self else { return }
            self.busyRetryTimer = nil
            self.refill() // nothing while down: the reconnect probe owns a down back end
        }
    }

    /// A new connection was greeted and its capabilities are known.
    func connectionGreeted(_ connection: BackendConnection) {
        busyBackoff = settings.reconnectInitialBackoff
        openingCount -= 1
        shared.opening.subtract(1, ordering: .relaxed)
        if let hop = connection.connection, hop.isTLS {
            if hop.tlsSessionReused { shared.tlsResumed.add(1, ordering: .relaxed) }
            if let session = hop.tlsSessionForResumption() { tlsSession = session }
        }
        if shared.isDown {
            // A probe: a back end that greets but then hangs would flap up and down, so it is up
            // again only once it has answered a command too.
            checkingCount += 1
            shared.checking.add(1, ordering: .relaxed)
            connection.startHealthCheck()
            return
        }
        makeAvailable(connection)
        refill()
    }

    /// A connection closed, in any state; `state` is the one it was in.
    func connectionClosed(_ connection: BackendConnection, state: BackendConnection.State) {
        openCount -= 1
        shared.closed.add(1, ordering: .relaxed)
        shared.releaseSlot()
        switch state {
        case .connecting, .greeting, .probing:
            openingCount -= 1
            shared.opening.subtract(1, ordering: .relaxed)
            // A stop closes every listener of the process at once, the local back end's included,
            // before the front end's own stop reaches its pools: not a back end going down.
            if !stopped && !loop.isShuttingDown {
                logger.warning("back end \(endpoint.name) at \(endpoint.host):\(endpoint.port) did not greet")
                markDown()
            }
        case .idle, .parked:
            if let index = idle.firstIndex(where: { $0 === connection }) {
                idle.remove(at: index)
                shared.idle.subtract(1, ordering: .relaxed)
            }
        case .checking:
            checkingCount -= 1
            shared.checking.subtract(1, ordering: .relaxed)
        case .reserved, .loggingIn, .relaying, .draining, .unauthenticating:
            if state == .unauthenticating { returningCount -= 1 }
            shared.busy.subtract(1, ordering: .relaxed)
        case .lent, .closed:
            break
        }
        refill()
        // A slot is free: loops whose logins wait for one may open it.
        if shared.wantingLoops.load(ordering: .relaxed) & ~loopBit != 0 {
            shared.onOtherLoops(than: loop.index) { $0.refillIfWaiting() }
        }
    }

    /// Another loop freed a slot.
    func refillIfWaiting() {
        if !waiters.isEmpty { refill() }
    }

    // MARK: - Down and up

    private func markDown() {
        if !shared.down.exchange(true, ordering: .acquiringAndReleasing) {
            logger.warning("back end \(endpoint.name) marked down")
        }
        failWaiters()
        // Logins waiting on other loops (for a slot, say) must not sit out their checkout timeout.
        shared.onOtherLoops(than: loop.index) { $0.failWaiters() }
        scheduleReconnect()
    }

    /// The back end did not answer a connection in time (a health check, a login, an
    /// UNAUTHENTICATE): a hung back end is as down as one that refuses connections.
    func connectionTimedOut() {
        guard !stopped else { return }
        markDown()
    }

    /// Answers the logins waiting here `NO [UNAVAILABLE]` while the back end is down.
    func failWaiters() {
        guard shared.isDown || stopped else { return }
        let waiting = waiters
        waiters.removeAll()
        shared.wantingLoops.bitwiseAnd(~loopBit, ordering: .relaxed)
        for session in waiting { session.backendUnavailable() }
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
            if self.openingCount > 0 || !self.open() { self.scheduleReconnect() }
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
    /// on the others; one that does not answer OK in time is closed. One still logged in gets
    /// UNAUTHENTICATE instead: a NOOP would check it as the last user's session.
    private func checkIdleConnections() {
        let now = loop.now
        let candidates = idle
        idle.removeAll()
        // The minimum is the back end's: only idle connections above it, on all loops, may close.
        var surplus = shared.idle.subtract(candidates.count, ordering: .relaxed).newValue + candidates.count
            - shared.minimumIdle
        for connection in candidates {
            if surplus > 0 && now > connection.idleSince.adding(settings.idleTimeout) {
                surplus -= 1
                connection.closeWhileIdle()
                continue
            }
            if connection.needsReset {
                reset(connection)
                continue
            }
            checkingCount += 1
            shared.checking.add(1, ordering: .relaxed)
            connection.startHealthCheck()
        }
        // Loops racing for the minimum may each have backed off: top it up now and then.
        refill()
    }

    /// A health check answered OK.
    func healthCheckPassed(_ connection: BackendConnection) {
        checkingCount -= 1
        shared.checking.subtract(1, ordering: .relaxed)
        markUp()
        makeAvailable(connection, keepIdleSince: true)
        refill()
    }
}
