//===----------------------------------------------------------------------===//
// Apus Reactor tests over real loopback sockets.
//
// One serialized suite: each test checks that it left no socket, epoll or eventfd descriptor
// open (/proc/self/fd), which only means something when nothing else in the process opens
// sockets meanwhile. Other modules' suites run in parallel in the same test process, so this
// suite runs in a process of its own: ReactorIsolationTests starts the test binary again with
// APUS_REACTOR_ISOLATED=1 and only this suite selected, and checks that it passes.
//===----------------------------------------------------------------------===//

import Glibc
import Synchronization
import Testing
@testable import Reactor

/// Probes owned by one client loop: touched only on that loop's thread (test-only box).
final class LoopLocal<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}

@Suite(.serialized, .enabled(if: ReactorIsolation.isIsolatedRun, "runs in its own process: see ReactorIsolationTests"))
struct ReactorSocketTests {

    // MARK: - Echo at scale

    struct EchoCase: Sendable, CustomTestStringConvertible {
        var loops: Int
        var tls: Bool
        var testDescription: String { "\(loops) loop(s), \(tls ? "TLS" : "plain")" }
    }

    static let echoCases = [1, 2, 3, 4].flatMap { [EchoCase(loops: $0, tls: false), EchoCase(loops: $0, tls: true)] }

    /// 2,000 connections open at once; each echoes a 1-byte message, and 16 of them a 1 MiB one
    /// that the kernel splits into partial reads and writes on both sides.
    @Test(arguments: echoCases)
    func echoesTwoThousandConcurrentConnections(_ echo: EchoCase) throws {
        let certificate = try TestCertificate()
        defer { certificate.directory.remove() }
        let leaked = try leakedKernelObjects {
            let server = try EventLoopGroup(loopCount: echo.loops, workerCount: 1, name: "srv")
            let client = try EventLoopGroup(loopCount: 2, workerCount: 1, name: "cli")
            var spec = ListenerSpec(host: "127.0.0.1", port: 0, tls: echo.tls ? try certificate.serverContext() : nil) { _ in
                EchoHandler()
            }
            spec.backlog = 4096
            let port = try server.listen(spec)
            let clientTLS = echo.tls ? try certificate.clientContext() : nil

            let total = 2000
            let connected = Countdown(total)
            let done = Countdown(total)
            let failures = Shared<[String]>([])
            // Phase 1: open every connection and wait until all are up, so 2,000 are concurrent.
            let perLoop = client.loops.map { _ in LoopLocal<[HoldingProbe]>([]) }
            for index in 0..<total {
                let loop = client.loops[index % client.loops.count]
                let box = perLoop[index % client.loops.count]
                let payload = index % 125 == 0 ? patternBytes(count: 1 << 20, seed: index) : [UInt8(truncatingIfNeeded: index)]
                loop.execute { loop in
                    let probe = HoldingProbe(payload: payload, connected: connected, done: done, failures: failures)
                    box.value.append(probe)
                    do {
                        try loop.connect(host: "127.0.0.1", port: port, tls: clientTLS, serverName: "localhost", handler: probe)
                    } catch {
                        failures.update { $0.append("connect: \(error)") }
                        connected.signal()
                        done.signal()
                    }
                }
            }
            #expect(connected.wait(), "all 2,000 connections up (\(connected.count) missing)")
            // Phase 2: every connection sends and checks its echo.
            for (loop, box) in zip(client.loops, perLoop) {
                loop.execute { _ in for probe in box.value { probe.send() } }
            }
            #expect(done.wait(), "all echoes back (\(done.count) missing)")
            #expect(failures.value.isEmpty, "\(failures.value.prefix(5))")
            client.shutdown(gracePeriod: .seconds(1))
            server.shutdown(gracePeriod: .seconds(1))
        }
        #expect(leaked.isEmpty, "descriptors left open: \(leaked.prefix(5))")
    }

