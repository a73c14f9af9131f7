// MailStore: one open mailbox: its index in memory, its directories, and its observers.
//
// Files of a mailbox directory (the Maildir root for INBOX, `.Name` for a folder):
//
//     cur/ new/ tmp/        the messages (the truth)
//     apus-uidlist          UIDVALIDITY, UIDNEXT, uid -> file (see UIDList)
//     apus-index            the index snapshot (see MessageIndex)
//     apus-cache            analyzer blobs, appended (see MessageCache)
//     dovecot-keywords      the keyword table (see KeywordTable)

import Glibc

/// What a session may ask about one message, from the index alone.
public struct MessageInfo: Equatable, Sendable {
    public var uid: UInt32
    public var flags: SystemFlags
    public var keywords: KeywordSet
    /// The message's MODSEQ (RFC 7162).
    public var modseq: UInt64
    /// RFC822.SIZE.
    public var size: Int64
    /// INTERNALDATE, seconds since the epoch.
    public var internalDate: Int64
    /// SAVEDATE (RFC 8514), seconds since the epoch.
    public var saveDate: Int64

    init(_ record: MessageRecord) {
        uid = record.uid
        flags = record.flags
        keywords = record.keywords
        modseq = record.modseq
        size = record.size
        internalDate = record.internalDate
        saveDate = record.saveDate
    }
}

/// A change other sessions hear about (RFC 3501 section 7.3.1 EXISTS, 7.4.1 EXPUNGE, RFC 7162 FETCH
/// FLAGS and VANISHED). Delivered after the change is durable.
public enum MailboxEvent: Equatable, Sendable {
    /// New messages with these UIDs (ascending): a session reports EXISTS.
    case appended([UInt32])
    /// These UIDs are gone: EXPUNGE or VANISHED.
    case expunged([UInt32])
    /// Flags or keywords of these UIDs changed: unsolicited FETCH FLAGS (with MODSEQ).
    case flagsChanged([UInt32])
}

/// Someone (a session) who wants to hear of changes to a mailbox.
///
/// Threading: called synchronously on the mailbox's owner thread from `complete(_:error:)` or from
/// the operation that found new mail.
public protocol MailboxObserver: AnyObject {
    func mailbox(_ mailbox: Mailbox, didChange event: MailboxEvent)
}

/// How STORE changes flags (RFC 3501 section 6.4.6: FLAGS, +FLAGS, -FLAGS).
public enum FlagChange: Sendable {
    case replace
    case add
    case remove
}

/// The outcome of `Mailbox.prepareStore`.
public struct StoreFlagsResult: Sendable {
    /// The file renames to make durable, nil when no flag changed.
    public var commit: PendingCommit?
    /// UIDs whose flags changed (their new MODSEQ is in the index).
    public var changed: [UInt32]
    /// UIDs not changed because their MODSEQ is above UNCHANGEDSINCE: the MODIFIED response code of
    /// RFC 7162 section 3.1.3.
    public var modified: [UInt32]
}

/// The outcome of `Mailbox.prepareCopy` and `prepareMove`.
public struct CopyResult: Sendable {
    public var commit: PendingCommit
    /// The source UIDs that were copied, ascending; `commit.assignedUIDs` holds the new UIDs in the
    /// same order (COPYUID, RFC 4315).
    public var sourceUIDs: [UInt32]
}

/// An APPEND of one staged message: what MULTIAPPEND gives per message.
public struct AppendRequest: Sendable {
    public var message: StagedMessage
    public var flags: SystemFlags
    public var keywords: [String]

    public init(message: StagedMessage, flags: SystemFlags = [], keywords: [String] = []) {
        self.message = message
        self.flags = flags
        self.keywords = keywords
    }
}

/// STATUS data (RFC 3501 section 6.3.10, RFC 9051 section 6.3.11, RFC 7162 HIGHESTMODSEQ).
public struct MailboxStatus: Equatable, Sendable {
    public var messages: Int
    public var uidNext: UInt32
    public var uidValidity: UInt32
    public var unseen: Int
    public var deleted: Int
    /// Sum of RFC822.SIZE (RFC 8438 STATUS SIZE).
    public var size: Int64
    public var highestModseq: UInt64
    public var recent: Int
}

