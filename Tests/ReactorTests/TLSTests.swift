//===----------------------------------------------------------------------===//
// Apus Reactor tests: TLS streams, failures, upgrades, moves between loops.
//===----------------------------------------------------------------------===//

import Glibc
import Synchronization
import Testing
@testable import Reactor

extension ReactorSocketTests {
    /// The echo handler moves itself to the other loop after every read while the client
    /// streams 4 MiB over TLS: every byte must come back once and in order.
    @Test func tlsConnectionMovedBetweenLoopsMidStreamLosesAndReordersNothing() throws {
        let certificate = try TestCertificate()
        defer { certificate.directory.remove() }
        let leaked = try leakedKernelObjects {
            let server = try EventLoopGroup(loopCount: 2, workerCount: 1, name: "srv")
            let client = try EventLoopGroup(loopCount: 1, workerCount: 1, name: "cli")
            let moves = Shared(0)
            let loops = server.loops
            let port = try server.listen(ListenerSpec(host: "127.0.0.1", port: 0, tls: try certificate.serverContext()) { _ in
                WanderingEcho(loops: loops, moves: moves)
            })
            let done = Countdown(1)
            let failures = Shared<[String]>([])
            let payload = patternBytes(count: 4 << 20, seed: 11)
            let tls = try certificate.clientContext()
            client.loops[0].execute { loop in
                _ = try? loop.connect(host: "127.0.0.1", port: port, tls: tls, serverName: "localhost",
                                      handler: EchoProbe(payload: payload, done: done, failures: failures))
            }
            #expect(done.wait())
            #expect(failures.value.isEmpty, "\(failures.value)")
            #expect(moves.value >= 10, "the connection moved \(moves.value) times")
            client.shutdown(gracePeriod: .seconds(1))
            server.shutdown(gracePeriod: .seconds(1))
        }
        #expect(leaked.isEmpty, "descriptors left open: \(leaked)")
    }

    @Test func badCertificatePlaintextAndStalledHandshakeCloseOnlyTheirOwnConnection() throws {
        let certificate = try TestCertificate()
        let stranger = try TestCertificate(commonName: "stranger.example")
        defer {
            certificate.directory.remove()
            stranger.directory.remove()
        }
        let leaked = try leakedKernelObjects {
            let server = try EventLoopGroup(loopCount: 1, workerCount: 1, name: "srv")
            let client = try EventLoopGroup(loopCount: 1, workerCount: 1, name: "cli")
            var options = ConnectionOptions()
            options.handshakeTimeout = .milliseconds(200)
            let serverReasons = Shared<[CloseReason]>([])
            let port = try server.listen(ListenerSpec(host: "127.0.0.1", port: 0, tls: try certificate.serverContext(),
                                                      options: options) { _ in ReasonRecordingEcho(serverReasons) })
            // A healthy TLS connection stays open throughout.
            let healthy = try HealthyClient(group: client, port: port, tls: certificate.clientContext())

            // 1. A client that trusts another certificate refuses ours.
            let reason = Shared<CloseReason?>(nil)
            let refused = Countdown(1)
            let strangerTLS = try stranger.clientContext()
            client.loops[0].execute { loop in
                _ = try? loop.connect(host: "127.0.0.1", port: port, tls: strangerTLS, serverName: "localhost",
                                      handler: RecordClose(reason, refused))
            }
            #expect(refused.wait())
            if case .tlsFailure(let text)? = reason.value {
                #expect(text.contains("certificate verify failed"), "\(text)")
            } else {
                Issue.record("expected a TLS failure, got \(String(describing: reason.value))")
            }

            // 2. Plaintext IMAP sent to the TLS port.
            let plain = try BlockingClient(port: port)
            plain.send("a001 CAPABILITY\r\n")
            #expect(plain.readUntilClosed(timeout: .seconds(5)).closed)
            plain.close()

            // 3. A client that connects and never says hello.
            let silent = try BlockingClient(port: port)
            let start = ContinuousClock.now
            #expect(silent.readUntilClosed(timeout: .seconds(5)).closed)
            #expect(ContinuousClock.now - start >= .milliseconds(150))
            silent.close()

            #expect(healthy.roundTrip(patternBytes(count: 100_000, seed: 5)), "the healthy connection is unaffected")
            let reasons = serverReasons.value
            #expect(reasons.contains(.handshakeTimeout))
            #expect(reasons.contains { if case .tlsFailure = $0 { true } else { false } })
            healthy.close()
            client.shutdown(gracePeriod: .seconds(1))
            server.shutdown(gracePeriod: .seconds(1))
        }
        #expect(leaked.isEmpty, "descriptors left open: \(leaked)")
    }