    // MARK: - Loop behaviour

    /// Two connections are readable in one epoll batch; whichever is served first closes the
    /// other and opens a new one, which takes the closed one's descriptor number and slot. The
    /// closed one's event, still in the batch, must be dropped, not delivered to the newcomer.
    @Test func closedAndReusedDescriptorGetsNoStaleEventInTheSameBatch() throws {
        let leaked = try leakedKernelObjects {
            let group = try EventLoopGroup(loopCount: 1, workerCount: 1)
            let outcome = Shared<(reusedDescriptor: Bool, newcomerReads: Int, stale: Int)>((false, 0, 0))
            let finished = Countdown(1)
            let peers = Shared<[Int32]>([])
            group.loops[0].execute { loop in
                let first = socketPair(), second = socketPair()
                peers.update { $0 += [first.peer, second.peer] }
                let newcomer = CountingHandler()
                let handlerA = CloseOtherOnRead(newcomer: newcomer, outcome: outcome, peers: peers)
                let handlerB = CloseOtherOnRead(newcomer: newcomer, outcome: outcome, peers: peers)
                let a = loop.adopt(descriptor: first.local, peer: SocketAddress(host: "pair", port: 1), handler: handlerA)
                let b = loop.adopt(descriptor: second.local, peer: SocketAddress(host: "pair", port: 2), handler: handlerB)
                handlerA.other = b
                handlerB.other = a
                // Both become readable before this task returns, so the next epoll_wait reports both.
                _ = write(first.peer, "x", 1)
                _ = write(second.peer, "y", 1)
                loop.schedule(after: .milliseconds(50)) {
                    outcome.update { $0.newcomerReads = newcomer.reads; $0.stale = loop.staleEventsDropped }
                    finished.signal()
                }
            }
            #expect(finished.wait())
            #expect(outcome.value.reusedDescriptor, "the test only means something if the descriptor number was reused")
            #expect(outcome.value.stale == 1, "the closed connection's event was recognised as stale and dropped")
            #expect(outcome.value.newcomerReads == 0, "the newcomer's peer never wrote")
            group.shutdown(gracePeriod: .milliseconds(100))
            for descriptor in peers.value { close(descriptor) }
        }
        #expect(leaked.isEmpty, "descriptors left open: \(leaked)")
    }

    /// A request/response peer (a client, or a relay's hop) sends one small message at a time:
    /// each is read once, and the short read ends the round without a read that finds nothing.
    @Test func aShortReadEndsTheRoundWithoutAnEmptyRead() throws {
        let group = try EventLoopGroup(loopCount: 1, workerCount: 1)
        defer { group.shutdown(gracePeriod: .zero) }
        let counters = ConnectionCounters()
        var options = ConnectionOptions()
        options.counters = counters
        let port = try group.listen(ListenerSpec(host: "127.0.0.1", port: 0, options: options) { _ in EchoHandler() })
        let client = try BlockingClient(port: port)
        defer { client.close() }
        for index in 0..<20 {
            let message = Array("a\(index) NOOP\r\n".utf8)
            client.send(message)
            #expect(client.read(count: message.count) == message)
        }
        #expect(eventually { counters.bytesWritten == counters.bytesRead }, "every echo written")
        #expect(counters.emptyReads == 0, "\(counters.emptyReads) reads found nothing")
    }

    /// Data and the peer's FIN arrive before the connection is read at all (one epoll event for
    /// both): the short read must not end the round, or the end of the stream would never be seen.
    @Test func dataAndEndOfStreamInOneEventAreBothDelivered() throws {
        let group = try EventLoopGroup(loopCount: 1, workerCount: 1)
        defer { group.shutdown(gracePeriod: .zero) }
        let received = Shared<[UInt8]>([])
        let ended = Countdown(1)
        let pair = socketPair()
        defer { close(pair.peer) }
        _ = write(pair.peer, "last words", 10)
        shutdown(pair.peer, Int32(SHUT_WR))
        group.loops[0].execute { loop in
            _ = loop.adopt(descriptor: pair.local, peer: SocketAddress(host: "pair", port: 1),
                           handler: RecordInputAndEnd(received: received, ended: ended))
        }
        #expect(ended.wait(timeout: .seconds(10)), "the end of the stream was delivered")
        #expect(received.value == Array("last words".utf8))
    }

