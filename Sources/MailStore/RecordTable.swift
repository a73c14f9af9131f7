// MailStore: the index records of a mailbox, stored hot and cold apart.
//
// FETCH FLAGS, STORE, SEARCH on flags and sequence-to-UID mapping touch only UID, flags, keywords
// and MODSEQ: 24 bytes a message, kept in one array, so listing the flags of 100,000 messages streams
// 2.4 MB rather than 8 MB and stays in cache about as well as 10,000 do. Sizes, dates, the file
// name and the cache location live in a second array in the same order.

/// The fields every flag operation reads.
struct HotRecord: Equatable {
    var uid: UInt32
    var flags: SystemFlags
    var keywords: KeywordSet
    var modseq: UInt64
}

/// The fields read when a message itself is looked at.
struct ColdRecord: Equatable {
    /// RFC822.SIZE: the size with CRLF line endings (Maildir `W=`).
    var size: Int64
    /// The file's size in bytes (Maildir `S=`).
    var fileSize: Int64
    /// INTERNALDATE, seconds since the epoch (the file's mtime, as other Maildir servers keep it).
    var internalDate: Int64
    /// SAVEDATE (RFC 8514), seconds since the epoch (the time at the front of the file name).
    var saveDate: Int64
    /// Where the current file name is in the index's name arena.
    var nameOffset: UInt32
    var nameLength: UInt32
    /// Where the analyzer's blob (cached ENVELOPE/BODYSTRUCTURE) is in `apus-cache`; -1 when none.
    var cacheOffset: Int64
    var cacheLength: UInt32
    /// Whether the cache record at `cacheOffset` is known whole: this process wrote it, or its
    /// checksum passed once. A record never changes once written (apus-cache is this process's own
    /// and only ever appended to, or truncated with every record re-analysed), so later reads check
    /// only its header. Kept in memory only, not in the snapshot: each open checks every record
    /// again, since a crash may have torn one before it reached the disk.
    var cacheVerified = false

    /// Points at a cache record this process just appended, so known whole.
    mutating func setCache(offset: Int64, length: UInt32) {
        cacheOffset = offset
        cacheLength = length
        cacheVerified = true
    }
}

/// `MessageRecord`s in UID order, stored as two parallel arrays.
struct RecordTable: RandomAccessCollection, MutableCollection {
    private(set) var hot: [HotRecord] = []
    private var cold: [ColdRecord] = []

    var startIndex: Int { 0 }
    var endIndex: Int { hot.count }

    subscript(position: Int) -> MessageRecord {
        get { MessageRecord(hot: hot[position], cold: cold[position]) }
        set {
            hot[position] = newValue.hot
            cold[position] = newValue.cold
        }
    }

    mutating func append(_ record: MessageRecord) {
        hot.append(record.hot)
        cold.append(record.cold)
    }

    mutating func reserveCapacity(_ capacity: Int) {
        hot.reserveCapacity(capacity)
        cold.reserveCapacity(capacity)
    }

    mutating func removeAll() {
        hot.removeAll()
        cold.removeAll()
    }

    /// Removes the records whose UID is in `uids`, keeping the order of the others.
    mutating func removeAll(uids: Set<UInt32>) {
        var kept = 0
        for position in hot.indices where !uids.contains(hot[position].uid) {
            hot[kept] = hot[position]
            cold[kept] = cold[position]
            kept += 1
        }
        hot.removeLast(hot.count - kept)
        cold.removeLast(cold.count - kept)
    }

    /// Sets only the hot part of a record (flag changes).
    mutating func setHot(_ record: HotRecord, at position: Int) { hot[position] = record }

    /// Sets where a record's file name is in the name arena.
    mutating func setName(offset: UInt32, length: UInt32, at position: Int) {
        cold[position].nameOffset = offset
        cold[position].nameLength = length
    }

    /// Points a record at a cache record this process just appended.
    mutating func setCache(offset: Int64, length: UInt32, at position: Int) {
        cold[position].setCache(offset: offset, length: length)
    }

    /// Remembers that the record's cache record passed its checksum.
    mutating func markCacheVerified(at position: Int) { cold[position].cacheVerified = true }
}