    /// A client pipelines a command after STARTTLS in the same packet; the server must drop it
    /// (the STARTTLS command-injection class of bugs) and see only what came over TLS.
    @Test func startTLSDiscardsPlaintextPipelinedAfterIt() throws {
        let certificate = try TestCertificate()
        defer { certificate.directory.remove() }
        let (server, client) = try serverAndClientGroups()
        defer { shutDown(server, client) }
        let serverTLS = try certificate.serverContext()
        let linesAfterTLS = Shared<[String]>([])
        let port = try server.listen(ListenerSpec(host: "127.0.0.1", port: 0) { _ in
            StartTLSServer(context: serverTLS.current, linesAfterTLS: linesAfterTLS)
        })
        let done = Countdown(1)
        let tls = try certificate.clientContext()
        client.loops[0].execute { loop in
            _ = try? loop.connect(host: "127.0.0.1", port: port, handler: StartTLSClient(tls: tls, done: done))
        }
        #expect(done.wait())
        // connectionActive once, then the upgrade is announced on its own; only TLS bytes are read after it.
        #expect(linesAfterTLS.value == ["(active)", "(tls)", "HELLO OVER TLS"], "\(linesAfterTLS.value)")
    }

    @Test func certificateReloadServesNewConnectionsWithoutDroppingOldOnes() throws {
        let first = try TestCertificate(), second = try TestCertificate()
        defer {
            first.directory.remove()
            second.directory.remove()
        }
        let (server, client) = try serverAndClientGroups()
        defer { shutDown(server, client) }
        let holder = try first.serverContext()
        let port = try server.listen(ListenerSpec(host: "127.0.0.1", port: 0, tls: holder) { _ in EchoHandler() })
        let old = try HealthyClient(group: client, port: port, tls: first.clientContext())
        holder.replace(with: try TLSContext.server(certificateChain: second.certificatePath, privateKey: second.keyPath))
        #expect(old.roundTrip([1, 2, 3]), "the connection made before the reload goes on")
        let renewed = try HealthyClient(group: client, port: port, tls: second.clientContext())
        #expect(renewed.roundTrip([4, 5, 6]), "new connections get the new certificate")
        #expect(throws: HealthyClient.Failed.self) { _ = try HealthyClient(group: client, port: port, tls: first.clientContext()) }
        old.close()
        renewed.close()
    }

    @Test func clientResumesItsTLSSessionOnReconnect() throws {
        let certificate = try TestCertificate()
        defer { certificate.directory.remove() }
        let (server, client) = try serverAndClientGroups()
        defer { shutDown(server, client) }
        let port = try server.listen(ListenerSpec(host: "127.0.0.1", port: 0, tls: try certificate.serverContext()) { _ in
            EchoHandler()
        })
        let tls = try certificate.clientContext()
        let first = try HealthyClient(group: client, port: port, tls: tls)
        #expect(first.roundTrip([1]))
        let session = first.session()
        first.close()
        #expect(session != nil, "a resumable session after the first exchange")
        let second = try HealthyClient(group: client, port: port, tls: tls, session: session)
        #expect(second.roundTrip([2]))
        #expect(second.sessionReused())
        second.close()
    }

