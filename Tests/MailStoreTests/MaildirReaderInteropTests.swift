// MailStoreTests: a Maildir written by Apus, read by another Maildir reader (mbsync's Maildir
// store) with every message and flag.
//
// mbsync copies Apus's Maildir (far side, read-only use: `AltMap yes` keeps mbsync's UIDs in its
// own database instead of renaming our files) into a fresh Maildir (near side); the copy must hold
// every message byte for byte (but for the X-TUID header mbsync adds) with the same system flags. Where mbsync is missing the test fails
// under CI (which installs it) and is skipped elsewhere.

import Glibc
import Testing
@testable import MailStore

enum MBSync {
    static let path = "/usr/bin/mbsync"
    static var isInstalled: Bool { access(path, X_OK) == 0 }
    static var required: Bool { getenv("CI") != nil }
}

@Suite(.enabled(if: MBSync.isInstalled || MBSync.required, "needs /usr/bin/mbsync (Debian's isync)"))
struct MaildirReaderInteropTests {
    @Test func maildirWrittenByApusIsReadByMBSyncWithEveryMessageAndFlag() throws {
        try #require(MBSync.isInstalled, "mbsync is not installed: .ci/run installs Debian's isync")
        let temporary = TemporaryDirectory()
        let messages: [(folder: String, tag: String, flags: SystemFlags)] = [
            ("INBOX", "one", [.seen]),
            ("INBOX", "two", [.answered, .flagged]),
            ("INBOX", "three", []),
            ("INBOX", "four", [.draft, .seen]),
            ("Lists/Swift", "nested", [.flagged]),
        ]
        do {
            let store = try temporary.openStore()
            let user = try store.openUser(UserName("apus"))
            try user.createMailbox(MailboxName("Lists/Swift"))
            for message in messages {
                let mailbox = try user.mailbox(message.folder == "INBOX" ? .inbox : MailboxName(message.folder))
                try appendMessage(sampleMessage(message.tag), to: mailbox, flags: message.flags)
            }
            try user.close()
        }
        let source = temporary.path + "/data/users/apus"
        let copy = temporary.path + "/copy"
        mkdir(copy, 0o700)
        let config = """
            MaildirStore apus
            Inbox \(source)
            SubFolders Maildir++
            AltMap yes

            MaildirStore copy
            Path \(copy)/
            Inbox \(copy)/INBOX
            SubFolders Verbatim

            Channel everything
            Far :apus:
            Near :copy:
            Patterns *
            Create Near
            Sync Pull
            SyncState *

            """
        writeFile(temporary.path + "/mbsyncrc", Array(config.utf8))
        let result = runProgram(MBSync.path, ["-c", temporary.path + "/mbsyncrc", "-a"], environment: ["HOME=\(temporary.path)"])
        #expect(result.status == 0, "mbsync: \(String(decoding: result.output, as: UTF8.self))")

        for message in messages {
            let folder = copy + "/" + message.folder
            let found = (fileNames(in: folder + "/cur") .map { "cur/" + $0 } + fileNames(in: folder + "/new").map { "new/" + $0 })
                .compactMap { name -> (name: String, bytes: [UInt8])? in
                    // mbsync adds its own tracking header (X-TUID) to what it copies; the rest is ours.
                    guard let bytes = readFile(folder + "/" + name), withoutTrackingHeader(bytes) == sampleMessage(message.tag)
                    else { return nil }
                    return (name, bytes)
                }
            #expect(found.count == 1, "\(message.tag) copied once to \(message.folder): \(fileNames(in: folder + "/cur"))")
            guard let name = found.first?.name else { continue }
            // "cur/<unique>:2,<flags>": the letters after the info separator.
            let parts = name.split(separator: ":", maxSplits: 1)
            let letters = parts.count == 2 && parts[1].hasPrefix("2,") ? String(parts[1].dropFirst(2)) : ""
            #expect(SystemFlags(maildirLetters: letters) == message.flags, "\(message.tag): flags \(letters)")
        }
        // Reading left Apus's own files as they were: the store opens them with the same UIDs.
        let store = try temporary.openStore()
        let inbox = try store.openUser(UserName("apus")).mailbox(.inbox)
        #expect(inbox.uids == [1, 2, 3, 4])
        #expect(inbox.message(at: 3).flags == [.draft, .seen])
    }
}

/// The message without the `X-TUID: …` line mbsync inserts into messages it copies.
func withoutTrackingHeader(_ bytes: [UInt8]) -> [UInt8] {
    let marker = Array("X-TUID: ".utf8)
    var start = 0
    while start < bytes.count {
        var end = start
        while end < bytes.count, bytes[end] != 0x0A { end += 1 }
        if bytes[start...].starts(with: marker) { return Array(bytes[..<start] + bytes[min(end + 1, bytes.count)...]) }
        if end == start || (end == start + 1 && bytes[start] == 0x0D) { break } // end of the header
        start = end + 1
    }
    return bytes
}

extension SystemFlags {
    /// System flags from a Maildir info suffix (`FRS`), as any Maildir reader writes them.
    init(maildirLetters letters: String) {
        self = []
        for letter in letters {
            switch letter {
            case "D": insert(.draft)
            case "F": insert(.flagged)
            case "P": insert(.passed)
            case "R": insert(.answered)
            case "S": insert(.seen)
            case "T": insert(.deleted)
            default: break
            }
        }
    }
}
