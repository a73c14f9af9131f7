//===----------------------------------------------------------------------===//
// Apus Reactor: the timers of one event loop, on a binary min-heap.
//===----------------------------------------------------------------------===//

/// A handle to a scheduled timer; cancel it to stop it firing. Only the loop that made it may
/// cancel it.
public final class Timer {
    var action: (() -> Void)?
    init(action: @escaping () -> Void) { self.action = action }

    /// Stops the timer from firing; harmless after it fired or was cancelled.
    public func cancel() { action = nil }

    /// False once the timer fired or was cancelled.
    public var isPending: Bool { action != nil }
}

/// The timers of one loop, ordered by deadline (ties in scheduling order).
///
/// Cancellation is lazy: a cancelled timer stays in the heap until its deadline comes up, and
/// connection timers are re-checked against their connection when they fire, so nothing needs
/// to be found and removed from the middle of the heap.
struct TimerHeap {
    enum Kind {
        case timer(Timer)
        /// A connection's own deadlines (idle, handshake, closing): slot and generation.
        case connection(slot: UInt32, generation: UInt32)
    }

    struct Entry {
        var deadline: Deadline
        var sequence: UInt64
        var kind: Kind

        func fires(before other: Entry) -> Bool {
            deadline != other.deadline ? deadline < other.deadline : sequence < other.sequence
        }
    }

    private var entries: ContiguousArray<Entry> = []
    private var nextSequence: UInt64 = 0

    var count: Int { entries.count }
    var nextDeadline: Deadline? { entries.first?.deadline }

    mutating func insert(_ deadline: Deadline, _ kind: Kind) {
        entries.append(Entry(deadline: deadline, sequence: nextSequence, kind: kind))
        nextSequence &+= 1
        var child = entries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard entries[child].fires(before: entries[parent]) else { break }
            entries.swapAt(child, parent)
            child = parent
        }
    }

    /// Removes and returns the earliest entry if its deadline is at or before `now`.
    mutating func popDue(now: Deadline) -> Kind? {
        guard let first = entries.first, first.deadline <= now else { return nil }
        let last = entries.removeLast()
        if !entries.isEmpty {
            entries[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var smallest = parent
                if left < entries.count, entries[left].fires(before: entries[smallest]) { smallest = left }
                if right < entries.count, entries[right].fires(before: entries[smallest]) { smallest = right }
                if smallest == parent { break }
                entries.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return first.kind
    }
}