    @Test func alpnAgreesOnIMAPAndRefusesOtherProtocols() throws {
        let certificate = try TestCertificate()
        defer { certificate.directory.remove() }
        let (server, client) = try serverAndClientGroups()
        defer { shutDown(server, client) }
        let port = try server.listen(ListenerSpec(host: "127.0.0.1", port: 0,
                                                  tls: try certificate.serverContext(alpn: ["imap"])) { _ in EchoHandler() })
        let imap = try HealthyClient(group: client, port: port, tls: certificate.clientContext(alpn: ["imap"]))
        #expect(imap.alpn() == "imap")
        imap.close()
        #expect(throws: HealthyClient.Failed.self) {
            _ = try HealthyClient(group: client, port: port, tls: certificate.clientContext(alpn: ["h2"]))
        }
        let none = try HealthyClient(group: client, port: port, tls: certificate.clientContext())
        #expect(none.roundTrip([9]), "a client that offers no ALPN is served")
        none.close()
    }

    @Test func sniSelectsTheCertificateForTheNameTheClientAsksFor() throws {
        let standard = try TestCertificate(), named = try TestCertificate(commonName: "mail.example.org")
        defer {
            standard.directory.remove()
            named.directory.remove()
        }
        let (server, client) = try serverAndClientGroups()
        defer { shutDown(server, client) }
        let alternative = try TLSContext.server(certificateChain: named.certificatePath, privateKey: named.keyPath)
        let context = try TLSContext.server(certificateChain: standard.certificatePath, privateKey: standard.keyPath,
                                            serverNames: ["Mail.Example.org": alternative])
        let names = Shared<[String?]>([])
        let port = try server.listen(ListenerSpec(host: "127.0.0.1", port: 0, tls: TLSContextHolder(context)) { _ in
            NameRecordingEcho(names)
        })
        let toNamed = try HealthyClient(group: client, port: port, tls: named.clientContext(), serverName: "mail.example.org")
        #expect(toNamed.roundTrip([1]), "the named certificate verifies for its name")
        toNamed.close()
        let toDefault = try HealthyClient(group: client, port: port, tls: standard.clientContext())
        #expect(toDefault.roundTrip([2]), "other names get the default certificate")
        toDefault.close()
        #expect(throws: HealthyClient.Failed.self) {
            _ = try HealthyClient(group: client, port: port, tls: standard.clientContext(), serverName: "mail.example.org")
        }
        #expect(names.value.prefix(2) == ["mail.example.org", "localhost"])
    }

    @Test(arguments: [false, true])
    func fileRegionsAreSentInOrderWithTheBytesAroundThem(tls: Bool) throws {
        let certificate = try TestCertificate()
        defer { certificate.directory.remove() }
        let path = certificate.directory.path + "/message"
        let content = patternBytes(count: 3 << 20, seed: 21)
        let file = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o600)
        _ = content.withUnsafeBytes { write(file, $0.baseAddress, $0.count) }
        close(file)
        let (server, client) = try serverAndClientGroups()
        defer { shutDown(server, client) }
        let port = try server.listen(ListenerSpec(host: "127.0.0.1", port: 0, tls: tls ? try certificate.serverContext() : nil) { _ in
            FileServer(path: path, offset: 1000, count: content.count - 2000)
        })
        let reader = try HealthyClient(group: client, port: port, tls: tls ? certificate.clientContext() : nil)
        let expected = Array("BEFORE\n".utf8) + Array(content[1000..<(content.count - 1000)]) + Array("AFTER\n".utf8)
        #expect(reader.receive(count: expected.count) == expected)
        reader.close()
    }
}

/// A one-loop server group and a one-loop client group for a test.
func serverAndClientGroups() throws -> (server: EventLoopGroup, client: EventLoopGroup) {
    (try EventLoopGroup(loopCount: 1, workerCount: 1, name: "srv"), try EventLoopGroup(loopCount: 1, workerCount: 1, name: "cli"))
}

func shutDown(_ server: EventLoopGroup, _ client: EventLoopGroup) {
    client.shutdown(gracePeriod: .seconds(1))
    server.shutdown(gracePeriod: .seconds(1))
}

// MARK: - Handlers

