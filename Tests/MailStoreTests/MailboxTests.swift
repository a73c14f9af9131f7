// MailStoreTests: UIDs, the index, and the durable operations of one mailbox.

import Glibc
import Testing
@testable import MailStore

/// An analyzer that records the message length and first line: enough to see that blobs are kept.
struct FirstLineAnalyzer: MessageAnalyzer {
    func analyze(_ message: UnsafeRawBufferPointer) -> [UInt8] {
        Array("\(message.count):".utf8) + Array(message.prefix { $0 != 0x0D && $0 != 0x0A })
    }
}

/// An analyzer that must not run: fetching cached blobs may not read any message file.
struct ForbiddenAnalyzer: MessageAnalyzer {
    func analyze(_ message: UnsafeRawBufferPointer) -> [UInt8] {
        Issue.record("a message file was read")
        return []
    }
}

@Suite struct MailboxTests {
    @Test func appendedMessagesSurviveReopenByteForByteWithFlagsInFileNames() throws {
        let temporary = TemporaryDirectory()
        var uids: [UInt32] = []
        let validity: UInt32
        do {
            let store = try temporary.openStore()
            let inbox = try store.openUser(UserName("u")).mailbox(.inbox)
            validity = inbox.uidValidity
            uids.append(try appendMessage(sampleMessage("one"), to: inbox, flags: [.seen], internalDate: 1_000_000))
            uids.append(try appendMessage(sampleMessage("two"), to: inbox, flags: [.flagged, .answered],
                                          keywords: ["$Work"]))
            #expect(uids == [1, 2])
        }
        let names = fileNames(in: temporary.path + "/data/users/u/cur")
        #expect(names.count == 2)
        #expect(names[0].hasSuffix(":2,S"))
        #expect(names[1].hasSuffix(":2,FRa"))
        #expect(names[0].contains(",S=\(sampleMessage("one").count),W=\(sampleMessage("one").count)"))
        #expect(readFile(temporary.path + "/data/users/u/dovecot-keywords") == Array("0 $Work\n".utf8))

        let store = try temporary.openStore()
        let inbox = try store.openUser(UserName("u")).mailbox(.inbox)
        #expect(inbox.uidValidity == validity)
        #expect(inbox.uids == uids)
        #expect(inbox.uidNext == 3)
        #expect(try storedBytes(of: 1, in: inbox) == sampleMessage("one"))
        #expect(try storedBytes(of: 2, in: inbox) == sampleMessage("two"))
        #expect(inbox.message(at: 0).flags == [.seen])
        #expect(inbox.message(at: 0).internalDate == 1_000_000)
        #expect(inbox.message(at: 0).size == Int64(sampleMessage("one").count))
        #expect(inbox.keywordNames(inbox.message(at: 1).keywords) == ["$Work"])
    }

    @Test func rfc822SizeCountsBareLineFeedsAsCRLF() throws {
        let temporary = TemporaryDirectory()
        let store = try temporary.openStore()
        let inbox = try store.openUser(UserName("u")).mailbox(.inbox)
        let message = Array("Subject: x\n\nbody\r\nmore\n".utf8)
        let uid = try appendMessage(message, to: inbox)
        let position = try #require(inbox.position(of: uid))
        #expect(inbox.message(at: position).size == Int64(message.count + 3))
        #expect(try storedBytes(of: uid, in: inbox) == message)
    }

    /// The size counts the same however the message arrives in slices, a CRLF split between two
    /// slices included: a LF opening a slice after one that ended in CR is not bare.
    @Test func bareLineFeedsCountTheSameForEverySplit() {
        let message = Array("\nA: x\r\n\nbody\r\r\nmore\n\n\rlast\r".utf8)
        var whole = LineEndingCounter()
        message.withUnsafeBytes { whole.count($0) }
        #expect(whole.bareLineFeeds == 4)
        #expect(whole.virtualSize == Int64(message.count + 4))
        for split in 0...message.count {
            var counter = LineEndingCounter()
            message.withUnsafeBytes { bytes in
                counter.count(UnsafeRawBufferPointer(rebasing: bytes[..<split]))
                counter.count(UnsafeRawBufferPointer(rebasing: bytes[split...]))
            }
            #expect(counter.bareLineFeeds == 4, "split at \(split)")
            #expect(counter.bytes == Int64(message.count))
        }
    }

