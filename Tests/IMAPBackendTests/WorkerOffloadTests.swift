// IMAPBackendTests: disk-heavy work runs on the worker pool, not on the loop: a slow mailbox open
// (held on a worker by a gate) leaves other sessions of the same loop answered, and the waiting
// session's pipelined commands run in order once it is done; uncached structures are parsed on a
// worker and cached.

import Glibc
import IMAPProtocol
import MailStore
import Synchronization
import Testing
import TestSupport
@testable import IMAPBackend

/// A gate a worker waits at until the test opens it: the worker blocks reading a pipe, the test
/// writes a byte to let it go (an event, not a sleep).
final class WorkerGate: Sendable {
    private let readEnd: Int32
    private let writeEnd: Int32
    /// How many workers have reached the gate.
    let arrivals = Atomic<Int>(0)
    /// Workers pass freely until the test arms the gate.
    let armed = Atomic<Bool>(false)

    init() {
        var descriptors: [Int32] = [0, 0]
        precondition(pipe(&descriptors) == 0, "pipe failed")
        readEnd = descriptors[0]
        writeEnd = descriptors[1]
    }

    deinit {
        close(readEnd)
        close(writeEnd)
    }

    func wait() {
        guard armed.load(ordering: .sequentiallyConsistent) else { return }
        arrivals.wrappingAdd(1, ordering: .sequentiallyConsistent)
        var byte: UInt8 = 0
        while read(readEnd, &byte, 1) < 0 && errno == EINTR {}
    }

    func open() {
        var byte: UInt8 = 1
        _ = write(writeEnd, &byte, 1)
    }
}

extension TestClient {
    /// Whether any response bytes have arrived and are unread (a look, no wait).
    var hasUnreadInput: Bool {
        var byte: UInt8 = 0
        return recv(descriptor, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) > 0
    }
}

@Suite struct WorkerOffloadTests {
    @Test func slowMailboxOpenDoesNotStallTheLoop() throws {
        let gate = WorkerGate()
        let server = try RunningServer { configuration in
            configuration.testsOnly_beforeMailboxLoad = { name in if name == "Slow" { gate.wait() } }
            // APPEND opens Slow; kept open for the user, the SELECT would not read it again.
            configuration.linger = .zero
        }
        defer {
            gate.open()
            server.stop()
        }
        let opener = try TestClient(port: server.plainPort)
        _ = opener.readLine()
        #expect(opener.command("a", "LOGIN alice secret").contains("a OK"))
        #expect(opener.command("b", "CREATE Slow").contains("b OK"))
        #expect(opener.command("c", "APPEND Slow {5+}\r\nhello").contains("c OK"))
        gate.armed.store(true, ordering: .sequentiallyConsistent)
        // SELECT and a NOOP pipelined behind it, in one packet.
        opener.send("s SELECT Slow\r\nn NOOP\r\n")
        #expect(waitUntil { gate.arrivals.load(ordering: .sequentiallyConsistent) == 1 }, "the open reached the worker")

        // Another session of the same user (so the same home loop) is served meanwhile, and can even
        // open another mailbox on the other worker.
        let other = try TestClient(port: server.plainPort)
        _ = other.readLine()
        #expect(other.command("x", "LOGIN alice secret").contains("x OK"))
        #expect(other.command("y", "NOOP") == "y OK NOOP completed\r\n")
        #expect(other.command("z", "EXAMINE INBOX").contains("z OK [READ-ONLY]"))
        #expect(!opener.hasUnreadInput, "the SELECT still waits on its worker")

        gate.open()
        let answer = opener.readUntil(tag: "n")
        let tagged = answer.lines.filter { !$0.hasPrefix("*") }
        #expect(tagged == ["s OK [READ-WRITE] SELECT completed", "n OK NOOP completed"])
        #expect(answer.contains("* 1 EXISTS"))
        #expect(opener.command("f", "FETCH 1 BODY.PEEK[]").contains("BODY[] {5}\r\nhello"))
    }

