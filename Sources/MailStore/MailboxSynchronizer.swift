// MailStore: reconciling a mailbox's index with its files and UID list.
//
// Used when the index is missing, damaged, was not closed cleanly (a crash), or the directories
// changed behind the store's back (another Maildir reader or a delivery agent). UIDs never change:
// files listed in the UID list keep theirs, files without one get new UIDs above UIDNEXT in name
// (delivery time) order, and UID-list lines whose file is gone are dropped. A line whose file is
// still in tmp/ (a crash between the UID-list write and the rename of an append) is rolled forward.

import Glibc

struct MailboxSynchronizer {
    struct Outcome {
        /// True when the previous index's cache offsets still describe `apus-cache`.
        var cacheUsable: Bool
    }

    private typealias Located = (name: String, inNew: Bool)

    let mailbox: Mailbox

    /// Rebuilds `mailbox.index` (and opens `mailbox.uidListFile`). Reads the UID list and the cur/,
    /// new/ and tmp/ directories; stats only files the previous index does not know.
    func synchronize(previous: MessageIndex?) throws(StoreError) -> Outcome {
        let directory = mailbox.directory.fd
        var (list, rewrite) = try readUIDList(previous: previous)
        let usable = previous.flatMap { $0.uidValidity == list.uidValidity ? $0 : nil }

        var files: [Substring: Located] = [:]
        let curNames = try Directory.entries(of: mailbox.cur.fd)
        files.reserveCapacity(curNames.count + 16)
        for name in curNames where !name.hasPrefix(".") { files[Self.base(of: name)] = (name, false) }
        for name in try Directory.entries(of: mailbox.new.fd) where !name.hasPrefix(".") {
            let base = Self.base(of: name)
            if files[base] == nil { files[base] = (name, true) }
        }
        let staged = Set(try Directory.entries(of: mailbox.tmp.fd).filter { $0.hasPrefix("apus.") })

        // UIDNEXT never goes down, not even over UIDs a failed commit reserved and gave up.
        var index = MessageIndex(uidValidity: list.uidValidity, uidNext: max(list.uidNext, usable?.uidNext ?? 0),
                                 highestModseq: usable?.highestModseq ?? 0)
        index.firstUnclaimedRecentUID = usable?.firstUnclaimedRecentUID ?? list.uidNext
        index.records.reserveCapacity(list.entries.count + files.count)
        if previous?.wasClean != true {
            // Modseqs handed out after the snapshot was taken are forgotten: jump past them.
            _ = index.nextModseq(afterLoss: true)
        }
        var moves: [(from: String, to: String)] = []
        var kept: [UIDList.Entry] = []
        kept.reserveCapacity(list.entries.count + files.count)
        var dropped = 0
        var rolledForward = false
        var previousPosition = 0
        for entry in list.entries {
            let base = entry.base
            var located = files.removeValue(forKey: base)
            if located == nil, staged.contains("apus." + base) {
                let target = entry.name.contains(":") ? String(entry.name) : base + ":2,"
                _ = try systemCall("renameat") { renameat(mailbox.tmp.fd, "apus." + base, mailbox.cur.fd, target) }
                located = (target, false)
                rolledForward = true
            }
            guard let located else {
                dropped += 1
                continue
            }
            var old: MessageRecord?
            if let usable {
                while previousPosition < usable.records.count && usable.records[previousPosition].uid < entry.uid {
                    previousPosition += 1
                }
                if previousPosition < usable.records.count, usable.records[previousPosition].uid == entry.uid,
                    Self.base(of: usable.name(of: usable.records[previousPosition])) == base
                {
                    old = usable.records[previousPosition]
                }
            }
            kept.append(entry)
            try add(uid: entry.uid, located, previous: old, to: &index, moves: &moves)
        }
        // Files without a UID, in name order: names start with the delivery time.
        var lines: [UInt8] = []
        try index.ensureUIDsAvailable(files.count)
        for (base, located) in files.sorted(by: { $0.key < $1.key }) {
            let uid = index.uidNext
            index.uidNext += 1
            if located.inNew { index.firstUnclaimedRecentUID = min(index.firstUnclaimedRecentUID, uid) }
            kept.append(UIDList.Entry(uid: uid, name: base))
            UIDList.appendLine(uid: uid, name: base, to: &lines)
            try add(uid: uid, located, previous: nil, to: &index, moves: &moves)
        }
        list.entries = kept
        list.uidNext = index.uidNext
        if rewrite || list.damagedLines > 0 || dropped > kept.count / 2 + 16 {
            try Directory.replaceFile(UIDList.fileName, in: directory, with: list.serialized, durable: true)
            mailbox.uidListFile = try FileHandle.openFile(UIDList.fileName, in: directory, flags: O_WRONLY | O_APPEND)
        } else {
            mailbox.uidListFile = try FileHandle.openFile(UIDList.fileName, in: directory, flags: O_WRONLY | O_APPEND)
            if !lines.isEmpty {
                try mailbox.uidListFile.append(lines)
                try mailbox.uidListFile.sync()
            }
        }
        // The UIDs are durable now; only then do delivered messages leave new/.
        for move in moves {
            _ = try systemCall("renameat") { renameat(mailbox.new.fd, move.from, mailbox.cur.fd, move.to) }
        }
        if !moves.isEmpty || rolledForward {
            try mailbox.cur.sync()
            try mailbox.new.sync()
        }
        mailbox.index = index
        return Outcome(cacheUsable: usable != nil)
    }