final class WanderingEcho: ConnectionHandler {
    let loops: [EventLoopHandle]
    let moves: Shared<Int>
    init(loops: [EventLoopHandle], moves: Shared<Int>) {
        self.loops = loops
        self.moves = moves
    }
    func connectionRead(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int {
        connection.write(bytes)
        connection.transfer(to: loops[(connection.loop.index + 1) % loops.count])
        return bytes.count
    }
    func connectionMoved(_ connection: Connection) { moves.update { $0 += 1 } }
}

final class NameRecordingEcho: ConnectionHandler {
    let names: Shared<[String?]>
    init(_ names: Shared<[String?]>) { self.names = names }
    func connectionActive(_ connection: Connection) {
        let name = connection.tlsServerName
        names.update { $0.append(name) }
    }
    func connectionRead(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int {
        connection.write(bytes)
        return bytes.count
    }
}

final class ReasonRecordingEcho: ConnectionHandler {
    let reasons: Shared<[CloseReason]>
    init(_ reasons: Shared<[CloseReason]>) { self.reasons = reasons }
    func connectionRead(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int {
        connection.write(bytes)
        return bytes.count
    }
    func connectionClosed(_ connection: Connection, reason: CloseReason) { reasons.update { $0.append(reason) } }
}

/// Splits input into CRLF lines; the helpers below speak in lines.
struct LineSplitter {
    var pending: [UInt8] = []
    mutating func lines(_ bytes: UnsafeRawBufferPointer) -> [String] {
        pending += bytes
        var lines: [String] = []
        while let end = pending.firstIndex(of: UInt8(ascii: "\n")) {
            lines.append(String(decoding: pending[..<end], as: UTF8.self).trimmingSuffix("\r"))
            pending.removeSubrange(...end)
        }
        return lines
    }
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String { hasSuffix(suffix) ? String(dropLast(suffix.count)) : self }
}

final class StartTLSServer: ConnectionHandler {
    let context: TLSContext
    let linesAfterTLS: Shared<[String]>
    var upgraded = false
    func connectionActive(_ connection: Connection) { linesAfterTLS.update { $0.append("(active)") } }
    func connectionTLSEstablished(_ connection: Connection) { linesAfterTLS.update { $0.append("(tls)") } }
    init(context: TLSContext, linesAfterTLS: Shared<[String]>) {
        self.context = context
        self.linesAfterTLS = linesAfterTLS
    }
    func connectionRead(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int {
        // Consume line by line, as a session does: stop right after STARTTLS.
        var consumed = 0
        while let end = bytes[consumed...].firstIndex(of: UInt8(ascii: "\n")) {
            let line = String(decoding: bytes[consumed..<end], as: UTF8.self).trimmingSuffix("\r")
            consumed = end + 1
            if upgraded {
                linesAfterTLS.update { $0.append(line) }
                connection.write("OK\r\n")
            } else if line == "STARTTLS" {
                connection.write("OK begin TLS\r\n")
                connection.startTLS(context: context)
                upgraded = true
                return consumed
            }
        }
        return consumed
    }
}

final class StartTLSClient: ConnectionHandler {
    let tls: TLSContext
    let done: Countdown
    var splitter = LineSplitter()
    var stage = 0
    init(tls: TLSContext, done: Countdown) {
        self.tls = tls
        self.done = done
    }
    var activations = 0
    func connectionActive(_ connection: Connection) {
        activations += 1
        connection.write("STARTTLS\r\nINJECTED PLAINTEXT\r\n")
    }
    func connectionTLSEstablished(_ connection: Connection) {
        connection.write("HELLO OVER TLS\r\n")
    }
    func connectionRead(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int {
        for line in splitter.lines(bytes) {
            if stage == 0, line.hasPrefix("OK begin TLS") {
                stage = 1
                connection.startTLS(context: tls, serverName: "localhost")
                return bytes.count
            } else if stage == 1, line == "OK" {
                connection.close(.immediately)
            }
        }
        return bytes.count
    }
    func connectionClosed(_ connection: Connection, reason: CloseReason) { done.signal() }
}

final class FileServer: ConnectionHandler {
    let path: String, offset: Int64, count: Int
    init(path: String, offset: Int64, count: Int) {
        self.path = path
        self.offset = offset
        self.count = count
    }
    func connectionActive(_ connection: Connection) {
        connection.write("BEFORE\n")
        connection.writeFile(descriptor: open(path, O_RDONLY | O_CLOEXEC), offset: offset, count: count)
        connection.write("AFTER\n")
    }
    func connectionRead(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int { bytes.count }
}

/// A client connection on a reactor loop driven synchronously from the test thread.
final class HealthyClient: @unchecked Sendable {
    struct Failed: Error { let reason: CloseReason? }

