// IMAPBackendTests: pipelining (RFC 9051 section 5.5): commands sent together are all read and
// answered in order, in one write per read when none has to wait; a command waiting on a worker
// keeps what was pipelined behind it and runs it afterwards.

import IMAPProtocol
import MailStore
import Telemetry
import Testing
import TestSupport
@testable import IMAPBackend

@Suite struct PipeliningTests {
    /// A session of alice with INBOX selected, holding `count` small messages.
    static func selectedInbox(_ accounts: TestAccounts, messages count: Int) throws -> SessionDriver {
        let driver = try SessionDriver(accounts: accounts)
        driver.login()
        for index in 0..<count { _ = driver.send("p\(index) APPEND INBOX {2+}\r\nm\(index)\r\n") }
        _ = driver.send("s SELECT INBOX\r\n")
        return driver
    }

    @Test func pipelinedCommandsAreAnsweredInOrderInOneWrite() throws {
        let accounts = try TestAccounts()
        let driver = try PipeliningTests.selectedInbox(accounts, messages: 3)
        var batch = ""
        var tags: [String] = []
        for index in 0..<10 {
            batch += "f\(index) FETCH 1:* (FLAGS UID)\r\nn\(index) NOOP\r\nu\(index) UID FETCH 2 (RFC822.SIZE)\r\n"
            batch += "x\(index) UID SEARCH ALL\r\n"
            tags += ["f\(index)", "n\(index)", "u\(index)", "x\(index)"]
        }
        let writesBefore = driver.transport.writeCount
        let answer = driver.send(batch)
        #expect(driver.transport.writeCount == writesBefore + 1, "forty answers, one write")
        let tagged = answer.lines.filter { !$0.hasPrefix("*") }.map { $0.split(separator: " ")[0] }
        #expect(tagged.map(String.init) == tags)
        #expect(answer.lines.filter { $0.hasPrefix("* 3 FETCH (FLAGS") }.count == 10)
    }

    /// Each command is counted under its own name (the counters are found by the rule's index).
    @Test func commandsAreCountedUnderTheirNames() throws {
        let accounts = try TestAccounts()
        let driver = try PipeliningTests.selectedInbox(accounts, messages: 1)
        _ = driver.send("a NOOP\r\nb NOOP\r\nc UID FETCH 1 (FLAGS)\r\nd STORE 1 +FLAGS (\\Seen)\r\ne FOO\r\n")
        func count(_ name: String) -> UInt64 {
            driver.context.metrics.registry.counter("apus_imap4be_commands_total", help: "Commands by name",
                                                    labels: [("command", name)]).current
        }
        #expect(count("NOOP") == 2)
        #expect(count("FETCH") == 1)
        #expect(count("STORE") == 1)
        #expect(count("SELECT") == 1)
        #expect(count("APPEND") == 1)
        #expect(count("LOGIN") == 1)
    }

    /// FETCH resolves its set into a reused array: each answer is still ascending, without repeats,
    /// whatever the order and overlap of the ranges.
    @Test func reusedFetchResolvesEverySetAfresh() throws {
        let accounts = try TestAccounts()
        let driver = try PipeliningTests.selectedInbox(accounts, messages: 5)
        func fetched(_ command: String) -> [String] {
            driver.send(command).lines.filter { $0.hasPrefix("* ") }.map { String($0.split(separator: " ")[1]) }
        }
        #expect(fetched("a FETCH 4,1:2,2:3 (UID)\r\n") == ["1", "2", "3", "4"])
        #expect(fetched("b FETCH 5:4 (UID)\r\n") == ["4", "5"])
        #expect(fetched("c UID FETCH 3:1 (FLAGS)\r\n") == ["1", "2", "3"])
        #expect(fetched("d UID FETCH 10:* (FLAGS)\r\n") == ["5"], "10:* is 5:10 with 5 the highest UID")
        #expect(fetched("e UID FETCH 4294967295 (FLAGS)\r\n").isEmpty)
        #expect(fetched("f UID FETCH 2,4:4294967295 (FLAGS)\r\n") == ["2", "4", "5"])
        #expect(fetched("g FETCH 1 (UID)\r\n") == ["1"])
    }

    @Test func inputBehindAWaitingCommandIsKeptAndRunAfterIt() throws {
        let accounts = try TestAccounts()
        let driver = try SessionDriver(accounts: accounts)
        _ = driver.take()
        // A failed login waits on a timer (slowed logins): the commands behind it wait too, unread
        // but not refused, and reading goes on.
        let used = Array("a LOGIN alice wrong\r\nb NOOP\r\nc CAPABILITY\r\n".utf8).withUnsafeBytes {
            driver.session.receive($0)
        }
        #expect(used == "a LOGIN alice wrong\r\n".utf8.count)
        #expect(!driver.transport.paused, "the session goes on reading while it waits")
        let rest = Array("b NOOP\r\nc CAPABILITY\r\n".utf8)
        #expect(rest.withUnsafeBytes { driver.session.receive($0) } == 0, "kept while a is waiting")
        let redeliveries = driver.transport.redeliveries
        driver.transport.fireTimers()
        #expect(driver.transport.redeliveries == redeliveries + 1, "the kept input is offered again")
        let answer = driver.take() + driver.send(bytes: rest)
        let tagged = answer.lines.filter { !$0.hasPrefix("*") }.map { String($0.prefix(4)) }
        #expect(tagged == ["a NO", "b OK", "c OK"])
    }

    @Test func sessionStopsReadingWhenTooMuchIsKept() throws {
        let accounts = try TestAccounts()
        let driver = try SessionDriver(accounts: accounts)
        _ = driver.take()
        _ = driver.send("a LOGIN alice wrong\r\n")
        let flood = [UInt8](repeating: UInt8(ascii: "x"), count: IMAPSession.waitingInputLimit)
        #expect(flood.withUnsafeBytes { driver.session.receive($0) } == 0)
        #expect(driver.transport.paused, "TCP backpressure beyond the bound")
    }
}
