// MailStore: durable commits and group commit.
//
// Every change that a tagged OK acknowledges (APPEND, COPY, MOVE, STORE, EXPUNGE) is prepared on the
// mailbox's owner thread as a `PendingCommit`: a plain list of file operations on descriptors, in
// four ordered phases. A `DurabilityBatcher` then runs the phases of many pending commits together,
// with one fsync per distinct file or directory per phase, on a worker thread:
//
//   phase 0  fsync the new message files in tmp/                    (their data is on disk)
//   phase 1  append UID-list lines, replace the keyword table; fsync the UID lists
//   phase 2  rename tmp/ -> cur/ (append), link (copy), rename for flags; fsync cur/
//   phase 3  unlink (expunge, the source of a move); fsync cur/
//
// The order makes a crash at any point safe: a message file is complete before it has a name in
// cur/; a UID is on disk before its message is (a UID-list line without its file is rolled forward
// from tmp/ or dropped at the next open, so no UID is ever reused); a moved message is in its new
// mailbox before it leaves the old one.
//
// What the fsyncs buy (`[store] fsync`, `FsyncPolicy`): a tagged OK means the change survives a
// process crash (kill -9) without any fsync, because the kernel's page cache outlives the process;
// fsync is about power loss and kernel crashes. Under `always` every phase above fsyncs what it
// changed. Under `optimized` (the default, like Dovecot's `mail_fsync = optimized`) new mail keeps
// every fsync (message files, UID-list lines, the keyword table, the index in-use mark, cur/ after
// a rename or link into it), so the ordering argument above holds for new mail unchanged; but a
// rename for flags (STORE) and an unlink (EXPUNGE, the source of a MOVE) do not fsync their
// directory: after a power loss the last few seconds of them may be lost (flags revert, an
// expunged message comes back), never new mail. A MOVE still fsyncs the destination's cur/ in phase
// 2 before phase 3 unlinks the source, so losing the unlink only leaves a copy behind.
// The rename or unlink that was not fsynced reaches the disk with the next fsync of its directory
// or the file system's own writeback.

import CShims
import Glibc
import Reactor
import Synchronization

/// One file operation of a pending commit. Only descriptors and immutable data: safe on any thread.
enum FileOperation: Sendable {
    /// fsync a staged message file (phase 0).
    case syncFile(FileHandle)
    /// Append bytes to an O_APPEND file (UID-list lines).
    case append(FileHandle, [UInt8])
    /// Replace a small file durably (the keyword table).
    case replace(directory: FileHandle, name: String, bytes: [UInt8])
    case rename(from: FileHandle, String, to: FileHandle, String)
    case link(from: FileHandle, String, to: FileHandle, String)
    case unlink(FileHandle, String)
    /// Mark the mailbox's clean index snapshot (in this directory) as in use, durably.
    case markIndexInUse(FileHandle)

    func run() throws(StoreError) {
        switch self {
        case .syncFile(let file):
            try file.sync()
        case .append(let file, let bytes):
            try file.append(bytes)
        case .replace(let directory, let name, let bytes):
            try Directory.replaceFile(name, in: directory.fd, with: bytes, durable: true)
        case .rename(let fromDirectory, let from, let toDirectory, let to):
            _ = try systemCall("renameat") { renameat(fromDirectory.fd, from, toDirectory.fd, to) }
        case .link(let fromDirectory, let from, let toDirectory, let to):
            _ = try systemCall("linkat") { linkat(fromDirectory.fd, from, toDirectory.fd, to, 0) }
        case .unlink(let directory, let name):
            try Directory.removeFile(name, in: directory.fd)
        case .markIndexInUse(let directory):
            let fd = openat(directory.fd, MessageIndex.fileName, O_WRONLY | O_CLOEXEC | O_NOFOLLOW)
            if fd < 0 {
                if errno == ENOENT { return }
                throw .system(call: "openat", errno: errno)
            }
            let file = FileHandle(fd: fd)
            try file.write([0, 0, 0, 0], at: MessageIndex.cleanFlagOffset)
            _ = try systemCall("fdatasync") { fdatasync(file.fd) }
        }
    }
}

