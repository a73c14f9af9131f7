//===----------------------------------------------------------------------===//
// Apus Reactor: one epoll event loop on its own thread.
//===----------------------------------------------------------------------===//

import CShims
import Glibc
import Synchronization

/// The part of an ``EventLoop`` other threads may touch: submit a task, wake it up.
///
/// A task runs on the loop's thread with the loop as its argument. Tasks submitted after the
/// loop has stopped are dropped.
public final class EventLoopHandle: Sendable {
    /// The loop's number in its group (0-based).
    public let index: Int
    let wakeDescriptor: Int32
    private let tasks = Mutex<[@Sendable (EventLoop) -> Void]>([])
    /// Set while a wake-up is already on its way, so a burst of submissions costs one write.
    private let wakePending = Atomic<Bool>(false)
    let stopped = Atomic<Bool>(false)
    /// The loop thread's pthread id once it runs (0 before): a loop cannot wait for itself.
    let thread = Atomic<UInt>(0)

    init(index: Int) throws(IOError) {
        self.index = index
        wakeDescriptor = Int32(try IOError.check(cshim_eventfd(), "eventfd"))
    }

    deinit { Glibc.close(wakeDescriptor) }

    /// Runs `task` on the loop's thread, in submission order.
    public func execute(_ task: @escaping @Sendable (EventLoop) -> Void) {
        guard !stopped.load(ordering: .acquiring) else { return }
        tasks.withLock { $0.append(task) }
        if !wakePending.exchange(true, ordering: .acquiringAndReleasing) {
            _ = cshim_eventfd_signal(wakeDescriptor)
        }
    }

    func takeTasks() -> [@Sendable (EventLoop) -> Void] {
        // Clear the flag before taking the queue: a task added after this point signals again.
        wakePending.store(false, ordering: .releasing)
        return tasks.withLock { queue in
            let taken = queue
            queue = []
            return taken
        }
    }
}

/// A connection handed from one loop to another: it and its handler are reachable only
/// through this box while in flight, so moving them across threads is sound even though
/// neither type is Sendable.
struct ConnectionInTransit: @unchecked Sendable {
    let connection: Connection
}

/// What a listener accepts and how it sets each connection up.
public struct ListenerSpec: Sendable {
    /// Numeric address to bind ("127.0.0.1", "::", "0.0.0.0"), or the absolute path of a UNIX
    /// stream socket to create (port 0; see ``SocketAddress/isUNIX``).
    public var host: String
    /// Port; 0 for an ephemeral one (the group reports the port chosen).
    public var port: UInt16
    /// Implicit TLS: every connection starts with a server handshake.
    public var tls: TLSContextHolder?
    public var backlog: Int32 = 1024
    public var options = ConnectionOptions()
    /// Other processes may listen on the same address and port (SO_REUSEPORT; the kernel spreads
    /// new connections over every listener), as several front-end processes do when one cannot
    /// hold all sessions. Off: a port another socket listens on fails with `EADDRINUSE`.
    public var sharedWithOtherProcesses = false
    /// Makes the handler of each accepted connection, on the accepting loop's thread.
    public var makeHandler: @Sendable (Connection) -> ConnectionHandler

    public init(host: String, port: UInt16, tls: TLSContextHolder? = nil, options: ConnectionOptions = ConnectionOptions(),
                makeHandler: @escaping @Sendable (Connection) -> ConnectionHandler) {
        self.host = host
        self.port = port
        self.tls = tls
        self.options = options
        self.makeHandler = makeHandler
    }
}

final class Listener {
    let descriptor: Int32
    let spec: ListenerSpec
    var slot: UInt32 = 0
    var generation: UInt32 = 0
    var paused = false
    /// Accepts on a UNIX socket (its peers have no address of their own).
    let isUNIX: Bool
    init(descriptor: Int32, spec: ListenerSpec) {
        self.descriptor = descriptor
        self.spec = spec
        isUNIX = SocketAddress(host: spec.host, port: spec.port).isUNIX
    }
}