    @Test func streamedAppendAcrossManySlicesAndTheSizeLimit() throws {
        let temporary = TemporaryDirectory()
        let store = try temporary.openStore(StoreConfiguration(maximumMessageSize: 200_000))
        let inbox = try store.openUser(UserName("u")).mailbox(.inbox)
        var message: [UInt8] = Array("Subject: big\r\n\r\n".utf8)
        for index in 0..<150_000 { message.append(UInt8(ascii: "a") + UInt8(index % 26)) }
        let writer = try inbox.beginAppend()
        var offset = 0
        var step = 1
        while offset < message.count {
            let end = min(message.count, offset + step)
            try message[offset..<end].withUnsafeBytes { try writer.write($0) }
            offset = end
            step = step * 3 % 100_003 + 1
        }
        let commit = try inbox.prepareAppend([AppendRequest(message: try writer.finish())])
        try inbox.commitNow(commit)
        #expect(try storedBytes(of: commit.assignedUIDs[0], in: inbox) == message)

        let tooBig = try inbox.beginAppend()
        let chunk = [UInt8](repeating: 0x41, count: 100_001)
        try chunk.withUnsafeBytes { try tooBig.write($0) }
        #expect(throws: StoreError.messageTooLarge) { try chunk.withUnsafeBytes { try tooBig.write($0) } }
        #expect(throws: StoreError.writerClosed) { try tooBig.finish() }
        #expect(fileNames(in: temporary.path + "/data/users/u/tmp").isEmpty)
    }

