// MailStore: COPY, MOVE, STORE, EXPUNGE and mail delivered into new/ by another program.

import Glibc

extension Mailbox {
    // MARK: - COPY and MOVE

    /// Prepares COPY (RFC 3501 section 6.4.7) of the given UIDs (missing ones are skipped) into
    /// `destination`, a mailbox of the same user. Flags and keywords go along, INTERNALDATE stays,
    /// SAVEDATE is now. Each copy is a hard link under a new name, so no message data is rewritten.
    public func prepareCopy(uids: [UInt32], to destination: Mailbox) throws(StoreError) -> CopyResult {
        try prepareTransfer(uids: uids, to: destination, removeSource: false)
    }

    /// Prepares MOVE (RFC 6851): a copy, then the source messages' removal in a later phase of the
    /// same commit, so after a crash a message is in the destination, or in both, never in neither.
    public func prepareMove(uids: [UInt32], to destination: Mailbox) throws(StoreError) -> CopyResult {
        try prepareTransfer(uids: uids, to: destination, removeSource: true)
    }

    private func prepareTransfer(uids: [UInt32], to destination: Mailbox, removeSource: Bool) throws(StoreError)
        -> CopyResult
    {
        let positions = uids.compactMap { index.position(of: $0) }.sorted()
        var sourceUIDs: [UInt32] = []
        sourceUIDs.reserveCapacity(positions.count)
        var addedSize: Int64 = 0
        for position in positions where sourceUIDs.last != index.records[position].uid {
            sourceUIDs.append(index.records[position].uid)
            addedSize += index.records[position].size
        }
        try destination.index.ensureUIDsAvailable(sourceUIDs.count)
        // A move takes as much as it frees: only a copy can go over quota.
        if !removeSource {
            try user.checkQuota(addingMessages: Int64(sourceUIDs.count), bytes: addedSize)
        }
        // Map keyword bits through names: each mailbox has its own table.
        let (oldTable, oldVersion) = (destination.keywordTable, destination.keywordsVersion)
        var mappedKeywords: [KeywordSet] = []
        var tableChanged = false
        for uid in sourceUIDs {
            let record = index.records[index.position(of: uid)!]
            do {
                let (set, changed) = try destination.resolveKeywords(keywordTable.names(of: record.keywords))
                mappedKeywords.append(set)
                tableChanged = tableChanged || changed
            } catch {
                (destination.keywordTable, destination.keywordsVersion) = (oldTable, oldVersion)
                throw error
            }
        }
        let firstUID = destination.index.uidNext
        var commit = destination.makeCommit(assignedUIDs: sourceUIDs.indices.map { firstUID + UInt32($0) })
        destination.beginChange(in: &commit)
        if removeSource { beginChange(in: &commit) }
        if tableChanged { destination.addKeywordTableWrite(to: &commit) }
        let now = currentTimeNanoseconds()
        var lines: [UInt8] = []
        for (offset, sourceUID) in sourceUIDs.enumerated() {
            let source = index.records[index.position(of: sourceUID)!]
            let sourceName = index.name(of: source)
            let uid = firstUID + UInt32(offset)
            let base = MaildirNameGenerator.base(stem: nameGenerator.uniqueStem(now: now), fileSize: source.fileSize,
                                                 virtualSize: source.size)
            let name = MaildirFilename.name(base: base[...], flags: source.flags, keywords: mappedKeywords[offset])
            var record = MessageRecord(
                uid: uid, flags: source.flags, keywords: mappedKeywords[offset], modseq: destination.nextModseq(),
                size: source.size, fileSize: source.fileSize, internalDate: source.internalDate,
                saveDate: now / 1_000_000_000)
            if let blob = cache.withBlob(offset: source.cacheOffset, length: source.cacheLength, uid: sourceUID,
                                         verified: source.cacheVerified, { Array($0) }),
                let (cacheOffset, length) = try? destination.cache.append(blob, uid: uid)
            {
                record.cold.setCache(offset: cacheOffset, length: length)
            }
            destination.index.records.append(record)
            destination.index.setName(name, ofRecordAt: destination.index.records.count - 1)
            UIDList.appendLine(uid: uid, name: name, to: &lines)
            commit.add(.link(from: cur, sourceName, to: destination.cur, name), phase: 2, sync: destination.cur)
        }
        destination.index.uidNext = firstUID + UInt32(sourceUIDs.count)
        commit.add(.append(destination.uidListFile, lines), phase: 1, sync: destination.uidListFile)
        user.record(commit, event: .appended(commit.assignedUIDs), in: destination,
                     usage: (Int64(sourceUIDs.count), addedSize))
        if removeSource { removeMessages(sourceUIDs, in: &commit) }
        return CopyResult(commit: commit, sourceUIDs: sourceUIDs)
    }