    @Test func timerFiresOnTimeOnAnIdleLoopAndCancelledTimersDoNot() throws {
        let group = try EventLoopGroup(loopCount: 1, workerCount: 1)
        defer { group.shutdown(gracePeriod: .zero) }
        let fired = Countdown(1)
        let record = Shared<(elapsed: Duration, cancelledFired: Bool, order: [Int])>((.zero, false, []))
        group.loops[0].execute { loop in
            let start = ContinuousClock.now
            let cancelled = loop.schedule(after: .milliseconds(20)) { record.update { $0.cancelledFired = true } }
            cancelled.cancel()
            loop.schedule(after: .milliseconds(60)) { record.update { $0.order.append(2) } }
            loop.schedule(after: .milliseconds(30)) { record.update { $0.order.append(1) } }
            loop.schedule(after: .milliseconds(100)) {
                record.update { $0.elapsed = ContinuousClock.now - start }
                fired.signal()
            }
        }
        // Without a wait timeout derived from the next deadline the idle loop would sleep forever.
        #expect(fired.wait(timeout: .seconds(10)))
        #expect(record.value.elapsed >= .milliseconds(100))
        #expect(record.value.elapsed < .milliseconds(1000), "fired late: \(record.value.elapsed)")
        #expect(!record.value.cancelledFired)
        #expect(record.value.order == [1, 2])
    }

    @Test func idleTimeoutClosesASilentConnection() throws {
        let group = try EventLoopGroup(loopCount: 1, workerCount: 1)
        defer { group.shutdown(gracePeriod: .zero) }
        var options = ConnectionOptions()
        options.idleTimeout = .milliseconds(100)
        let closed = Countdown(1)
        let port = try group.listen(ListenerSpec(host: "127.0.0.1", port: 0, options: options) { _ in
            SignalOnClose(closed)
        })
        let client = try BlockingClient(port: port)
        defer { client.close() }
        let start = ContinuousClock.now
        #expect(closed.wait(timeout: .seconds(10)))
        #expect(ContinuousClock.now - start >= .milliseconds(90))
        #expect(client.readUntilClosed(timeout: .seconds(5)).closed, "the client sees the close")
    }

    @Test func connectToAClosedPortReportsConnectFailed() throws {
        let group = try EventLoopGroup(loopCount: 1, workerCount: 1)
        defer { group.shutdown(gracePeriod: .zero) }
        // A port that was just listening and is now closed.
        let probe = try BlockingClient.unusedPort()
        let reason = Shared<CloseReason?>(nil)
        let done = Countdown(1)
        group.loops[0].execute { loop in
            _ = try? loop.connect(host: "127.0.0.1", port: probe, handler: RecordClose(reason, done))
        }
        #expect(done.wait())
        guard case .connectFailed(let error)? = reason.value else {
            Issue.record("expected connectFailed, got \(String(describing: reason.value))")
            return
        }
        #expect(error.errno == ECONNREFUSED)
    }