/// One event loop: an epoll set, its connections and listeners, timers and a task queue, all
/// owned by one thread.
///
/// One tick: run due timers and submitted tasks, wait in epoll (not at all while connections
/// are on the ready list), dispatch each event (errors, then writes, then reads), serve the
/// ready list, then flush every connection with new output in one pass.
///
/// Registrations live in a slot table; epoll's user data carries `generation << 32 | slot`,
/// so an event for a descriptor closed (and maybe reused) earlier in the same batch finds a
/// newer generation in its slot and is dropped.
public final class EventLoop {
    enum Registration {
        case wakeup
        case listener(Listener)
        case connection(Connection)
    }

    struct Slot {
        var generation: UInt32
        var registration: Registration?
    }

    public let handle: EventLoopHandle
    /// The loop's number in its group.
    public var index: Int { handle.index }
    let epoll: Int32
    private var slots: ContiguousArray<Slot> = []
    private var freeSlots: [UInt32] = []
    private var listeners: [Listener] = []
    private let events: UnsafeMutablePointer<cshim_epoll_event>
    private static let eventCapacity = 512
    /// The loop's one read buffer: every read lands here first.
    let readBuffer: UnsafeMutableRawBufferPointer
    static let iovecCount = 64
    let iovecs: UnsafeMutablePointer<iovec>
    private var readyList: [Connection] = []
    private var flushList: [Connection] = []
    /// Swapped with the ready or flush list while it is served (never both at once).
    private var spareList: [Connection] = []
    private var transferList: [Connection] = []
    var timers = TimerHeap()
    /// Output buffers of connections whose output drained, for the next writer.
    private var bufferPool: [ByteBuffer] = []
    private var blockingCompletions: [UInt64: (Any) -> Void] = [:]
    private var nextBlockingID: UInt64 = 0
    let workers: WorkerPool?
    /// Read once per tick: every timestamp taken during a tick is this one.
    public private(set) var now: Deadline
    private var shutdownDeadline: Deadline?
    private var running = true
    /// Open connections on this loop.
    public private(set) var connectionCount = 0
    /// Events dropped because their registration had been closed (and perhaps its slot
    /// reused) earlier in the same batch.
    public private(set) var staleEventsDropped = 0

    /// Creates a loop for the calling thread; run it with ``run()`` on that thread.
    public init(handle: EventLoopHandle, workers: WorkerPool? = nil) throws(IOError) {
        self.handle = handle
        self.workers = workers
        epoll = Int32(try IOError.check(cshim_epoll_create(), "epoll_create1"))
        events = .allocate(capacity: Self.eventCapacity)
        readBuffer = .allocate(byteCount: 64 * 1024, alignment: 16)
        iovecs = .allocate(capacity: Self.iovecCount)
        now = .now()
        let slot = allocateSlot(.wakeup)
        _ = try IOError.check(cshim_epoll_ctl(epoll, CSHIM_EPOLL_CTL_ADD, handle.wakeDescriptor, CSHIM_EPOLLIN | CSHIM_EPOLLET,
                                              userData(slot)), "epoll_ctl(eventfd)")
    }

    deinit {
        Glibc.close(epoll)
        events.deallocate()
        readBuffer.deallocate()
        iovecs.deallocate()
    }

    private func userData(_ slot: UInt32) -> UInt64 { UInt64(slots[Int(slot)].generation) << 32 | UInt64(slot) }

    private func allocateSlot(_ registration: Registration) -> UInt32 {
        if let slot = freeSlots.popLast() {
            slots[Int(slot)].registration = registration
            return slot
        }
        slots.append(Slot(generation: 0, registration: registration))
        return UInt32(slots.count - 1)
    }

    private func releaseSlot(_ slot: UInt32) {
        slots[Int(slot)].registration = nil
        slots[Int(slot)].generation &+= 1
        freeSlots.append(slot)
    }

    // MARK: - Running

