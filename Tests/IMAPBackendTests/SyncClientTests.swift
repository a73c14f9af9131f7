// IMAPBackendTests: Maildir synchronisers against the back end: mbsync (isync) both ways, with flag
// changes, deletions and new local mail, and offlineimap3 pulling a mailbox.

import Glibc
import Testing
@testable import IMAPBackend

/// Files in a directory (names only).
func directoryEntries(_ path: String) -> [String] {
    guard let handle = opendir(path) else { return [] }
    defer { closedir(handle) }
    var names: [String] = []
    while let entry = readdir(handle) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { names.append(name) }
    }
    return names.sorted()
}

@Suite struct SyncClientTests {
    @Test func mbsyncBothWaysWithFlagsAndDeletions() throws {
        guard toolExists("mbsync") else {
            if isCI { Issue.record("mbsync is not installed (Debian package isync)") }
            return
        }
        let server = try RunningServer()
        defer { server.stop() }
        let client = try TestClient(port: server.plainPort)
        _ = client.readLine()
        _ = client.command("a", "LOGIN alice secret")
        for index in 1...3 {
            let message = "Subject: sync \(index)\r\nMessage-ID: <\(index)@sync>\r\n\r\nbody \(index)\r\n"
            #expect(client.command("p\(index)", "APPEND INBOX {\(message.utf8.count)+}\r\n\(message)").contains("OK"))
        }
        let home = server.accounts.directory.path
        let local = home + "/local"
        mkdir(local, 0o700)
        let configuration = """
            IMAPAccount apus
            Host localhost
            Port \(server.tlsPort)
            User alice
            Pass secret
            SSLType IMAPS
            CertificateFile \(server.certificatePath)

            IMAPStore remote
            Account apus

            MaildirStore local
            Path \(local)/
            Inbox \(local)/INBOX
            SubFolders Verbatim

            Channel sync
            Far :remote:
            Near :local:
            Patterns INBOX
            Create Both
            Expunge Both
            SyncState *

            """
        writeFile(home + "/mbsyncrc", configuration)
        let first = runProcess(["mbsync", "-c", home + "/mbsyncrc", "-a"], timeout: .seconds(60))
        #expect(first.status == 0, "\(first.output)")
        let pulled = directoryEntries(local + "/INBOX/cur") + directoryEntries(local + "/INBOX/new")
        #expect(pulled.count == 3, "\(pulled)")
        // Locally: mark one seen, delete another, add a new message.
        let curFiles = directoryEntries(local + "/INBOX/cur").map { local + "/INBOX/cur/" + $0 }
            + directoryEntries(local + "/INBOX/new").map { local + "/INBOX/new/" + $0 }
        guard curFiles.count == 3 else { return }
        let seenName = local + "/INBOX/cur/" + (curFiles[0].split(separator: "/").last!.split(separator: ":").first!) + ":2,S"
        rename(curFiles[0], String(seenName))
        unlink(curFiles[1])
        writeFile(local + "/INBOX/new/1700000000.local.host", "Subject: from local\r\nMessage-ID: <local@sync>\r\n\r\nnew\r\n")
        let second = runProcess(["mbsync", "-c", home + "/mbsyncrc", "-a"], timeout: .seconds(60))
        #expect(second.status == 0, "\(second.output)")
        let select = client.command("s", "SELECT INBOX")
        #expect(select.contains("* 3 EXISTS"), "\(select)")
        let seen = client.command("f", "SEARCH SEEN")
        #expect(seen.contains("* SEARCH 1\r\n") || seen.contains("* SEARCH 1 "), "\(seen)")
        let fromLocal = client.command("g", "SEARCH SUBJECT \"from local\"")
        #expect(fromLocal.contains("* SEARCH 3"), "\(fromLocal)")
        #expect(!client.command("h", "SEARCH SUBJECT \"sync 2\"").contains("* SEARCH 2"))
    }

    @Test func offlineimapPullsAMailbox() throws {
        guard toolExists("offlineimap") else {
            if isCI { Issue.record("offlineimap is not installed (Debian package offlineimap3)") }
            return
        }
        let server = try RunningServer()
        defer { server.stop() }
        let client = try TestClient(port: server.plainPort)
        _ = client.readLine()
        _ = client.command("a", "LOGIN alice secret")
        for index in 1...2 {
            let message = "Subject: offline \(index)\r\n\r\nbody \(index)\r\n"
            #expect(client.command("p\(index)", "APPEND INBOX {\(message.utf8.count)+}\r\n\(message)").contains("OK"))
        }
        let home = server.accounts.directory.path
        let configuration = """
            [general]
            accounts = apus
            metadata = \(home)/offlineimap-meta

            [Account apus]
            localrepository = local
            remoterepository = remote

            [Repository local]
            type = Maildir
            localfolders = \(home)/offline

            [Repository remote]
            type = IMAP
            remotehost = localhost
            remoteport = \(server.tlsPort)
            remoteuser = alice
            remotepass = secret
            ssl = yes
            sslcacertfile = \(server.certificatePath)
            folderfilter = lambda name: name == 'INBOX'

            """
        writeFile(home + "/offlineimaprc", configuration)
        let result = runProcess(["offlineimap", "-c", home + "/offlineimaprc", "-o", "-u", "basic"],
                                timeout: .seconds(90))
        #expect(result.status == 0, "\(result.output)")
        let files = directoryEntries(home + "/offline/INBOX/cur") + directoryEntries(home + "/offline/INBOX/new")
        #expect(files.count == 2, "\(result.output)")
    }
}
