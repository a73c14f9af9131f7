// IMAPBackendTests: limits (APPENDLIMIT, command length, connections per address) and the trusted
// proxy networks.

import IMAPProtocol
import MailStore
import Reactor
import Testing
import TestSupport
@testable import IMAPBackend

@Suite struct LimitTests {
    @Test func appendLimitRefusesLargerLiterals() throws {
        let accounts = try TestAccounts()
        var configuration = accounts.configuration()
        configuration.limits.maxAppendLiteralSize = 100
        let driver = try SessionDriver(accounts: accounts, configuration: configuration)
        driver.login()
        #expect(driver.send("a APPEND INBOX {101}\r\n") == "a BAD Literal too large\r\n")
        #expect(driver.send("b APPEND INBOX {100}\r\n") == "+ Ready for literal data\r\n")
        #expect(driver.send(String(repeating: "x", count: 100) + "\r\n").hasPrefix("b OK [APPENDUID"))
        #expect(driver.send("c CAPABILITY\r\n").contains("APPENDLIMIT=100"))
    }

    @Test func overlongCommandIsRefusedAndTheConnectionClosed() throws {
        let accounts = try TestAccounts()
        var configuration = accounts.configuration()
        configuration.limits.maxCommandLength = 1024
        let driver = try SessionDriver(accounts: accounts, configuration: configuration)
        _ = driver.take()
        let answer = driver.send("a NOOP " + String(repeating: "x", count: 2000) + "\r\nb NOOP\r\n")
        // The framer cannot find where an overlong line ends without reading it all: answer and close.
        #expect(answer == "a BAD Command line too long\r\n* BYE Cannot continue after this error\r\n")
        #expect(driver.transport.closed)
    }

    @Test func trustedNetworksMatchAddressesAndPrefixes() {
        let v4 = TrustedNetwork("10.1.0.0/16")!
        #expect(v4.contains("10.1.200.3"))
        #expect(!v4.contains("10.2.0.1"))
        #expect(v4.contains("::ffff:10.1.0.9"), "IPv4-mapped peers on dual-stack sockets")
        let host = TrustedNetwork("127.0.0.1")!
        #expect(host.contains("127.0.0.1") && !host.contains("127.0.0.2"))
        let v6 = TrustedNetwork("fd00::/8")!
        #expect(v6.contains("fd12:3456::1") && !v6.contains("fe80::1"))
        #expect(TrustedNetwork("::1")!.contains("::1"))
        #expect(TrustedNetwork("10.0.0.0/33") == nil)
        #expect(TrustedNetwork("not an address") == nil)
        #expect(TrustedNetwork("1.2.3") == nil)
    }

    @Test func connectionsPerAddressAreLimited() throws {
        let server = try RunningServer { $0.maxConnectionsPerAddress = 2 }
        defer { server.stop() }
        let first = try TestClient(port: server.plainPort)
        let second = try TestClient(port: server.plainPort)
        #expect(first.readLine()?.hasPrefix("* OK") == true)
        #expect(second.readLine()?.hasPrefix("* OK") == true)
        let third = try TestClient(port: server.plainPort)
        #expect(third.readLine()?.hasPrefix("* BYE Too many connections") == true)
        #expect(third.readLine() == nil)
    }
}