/// An open mailbox.
///
/// Threading: not `Sendable`. It belongs to its user's event-loop thread (all sessions of a user run
/// there), so its state needs no lock and observers are plain calls. Methods documented as reading
/// the disk (`resynchronize`, `checkForNewMessages`, `close`) may be called on a worker while the
/// owner thread hands the object over and does not touch it. `prepare*` methods do only small
/// metadata writes (the cache file) and never fsync; the returned `PendingCommit` is made durable
/// elsewhere, then passed back to `complete(_:error:)` on the owner thread.
public final class Mailbox {
    /// The mailbox's name.
    public let name: MailboxName
    let configuration: StoreConfiguration
    let nameGenerator: MaildirNameGenerator
    let user: UserMaildir
    let directory: FileHandle
    let cur: FileHandle
    let new: FileHandle
    let tmp: FileHandle
    var uidListFile: FileHandle
    var cache: MessageCache
    var index: MessageIndex
    var keywordTable: KeywordTable
    /// Counts keywords added to the table (``resolveKeywords(_:)``; a rolled-back addition restores
    /// it), so a session can tell with one comparison, without building the list, that it must
    /// announce FLAGS again.
    public internal(set) var keywordsVersion = 0
    private var observers: [WeakObserver] = []
    var isClosed = false
    /// True while the index file on disk is a clean snapshot of what is in memory and on disk.
    var diskSnapshotIsClean = false
    /// True when memory holds something the index file lacks (flags, \Recent, cache offsets).
    var indexChanged = false
    /// new/'s modification time when a scan last found it empty (see `checkForNewMessages`).
    var newScannedEmptyAt: Int64?
    /// How old a directory's modification time must be before an unchanged time proves it unchanged:
    /// file systems stamp times from a coarse clock, so two changes within one tick look like one.
    static let directoryTimeTrustDelay: Int64 = 2_000_000_000

    deinit {
        if !isClosed { try? close() }
    }

    private struct WeakObserver {
        weak var observer: (any MailboxObserver)?
    }

    // MARK: - Reading the index

    /// UIDVALIDITY (RFC 3501 section 2.3.1.1).
    public var uidValidity: UInt32 { index.uidValidity }
    /// UIDNEXT: the UID the next message will get at the least.
    public var uidNext: UInt32 { index.uidNext }
    /// HIGHESTMODSEQ (RFC 7162 section 3.1.1).
    public var highestModseq: UInt64 { index.highestModseq }
    /// The number of messages.
    public var count: Int { index.records.count }
    /// The keywords defined in this mailbox (for FLAGS and PERMANENTFLAGS).
    public var keywords: [String] { keywordTable.names.filter { !$0.isEmpty } }
    /// False when all 26 keyword letters are used (PERMANENTFLAGS then lacks `\*`).
    public var canCreateKeywords: Bool { !keywordTable.isFull }

    /// The message at a 0-based position in UID order (sequence number - 1 of a session that is
    /// up to date).
    public func message(at position: Int) -> MessageInfo { MessageInfo(index.records[position]) }

    /// UID, flags, keywords and MODSEQ of the message at a position: what FETCH FLAGS and the
    /// sequence-to-UID mapping need, read from the compact part of the index.
    public func flags(at position: Int) -> (uid: UInt32, flags: SystemFlags, keywords: KeywordSet, modseq: UInt64) {
        let record = index.records.hot[position]
        return (record.uid, record.flags, record.keywords, record.modseq)
    }

    /// How many messages have a UID of at most `uid` (one binary search).
    public func messageCount(throughUID uid: UInt32) -> Int {
        uid == .max ? count : index.lowerBound(of: uid + 1)
    }

    /// The 0-based position of a UID, or nil when no such message exists.
    public func position(of uid: UInt32) -> Int? { index.position(of: uid) }