    /// Runs until shut down. Call on the thread that made the loop.
    ///
    /// The name `run` and `waitForEvents` below are profiler anchors: keep them stable.
    public func run() {
        handle.thread.store(UInt(pthread_self()), ordering: .releasing)
        while running {
            runDueTimers()
            runTasks()
            flushPending()
            processTransfers()
            if shutdownDeadline != nil, connectionCount == 0 { break }
            waitForEvents()
            serveReadyList()
            flushPending()
            processTransfers()
        }
        // Past the grace period: close whatever is left.
        for index in slots.indices {
            if case .connection(let connection) = slots[index].registration { connection.finishClose(.shutdown) }
        }
        handle.stopped.store(true, ordering: .releasing)
        _ = handle.takeTasks()
    }

    private func waitForEvents() {
        let timeout: Int32
        if !readyList.isEmpty || !transferList.isEmpty {
            timeout = 0
        } else {
            var deadline = timers.nextDeadline
            if let shutdownDeadline { deadline = min(deadline ?? shutdownDeadline, shutdownDeadline) }
            timeout = deadline.map { $0.milliseconds(after: Deadline.now()) } ?? -1
        }
        let count = cshim_epoll_wait(epoll, events, Int32(Self.eventCapacity), timeout)
        now = .now()
        if let shutdownDeadline, now >= shutdownDeadline { running = false }
        guard count > 0 else { return } // EINTR or a timeout: go round again
        for index in 0..<Int(count) {
            let event = events[index]
            let slot = UInt32(truncatingIfNeeded: event.data)
            let generation = UInt32(truncatingIfNeeded: event.data >> 32)
            guard Int(slot) < slots.count, slots[Int(slot)].generation == generation,
                  let registration = slots[Int(slot)].registration else {
                staleEventsDropped += 1
                continue
            }
            switch registration {
            case .wakeup:
                _ = cshim_eventfd_drain(handle.wakeDescriptor)
            case .listener(let listener):
                acceptConnections(listener)
            case .connection(let connection):
                connection.handle(events: event.events)
            }
        }
    }

    private func serveReadyList() {
        guard !readyList.isEmpty else { return }
        // Swap with a spare list rather than copy: taking a second reference and then clearing
        // the original would copy its storage every tick.
        swap(&readyList, &spareList)
        for connection in spareList {
            connection.inReadyList = false
            if connection.state == .active { connection.performReads() }
        }
        spareList.removeAll(keepingCapacity: true)
    }

    func markReady(_ connection: Connection) {
        guard !connection.inReadyList, connection.loop === self else { return }
        connection.inReadyList = true
        readyList.append(connection)
    }

    func scheduleFlush(_ connection: Connection) {
        guard !connection.inFlushList, connection.loop === self else { return }
        connection.inFlushList = true
        flushList.append(connection)
    }

    private func flushPending() {
        while !flushList.isEmpty {
            swap(&flushList, &spareList)
            for connection in spareList {
                connection.inFlushList = false
                if connection.state != .closed, connection.loop === self { connection.flush() }
            }
            spareList.removeAll(keepingCapacity: true)
        }
    }

    private func runTasks() {
        for task in handle.takeTasks() { task(self) }
    }

    private func runDueTimers() {
        now = .now()
        while let due = timers.popDue(now: now) {
            switch due {
            case .timer(let timer):
                if let action = timer.action {
                    timer.action = nil
                    action()
                }
            case .connection(let slot, let generation):
                guard Int(slot) < slots.count, slots[Int(slot)].generation == generation,
                      case .connection(let connection) = slots[Int(slot)].registration else { continue }
                connection.connectionTimerFired(now: now)
            }
        }
    }

    // MARK: - Timers and tasks

    /// Runs `action` on this loop after `delay`, unless cancelled first.
    @discardableResult
    public func schedule(after delay: Duration, _ action: @escaping () -> Void) -> Timer {
        let timer = Timer(action: action)
        timers.insert(Deadline.now().adding(delay), .timer(timer))
        return timer
    }

    /// Runs `work` on the worker pool's storage lane and then `completion` with its result back on
    /// this loop, so the loop thread never waits on disks.
    public func runBlocking<Result: Sendable>(_ work: @escaping @Sendable () -> Result,
                                             then completion: @escaping (Result) -> Void) {
        runBlocking(on: .storage, work, then: completion)
    }

