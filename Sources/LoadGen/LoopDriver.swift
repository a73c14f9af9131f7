//===----------------------------------------------------------------------===//
// Apus LoadGen: the sessions of one event loop, their start times, and the per-second reports.
//===----------------------------------------------------------------------===//

import Reactor
import Synchronization

/// What every loop shares for a run: immutable, so it crosses threads freely.
struct LoadPlan: Sendable {
    let configuration: LoadConfiguration
    let collector: LoadCollector
    let messages: LoadMessages
    /// The client context for TLS and STARTTLS.
    let tlsContext: TLSContext?
    let serverName: String?
    let loopCount: Int
    /// When the run started (monotonic nanoseconds); seconds are counted from here.
    let start: UInt64
    /// When sessions must stop (nil: only the command limit or Ctrl-C ends the run).
    let end: UInt64?

    /// Stress sessions prefill their mailbox only when the mix uses messages.
    var mixNeedsMessages: Bool {
        [LoadCommandKind.fetchFlags, .fetchHeaders, .fetchBody, .store, .copy, .move, .expunge]
            .contains { configuration.mix.weight(of: $0) > 0 }
    }

    /// Stress sessions CREATE the COPY/MOVE target first when the mix copies or moves.
    var needsTargetMailbox: Bool {
        configuration.mix.weight(of: .copy) > 0 || configuration.mix.weight(of: .move) > 0
    }
}

/// Drives the sessions of one loop: starts them (ramp-up, churn rate), replaces the ones that
/// end, reports each second to the collector, and stops them all when the run ends.
final class LoopDriver {
    let loop: EventLoop
    let plan: LoadPlan
    let index: Int
    let statistics = LoopStatistics()
    /// UIDVALIDITY each user's mailbox had, as told to any session of this loop.
    var uidValidity: [String: UInt32] = [:]
    /// Immutable message facts each user's mailbox showed to any session of this loop.
    private var messageFactsByUser: [String: MessageFacts] = [:]
    private var sessions: [ObjectIdentifier: LoadSession] = [:]
    private var stopped = false
    private var nextSecond = 1
    private var sessionsStarted = 0
    private var churnNumber = 0
    private var failuresReported = 0

    var configuration: LoadConfiguration { plan.configuration }
    var collector: LoadCollector { plan.collector }

    init(loop: EventLoop, plan: LoadPlan) {
        self.loop = loop
        self.plan = plan
        index = loop.index
    }

    /// The client slots this loop owns: every loopCount-th, starting at its index.
    private var slots: StrideTo<Int> { stride(from: index, to: configuration.clients, by: plan.loopCount) }

    func start() {
        let now = LoadSession.now()
        if configuration.mode == .churn && configuration.rate > 0 {
            scheduleChurn(at: max(now, plan.start))
        } else if configuration.mode == .churn {
            // As fast as the server goes: this loop's share of `--clients`, each replaced when it ends.
            for _ in slots { startChurnSession() }
        } else {
            let rampUp = configuration.rampUp.nanoseconds
            for slot in slots {
                let offset = configuration.clients > 1 ? rampUp * UInt64(slot) / UInt64(configuration.clients) : 0
                let due = plan.start &+ offset
                if due <= now {
                    startSession(slot: slot)
                } else {
                    loop.schedule(after: .nanoseconds(Int64(due - now))) { [self] in
                        if !stopped { startSession(slot: slot) }
                    }
                }
            }
        }
        tick()
    }

    /// Every 50 ms: the end of the run, Ctrl-C, and the per-second report.
    private func tick() {
        guard !stopped else { return }
        let now = LoadSession.now()
        while now >= plan.start &+ UInt64(nextSecond) * 1_000_000_000 {
            collector.report(statistics.takeInterval())
            nextSecond += 1
        }
        if collector.isStopping || (plan.end.map { now >= $0 } ?? false) {
            stop()
            return
        }
        loop.schedule(after: .milliseconds(50)) { [self] in tick() }
    }