    /// The UID list to start from, and whether it must be written out whole.
    private func readUIDList(previous: MessageIndex?) throws(StoreError) -> (UIDList, rewrite: Bool) {
        let directory = mailbox.directory.fd
        if let bytes = try Directory.readFile(UIDList.fileName, in: directory), let list = try? UIDList(parsing: bytes) {
            return (list, false)
        }
        if let bytes = try Directory.readFile(UIDList.dovecotFileName, in: directory),
            let list = try? UIDList(parsing: bytes)
        {
            return (list, true)
        }
        if let previous {
            let entries = previous.records.map { UIDList.Entry(uid: $0.uid, name: Substring(previous.name(of: $0))) }
            return (UIDList(uidValidity: previous.uidValidity, uidNext: previous.uidNext, entries: entries), true)
        }
        // No UIDs survive: a new UIDVALIDITY tells clients to forget what they cached.
        let validity = mailbox.user.newUIDValidity()
        return (UIDList(uidValidity: validity), true)
    }

    private func add(uid: UInt32, _ located: Located, previous: MessageRecord?, to index: inout MessageIndex,
                     moves: inout [(from: String, to: String)]) throws(StoreError)
    {
        let parsed = MaildirFilename(parsing: located.name)
        var name = located.name
        if located.inNew {
            name = MaildirFilename.name(base: parsed.base, flags: parsed.flags, keywords: parsed.keywords)
            moves.append((located.name, name))
        }
        var record: MessageRecord
        if var old = previous {
            if old.flags != parsed.flags || old.keywords != parsed.keywords {
                old.flags = parsed.flags
                old.keywords = parsed.keywords
                old.modseq = index.nextModseq(afterLoss: true)
            }
            record = old
        } else {
            let directory = located.inNew ? mailbox.new.fd : mailbox.cur.fd
            let file = try FileHandle.openFile(located.name, in: directory, flags: O_RDONLY)
            let status = try file.status()
            let fileSize = parsed.fileSize ?? status.size
            var size = parsed.virtualSize ?? 0
            if parsed.virtualSize == nil { size = try Self.virtualSize(of: file) }
            let internalDate = status.modificationTime / 1_000_000_000
            record = MessageRecord(
                uid: uid, flags: parsed.flags, keywords: parsed.keywords, modseq: index.nextModseq(afterLoss: true),
                size: size, fileSize: fileSize, internalDate: internalDate,
                saveDate: MaildirNameGenerator.saveTime(ofBase: parsed.base) ?? internalDate)
        }
        index.records.append(record)
        index.setName(name, ofRecordAt: index.records.count - 1)
    }

    static func base(of name: String) -> Substring { name.prefix { $0 != ":" } }

    /// The size of a file with every bare LF counted as CRLF (RFC822.SIZE of a file without `W=`).
    static func virtualSize(of file: FileHandle) throws(StoreError) -> Int64 {
        var counter = LineEndingCounter()
        var offset: Int64 = 0
        while true {
            let chunk = try file.read(count: 1 << 16, at: offset)
            if chunk.isEmpty { break }
            chunk.withUnsafeBytes { counter.count($0) }
            offset += Int64(chunk.count)
        }
        return counter.virtualSize
    }
}

/// Counts bytes as they stream by, and what the size would be with CRLF line endings.
struct LineEndingCounter {
    private(set) var bytes: Int64 = 0
    private(set) var bareLineFeeds: Int64 = 0
    private var lastWasCarriageReturn = false

    var virtualSize: Int64 { bytes + bareLineFeeds }

    mutating func count(_ chunk: UnsafeRawBufferPointer) {
        let count = chunk.count
        guard count > 0 else { return }
        // Only the byte before each LF matters, so memchr jumps from LF to LF: a loop over every
        // byte was a third of an APPEND's instructions.
        var bare: Int64 = 0
        var position = MIMEBytes.lineFeed(in: chunk, from: 0, to: count)
        while position < count {
            let afterCarriageReturn = position == 0 ? lastWasCarriageReturn : chunk[position - 1] == 0x0D
            if !afterCarriageReturn { bare += 1 }
            position = MIMEBytes.lineFeed(in: chunk, from: position + 1, to: count)
        }
        lastWasCarriageReturn = chunk[count - 1] == 0x0D
        bareLineFeeds += bare
        bytes += Int64(count)
    }
}
