// IMAPBackend: what a session needs from its connection, and the per-loop state its user lives in.

import Glibc
import IMAPProtocol
import MailStore
import Reactor
import Telemetry

/// The session's side of its connection. The reactor adapter (``BackendConnection``) implements it
/// over a `Connection`; tests implement it with an in-memory recorder, so every command can be driven
/// without sockets.
protocol IMAPSessionTransport: AnyObject {
    /// Queues bytes for the client.
    func write(_ bytes: UnsafeRawBufferPointer)
    /// Queues `count` bytes of a file from `offset` (sendfile on plain connections); takes `descriptor`.
    func writeFile(descriptor: Int32, offset: Int64, count: Int)
    /// Bytes queued and not yet written to the socket.
    var queuedOutputBytes: Int { get }
    /// Whether the connection is encrypted.
    var isTLS: Bool { get }
    /// Switches to TLS after the queued output; unconsumed plaintext input is discarded.
    func startTLS(_ context: TLSContext)
    /// Closes after the queued output.
    func close()
    /// The loop the session runs on now.
    var loopIndex: Int { get }
    /// Moves the connection to loop `index`; the session then hears `didMove()` on that loop.
    /// Returns false when it is already there (the caller continues at once).
    func moveToLoop(_ index: Int) -> Bool
    /// Runs `work` on a worker of `lane` and `completion` back on the loop.
    func runBlocking<Result: Sendable>(on lane: WorkLane, _ work: @escaping @Sendable () -> Result,
                                       then completion: @escaping (Result) -> Void)
    /// The loop's runner of blocking work, which outlives this connection (group commit uses it).
    var executor: (any BlockingExecutor)? { get }
    /// Runs `action` on the loop after `delay`; returns a cancel closure.
    func schedule(after delay: Duration, _ action: @escaping () -> Void) -> () -> Void
    /// Stops and restarts reading (input kept while a command waits reached its bound).
    func pauseReading()
    func resumeReading()
    /// Offers the input kept unconsumed again (a waiting command finished), and reads on.
    func redeliverInput()
    /// Inactivity limit of the connection.
    func setIdleTimeout(_ timeout: Duration?)
}

extension IMAPSessionTransport {
    /// Runs disk work (the storage lane) off the loop and `completion` back on it.
    func runBlocking<Result: Sendable>(_ work: @escaping @Sendable () -> Result, then completion: @escaping (Result) -> Void) {
        runBlocking(on: .storage, work, then: completion)
    }
}

/// Runs work on a worker and its completion back on the loop (an `EventLoop`, or inline in tests).
protocol BlockingExecutor: AnyObject {
    func runBlocking<Result: Sendable>(_ work: @escaping @Sendable () -> Result,
                                       then completion: @escaping (Result) -> Void)
}

extension EventLoop: BlockingExecutor {}

/// What every session of one server shares (immutable or internally synchronised).
final class BackendContext: Sendable {
    let configuration: BackendConfiguration
    let store: MailStore
    let authenticator: Authenticator
    let capabilities: BackendCapabilities
    let logger: Logger
    let metrics: BackendMetrics
    let loopStates: [LoopState]
    let addressCounts: AddressCounter
    /// The group's loops, by index (empty when sessions run without a reactor, in tests).
    let loopHandles: [EventLoopHandle]

    init(configuration: BackendConfiguration, store: MailStore, logger: Logger, metrics: MetricsRegistry,
         loopHandles: [EventLoopHandle], loopCount: Int? = nil)
    {
        self.loopHandles = loopHandles
        self.configuration = configuration
        self.store = store
        authenticator = Authenticator(usersFile: configuration.usersFile, ttl: configuration.authCacheTTL,
                                      baseDelay: configuration.failedLoginDelay,
                                      maxDelay: configuration.maxFailedLoginDelay)
        capabilities = BackendCapabilities(configuration: configuration)
        self.logger = logger
        self.metrics = BackendMetrics(metrics)
        let loops = max(1, loopCount ?? loopHandles.count)
        // The limit is per process; each loop keeps its share (at least one user).
        let lingerPerLoop = configuration.lingerUsers > 0 ? max(1, configuration.lingerUsers / loops) : 0
        loopStates = (0..<loops).map {
            LoopState(index: $0, linger: configuration.linger, lingerLimit: lingerPerLoop,
                      loop: $0 < loopHandles.count ? loopHandles[$0] : nil)
        }
        addressCounts = AddressCounter()
    }

    /// The loop a user's sessions live on (DESIGN.md, Threads and ownership).
    /// Reactor's ``HomeLoop``, which the front end computes too to pick a hop connection already here.
    func homeLoop(of user: String) -> Int { HomeLoop.index(ofUser: user.utf8, loopCount: loopStates.count) }
}

