// IMAPBackendTests: neomutt under tmux opens INBOX over IMAPS and reads a message.

import Glibc
import Testing
@testable import IMAPBackend

@Suite struct MuttTests {
    @Test func neomuttOpensInboxAndReadsAMessage() throws {
        for tool in ["neomutt", "tmux"] where !toolExists(tool) {
            if isCI { Issue.record("\(tool) is not installed (Debian packages neomutt, tmux)") }
            return
        }
        let server = try RunningServer()
        defer { server.stop() }
        let client = try TestClient(port: server.plainPort)
        _ = client.readLine()
        _ = client.command("a", "LOGIN alice secret")
        let message = "From: Carol <carol@example.org>\r\nTo: alice@example.org\r\nSubject: Lunch on Friday\r\n"
            + "Date: Mon, 7 Feb 2026 12:00:00 +0000\r\n\r\nThe secret word is pelican.\r\n"
        #expect(client.command("p", "APPEND INBOX {\(message.utf8.count)+}\r\n\(message)").contains("p OK"))
        let home = server.accounts.directory.path
        let muttrc = """
            set folder = "imaps://alice@localhost:\(server.tlsPort)/"
            set spoolfile = "+INBOX"
            set imap_pass = "secret"
            set ssl_ca_certificates_file = "\(server.certificatePath)"
            set certificate_file = "\(home)/mutt-certificates"
            set header_cache = ""
            set message_cachedir = ""
            set mail_check_stats = no
            set sort = date
            set pager_stop = yes
            set wait_key = no

            """
        writeFile(home + "/muttrc", muttrc)
        let session = "apus-mutt-\(getpid())-\(server.tlsPort)"
        let socket = home + "/tmux.sock"
        let tmux = ["tmux", "-S", socket]
        defer { _ = runProcess(tmux + ["kill-server"], timeout: .seconds(10)) }
        // The tmux server daemonises with the client's descriptors: give it none of our pipes.
        let started = runProcess(["sh", "-c", "tmux -S \(socket) new-session -d -s \(session) -x 160 -y 40 "
                                  + "'env HOME=\(home) TERM=xterm neomutt -n -F \(home)/muttrc' </dev/null >/dev/null 2>&1"],
                                 timeout: .seconds(10))
        #expect(started.status == 0, "\(started.output)")
        func screen() -> String { runProcess(tmux + ["capture-pane", "-p", "-t", session], timeout: .seconds(10)).output }
        let listed = waitUntil(timeout: .seconds(30)) { screen().contains("Lunch on Friday") }
        #expect(listed, "index: \(screen())")
        _ = runProcess(tmux + ["send-keys", "-t", session, "Enter"], timeout: .seconds(10))
        let read = waitUntil(timeout: .seconds(30)) { screen().contains("pelican") }
        #expect(read, "pager: \(screen())")
        _ = runProcess(tmux + ["send-keys", "-t", session, "q", "q"], timeout: .seconds(10))
    }
}