    /// The UIDs that exist within UID ranges (a client's UID set, `*` already replaced by the
    /// highest UID), ascending and without repeats. Costs a binary search per range plus the result,
    /// however wide the ranges (`1:4294967295` included).
    public func uids(in ranges: [ClosedRange<UInt32>]) -> [UInt32] {
        var found: [UInt32] = []
        for range in ranges {
            var position = index.lowerBound(of: range.lowerBound)
            while position < index.records.count && index.records.hot[position].uid <= range.upperBound {
                found.append(index.records.hot[position].uid)
                position += 1
            }
        }
        if ranges.count > 1 {
            found.sort()
            var unique: [UInt32] = []
            unique.reserveCapacity(found.count)
            for uid in found where unique.last != uid { unique.append(uid) }
            return unique
        }
        return found
    }

    /// All UIDs, ascending.
    public var uids: [UInt32] { index.records.hot.map(\.uid) }

    /// The names of the keywords in `set`.
    public func keywordNames(_ set: KeywordSet) -> [String] { keywordTable.names(of: set) }

    /// STATUS values.
    public var status: MailboxStatus {
        var unseen = 0
        var deleted = 0
        var size: Int64 = 0
        var recent = 0
        for record in index.records {
            if !record.flags.contains(.seen) { unseen += 1 }
            if record.flags.contains(.deleted) { deleted += 1 }
            if record.uid >= index.firstUnclaimedRecentUID { recent += 1 }
            size += record.size
        }
        return MailboxStatus(messages: count, uidNext: uidNext, uidValidity: uidValidity, unseen: unseen,
                             deleted: deleted, size: size, highestModseq: highestModseq, recent: recent)
    }

    /// Claims \Recent for an IMAP4rev1 session: returns the UIDs no session has seen yet, and from
    /// now on no other session sees them as recent (RFC 3501 section 2.3.2). IMAP4rev2 sessions do
    /// not call this.
    public func claimRecent() -> [UInt32] {
        let threshold = index.firstUnclaimedRecentUID
        index.firstUnclaimedRecentUID = index.uidNext
        indexChanged = true
        guard let start = index.records.firstIndex(where: { $0.uid >= threshold }) else { return [] }
        return index.records[start...].map(\.uid)
    }

    /// The cached analyzer blob (ENVELOPE/BODYSTRUCTURE) of a message. Reads the cache file; reads
    /// the message file only when the blob is missing or damaged, and caches it then.
    public func cachedAnalysis(of uid: UInt32) throws(StoreError) -> [UInt8] {
        try withCachedAnalysis(of: uid) { Array($0) }
    }

    /// Runs `body` over the cached analyzer blob of a message as ``cachedAnalysis(of:)`` finds it,
    /// without copying it into an array when the cache has it (FETCH decodes one per message).
    public func withCachedAnalysis<T>(of uid: UInt32, _ body: (UnsafeRawBufferPointer) -> T) throws(StoreError) -> T {
        guard let position = index.position(of: uid) else { throw .noSuchMessage(uid) }
        let record = index.records[position]
        if let result = cache.withBlob(offset: record.cacheOffset, length: record.cacheLength, uid: uid,
                                       verified: record.cacheVerified, body) {
            if !record.cacheVerified { index.records.markCacheVerified(at: position) }
            return result
        }
        return try analyseAgain(uid, at: position).withUnsafeBytes(body)
    }

    /// The blob of a message whose cache record is missing or damaged, made from the message file
    /// and cached; empty when there is no analyzer.
    private func analyseAgain(_ uid: UInt32, at position: Int) throws(StoreError) -> [UInt8] {
        guard let analyzer = configuration.analyzer else { return [] }
        let blob = try withMessageBytes(of: uid) { analyzer.analyze($0) }
        let (offset, length) = try cache.append(blob, uid: uid)
        index.records.setCache(offset: offset, length: length, at: position)
        indexChanged = true
        return blob
    }