    /// Runs `work` on a worker of `lane` and then `completion` with its result back on this loop
    /// (``WorkLane/compute`` for password hashes, which must not wait behind disk work).
    public func runBlocking<Result: Sendable>(on lane: WorkLane, _ work: @escaping @Sendable () -> Result,
                                             then completion: @escaping (Result) -> Void) {
        guard let workers else {
            // A loop without workers (a test, a tool) runs the work inline.
            completion(work())
            return
        }
        let id = nextBlockingID
        nextBlockingID &+= 1
        // The completion stays here, on its own thread; only the id and the result travel.
        blockingCompletions[id] = { value in completion(value as! Result) }
        let handle = self.handle
        workers.submit(on: lane) {
            let result = work()
            handle.execute { loop in loop.completeBlocking(id, result) }
        }
    }

    private func completeBlocking(_ id: UInt64, _ result: any Sendable) {
        blockingCompletions.removeValue(forKey: id)?(result)
    }

    // MARK: - Buffers

    func takeBuffer() -> ByteBuffer {
        bufferPool.popLast() ?? ByteBuffer(capacity: 4096)
    }

    /// Takes back a drained output buffer for reuse (pool bounded; big ones are freed).
    func recycle(_ buffer: inout ByteBuffer) {
        if buffer.capacity == 0 { return }
        var taken = ByteBuffer()
        swap(&taken, &buffer)
        taken.clear()
        if taken.capacity > 0, taken.capacity <= 64 * 1024, bufferPool.count < 256 { bufferPool.append(taken) }
    }

    // MARK: - Registration

    func register(_ connection: Connection, writeInterest: Bool) -> Bool {
        let slot = allocateSlot(.connection(connection))
        connection.slot = slot
        connection.generation = slots[Int(slot)].generation
        connection.writeArmed = writeInterest
        let result = cshim_epoll_ctl(epoll, CSHIM_EPOLL_CTL_ADD, connection.descriptor, interest(of: connection), userData(slot))
        if result < 0 {
            releaseSlot(slot)
            return false
        }
        connectionCount += 1
        connection.armConnectionTimer()
        return true
    }

    private func interest(of connection: Connection) -> UInt32 {
        CSHIM_EPOLLIN | CSHIM_EPOLLRDHUP | CSHIM_EPOLLET | (connection.writeArmed ? CSHIM_EPOLLOUT : 0)
    }

    func updateInterest(_ connection: Connection) {
        _ = cshim_epoll_ctl(epoll, CSHIM_EPOLL_CTL_MOD, connection.descriptor, interest(of: connection),
                            userData(connection.slot))
    }

    /// Forgets `connection`. `closing`: its descriptor is about to be closed, which removes the
    /// epoll registration by itself (connection descriptors are never duplicated), so the
    /// EPOLL_CTL_DEL, a syscall per session, is skipped; a connection moving to another loop
    /// stays open and is removed explicitly.
    func unregister(_ connection: Connection, closing: Bool) {
        guard Int(connection.slot) < slots.count, slots[Int(connection.slot)].generation == connection.generation,
              case .connection(let registered) = slots[Int(connection.slot)].registration, registered === connection
        else { return }
        if !closing { _ = cshim_epoll_ctl(epoll, CSHIM_EPOLL_CTL_DEL, connection.descriptor, 0, 0) }
        releaseSlot(connection.slot)
        connectionCount -= 1
    }

    /// Takes an already connected socket (a socketpair end, a descriptor from elsewhere) into
    /// this loop. `tls` starts a handshake first (server side when `isServer`).
    @discardableResult
    public func adopt(descriptor: Int32, peer: SocketAddress, handler: ConnectionHandler,
                      options: ConnectionOptions = ConnectionOptions(), tls: TLSContext? = nil,
                      isServer: Bool = true) -> Connection? {
        let connection = Connection(loop: self, descriptor: descriptor, peer: peer, state: .active,
                                    isServerSide: isServer, options: options, handler: handler)
        guard register(connection, writeInterest: false) else {
            Glibc.close(descriptor)
            return nil
        }
        if let tls {
            connection.beginTLS(context: tls, isServer: isServer, serverName: nil, session: nil)
        } else {
            connection.announcedActive = true
            handler.connectionActive(connection)
            if connection.state == .active { markReady(connection) }
        }
        return connection
    }

