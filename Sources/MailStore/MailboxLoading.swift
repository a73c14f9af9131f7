// MailStore: work that reads much of the disk, split so it runs on a worker thread while the
// mailbox's owner thread goes on serving: opening a mailbox (its index, or a reconcile of a Maildir
// another program changed) and analysing messages whose ENVELOPE/BODYSTRUCTURE is not cached.

/// Opens one mailbox off the owner thread: `load()` on a worker, then `UserMaildir.adopt(_:)` on the
/// owner thread with the result.
///
/// `@unchecked Sendable`: it carries the user's `UserMaildir` to the worker, but `load()` uses only
/// what may be used from any thread (the folder's files, immutable configuration, the atomic
/// UIDVALIDITY counter, and a lock held while reading); the new `Mailbox` is touched by no one
/// else until adopted.
public struct MailboxLoader: @unchecked Sendable {
    let user: UserMaildir
    /// The mailbox being opened.
    public let name: MailboxName

    /// Reads and reconciles the mailbox. Blocks on the disk: run it on a worker.
    public func load() throws(StoreError) -> LoadedMailbox { try user.load(name) }
}

/// A mailbox loaded on a worker, on its way to the owner thread. `@unchecked Sendable`: only one
/// thread holds it at a time (the worker, then the owner after the hand-over).
public struct LoadedMailbox: @unchecked Sendable {
    let mailbox: Mailbox
}

/// Messages to analyse (ENVELOPE/BODYSTRUCTURE) on a worker: their files, opened on the owner
/// thread. `run()` maps and parses each; `Mailbox.storeAnalyses(_:)` caches the results.
public struct AnalysisBatch: Sendable {
    let analyzer: any MessageAnalyzer
    let files: [(uid: UInt32, file: FileHandle)]

    /// The blobs, by UID; a file that cannot be read is left out (FETCH then parses it itself).
    public func run() -> [(uid: UInt32, blob: [UInt8])] {
        files.compactMap { entry in
            (try? Mailbox.withMappedFile(entry.file) { analyzer.analyze($0) }).map { (entry.uid, $0) }
        }
    }
}

extension Mailbox {
    /// Whether the message's analysis is in the cache (FETCH ENVELOPE needs no message read).
    public func hasCachedAnalysis(of uid: UInt32) -> Bool {
        guard let position = index.position(of: uid) else { return true }  // gone: nothing to analyse
        return configuration.analyzer == nil || index.records[position].cacheOffset >= 0
    }

    /// A batch for the messages among `uids` without a cached analysis; nil when none needs one.
    public func analysisBatch(for uids: [UInt32]) -> AnalysisBatch? {
        guard let analyzer = configuration.analyzer else { return nil }
        let files = uids.compactMap { uid -> (uid: UInt32, file: FileHandle)? in
            guard !hasCachedAnalysis(of: uid), let opened = try? openMessage(uid: uid) else { return nil }
            return (uid, opened.file)
        }
        return files.isEmpty ? nil : AnalysisBatch(analyzer: analyzer, files: files)
    }

    /// Caches analyses made by `AnalysisBatch.run()`, on the owner thread.
    public func storeAnalyses(_ results: [(uid: UInt32, blob: [UInt8])]) {
        guard !isClosed else { return }
        for (uid, blob) in results {
            guard let position = index.position(of: uid), index.records[position].cacheOffset < 0,
                  let (offset, length) = try? cache.append(blob, uid: uid)
            else { continue }
            index.records.setCache(offset: offset, length: length, at: position)
            indexChanged = true
        }
    }
}
