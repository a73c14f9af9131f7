// IMAPFrontend: ClientAddressLimits, connections per client address and the slowing of failed logins.

import Reactor
import Synchronization

/// Limits shared by every loop, keyed by client address: how many connections each address has
/// open, and how many logins it has failed lately (each failure doubles the delay of the next
/// failed answer, so password guessing slows down while a mistyped password costs little).
final class ClientAddressLimits: Sendable {
    private struct Entry {
        var connections = 0
        var failures = 0
        var lastFailure = Deadline(nanoseconds: 0)
    }

    private let entries = Mutex<[String: Entry]>([:])
    let maximumConnections: Int
    let baseDelay: Duration
    let maximumDelay: Duration
    /// Failures older than this are forgotten.
    let failureMemory: Duration = .seconds(300)

    init(maximumConnections: Int, baseDelay: Duration, maximumDelay: Duration) {
        self.maximumConnections = maximumConnections
        self.baseDelay = baseDelay
        self.maximumDelay = maximumDelay
    }

    /// Counts a new connection from `address`; false (and nothing counted) when it is over the limit.
    func admit(_ address: String) -> Bool {
        entries.withLock { entries in
            var entry = entries[address] ?? Entry()
            if maximumConnections > 0 && entry.connections >= maximumConnections { return false }
            entry.connections += 1
            entries[address] = entry
            return true
        }
    }

    /// Forgets a connection counted by `admit`.
    func release(_ address: String) {
        entries.withLock { entries in
            guard var entry = entries[address] else { return }
            entry.connections -= 1
            if entry.connections <= 0 && entry.failures == 0 {
                entries[address] = nil
            } else {
                entries[address] = entry
            }
        }
    }

    /// Records a failed login and returns how long to wait before answering it.
    func recordFailure(_ address: String, now: Deadline) -> Duration {
        entries.withLock { entries in
            var entry = entries[address] ?? Entry()
            if entry.failures > 0 && now > entry.lastFailure.adding(failureMemory) { entry.failures = 0 }
            entry.failures += 1
            entry.lastFailure = now
            entries[address] = entry
            var delay = baseDelay
            for _ in 1..<min(entry.failures, 32) {
                delay *= 2
                if delay >= maximumDelay { return maximumDelay }
            }
            return min(delay, maximumDelay)
        }
    }

    /// A successful login clears the address's failures.
    func recordSuccess(_ address: String) {
        entries.withLock { entries in
            guard var entry = entries[address] else { return }
            entry.failures = 0
            entries[address] = entry.connections > 0 ? entry : nil
        }
    }
}