    private func startSession(slot: Int) {
        guard !stopped else { return }
        let checksFlags = configuration.mode == .stress && configuration.clients <= configuration.userCount
        let seed = configuration.seed &+ UInt64(slot) &* 0x9E37_79B9_7F4A_7C15
            &+ UInt64(sessionsStarted) &* 0xD1B5_4A32_D192_ED03
        let session = LoadSession(driver: self, slot: slot, seed: seed, checksFlags: checksFlags)
        sessions[ObjectIdentifier(session)] = session
        // Connections are numbered across loops (this loop's k-th is k * loopCount + index), so the
        // source addresses are used in turn by the whole run, not per loop.
        let connectionNumber = sessionsStarted * plan.loopCount + index
        sessionsStarted += 1
        statistics.totals.sessionsStarted += 1
        let addresses = configuration.sourceAddresses
        session.start(sourceAddress: addresses.isEmpty ? nil : addresses[connectionNumber % addresses.count])
    }

    /// Churn: this loop's share of the session rate, never more than its share of `--clients` at once.
    private func scheduleChurn(at due: UInt64) {
        guard !stopped else { return }
        let rate = configuration.rate / Double(plan.loopCount)
        let interval = UInt64(1e9 / max(rate, 0.001))
        let limit = max(1, configuration.clients / plan.loopCount)
        let now = LoadSession.now()
        var next = due
        if due <= now {
            if sessions.count < limit { startChurnSession() }
            next = due &+ interval
            if next < now { next = now }
        }
        loop.schedule(after: .nanoseconds(Int64(next - now))) { [self] in scheduleChurn(at: next) }
    }

    /// A churn session: each takes the next slot of this loop, so successive sessions log in as
    /// different users in turn.
    private func startChurnSession() {
        startSession(slot: index + plan.loopCount * churnNumber)
        churnNumber += 1
    }

    /// A session ended (logged out, failed or dropped): stress, idle and append sessions are
    /// replaced, and so are churn sessions when churn has no rate (as fast as the server goes).
    /// The facts shared by `user`'s sessions on this loop.
    func messageFacts(for user: String) -> MessageFacts {
        if let facts = messageFactsByUser[user] { return facts }
        let facts = MessageFacts()
        messageFactsByUser[user] = facts
        return facts
    }

    func sessionEnded(_ session: LoadSession) {
        sessions.removeValue(forKey: ObjectIdentifier(session))
        guard !stopped, !collector.isStopping else { return }
        let churning = configuration.mode == .churn
        if churning && configuration.rate > 0 { return }
        let replace = { [self] in churning ? startChurnSession() : startSession(slot: session.slot) }
        // A server refusing connections must not be hammered in a tight loop.
        if statistics.totals.failures[LoadFailureKind.connectFailed.rawValue]
            + statistics.totals.failures[LoadFailureKind.loginFailed.rawValue] > 0 {
            loop.schedule(after: .milliseconds(100)) { [self] in if !stopped { replace() } }
        } else {
            replace()
        }
    }

    /// Whether another command may start under `--commands`.
    @inline(__always)
    func mayStartCommand() -> Bool {
        guard let limit = configuration.commandLimit else { return true }
        let started = collector.commandsStarted.wrappingAdd(1, ordering: .relaxed).newValue
        if started > limit {
            collector.requestStop()
            return false
        }
        return true
    }

    /// A failure worth a line: the first few are printed, all are counted.
    func report(_ kind: LoadFailureKind, _ message: @autoclosure () -> String) {
        guard failuresReported < 5 else { return }
        failuresReported += 1
        collector.failure("\(kind.name): \(message())")
    }

    private func stop() {
        guard !stopped else { return }
        stopped = true
        for session in Array(sessions.values) { session.stop() }
        collector.report(statistics.takeInterval())
        collector.finish(statistics.totals)
    }
}
