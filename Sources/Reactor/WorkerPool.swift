//===----------------------------------------------------------------------===//
// Apus Reactor: threads for blocking work, in lanes that never wait on each other.
//===----------------------------------------------------------------------===//

import Glibc
import Synchronization

/// Which of the pool's threads a blocking job runs on. Each lane has its own queue and its own
/// threads, so a job in one lane never waits behind the other lane's queue.
public enum WorkLane: Int, Sendable, CaseIterable {
    /// Work that waits on disks (fsync, file reads and writes, mailbox loads). Under load its queue
    /// grows long and each job may block for milliseconds.
    case storage
    /// Short CPU-bound work a user waits on at once (password hashing at login). On its own threads
    /// because a login stuck behind a queue of fsyncs took seconds at 500 clients.
    case compute
}

/// Threads for work that blocks (fsync, password hashing, cold file reads), so event loops
/// never do, in one lane per ``WorkLane``. Results go back to a loop with
/// ``EventLoop/runBlocking(on:_:then:)``.
public final class WorkerPool: Sendable {
    private let lanes: [WorkerLane]

    /// Starts `threadCount` storage workers and `computeThreadCount` compute workers.
    public init(threadCount: Int, computeThreadCount: Int = 1, name: String = "apus-worker") {
        lanes = WorkLane.allCases.map { lane in
            switch lane {
            case .storage: WorkerLane(threadCount: threadCount, name: name)
            case .compute: WorkerLane(threadCount: computeThreadCount, name: name + "-cpu")
            }
        }
    }

    /// Queues `job` for the next free storage worker. Ignored once the pool is shutting down.
    public func submit(_ job: @escaping @Sendable () -> Void) { submit(on: .storage, job) }

    /// Queues `job` for the next free worker of `lane`. Ignored once the pool is shutting down.
    public func submit(on lane: WorkLane, _ job: @escaping @Sendable () -> Void) {
        lanes[lane.rawValue].submit(job)
    }

    /// Lets queued jobs finish, then stops and joins the workers.
    public func shutdown() {
        for lane in lanes { lane.shutdown() }
    }
}

/// One lane's queue and the threads that serve only it.
private final class WorkerLane: Sendable {
    private struct Queue {
        var jobs: [@Sendable () -> Void] = []
        var head = 0
        var stopping = false
    }

    private let queue = Mutex(Queue())
    /// Counts queued jobs; workers sleep on it.
    private let semaphore = CountingSemaphore()
    private let threads: Mutex<[JoinableThread]> = Mutex([])

    init(threadCount: Int, name: String) {
        var started: [JoinableThread] = []
        for index in 0..<max(1, threadCount) {
            started.append(JoinableThread(name: "\(name)-\(index)") { [self] in self.work() })
        }
        threads.withLock { $0 = started }
    }

    func submit(_ job: @escaping @Sendable () -> Void) {
        let accepted = queue.withLock { queue in
            guard !queue.stopping else { return false }
            queue.jobs.append(job)
            return true
        }
        if accepted { semaphore.signal() }
    }

    private func work() {
        while true {
            semaphore.wait()
            let job: (@Sendable () -> Void)? = queue.withLock { queue in
                guard queue.head < queue.jobs.count else { return nil }
                let job = queue.jobs[queue.head]
                queue.head += 1
                if queue.head > 64, queue.head * 2 > queue.jobs.count {
                    queue.jobs.removeFirst(queue.head)
                    queue.head = 0
                }
                return job
            }
            guard let job else { return } // a stop token
            job()
        }
    }

    func shutdown() {
        let workers = threads.withLock { threads in
            let all = threads
            threads = []
            return all
        }
        queue.withLock { $0.stopping = true }
        for _ in workers { semaphore.signal() }
        for worker in workers { worker.join() }
    }
}

/// A POSIX counting semaphore (the worker pool's and the store's fsync helpers sleep on one).
/// Sendable because sem_t exists to be shared between threads; the pointer itself never changes.
public final class CountingSemaphore: @unchecked Sendable {
    private let pointer: UnsafeMutablePointer<sem_t>

    /// Starts at zero: the first `wait` blocks until a `signal`.
    public init() {
        pointer = .allocate(capacity: 1)
        sem_init(pointer, 0, 0)
    }

    deinit {
        sem_destroy(pointer)
        pointer.deallocate()
    }

    /// Adds one; wakes one waiter if any.
    public func signal() { sem_post(pointer) }

    /// Takes one, sleeping until there is one.
    public func wait() {
        while sem_wait(pointer) != 0 {} // EINTR
    }
}