/// Which changes are fsynced before their tagged OK (`[store] fsync`; see the top of this file).
public enum FsyncPolicy: String, CaseIterable, Sendable {
    /// New mail is fsynced; flag renames and unlinks (STORE, EXPUNGE, the source of a MOVE) are
    /// not: they survive a process crash but may be lost on power loss.
    case optimized
    /// Every change is fsynced, flag renames and unlinks included.
    case always
}

/// A change prepared by a `Mailbox` whose file operations have not run yet.
///
/// Threading: `Sendable`. Prepare it on the mailbox's owner thread, make it durable on any thread
/// (`DurabilityBatcher`), then hand the result back to `Mailbox.complete(_:error:)` on the owner
/// thread. Commits of one mailbox must reach the batcher in the order they were prepared, and every
/// prepared commit must be completed (with its error, if any): until then the user's state keeps
/// the mailbox, and so the store and its data-directory lock, alive.
public struct PendingCommit: Sendable {
    static let phaseCount = 4

    /// Identifies the commit to the mailbox that prepared it.
    public let id: UInt64
    /// The UIDs this commit gives new messages in the destination mailbox (APPEND, COPY, MOVE), in
    /// the order of the source messages: the data of APPENDUID and COPYUID (RFC 4315).
    public let assignedUIDs: [UInt32]
    /// The destination's UIDVALIDITY for APPENDUID/COPYUID.
    public let uidValidity: UInt32
    var operations: [[FileOperation]]
    var syncTargets: [[FileHandle]]
    /// Whether flag renames and unlinks fsync their directory.
    let fsyncPolicy: FsyncPolicy

    init(id: UInt64, assignedUIDs: [UInt32] = [], uidValidity: UInt32, fsyncPolicy: FsyncPolicy) {
        self.id = id
        self.assignedUIDs = assignedUIDs
        self.uidValidity = uidValidity
        self.fsyncPolicy = fsyncPolicy
        operations = Array(repeating: [], count: PendingCommit.phaseCount)
        syncTargets = Array(repeating: [], count: PendingCommit.phaseCount)
    }

    mutating func add(_ operation: FileOperation, phase: Int, sync target: FileHandle? = nil) {
        operations[phase].append(operation)
        if let target { addSync(target, phase: phase) }
    }

    /// Adds a rename for flags or an unlink (no new mail): its directory is fsynced only under
    /// `FsyncPolicy.always`.
    mutating func addNameChange(_ operation: FileOperation, phase: Int, directory: FileHandle) {
        add(operation, phase: phase, sync: fsyncPolicy == .always ? directory : nil)
    }

    mutating func addSync(_ target: FileHandle, phase: Int) {
        if !syncTargets[phase].contains(where: { $0 === target }) { syncTargets[phase].append(target) }
    }

    /// True when the commit only renames, links or unlinks names and waits on no fsync (a STORE or
    /// EXPUNGE under `FsyncPolicy.optimized`): a few metadata calls, cheaper to run where the change
    /// was prepared than to hand to another thread.
    public var isNameChangesOnly: Bool {
        guard syncTargets.allSatisfy(\.isEmpty) else { return false }
        return operations.allSatisfy { phase in
            phase.allSatisfy { operation in
                switch operation {
                case .rename, .link, .unlink: true
                case .syncFile, .append, .replace, .markIndexInUse: false
                }
            }
        }
    }

    /// Runs this commit alone (no batching): every phase, then its fsyncs. Any thread.
    public func makeDurable() -> StoreError? {
        DurabilityBatcher.run([self])[0].error
    }
}

/// The outcome of one pending commit.
public struct CommitCompletion: Sendable {
    public let commit: PendingCommit
    /// nil when the commit is durable.
    public let error: StoreError?
}

