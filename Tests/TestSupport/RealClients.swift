// TestSupport: real mail clients run against a server (a back end, or a front end in front of one):
// Python's imaplib, curl, mbsync, offlineimap3 and neomutt under tmux. Each run returns the
// problems it found (none: it passed), so the back end's and the front end's tests share one
// definition of what each client must manage.

import Glibc

/// Where a real client is pointed, and the mail it works on. The accounts are those of
/// ``TestAccounts`` (alice/secret, bob/hunter2).
public struct MailServerUnderTest: Sendable {
    /// Plain port (STARTTLS offered); mail is also seeded and checked through it, logged in plainly.
    public var plainPort: UInt16
    /// Implicit-TLS port.
    public var tlsPort: UInt16
    /// The CA the clients check the server's certificate with (issued to `localhost`).
    public var certificatePath: String
    /// A scratch directory for the clients' configuration and local mail.
    public var directory: String

    public init(plainPort: UInt16, tlsPort: UInt16, certificatePath: String, directory: String) {
        self.plainPort = plainPort
        self.tlsPort = tlsPort
        self.certificatePath = certificatePath
        self.directory = directory
    }

    /// The server's back end, straight.
    public init(_ server: RunningServer) {
        self.init(plainPort: server.plainPort, tlsPort: server.tlsPort, certificatePath: server.certificatePath,
                  directory: server.accounts.directory.path)
    }

    /// A client logged in as alice over the plain port, for seeding and checking mail.
    func aliceClient() throws -> TestClient {
        let client = try TestClient(port: plainPort)
        _ = client.readLine()
        _ = client.command("a", "LOGIN alice secret")
        return client
    }

    /// Appends `messages` to alice's INBOX; returns the problems.
    func seed(_ messages: [String]) throws -> [String] {
        let client = try aliceClient()
        var problems: [String] = []
        for (index, message) in messages.enumerated() {
            let answer = client.command("p\(index)", "APPEND INBOX {\(message.utf8.count)+}\r\n\(message)")
            if !answer.contains("p\(index) OK") { problems.append("seeding message \(index): \(answer)") }
        }
        return problems
    }
}

/// How a client reaches the server.
public enum ClientTransport: String, Sendable, CaseIterable {
    /// Plain text all the way (curl's imap://).
    case plain
    /// The plain port, then STARTTLS before login.
    case startTLS
    /// The implicit-TLS port.
    case implicitTLS
}

/// The runs of each real client. Each returns the problems found; empty means it passed.
public enum RealClients {
    /// Python's imaplib: every command it offers, over plain then STARTTLS, AUTHENTICATE PLAIN over
    /// implicit TLS, and a STARTTLS injection attempt.
    public static func imaplib(_ server: MailServerUnderTest) -> [String] {
        let script = server.directory + "/imaplib_all.py"
        writeFile(script, imaplibScript)
        let result = runProcess(["python3", script, "\(server.plainPort)", "\(server.tlsPort)", server.certificatePath],
                                timeout: .seconds(120))
        guard result.status == 0, !result.timedOut, result.output.contains("ALL PASSED") else {
            return ["imaplib: \(result.output)"]
        }
        return []
    }

    /// curl: append, list and fetch, over each of `transports` (imap://, imap:// with --ssl-reqd,
    /// imaps://).
    public static func curl(_ server: MailServerUnderTest, over transports: [ClientTransport]) -> [String] {
        var problems: [String] = []
        let message = "From: curl@example.org\r\nSubject: via curl\r\n\r\nuploaded by curl\r\n"
        let file = server.directory + "/upload.eml"
        writeFile(file, message)
        for (round, transport) in transports.enumerated() {
            let base = transport == .implicitTLS
                ? "imaps://127.0.0.1:\(server.tlsPort)" : "imap://127.0.0.1:\(server.plainPort)"
            var common = ["curl", "--silent", "--show-error", "--max-time", "60", "--user", "alice:secret",
                          "--cacert", server.certificatePath]
            if transport == .startTLS { common.append("--ssl-reqd") }
            let upload = runProcess(common + ["-T", file, base + "/INBOX"])
            if upload.status != 0 { problems.append("\(transport) append: \(upload.output)") }
            let list = runProcess(common + [base + "/"])
            if list.status != 0 || !list.output.contains("INBOX") || !list.output.contains("Sent") {
                problems.append("\(transport) list: \(list.output)")
            }
            let fetch = runProcess(common + [base + "/INBOX;UID=\(round + 1)"])
            if fetch.status != 0 || !fetch.output.contains("uploaded by curl") {
                problems.append("\(transport) fetch: \(fetch.output)")
            }
        }
        return problems
    }

