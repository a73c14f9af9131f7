//===----------------------------------------------------------------------===//
// Apus Reactor tests: a busy port fails to listen, stopping closes listeners before it returns,
// and connections count their bytes and TLS handshakes.
//===----------------------------------------------------------------------===//

import Glibc
import Synchronization
import Testing
@testable import Reactor

/// In the serialized socket suite (a process of its own, see ReactorIsolationTests): these tests
/// open sockets, and the port checks must not meet another suite's listeners.
extension ReactorSocketTests {
    /// A plain listening socket on 127.0.0.1 (no SO_REUSEPORT), as another server would hold.
    static func plainLoopbackListener() throws -> (descriptor: Int32, port: UInt16) {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(descriptor, pointer, length) == 0 && listen(descriptor, 4) == 0
                    && getsockname(descriptor, pointer, &length) == 0
            }
        }
        try #require(bound)
        return (descriptor, UInt16(bigEndian: address.sin_port))
    }

    /// A connection to `port` is refused at once (nothing listens there).
    static func expectRefused(_ port: UInt16, sourceLocation: SourceLocation = #_sourceLocation) {
        let error = #expect(throws: BlockingClient.ConnectError.self, sourceLocation: sourceLocation) {
            _ = try BlockingClient(port: port)
        }
        #expect(error?.errno == ECONNREFUSED, sourceLocation: sourceLocation)
    }

    /// An echo listener serves `port`.
    static func expectEchoes(on port: UInt16, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let client = try BlockingClient(port: port)
        defer { client.close() }
        client.send("ping")
        #expect(client.read(count: 4) == Array("ping".utf8), sourceLocation: sourceLocation)
    }

    @Test func aPortHeldByAPlainSocketIsInUse() throws {
        let held = try Self.plainLoopbackListener()
        defer { close(held.descriptor) }
        let group = try EventLoopGroup(loopCount: 2, workerCount: 1)
        defer { group.shutdown(gracePeriod: .seconds(1)) }
        let error = #expect(throws: IOError.self) {
            try group.listen(ListenerSpec(host: "127.0.0.1", port: held.port) { _ in EchoHandler() })
        }
        #expect(error?.errno == EADDRINUSE)
        #expect(error.flatMap(EventLoopGroup.listenAddress(of:)) == "127.0.0.1:\(held.port)")
    }

    /// Two groups stand for two processes of the same user: SO_REUSEPORT alone would let the
    /// second share the first one's port silently.
    @Test func aPortHeldByAnotherReusePortGroupIsInUse() throws {
        let first = try EventLoopGroup(loopCount: 2, workerCount: 1)
        defer { first.shutdown(gracePeriod: .seconds(1)) }
        let port = try first.listen(ListenerSpec(host: "127.0.0.1", port: 0) { _ in EchoHandler() })
        let second = try EventLoopGroup(loopCount: 2, workerCount: 1)
        defer { second.shutdown(gracePeriod: .seconds(1)) }
        let error = #expect(throws: IOError.self) {
            try second.listen(ListenerSpec(host: "127.0.0.1", port: port) { _ in EchoHandler() })
        }
        #expect(error?.errno == EADDRINUSE)
        // The first group still serves the port.
        try Self.expectEchoes(on: port)
    }

    /// Several front-end processes on one port, on purpose: the second group listens too and the
    /// kernel spreads connections over both (64 connections all landing on one of four listeners
    /// by chance is a 2^-62 event).
    @Test func aPortSharedOnPurposeServesBothGroups() throws {
        let accepted = AcceptCounts()
        func spec(_ group: Int, port: UInt16) -> ListenerSpec {
            var spec = ListenerSpec(host: "127.0.0.1", port: port) { _ in
                accepted.counts.withLock { $0[group] += 1 }
                return EchoHandler()
            }
            spec.sharedWithOtherProcesses = true
            return spec
        }
        let first = try EventLoopGroup(loopCount: 2, workerCount: 1)
        defer { first.shutdown(gracePeriod: .seconds(1)) }
        let port = try first.listen(spec(0, port: 0))
        let second = try EventLoopGroup(loopCount: 2, workerCount: 1)
        defer { second.shutdown(gracePeriod: .seconds(1)) }
        #expect(try second.listen(spec(1, port: port)) == port)
        for _ in 0..<64 { try Self.expectEchoes(on: port) }
        let counts = accepted.counts.withLock { $0 }
        #expect(counts[0] + counts[1] == 64)
        #expect(counts[0] > 0 && counts[1] > 0)
    }

    /// Sharing is between SO_REUSEPORT listeners only: a port a plain socket holds stays in use.
    @Test func aSharedListenerStillFailsOnAPortHeldByAPlainSocket() throws {
        let held = try Self.plainLoopbackListener()
        defer { close(held.descriptor) }
        let group = try EventLoopGroup(loopCount: 1, workerCount: 1)
        defer { group.shutdown(gracePeriod: .seconds(1)) }
        var spec = ListenerSpec(host: "127.0.0.1", port: held.port) { _ in EchoHandler() }
        spec.sharedWithOtherProcesses = true
        let error = #expect(throws: IOError.self) { try group.listen(spec) }
        #expect(error?.errno == EADDRINUSE)
    }

    /// A stopped server's connections linger in TIME_WAIT on its port; a restart must not be refused.
    @Test func aPortInTimeWaitCanBeListenedOnAgain() throws {
        let first = try EventLoopGroup(loopCount: 1, workerCount: 1)
        let port = try first.listen(ListenerSpec(host: "127.0.0.1", port: 0) { _ in CloseAtOnce() })
        let client = try BlockingClient(port: port)
        // The server closes first, so its side of the connection enters TIME_WAIT.
        #expect(client.readUntilClosed(timeout: .seconds(10)).closed)
        client.close()
        first.shutdown(gracePeriod: .seconds(1))
        let second = try EventLoopGroup(loopCount: 2, workerCount: 1)
        defer { second.shutdown(gracePeriod: .seconds(1)) }
        #expect(try second.listen(ListenerSpec(host: "127.0.0.1", port: port) { _ in EchoHandler() }) == port)
    }

    @Test func beginShutdownReturnsWithEveryListenerClosed() throws {
        let group = try EventLoopGroup(loopCount: 2, workerCount: 1)
        defer { group.shutdown(gracePeriod: .seconds(1)) }
        let port = try group.listen(ListenerSpec(host: "127.0.0.1", port: 0) { _ in EchoHandler() })
        let open = try BlockingClient(port: port)
        defer { open.close() }
        group.beginShutdown(gracePeriod: .seconds(5))
        Self.expectRefused(port)
    }

    @Test func closeListenersClosesOnlyTheNamedAddresses() throws {
        let group = try EventLoopGroup(loopCount: 2, workerCount: 1)
        defer { group.shutdown(gracePeriod: .seconds(1)) }
        let closing = try group.listen(ListenerSpec(host: "127.0.0.1", port: 0) { _ in EchoHandler() })
        let staying = try group.listen(ListenerSpec(host: "127.0.0.1", port: 0) { _ in EchoHandler() })
        group.closeListeners([SocketAddress(host: "127.0.0.1", port: closing)])
        Self.expectRefused(closing)
        try Self.expectEchoes(on: staying)
    }

    /// Request/response traffic must not wait on Nagle: every accepted TCP connection has
    /// TCP_NODELAY, which it now inherits from its listener instead of a setsockopt of its own.
    @Test func acceptedConnectionsHaveNoDelay() throws {
        let noDelay = Shared<[Int32]>([])
        let group = try EventLoopGroup(loopCount: 2, workerCount: 1)
        defer { group.shutdown(gracePeriod: .seconds(1)) }
        let port = try group.listen(ListenerSpec(host: "127.0.0.1", port: 0) { connection in
            var value: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            _ = getsockopt(connection.descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &value, &length)
            noDelay.update { $0.append(value) }
            return EchoHandler()
        })
        for _ in 0..<8 { try Self.expectEchoes(on: port) }
        #expect(noDelay.value.count == 8)
        #expect(noDelay.value.allSatisfy { $0 != 0 }, "TCP_NODELAY per accepted connection: \(noDelay.value)")
    }

    @Test func connectionsCountBytesAndTLSHandshakes() throws {
        let certificate = try TestCertificate()
        defer { certificate.directory.remove() }
        let counters = ConnectionCounters()
        var options = ConnectionOptions()
        options.counters = counters
        let group = try EventLoopGroup(loopCount: 2, workerCount: 1)
        defer { group.shutdown(gracePeriod: .seconds(1)) }
        let port = try group.listen(
            ListenerSpec(host: "127.0.0.1", port: 0, tls: try certificate.serverContext(), options: options) { _ in
                EchoHandler()
            })

        let done = Countdown(1)
        let failures = Shared<[String]>([])
        let probe = EchoProbe(payload: Array("hello over TLS".utf8), done: done, failures: failures)
        let box = LoopLocal<EchoProbe?>(probe)
        let clientTLS = try certificate.clientContext()
        group.next().execute { loop in
            guard let probe = box.value else { return }
            box.value = nil
            do {
                try loop.connect(host: "127.0.0.1", port: port, tls: clientTLS, serverName: "localhost", handler: probe)
            } catch {
                probe.done.signal()
            }
        }
        #expect(done.wait(timeout: .seconds(20)))
        #expect(failures.update { $0 }.isEmpty)
        #expect(counters.tlsHandshakesCompleted == 1)
        #expect(counters.bytesRead == 14)
        // The server counts a write just after the kernel took it: the client may read it first.
        #expect(eventually { counters.bytesWritten == 14 })

        // Plain text to a TLS port is a failed handshake.
        let plain = try BlockingClient(port: port)
        plain.send("a LOGIN user pass\r\n")
        #expect(plain.readUntilClosed(timeout: .seconds(10)).closed)
        plain.close()
        #expect(counters.tlsHandshakesFailed == 1)
        #expect(counters.tlsHandshakesCompleted == 1)
    }
}

/// Polls `condition` until it holds or 10 s pass, for a count that lags the event a test saw.
func eventually(_ condition: () -> Bool) -> Bool {
    let deadline = Deadline.now().adding(.seconds(10))
    while !condition() {
        if Deadline.now() >= deadline { return false }
        sched_yield()
    }
    return true
}

/// Closes each connection as soon as it is accepted.
final class CloseAtOnce: ConnectionHandler {
    func connectionActive(_ connection: Connection) { connection.close(.immediately) }
    func connectionRead(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int { bytes.count }
}

/// Connections accepted per group, counted on the loops' threads.
private final class AcceptCounts: Sendable {
    let counts = Mutex([0, 0])
}