/// Group commit: pending commits queue up while an fsync round runs, and the next round takes all of
/// them, so 50 concurrent appenders pay for a few fsyncs instead of 50 in a row.
///
/// Threading: `Sendable`. `enqueue` from any thread (in prepare order per mailbox); `runPending` on
/// worker threads. Only one `runPending` works at a time; a second caller returns at once with no
/// completions, because the running one keeps taking rounds until the queue is empty.
public final class DurabilityBatcher: Sendable {
    private struct State {
        var queue: [PendingCommit] = []
        var running = false
    }

    private let state = Mutex(State())

    public init() {}

    /// Queues a commit for the next round.
    public func enqueue(_ commit: PendingCommit) {
        state.withLock { $0.queue.append(commit) }
    }

    /// Runs rounds until the queue is empty and returns every completion, in queue order. Call on a
    /// worker thread after `enqueue`; deliver each completion to its mailbox's owner thread.
    public func runPending() -> [CommitCompletion] {
        let claimed = state.withLock { state in
            if state.running { return false }
            state.running = true
            return true
        }
        guard claimed else { return [] }
        var completions: [CommitCompletion] = []
        while true {
            let batch = state.withLock { state in
                let batch = state.queue
                state.queue.removeAll(keepingCapacity: true)
                if batch.isEmpty { state.running = false }
                return batch
            }
            if batch.isEmpty { return completions }
            completions += DurabilityBatcher.run(batch)
        }
    }

    /// One round: phase by phase, each commit's operations in order, then one fsync per distinct
    /// target. A commit that fails skips its later phases; the others go on. Any thread; the caller
    /// must not run two rounds of one mailbox's commits at once (a loop's rounds run one by one).
    ///
    /// Allocates a fixed handful of arrays per round, not per phase or per target: a STORE is one
    /// round of one commit, and its allocations were counted per command.
    public static func run(_ batch: [PendingCommit]) -> [CommitCompletion] {
        var errors = [StoreError?](repeating: nil, count: batch.count)
        // Reused by every phase: the distinct targets, and which commit waits on which target.
        var targets: [FileHandle] = []
        var owners: [(target: Int, position: Int)] = []
        for phase in 0..<PendingCommit.phaseCount {
            targets.removeAll(keepingCapacity: true)
            owners.removeAll(keepingCapacity: true)
            for (position, commit) in batch.enumerated() where errors[position] == nil {
                do {
                    for operation in commit.operations[phase] { try operation.run() }
                } catch {
                    errors[position] = error
                    continue
                }
                for target in commit.syncTargets[phase] {
                    if let known = targets.firstIndex(where: { $0 === target }) {
                        owners.append((known, position))
                    } else {
                        owners.append((targets.count, position))
                        targets.append(target)
                    }
                }
            }
            ConcurrentSync.run(targets) { failed, error in
                for owner in owners where owner.target == failed { errors[owner.position] = error }
            }
        }
        return batch.indices.map { CommitCompletion(commit: batch[$0], error: errors[$0]) }
    }
}

/// fsyncs many files at once from a few threads. The device queue serves concurrent fsyncs
/// together, and on a journaling file system (ext4 with jbd2, XFS) fsyncs that wait at the same
/// time share one journal commit, so 50 new message files cost about what a few do. (The ext4 of
/// the benchmark machine has no journal; there only the device queue is shared.)
///
/// The helper threads are `SyncHelperThreads`, kept between rounds: a round hands them its job and
/// creates no thread.
final class ConcurrentSync: Sendable {
    /// Below this many targets the fsyncs run on the calling thread.
    static let threshold = 4
    /// The calling thread plus at most this many minus one helpers work on one round.
    static let maximumThreads = 8

    private let targets: [FileHandle]
    private let next = Atomic<Int>(0)
    private let finished = Atomic<Int>(0)
    private let errors: Mutex<[StoreError?]>
    /// Signalled by whichever thread finishes the last target.
    private let done = CountingSemaphore()

    private init(_ targets: [FileHandle]) {
        self.targets = targets
        errors = Mutex([StoreError?](repeating: nil, count: targets.count))
    }

