// MailStore: one user's Maildir++: the mailbox list, subscriptions, quota, and the mailboxes the
// user's sessions have open.

import Glibc
import Synchronization

/// One entry of the mailbox list (RFC 3501 LIST, RFC 6154 special use).
public struct MailboxListEntry: Equatable, Sendable {
    public var name: MailboxName
    /// The RFC 6154 attributes of the folder: those it was created with (CREATE ... USE), else the
    /// default of its name (Sent is \\Sent); empty for an ordinary folder.
    public var specialUses: [SpecialUse]
    /// True when some mailbox lies below this one (\HasChildren).
    public var hasChildren: Bool
    /// True for a level that exists only as the parent of other mailboxes (\NonExistent/\Noselect).
    public var isPlaceholder: Bool
}

/// Current usage against `QuotaLimits` (RFC 9208 GETQUOTA).
public struct QuotaUsage: Equatable, Sendable {
    public var storageBytes: Int64
    public var messages: Int64
}

private struct WeakMailbox {
    weak var mailbox: Mailbox?
}

/// A user's Maildir.
///
/// Threading: not `Sendable`; it and its mailboxes belong to the user's event-loop thread. Methods
/// that open mailboxes or change the folder tree read and write the disk; the back end calls them
/// where that is allowed (a worker holding the user for the moment, or the loop for short metadata
/// work), never concurrently.
public final class UserMaildir {
    /// The user's name.
    public let name: UserName
    let root: FileHandle
    let store: MailStore
    /// Mailboxes some session holds, by folder name. Weak: a mailbox nobody holds closes itself.
    private var openMailboxes: [String: WeakMailbox] = [:]
    /// The most recently selected mailboxes, held open even when no session holds them (oldest
    /// first), so a user who comes back soon finds them in memory. At most `keepOpenLimit`.
    private var keptOpen: [Mailbox] = []
    /// How many recently selected mailboxes stay open without a session (0: none, the default; a
    /// server that lets users linger open sets it).
    public var keepOpenLimit = 0
    private var pendingEvents: [UInt64: [(mailbox: Mailbox, event: MailboxEvent, usage: (Int64, Int64))]] = [:]
    private var commitCounter: UInt64 = 0
    private var usage: QuotaUsage?
    /// Atomic: a mailbox loading on a worker (`MailboxLoader`) may need a new UIDVALIDITY while the
    /// owner thread makes one for another mailbox.
    private let lastUIDValidity = Atomic<UInt32>(0)
    /// Held while a mailbox's files are read and reconciled, so a worker's load and an open on the
    /// owner thread never reconcile the same folder at once.
    let loadLock = Mutex<Void>(())

    init(name: UserName, root: FileHandle, store: MailStore) {
        self.name = name
        self.root = root
        self.store = store
        for entry in (try? Directory.entries(of: root.fd)) ?? [] where entry.hasPrefix("apus-deleting-") {
            try? Directory.removeTree(entry, in: root.fd)
        }
    }

    // MARK: - Mailboxes

    /// The open mailbox with this name, opening it (reading its index, reconciling after a crash)
    /// when no session has it yet. All sessions of the user share the object. Opening a large or
    /// changed mailbox reads much of the disk: a server opens through `loader(for:)` on a worker
    /// and `adopt(_:)` instead.
    public func mailbox(_ name: MailboxName) throws(StoreError) -> Mailbox {
        if let open = openedMailbox(name) { return open }
        return try adopt(try loader(for: name).load())
    }

    /// The mailbox if some session has it open now; reads nothing.
    public func openedMailbox(_ name: MailboxName) -> Mailbox? { openMailboxes[name.folderName]?.mailbox }

    /// The open mailbox for a command that shows its state (SELECT, STATUS, LIST-STATUS, COPY), or
    /// nil when it must be read: not open, or open only because it was kept (nothing else holds
    /// it) while a delivery agent may have put mail in its new/. Such a mailbox is closed here, so
    /// the caller reads it afresh on a worker, picking up new/ as any read does, rather than
    /// showing stale counts or taking in a backlog of deliveries on the loop. One fstat (and a
    /// listing of new/ when it changed lately).
    public func openedMailboxIfCurrent(_ name: MailboxName) -> Mailbox? {
        if let position = keptOpen.firstIndex(where: { $0.name == name }),
           isKnownUniquelyReferenced(&keptOpen[position]), keptOpen[position].newHoldsMail
        {
            let stale = keptOpen.remove(at: position)
            openMailboxes.removeValue(forKey: name.folderName)
            try? stale.close()
            return nil
        }
        return openedMailbox(name)
    }