    /// Writing to a peer that has gone gives EPIPE on that connection; it must not raise SIGPIPE
    /// and end the process (this suite runs in a process of its own, where nothing else ignores it).
    @Test func writingToAPeerThatHasGoneClosesTheConnectionNotTheProcess() throws {
        let group = try EventLoopGroup(loopCount: 1, workerCount: 1)
        defer { group.shutdown(gracePeriod: .zero) }
        let reason = Shared<CloseReason?>(nil)
        let done = Countdown(1)
        group.loops[0].execute { loop in
            let pair = socketPair()
            close(pair.peer)
            let connection = loop.adopt(descriptor: pair.local, peer: SocketAddress(host: "pair", port: 1),
                                        handler: RecordClose(reason, done))
            connection?.write(patternBytes(count: 1 << 20))
        }
        #expect(done.wait())
        guard case .ioError(let error)? = reason.value else {
            Issue.record("expected an I/O error, got \(String(describing: reason.value))")
            return
        }
        #expect(error.errno == EPIPE || error.errno == ECONNRESET)
    }

    @Test func blockingWorkRunsOffTheLoopAndCompletesOnIt() throws {
        let group = try EventLoopGroup(loopCount: 1, workerCount: 2)
        defer { group.shutdown(gracePeriod: .zero) }
        let done = Countdown(1)
        let threads = Shared<(loop: UInt, worker: UInt, completion: UInt, value: Int)>((0, 0, 0, 0))
        group.loops[0].execute { loop in
            let loopThread = UInt(pthread_self())
            threads.update { $0.loop = loopThread }
            loop.runBlocking({ () -> Int in
                threads.update { $0.worker = UInt(pthread_self()) }
                return 42
            }, then: { value in
                threads.update { $0.completion = UInt(pthread_self()); $0.value = value }
                done.signal()
            })
        }
        #expect(done.wait())
        #expect(threads.value.worker != threads.value.loop)
        #expect(threads.value.completion == threads.value.loop)
        #expect(threads.value.value == 42)
    }

    /// Output above the high-water mark stops reading: a client that writes without reading
    /// makes the echo server stop, not buffer without bound; once it reads, all arrives intact.
    @Test func backpressureStopsReadingAboveTheHighWaterMark() throws {
        let group = try EventLoopGroup(loopCount: 1, workerCount: 1)
        defer { group.shutdown(gracePeriod: .zero) }
        var options = ConnectionOptions()
        options.highWaterMark = 128 * 1024
        options.lowWaterMark = 32 * 1024
        let maximumQueued = Shared(0)
        let port = try group.listen(ListenerSpec(host: "127.0.0.1", port: 0, options: options) { _ in
            MeasuringEcho(maximumQueued)
        })
        let client = try BlockingClient(port: port)
        defer { client.close() }
        let payload = patternBytes(count: 32 << 20, seed: 3)
        let sent = client.writeWithoutReading(payload)
        #expect(sent < payload.count, "the server stopped reading, so the client's writes stopped")
        // 64 KiB is the loop's read size: one read past the mark at most.
        #expect(maximumQueued.value <= options.highWaterMark + 64 * 1024, "queued \(maximumQueued.value)")
        let echoed = client.exchange(remainder: Array(payload[sent...]), expecting: payload.count)
        #expect(echoed == payload)
    }

    @Test func gracefulShutdownLetsHandlersSayGoodbye() throws {
        let leaked = try leakedKernelObjects {
            let group = try EventLoopGroup(loopCount: 2, workerCount: 1)
            let port = try group.listen(ListenerSpec(host: "127.0.0.1", port: 0) { _ in ByeOnShutdown() })
            let clients = try (0..<4).map { _ in try BlockingClient(port: port) }
            for client in clients { #expect(client.read(count: 6) == Array("HELLO\n".utf8)) }
            group.shutdown(gracePeriod: .seconds(5))
            for client in clients {
                let rest = client.readUntilClosed(timeout: .seconds(5))
                #expect(rest.bytes == Array("BYE\n".utf8))
                #expect(rest.closed)
                client.close()
            }
            #expect(throws: (any Error).self) { _ = try BlockingClient(port: port) }
        }
        #expect(leaked.isEmpty, "descriptors left open: \(leaked)")
    }
}

extension ReactorSocketTests {
    // MARK: - UNIX stream sockets