    /// Opens an outbound connection to a numeric `host`, or to the UNIX socket at `host` when it
    /// is an absolute path (`port` and `sourceAddress` are then unused). The handler hears
    /// `connectionActive` when connected (and the TLS handshake done, with `tls`), or
    /// `connectionClosed(.connectFailed)`. Throws only when no socket could be made.
    @discardableResult
    public func connect(host: String, port: UInt16, sourceAddress: String? = nil, tls: TLSContext? = nil,
                        serverName: String? = nil, session: TLSSession? = nil, handler: ConnectionHandler,
                        options: ConnectionOptions = ConnectionOptions()) throws(IOError) -> Connection {
        var inProgress: Int32 = 0
        let peer = SocketAddress(host: host, port: port)
        let descriptor = Int32(try IOError.check(
            peer.isUNIX ? cshim_connect_unix(host, &inProgress) : cshim_connect_tcp(host, port, sourceAddress, &inProgress),
            "connect to \(peer)"))
        let connection = Connection(loop: self, descriptor: descriptor, peer: peer,
                                    state: .connecting, isServerSide: false, options: options, handler: handler)
        if let tls { connection.pendingStartTLS = (tls, serverName ?? host, session) }
        connection.handshakeDeadline = now.adding(options.handshakeTimeout)
        guard register(connection, writeInterest: true) else {
            Glibc.close(descriptor)
            throw IOError(errno: EMFILE, call: "epoll_ctl(connect)")
        }
        return connection
    }

    // MARK: - Listeners

    func addListener(descriptor: Int32, spec: ListenerSpec) {
        let listener = Listener(descriptor: descriptor, spec: spec)
        listener.slot = allocateSlot(.listener(listener))
        listener.generation = slots[Int(listener.slot)].generation
        watch(listener)
        listeners.append(listener)
    }

    /// Watches `listener` for connections. Level-triggered: connections left in the backlog
    /// (accept budget, EMFILE) are announced again on the next wait. A UNIX listener is one
    /// socket every loop shares (a descriptor each), so it is exclusive: a new connection wakes
    /// one loop, not all of them (TCP listeners are a socket per loop under SO_REUSEPORT).
    private func watch(_ listener: Listener) {
        let events = CSHIM_EPOLLIN | (listener.isUNIX ? CSHIM_EPOLLEXCLUSIVE : 0)
        _ = cshim_epoll_ctl(epoll, CSHIM_EPOLL_CTL_ADD, listener.descriptor, events, userData(listener.slot))
    }

    private func acceptConnections(_ listener: Listener) {
        for _ in 0..<64 {
            var peer = cshim_address()
            let descriptor = cshim_accept(listener.descriptor, &peer)
            if descriptor < 0 {
                if descriptor == -EMFILE || descriptor == -ENFILE || descriptor == -ENOBUFS || descriptor == -ENOMEM {
                    pauseListener(listener)
                }
                return // EAGAIN, or a connection that died in the backlog (ECONNABORTED)
            }
            let address = listener.isUNIX ? SocketAddress(unixPath: listener.spec.host) : SocketAddress(peer)
            // TCP_NODELAY comes from the listener (cshim_listen_tcp), as Linux copies it on accept.
            let connection = Connection(loop: self, descriptor: descriptor, peer: address,
                                        state: listener.spec.tls == nil ? .active : .handshaking,
                                        isServerSide: true, options: listener.spec.options, handler: nil)
            guard register(connection, writeInterest: false) else {
                Glibc.close(descriptor)
                continue
            }
            connection.handler = listener.spec.makeHandler(connection)
            if let tls = listener.spec.tls {
                connection.beginTLS(context: tls.current, isServer: true, serverName: nil, session: nil)
            } else {
                connection.announcedActive = true
                connection.handler?.connectionActive(connection)
            }
        }
    }