    /// A session selected `mailbox`: it becomes the most recent of the mailboxes kept open.
    public func noteSelected(_ mailbox: Mailbox) {
        guard keepOpenLimit > 0 else { return }
        keptOpen.removeAll { $0 === mailbox }
        if keptOpen.count >= keepOpenLimit { keptOpen.removeFirst() }
        keptOpen.append(mailbox)
    }

    /// A loader that opens the mailbox on another thread (see `MailboxLoader`).
    public func loader(for name: MailboxName) -> MailboxLoader { MailboxLoader(user: self, name: name) }

    /// Makes a loaded mailbox the user's open one, on the owner thread. When another open of the
    /// same name won meanwhile, the loaded copy is dropped unwritten and the open one returned; when
    /// the folder was deleted or renamed meanwhile, `mailboxNotFound`.
    public func adopt(_ loaded: LoadedMailbox) throws(StoreError) -> Mailbox {
        let mailbox = loaded.mailbox
        if let open = openedMailbox(mailbox.name) {
            mailbox.isClosed = true
            return open
        }
        if !mailbox.name.isInbox, try Directory.status(mailbox.name.folderName, in: root.fd)?.isDirectory != true {
            mailbox.isClosed = true
            throw .mailboxNotFound
        }
        openMailboxes = openMailboxes.filter { $0.value.mailbox != nil }
        openMailboxes[mailbox.name.folderName] = WeakMailbox(mailbox: mailbox)
        return mailbox
    }

    /// Reads and reconciles a mailbox's files into a new `Mailbox`, not yet registered. Touches only
    /// the disk, immutable state and the atomic UIDVALIDITY counter, so it may run on a worker.
    func load(_ name: MailboxName) throws(StoreError) -> LoadedMailbox {
        try loadLock.withLock { _ throws(StoreError) -> LoadedMailbox in
            if !name.isInbox, try Directory.status(name.folderName, in: root.fd)?.isDirectory != true {
                throw .mailboxNotFound
            }
            return LoadedMailbox(mailbox: try Mailbox(name: name, user: self, root: root, store: store))
        }
    }

    /// Closes every open mailbox (clean index snapshots). Call with no commit in flight.
    public func close() throws(StoreError) {
        keptOpen = []
        for entry in openMailboxes.values { try entry.mailbox?.close() }
        openMailboxes = [:]
    }

    /// The user's mailboxes: INBOX, every folder, and the parent levels that exist only implicitly.
    public func listMailboxes() throws(StoreError) -> [MailboxListEntry] {
        var names: [MailboxName] = [.inbox]
        for entry in try Directory.entries(of: root.fd) {
            guard let name = MailboxName(folderName: entry), try Directory.status(entry, in: root.fd)?.isDirectory == true
            else { continue }
            names.append(name)
        }
        var existing = Set(names)
        var placeholders: [MailboxName] = []
        for name in names {
            var parent = name.parent
            while let level = parent, !existing.contains(level) {
                existing.insert(level)
                placeholders.append(level)
                parent = level.parent
            }
        }
        let all = (names + placeholders).sorted { $0.wireName < $1.wireName }
        let specialUses = Dictionary(uniqueKeysWithValues: SpecialUse.allCases.map { ($0.defaultName, $0) })
        let placeholderSet = Set(placeholders)
        return try all.map { name throws(StoreError) in
            MailboxListEntry(
                name: name, specialUses: try storedSpecialUses(of: name) ?? specialUses[name.wireName].map { [$0] } ?? [],
                hasChildren: all.contains { $0.isDescendant(of: name) }, isPlaceholder: placeholderSet.contains(name))
        }
    }

    /// The attributes stored with a folder at CREATE; nil when it has none of its own.
    private func storedSpecialUses(of name: MailboxName) throws(StoreError) -> [SpecialUse]? {
        guard !name.isInbox, let folder = try? FileHandle.openDirectory(name.folderName, in: root.fd),
              let bytes = try Directory.readFile(SpecialUseFile.fileName, in: folder.fd)
        else { return nil }
        return SpecialUseFile(parsing: bytes).uses
    }