    /// Opens a message file for reading (FETCH BODY[]), with its size in bytes. The caller reads it
    /// where it likes (a worker thread); the file stays readable even if it is expunged meanwhile.
    public func openMessage(uid: UInt32) throws(StoreError) -> (file: FileHandle, size: Int64) {
        guard let position = index.position(of: uid) else { throw .noSuchMessage(uid) }
        let record = index.records[position]
        let name = index.name(of: record)
        let base = MailboxSynchronizer.base(of: name)
        // The name changes with the flags: a STORE whose rename has not run yet, or another Maildir
        // reader, may have it under its previous info suffix (the base stays). A directory read
        // racing that rename can miss both names, so a miss is tried again, a bounded few times.
        for _ in 0..<3 {
            do {
                return (try FileHandle.openFile(name, in: cur.fd, flags: O_RDONLY), record.fileSize)
            } catch .system(_, let code) where code == ENOENT {
                guard let current = try Directory.entries(of: cur.fd).first(where: { MailboxSynchronizer.base(of: $0) == base })
                else { continue }
                do {
                    return (try FileHandle.openFile(current, in: cur.fd, flags: O_RDONLY), record.fileSize)
                } catch .system(_, let code) where code == ENOENT {
                    continue  // renamed again between the read and the open
                }
            }
        }
        throw .noSuchMessage(uid)
    }

    /// Maps a message read-only and runs `body` over its bytes.
    public func withMessageBytes<T>(of uid: UInt32, _ body: (UnsafeRawBufferPointer) -> T) throws(StoreError) -> T {
        try Mailbox.withMappedFile(try openMessage(uid: uid).file, body)
    }

    /// Maps a file read-only and runs `body` over its bytes (any thread).
    public static func withMappedFile<T>(_ file: FileHandle, _ body: (UnsafeRawBufferPointer) -> T) throws(StoreError) -> T {
        try withFileBytes(file, size: Int(try file.status().size), body)
    }

    /// Files up to this size are read into the heap rather than mapped. In a multithreaded process
    /// every munmap makes the kernel interrupt the other cores to flush their TLBs: under the mixed
    /// load `smp_call_function_many_cond` and `native_write_msr` were about 10% of the back end's
    /// samples (perf/run flame-backend), more than copying a typical message costs.
    static let readInsteadOfMapLimit = 256 * 1024