    /// Out of descriptors: stop listening for 100 ms rather than spin on a level-triggered
    /// listener whose connections cannot be accepted.
    private func pauseListener(_ listener: Listener) {
        guard !listener.paused else { return }
        listener.paused = true
        // Removed and added again, not modified: epoll_ctl refuses MOD on an exclusive watch.
        _ = cshim_epoll_ctl(epoll, CSHIM_EPOLL_CTL_DEL, listener.descriptor, 0, 0)
        schedule(after: .milliseconds(100)) { [self] in
            guard listener.paused, self.running else { return }
            listener.paused = false
            watch(listener)
        }
    }

    private func closeListeners() {
        closeListeners(matching: nil)
    }

    /// Closes the listeners bound to one of `addresses` (all of them when nil).
    func closeListeners(matching addresses: [SocketAddress]?) {
        listeners.removeAll { listener in
            let address = SocketAddress(host: listener.spec.host, port: listener.spec.port)
            guard addresses?.contains(address) ?? true else { return false }
            releaseSlot(listener.slot)
            // Unwatched first: a UNIX listener's socket outlives this descriptor (other loops
            // hold duplicates), and epoll drops a watch only when the socket itself closes.
            _ = cshim_epoll_ctl(epoll, CSHIM_EPOLL_CTL_DEL, listener.descriptor, 0, 0)
            Glibc.close(listener.descriptor)
            return true
        }
    }

    // MARK: - Moving connections between loops

    func scheduleTransfer(_ connection: Connection) {
        transferList.append(connection)
    }

    /// Hands connections that asked to move to their target loops, once their output queued
    /// so far has been tried (it travels with them if the kernel did not take it).
    private func processTransfers() {
        guard !transferList.isEmpty else { return }
        let moving = transferList
        transferList = []
        for connection in moving {
            guard connection.state == .active, connection.loop === self, let target = connection.pendingTransfer else {
                continue
            }
            // Once handed over it belongs to another thread: nothing here may touch it again (a
            // resumeReading after transfer in the same callback would have put it on the ready list).
            if connection.inReadyList { readyList.removeAll { $0 === connection } }
            if connection.inFlushList { flushList.removeAll { $0 === connection } }
            unregister(connection, closing: false)
            let parcel = ConnectionInTransit(connection: connection)
            target.execute { loop in loop.receive(parcel.connection) }
        }
    }

    private func receive(_ connection: Connection) {
        connection.loop = self
        connection.pendingTransfer = nil
        connection.inReadyList = false
        connection.inFlushList = false
        connection.timerArmedFor = nil
        guard register(connection, writeInterest: connection.writeArmed) else {
            return connection.finishClose(.ioError(IOError(errno: errno, call: "epoll_ctl(transfer)")))
        }
        // Input may have arrived in transit; epoll reports it on ADD, but bytes already inside
        // OpenSSL or unconsumed in our buffer would not be: look now.
        connection.readable = true
        connection.redeliver = connection.inbound.readableBytes > 0
        connection.handler?.connectionMoved(connection)
        if connection.state == .active {
            markReady(connection)
            if connection.queuedOutputBytes > 0 { scheduleFlush(connection) }
        }
    }

    // MARK: - Shutdown

    /// The loop's graceful shutdown has begun: it accepts nothing more and ends once its
    /// connections close. Clients of the loop use it to stop opening connections of their own.
    public var isShuttingDown: Bool { shutdownDeadline != nil }

    /// Stops accepting, asks every connection's handler to finish (it may send `* BYE`), and
    /// stops the loop once all are closed or `gracePeriod` has passed.
    public func beginShutdown(gracePeriod: Duration) {
        guard shutdownDeadline == nil else { return }
        shutdownDeadline = now.adding(gracePeriod)
        closeListeners()
        for index in slots.indices {
            if case .connection(let connection) = slots[index].registration {
                connection.handler?.connectionShutdownRequested(connection)
            }
        }
    }
}
