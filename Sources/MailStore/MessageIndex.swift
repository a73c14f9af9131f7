// MailStore: the per-mailbox index, a cache over the message files and the UID list.
//
// `apus-index` is one binary file, little-endian, read whole at open:
//
//   header (88 bytes)
//     0  magic "APUSIDX1"        8  version u32        12  clean u32 (outside the checksum)
//    16  checksum u64 of bytes 24..end
//    24  uidValidity u32        28  uidNext u32        32  highestModseq u64
//    40  firstUnseenRecentUID u32                      44  count u32
//    48  namesLength u32        52  dead UID-list lines u32   56  cur/ mtime ns i64
//    64  UID list size i64      72  UID list mtime ns i64   80  UID list inode u64
//   records: count x 80 bytes (see `MessageRecord`)
//   names: the current file name of every message, back to back
//
// `clean` is 1 only in the snapshot written when the mailbox is closed; an open mailbox flips it to
// 0 (and fsyncs) before changing anything, so after a crash the next open reconciles the index with
// the files. A damaged or missing index is rebuilt from the files and the UID list (UIDs unchanged).

/// The index record of one message.
///
/// A record is its hot part (what flag operations read) and its cold part (what looking at the
/// message reads); `RecordTable` stores the two in separate arrays. Fields of either part read as
/// fields of the record (`record.flags`, `record.size`).
@dynamicMemberLookup
struct MessageRecord: Equatable {
    static let encodedSize = 80

    var hot: HotRecord
    var cold: ColdRecord

    subscript<Value>(dynamicMember field: WritableKeyPath<HotRecord, Value>) -> Value {
        get { hot[keyPath: field] }
        set { hot[keyPath: field] = newValue }
    }

    subscript<Value>(dynamicMember field: WritableKeyPath<ColdRecord, Value>) -> Value {
        get { cold[keyPath: field] }
        set { cold[keyPath: field] = newValue }
    }

    func encode(into bytes: inout [UInt8]) {
        bytes.appendLittleEndian(hot.uid)
        bytes.appendLittleEndian(UInt32(hot.flags.rawValue))
        bytes.appendLittleEndian(hot.keywords.bits)
        bytes.appendLittleEndian(UInt32(0))
        bytes.appendLittleEndian(hot.modseq)
        bytes.appendLittleEndian(cold.size)
        bytes.appendLittleEndian(cold.fileSize)
        bytes.appendLittleEndian(cold.internalDate)
        bytes.appendLittleEndian(cold.saveDate)
        bytes.appendLittleEndian(cold.nameOffset)
        bytes.appendLittleEndian(cold.nameLength)
        bytes.appendLittleEndian(cold.cacheOffset)
        bytes.appendLittleEndian(cold.cacheLength)
        bytes.appendLittleEndian(UInt32(0))
    }

    init(decoding buffer: UnsafeRawBufferPointer, at offset: Int) {
        hot = HotRecord(
            uid: buffer.loadLittleEndian(at: offset, as: UInt32.self),
            flags: SystemFlags(rawValue: UInt8(truncatingIfNeeded: buffer.loadLittleEndian(at: offset + 4, as: UInt32.self))),
            keywords: KeywordSet(bits: buffer.loadLittleEndian(at: offset + 8, as: UInt32.self)),
            modseq: buffer.loadLittleEndian(at: offset + 16, as: UInt64.self))
        cold = ColdRecord(
            size: buffer.loadLittleEndian(at: offset + 24, as: Int64.self),
            fileSize: buffer.loadLittleEndian(at: offset + 32, as: Int64.self),
            internalDate: buffer.loadLittleEndian(at: offset + 40, as: Int64.self),
            saveDate: buffer.loadLittleEndian(at: offset + 48, as: Int64.self),
            nameOffset: buffer.loadLittleEndian(at: offset + 56, as: UInt32.self),
            nameLength: buffer.loadLittleEndian(at: offset + 60, as: UInt32.self),
            cacheOffset: buffer.loadLittleEndian(at: offset + 64, as: Int64.self),
            cacheLength: buffer.loadLittleEndian(at: offset + 72, as: UInt32.self))
    }

    init(hot: HotRecord, cold: ColdRecord) {
        self.hot = hot
        self.cold = cold
    }

