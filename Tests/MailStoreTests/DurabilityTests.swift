// MailStoreTests: the helper threads of parallel fsync rounds.

import Glibc
import Testing
@testable import MailStore

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
