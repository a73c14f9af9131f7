// MailStore: APPEND, streamed. The parser hands the literal's slices straight from its read buffer
// to an `AppendWriter`, which batches small slices into 64 KiB writes to a file in tmp/; no whole
// message is ever held in memory.
//
//     let writer = try mailbox.beginAppend()
//     try writer.write(slice)          // as many times as the literal arrives
//     let staged = try writer.finish(internalDate: date)      // worker thread is fine
//     let commit = try mailbox.prepareAppend([AppendRequest(message: staged, flags: [.seen])])
//     batcher.enqueue(commit); … batcher.runPending() …; mailbox.complete(commit, error: nil)

import Glibc

/// Writes one message into tmp/.
///
/// Threading: not `Sendable`; one thread at a time (the owner may hand it to a worker for `finish`).
/// Dropping an unfinished writer removes its file.
public final class AppendWriter {
    static let bufferCapacity = 1 << 16

    private let temporaryDirectory: FileHandle
    private let nameGenerator: MaildirNameGenerator
    private let analyzer: (any MessageAnalyzer)?
    private let maximumSize: Int64
    private var file: FileHandle?
    private var temporaryName: String
    private var buffer: [UInt8] = []
    private var counter = LineEndingCounter()
    private var written: Int64 = 0

    init(temporaryDirectory: FileHandle, nameGenerator: MaildirNameGenerator, analyzer: (any MessageAnalyzer)?,
         maximumSize: Int64) throws(StoreError)
    {
        self.temporaryDirectory = temporaryDirectory
        self.nameGenerator = nameGenerator
        self.analyzer = analyzer
        self.maximumSize = maximumSize
        temporaryName = nameGenerator.temporaryName()
        file = try FileHandle.openFile(temporaryName, in: temporaryDirectory.fd, flags: O_RDWR | O_CREAT | O_EXCL,
                                       mode: 0o600)
        buffer.reserveCapacity(AppendWriter.bufferCapacity)
    }

    deinit {
        if file != nil { unlinkat(temporaryDirectory.fd, temporaryName, 0) }
    }

    /// Appends the next slice of the message.
    ///
    /// - Throws: `StoreError.messageTooLarge` past the configured maximum (the file is removed),
    ///   `StoreError.writerClosed` after `finish` or a failure, or a write error.
    public func write(_ chunk: UnsafeRawBufferPointer) throws(StoreError) {
        guard let file else { throw .writerClosed }
        if counter.bytes + Int64(chunk.count) > maximumSize {
            cancel()
            throw .messageTooLarge
        }
        counter.count(chunk)
        if buffer.count + chunk.count <= AppendWriter.bufferCapacity {
            buffer.append(contentsOf: chunk)
            return
        }
        do {
            try flush(file)
            if chunk.count >= AppendWriter.bufferCapacity {
                try file.write(chunk, at: written)
                written += Int64(chunk.count)
            } else {
                buffer.append(contentsOf: chunk)
            }
        } catch {
            cancel()
            throw error
        }
    }

    private func flush(_ file: FileHandle) throws(StoreError) {
        guard !buffer.isEmpty else { return }
        let offset = written
        try file.write(buffer, at: offset)
        written += Int64(buffer.count)
        buffer.removeAll(keepingCapacity: true)
    }

    /// Removes the file; the writer cannot be used afterwards.
    public func cancel() {
        guard file != nil else { return }
        file = nil
        unlinkat(temporaryDirectory.fd, temporaryName, 0)
    }

    /// Completes the message: writes what is buffered, sets INTERNALDATE (seconds since the epoch;
    /// now when nil) as the file's mtime, runs the analyzer over the mapped file, and gives the file
    /// its final base name in tmp/. Nothing is fsynced yet (that is phase 0 of the commit).
    public func finish(internalDate: Int64? = nil) throws(StoreError) -> StagedMessage {
        guard let file else { throw .writerClosed }
        do {
            try flush(file)
            let now = currentTimeNanoseconds()
            let date = internalDate ?? now / 1_000_000_000
            var times = [timespec(tv_sec: Int(date), tv_nsec: 0), timespec(tv_sec: Int(date), tv_nsec: 0)]
            _ = try systemCall("futimens") { futimens(file.fd, &times) }
            var analysis: [UInt8] = []
            if let analyzer { analysis = try Self.analyze(file, size: written, with: analyzer) }
            let stem = nameGenerator.uniqueStem(now: now)
            let base = MaildirNameGenerator.base(stem: stem, fileSize: counter.bytes, virtualSize: counter.virtualSize)
            let stagedName = "apus." + base
            _ = try systemCall("renameat") {
                renameat(temporaryDirectory.fd, temporaryName, temporaryDirectory.fd, stagedName)
            }
            self.file = nil
            return StagedMessage(file: file, temporaryDirectory: temporaryDirectory, stagedName: stagedName, base: base,
                                 fileSize: counter.bytes, size: counter.virtualSize, internalDate: date,
                                 saveDate: now / 1_000_000_000, analysis: analysis)
        } catch {
            cancel()
            throw error
        }
    }