    /// A record without a file name or cached blob yet.
    init(uid: UInt32, flags: SystemFlags, keywords: KeywordSet, modseq: UInt64, size: Int64, fileSize: Int64,
         internalDate: Int64, saveDate: Int64)
    {
        hot = HotRecord(uid: uid, flags: flags, keywords: keywords, modseq: modseq)
        cold = ColdRecord(size: size, fileSize: fileSize, internalDate: internalDate, saveDate: saveDate,
                          nameOffset: 0, nameLength: 0, cacheOffset: -1, cacheLength: 0)
    }
}

/// What the index remembers about the UID list file, to know at open whether it changed.
struct FileFingerprint: Equatable {
    var size: Int64
    var modificationTime: Int64
    var inode: UInt64
    static let none = FileFingerprint(size: -1, modificationTime: 0, inode: 0)

    init(size: Int64, modificationTime: Int64, inode: UInt64) {
        self.size = size
        self.modificationTime = modificationTime
        self.inode = inode
    }

    init(_ status: FileStatus?) {
        guard let status else {
            self = .none
            return
        }
        self.init(size: status.size, modificationTime: status.modificationTime, inode: status.inode)
    }
}

/// The in-memory index of one mailbox: records sorted by UID, and a name arena so loading 100,000
/// messages allocates a handful of arrays rather than 100,000 strings.
struct MessageIndex {
    static let fileName = "apus-index"
    static let magic: [UInt8] = Array("APUSIDX1".utf8)
    static let version: UInt32 = 1
    static let headerSize = 88
    /// Where the `clean` word is: outside the checksum, so it can be cleared in place.
    static let cleanFlagOffset: Int64 = 12

    var uidValidity: UInt32
    var uidNext: UInt32
    var highestModseq: UInt64
    /// UIDs at or above this have not been seen by any session yet (\Recent, RFC 3501 section 2.3.2).
    var firstUnclaimedRecentUID: UInt32
    /// UID-list lines whose message was expunged since the list was last compacted.
    var deadUIDListLines: UInt32 = 0
    var records = RecordTable()
    var names: [UInt8] = []
    /// Set by `parse` from the file header; saved with every snapshot.
    var wasClean = false
    var curModificationTime: Int64 = 0
    var uidListFingerprint = FileFingerprint.none

    init(uidValidity: UInt32, uidNext: UInt32, highestModseq: UInt64) {
        self.uidValidity = uidValidity
        self.uidNext = uidNext
        self.highestModseq = highestModseq
        firstUnclaimedRecentUID = uidNext
    }

    // MARK: - Names

    func name(of record: MessageRecord) -> String {
        names.withUnsafeBufferPointer { buffer in
            String(decoding: buffer[Int(record.nameOffset)..<Int(record.nameOffset + record.nameLength)], as: UTF8.self)
        }
    }

    mutating func setName(_ name: String, ofRecordAt position: Int) {
        records.setName(offset: UInt32(names.count), length: UInt32(name.utf8.count), at: position)
        names.append(contentsOf: name.utf8)
    }

    /// Throws unless `count` more UIDs fit below 2^32. Call before changing anything.
    func ensureUIDsAvailable(_ count: Int) throws(StoreError) {
        guard count <= Int(UInt32.max) - Int(uidNext) else { throw .uidSpaceExhausted }
    }

    /// The position of `uid` in `records` (binary search).
    func position(of uid: UInt32) -> Int? {
        let low = lowerBound(of: uid)
        return low < records.count && records.hot[low].uid == uid ? low : nil
    }

    /// The position of the first record whose UID is at least `uid`.
    func lowerBound(of uid: UInt32) -> Int {
        var low = 0
        var high = records.count
        while low < high {
            let middle = (low + high) / 2
            if records.hot[middle].uid < uid { low = middle + 1 } else { high = middle }
        }
        return low
    }

    /// The next MODSEQ. Normally HIGHESTMODSEQ + 1; `afterLoss` (the index was rebuilt or reconciled
    /// after a crash, so modseqs handed out before may be forgotten) jumps to the clock in
    /// microseconds, which is above any modseq counted up since an earlier such jump.
    mutating func nextModseq(afterLoss: Bool = false) -> UInt64 {
        var next = highestModseq + 1
        if afterLoss { next = max(next, UInt64(currentTimeNanoseconds() / 1000)) }
        highestModseq = next
        return next
    }

    // MARK: - Serialization

