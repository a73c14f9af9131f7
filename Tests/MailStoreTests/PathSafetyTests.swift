// MailStoreTests: mailbox and user names never reach outside the user's Maildir.

import CShims
import Glibc
import Testing
@testable import MailStore

@Suite struct PathSafetyTests {
    @Test(arguments: ["..", "a/..", "../x", "a/../b", ".", "a/./b", "", "/", "a/", "/a", "a//b", "a\u{0}b"])
    func rejectsTraversalAndEmptyLevels(_ name: String) {
        #expect(throws: StoreError.self) { try MailboxName(name) }
    }

    @Test func rejectsOverlongNamesAndDeepHierarchies() {
        #expect(throws: StoreError.invalidMailboxName("name too long")) {
            try MailboxName(String(repeating: "x", count: MailboxName.maximumEncodedLength))
        }
        #expect(throws: StoreError.invalidMailboxName("hierarchy too deep")) {
            try MailboxName(Array(repeating: "a", count: MailboxName.maximumDepth + 1).joined(separator: "/"))
        }
        // The longest name that fits is accepted.
        #expect((try? MailboxName(String(repeating: "x", count: MailboxName.maximumEncodedLength - 1))) != nil)
    }

    @Test(arguments: ["Work", "Work/Q1.2026", "~tmp/a%b", "a*b/c%d", "Ünïcødé/日本", "x\u{7}y", "..a/b..", "a\\b", "~"])
    func encodedNamesAreSingleSafeComponentsAndRoundTrip(_ wire: String) throws {
        let name = try MailboxName(wire)
        let folder = name.folderName
        #expect(folder.hasPrefix("."))
        #expect(!folder.contains("/"))
        #expect(!folder.contains(".."))
        #expect(!folder.utf8.contains { $0 < 0x20 || $0 == 0x7F })
        #expect(MailboxName(folderName: folder)?.wireName == wire)
    }

    @Test func inboxIsCaseInsensitiveOtherNamesAreNot() throws {
        #expect(try MailboxName("iNbOx").isInbox)
        #expect(try MailboxName("inbox/Sub").wireName == "INBOX/Sub")
        #expect(try MailboxName("Work") != MailboxName("work"))
        // NFC and NFD spellings are distinct byte strings and map to distinct folders.
        let composed = try MailboxName("caf\u{E9}")
        let decomposed = try MailboxName("cafe\u{301}")
        #expect(composed.folderName.utf8.count != decomposed.folderName.utf8.count)
    }

    @Test(arguments: ["", ".", "..", "../etc", "a/b", "-rf", String(repeating: "u", count: 129), "a\u{0}", "ü"])
    func rejectsUnsafeUserNames(_ name: String) {
        #expect(throws: StoreError.invalidUserName) { try UserName(name) }
    }

    @Test func hostileNamesStayInsideTheUsersMaildir() throws {
        let temporary = TemporaryDirectory()
        let store = try temporary.openStore()
        let user = try store.openUser(UserName("alice"))
        let hostile = ["%2E%2E", "a%2Fb", "*", "%", "~root", "x.y", "Café", "CAFÉ", "cafe\u{301}", "..%2F..%2Fetc"]
        for wire in hostile { try user.createMailbox(MailboxName(wire)) }
        for wire in ["..", "../escape", "a/../../escape", "x\u{0}y", String(repeating: "n", count: 300)] {
            #expect(throws: StoreError.self) { try user.createMailbox(MailboxName(wire)) }
        }
        // Everything is below data/users/alice, nothing appeared beside it.
        #expect(fileNames(in: temporary.path) == ["data"])
        #expect(fileNames(in: temporary.path + "/data") == ["apus.lock", "users"])
        #expect(fileNames(in: temporary.path + "/data/users") == ["alice"])
        let listed = try user.listMailboxes().map(\.name.wireName)
        for wire in hostile { #expect(listed.contains(wire)) }
        // A message appended to a hostile-named mailbox lands in that folder.
        let mailbox = try user.mailbox(MailboxName("..%2F..%2Fetc"))
        try appendMessage(sampleMessage("x"), to: mailbox)
        #expect(fileNames(in: temporary.path + "/data/users/alice/" + mailbox.name.folderName + "/cur").count == 1)
    }
}

@Suite struct LayoutTests {
    @Test func firstLoginCreatesInboxAndSpecialUseFolders() throws {
        let temporary = TemporaryDirectory()
        let store = try temporary.openStore()
        let user = try store.openUser(UserName("bob"))
        let entries = try user.listMailboxes()
        #expect(entries.map(\.name.wireName) == ["Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"])
        #expect(entries.first { $0.name.wireName == "Sent" }?.specialUses == [.sent])
        let root = temporary.path + "/data/users/bob"
        for folder in ["", "/.Sent", "/.Drafts", "/.Trash", "/.Junk", "/.Archive"] {
            for sub in ["cur", "new", "tmp"] {
                #expect(fileNames(in: root + folder).contains(sub), "\(folder)/\(sub)")
            }
        }
        #expect(fileNames(in: root + "/.Sent").contains("maildirfolder"))
        #expect(try user.subscriptions().sorted() == ["Archive", "Drafts", "Junk", "Sent", "Trash"])
    }

    /// users/ carries ext4's top-directory mark, so each user's Maildir gets a block group of its
    /// own (see MailStore.init).
    @Test func usersDirectoryIsMarkedAsTopOfHierarchies() throws {
        let temporary = TemporaryDirectory()
        let store = try temporary.openStore()
        let mark = cshim_is_top_directory(store.usersDirectory.fd)
        // A file system without inode flags (tmpfs) has nothing to mark; /tmp here and on CI is
        // ext4, which has them, so there the mark must be set.
        if mark == -ENOTTY || mark == -EOPNOTSUPP { return }
        #expect(mark == 1)
    }

    @Test func secondOpenerOfADataDirectoryGetsTheHoldersPid() throws {
        let temporary = TemporaryDirectory()
        let first = try temporary.openStore()
        #expect(throws: StoreError.dataDirectoryLocked(pid: getpid())) { try temporary.openStore() }
        #expect("\(StoreError.dataDirectoryLocked(pid: 42))".contains("in use by another Apus process (pid 42)"))
        _ = first
    }

    @Test func lockIsReleasedWhenTheStoreGoesAway() throws {
        let temporary = TemporaryDirectory()
        do { _ = try temporary.openStore() }
        #expect((try? temporary.openStore()) != nil)
    }
}