    /// Runs `body` over the first `size` bytes of `file`: read with pread when small, mapped when
    /// large (a large message is never copied whole into memory). Any thread.
    static func withFileBytes<T>(_ file: FileHandle, size: Int, _ body: (UnsafeRawBufferPointer) -> T)
        throws(StoreError) -> T
    {
        if size == 0 { return body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        if size <= readInsteadOfMapLimit {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
            defer { buffer.deallocate() }
            var filled = 0
            while filled < size {
                let count = pread(file.fd, buffer.baseAddress! + filled, size - filled, off_t(filled))
                if count > 0 {
                    filled += count
                } else if count == 0 {
                    break  // shorter than its size said: Maildir files do not change, so a truncated file
                } else if errno != EINTR {
                    throw .system(call: "pread", errno: errno)
                }
            }
            return body(UnsafeRawBufferPointer(rebasing: buffer[0..<filled]))
        }
        guard let mapping = mmap(nil, size, PROT_READ, MAP_PRIVATE, file.fd, 0), mapping != MAP_FAILED else {
            throw .system(call: "mmap", errno: errno)
        }
        defer { munmap(mapping, size) }
        return body(UnsafeRawBufferPointer(start: mapping, count: size))
    }

    // MARK: - Observers

    /// Adds an observer (held weakly).
    public func addObserver(_ observer: any MailboxObserver) {
        observers.removeAll { $0.observer == nil }
        observers.append(WeakObserver(observer: observer))
    }

    public func removeObserver(_ observer: any MailboxObserver) {
        observers.removeAll { $0.observer == nil || $0.observer === observer }
    }

    /// The number of live observers (sessions that have the mailbox selected).
    public var observerCount: Int { observers.reduce(0) { $0 + ($1.observer == nil ? 0 : 1) } }

    func notify(_ event: MailboxEvent) {
        for entry in observers { entry.observer?.mailbox(self, didChange: event) }
    }

    // MARK: - Opening

    init(name: MailboxName, user: UserMaildir, root: FileHandle, store: MailStore) throws(StoreError) {
        self.name = name
        self.user = user
        configuration = store.configuration
        nameGenerator = store.nameGenerator
        if name.isInbox {
            directory = root
        } else {
            do {
                directory = try FileHandle.openDirectory(name.folderName, in: root.fd)
            } catch .system(_, let code) where code == ENOENT || code == ENOTDIR {
                throw .mailboxNotFound
            }
        }
        // A folder made by another program may lack a subdirectory; only then is anything created.
        for subdirectory in ["cur", "new", "tmp"] where try Directory.status(subdirectory, in: directory.fd) == nil {
            try Maildir.createFolder(in: directory.fd, marker: !name.isInbox)
            break
        }
        cur = try FileHandle.openDirectory("cur", in: directory.fd)
        new = try FileHandle.openDirectory("new", in: directory.fd)
        tmp = try FileHandle.openDirectory("tmp", in: directory.fd)
        keywordTable = KeywordTable(parsing: try Directory.readFile(KeywordTable.fileName, in: directory.fd) ?? [])

        let loaded = try Directory.readFile(MessageIndex.fileName, in: directory.fd).flatMap(MessageIndex.parse)
        let uidListStatus = try Directory.status(UIDList.fileName, in: directory.fd)
        let curStatus = try cur.status()
        // new/'s time before its listing: a delivery after the listing changes it (see checkForNewMessages).
        let newModified = try new.status().modificationTime
        let newIsEmpty = try Directory.entries(of: new.fd).allSatisfy { $0.hasPrefix(".") }
        if newIsEmpty { newScannedEmptyAt = newModified }
        cache = try MessageCache(in: directory.fd)
        if let loaded, loaded.wasClean, loaded.curModificationTime == curStatus.modificationTime,
            loaded.uidListFingerprint == FileFingerprint(uidListStatus), newIsEmpty
        {
            // The fast path: the clean snapshot describes the files; nothing else is read.
            index = loaded
            diskSnapshotIsClean = true
            uidListFile = try FileHandle.openFile(UIDList.fileName, in: directory.fd, flags: O_WRONLY | O_APPEND)
        } else {
            // Placeholders until synchronize fills them in.
            index = MessageIndex(uidValidity: 1, uidNext: 1, highestModseq: 0)
            uidListFile = directory
            if loaded?.wasClean == true { try FileOperation.markIndexInUse(directory).run() }
            indexChanged = true
            let outcome = try MailboxSynchronizer(mailbox: self).synchronize(previous: loaded)
            if !outcome.cacheUsable { try cache.reset() }
        }
        try removeStaleTemporaryFiles()
    }

    /// Removes what crashed appends of an earlier process left in tmp/ (files named `apus-…` or
    /// `apus.…`). Only this process writes such names, and it holds the data directory's lock.
    private func removeStaleTemporaryFiles() throws(StoreError) {
        for entry in try Directory.entries(of: tmp.fd) where entry.hasPrefix("apus-") || entry.hasPrefix("apus.") {
            try Directory.removeFile(entry, in: tmp.fd)
        }
    }

    /// Writes the index snapshot. `clean` only when nothing is in flight (at close).
    func writeIndex(clean: Bool) throws(StoreError) {
        index.curModificationTime = try cur.status().modificationTime
        index.uidListFingerprint = FileFingerprint(try Directory.status(UIDList.fileName, in: directory.fd))
        try Directory.replaceFile(MessageIndex.fileName, in: directory.fd, with: index.serialized(clean: clean),
                                  durable: false)
        diskSnapshotIsClean = clean
        indexChanged = false
    }

    /// Notes that `commit` changes this mailbox's files. The first change after a clean snapshot
    /// marks the snapshot in use, durably, in phase 0, before any file of the commit changes: a crash
    /// from then on makes the next open reconcile instead of trusting the snapshot. Call only for a
    /// commit that will be returned.
    func beginChange(in commit: inout PendingCommit) {
        indexChanged = true
        if diskSnapshotIsClean {
            commit.add(.markIndexInUse(directory), phase: 0)
            diskSnapshotIsClean = false
        }
    }

    /// As `beginChange(in:)`, for changes made here and now (reconciling).
    func beginChangeNow() throws(StoreError) {
        indexChanged = true
        if diskSnapshotIsClean {
            try FileOperation.markIndexInUse(directory).run()
            diskSnapshotIsClean = false
        }
    }

    /// Writes a snapshot of the index (a cache; not fsynced). The back end calls it now and then so a
    /// crash has less to reconcile. Reads no message; writes one file.
    public func checkpoint() throws(StoreError) { try writeIndex(clean: false) }

    /// Writes the clean index snapshot. Call when no commit of this mailbox is in flight; the
    /// mailbox must not be used afterwards. A mailbox that goes away unclosed (the last session let
    /// go of it) closes itself.
    public func close() throws(StoreError) {
        guard !isClosed else { return }
        if index.deadUIDListLines > index.records.count / 2 + 64 { try compactUIDList() }
        if indexChanged || !diskSnapshotIsClean { try writeIndex(clean: true) }
        isClosed = true
    }

    /// Rewrites the UID list with only the messages that exist (expunged lines are dropped). Only
    /// with nothing in flight: commits append to the list through its descriptor.
    func compactUIDList() throws(StoreError) {
        // Under `optimized` the unlinks of expunged messages were not fsynced: make them durable
        // before their UID-list lines go, or a power loss could bring a file back without its UID.
        if configuration.fsyncPolicy == .optimized { try cur.sync() }
        var list = UIDList(uidValidity: index.uidValidity, uidNext: index.uidNext)
        list.entries = index.records.map { UIDList.Entry(uid: $0.uid, name: Substring(index.name(of: $0))) }
        try Directory.replaceFile(UIDList.fileName, in: directory.fd, with: list.serialized, durable: true)
        uidListFile = try FileHandle.openFile(UIDList.fileName, in: directory.fd, flags: O_WRONLY | O_APPEND)
        index.deadUIDListLines = 0
        indexChanged = true
    }

    /// Reconciles the index with the files (after a failed commit, or when another program changed
    /// the Maildir). Reads the directories and the UID list; keeps UIDs.
    public func resynchronize() throws(StoreError) {
        try beginChangeNow()
        let synchronizer = MailboxSynchronizer(mailbox: self)
        let before = Set(index.records.map(\.uid))
        _ = try synchronizer.synchronize(previous: index)
        let after = index.records.map(\.uid)
        let appeared = after.filter { !before.contains($0) }
        let afterSet = Set(after)
        let vanished = before.filter { !afterSet.contains($0) }.sorted()
        if !vanished.isEmpty { notify(.expunged(vanished)) }
        if !appeared.isEmpty { notify(.appended(appeared)) }
    }

    // MARK: - Commits

    func makeCommit(assignedUIDs: [UInt32] = []) -> PendingCommit {
        PendingCommit(id: user.nextCommitID(), assignedUIDs: assignedUIDs, uidValidity: uidValidity,
                      fsyncPolicy: configuration.fsyncPolicy)
    }

    /// Finishes a commit on the owner thread once `DurabilityBatcher` ran it: tells observers of
    /// every mailbox it changed, or, when it failed, reconciles those mailboxes with the disk.
    public func complete(_ commit: PendingCommit, error: StoreError?) {
        user.complete(commit, error: error)
    }

    /// Runs a commit right here (no batching) and completes it. For tools and tests; a server runs
    /// commits on a worker through `DurabilityBatcher`.
    public func commitNow(_ commit: PendingCommit) throws(StoreError) {
        let error = commit.makeDurable()
        complete(commit, error: error)
        if let error { throw error }
    }

    /// Resolves keyword names to bits, adding new ones to the table; returns the table to write
    /// when it changed. Throws before changing anything when a name is invalid or the table is full.
    func resolveKeywords(_ names: [String]) throws(StoreError) -> (KeywordSet, changed: Bool) {
        var table = keywordTable
        var set = KeywordSet()
        for name in names { set.insert(try table.indexAdding(name)) }
        let changed = table != keywordTable
        if changed {
            keywordTable = table
            keywordsVersion &+= 1
        }
        return (set, changed)
    }

    func addKeywordTableWrite(to commit: inout PendingCommit) {
        commit.add(.replace(directory: directory, name: KeywordTable.fileName, bytes: keywordTable.serialized), phase: 1)
    }

    func nextModseq() -> UInt64 { index.nextModseq() }
}