    // MARK: - EXPUNGE

    /// Prepares EXPUNGE (RFC 3501 section 6.4.3) of every \Deleted message, or, with `uids`, UID
    /// EXPUNGE (RFC 4315 section 2.1) of those among them that are \Deleted. The messages leave the
    /// index at once; observers hear of it in `complete`. Nil when nothing is to be expunged.
    public func prepareExpunge(uids: [UInt32]? = nil) -> PendingCommit? {
        var victims: [UInt32] = []
        if let uids {
            for uid in Set(uids) {
                if let position = index.position(of: uid), index.records[position].flags.contains(.deleted) {
                    victims.append(uid)
                }
            }
            victims.sort()
        } else {
            victims = index.records.filter { $0.flags.contains(.deleted) }.map(\.uid)
        }
        guard !victims.isEmpty else { return nil }
        var commit = makeCommit()
        beginChange(in: &commit)
        removeMessages(victims, in: &commit)
        return commit
    }

    /// Takes `uids` (ascending, all present) out of the index and adds their unlinks to phase 3.
    private func removeMessages(_ uids: [UInt32], in commit: inout PendingCommit) {
        guard !uids.isEmpty else { return }
        let doomed = Set(uids)
        var removedSize: Int64 = 0
        for uid in uids {
            let record = index.records[index.position(of: uid)!]
            removedSize += record.size
            commit.addNameChange(.unlink(cur, index.name(of: record)), phase: 3, directory: cur)
        }
        index.records.removeAll(uids: doomed)
        index.deadUIDListLines += UInt32(uids.count)
        // RFC 7162 section 3.2.7: an expunge changes HIGHESTMODSEQ.
        _ = nextModseq()
        user.record(commit, event: .expunged(uids), in: self, usage: (-Int64(uids.count), -removedSize))
    }

    // MARK: - STORE

    /// Prepares STORE (RFC 3501 section 6.4.6) on the given UIDs, with UNCHANGEDSINCE (RFC 7162
    /// section 3.1.3) when `unchangedSince` is set. Only messages whose flags really change get a new
    /// MODSEQ and a rename; missing UIDs are skipped.
    public func prepareStore(uids: [UInt32], change: FlagChange, flags: SystemFlags, keywords: [String] = [],
                             unchangedSince: UInt64? = nil) throws(StoreError) -> StoreFlagsResult
    {
        let keywordSet: KeywordSet
        var tableChanged = false
        if change == .remove {
            // A removal only names keywords: one the table does not hold is on no message, and
            // defining it would spend one of the mailbox's 26 keyword letters (and a durable write
            // of the table) on a name clients often clear without ever setting ($NotJunk, say).
            var set = KeywordSet()
            for name in keywords { if let position = keywordTable.index(of: name) { set.insert(position) } }
            keywordSet = set
        } else {
            (keywordSet, tableChanged) = try resolveKeywords(keywords)
        }
        var commit = makeCommit()
        if tableChanged { addKeywordTableWrite(to: &commit) }
        var changed: [UInt32] = []
        var modified: [UInt32] = []
        for uid in Set(uids).sorted() {
            guard let position = index.position(of: uid) else { continue }
            let record = index.records[position]
            if let unchangedSince, record.modseq > unchangedSince {
                modified.append(uid)
                continue
            }
            var newFlags = record.flags
            var newKeywords = record.keywords
            switch change {
            case .replace:
                // Keep Maildir's P: it is not an IMAP flag, so FLAGS (…) cannot mean to clear it.
                newFlags = flags.union(record.flags.intersection(.passed))
                newKeywords = keywordSet
            case .add:
                newFlags.formUnion(flags)
                newKeywords.bits |= keywordSet.bits
            case .remove:
                newFlags.subtract(flags)
                newKeywords.bits &= ~keywordSet.bits
            }
            guard newFlags != record.flags || newKeywords != record.keywords else { continue }
            let oldName = index.name(of: record)
            let newName = MaildirFilename.name(base: MailboxSynchronizer.base(of: oldName), flags: newFlags,
                                               keywords: newKeywords)
            index.records.setHot(HotRecord(uid: uid, flags: newFlags, keywords: newKeywords, modseq: nextModseq()),
                                 at: position)
            index.setName(newName, ofRecordAt: position)
            commit.addNameChange(.rename(from: cur, oldName, to: cur, newName), phase: 2, directory: cur)
            changed.append(uid)
        }
        guard !changed.isEmpty || tableChanged else {
            return StoreFlagsResult(commit: nil, changed: [], modified: modified)
        }
        beginChange(in: &commit)
        if !changed.isEmpty { user.record(commit, event: .flagsChanged(changed), in: self, usage: (0, 0)) }
        return StoreFlagsResult(commit: commit, changed: changed, modified: modified)
    }