    /// Password checks run on their own lane: with every storage worker held (each in a mailbox
    /// open, as a queue of fsyncs holds them under load), a login is still answered, cached or not.
    @Test func loginIsAnsweredWhileEveryStorageWorkerIsBusy() throws {
        let gate = WorkerGate()
        let server = try RunningServer { configuration in
            configuration.testsOnly_beforeMailboxLoad = { name in if name.hasPrefix("Slow") { gate.wait() } }
        }
        defer {
            for _ in 0..<RunningServer.storageWorkerCount { gate.open() }
            server.stop()
        }
        let setup = try TestClient(port: server.plainPort)
        _ = setup.readLine()
        #expect(setup.command("a", "LOGIN alice secret").contains("a OK"))
        var openers: [TestClient] = []
        for index in 0..<RunningServer.storageWorkerCount {
            #expect(setup.command("c\(index)", "CREATE Slow\(index)").contains("OK"))
            let opener = try TestClient(port: server.plainPort)
            _ = opener.readLine()
            #expect(opener.command("l", "LOGIN alice secret").contains("l OK"))
            openers.append(opener)
        }
        gate.armed.store(true, ordering: .sequentiallyConsistent)
        for (index, opener) in openers.enumerated() { opener.send("s SELECT Slow\(index)\r\n") }
        #expect(waitUntil { gate.arrivals.load(ordering: .sequentiallyConsistent) == RunningServer.storageWorkerCount },
                "every storage worker is held")

        for (user, password) in [("alice", "secret"), ("bob", "hunter2")] {
            let client = try TestClient(port: server.plainPort)
            _ = client.readLine()
            client.send("x LOGIN \(user) \(password)\r\n")
            #expect(waitUntil(timeout: .seconds(10)) { client.hasUnreadInput }, "\(user)'s login waited for storage")
            if client.hasUnreadInput { #expect(client.readUntil(tag: "x").contains("x OK")) }
        }
        #expect(openers.allSatisfy { !$0.hasUnreadInput }, "the opens still wait on their workers")
    }

    /// Selecting the mailbox that is selected (or that another session holds) needs no worker: the
    /// old selection keeps it open until the new one has it.
    @Test func reselectingFindsTheMailboxOpen() throws {
        let accounts = try TestAccounts()
        let driver = try SessionDriver(accounts: accounts)
        driver.login()
        let runs = driver.transport.inlineExecutor.runs
        #expect(driver.send("s SELECT INBOX\r\n").contains("s OK [READ-WRITE]"))
        #expect(driver.transport.inlineExecutor.runs == runs + 1, "the first open reads the disk on a worker")
        let again = driver.send("t SELECT INBOX\r\n")
        #expect(again.hasPrefix("* OK [CLOSED]") && again.contains("t OK [READ-WRITE]"))
        #expect(driver.transport.inlineExecutor.runs == runs + 1, "the open mailbox is reused")
        #expect(driver.send("u EXAMINE Trash\r\n").contains("u OK [READ-ONLY]"))
        #expect(driver.transport.inlineExecutor.runs == runs + 2)
    }

    /// LIST RETURN (STATUS) reads the mailboxes no session has open on workers, then answers each
    /// LIST line with its STATUS (RFC 5819), placeholders without one.
    @Test func listStatusOpensMailboxesOnWorkers() throws {
        let accounts = try TestAccounts()
        let driver = try SessionDriver(accounts: accounts)
        driver.login()
        _ = driver.send("a CREATE Work/Done\r\n")
        _ = driver.send("b APPEND Work/Done {2+}\r\nhi\r\n")
        let runs = driver.transport.inlineExecutor.runs
        let lines = driver.send("c LIST \"\" * RETURN (STATUS (MESSAGES))\r\n").lines
        // INBOX, the five special-use folders and Work/Done; Work is only a level.
        #expect(driver.transport.inlineExecutor.runs == runs + 7)
        let done = try #require(lines.firstIndex { $0.hasSuffix("\"Work/Done\"") })
        #expect(lines[done + 1] == "* STATUS \"Work/Done\" (MESSAGES 1)")
        let work = try #require(lines.firstIndex { $0.hasSuffix("\"Work\"") })
        #expect(lines[work].contains("\\Noselect") && !lines[work + 1].hasPrefix("* STATUS"))
        #expect(lines.filter { $0.hasPrefix("* STATUS") }.count == 7)
        #expect(lines.last == "c OK LIST completed")
    }

