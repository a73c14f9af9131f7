// IMAPBackendTests: a STORE that only renames (no fsync under `fsync = optimized`) runs on its loop
// when nothing else of the loop is in flight, and behaves as one made durable on a worker: the
// answer, the flags on disk and the other sessions' updates are the same.

import MailStore
import Testing
import TestSupport
@testable import IMAPBackend

@Suite struct InlineCommitTests {
    @Test(arguments: [FsyncPolicy.optimized, .always])
    func flagChangesRunOnTheLoopOnlyWithoutFsyncs(policy: FsyncPolicy) throws {
        let server = try RunningServer { $0.storeFsync = policy }
        defer { server.stop() }
        let writer = try TestClient(port: server.plainPort)
        _ = writer.readLine()
        #expect(writer.command("a", "LOGIN alice secret").contains("a OK"))
        #expect(writer.command("b", "APPEND INBOX {5+}\r\nhello").contains("b OK"))
        #expect(writer.command("c", "SELECT INBOX").contains("c OK"))
        let watcher = try TestClient(port: server.plainPort)
        _ = watcher.readLine()
        #expect(watcher.command("a", "LOGIN alice secret").contains("a OK"))
        #expect(watcher.command("b", "SELECT INBOX").contains("b OK"))

        let before = server.server.inlineCommitCount
        for (index, flag) in ["\\Seen", "\\Flagged", "\\Answered"].enumerated() {
            let answer = writer.command("s\(index)", "STORE 1 +FLAGS (\(flag))")
            #expect(answer.contains("* 1 FETCH (FLAGS (") && answer.contains(flag) && answer.contains("s\(index) OK"))
        }
        let inline = server.server.inlineCommitCount - before
        if policy == .optimized {
            #expect(inline >= 2, "the first change may mark the index in use (a round); the others run inline")
        } else {
            #expect(inline == 0, "with fsyncs the changes go to a round")
        }
        // The other session hears of the change either way, and the flags are in the file name.
        let update = watcher.command("n", "NOOP")
        #expect(update.contains("\\Seen") && update.contains("\\Flagged") && update.contains("\\Answered"), "\(update)")
        #expect(try onlyMessageFile(server).hasSuffix(":2,FRS"), "the flags are in the file's name")
    }
}