    /// Touched only on the client loop's thread; the test thread goes through `execute`.
    private final class Handler: ConnectionHandler {
        var connection: Connection?
        /// Everything received so far; `taken` of it has been returned to the test.
        var received: [UInt8] = []
        var taken = 0
        var wanted = 0
        var waiter: Countdown?
        var activated: Countdown
        var closeReason: CloseReason?
        init(activated: Countdown) { self.activated = activated }
        func connectionActive(_ connection: Connection) {
            self.connection = connection
            activated.signal()
        }
        func connectionRead(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int {
            received += bytes
            if let waiter, received.count - taken >= wanted {
                self.waiter = nil
                waiter.signal()
            }
            return bytes.count
        }
        func connectionClosed(_ connection: Connection, reason: CloseReason) {
            closeReason = reason
            if self.connection == nil { activated.signal() }
            self.connection = nil
            waiter?.signal()
        }
    }

    private let loop: EventLoopHandle
    private let handler: Handler

    init(group: EventLoopGroup, port: UInt16, tls: TLSContext?, session: TLSSession? = nil,
         serverName: String = "localhost") throws {
        loop = group.loops[0]
        let activated = Countdown(1)
        let handler = Handler(activated: activated)
        self.handler = handler
        let box = LoopLocal(handler)
        loop.execute { loop in
            _ = try? loop.connect(host: "127.0.0.1", port: port, tls: tls, serverName: serverName, session: session,
                                  handler: box.value)
        }
        guard activated.wait(timeout: .seconds(10)) else { throw Failed(reason: nil) }
        let connected = onLoop { $0.connection != nil }
        if !connected { throw Failed(reason: onLoop { $0.closeReason }) }
    }

    private func onLoop<T: Sendable>(_ body: @escaping @Sendable (Handler) -> T) -> T {
        let result = Shared<T?>(nil)
        let done = Countdown(1)
        let box = LoopLocal(handler)
        loop.execute { _ in
            result.update { $0 = body(box.value) }
            done.signal()
        }
        _ = done.wait()
        return result.value!
    }

    /// Sends `bytes` and waits for `bytes.count` bytes of reply; true if they are the same.
    func roundTrip(_ bytes: [UInt8]) -> Bool {
        receive(count: bytes.count, after: bytes) == bytes
    }

    /// Sends `sending`, then returns the next `count` bytes received (fewer after a close or
    /// 30 seconds of waiting). Bytes that arrived before the call are included.
    func receive(count: Int, after sending: [UInt8] = []) -> [UInt8] {
        let arrived = Countdown(1)
        let box = LoopLocal(handler)
        loop.execute { _ in
            let handler = box.value
            handler.wanted = count
            handler.waiter = arrived
            if let connection = handler.connection { connection.write(sending) }
            if handler.connection == nil || handler.received.count - handler.taken >= count {
                handler.waiter = nil
                arrived.signal()
            }
        }
        _ = arrived.wait(timeout: .seconds(30))
        return onLoop { handler in
            let end = min(handler.received.count, handler.taken + count)
            let result = Array(handler.received[handler.taken..<end])
            handler.taken = end
            return result
        }
    }

    func session() -> TLSSession? { onLoop { $0.connection?.tlsSessionForResumption() } }
    func sessionReused() -> Bool { onLoop { $0.connection?.tlsSessionReused ?? false } }
    func alpn() -> String? { onLoop { $0.connection?.tlsALPN } }
    func close() { _ = onLoop { $0.connection?.close(.immediately) } }
}
