// MailStoreTests: the folder tree, subscriptions, STATUS, quota and change notification.

import Glibc
import Testing
@testable import MailStore

@Suite struct UserMaildirTests {
    @Test func createDeleteAndRenameWithChildren() throws {
        let temporary = TemporaryDirectory()
        let store = try temporary.openStore()
        let user = try store.openUser(UserName("u"))
        try user.createMailbox(MailboxName("Projects/Apus"))
        try user.createMailbox(MailboxName("Projects"))
        #expect(throws: StoreError.mailboxExists) { try user.createMailbox(MailboxName("Projects")) }
        #expect(throws: StoreError.mailboxExists) { try user.createMailbox(MailboxName("inbox")) }
        try appendMessage(sampleMessage("p"), to: try user.mailbox(MailboxName("Projects/Apus")))
        try user.subscribe(MailboxName("Projects/Apus"))

        try user.renameMailbox(MailboxName("Projects"), to: MailboxName("Old/Projects"))
        let names = try user.listMailboxes().map(\.name.wireName)
        #expect(names.contains("Old/Projects/Apus"))
        #expect(!names.contains("Projects"))
        let old = try #require(try user.listMailboxes().first { $0.name.wireName == "Old" })
        #expect(old.isPlaceholder && old.hasChildren)
        #expect(try user.mailbox(MailboxName("Old/Projects/Apus")).count == 1)
        #expect(try user.subscriptions().contains("Old/Projects/Apus"))
        #expect(throws: StoreError.mailboxNotFound) { try user.mailbox(MailboxName("Projects/Apus")) }
        #expect(throws: StoreError.invalidMailboxName("cannot rename a mailbox into itself")) {
            try user.renameMailbox(MailboxName("Old/Projects"), to: MailboxName("Old/Projects/x"))
        }