    // MARK: - New mail

    /// Whether new/ may hold mail since it was last found empty: its modification time (returned)
    /// differs, or is too recent to trust. One fstat; nil when new/ is known empty.
    public func newModifiedSinceEmptyScan() throws(StoreError) -> Int64? {
        let modified = try new.status().modificationTime
        if modified == newScannedEmptyAt, currentTimeNanoseconds() - modified > Mailbox.directoryTimeTrustDelay {
            return nil
        }
        return modified
    }

    /// Whether new/ holds mail: one fstat when it is known empty since, else a listing (an empty
    /// listing is remembered, as `checkForNewMessages` does). A failure counts as yes (the caller
    /// then reads the mailbox and meets the error there).
    public var newHoldsMail: Bool {
        do {
            guard let modified = try newModifiedSinceEmptyScan() else { return false }
            if try Directory.entries(of: new.fd).contains(where: { !$0.hasPrefix(".") }) { return true }
            newScannedEmptyAt = modified
            return false
        } catch {
            return true
        }
    }

    /// Looks in new/ for mail a delivery agent put there and gives it UIDs. Returns the commit that
    /// makes the UIDs durable (observers hear of the messages in `complete`), or nil when new/ is
    /// empty. Reads the new/ directory and stats each new file: call it where the owner may wait on
    /// the disk briefly (after an inotify event or on NOOP/IDLE polls).
    /// A new/ whose modification time is what it was at the last scan that found it empty is not
    /// read again (NOOP polls cost one fstat, not a directory read), unless that time is recent: a
    /// delivery within the same clock tick as the last change leaves the time as it was.
    public func checkForNewMessages() throws(StoreError) -> PendingCommit? {
        guard let modified = try newModifiedSinceEmptyScan() else { return nil }
        let delivered = try Directory.entries(of: new.fd).filter { !$0.hasPrefix(".") }.sorted()
        guard !delivered.isEmpty else {
            newScannedEmptyAt = modified
            return nil
        }
        try index.ensureUIDsAvailable(delivered.count)
        let firstUID = index.uidNext
        var commit = makeCommit(assignedUIDs: delivered.indices.map { firstUID + UInt32($0) })
        beginChange(in: &commit)
        var lines: [UInt8] = []
        var addedSize: Int64 = 0
        for (offset, fileName) in delivered.enumerated() {
            let uid = firstUID + UInt32(offset)
            let parsed = MaildirFilename(parsing: fileName)
            let file = try FileHandle.openFile(fileName, in: new.fd, flags: O_RDONLY)
            let status = try file.status()
            var size = parsed.virtualSize ?? 0
            if parsed.virtualSize == nil { size = try MailboxSynchronizer.virtualSize(of: file) }
            let internalDate = status.modificationTime / 1_000_000_000
            let name = MaildirFilename.name(base: parsed.base, flags: parsed.flags, keywords: parsed.keywords)
            let record = MessageRecord(
                uid: uid, flags: parsed.flags, keywords: parsed.keywords, modseq: nextModseq(), size: size,
                fileSize: parsed.fileSize ?? status.size, internalDate: internalDate,
                saveDate: MaildirNameGenerator.saveTime(ofBase: parsed.base) ?? internalDate)
            index.records.append(record)
            index.setName(name, ofRecordAt: index.records.count - 1)
            UIDList.appendLine(uid: uid, name: parsed.base, to: &lines)
            commit.add(.rename(from: new, fileName, to: cur, name), phase: 2, sync: cur)
            commit.addSync(new, phase: 2)
            addedSize += size
        }
        index.uidNext = firstUID + UInt32(delivered.count)
        commit.add(.append(uidListFile, lines), phase: 1, sync: uidListFile)
        user.record(commit, event: .appended(commit.assignedUIDs), in: self,
                     usage: (Int64(delivered.count), addedSize))
        return commit
    }
}
