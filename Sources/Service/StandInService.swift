//===----------------------------------------------------------------------===//
// Apus Service: a small IMAP-shaped line server standing in for a real service.
//===----------------------------------------------------------------------===//

import Reactor
import Synchronization
import Telemetry

/// A real network service on the reactor, just enough IMAP to test process control: it
/// greets, answers CAPABILITY, NOOP, IDLE/DONE and LOGOUT, holds `tag WAIT <ms>` for that long
/// before its tagged OK (a command in flight), and on a graceful stop sends `* BYE` to idle
/// sessions and lets a WAIT finish first.
///
/// ```
/// S: * OK [CAPABILITY IMAP4rev1 IDLE] Apus imap4be stand-in ready
/// C: a WAIT 300
/// S: * waiting
/// S: a OK waited            (300 ms later, even if a stop began meanwhile)
/// S: * BYE Apus is shutting down
/// ```
public final class StandInService: ManagedService {
    let name: ServiceName
    let settings: ServiceSettings
    let tls: TLSContextHolder?
    let logger: Logger
    private let sessions = Atomic<Int>(0)
    private let sessionGauge: Gauge
    private let commandCounter: Counter
    private let sessionNumbers = Atomic<Int>(0)

    init(name: ServiceName, context: ServiceContext) {
        self.name = name
        settings = context.settings
        tls = context.tls
        logger = context.logger
        sessionGauge = context.metrics.gauge("apus_sessions", help: "Open client sessions.")
        commandCounter = context.metrics.counter("apus_commands_total", help: "Commands received.")
    }

    public func start(on group: EventLoopGroup) throws -> [SocketAddress] {
        var bound: [SocketAddress] = []
        let listeners = settings.listen.map { ($0, false) } + settings.tlsListen.map { ($0, true) }
        for (address, implicitTLS) in listeners {
            var options = ConnectionOptions()
            options.idleTimeout = settings.loginTimeout
            let spec = ListenerSpec(
                host: address.host, port: address.port, tls: implicitTLS ? tls : nil,
                options: options
            ) { [self] _ in StandInSession(service: self) }
            let port = try group.listen(spec)
            bound.append(SocketAddress(host: address.host, port: port))
        }
        return bound
    }

    public func beginShutdown() {}

    public var sessionCount: Int { sessions.load(ordering: .relaxed) }

    func sessionOpened() -> Int {
        sessions.wrappingAdd(1, ordering: .relaxed)
        sessionGauge.add(1)
        return sessionNumbers.wrappingAdd(1, ordering: .relaxed).newValue
    }

    func sessionClosed() {
        sessions.wrappingSubtract(1, ordering: .relaxed)
        sessionGauge.add(-1)
    }

    func commandReceived() { commandCounter.increment() }
}

/// One stand-in session on its loop.
final class StandInSession: ConnectionHandler {
    private let service: StandInService
    private var logger: Logger
    private var idling: String?
    private var waiting = false
    private var stopRequested = false
    private var counted = false

    init(service: StandInService) {
        self.service = service
        logger = service.logger
    }

    func connectionActive(_ connection: Connection) {
        counted = true
        logger = logger.with("session", String(service.sessionOpened())).with("client", connection.peer.description)
        logger.info("connect")
        connection.write("* OK [CAPABILITY IMAP4rev1 IDLE] Apus \(service.name.rawValue) stand-in ready\r\n")
    }

    func connectionRead(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int {
        var consumed = 0
        while !waiting, let newline = bytes[consumed...].firstIndex(of: UInt8(ascii: "\n")) {
            let line = String(decoding: bytes[consumed..<newline], as: UTF8.self)
                .trimmingSuffix("\r")
            consumed = newline + 1
            handle(line, connection)
            guard connection.isOpen else { return bytes.count }
        }
        return consumed
    }

    private func handle(_ line: String, _ connection: Connection) {
        service.commandReceived()
        if let tag = idling {
            guard line.uppercased() == "DONE" else { return connection.write("\(tag) BAD expected DONE\r\n") }
            idling = nil
            connection.write("\(tag) OK IDLE done\r\n")
            if stopRequested { bye(connection) }
            return
        }
        let words = line.split(separator: " ", maxSplits: 2).map(String.init)
        guard words.count >= 2 else { return connection.write("* BAD no tag\r\n") }
        let tag = words[0]
        switch words[1].uppercased() {
        case "CAPABILITY":
            connection.write("* CAPABILITY IMAP4rev1 IDLE\r\n\(tag) OK done\r\n")
        case "NOOP":
            connection.write("\(tag) OK done\r\n")
        case "IDLE":
            idling = tag
            connection.write("+ idling\r\n")
        case "WAIT":
            let milliseconds = words.count > 2 ? Int(words[2]) ?? 0 : 0
            waiting = true
            connection.write("* waiting\r\n")
            connection.pauseReading()
            connection.loop.schedule(after: .milliseconds(max(0, min(milliseconds, 60_000)))) { [self] in
                waiting = false
                guard connection.isOpen else { return }
                connection.write("\(tag) OK waited\r\n")
                if stopRequested { bye(connection) } else { connection.resumeReading() }
            }
        case "LOGOUT":
            connection.write("* BYE logging out\r\n\(tag) OK LOGOUT done\r\n")
            connection.close(.afterFlush)
        default:
            connection.write("\(tag) NO the stand-in does not serve mail\r\n")
        }
    }

    private func bye(_ connection: Connection) {
        connection.write("* BYE Apus is shutting down\r\n")
        connection.close(.afterFlush)
    }

    func connectionShutdownRequested(_ connection: Connection) {
        stopRequested = true
        // A command in flight finishes first; an idle or IDLE session is told at once.
        if !waiting { bye(connection) }
    }

    func connectionClosed(_ connection: Connection, reason: CloseReason) {
        // A session whose TLS handshake failed was never active, so never counted.
        if counted {
            logger.info("disconnect")
            service.sessionClosed()
        }
    }
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String { hasSuffix(suffix) ? String(dropLast(suffix.count)) : self }
}
