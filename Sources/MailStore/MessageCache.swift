// MailStore: `apus-cache`, the analyzer blobs of a mailbox, appended one record at a time:
//
//     magic u32 "APC1" | uid u32 | length u32 | reserved u32 | checksum u64 | blob (length bytes)
//
// The index keeps each message's record offset. A record whose header or checksum does not match is
// treated as missing, and the blob is made again from the message file. The file is a cache: it is
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

    /// The blob at `offset`, or nil when there is none or it does not check out.
    func read(offset: Int64, length: UInt32, uid: UInt32) -> [UInt8]? {
        guard offset >= 0, offset + Int64(MessageCache.headerSize) + Int64(length) <= end,
            let bytes = try? file.read(count: MessageCache.headerSize + Int(length), at: offset),
            bytes.count == MessageCache.headerSize + Int(length)
        else { return nil }
        return bytes.withUnsafeBytes { buffer -> [UInt8]? in
            guard buffer.loadLittleEndian(at: 0, as: UInt32.self) == MessageCache.magic,
                buffer.loadLittleEndian(at: 4, as: UInt32.self) == uid,
                buffer.loadLittleEndian(at: 8, as: UInt32.self) == length
            else { return nil }
            let blob = UnsafeRawBufferPointer(rebasing: buffer[MessageCache.headerSize...])
            guard buffer.loadLittleEndian(at: 16, as: UInt64.self) == checksum64(blob) else { return nil }
            return Array(blob)
        }
    }
}
