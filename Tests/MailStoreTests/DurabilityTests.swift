// MailStoreTests: what each fsync policy fsyncs, and the helper threads of parallel fsync rounds.

import Glibc
import Testing
@testable import MailStore

/// The descriptors `commit` fsyncs when it runs, by phase: its staged message files (phase 0) and
/// its sync targets (one fsync per distinct target per phase, as `DurabilityBatcher.run` does).
private func fsyncedDescriptors(of commit: PendingCommit) -> [[Int32]] {
    (0..<PendingCommit.phaseCount).map { phase in
        var descriptors: [Int32] = []
        for operation in commit.operations[phase] {
            if case .syncFile(let file) = operation { descriptors.append(file.fd) }
        }
        return descriptors + commit.syncTargets[phase].map(\.fd)
    }
}

@Suite struct FsyncPolicyTests {
    @Test func optimizedIsTheDefault() {
        #expect(StoreConfiguration().fsyncPolicy == .optimized)
    }

    @Test(arguments: FsyncPolicy.allCases)
    func appendFsyncsItsFileTheUIDListAndCurUnderEveryPolicy(policy: FsyncPolicy) throws {
        let temporary = TemporaryDirectory()
        let store = try temporary.openStore(StoreConfiguration(fsyncPolicy: policy))
        let inbox = try store.openUser(UserName("u")).mailbox(.inbox)
        let writer = try inbox.beginAppend()
        try sampleMessage("a").withUnsafeBytes { try writer.write($0) }
        let staged = try writer.finish()
        let commit = try inbox.prepareAppend([AppendRequest(message: staged, keywords: ["Blue"])])
        let synced = fsyncedDescriptors(of: commit)
        #expect(synced[0].contains(staged.file.fd))
        #expect(synced[1].contains(inbox.uidListFile.fd))
        #expect(synced[2] == [inbox.cur.fd])
        // A new keyword: the table is replaced durably (file and directory fsynced inside the operation).
        #expect(commit.operations[1].contains { if case .replace = $0 { true } else { false } })
        try inbox.commitNow(commit)
        #expect(try storedBytes(of: 1, in: inbox) == sampleMessage("a"))
    }

    @Test(arguments: FsyncPolicy.allCases)
    func storeAndExpungeFsyncCurOnlyUnderAlways(policy: FsyncPolicy) throws {
        let temporary = TemporaryDirectory()
        let store = try temporary.openStore(StoreConfiguration(fsyncPolicy: policy))
        let inbox = try store.openUser(UserName("u")).mailbox(.inbox)
        for tag in ["a", "b"] { try appendMessage(sampleMessage(tag), to: inbox) }
        let expected: [Int32] = policy == .always ? [inbox.cur.fd] : []

        let flagged = try #require(try inbox.prepareStore(uids: [1, 2], change: .add, flags: [.deleted]).commit)
        #expect(fsyncedDescriptors(of: flagged)[2] == expected)
        #expect(fsyncedDescriptors(of: flagged).joined().allSatisfy { $0 != inbox.cur.fd } == (policy == .optimized))
        try inbox.commitNow(flagged)
        #expect(fileNames(in: temporary.path + "/data/users/u/cur").allSatisfy { $0.hasSuffix(":2,T") })

        let expunge = try #require(inbox.prepareExpunge(uids: [1]))
        #expect(fsyncedDescriptors(of: expunge)[3] == expected)
        try inbox.commitNow(expunge)
        #expect(inbox.uids == [2])
        #expect(fileNames(in: temporary.path + "/data/users/u/cur").count == 1)
    }