    /// CREATE (RFC 3501 section 6.3.3), with the special uses of RFC 6154 `USE (...)`, which are kept
    /// in the folder. Parent levels need no folder of their own in Maildir++.
    public func createMailbox(_ name: MailboxName, specialUses: [SpecialUse] = []) throws(StoreError) {
        if name.isInbox { throw .mailboxExists }
        if try Directory.status(name.folderName, in: root.fd) != nil { throw .mailboxExists }
        // Made under a private name and renamed into place: a crash leaves no half-made folder.
        let staging = "apus-deleting-create-\(nextCommitID())"
        try Directory.make(staging, in: root.fd)
        let folder = try FileHandle.openDirectory(staging, in: root.fd)
        try Maildir.createFolder(in: folder.fd, marker: true)
        if !specialUses.isEmpty {
            // Inside the staging folder: the folder appears with its uses or not at all.
            try Directory.replaceFile(SpecialUseFile.fileName, in: folder.fd,
                                      with: SpecialUseFile(specialUses).serialized, durable: true)
        }
        if renameat(root.fd, staging, root.fd, name.folderName) != 0 {
            let code = errno
            try? Directory.removeTree(staging, in: root.fd)
            throw code == EEXIST || code == ENOTEMPTY ? .mailboxExists : .system(call: "renameat", errno: code)
        }
        try root.sync()
    }

    /// DELETE (RFC 3501 section 6.3.4). Folders below it stay. The folder is first renamed out of
    /// sight, then removed, so a crash never leaves half a mailbox visible. Sessions that had it
    /// selected must let go of their `Mailbox`: its operations fail from now on.
    public func deleteMailbox(_ name: MailboxName) throws(StoreError) {
        if name.isInbox { throw .cannotDeleteInbox }
        guard try Directory.status(name.folderName, in: root.fd)?.isDirectory == true else { throw .mailboxNotFound }
        if let open = openMailboxes.removeValue(forKey: name.folderName)?.mailbox {
            open.isClosed = true
            keptOpen.removeAll { $0 === open }
        }
        let doomed = "apus-deleting-\(nextCommitID())"
        _ = try systemCall("renameat") { renameat(root.fd, name.folderName, root.fd, doomed) }
        try root.sync()
        try Directory.removeTree(doomed, in: root.fd)
        usage = nil
    }

    /// RENAME (RFC 3501 section 6.3.5), with the folders below it. Renaming INBOX moves its messages
    /// into a new mailbox (UIDs and UIDVALIDITY go along) and leaves INBOX empty. Sessions that had a
    /// renamed mailbox selected must let go of their `Mailbox` and open the new name.
    public func renameMailbox(_ from: MailboxName, to: MailboxName) throws(StoreError) {
        if to.isInbox { throw .mailboxExists }
        if try Directory.status(to.folderName, in: root.fd) != nil { throw .mailboxExists }
        if from.isInbox {
            try renameInbox(to: to)
            return
        }
        guard try Directory.status(from.folderName, in: root.fd)?.isDirectory == true else { throw .mailboxNotFound }
        if to.isDescendant(of: from) { throw .invalidMailboxName("cannot rename a mailbox into itself") }
        var moves: [(String, String)] = [(from.folderName, to.folderName)]
        for entry in try Directory.entries(of: root.fd) {
            guard let name = MailboxName(folderName: entry), name.isDescendant(of: from) else { continue }
            let suffix = entry.utf8.dropFirst(from.folderName.utf8.count)
            let target = to.folderName + String(decoding: suffix, as: UTF8.self)
            if target.utf8.count > MailboxName.maximumEncodedLength { throw .invalidMailboxName("name too long") }
            moves.append((entry, target))
        }
        for (old, new) in moves {
            if let open = openMailboxes.removeValue(forKey: old)?.mailbox {
                keptOpen.removeAll { $0 === open }
                try open.close()
            }
            _ = try systemCall("renameat") { renameat(root.fd, old, root.fd, new) }
        }
        try root.sync()
        try moveSubscriptions(from: from, to: to)
    }

    private func renameInbox(to target: MailboxName) throws(StoreError) {
        let inbox = try mailbox(.inbox)
        try inbox.beginChangeNow()
        try createMailbox(target)
        let folder = try FileHandle.openDirectory(target.folderName, in: root.fd)
        let folderCur = try FileHandle.openDirectory("cur", in: folder.fd)
        // The new mailbox takes INBOX's UID list and keywords first, then each message moves over:
        // at every moment a message is in exactly one of the two, under its UID.
        if let list = try Directory.readFile(UIDList.fileName, in: root.fd) {
            try Directory.replaceFile(UIDList.fileName, in: folder.fd, with: list, durable: true)
        }
        try Directory.replaceFile(KeywordTable.fileName, in: folder.fd, with: inbox.keywordTable.serialized, durable: true)
        for position in 0..<inbox.index.records.count {
            let name = inbox.index.name(of: inbox.index.records[position])
            _ = try systemCall("renameat") { renameat(inbox.cur.fd, name, folderCur.fd, name) }
        }
        try folderCur.sync()
        try inbox.cur.sync()
        let vanished = inbox.uids
        inbox.index.records.removeAll()
        inbox.index.highestModseq += 1
        try inbox.writeIndex(clean: false)
        if !vanished.isEmpty { inbox.notify(.expunged(vanished)) }
    }

