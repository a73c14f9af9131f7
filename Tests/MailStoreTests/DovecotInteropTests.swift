// MailStoreTests: interoperation with Dovecot's Maildir, both ways, through `doveadm`.
//
// Dovecot refuses to run mail access as root, so its doveadm runs as `nobody` on a private config
// (no auth service: USER and HOME from the environment). The tests need doveadm and root (to hand
// the Maildir to `nobody`); elsewhere they are skipped, saying so.

import Glibc
import Testing
@testable import MailStore

enum Doveadm {
    static let path = "/usr/bin/doveadm"
    static var isUsable: Bool { access(path, X_OK) == 0 && getuid() == 0 && getpwnam("nobody") != nil }

    /// Writes a config whose only mail location is `maildir`, and returns its path.
    static func configure(in directory: String, maildir: String) -> String {
        for sub in ["run", "state", "home"] { mkdir(directory + "/" + sub, 0o777) }
        // `nobody` must be able to walk down to the Maildir.
        for path in [directory, directory + "/data", directory + "/data/users"] { chmod(path, 0o755) }
        let config = """
            mail_location = maildir:\(maildir)
            mail_uid = nobody
            mail_gid = \(groupName())
            first_valid_uid = 0
            first_valid_gid = 0
            base_dir = \(directory)/run
            state_dir = \(directory)/state
            log_path = /dev/stderr
            namespace inbox {
              inbox = yes
              separator = /
            }
            
            """
        writeFile(directory + "/dovecot.conf", Array(config.utf8))
        chownTree(directory + "/home")
        return directory + "/dovecot.conf"
    }

    static func groupName() -> String {
        guard let user = getpwnam("nobody"), let group = getgrgid(user.pointee.pw_gid) else { return "nogroup" }
        return String(cString: group.pointee.gr_name)
    }

    /// Gives a tree to `nobody`, so Dovecot may read and write it.
    static func chownTree(_ path: String) {
        _ = runProgram("/bin/chown", ["-R", "nobody:" + groupName(), path], environment: [])
    }

    @discardableResult
    static func run(_ config: String, home: String, _ arguments: [String], input: [UInt8] = []) -> String {
        let result = runProgram(path, ["-c", config] + arguments, environment: ["HOME=\(home)", "USER=tester", "PATH=/usr/bin:/bin"],
                                input: input)
        #expect(result.status == 0, "doveadm \(arguments) failed")
        return String(decoding: result.output, as: UTF8.self)
    }
}