    /// The whole file. Names are compacted as they are written.
    func serialized(clean: Bool) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(MessageIndex.headerSize + records.count * (MessageRecord.encodedSize + 64))
        bytes.append(contentsOf: MessageIndex.magic)
        bytes.appendLittleEndian(MessageIndex.version)
        bytes.appendLittleEndian(UInt32(clean ? 1 : 0))
        bytes.appendLittleEndian(UInt64(0))  // checksum, filled in below
        bytes.appendLittleEndian(uidValidity)
        bytes.appendLittleEndian(uidNext)
        bytes.appendLittleEndian(highestModseq)
        bytes.appendLittleEndian(firstUnclaimedRecentUID)
        bytes.appendLittleEndian(UInt32(records.count))
        let namesLength = records.reduce(0) { $0 + Int($1.nameLength) }
        bytes.appendLittleEndian(UInt32(namesLength))
        bytes.appendLittleEndian(deadUIDListLines)
        bytes.appendLittleEndian(curModificationTime)
        bytes.appendLittleEndian(uidListFingerprint.size)
        bytes.appendLittleEndian(uidListFingerprint.modificationTime)
        bytes.appendLittleEndian(uidListFingerprint.inode)
        var offset: UInt32 = 0
        for var record in records {
            record.nameOffset = offset
            offset += record.nameLength
            record.encode(into: &bytes)
        }
        names.withUnsafeBufferPointer { arena in
            for record in records {
                bytes.append(contentsOf: arena[Int(record.nameOffset)..<Int(record.nameOffset + record.nameLength)])
            }
        }
        let sum = bytes.withUnsafeBytes { checksum64(UnsafeRawBufferPointer(rebasing: $0[24...])) }
        withUnsafeBytes(of: sum.littleEndian) { sumBytes in
            for index in 0..<8 { bytes[16 + index] = sumBytes[index] }
        }
        return bytes
    }

    /// Parses an index file; nil when it is damaged in any way (wrong magic or version, bad
    /// checksum, records out of order, names out of bounds), which makes the caller rebuild it.
    static func parse(_ bytes: [UInt8]) -> MessageIndex? {
        bytes.withUnsafeBytes { buffer -> MessageIndex? in
            guard buffer.count >= headerSize, buffer.prefix(8).elementsEqual(magic),
                buffer.loadLittleEndian(at: 8, as: UInt32.self) == version,
                buffer.loadLittleEndian(at: 16, as: UInt64.self) == checksum64(UnsafeRawBufferPointer(rebasing: buffer[24...]))
            else { return nil }
            var index = MessageIndex(
                uidValidity: buffer.loadLittleEndian(at: 24, as: UInt32.self),
                uidNext: buffer.loadLittleEndian(at: 28, as: UInt32.self),
                highestModseq: buffer.loadLittleEndian(at: 32, as: UInt64.self))
            index.wasClean = buffer.loadLittleEndian(at: 12, as: UInt32.self) == 1
            index.firstUnclaimedRecentUID = buffer.loadLittleEndian(at: 40, as: UInt32.self)
            let count = Int(buffer.loadLittleEndian(at: 44, as: UInt32.self))
            let namesLength = Int(buffer.loadLittleEndian(at: 48, as: UInt32.self))
            index.deadUIDListLines = buffer.loadLittleEndian(at: 52, as: UInt32.self)
            index.curModificationTime = buffer.loadLittleEndian(at: 56, as: Int64.self)
            index.uidListFingerprint = FileFingerprint(
                size: buffer.loadLittleEndian(at: 64, as: Int64.self),
                modificationTime: buffer.loadLittleEndian(at: 72, as: Int64.self),
                inode: buffer.loadLittleEndian(at: 80, as: UInt64.self))
            let namesStart = headerSize + count * MessageRecord.encodedSize
            guard index.uidValidity != 0, buffer.count == namesStart + namesLength else { return nil }
            index.records.reserveCapacity(count)
            var previousUID: UInt32 = 0
            for position in 0..<count {
                let record = MessageRecord(decoding: buffer, at: headerSize + position * MessageRecord.encodedSize)
                guard record.uid > previousUID, record.uid < index.uidNext,
                    Int(record.nameOffset) + Int(record.nameLength) <= namesLength
                else { return nil }
                previousUID = record.uid
                index.records.append(record)
            }
            index.names = Array(buffer[namesStart...])
            return index
        }
    }
}
