// IMAPFrontend tests: TestClient, a blocking IMAP client on a loopback socket, and the front-end harness.

import Glibc
import Reactor
import Telemetry
import TestSupport

@testable import IMAPFrontend

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A plain-socket IMAP client for tests: every read has a deadline (SO_RCVTIMEO), so a hang
/// fails the test instead of stalling it.
final class TestClient {
    let descriptor: Int32
    private var buffer: [UInt8] = []

    init(port: UInt16, timeout: Duration = .seconds(10)) throws {
        descriptor = try connectToLoopback(port: port, timeout: timeout)
    }

    deinit { Glibc.close(descriptor) }

    func send(_ text: String) throws {
        var bytes = Array(text.utf8)
        while !bytes.isEmpty {
            let sent = bytes.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { throw TestFailure("send failed: errno \(errno)") }
            bytes.removeFirst(sent)
        }
    }

    /// Reads more; false at end of stream.
    private func fill() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        if count < 0 { throw TestFailure("read timed out or failed: errno \(errno)") }
        if count == 0 { return false }
        buffer += chunk[0..<count]
        return true
    }

    /// One response: a line, with any literals it announces read in (literal bytes kept as is).
    /// Nil at end of stream.
    func readResponse() throws -> String? {
        var response: [UInt8] = []
        while true {
            var lineFeed = buffer.firstIndex(of: 0x0A)
            while lineFeed == nil {
                guard try fill() else {
                    return response.isEmpty && buffer.isEmpty ? nil : String(decoding: response + buffer, as: UTF8.self)
                }
                lineFeed = buffer.firstIndex(of: 0x0A)
            }
            let line = Array(buffer[0...lineFeed!])
            buffer.removeFirst(line.count)
            response += line
            let text = String(decoding: line, as: UTF8.self).trimmingSuffixNewline
            guard text.hasSuffix("}"), let open = text.lastIndex(of: "{"),
                let size = Int(text[text.index(after: open)..<text.index(before: text.endIndex)])
            else {
                return String(decoding: response, as: UTF8.self).trimmingSuffixNewline
            }
            while buffer.count < size {
                guard try fill() else { throw TestFailure("stream ended inside a literal") }
            }
            response += buffer[0..<size]
            buffer.removeFirst(size)
        }
    }

    /// Sends `tag text` and returns the responses up to and including the tagged one.
    @discardableResult
    func command(_ tag: String, _ text: String) throws -> [String] {
        try send("\(tag) \(text)\r\n")
        return try responses(until: tag)
    }

    func responses(until tag: String) throws -> [String] {
        var lines: [String] = []
        while let line = try readResponse() {
            lines.append(line)
            if line.hasPrefix(tag + " ") { return lines }
        }
        throw TestFailure("connection closed before \(tag) was answered; got \(lines)")
    }

    /// Reads until the server closes; returns what came.
    func readToEnd() throws -> [String] {
        var lines: [String] = []
        while let line = try readResponse() { lines.append(line) }
        return lines
    }

    /// Logs in as `user` (password `pw-user`) and checks the answer is OK.
    func login(_ user: String, tag: String = "L1") throws {
        let answer = try command(tag, "LOGIN \(user) pw-\(user)")
        guard answer.last?.hasPrefix("\(tag) OK") == true else { throw TestFailure("login \(user) failed: \(answer)") }
    }
}

extension String {
    var trimmingSuffixNewline: String {
        var text = self
        while text.last?.isNewline == true { text.removeLast() }
        return text
    }
}

/// A front end on its own event loops, over some fake back ends, with settings for tests.
final class FrontendHarness {
    let group: EventLoopGroup
    let server: FrontendServer
    let addresses: [SocketAddress]
    let metrics = MetricsRegistry()
    var port: UInt16 { addresses[0].port }

    init(
        backends: [(String, UInt16)], loops: Int = 2,
        configure: (inout FrontendConfiguration) -> Void = { _ in }
    ) throws {
        var configuration = FrontendConfiguration()
        configuration.listeners = [SocketAddress(host: "127.0.0.1", port: 0)]
        configuration.tlsListeners = []
        configuration.backends = backends.map { BackendEndpoint(name: $0.0, host: "127.0.0.1", port: $0.1) }
        configuration.pool.minimumIdle = 0
        configuration.pool.maximumConnections = 4
        configuration.pool.reconnectInitialBackoff = .milliseconds(20)
        configuration.pool.reconnectMaximumBackoff = .milliseconds(100)
        configuration.failedLoginDelay = .milliseconds(1)
        configuration.failedLoginMaximumDelay = .milliseconds(5)
        configuration.maximumConnectionsPerAddress = 0
        configure(&configuration)
        group = try EventLoopGroup(loopCount: loops, workerCount: 1, name: "fe-test")
        do {
            server = try FrontendServer(
                configuration: configuration, logger: Logger(sink: LogSink(minimumLevel: .error), service: "imap4"),
                metrics: metrics)
            addresses = try server.start(on: group)
        } catch {
            group.shutdown(gracePeriod: .zero)
            throw error
        }
    }

    func stop() { group.shutdown(gracePeriod: .zero) }

    /// Waits (bounded) until the status of back end `index` satisfies `condition`.
    func waitForPool(_ index: Int, timeout: Duration = .seconds(10), _ condition: (BackendPoolStatus) -> Bool) -> Bool {
        waitFor(timeout: timeout) { condition(server.poolStatus()[index]) }
    }

    /// Waits (bounded) until `condition` holds.
    func waitFor(timeout: Duration = .seconds(10), _ condition: () -> Bool) -> Bool {
        let deadline = ContinuousClock.now + timeout
        let pause = Semaphore()
        while ContinuousClock.now < deadline {
            if condition() { return true }
            _ = pause.wait(timeout: .milliseconds(2))  // nothing posts it: a bounded pause between looks
        }
        return condition()
    }
}