@Suite(.enabled(if: Doveadm.isUsable, "needs /usr/bin/doveadm and root")) struct DovecotInteropTests {
    @Test func maildirWrittenByDovecotIsServedWithEveryMessageAndFlag() throws {
        let temporary = TemporaryDirectory()
        _ = try temporary.openStore()  // makes data/users; the store is closed again at once
        let maildir = temporary.path + "/data/users/dove"
        mkdir(maildir, 0o700)
        Doveadm.chownTree(maildir)
        let config = Doveadm.configure(in: temporary.path, maildir: maildir)
        let home = temporary.path + "/home"
        let bodies = ["first", "second", "third", "fourth"]
        for body in bodies {
            Doveadm.run(config, home: home, ["save", "-m", "INBOX"], input: Array("From: a@example.org\r\nSubject: \(body)\r\n\r\n\(body) body\r\n".utf8))
        }
        Doveadm.run(config, home: home, ["flags", "add", "\\Seen $Work", "mailbox", "INBOX", "uid", "1"])
        Doveadm.run(config, home: home, ["flags", "add", "\\Answered \\Flagged", "mailbox", "INBOX", "uid", "2"])
        Doveadm.run(config, home: home, ["flags", "add", "\\Deleted \\Draft Later", "mailbox", "INBOX", "uid", "4"])
        Doveadm.run(config, home: home, ["mailbox", "create", "Work/Sub"])
        Doveadm.run(config, home: home, ["save", "-m", "Work/Sub"], input: Array("Subject: nested\r\n\r\nnested body\r\n".utf8))
        let dovecotList = try #require(readFile(maildir + "/dovecot-uidlist"))
        let validity = UInt32(String(decoding: dovecotList.split(separator: 0x20)[1].dropFirst(), as: UTF8.self))

        let store = try temporary.openStore()
        let user = try store.openUser(UserName("dove"))
        #expect(try user.listMailboxes().map(\.name.wireName).contains("Work/Sub"))
        let inbox = try user.mailbox(.inbox)
        #expect(inbox.uidValidity == validity)
        #expect(inbox.uids == [1, 2, 3, 4])
        #expect(inbox.message(at: 0).flags == [.seen])
        #expect(inbox.keywordNames(inbox.message(at: 0).keywords) == ["$Work"])
        #expect(inbox.message(at: 1).flags == [.answered, .flagged])
        #expect(inbox.message(at: 2).flags == [])
        #expect(inbox.message(at: 3).flags == [.deleted, .draft])
        #expect(inbox.keywordNames(inbox.message(at: 3).keywords) == ["Later"])
        for (uid, body) in zip(inbox.uids, bodies) {
            // Dovecot stores LF line ends; RFC822.SIZE counts them as CRLF (its W= field).
            let expected = Array("From: a@example.org\nSubject: \(body)\n\n\(body) body\n".utf8)
            #expect(try storedBytes(of: uid, in: inbox) == expected)
            #expect(inbox.message(at: inbox.position(of: uid)!).size == Int64(expected.count + 4))
        }
        let nested = try user.mailbox(MailboxName("Work/Sub"))
        #expect(nested.count == 1)
        #expect(try storedBytes(of: nested.uids[0], in: nested) == Array("Subject: nested\n\nnested body\n".utf8))
    }

    @Test func maildirWrittenByApusIsReadByDovecotWithEveryMessageAndFlag() throws {
        let temporary = TemporaryDirectory()
        do {
            let store = try temporary.openStore()
            let user = try store.openUser(UserName("apus"))
            let inbox = try user.mailbox(.inbox)
            try appendMessage(sampleMessage("one"), to: inbox, flags: [.seen], keywords: ["$Work"])
            try appendMessage(sampleMessage("two"), to: inbox, flags: [.answered, .flagged])
            try appendMessage(sampleMessage("three"), to: inbox)
            try inbox.commitNow(try #require(inbox.prepareStore(uids: [3], change: .add, flags: [.draft],
                                                                keywords: ["Later"]).commit))
            try user.createMailbox(MailboxName("Lists/Swift"))
            try appendMessage(sampleMessage("nested"), to: try user.mailbox(MailboxName("Lists/Swift")), flags: [.seen])
            try user.close()
        }
        let maildir = temporary.path + "/data/users/apus"
        Doveadm.chownTree(maildir)
        let config = Doveadm.configure(in: temporary.path, maildir: maildir)
        let home = temporary.path + "/home"
        let list = Doveadm.run(config, home: home, ["-f", "tab", "mailbox", "list"])
        for name in ["INBOX", "Sent", "Lists/Swift"] {
            #expect(list.split(separator: "\n").contains(Substring(name)), "\(name) in \(list)")
        }
        let flags = Doveadm.run(config, home: home, ["-f", "tab", "fetch", "flags", "mailbox", "INBOX", "all"])
            .split(separator: "\n").dropFirst().map { Set($0.split(separator: " ").filter { $0 != "\\Recent" }) }
        #expect(flags == [["\\Seen", "$Work"], ["\\Answered", "\\Flagged"], ["\\Draft", "Later"]])
        for (sequence, tag) in ["one", "two", "three"].enumerated() {
            let text = Doveadm.run(config, home: home, ["-f", "flow", "fetch", "text", "mailbox", "INBOX", "\(sequence + 1)"])
            #expect(text.contains("line 2 of \(tag)"), "message \(sequence + 1): \(text)")
        }
        let nested = Doveadm.run(config, home: home, ["-f", "tab", "fetch", "flags text", "mailbox", "Lists/Swift", "all"])
        #expect(nested.contains("\\Seen"))
        #expect(nested.contains("line 0 of nested"))
    }
}