    /// fsyncs every target and reports each failure with the target's index.
    static func run(_ targets: [FileHandle], failed: (Int, StoreError) -> Void) {
        if targets.count < threshold {
            // A few fsyncs (a lone APPEND's per phase, a STORE's under `always`) run here: no job
            // object, no error array.
            for (index, target) in targets.enumerated() {
                do throws(StoreError) { try target.sync() } catch { failed(index, error) }
            }
            return
        }
        let job = ConcurrentSync(targets)
        let helpers = SyncHelperThreads.shared
        helpers.offer(job, to: min(maximumThreads, targets.count) - 1)
        job.work()
        // Helpers still asleep need not wake for a job with nothing left to take.
        helpers.withdraw(job)
        job.done.wait()
        for (index, error) in job.errors.withLock({ $0 }).enumerated() {
            if let error { failed(index, error) }
        }
    }

    /// Takes targets until none is left. Any thread; returns at once when the round is over.
    func work() {
        while true {
            let index = next.add(1, ordering: .relaxed).oldValue
            guard index < targets.count else { return }
            do {
                try targets[index].sync()
            } catch {
                errors.withLock { $0[index] = error }
            }
            if finished.add(1, ordering: .acquiringAndReleasing).newValue == targets.count { done.signal() }
        }
    }
}

/// The threads that help `ConcurrentSync` rounds: started as rounds first need them (at most
/// `ConcurrentSync.maximumThreads - 1` for the process), named `apus-fsync`, asleep on a semaphore
/// between rounds and kept for the life of the process. A thread per round cost a clone, a stack
/// mapping and its unmapping, and a join on every group commit of four or more files.
///
/// Threading: `Sendable`; any thread may offer work. Offers are a queue of jobs, one entry per
/// helper wanted; a helper that wakes takes the first entry, and a job whose round is over is
/// withdrawn so that no sleeping helper keeps its descriptors open.
final class SyncHelperThreads: Sendable {
    static let shared = SyncHelperThreads(limit: ConcurrentSync.maximumThreads - 1)

    private struct State {
        var offers: [ConcurrentSync] = []
        var threadCount = 0
    }

    private let limit: Int
    private let state = Mutex(State())
    /// Counts offers (and, after a withdrawal, some stale ones: a helper that finds none sleeps again).
    private let wakeups = CountingSemaphore()

    private init(limit: Int) { self.limit = limit }

    /// Helper threads started so far.
    var threadCount: Int { state.withLock { $0.threadCount } }

    /// Asks `count` helpers to work on `job`, starting threads up to `count` (within the limit).
    func offer(_ job: ConcurrentSync, to count: Int) {
        let wanted = min(count, limit)
        guard wanted > 0 else { return }
        let toStart = state.withLock { state in
            for _ in 0..<wanted { state.offers.append(job) }
            let missing = max(0, wanted - state.threadCount)
            state.threadCount += missing
            return missing
        }
        for _ in 0..<toStart where !startThread() {
            // Out of threads: the offers are still served, by fewer helpers or by the caller.
            state.withLock { $0.threadCount -= 1 }
        }
        for _ in 0..<wanted { wakeups.signal() }
    }

    /// Removes the offers of `job` no helper has taken.
    func withdraw(_ job: ConcurrentSync) {
        state.withLock { state in state.offers.removeAll { $0 === job } }
    }

    private func startThread() -> Bool {
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        let created = pthread_create(&thread, nil, { context in
            let helpers = Unmanaged<SyncHelperThreads>.fromOpaque(context!).takeRetainedValue()
            cshim_set_thread_name("apus-fsync")
            helpers.serve()
        }, context)
        guard created == 0 else {
            Unmanaged<SyncHelperThreads>.fromOpaque(context).release()
            return false
        }
        // Never joined: a helper lives as long as the process.
        pthread_detach(thread)
        return true
    }

    private func serve() -> Never {
        while true {
            wakeups.wait()
            let job: ConcurrentSync? = state.withLock { state in
                state.offers.isEmpty ? nil : state.offers.removeFirst()
            }
            job?.work()
        }
    }
}