    static func analyze(_ file: FileHandle, size: Int64, with analyzer: any MessageAnalyzer) throws(StoreError)
        -> [UInt8]
    {
        try Mailbox.withFileBytes(file, size: Int(size)) { analyzer.analyze($0) }
    }
}

/// A message written to tmp/ and waiting for its commit.
///
/// Threading: `Sendable` (descriptors and immutable data).
public struct StagedMessage: Sendable {
    let file: FileHandle
    let temporaryDirectory: FileHandle
    let stagedName: String
    let base: String
    /// Bytes in the file.
    public let fileSize: Int64
    /// RFC822.SIZE.
    public let size: Int64
    /// INTERNALDATE, seconds since the epoch.
    public let internalDate: Int64
    let saveDate: Int64
    let analysis: [UInt8]

    /// Removes the file (the APPEND failed or was abandoned after `finish`).
    public func discard() {
        unlinkat(temporaryDirectory.fd, stagedName, 0)
    }
}

extension Mailbox {
    /// Starts an APPEND into this mailbox (creates a file in tmp/).
    public func beginAppend() throws(StoreError) -> AppendWriter {
        try AppendWriter(temporaryDirectory: tmp, nameGenerator: nameGenerator, analyzer: configuration.analyzer,
                         maximumSize: configuration.maximumMessageSize)
    }

    /// Prepares APPEND or MULTIAPPEND (RFC 3502) of staged messages, all or nothing: quota and
    /// keywords are checked for all of them before anything changes; they get consecutive UIDs.
    /// The messages are in the index at once; observers hear of them in `complete`.
    public func prepareAppend(_ requests: [AppendRequest]) throws(StoreError) -> PendingCommit {
        try index.ensureUIDsAvailable(requests.count)
        let addedSize = requests.reduce(Int64(0)) { $0 + $1.message.size }
        try user.checkQuota(addingMessages: Int64(requests.count), bytes: addedSize)
        let (oldTable, oldVersion) = (keywordTable, keywordsVersion)
        var keywordSets: [KeywordSet] = []
        var tableChanged = false
        for request in requests {
            do {
                let (set, changed) = try resolveKeywords(request.keywords)
                keywordSets.append(set)
                tableChanged = tableChanged || changed
            } catch {
                (keywordTable, keywordsVersion) = (oldTable, oldVersion)
                throw error
            }
        }
        let firstUID = index.uidNext
        var commit = makeCommit(assignedUIDs: requests.indices.map { firstUID + UInt32($0) })
        beginChange(in: &commit)
        if tableChanged { addKeywordTableWrite(to: &commit) }
        var lines: [UInt8] = []
        for (position, request) in requests.enumerated() {
            let staged = request.message
            let uid = firstUID + UInt32(position)
            let name = MaildirFilename.name(base: staged.base[...], flags: request.flags, keywords: keywordSets[position])
            var record = MessageRecord(
                uid: uid, flags: request.flags, keywords: keywordSets[position], modseq: nextModseq(),
                size: staged.size, fileSize: staged.fileSize, internalDate: staged.internalDate,
                saveDate: staged.saveDate)
            if !staged.analysis.isEmpty, let (offset, length) = try? cache.append(staged.analysis, uid: uid) {
                record.cold.setCache(offset: offset, length: length)
            }
            index.records.append(record)
            index.setName(name, ofRecordAt: index.records.count - 1)
            UIDList.appendLine(uid: uid, name: name, to: &lines)
            commit.add(.syncFile(staged.file), phase: 0)
            commit.add(.rename(from: staged.temporaryDirectory, staged.stagedName, to: cur, name), phase: 2, sync: cur)
        }
        index.uidNext = firstUID + UInt32(requests.count)
        commit.add(.append(uidListFile, lines), phase: 1, sync: uidListFile)
        user.record(commit, event: .appended(commit.assignedUIDs), in: self,
                     usage: (Int64(requests.count), addedSize))
        return commit
    }
}