    /// COPY and MOVE open a target no session has open on a worker, then commit (the commit's own wait
    /// nested in the open's); a missing target is NO [TRYCREATE].
    @Test func copyOpensItsTargetOnAWorker() throws {
        let accounts = try TestAccounts()
        let driver = try PipeliningTests.selectedInbox(accounts, messages: 2)
        let runs = driver.transport.inlineExecutor.runs
        let copied = driver.send("c COPY 1 Trash\r\nd NOOP\r\n")
        #expect(copied.contains("c OK [COPYUID "))
        #expect(copied.hasSuffix("d OK NOOP completed\r\n"))
        #expect(driver.transport.inlineExecutor.runs == runs + 2, "the open, then the commit")
        #expect(driver.send("e MOVE 2 Junk\r\n").contains("* 2 EXPUNGE"))
        #expect(driver.send("f COPY 1 Nowhere\r\n") == "f NO [TRYCREATE] No such mailbox\r\n")
        #expect(driver.send("g STATUS Trash (MESSAGES)\r\n").contains("(MESSAGES 1)"))
    }

    /// APPEND to a mailbox no session has open opens it on a worker before taking the literal: a
    /// LITERAL+ message waits unread meanwhile, a synchronizing one gets its continuation after.
    @Test func appendOpensItsTargetOnAWorker() throws {
        let accounts = try TestAccounts()
        let driver = try SessionDriver(accounts: accounts)
        driver.login()
        let runs = driver.transport.inlineExecutor.runs
        let plus = driver.send("a APPEND Trash {3+}\r\nabc\r\nb NOOP\r\n")
        #expect(plus.lines.map { String($0.prefix(4)) } == ["a OK", "b OK"])
        #expect(driver.transport.inlineExecutor.runs > runs + 1, "the open, then the message's own work")
        #expect(driver.send("c APPEND Junk {3}\r\n") == "+ Ready for literal data\r\n")
        #expect(driver.send("xyz\r\n").hasPrefix("c OK [APPENDUID"))
        #expect(driver.send("d APPEND Nowhere {3+}\r\nabc\r\ne NOOP\r\n")
            == "d NO [TRYCREATE] No such mailbox\r\ne OK NOOP completed\r\n")
        #expect(driver.send("f STATUS Trash (MESSAGES)\r\n").contains("(MESSAGES 1)"))
    }

    @Test func uncachedStructuresAreParsedOnAWorkerAndCached() throws {
        let accounts = try TestAccounts()
        let driver = try SessionDriver(accounts: accounts)
        driver.login()
        // Delivered by another program: no analysis in the cache yet.
        let path = accounts.dataDirectory + "/users/alice/new/1.other:2,"
        let file = fopen(path, "w")!
        fputs("Subject: delivered\r\nFrom: Ann <ann@example.org>\r\n\r\nbody\r\n", file)
        fclose(file)
        _ = driver.send("s SELECT INBOX\r\n")
        let mailbox = try #require(driver.session.selected?.mailbox)
        let uid = mailbox.uids[0]
        #expect(!mailbox.hasCachedAnalysis(of: uid))
        let handedOver = driver.transport.inlineExecutor.runs
        let fetch = driver.send("f FETCH 1 (ENVELOPE)\r\n")
        #expect(fetch.contains("\"delivered\" ((\"Ann\" NIL \"ann\" \"example.org\"))"))
        #expect(driver.transport.inlineExecutor.runs == handedOver + 1, "the analysis ran as blocking work")
        #expect(mailbox.hasCachedAnalysis(of: uid), "the worker's analysis went into the cache")
        _ = driver.send("g FETCH 1 (ENVELOPE)\r\n")
        #expect(driver.transport.inlineExecutor.runs == handedOver + 1, "a cached structure needs no worker")
    }
}