/// Connections per client address, across loops.
final class AddressCounter: Sendable {
    private let counts = Mutex<[String: Int]>([:])

    /// Adds one; false (and nothing added) when `limit` (> 0) is reached.
    func acquire(_ address: String, limit: Int) -> Bool {
        counts.withLock { counts in
            let current = counts[address, default: 0]
            if limit > 0 && current >= limit { return false }
            counts[address] = current + 1
            return true
        }
    }

    func release(_ address: String) {
        counts.withLock { counts in
            let remaining = counts[address, default: 1] - 1
            counts[address] = remaining > 0 ? remaining : nil
        }
    }
}

import Synchronization

/// The open users of one loop. Touched only on that loop's thread: `@unchecked Sendable` because the
/// server keeps the array of them, but each is used by one thread only (DESIGN.md: a user's
/// mailboxes have exactly one owner).
///
/// A user whose last session ended lingers: the Maildir and its recently selected mailboxes stay
/// open for `linger` (at most `lingerLimit` users per loop, the oldest closed first), so the next
/// login (a webmail reconnect, a front end's pooled session, a client's short poll) finds INBOX in
/// memory instead of reading its index back and writing a snapshot at every logout.
final class LoopState: @unchecked Sendable {
    let index: Int
    private var users: [String: UserEntry] = [:]
    private let linger: Duration
    private let lingerLimit: Int
    /// Runs the sweep timer; nil (no lingering) without a reactor, as in session tests.
    private let loop: EventLoopHandle?
    /// Lingering users in the order their last session ended. An entry whose user logged in again
    /// (its `lingerDeadline` no longer matches) is skipped when its turn comes.
    private var lingerQueue: [(entry: UserEntry, deadline: Deadline)] = []
    private var lingerQueueStart = 0
    private(set) var lingeringCount = 0
    private var sweepArmed = false
    private var shuttingDown = false

    init(index: Int, linger: Duration = .zero, lingerLimit: Int = 0, loop: EventLoopHandle? = nil) {
        self.index = index
        self.linger = linger
        self.lingerLimit = lingerLimit
        self.loop = loop
    }

    /// The user's open Maildir on this loop, opened at the first session; nil when the per-user
    /// session limit is reached.
    func acquire(user: String, store: MailStore, limit: Int) throws(StoreError) -> UserEntry? {
        if let entry = users[user] {
            if limit > 0 && entry.sessions >= limit { return nil }
            if entry.lingerDeadline != nil {
                entry.lingerDeadline = nil
                lingeringCount -= 1
            }
            entry.sessions += 1
            return entry
        }
        let maildir = try store.openUser(UserName(user))
        maildir.keepOpenLimit = lingers ? UserEntry.keptMailboxes : 0
        let entry = UserEntry(maildir: maildir, loop: self)
        entry.sessions = 1
        users[user] = entry
        return entry
    }

    /// A session of the user ended; after the last one the user lingers, or is closed (clean index
    /// snapshots) once no commit is in flight.
    func release(_ entry: UserEntry) {
        if entry.sessions > 0 { entry.sessions -= 1 }
        guard entry.sessions == 0, entry.inFlight == 0, users[entry.maildir.name.value] === entry,
              entry.lingerDeadline == nil
        else { return }
        guard lingers, !shuttingDown else { return close(entry) }
        let deadline = Deadline.now().adding(linger)
        entry.lingerDeadline = deadline
        lingeringCount += 1
        lingerQueue.append((entry, deadline))
        if lingeringCount > lingerLimit { sweep(now: nil) }
        armSweep(after: linger)
    }

    private var lingers: Bool { loop != nil && linger > .zero && lingerLimit > 0 }

    /// One timer per loop at a time, set for the oldest lingering user's deadline.
    private func armSweep(after wait: Duration) {
        guard let loop, !sweepArmed else { return }
        sweepArmed = true
        loop.execute { [self] eventLoop in
            _ = eventLoop.schedule(after: wait) { [self] in
                sweepArmed = false
                let now = Deadline.now()
                sweep(now: now)
                guard let next = lingerQueue[lingerQueueStart...].first(where: isLingering) else { return }
                // Ten milliseconds at least: the loop's timers are that coarse anyway.
                let remaining = next.deadline.nanoseconds > now.nanoseconds ? next.deadline.nanoseconds - now.nanoseconds : 0
                armSweep(after: .nanoseconds(Int64(max(remaining, 10_000_000))))
            }
        }
    }

