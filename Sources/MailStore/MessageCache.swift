// MailStore: `apus-cache`, the analyzer blobs of a mailbox, appended one record at a time:
//
//     magic u32 "APC1" | uid u32 | length u32 | reserved u32 | checksum u64 | blob (length bytes)
//
// The index keeps each message's record offset. A record whose header or checksum does not match is
// treated as missing, and the blob is made again from the message file. The checksum is summed on a
// record's first read in an open mailbox only (`ColdRecord.cacheVerified`). The file is a cache: it is
// never fsynced, and it is emptied when the index is rebuilt.

import Glibc

struct MessageCache {
    static let fileName = "apus-cache"
    static let magic: UInt32 = 0x3143_5041  // "APC1"
    static let headerSize = 24

    let file: FileHandle
    private(set) var end: Int64

    init(in directory: Int32) throws(StoreError) {
        file = try FileHandle.openFile(MessageCache.fileName, in: directory, flags: O_RDWR | O_CREAT)
        end = try file.status().size
    }

    mutating func reset() throws(StoreError) {
        _ = try systemCall("ftruncate") { ftruncate(file.fd, 0) }
        end = 0
    }

    /// Appends a blob; returns where the index should look for it.
    mutating func append(_ blob: [UInt8], uid: UInt32) throws(StoreError) -> (offset: Int64, length: UInt32) {
        var record: [UInt8] = []
        record.reserveCapacity(MessageCache.headerSize + blob.count)
        record.appendLittleEndian(MessageCache.magic)
        record.appendLittleEndian(uid)
        record.appendLittleEndian(UInt32(blob.count))
        record.appendLittleEndian(UInt32(0))
        record.appendLittleEndian(blob.withUnsafeBytes { checksum64($0) })
        record.append(contentsOf: blob)
        let offset = end
        try file.write(record, at: offset)
        end += Int64(record.count)
        return (offset, UInt32(blob.count))
    }

    /// Runs `body` over the blob at `offset`, read into temporary memory (on the stack when it
    /// fits) rather than an array: FETCH reads one per message only to decode it. Nil when there
    /// is none or it does not check out (its checksum is not summed again when `verified`, see
    /// ``blobRange(inRecord:uid:length:verified:)``).
    func withBlob<T>(offset: Int64, length: UInt32, uid: UInt32, verified: Bool,
                     _ body: (UnsafeRawBufferPointer) -> T) -> T? {
        let recordSize = MessageCache.headerSize + Int(length)
        guard offset >= 0, offset + Int64(recordSize) <= end else { return nil }
        return withUnsafeTemporaryAllocation(byteCount: recordSize, alignment: 8) { buffer -> T? in
            guard let count = try? file.read(into: buffer, at: offset), count == recordSize,
                  let blob = MessageCache.blobRange(inRecord: UnsafeRawBufferPointer(buffer), uid: uid, length: length,
                                                    verified: verified)
            else { return nil }
            return body(UnsafeRawBufferPointer(rebasing: buffer[blob]))
        }
    }

    /// Up to `count` bytes from `offset` (several records in one read); nil when there are none.
    func readSpan(offset: Int64, count: Int) -> [UInt8]? {
        guard offset >= 0, offset < end, count > 0,
            let bytes = try? file.read(count: Int(min(Int64(count), end - offset)), at: offset)
        else { return nil }
        return bytes
    }

    /// Where the blob lies in the record starting at `record`'s first byte, when the record is whole
    /// and its header (magic, UID, length) and checksum check out; the checksum is skipped when the
    /// record is `verified` already (``ColdRecord/cacheVerified``). A range, not a copy: SEARCH reads
    /// each blob in place in its read-ahead window.
    static func blobRange(inRecord record: UnsafeRawBufferPointer, uid: UInt32, length: UInt32,
                          verified: Bool) -> Range<Int>?
    {
        let recordSize = MessageCache.headerSize + Int(length)
        guard record.count >= recordSize,
            record.loadLittleEndian(at: 0, as: UInt32.self) == MessageCache.magic,
            record.loadLittleEndian(at: 4, as: UInt32.self) == uid,
            record.loadLittleEndian(at: 8, as: UInt32.self) == length
        else { return nil }
        let blob = MessageCache.headerSize..<recordSize
        guard verified || record.loadLittleEndian(at: 16, as: UInt64.self) == checksum64(UnsafeRawBufferPointer(rebasing: record[blob]))
        else { return nil }
        return blob
    }
}