    /// mbsync (isync) both ways: pulls three messages, then pushes a flag change, a deletion and a
    /// new local message, checked on the server.
    public static func mbsync(_ server: MailServerUnderTest, over transport: ClientTransport) throws -> [String] {
        var problems = try server.seed((1...3).map {
            "Subject: sync \($0)\r\nMessage-ID: <\($0)@sync>\r\n\r\nbody \($0)\r\n"
        })
        let home = server.directory
        let local = home + "/local"
        mkdir(local, 0o700)
        let secure = transport == .implicitTLS
        let configuration = """
            IMAPAccount apus
            Host localhost
            Port \(secure ? server.tlsPort : server.plainPort)
            User alice
            Pass secret
            SSLType \(secure ? "IMAPS" : transport == .startTLS ? "STARTTLS" : "None")
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
        if first.status != 0 { problems.append("first mbsync: \(first.output)") }
        // Locally: mark one seen, delete another, add a new message.
        let pulled = directoryEntries(local + "/INBOX/cur").map { local + "/INBOX/cur/" + $0 }
            + directoryEntries(local + "/INBOX/new").map { local + "/INBOX/new/" + $0 }
        guard pulled.count == 3 else { return problems + ["pulled \(pulled)"] }
        let seenName = local + "/INBOX/cur/" + (pulled[0].split(separator: "/").last!.split(separator: ":").first!) + ":2,S"
        rename(pulled[0], String(seenName))
        unlink(pulled[1])
        writeFile(local + "/INBOX/new/1700000000.local.host", "Subject: from local\r\nMessage-ID: <local@sync>\r\n\r\nnew\r\n")
        let second = runProcess(["mbsync", "-c", home + "/mbsyncrc", "-a"], timeout: .seconds(60))
        if second.status != 0 { problems.append("second mbsync: \(second.output)") }
        let client = try server.aliceClient()
        let select = client.command("s", "SELECT INBOX")
        if !select.contains("* 3 EXISTS") { problems.append("after sync: \(select)") }
        let seen = client.command("f", "SEARCH SEEN")
        if !(seen.contains("* SEARCH 1\r\n") || seen.contains("* SEARCH 1 ")) { problems.append("seen: \(seen)") }
        let fromLocal = client.command("g", "SEARCH SUBJECT \"from local\"")
        if !fromLocal.contains("* SEARCH 3") { problems.append("from local: \(fromLocal)") }
        let deleted = client.command("h", "SEARCH SUBJECT \"sync 2\"")
        if deleted.contains("* SEARCH 2") { problems.append("deleted message still there: \(deleted)") }
        return problems
    }

    /// offlineimap3 pulls a mailbox of two messages (over implicit TLS, or plain with STARTTLS).
    public static func offlineimap(_ server: MailServerUnderTest, over transport: ClientTransport) throws -> [String] {
        var problems = try server.seed((1...2).map { "Subject: offline \($0)\r\n\r\nbody \($0)\r\n" })
        let home = server.directory
        let secure = transport == .implicitTLS
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
            remoteport = \(secure ? server.tlsPort : server.plainPort)
            remoteuser = alice
            remotepass = secret
            ssl = \(secure ? "yes" : "no")
            starttls = \(transport == .startTLS ? "yes" : "no")
            sslcacertfile = \(server.certificatePath)
            folderfilter = lambda name: name == 'INBOX'

            """
        writeFile(home + "/offlineimaprc", configuration)
        let result = runProcess(["offlineimap", "-c", home + "/offlineimaprc", "-o", "-u", "basic"],
                                timeout: .seconds(90))
        if result.status != 0 { problems.append("offlineimap: \(result.output)") }
        let files = directoryEntries(home + "/offline/INBOX/cur") + directoryEntries(home + "/offline/INBOX/new")
        if files.count != 2 { problems.append("offlineimap pulled \(files): \(result.output)") }
        return problems
    }