    private func isLingering(_ item: (entry: UserEntry, deadline: Deadline)) -> Bool {
        item.entry.lingerDeadline == item.deadline && users[item.entry.maildir.name.value] === item.entry
    }

    /// Closes lingering users whose time is up (`now`), and the oldest ones beyond the limit; with
    /// `now` nil only those beyond the limit.
    private func sweep(now: Deadline?) {
        while lingerQueueStart < lingerQueue.count {
            let item = lingerQueue[lingerQueueStart]
            if isLingering(item) {
                let expired = now.map { item.deadline <= $0 } ?? false
                guard expired || lingeringCount > lingerLimit else { break }
                closeLingering(item.entry)
            }
            lingerQueueStart += 1
        }
        // Compact once the consumed prefix dominates, so the queue's memory follows the lingering count.
        if lingerQueueStart > 64 && lingerQueueStart * 2 > lingerQueue.count {
            lingerQueue.removeFirst(lingerQueueStart)
            lingerQueueStart = 0
        }
    }

    /// The server is stopping: lingering users close now (clean snapshots), and users whose last
    /// session ends from now on close at once.
    func closeLingering() {
        shuttingDown = true
        for item in lingerQueue[lingerQueueStart...] where isLingering(item) { closeLingering(item.entry) }
        lingerQueue = []
        lingerQueueStart = 0
    }

    private func closeLingering(_ entry: UserEntry) {
        entry.lingerDeadline = nil
        lingeringCount -= 1
        close(entry)
    }

    private func close(_ entry: UserEntry) {
        users.removeValue(forKey: entry.maildir.name.value)
        try? entry.maildir.close()
    }

    var openUserCount: Int { users.count }

    // MARK: - Group commit

    /// Commits waiting for the next round, in the order they were prepared.
    private var queue: [(commit: PendingCommit, done: (StoreError?) -> Void)] = []
    private var roundRunning = false

    /// Queues a commit; one round of fsyncs at a time runs on a worker for this loop, taking every
    /// commit queued meanwhile, so concurrent sessions (of any user on this loop) share fsyncs. Rounds
    /// run one after another, which keeps each mailbox's commits in the order they were prepared.
    ///
    /// A commit of name changes only (STORE, EXPUNGE without fsyncs) runs right here when nothing of
    /// this loop is queued or in flight (so nothing it could overtake): a rename costs less than the
    /// two thread handoffs of a round, and `done` is called before this returns.
    func enqueue(_ commit: PendingCommit, transport: IMAPSessionTransport, done: @escaping (StoreError?) -> Void) {
        if executor == nil { executor = transport.executor }
        if queue.isEmpty, !roundRunning, commit.isNameChangesOnly {
            inlineCommits.wrappingAdd(1, ordering: .relaxed)
            return done(commit.makeDurable())
        }
        queue.append((commit, done))
        if !roundRunning { startRound() }
    }

    /// The loop's executor, taken from the first session that commits (the loop outlives it).
    private var executor: (any BlockingExecutor)?
    /// Commits run on the loop instead of in a round (read by tests from another thread).
    let inlineCommits = Atomic<Int>(0)

    private func startRound() {
        guard let executor else {
            let failed = queue
            queue = []
            for entry in failed { entry.done(.writerClosed) }
            return
        }
        let batch = queue
        queue = []
        roundRunning = true
        let commits = batch.map(\.commit)
        // The round runs the batch directly: rounds of this loop never overlap, so the batcher's
        // queue and lock (and their allocations) would buy nothing here.
        executor.runBlocking({ DurabilityBatcher.run(commits) }) { [self] completions in
            // run returns exactly this round's completions, in queue order.
            for (index, entry) in batch.enumerated() {
                entry.done(index < completions.count ? completions[index].error : .writerClosed)
            }
            roundRunning = false
            if !queue.isEmpty { startRound() }
        }
    }
}

/// One open user on its home loop: the Maildir and how many commits of it are in flight.
final class UserEntry {
    /// How many of a user's most recently opened mailboxes stay open while the user is (and lingers).
    static let keptMailboxes = 2

    let maildir: UserMaildir
    unowned let loop: LoopState
    var sessions = 0
    var inFlight = 0
    /// Set while no session of the user is left and the user lingers open (`LoopState`).
    var lingerDeadline: Deadline?

    /// Opens of this user's mailboxes running on a worker, by folder name, with who waits for each.
    private var opening: [String: [(Result<Mailbox, StoreError>) -> Void]] = [:]

    init(maildir: UserMaildir, loop: LoopState) {
        self.maildir = maildir
        self.loop = loop
    }