    /// A moved message must be durable in its new mailbox before it leaves the old one, whatever the
    /// policy: the destination's cur/ is fsynced in phase 2, before phase 3 unlinks the source.
    @Test(arguments: FsyncPolicy.allCases)
    func moveFsyncsTheDestinationBeforeTheSourceUnlink(policy: FsyncPolicy) throws {
        let temporary = TemporaryDirectory()
        let store = try temporary.openStore(StoreConfiguration(fsyncPolicy: policy))
        let user = try store.openUser(UserName("u"))
        let inbox = try user.mailbox(.inbox)
        let archive = try user.mailbox(MailboxName("Archive"))
        try appendMessage(sampleMessage("a"), to: inbox)
        let move = try inbox.prepareMove(uids: [1], to: archive)
        let synced = fsyncedDescriptors(of: move.commit)
        #expect(synced[1] == [archive.uidListFile.fd])
        #expect(synced[2] == [archive.cur.fd])
        #expect(move.commit.operations[3].count == 1)
        #expect(synced[3] == (policy == .always ? [inbox.cur.fd] : []))
        try inbox.commitNow(move.commit)
        #expect(inbox.uids.isEmpty)
        #expect(try storedBytes(of: 1, in: archive) == sampleMessage("a"))
    }
}

@Suite struct ConcurrentSyncTests {
    /// `count` small files in `directory`, open for writing.
    private func files(_ count: Int, in directory: TemporaryDirectory) throws -> [FileHandle] {
        let root = try FileHandle.openDirectory(path: directory.path)
        return try (0..<count).map { index in
            let file = try FileHandle.openFile("f\(index)", in: root.fd, flags: O_WRONLY | O_CREAT)
            try file.append(Array("data \(index)\n".utf8))
            return file
        }
    }

    /// Thread ids of this process's fsync helpers (named in /proc/self/task/*/comm).
    private func helperThreads() -> Set<String> {
        var helpers: Set<String> = []
        guard let tasks = opendir("/proc/self/task") else { return helpers }
        defer { closedir(tasks) }
        while let entry = readdir(tasks) {
            let tid = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard tid.first?.isNumber == true else { continue }
            // /proc files report size 0: read what there is.
            let fd = open("/proc/self/task/\(tid)/comm", O_RDONLY)
            guard fd >= 0 else { continue }  // the thread ended
            var comm = [UInt8](repeating: 0, count: 32)
            let length = read(fd, &comm, comm.count)
            close(fd)
            if length > 0, comm[..<length].starts(with: "apus-fsync".utf8) { helpers.insert(tid) }
        }
        return helpers
    }

    @Test func roundsReuseTheSameHelperThreads() throws {
        let temporary = TemporaryDirectory()
        let targets = try files(8, in: temporary)
        var failures = 0
        ConcurrentSync.run(targets) { _, _ in failures += 1 }
        // Eight targets want seven helpers: all the process may ever have. A helper names itself
        // once it runs, which may be after the round (the caller can do all the work alone).
        var first = helperThreads()
        var clock = timespec()
        clock_gettime(CLOCK_MONOTONIC, &clock)
        let deadline = clock.tv_sec + 10
        while first.count < ConcurrentSync.maximumThreads - 1, clock.tv_sec < deadline {
            sched_yield()
            first = helperThreads()
            clock_gettime(CLOCK_MONOTONIC, &clock)
        }
        #expect(first.count == ConcurrentSync.maximumThreads - 1)
        for _ in 0..<100 { ConcurrentSync.run(targets) { _, _ in failures += 1 } }
        #expect(failures == 0)
        #expect(helperThreads() == first)
        #expect(SyncHelperThreads.shared.threadCount == ConcurrentSync.maximumThreads - 1)
    }

    @Test func aFailedFsyncIsReportedWithItsTargetAndTheOthersStillRun() throws {
        let temporary = TemporaryDirectory()
        var targets = try files(6, in: temporary)
        // fsync of an invalid descriptor fails with EBADF.
        targets.insert(FileHandle(fd: -1), at: 4)
        var failed: [Int] = []
        ConcurrentSync.run(targets) { index, error in
            failed.append(index)
            #expect(error == StoreError.system(call: "fsync", errno: EBADF))
        }
        #expect(failed == [4])
    }
}