    /// neomutt under tmux opens INBOX (over implicit TLS, or the plain port with STARTTLS forced)
    /// and reads a message.
    public static func neomutt(_ server: MailServerUnderTest, over transport: ClientTransport) throws -> [String] {
        let message = "From: Carol <carol@example.org>\r\nTo: alice@example.org\r\nSubject: Lunch on Friday\r\n"
            + "Date: Mon, 7 Feb 2026 12:00:00 +0000\r\n\r\nThe secret word is pelican.\r\n"
        var problems = try server.seed([message])
        let home = server.directory
        let folder = transport == .implicitTLS
            ? "imaps://alice@localhost:\(server.tlsPort)/" : "imap://alice@localhost:\(server.plainPort)/"
        let muttrc = """
            set folder = "\(folder)"
            set spoolfile = "+INBOX"
            set imap_pass = "secret"
            set ssl_starttls = \(transport == .startTLS ? "yes" : "no")
            set ssl_force_tls = \(transport == .plain ? "no" : "yes")
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
        var panePid: pid_t = 0
        defer {
            _ = runProcess(tmux + ["kill-server"], timeout: .seconds(10))
            // kill-server only hangs the pane up, and a neomutt busy logging out outlives it
            // (found orphaned after a passing run): end the pane's process group and wait for it.
            if panePid > 0 {
                kill(-panePid, SIGKILL)
                kill(panePid, SIGKILL)
                _ = waitUntil(timeout: .seconds(10)) { kill(panePid, 0) != 0 && errno == ESRCH }
            }
        }
        // The tmux server daemonises with the client's descriptors: give it none of our pipes.
        let started = runProcess(["sh", "-c", "tmux -S \(socket) new-session -d -s \(session) -x 160 -y 40 "
                                  + "'exec env HOME=\(home) TERM=xterm neomutt -n -F \(home)/muttrc' </dev/null >/dev/null 2>&1"],
                                 timeout: .seconds(10))
        if started.status != 0 { return problems + ["tmux: \(started.output)"] }
        let pane = runProcess(tmux + ["display-message", "-p", "-t", session, "#{pane_pid}"], timeout: .seconds(10))
        panePid = pid_t(pane.output.filter(\.isNumber)) ?? 0
        func screen() -> String { runProcess(tmux + ["capture-pane", "-p", "-t", session], timeout: .seconds(10)).output }
        if !waitUntil(timeout: .seconds(30), { screen().contains("Lunch on Friday") }) {
            problems.append("index: \(screen())")
        }
        _ = runProcess(tmux + ["send-keys", "-t", session, "Enter"], timeout: .seconds(10))
        if !waitUntil(timeout: .seconds(30), { screen().contains("pelican") }) { problems.append("pager: \(screen())") }
        _ = runProcess(tmux + ["send-keys", "-t", session, "q", "q"], timeout: .seconds(10))
        // neomutt logs out as it quits: let it finish, so the server sees a clean LOGOUT.
        if panePid > 0, !waitUntil(timeout: .seconds(15), { kill(panePid, 0) != 0 && errno == ESRCH }) {
            problems.append("neomutt did not quit: \(screen())")
        }
        return problems
    }
}

private let imaplibScript = #"""
# TestSupport: Python's imaplib against a server (a back end, or a front end before one): every command imaplib offers, over plain,
# STARTTLS and implicit TLS. Prints one "ok NAME" per check; exits 1 at the first failure.
import imaplib, ssl, sys, socket

port, tls_port, cafile = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
context = ssl.create_default_context(cafile=cafile)
context.check_hostname = False

def check(name, condition, detail=""):
    if not condition:
        print("FAIL", name, detail)
        sys.exit(1)
    print("ok", name)

def read_until(sock, marker):
    # What the server sent up to and including `marker`, or all of it if it closed first.
    received = b""
    while marker not in received:
        chunk = sock.recv(4096)
        if not chunk:
            break
        received += chunk
    return received

def expect_error(name, call):
    try:
        call()
    except imaplib.IMAP4.error:
        print("ok", name)
        return
    print("FAIL", name, "no error")
    sys.exit(1)

# Plain, then STARTTLS.
m = imaplib.IMAP4("127.0.0.1", port)
typ, caps = m.capability()
check("capability", typ == "OK" and b"STARTTLS" in caps[0])
check("noop-before-login", m.noop()[0] == "OK")
m.starttls(ssl_context=context)
check("starttls", m.sock.version() is not None)
typ, data = m.login("alice", "secret")
check("login", typ == "OK")
check("namespace", m.namespace()[0] == "OK")
check("create", m.create("Projects")[0] == "OK")
check("create-nested", m.create("Projects/2024")[0] == "OK")
typ, data = m.list()
check("list", typ == "OK" and any(b"Projects/2024" in line for line in data), data)
typ, data = m.list('""', "%")
check("list-pattern", typ == "OK" and not any(b"2024" in line for line in data))
check("subscribe", m.subscribe("Projects")[0] == "OK")
typ, data = m.lsub()
check("lsub", typ == "OK" and any(b"Projects" in line for line in data))
check("unsubscribe", m.unsubscribe("Projects")[0] == "OK")
check("rename", m.rename("Projects/2024", "Projects/2025")[0] == "OK")
check("delete", m.delete("Projects/2025")[0] == "OK")
message = b"From: a@example.org\r\nSubject: imaplib test\r\n\r\nhello world\r\n"
typ, data = m.append("INBOX", r"(\Flagged)", imaplib.Time2Internaldate(1700000000), message)
check("append", typ == "OK" and b"APPENDUID" in data[0], data)
m.append("INBOX", None, None, b"Subject: second\r\n\r\nbody two\r\n")
typ, data = m.status("INBOX", "(MESSAGES UIDNEXT UNSEEN)")
check("status", typ == "OK" and b"MESSAGES 2" in data[0], data)
typ, data = m.select("INBOX")
check("select", typ == "OK" and data[0] == b"2")
typ, data = m.fetch("1", "(FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
check("fetch", typ == "OK" and data[0][1] == message, data)
typ, data = m.fetch("1:2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
check("fetch-header", b"Subject: second" in data[2][1], data)
typ, data = m.fetch("1", "(ENVELOPE BODYSTRUCTURE)")
check("fetch-structure", typ == "OK" and b"imaplib test" in data[0], data)
typ, data = m.search(None, "SUBJECT", '"second"')
check("search", typ == "OK" and data[0] == b"2", data)
typ, data = m.search("UTF-8", "BODY", "hello")
check("search-charset", typ == "OK" and data[0] == b"1", data)
typ, data = m.store("1", "+FLAGS", r"(\Seen)")
check("store", typ == "OK" and b"\\Seen" in data[0], data)
typ, data = m.copy("1", "Trash")
check("copy", typ == "OK")
typ, data = m.uid("SEARCH", None, "ALL")
check("uid-search", typ == "OK" and data[0] == b"1 2", data)
typ, data = m.uid("FETCH", "2", "(UID FLAGS)")
check("uid-fetch", typ == "OK" and b"UID 2" in data[0], data)
typ, data = m.uid("STORE", "2", "+FLAGS", r"(\Deleted)")
check("uid-store", typ == "OK")
typ, data = m.uid("COPY", "2", "Archive")
check("uid-copy", typ == "OK")
typ, data = m.uid("MOVE", "1", "Junk")
check("uid-move", typ == "OK")
typ, data = m.uid("EXPUNGE", "2")
check("uid-expunge", typ == "OK")
check("check", m.check()[0] == "OK")
typ, data = m.select("Archive")
check("select-archive", typ == "OK" and data[0] == b"1")
m.store("1", "+FLAGS", r"(\Deleted)")
typ, data = m.expunge()
check("expunge", typ == "OK" and data[0] == b"1", data)
check("unselect", m.unselect()[0] == "OK")
typ, data = m.select("Trash", readonly=True)
check("examine", typ == "OK" and data[0] == b"1")
check("close", m.close()[0] == "OK")
typ, data = m.xatom("ID", "NIL")
check("xatom-id", typ == "OK")
# Extensions Apus does not offer answer with an error, and the session goes on.
expect_error("getacl", lambda: m.getacl("INBOX"))
expect_error("myrights", lambda: m.myrights("INBOX"))
expect_error("setacl", lambda: m.setacl("INBOX", "bob", "lr"))
expect_error("deleteacl", lambda: m.deleteacl("INBOX", "bob"))
expect_error("getquota", lambda: m.getquota(""))
expect_error("getquotaroot", lambda: m.getquotaroot("INBOX"))
expect_error("setquota", lambda: m.setquota("", "(STORAGE 10)"))
expect_error("getannotation", lambda: m.getannotation("INBOX", "/comment", "value"))
expect_error("setannotation", lambda: m.setannotation("INBOX", "/comment", "(value.priv x)"))
expect_error("proxyauth", lambda: m.proxyauth("bob"))
m.select("INBOX")
expect_error("sort", lambda: m.sort("(DATE)", "UTF-8", "ALL"))
expect_error("thread", lambda: m.thread("REFERENCES", "UTF-8", "ALL"))
check("noop-after-errors", m.noop()[0] == "OK")
typ, data = m.logout()
check("logout", typ == "BYE")

# AUTHENTICATE PLAIN over implicit TLS.
t = imaplib.IMAP4_SSL("127.0.0.1", tls_port, ssl_context=context)
typ, data = t.authenticate("PLAIN", lambda _: b"\0bob\0hunter2")
check("authenticate-plain", typ == "OK")
typ, data = t.enable("IMAP4rev2")
check("enable", typ == "OK" and t.response("ENABLED")[1] == [b"IMAP4rev2"], data)
typ, data = t.select("INBOX")
check("select-rev2", typ == "OK")
t.logout()

# A wrong password is refused.
w = imaplib.IMAP4_SSL("127.0.0.1", tls_port, ssl_context=context)
expect_error("login-wrong-password", lambda: w.login("alice", "nope"))
w.logout()

# STARTTLS injection: a command pipelined after STARTTLS in plaintext must never run.
raw = socket.create_connection(("127.0.0.1", port))
raw.recv(4096)
raw.sendall(b"s STARTTLS\r\nx LOGIN alice secret\r\ny CREATE Injected\r\n")
answer = read_until(raw, b"s OK")
check("starttls-answer", answer.startswith(b"s OK"), answer)
secure = context.wrap_socket(raw, server_hostname="localhost")
secure.sendall(b"c CAPABILITY\r\n")
reply = read_until(secure, b"c OK")
check("starttls-injection-discarded", b"x OK" not in reply and b"x " not in reply and b"AUTH=PLAIN" in reply, reply)
secure.sendall(b"l LOGIN alice secret\r\nl2 LIST \"\" Injected\r\nq LOGOUT\r\n")
rest = read_until(secure, b"q OK")
check("starttls-injected-command-never-ran", b"Injected" not in rest.split(b"l2 OK")[0], rest)
print("ALL PASSED")
"""#