    /// A UNIX listener on two loops echoes 1-byte and 200 KiB messages to connections made with
    /// `connect(host: path)`; the server sees each peer as the listener's socket, not an IP;
    /// closing the listener stops it accepting, and nothing is left open.
    @Test func unixListenerAcceptsOnEveryLoopAndClosesCleanly() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.path + "/echo.sock"
        let leaked = try leakedKernelObjects {
            let server = try EventLoopGroup(loopCount: 2, workerCount: 1, name: "srv")
            let client = try EventLoopGroup(loopCount: 2, workerCount: 1, name: "cli")
            let peers = Shared<[String]>([])
            try server.listen(ListenerSpec(host: path, port: 0) { connection in
                peers.update { $0.append(connection.peer.description) }
                return EchoHandler()
            })
            let total = 40
            let done = Countdown(total)
            let failures = Shared<[String]>([])
            for index in 0..<total {
                // 200 KiB: more than a UNIX socket's buffer takes at once (partial writes and reads),
                // less than the output high-water mark (an echo of more, both ends writing without
                // reading, would stall on the small AF_UNIX buffers; loopback TCP's grow to MBs).
                let payload = index % 10 == 0 ? patternBytes(count: 200 << 10, seed: index) : [UInt8(truncatingIfNeeded: index)]
                client.loops[index % 2].execute { loop in
                    do {
                        try loop.connect(host: path, port: 0,
                                         handler: EchoProbe(payload: payload, done: done, failures: failures))
                    } catch {
                        failures.update { $0.append("connect: \(error)") }
                        done.signal()
                    }
                }
            }
            #expect(done.wait(), "all echoes back (\(done.count) missing)")
            #expect(failures.value.isEmpty, "\(failures.value.prefix(5))")
            #expect(peers.value.count == total && peers.value.allSatisfy { $0 == "unix:" + path })
            server.closeListeners([SocketAddress(unixPath: path)])
            let refused = Countdown(1)
            let late = Shared<[String]>([])
            client.loops[0].execute { loop in
                do {
                    try loop.connect(host: path, port: 0, handler: EchoProbe(payload: [1], done: refused, failures: late))
                } catch {
                    late.update { $0.append("refused at once") }
                    refused.signal()
                }
            }
            #expect(refused.wait() && !late.value.isEmpty, "a connection after the listener closed got through")
            client.shutdown(gracePeriod: .seconds(1))
            server.shutdown(gracePeriod: .seconds(1))
        }
        #expect(leaked.isEmpty, "descriptors left open: \(leaked)")
    }
}

// MARK: - Handlers used above

/// A client probe that connects first and sends only when told.
final class HoldingProbe: ConnectionHandler {
    let probe: EchoProbe
    let connected: Countdown
    var connection: Connection?

    init(payload: [UInt8], connected: Countdown, done: Countdown, failures: Shared<[String]>) {
        probe = EchoProbe(payload: payload, done: done, failures: failures)
        self.connected = connected
    }

    func connectionActive(_ connection: Connection) {
        self.connection = connection
        connected.signal()
    }

    func send() { if let connection { probe.connectionActive(connection) } }

    func connectionRead(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int {
        probe.connectionRead(connection, bytes)
    }

    func connectionClosed(_ connection: Connection, reason: CloseReason) {
        if self.connection == nil { connected.signal() }
        self.connection = nil
        probe.connectionClosed(connection, reason: reason)
    }
}

final class CountingHandler: ConnectionHandler {
    var reads = 0
    func connectionRead(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int {
        reads += 1
        return bytes.count
    }
}

final class CloseOtherOnRead: ConnectionHandler {
    weak var other: Connection?
    let newcomer: CountingHandler
    let outcome: Shared<(reusedDescriptor: Bool, newcomerReads: Int, stale: Int)>
    let peers: Shared<[Int32]>

