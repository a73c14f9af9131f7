//===----------------------------------------------------------------------===//
// Apus LoadGen: counters and histograms, per event loop, gathered once a second.
//===----------------------------------------------------------------------===//

import Synchronization

/// How one kind of command fared: completions by status and latency.
public struct LoadCommandTotals: Sendable, Equatable {
    /// Tagged OK (or a connect that reached the greeting).
    public var ok = 0
    /// Tagged NO (or a failed connect for `connect`).
    public var no = 0
    /// Tagged NO [EXPUNGEISSUED] (RFC 5530): the command named a message another session had
    /// expunged. An expected race on a shared mailbox, counted apart from refusals (as imaptest
    /// does too).
    public var expungeIssued = 0
    public var bad = 0
    /// From sending the command to its tagged answer.
    public var latency = LatencyHistogram()

    /// Completions of every status.
    public var count: Int { ok + no + expungeIssued + bad }

    public init() {}

    mutating func merge(_ other: LoadCommandTotals) {
        ok += other.ok
        no += other.no
        expungeIssued += other.expungeIssued
        bad += other.bad
        latency.merge(other.latency)
    }
}

/// One second of one loop (or of the whole run once merged).
public struct LoadInterval: Sendable {
    /// Seconds since the run started (1 for the first second).
    public var second: Int
    /// Completed commands by ``LoadCommandKind`` raw value.
    public var completed: [Int]
    public var errors = 0
    public var violations = 0
    /// Sessions connected at the end of the second.
    public var connected = 0
    public var bytesReceived = 0
    public var bytesSent = 0
    /// Latency of every command completed in the second.
    public var latency = LatencyHistogram()
    /// Memory of the watched process tree (kB), when sampled.
    public var watchedMemoryKB: Int?

    init(second: Int) {
        self.second = second
        completed = [Int](repeating: 0, count: LoadCommandKind.allCases.count)
    }

    /// Completed commands (connects included) in the second.
    public var totalCompleted: Int { completed.reduce(0, +) }

    mutating func merge(_ other: LoadInterval) {
        for index in completed.indices { completed[index] += other.completed[index] }
        errors += other.errors
        violations += other.violations
        connected += other.connected
        bytesReceived += other.bytesReceived
        bytesSent += other.bytesSent
        latency.merge(other.latency)
    }
}

/// What went wrong that is not a server's NO or BAD.
public enum LoadFailureKind: Int, CaseIterable, Sendable {
    /// connect(2), the TLS handshake or STARTTLS failed.
    case connectFailed
    /// LOGIN answered NO or BAD: the session cannot go on.
    case loginFailed
    /// The server closed a session we had not logged out of.
    case unexpectedClose
    /// A response the parser rejected (counted also as a violation).
    case unparseableResponse
    /// Commands still awaiting their answer when the run stopped (normal: not a server error).
    case unanswered

    public var name: String {
        switch self {
        case .connectFailed: "connect-failed"
        case .loginFailed: "login-failed"
        case .unexpectedClose: "unexpected-close"
        case .unparseableResponse: "unparseable-response"
        case .unanswered: "in-flight-at-stop"
        }
    }
}

/// Everything one loop counted over the whole run.
public struct LoadTotals: Sendable {
    /// By ``LoadCommandKind`` raw value.
    public var commands: [LoadCommandTotals]
    /// By ``LoadFailureKind`` raw value.
    public var failures: [Int]
    /// By ``LoadViolationKind`` raw value.
    public var violations: [Int]
    public var sessionsStarted = 0
    public var bytesReceived = 0
    public var bytesSent = 0
    /// Bytes received by sessions while they sat in IDLE (keepalive and notifications).
    public var idleBytesReceived = 0
    /// Session-seconds spent in IDLE.
    public var idleSeconds = 0.0

    public init() {
        commands = [LoadCommandTotals](repeating: LoadCommandTotals(), count: LoadCommandKind.allCases.count)
        failures = [Int](repeating: 0, count: LoadFailureKind.allCases.count)
        violations = [Int](repeating: 0, count: LoadViolationKind.allCases.count)
    }

    mutating func merge(_ other: LoadTotals) {
        for index in commands.indices { commands[index].merge(other.commands[index]) }
        for index in failures.indices { failures[index] += other.failures[index] }
        for index in violations.indices { violations[index] += other.violations[index] }
        sessionsStarted += other.sessionsStarted
        bytesReceived += other.bytesReceived
        bytesSent += other.bytesSent
        idleBytesReceived += other.idleBytesReceived
        idleSeconds += other.idleSeconds
    }

    public var totalViolations: Int { violations.reduce(0, +) }
    /// Completed commands of every kind but `connect`.
    public var totalCommands: Int {
        commands.indices.filter { $0 != LoadCommandKind.connect.rawValue }.reduce(0) { $0 + commands[$1].count }
    }