    @Test func multiappendIsAllOrNothingWhenOneMessageIsRefused() throws {
        let temporary = TemporaryDirectory()
        let store = try temporary.openStore()
        let inbox = try store.openUser(UserName("u")).mailbox(.inbox)
        func stage(_ tag: String) throws -> StagedMessage {
            let writer = try inbox.beginAppend()
            try sampleMessage(tag).withUnsafeBytes { try writer.write($0) }
            return try writer.finish()
        }
        let good = try stage("a")
        let bad = try stage("b")
        #expect(throws: StoreError.invalidKeyword) {
            try inbox.prepareAppend([AppendRequest(message: good, keywords: ["ok"]),
                                     AppendRequest(message: bad, keywords: ["bad keyword"])])
        }
        #expect(inbox.count == 0)
        #expect(inbox.keywords.isEmpty)
        let commit = try inbox.prepareAppend([AppendRequest(message: good), AppendRequest(message: bad)])
        try inbox.commitNow(commit)
        #expect(commit.assignedUIDs == [1, 2])
        #expect(inbox.count == 2)
    }

    /// A MULTIAPPEND interrupted after `phases` of its commit: phase 1 (the UID-list lines) is the
    /// commit point; the reconciliation that follows a crash rolls it forward whole or drops it whole.
    @Test(arguments: [1, 2])
    func interruptedMultiappendIsAllOrNothing(phases: Int) throws {
        let temporary = TemporaryDirectory()
        let store = try temporary.openStore()
        let inbox = try store.openUser(UserName("u")).mailbox(.inbox)
        var requests: [AppendRequest] = []
        for tag in ["a", "b", "c"] {
            let writer = try inbox.beginAppend()
            try sampleMessage(tag).withUnsafeBytes { try writer.write($0) }
            requests.append(AppendRequest(message: try writer.finish(), flags: [.flagged]))
        }
        let commit = try inbox.prepareAppend(requests)
        var interrupted = commit
        for phase in phases..<PendingCommit.phaseCount {
            interrupted.operations[phase] = []
            interrupted.syncTargets[phase] = []
        }
        #expect(interrupted.makeDurable() == nil)
        // As after a crash: the index is reconciled with what is on disk.
        inbox.complete(commit, error: .system(call: "simulated crash", errno: EIO))
        if phases == 1 {
            #expect(inbox.count == 0)
        } else {
            #expect(inbox.uids == [1, 2, 3])
            for (uid, tag) in zip(inbox.uids, ["a", "b", "c"]) {
                #expect(try storedBytes(of: uid, in: inbox) == sampleMessage(tag))
                #expect(inbox.message(at: Int(uid) - 1).flags == [.flagged])
            }
        }
        // UIDNEXT does not go back, even over UIDs the lost commit had reserved.
        #expect(try appendMessage(sampleMessage("d"), to: inbox) == 4)
    }

    @Test func expungedUIDsAreNeverReusedEvenAfterTheIndexIsLost() throws {
        let temporary = TemporaryDirectory()
        do {
            let store = try temporary.openStore()
            let inbox = try store.openUser(UserName("u")).mailbox(.inbox)
            for tag in ["a", "b", "c"] { try appendMessage(sampleMessage(tag), to: inbox) }
            let result = try inbox.prepareStore(uids: [2, 3], change: .add, flags: [.deleted])
            try inbox.commitNow(try #require(result.commit))
            let expunge = try #require(inbox.prepareExpunge())
            try inbox.commitNow(expunge)
            #expect(inbox.uids == [1])
        }
        Directory.removeFileForTest(temporary.path + "/data/users/u/apus-index")
        let store = try temporary.openStore()
        let inbox = try store.openUser(UserName("u")).mailbox(.inbox)
        #expect(inbox.uids == [1])
        #expect(try appendMessage(sampleMessage("d"), to: inbox) == 4)
    }

    @Test func uidListIsCompactedAtCloseWithoutLosingUIDNext() throws {
        let temporary = TemporaryDirectory()
        do {
            let store = try temporary.openStore()
            let inbox = try store.openUser(UserName("u")).mailbox(.inbox)
            var commits: [PendingCommit] = []
            for tag in 0..<200 {
                let writer = try inbox.beginAppend()
                try sampleMessage("\(tag)").withUnsafeBytes { try writer.write($0) }
                commits.append(try inbox.prepareAppend([AppendRequest(message: try writer.finish(), flags: [.deleted])]))
            }
            let batcher = DurabilityBatcher()
            for commit in commits { batcher.enqueue(commit) }
            for completion in batcher.runPending() { inbox.complete(completion.commit, error: completion.error) }
            try inbox.commitNow(try #require(inbox.prepareExpunge(uids: Array(1...199))))
            try inbox.close()
        }
        let list = try #require(readFile(temporary.path + "/data/users/u/apus-uidlist"))
        let lines = list.split(separator: 0x0A)
        #expect(lines.count == 2)
        #expect(lines[0].starts(with: Array("3 V".utf8)) && lines[0].reversed().starts(with: Array("N201".utf8).reversed()))
        #expect(lines[1].starts(with: Array("200 :".utf8)))
        Directory.removeFileForTest(temporary.path + "/data/users/u/apus-index")
        let store = try temporary.openStore()
        let inbox = try store.openUser(UserName("u")).mailbox(.inbox)
        #expect(inbox.uids == [200])
        #expect(inbox.uidNext == 201)
    }

    @Test func storeFlagsRenamesFilesAndHonoursUnchangedSince() throws {
        let temporary = TemporaryDirectory()
        let store = try temporary.openStore()
        let inbox = try store.openUser(UserName("u")).mailbox(.inbox)
        for tag in ["a", "b"] { try appendMessage(sampleMessage(tag), to: inbox) }
        let before = inbox.message(at: 0).modseq
        let first = try inbox.prepareStore(uids: [1, 2, 99], change: .add, flags: [.seen, .flagged], keywords: ["Todo"])
        try inbox.commitNow(try #require(first.commit))
        #expect(first.changed == [1, 2])
        #expect(inbox.message(at: 0).modseq > before)
        #expect(fileNames(in: temporary.path + "/data/users/u/cur").allSatisfy { $0.hasSuffix(":2,FSa") })

        // Storing what is already there changes nothing and no modseq.
        let again = try inbox.prepareStore(uids: [1], change: .add, flags: [.seen])
        #expect(again.commit == nil && again.changed.isEmpty)

        let stale = inbox.message(at: 0).modseq - 1
        let conditional = try inbox.prepareStore(uids: [1, 2], change: .remove, flags: [.flagged],
                                                 unchangedSince: stale)
        #expect(conditional.modified == [1, 2])
        #expect(conditional.changed.isEmpty)
        let current = inbox.highestModseq
        let replace = try inbox.prepareStore(uids: [2], change: .replace, flags: [.draft], unchangedSince: current)
        try inbox.commitNow(try #require(replace.commit))
        #expect(inbox.message(at: 1).flags == [.draft])
        #expect(inbox.message(at: 1).keywords.isEmpty)
        #expect(inbox.highestModseq == inbox.message(at: 1).modseq)
    }

    @Test func messageStaysReadableWhileItsFlagRenameIsInFlight() throws {
        let temporary = TemporaryDirectory()
        let store = try temporary.openStore()
        let inbox = try store.openUser(UserName("u")).mailbox(.inbox)
        try appendMessage(sampleMessage("a"), to: inbox)
        let pending = try #require(try inbox.prepareStore(uids: [1], change: .add, flags: [.seen]).commit)
        #expect(try storedBytes(of: 1, in: inbox) == sampleMessage("a"))
        try inbox.commitNow(pending)
        #expect(try storedBytes(of: 1, in: inbox) == sampleMessage("a"))
        #expect(throws: StoreError.noSuchMessage(9)) { try inbox.openMessage(uid: 9) }
    }

    @Test func uidSetsResolveToExistingUIDsWhateverTheirWidth() throws {
        let temporary = TemporaryDirectory()
        let store = try temporary.openStore()
        let inbox = try store.openUser(UserName("u")).mailbox(.inbox)
        for tag in ["a", "b", "c", "d"] { try appendMessage(sampleMessage(tag), to: inbox) }
        try inbox.commitNow(try #require(inbox.prepareStore(uids: [2], change: .add, flags: [.deleted]).commit))
        try inbox.commitNow(try #require(inbox.prepareExpunge()))
        #expect(inbox.uids(in: [1...UInt32.max]) == [1, 3, 4])
        #expect(inbox.uids(in: [3...3, 1...2, 2...4]) == [1, 3, 4])
        #expect(inbox.uids(in: [5...9]).isEmpty)
    }

    @Test func copyAndMoveKeepFlagsAndReportCopyUID() throws {
        let temporary = TemporaryDirectory()
        let store = try temporary.openStore()
        let user = try store.openUser(UserName("u"))
        let inbox = try user.mailbox(.inbox)
        let archive = try user.mailbox(MailboxName("Archive"))
        try appendMessage(sampleMessage("a"), to: inbox, flags: [.seen], keywords: ["Blue"], internalDate: 5000)
        try appendMessage(sampleMessage("b"), to: inbox, flags: [.answered])
        try appendMessage(sampleMessage("c"), to: inbox)
        let copy = try inbox.prepareCopy(uids: [1, 2], to: archive)
        try inbox.commitNow(copy.commit)
        #expect(copy.sourceUIDs == [1, 2])
        #expect(copy.commit.assignedUIDs == [1, 2])
        #expect(copy.commit.uidValidity == archive.uidValidity)
        #expect(archive.message(at: 0).flags == [.seen])
        #expect(archive.keywordNames(archive.message(at: 0).keywords) == ["Blue"])
        #expect(archive.message(at: 0).internalDate == 5000)
        #expect(try storedBytes(of: 1, in: archive) == sampleMessage("a"))

        let move = try inbox.prepareMove(uids: [3, 2], to: archive)
        try inbox.commitNow(move.commit)
        #expect(move.sourceUIDs == [2, 3])
        #expect(move.commit.assignedUIDs == [3, 4])
        #expect(inbox.uids == [1])
        #expect(archive.uids == [1, 2, 3, 4])
        #expect(try storedBytes(of: 4, in: archive) == sampleMessage("c"))
        #expect(fileNames(in: temporary.path + "/data/users/u/cur").count == 1)
    }

    @Test func cachedAnalysisIsServedWithoutReadingMessageFiles() throws {
        let temporary = TemporaryDirectory()
        do {
            let store = try temporary.openStore(StoreConfiguration(analyzer: FirstLineAnalyzer()))
            let inbox = try store.openUser(UserName("u")).mailbox(.inbox)
            for tag in ["a", "b", "c"] { try appendMessage(sampleMessage(tag), to: inbox) }
        }
        let store = try temporary.openStore(StoreConfiguration(analyzer: ForbiddenAnalyzer()))
        let inbox = try store.openUser(UserName("u")).mailbox(.inbox)
        for (uid, tag) in zip(inbox.uids, ["a", "b", "c"]) {
            let expected = Array("\(sampleMessage(tag).count):From: a@example.org".utf8)
            #expect(try inbox.cachedAnalysis(of: uid) == expected)
        }
    }

    @Test func damagedCacheRecordIsRebuiltFromTheMessage() throws {
        let temporary = TemporaryDirectory()
        do {
            let store = try temporary.openStore(StoreConfiguration(analyzer: FirstLineAnalyzer()))
            let inbox = try store.openUser(UserName("u")).mailbox(.inbox)
            try appendMessage(sampleMessage("a"), to: inbox)
        }
        let path = temporary.path + "/data/users/u/apus-cache"
        var cache = try #require(readFile(path))
        cache[cache.count - 1] ^= 0xFF
        writeFile(path, cache)
        let store = try temporary.openStore(StoreConfiguration(analyzer: FirstLineAnalyzer()))
        let inbox = try store.openUser(UserName("u")).mailbox(.inbox)
        #expect(try inbox.cachedAnalysis(of: 1) == Array("\(sampleMessage("a").count):From: a@example.org".utf8))
    }

    @Test(arguments: ["truncate", "flip", "garbage", "remove"])
    func damagedIndexIsRebuiltWithTheSameUIDsAndFlags(_ damage: String) throws {
        let temporary = TemporaryDirectory()
        var expected: [MessageInfo] = []
        do {
            let store = try temporary.openStore()
            let inbox = try store.openUser(UserName("u")).mailbox(.inbox)
            for tag in ["a", "b", "c", "d"] { try appendMessage(sampleMessage(tag), to: inbox, flags: [.seen]) }
            let store2 = try inbox.prepareStore(uids: [2], change: .replace, flags: [.flagged], keywords: ["K"])
            try inbox.commitNow(try #require(store2.commit))
            try inbox.commitNow(try #require(inbox.prepareStore(uids: [1], change: .add, flags: [.deleted]).commit))
            try inbox.commitNow(try #require(inbox.prepareExpunge()))
            expected = (0..<inbox.count).map { inbox.message(at: $0) }
        }
        let path = temporary.path + "/data/users/u/apus-index"
        var bytes = try #require(readFile(path))
        switch damage {
        case "truncate": bytes.removeLast(7)
        case "flip": bytes[bytes.count / 2] ^= 0x10
        case "garbage": bytes = Array("not an index".utf8)
        default: bytes = []
        }
        if damage == "remove" { Directory.removeFileForTest(path) } else { writeFile(path, bytes) }
        let store = try temporary.openStore()
        let inbox = try store.openUser(UserName("u")).mailbox(.inbox)
        let rebuilt = (0..<inbox.count).map { inbox.message(at: $0) }
        #expect(rebuilt.map(\.uid) == expected.map(\.uid))
        #expect(rebuilt.map(\.flags) == expected.map(\.flags))
        #expect(rebuilt.map { inbox.keywordNames($0.keywords) } == [["K"], [], []])
        #expect(rebuilt.map(\.size) == expected.map(\.size))
        #expect(rebuilt.map(\.internalDate) == expected.map(\.internalDate))
        #expect(rebuilt.map(\.saveDate) == expected.map(\.saveDate))
        // Modseqs handed out before the loss are forgotten, so new ones lie above all of them.
        #expect(rebuilt.allSatisfy { $0.modseq > expected.map(\.modseq).max()! })
        #expect(inbox.uidNext == 5)
    }

    @Test func deliveryIntoNewGetsUIDsIsRecentAndIsAnnounced() throws {
        let temporary = TemporaryDirectory()
        let store = try temporary.openStore()
        let inbox = try store.openUser(UserName("u")).mailbox(.inbox)
        try appendMessage(sampleMessage("a"), to: inbox)
        #expect(inbox.claimRecent() == [1])
        let session = EventRecorder()
        inbox.addObserver(session)
        writeFile(temporary.path + "/data/users/u/new/1764000000.M1P7.mda", Array("Subject: d\n\nhi\n".utf8))
        let commit = try #require(try inbox.checkForNewMessages())
        #expect(session.events.isEmpty)
        try inbox.commitNow(commit)
        #expect(session.events == [.appended([2])])
        #expect(inbox.message(at: 1).size == 15 + 3)
        #expect(inbox.message(at: 1).saveDate == 1_764_000_000)
        #expect(fileNames(in: temporary.path + "/data/users/u/new").isEmpty)
        #expect(fileNames(in: temporary.path + "/data/users/u/cur").contains("1764000000.M1P7.mda:2,"))
        // The first session to look gets \Recent; the next one does not.
        #expect(inbox.claimRecent() == [2])
        #expect(inbox.claimRecent().isEmpty)
        #expect(try inbox.checkForNewMessages() == nil)
    }

    /// NOOP's poll of new/ reads the directory only when its time changed, or is too recent to prove
    /// anything (two changes in one clock tick leave one time).
    @Test func newDirectoryIsReadOnlyWhenItsTimeChanged() throws {
        let temporary = TemporaryDirectory()
        let store = try temporary.openStore()
        let inbox = try store.openUser(UserName("u")).mailbox(.inbox)
        let newPath = temporary.path + "/data/users/u/new"
        func setTime(secondsAgo: Int) {
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            var times = [timespec(tv_sec: now.tv_sec - secondsAgo, tv_nsec: 0), timespec(tv_sec: now.tv_sec - secondsAgo, tv_nsec: 0)]
            #expect(utimensat(AT_FDCWD, newPath, &times, 0) == 0)
        }
        // A recent time proves nothing: a delivery that keeps it is still found.
        setTime(secondsAgo: 0)
        #expect(try inbox.checkForNewMessages() == nil)
        writeFile(newPath + "/1764000000.M1P7.mda", Array("Subject: d\n\nhi\n".utf8))
        setTime(secondsAgo: 0)
        let first = try #require(try inbox.checkForNewMessages())
        try inbox.commitNow(first)
        // An old, unchanged time is trusted: the directory is not read (this delivery, hidden by
        // putting the old time back, is not seen) until the time changes.
        setTime(secondsAgo: 10)
        #expect(try inbox.checkForNewMessages() == nil)
        writeFile(newPath + "/1764000001.M2P7.mda", Array("Subject: e\n\nhi\n".utf8))
        setTime(secondsAgo: 10)
        #expect(try inbox.checkForNewMessages() == nil, "unchanged old time: no directory read")
        setTime(secondsAgo: 5)
        let second = try #require(try inbox.checkForNewMessages())
        try inbox.commitNow(second)
        #expect(inbox.count == 2)
    }

    @Test func flagsChangedByAnotherMaildirReaderWhileClosedAreSeenWithNewModseqs() throws {
        let temporary = TemporaryDirectory()
        var highest: UInt64 = 0
        do {
            let store = try temporary.openStore()
            let inbox = try store.openUser(UserName("u")).mailbox(.inbox)
            for tag in ["a", "b"] { try appendMessage(sampleMessage(tag), to: inbox) }
            highest = inbox.highestModseq
            try inbox.close()
        }
        // As mutt would: mark the second message seen and replied by renaming its file.
        let cur = temporary.path + "/data/users/u/cur/"
        let second = fileNames(in: cur)[1]
        #expect(rename(cur + second, cur + second.replacingSuffix(":2,", with: ":2,RS")) == 0)
        let store = try temporary.openStore()
        let inbox = try store.openUser(UserName("u")).mailbox(.inbox)
        #expect(inbox.message(at: 0).flags == [])
        #expect(inbox.message(at: 1).flags == [.answered, .seen])
        #expect(inbox.message(at: 0).modseq <= highest)
        #expect(inbox.message(at: 1).modseq > highest)
    }

    @Test func dovecotUIDListIsImportedWithItsUIDsAndKeywords() throws {
        let temporary = TemporaryDirectory()
        _ = try temporary.openStore().openUser(UserName("d"))
        let root = temporary.path + "/data/users/d"
        writeFile(root + "/dovecot-uidlist", Array("""
            3 V1500000000 N120 Gabcdef
            100 W1234 :1500000000.M1P1.host,S=14,W=16
            117 :1500000001.M2P2.host,S=14,W=16
            
            """.utf8))
        writeFile(root + "/dovecot-keywords", Array("0 Important\n1 $Label2\n".utf8))
        writeFile(root + "/cur/1500000000.M1P1.host,S=14,W=16:2,RSb", Array("Subject: a\n\nx\n".utf8))
        writeFile(root + "/cur/1500000001.M2P2.host,S=14,W=16:2,Ta", Array("Subject: b\n\ny\n".utf8))
        writeFile(root + "/cur/1500000002.M3P3.host,S=14,W=16:2,", Array("Subject: c\n\nz\n".utf8))
        let store = try temporary.openStore()
        let inbox = try store.openUser(UserName("d")).mailbox(.inbox)
        #expect(inbox.uidValidity == 1_500_000_000)
        #expect(inbox.uids == [100, 117, 120])
        #expect(inbox.uidNext == 121)
        #expect(inbox.message(at: 0).flags == [.answered, .seen])
        #expect(inbox.keywordNames(inbox.message(at: 0).keywords) == ["$Label2"])
        #expect(inbox.message(at: 1).flags == [.deleted])
        #expect(inbox.keywordNames(inbox.message(at: 1).keywords) == ["Important"])
        #expect(inbox.message(at: 0).size == 16)
    }

    @Test func keywordTableHoldsTwentySixKeywordsAndRefusesMore() throws {
        let temporary = TemporaryDirectory()
        let store = try temporary.openStore()
        let inbox = try store.openUser(UserName("u")).mailbox(.inbox)
        try appendMessage(sampleMessage("a"), to: inbox)
        let names = (0..<26).map { "K\($0)" }
        try inbox.commitNow(try #require(inbox.prepareStore(uids: [1], change: .add, flags: [], keywords: names).commit))
        #expect(inbox.keywords == names)
        #expect(!inbox.canCreateKeywords)
        #expect(fileNames(in: temporary.path + "/data/users/u/cur")[0].hasSuffix(":2,abcdefghijklmnopqrstuvwxyz"))
        #expect(throws: StoreError.tooManyKeywords) {
            try inbox.prepareStore(uids: [1], change: .add, flags: [], keywords: ["OneTooMany"])
        }
        // Keywords compare case-insensitively, so this is not a new one.
        #expect(try inbox.prepareStore(uids: [1], change: .add, flags: [.seen], keywords: ["k3"]).changed == [1])
        #expect(throws: StoreError.invalidKeyword) {
            try inbox.prepareStore(uids: [1], change: .add, flags: [], keywords: [String(repeating: "k", count: 101)])
        }
        #expect(inbox.keywords == names)
    }

    @Test func exhaustedUIDSpaceIsAnErrorNotACrash() throws {
        let temporary = TemporaryDirectory()
        _ = try temporary.openStore().openUser(UserName("d"))
        let root = temporary.path + "/data/users/d"
        writeFile(root + "/dovecot-uidlist", Array("3 V7 N4294967294\n4294967293 :1.M1P1.h,S=14,W=16\n".utf8))
        writeFile(root + "/cur/1.M1P1.h,S=14,W=16:2,", Array("Subject: a\n\nx\n".utf8))
        let store = try temporary.openStore()
        let inbox = try store.openUser(UserName("d")).mailbox(.inbox)
        #expect(inbox.uids == [4_294_967_293])
        try appendMessage(sampleMessage("last"), to: inbox)
        #expect(inbox.uidNext == UInt32.max)
        #expect(throws: StoreError.uidSpaceExhausted) { try appendMessage(sampleMessage("none"), to: inbox) }
        #expect(inbox.count == 2)
    }

    @Test func groupCommitRunsManyCommitsInOneRound() throws {
        let temporary = TemporaryDirectory()
        let store = try temporary.openStore()
        let user = try store.openUser(UserName("u"))
        let inbox = try user.mailbox(.inbox)
        let session = EventRecorder()
        inbox.addObserver(session)
        let batcher = DurabilityBatcher()
        var commits: [PendingCommit] = []
        for tag in 0..<20 {
            let writer = try inbox.beginAppend()
            try sampleMessage("\(tag)").withUnsafeBytes { try writer.write($0) }
            let commit = try inbox.prepareAppend([AppendRequest(message: try writer.finish())])
            batcher.enqueue(commit)
            commits.append(commit)
        }
        let flagged = try #require(try inbox.prepareStore(uids: [20], change: .add, flags: [.flagged]).commit)
        batcher.enqueue(flagged)
        let completions = batcher.runPending()
        #expect(completions.map(\.commit.id) == (commits + [flagged]).map(\.id))
        #expect(completions.allSatisfy { $0.error == nil })
        for completion in completions { inbox.complete(completion.commit, error: completion.error) }
        #expect(session.events.count == 21)
        #expect(batcher.runPending().isEmpty)
        try user.close()
        let reopened = try store.openUser(UserName("u")).mailbox(.inbox)
        #expect(reopened.count == 20)
        #expect(reopened.message(at: 19).flags == [.flagged])
    }

    @Test func failedCommitReconcilesTheIndexWithTheDisk() throws {
        let temporary = TemporaryDirectory()
        let store = try temporary.openStore()
        let inbox = try store.openUser(UserName("u")).mailbox(.inbox)
        try appendMessage(sampleMessage("a"), to: inbox)
        // Another program removes the file behind the store's back; the rename then fails.
        for name in fileNames(in: temporary.path + "/data/users/u/cur") {
            Directory.removeFileForTest(temporary.path + "/data/users/u/cur/" + name)
        }
        let result = try inbox.prepareStore(uids: [1], change: .add, flags: [.seen])
        #expect(inbox.count == 1)
        #expect(throws: StoreError.self) { try inbox.commitNow(try #require(result.commit)) }
        #expect(inbox.count == 0)
    }
}

extension Directory {
    static func removeFileForTest(_ path: String) { unlink(path) }
}

extension String {
    func replacingSuffix(_ suffix: String, with replacement: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) + replacement : self
    }
}