/// Reads the cached blobs of a pass over a mailbox in position order (SEARCH), many records per
/// read: records are appended as messages arrive, so a mailbox's lie one after another in UID
/// order, and a search of SUBJECT over N messages costs a few reads of apus-cache instead of N.
struct MessageCacheReadAhead {
    /// Most bytes one read takes in (records that do not fit wait for the next read).
    let windowLimit: Int
    private var windowStart: Int64 = 0
    private var window: [UInt8] = []

    init(windowLimit: Int = 128 * 1024) {
        self.windowLimit = windowLimit
    }

    /// A message's cached blob as the read-ahead found it: in place in the window (valid until the
    /// next ``locateBlob(at:of:)``), or analysed again into an array of its own.
    enum Blob {
        case inWindow(Range<Int>)
        case analysed([UInt8])
    }

    /// The cached blob of the message at `position`: from the current window, or from a new one
    /// read from there on; a record that is missing or does not check out is analysed again
    /// (``Mailbox/cachedAnalysis(of:)``), and one that checks out is remembered as whole. Empty
    /// when there is no analyzer or no message file.
    mutating func locateBlob(at position: Int, of mailbox: Mailbox) -> Blob {
        let record = mailbox.index.records[position]
        let recordSize = Int64(MessageCache.headerSize) + Int64(record.cacheLength)
        if record.cacheOffset >= 0 {
            if !covers(record.cacheOffset, recordSize) { refill(from: position, of: mailbox) }
            if covers(record.cacheOffset, recordSize) {
                let start = Int(record.cacheOffset - windowStart)
                let blob = window.withUnsafeBytes {
                    MessageCache.blobRange(inRecord: UnsafeRawBufferPointer(rebasing: $0[start...]), uid: record.uid,
                                           length: record.cacheLength, verified: record.cacheVerified)
                }
                if let blob {
                    // Every SEARCH reads every record: its checksum is summed once per open mailbox.
                    if !record.cacheVerified { mailbox.index.records.markCacheVerified(at: position) }
                    return .inWindow(blob.lowerBound + start..<blob.upperBound + start)
                }
            }
        }
        return .analysed((try? mailbox.cachedAnalysis(of: record.uid)) ?? [])
    }

    /// Calls `body` with the bytes of a blob the last ``locateBlob(at:of:)`` returned.
    func withBytes<Result>(of blob: Blob, _ body: (UnsafeRawBufferPointer) -> Result) -> Result {
        switch blob {
        case .inWindow(let range): window.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[range])) }
        case .analysed(let bytes): bytes.withUnsafeBytes(body)
        }
    }

    private func covers(_ offset: Int64, _ size: Int64) -> Bool {
        offset >= windowStart && offset + size <= windowStart + Int64(window.count)
    }

    /// Reads the record at `position` and the following ones that lie after it within the limit.
    private mutating func refill(from position: Int, of mailbox: Mailbox) {
        let records = mailbox.index.records
        let start = records[position].cacheOffset
        var end = start + Int64(MessageCache.headerSize) + Int64(records[position].cacheLength)
        var next = position + 1
        while next < records.count {
            let record = records[next]
            let recordEnd = record.cacheOffset + Int64(MessageCache.headerSize) + Int64(record.cacheLength)
            guard record.cacheOffset >= start, recordEnd - start <= Int64(windowLimit) else { break }
            end = max(end, recordEnd)
            next += 1
        }
        windowStart = start
        window = mailbox.cache.readSpan(offset: start, count: Int(end - start)) ?? []
    }
}