    // MARK: - Subscriptions

    /// The subscribed names (LSUB, LIST (SUBSCRIBED)), which need not exist.
    public func subscriptions() throws(StoreError) -> [String] {
        Subscriptions(parsing: try Directory.readFile(Subscriptions.fileName, in: root.fd) ?? []).names
    }

    /// SUBSCRIBE (RFC 3501 section 6.3.6).
    public func subscribe(_ name: MailboxName) throws(StoreError) {
        try updateSubscriptions { $0.add(name.wireName) }
    }

    /// UNSUBSCRIBE (RFC 3501 section 6.3.7).
    public func unsubscribe(_ name: MailboxName) throws(StoreError) {
        try updateSubscriptions { $0.remove(name.wireName) }
    }

    private func updateSubscriptions(_ change: (inout Subscriptions) -> Bool) throws(StoreError) {
        var list = Subscriptions(parsing: try Directory.readFile(Subscriptions.fileName, in: root.fd) ?? [])
        if change(&list) {
            try Directory.replaceFile(Subscriptions.fileName, in: root.fd, with: list.serialized, durable: true)
        }
    }

    private func moveSubscriptions(from: MailboxName, to: MailboxName) throws(StoreError) {
        try updateSubscriptions { list in
            var changed = false
            for name in list.names {
                guard let old = try? MailboxName(name), old == from || old.isDescendant(of: from) else { continue }
                let suffix = name.utf8.dropFirst(from.wireName.utf8.count)
                _ = list.remove(name)
                _ = list.add(to.wireName + String(decoding: suffix, as: UTF8.self))
                changed = true
            }
            return changed
        }
    }

    // MARK: - STATUS and quota

    /// STATUS of a mailbox (opens it when no session has).
    public func status(_ name: MailboxName) throws(StoreError) -> MailboxStatus {
        try mailbox(name).status
    }

    /// The user's usage, summed over all mailboxes at first use and kept up to date afterwards.
    public func quotaUsage() throws(StoreError) -> QuotaUsage {
        if let usage { return usage }
        var total = QuotaUsage(storageBytes: 0, messages: 0)
        for entry in try listMailboxes() where !entry.isPlaceholder {
            let status = try mailbox(entry.name).status
            total.storageBytes += status.size
            total.messages += Int64(status.messages)
        }
        usage = total
        return total
    }

    /// The configured limits.
    public var quotaLimits: QuotaLimits { store.configuration.quota }

    func checkQuota(addingMessages messages: Int64, bytes: Int64) throws(StoreError) {
        let limits = store.configuration.quota
        guard limits.messages > 0 || limits.storageBytes > 0 else { return }
        let current = try quotaUsage()
        if limits.messages > 0 && current.messages + messages > limits.messages { throw .overQuota }
        if limits.storageBytes > 0 && current.storageBytes + bytes > limits.storageBytes { throw .overQuota }
    }

    // MARK: - Commits

    func nextCommitID() -> UInt64 {
        commitCounter += 1
        return commitCounter
    }

    /// A UIDVALIDITY for a new mailbox: the clock in seconds, but never one this process gave out.
    func newUIDValidity() -> UInt32 {
        let now = UInt32(truncatingIfNeeded: currentTimeNanoseconds() / 1_000_000_000)
        while true {
            let last = lastUIDValidity.load(ordering: .relaxed)
            let next = max(now, last &+ 1)
            if lastUIDValidity.compareExchange(expected: last, desired: next, ordering: .relaxed).exchanged { return next }
        }
    }

    /// Remembers what to announce, and how usage changes, when `commit` completes.
    func record(_ commit: PendingCommit, event: MailboxEvent, in mailbox: Mailbox, usage change: (Int64, Int64)) {
        if usage != nil {
            usage!.messages += change.0
            usage!.storageBytes += change.1
        }
        pendingEvents[commit.id, default: []].append((mailbox, event, change))
    }

    /// See `Mailbox.complete(_:error:)`.
    func complete(_ commit: PendingCommit, error: StoreError?) {
        guard let entries = pendingEvents.removeValue(forKey: commit.id) else { return }
        if error == nil {
            for entry in entries { entry.mailbox.notify(entry.event) }
            return
        }
        // The disk is the truth: reconcile every mailbox the commit touched, then recount usage.
        var seen: [ObjectIdentifier] = []
        for entry in entries where !seen.contains(ObjectIdentifier(entry.mailbox)) {
            seen.append(ObjectIdentifier(entry.mailbox))
            try? entry.mailbox.resynchronize()
        }
        usage = nil
    }
}