    init(newcomer: CountingHandler, outcome: Shared<(reusedDescriptor: Bool, newcomerReads: Int, stale: Int)>,
         peers: Shared<[Int32]>) {
        self.newcomer = newcomer
        self.outcome = outcome
        self.peers = peers
    }

    func connectionRead(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int {
        guard let other, other.isOpen else { return bytes.count }
        let freed = other.descriptor
        other.close(.immediately)
        let pair = socketPair()
        peers.update { $0.append(pair.peer) }
        connection.loop.adopt(descriptor: pair.local, peer: SocketAddress(host: "pair", port: 3), handler: newcomer)
        let reused = pair.local == freed || pair.peer == freed
        outcome.update { $0.reusedDescriptor = reused }
        return bytes.count
    }
}

final class SignalOnClose: ConnectionHandler {
    let countdown: Countdown
    init(_ countdown: Countdown) { self.countdown = countdown }
    func connectionRead(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int { bytes.count }
    func connectionClosed(_ connection: Connection, reason: CloseReason) { countdown.signal() }
}

final class RecordClose: ConnectionHandler {
    let reason: Shared<CloseReason?>
    let done: Countdown
    init(_ reason: Shared<CloseReason?>, _ done: Countdown) {
        self.reason = reason
        self.done = done
    }
    func connectionRead(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int { bytes.count }
    func connectionClosed(_ connection: Connection, reason: CloseReason) {
        self.reason.update { $0 = reason }
        done.signal()
    }
}

final class RecordInputAndEnd: ConnectionHandler {
    let received: Shared<[UInt8]>
    let ended: Countdown
    init(received: Shared<[UInt8]>, ended: Countdown) {
        self.received = received
        self.ended = ended
    }
    func connectionRead(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int {
        received.update { $0 += bytes }
        return bytes.count
    }
    func connectionReadEOF(_ connection: Connection) {
        ended.signal()
        connection.close(.immediately)
    }
}

final class MeasuringEcho: ConnectionHandler {
    let maximumQueued: Shared<Int>
    init(_ maximumQueued: Shared<Int>) { self.maximumQueued = maximumQueued }
    func connectionRead(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int {
        connection.write(bytes)
        let queued = connection.queuedOutputBytes
        maximumQueued.update { $0 = max($0, queued) }
        return bytes.count
    }
}

final class ByeOnShutdown: ConnectionHandler {
    func connectionActive(_ connection: Connection) { connection.write("HELLO\n") }
    func connectionRead(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int { bytes.count }
    func connectionShutdownRequested(_ connection: Connection) {
        connection.write("BYE\n")
        connection.close(.afterFlush)
    }
}

func socketPair() -> (local: Int32, peer: Int32) {
    var fds: [Int32] = [0, 0]
    let result = socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds)
    precondition(result == 0, "socketpair failed")
    return (fds[0], fds[1])
}

extension ReactorSocketTests {
    // MARK: - Peer addresses

    /// Logs, per-address limits and the front end's x-originating-ip all read the accepted peer's
    /// text form: one-, two- and three-digit octets and zeros come out as dotted quads.
    @Test func acceptedIPv4PeersAreWrittenAsDottedQuads() throws {
        let group = try EventLoopGroup(loopCount: 1, workerCount: 1, name: "peers")
        let peers = Shared<[String]>([])
        let accepted = Countdown(4)
        let port = try group.listen(ListenerSpec(host: "127.0.0.1", port: 0) { connection in
            peers.update { $0.append(connection.peer.host) }
            accepted.signal()
            return EchoHandler()
        })
        let sources: [UInt32] = [0x7F00_0001, 0x7F0A_00FF, 0x7FFF_6309, 0x7F64_0A00]
        let clients = try sources.map { try BlockingClient(port: port, source: $0) }
        #expect(accepted.wait())
        #expect(Set(peers.value) == ["127.0.0.1", "127.10.0.255", "127.255.99.9", "127.100.10.0"])
        for client in clients { client.close() }
        group.shutdown()
    }
}
