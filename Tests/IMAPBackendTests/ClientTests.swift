// IMAPBackendTests: real clients against a real server: Python's imaplib (every command it offers,
// plain, STARTTLS and TLS, plus a STARTTLS injection attempt) and curl (imap:// and imaps://).

import Glibc
import Reactor
import Testing
@testable import IMAPBackend

/// Writes `text` to `path`.
func writeFile(_ path: String, _ text: String) {
    let file = fopen(path, "w")!
    fputs(text, file)
    fclose(file)
}

/// Records a failure when the tool is missing under CI; returns false (skip) otherwise.
private func requireTool(_ name: String) -> Bool {
    if toolExists(name) { return true }
    if isCI { Issue.record("\(name) is not installed (Debian package needed in CI)") }
    return false
}

@Suite struct ClientTests {
    @Test func pythonImaplibEveryCommand() throws {
        guard requireTool("python3") else { return }
        let server = try RunningServer()
        defer { server.stop() }
        let script = server.accounts.directory.path + "/imaplib_all.py"
        writeFile(script, imaplibScript)
        let result = runProcess(["python3", script, "\(server.plainPort)",
                                 "\(server.tlsPort)", server.certificatePath], timeout: .seconds(120))
        #expect(result.status == 0 && !result.timedOut, "\(result.output)")
        #expect(result.output.contains("ALL PASSED"))
    }

    @Test func curlListFetchAppendPlainAndTLS() throws {
        guard requireTool("curl") else { return }
        let server = try RunningServer()
        defer { server.stop() }
        let message = "From: curl@example.org\r\nSubject: via curl\r\n\r\nuploaded by curl\r\n"
        for (scheme, port) in [("imap", server.plainPort), ("imaps", server.tlsPort)] {
            let base = "\(scheme)://127.0.0.1:\(port)"
            let common = ["curl", "--silent", "--show-error", "--max-time", "60", "--user", "alice:secret",
                          "--cacert", server.certificatePath]
            let file = server.accounts.directory.path + "/upload.eml"
            writeFile(file, message)
            let upload = runProcess(common + ["-T", file, base + "/INBOX"])
            #expect(upload.status == 0, "\(scheme) append: \(upload.output)")
            let list = runProcess(common + [base + "/"])
            #expect(list.status == 0 && list.output.contains("INBOX") && list.output.contains("Sent"),
                    "\(scheme) list: \(list.output)")
            let fetch = runProcess(common + [base + "/INBOX;UID=1"])
            #expect(fetch.status == 0 && fetch.output.contains("uploaded by curl"), "\(scheme) fetch: \(fetch.output)")
        }
    }
}

/// Python's imaplib against the back end: every command imaplib offers, over plain, STARTTLS and
/// implicit TLS, and a STARTTLS injection attempt. Prints "ok NAME" per check; exits 1 on a failure.
let imaplibScript = #"""
# IMAPBackendTests: Python's imaplib against the back end: every command imaplib offers, over plain,
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
answer = b""
while b"s OK" not in answer:
    chunk = raw.recv(4096)
    if not chunk:
        break
    answer += chunk
check("starttls-answer", answer.startswith(b"s OK"), answer)
secure = context.wrap_socket(raw, server_hostname="localhost")
secure.sendall(b"c CAPABILITY\r\n")
reply = b""
while b"c OK" not in reply:
    chunk = secure.recv(4096)
    if not chunk:
        break
    reply += chunk
check("starttls-injection-discarded", b"x OK" not in reply and b"x " not in reply and b"AUTH=PLAIN" in reply, reply)
secure.sendall(b"l LOGIN alice secret\r\nl2 LIST \"\" Injected\r\nq LOGOUT\r\n")
rest = b""
while b"q OK" not in rest:
    chunk = secure.recv(4096)
    if not chunk:
        break
    rest += chunk
check("starttls-injected-command-never-ran", b"Injected" not in rest.split(b"l2 OK")[0], rest)
print("ALL PASSED")
"""#