    /// The "all commands" row of the reports: every kind but `connect` (a connection, not a command)
    /// counted, and the latency of those whose latency is the server's (not IDLE's hold).
    public var allCommands: LoadCommandTotals {
        var all = LoadCommandTotals()
        for kind in LoadCommandKind.allCases where kind != .connect {
            let command = commands[kind.rawValue]
            all.ok += command.ok
            all.no += command.no
            all.expungeIssued += command.expungeIssued
            all.bad += command.bad
            if kind.latencyIsTheServers { all.latency.merge(command.latency) }
        }
        return all
    }
}

/// The counters one loop updates on its own thread: no locks, no atomics on the hot path.
final class LoopStatistics {
    var totals = LoadTotals()
    var interval: LoadInterval
    var connected = 0

    init() { interval = LoadInterval(second: 1) }

    @inline(__always)
    func completed(_ kind: LoadCommandKind, status: IMAPStatusKind, nanoseconds: UInt64) {
        switch status {
        case .ok: totals.commands[kind.rawValue].ok += 1
        case .no: totals.commands[kind.rawValue].no += 1
        case .expungeIssued: totals.commands[kind.rawValue].expungeIssued += 1
        case .bad: totals.commands[kind.rawValue].bad += 1
        }
        totals.commands[kind.rawValue].latency.record(nanoseconds)
        interval.completed[kind.rawValue] += 1
        if kind.latencyIsTheServers { interval.latency.record(nanoseconds) }
        if status == .no || status == .bad { interval.errors += 1 }
    }

    func failed(_ kind: LoadFailureKind) {
        totals.failures[kind.rawValue] += 1
        interval.errors += 1
    }

    func violated(_ kind: LoadViolationKind) {
        totals.violations[kind.rawValue] += 1
        interval.violations += 1
    }

    func received(_ count: Int) {
        totals.bytesReceived += count
        interval.bytesReceived += count
    }

    func sent(_ count: Int) {
        totals.bytesSent += count
        interval.bytesSent += count
    }

    /// Hands the finished second over and starts the next, keeping the histogram's storage.
    func takeInterval() -> LoadInterval {
        interval.connected = connected
        var next = LoadInterval(second: interval.second + 1)
        swap(&next.latency, &interval.latency)
        next.latency.reset()
        let finished = interval
        interval = next
        return finished
    }
}

/// How a completed command was answered (its tagged status). `expungeIssued` is a NO with that
/// code: a race with another session's expunge, not a refusal.
enum IMAPStatusKind { case ok, no, expungeIssued, bad }

/// Where loops hand their seconds, violations and totals, and the run's stop switch: the one
/// object every thread touches.
final class LoadCollector: Sendable {
    private struct State {
        var intervals: [Int: (reports: Int, merged: LoadInterval)] = [:]
        var violationMessages: [String] = []
        var failureMessages: [String] = []
        var totals = LoadTotals()
        var finishedLoops = 0
    }

    let loopCount: Int
    let violationsKept: Int
    private let state = Mutex(State())
    /// Set by Ctrl-C, the end of the run or the command limit: loops stop starting commands.
    let stopRequested = Atomic<Bool>(false)
    /// Commands started so far, when a command limit applies.
    let commandsStarted = Atomic<Int>(0)

    init(loopCount: Int, violationsKept: Int) {
        self.loopCount = loopCount
        self.violationsKept = violationsKept
    }

    var isStopping: Bool { stopRequested.load(ordering: .relaxed) }
    func requestStop() { stopRequested.store(true, ordering: .relaxed) }

    func report(_ interval: LoadInterval) {
        state.withLock { state in
            if var entry = state.intervals[interval.second] {
                entry.reports += 1
                entry.merged.merge(interval)
                state.intervals[interval.second] = entry
            } else {
                state.intervals[interval.second] = (1, interval)
            }
        }
    }

    /// Keeps the first violation messages (all are counted by the loops).
    func violation(_ message: @autoclosure () -> String) {
        state.withLock { state in
            if state.violationMessages.count < violationsKept { state.violationMessages.append(message()) }
        }
    }

    /// Keeps the first failure messages (connect, login, unexpected close).
    func failure(_ message: String) {
        state.withLock { state in
            if state.failureMessages.count < violationsKept { state.failureMessages.append(message) }
        }
    }

    func finish(_ totals: LoadTotals) {
        state.withLock { state in
            state.totals.merge(totals)
            state.finishedLoops += 1
        }
    }

    var allFinished: Bool { state.withLock { $0.finishedLoops >= loopCount } }

    /// Seconds every loop has reported, in order, removed from the collector.
    func takeCompleteIntervals(includingPartial: Bool) -> [LoadInterval] {
        state.withLock { state in
            let ready = state.intervals.filter { includingPartial || $0.value.reports >= loopCount }
            for key in ready.keys { state.intervals.removeValue(forKey: key) }
            return ready.sorted { $0.key < $1.key }.map(\.value.merged)
        }
    }

    var results: (totals: LoadTotals, violations: [String], failures: [String]) {
        state.withLock { ($0.totals, $0.violationMessages, $0.failureMessages) }
    }
}