    /// The mailbox: at once when a session of the user has it open; otherwise read and reconciled on
    /// a worker (a large index, or a Maildir another program changed, takes long to read) with `done`
    /// called back on this loop. Sessions asking for a mailbox already being opened wait for the same
    /// open. Without an executor (no loop), it opens here.
    func openMailbox(_ name: MailboxName, executor: (any BlockingExecutor)?,
                     beforeLoad: (@Sendable (String) -> Void)?, done: @escaping (Result<Mailbox, StoreError>) -> Void)
    {
        if let open = maildir.openedMailboxIfCurrent(name) { return done(.success(open)) }
        let key = name.folderName
        if opening[key] != nil { return opening[key]!.append(done) }
        guard let executor else {
            do { return done(.success(try maildir.mailbox(name))) } catch { return done(.failure(error)) }
        }
        opening[key] = [done]
        inFlight += 1  // the user stays open until the load is adopted
        let loader = maildir.loader(for: name)
        executor.runBlocking({ () -> Result<LoadedMailbox, StoreError> in
            beforeLoad?(loader.name.wireName)
            do throws(StoreError) { return .success(try loader.load()) } catch { return .failure(error) }
        }) { [self] loaded in
            inFlight -= 1
            let result: Result<Mailbox, StoreError>
            do throws(StoreError) { result = .success(try maildir.adopt(try loaded.get())) } catch { result = .failure(error) }
            for waiter in opening.removeValue(forKey: key) ?? [] { waiter(result) }
            if sessions == 0 && inFlight == 0 { loop.release(self) }
        }
    }

    /// Makes `commit` durable on a worker (group commit with everything else queued on this loop),
    /// then completes it on the mailbox's owner thread and calls `done`. The tagged OK goes out from
    /// `done`.
    func commit(_ commit: PendingCommit, in mailbox: Mailbox, transport: IMAPSessionTransport,
                done: @escaping (StoreError?) -> Void)
    {
        inFlight += 1
        loop.enqueue(commit, transport: transport) { [self] error in
            inFlight -= 1
            mailbox.complete(commit, error: error)
            done(error)
            if sessions == 0 && inFlight == 0 { loop.release(self) }
        }
    }
}

/// The back end's metrics (Prometheus names `apus_imap4be_*`).
struct BackendMetrics: Sendable {
    let sessions: Gauge
    let connections: Counter
    let loginFailures: Counter
    let logins: Counter
    /// Successful logins whose connection moved to the user's home loop, and those already on it
    /// (a front end that picks its hop connection by loop makes the first rare).
    let loginsMoved: Counter
    let loginsOnHomeLoop: Counter
    let bytesOut: Counter
    let bytesIn: Counter
    let registry: MetricsRegistry
    /// Each command's counter and latency histogram, in the order of `commandNames`.
    private let commandCounters: [(Counter, Histogram)]

    /// The commands metrics are kept for; OTHER, last, takes the rest.
    static let commandNames = [
        "CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "AUTHENTICATE", "LOGIN", "ENABLE", "SELECT", "EXAMINE",
        "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE", "LIST", "LSUB", "NAMESPACE", "STATUS", "APPEND",
        "IDLE", "CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE", "ID",
        "UNAUTHENTICATE", "OTHER",
    ]

    init(_ registry: MetricsRegistry) {
        self.registry = registry
        sessions = registry.gauge("apus_imap4be_sessions", help: "Open back-end sessions")
        connections = registry.counter("apus_imap4be_connections_total", help: "Accepted connections")
        loginFailures = registry.counter("apus_imap4be_login_failures_total", help: "Failed logins")
        logins = registry.counter("apus_imap4be_logins_total", help: "Successful logins")
        let loopHelp = "Successful logins: moved to the user's home loop, or already on it"
        loginsMoved = registry.counter("apus_imap4be_login_loop_total", help: loopHelp, labels: [("loop", "moved")])
        loginsOnHomeLoop = registry.counter("apus_imap4be_login_loop_total", help: loopHelp, labels: [("loop", "home")])
        bytesOut = registry.counter("apus_imap4be_bytes_out_total", help: "Response bytes queued")
        bytesIn = registry.counter("apus_imap4be_bytes_in_total", help: "Command bytes read")
        commandCounters = BackendMetrics.commandNames.map { name in
            (registry.counter("apus_imap4be_commands_total", help: "Commands by name", labels: [("command", name)]),
             registry.histogram("apus_imap4be_command_seconds", help: "Command latency", labels: [("command", name)]))
        }
    }

    /// The counter and histogram of a command (its rule's `metricIndex`).
    func command(_ rule: CommandRule) -> (Counter, Histogram) { commandCounters[rule.metricIndex] }
}