        try user.deleteMailbox(MailboxName("Old/Projects"))
        #expect(try user.listMailboxes().map(\.name.wireName).contains("Old/Projects/Apus"))
        #expect(throws: StoreError.mailboxNotFound) { try user.deleteMailbox(MailboxName("Old/Projects")) }
        #expect(throws: StoreError.cannotDeleteInbox) { try user.deleteMailbox(.inbox) }
        // A recreated mailbox gets a new UIDVALIDITY.
        let before = try user.mailbox(MailboxName("Old/Projects/Apus")).uidValidity
        try user.deleteMailbox(MailboxName("Old/Projects/Apus"))
        try user.createMailbox(MailboxName("Old/Projects/Apus"))
        #expect(try user.mailbox(MailboxName("Old/Projects/Apus")).uidValidity != before)
        #expect(fileNames(in: temporary.path + "/data/users/u").allSatisfy { !$0.hasPrefix("apus-deleting") })
    }

    @Test func renameInboxMovesItsMessagesAndLeavesItEmpty() throws {
        let temporary = TemporaryDirectory()
        let store = try temporary.openStore()
        let user = try store.openUser(UserName("u"))
        let inbox = try user.mailbox(.inbox)
        let session = EventRecorder()
        inbox.addObserver(session)
        try appendMessage(sampleMessage("a"), to: inbox, flags: [.seen], keywords: ["K"])
        try appendMessage(sampleMessage("b"), to: inbox)
        let validity = inbox.uidValidity
        try user.renameMailbox(.inbox, to: MailboxName("Saved"))
        #expect(inbox.count == 0)
        #expect(session.events.last == .expunged([1, 2]))
        let saved = try user.mailbox(MailboxName("Saved"))
        #expect(saved.uids == [1, 2])
        #expect(saved.uidValidity == validity)
        #expect(saved.keywordNames(saved.message(at: 0).keywords) == ["K"])
        #expect(try storedBytes(of: 2, in: saved) == sampleMessage("b"))
        // INBOX goes on without reusing UIDs.
        #expect(try appendMessage(sampleMessage("c"), to: inbox) == 3)
    }

    @Test func statusReportsEveryItem() throws {
        let temporary = TemporaryDirectory()
        let store = try temporary.openStore()
        let user = try store.openUser(UserName("u"))
        let inbox = try user.mailbox(.inbox)
        try appendMessage(sampleMessage("a"), to: inbox, flags: [.seen])
        try appendMessage(sampleMessage("b"), to: inbox, flags: [.deleted])
        try appendMessage(sampleMessage("c"), to: inbox)
        let status = try user.status(.inbox)
        #expect(status.messages == 3)
        #expect(status.unseen == 2)
        #expect(status.deleted == 1)
        #expect(status.uidNext == 4)
        #expect(status.uidValidity == inbox.uidValidity)
        #expect(status.size == Int64(["a", "b", "c"].map { sampleMessage($0).count }.reduce(0, +)))
        #expect(status.highestModseq == inbox.highestModseq)
        #expect(status.recent == 3)
        _ = inbox.claimRecent()
        #expect(try user.status(.inbox).recent == 0)
        #expect(try user.status(MailboxName("Sent")).messages == 0)
        #expect(throws: StoreError.mailboxNotFound) { try user.status(MailboxName("Nope")) }
    }

    @Test func quotaLimitsMessagesAndStorageAcrossMailboxes() throws {
        let temporary = TemporaryDirectory()
        let size = Int64(sampleMessage("a").count)
        let store = try temporary.openStore(StoreConfiguration(quota: QuotaLimits(storageBytes: size * 10, messages: 3)))
        let user = try store.openUser(UserName("u"))
        let inbox = try user.mailbox(.inbox)
        let sent = try user.mailbox(MailboxName("Sent"))
        try appendMessage(sampleMessage("a"), to: inbox)
        try appendMessage(sampleMessage("a"), to: sent)
        try appendMessage(sampleMessage("a"), to: inbox)
        #expect(try user.quotaUsage() == QuotaUsage(storageBytes: size * 3, messages: 3))
        #expect(throws: StoreError.overQuota) { try appendMessage(sampleMessage("a"), to: inbox) }
        #expect(throws: StoreError.overQuota) { try inbox.prepareCopy(uids: [1], to: sent) }
        // A move does not add to the usage.
        try inbox.commitNow(try inbox.prepareMove(uids: [1], to: sent).commit)
        try inbox.commitNow(try #require(inbox.prepareStore(uids: [2], change: .add, flags: [.deleted]).commit))
        try inbox.commitNow(try #require(inbox.prepareExpunge(uids: [2])))
        #expect(try user.quotaUsage() == QuotaUsage(storageBytes: size * 2, messages: 2))
        try appendMessage(sampleMessage("a"), to: inbox)

        let small = TemporaryDirectory()
        let tight = try small.openStore(StoreConfiguration(quota: QuotaLimits(storageBytes: size + 1)))
        let box = try tight.openUser(UserName("u")).mailbox(.inbox)
        try appendMessage(sampleMessage("a"), to: box)
        #expect(throws: StoreError.overQuota) { try appendMessage(sampleMessage("b"), to: box) }
    }

    @Test func sessionsOfTheUserHearOfEachOthersChanges() throws {
        let temporary = TemporaryDirectory()
        let store = try temporary.openStore()
        let user = try store.openUser(UserName("u"))
        let inbox = try user.mailbox(.inbox)
        #expect(try user.mailbox(MailboxName("inbox")) === inbox)
        #expect(try store.openUser(UserName("u")) === user)
        let first = EventRecorder()
        let second = EventRecorder()
        inbox.addObserver(first)
        inbox.addObserver(second)
        try appendMessage(sampleMessage("a"), to: inbox)
        try appendMessage(sampleMessage("b"), to: inbox)
        let stored = try inbox.prepareStore(uids: [1], change: .add, flags: [.deleted])
        #expect(second.events.count == 2)  // nothing before the change is durable
        try inbox.commitNow(try #require(stored.commit))
        try inbox.commitNow(try #require(inbox.prepareExpunge()))
        let trash = try user.mailbox(MailboxName("Trash"))
        let trashWatcher = EventRecorder()
        trash.addObserver(trashWatcher)
        try inbox.commitNow(try inbox.prepareMove(uids: [2], to: trash).commit)
        let expected: [MailboxEvent] = [.appended([1]), .appended([2]), .flagsChanged([1]), .expunged([1]), .expunged([2])]
        #expect(first.events == expected)
        #expect(second.events == expected)
        #expect(trashWatcher.events == [.appended([1])])
        inbox.removeObserver(first)
        try appendMessage(sampleMessage("c"), to: inbox)
        #expect(first.events.count == expected.count)
        #expect(second.events.count == expected.count + 1)
    }

    @Test func subscriptionsSurviveAndReadDovecotVersion2() throws {
        let temporary = TemporaryDirectory()
        let store = try temporary.openStore()
        let user = try store.openUser(UserName("u"))
        try user.subscribe(MailboxName("Lists/Swift"))
        try user.unsubscribe(MailboxName("Junk"))
        #expect(try user.subscriptions() == ["Sent", "Drafts", "Trash", "Archive", "Lists/Swift"])
        writeFile(temporary.path + "/data/users/u/subscriptions", Array("V\t2\n\tWork\tClients\n\tINBOX\n".utf8))
        #expect(try user.subscriptions() == ["Work/Clients", "INBOX"])
    }
}
