// ProxyBench: sessions per second (connect, login, SELECT INBOX, FETCH one message, LOGOUT) with N
// concurrent clients, against a back end straight, through Apus's front end (started in this
// process in front of that back end) and through any other proxies named on the command line.
//
// usage: ProxyBench --backend HOST:PORT [--peer NAME=HOST:PORT]... [--clients 50] [--seconds 10]
//                   [--users 200] [--user-prefix user] [--password pass] [--pool 64] [--loops 1]

import Glibc
import IMAPFrontend
import Reactor
import Synchronization
import Telemetry

struct Target: Sendable {
    var name: String
    var host: String
    var port: UInt16
}

func parseAddress(_ text: Substring) -> (String, UInt16)? {
    guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]) else { return nil }
    return (String(text[..<colon]), port)
}

func fail(_ message: String) -> Never {
    let bytes = Array("ProxyBench: \(message)\n".utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    exit(2)
}

// MARK: - Arguments

struct Settings: Sendable {
    var backend: (host: String, port: UInt16)?
    var peers: [Target] = []
    var clients = 50
    var seconds = 10
    var users = 200
    var userPrefix = "user"
    var password = "pass"
    var poolMaximum = 64
    var loops = 1
}

func parseArguments() -> Settings {
    var settings = Settings()
    var arguments = CommandLine.arguments.dropFirst()
    while let argument = arguments.popFirst() {
        guard let value = arguments.popFirst() else { fail("\(argument) needs a value") }
        switch argument {
        case "--backend": settings.backend = parseAddress(Substring(value))
        case "--peer":
            guard let equals = value.firstIndex(of: "="),
                let address = parseAddress(value[value.index(after: equals)...])
            else { fail("--peer NAME=HOST:PORT") }
            settings.peers.append(Target(name: String(value[..<equals]), host: address.0, port: address.1))
        case "--clients": settings.clients = Int(value) ?? settings.clients
        case "--seconds": settings.seconds = Int(value) ?? settings.seconds
        case "--users": settings.users = Int(value) ?? settings.users
        case "--user-prefix": settings.userPrefix = value
        case "--password": settings.password = value
        case "--pool": settings.poolMaximum = Int(value) ?? settings.poolMaximum
        case "--loops": settings.loops = Int(value) ?? settings.loops
        default: fail("unknown option \(argument)")
        }
    }
    return settings
}

// MARK: - One client session over a blocking socket

/// Reads until `marker` appears in what was read since the command went out; false on EOF/error.
func readUntil(_ descriptor: Int32, _ marker: [UInt8], _ buffer: inout [UInt8]) -> Bool {
    buffer.removeAll(keepingCapacity: true)
    var chunk = [UInt8](repeating: 0, count: 16384)
    while true {
        let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        if count <= 0 { return false }
        buffer += chunk[0..<count]
        if buffer.count >= marker.count {
            let searchStart = max(0, buffer.count - count - marker.count)
            var index = searchStart
            while index + marker.count <= buffer.count {
                if buffer[index] == marker[0] && Array(buffer[index..<(index + marker.count)]) == marker { return true }
                index += 1
            }
        }
    }
}

func sendAll(_ descriptor: Int32, _ text: String) -> Bool {
    var bytes = Array(text.utf8)
    while !bytes.isEmpty {
        let sent = bytes.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if sent <= 0 { return false }
        bytes.removeFirst(sent)
    }
    return true
}

/// One whole session; true when every step answered OK.
func runSession(_ target: Target, user: String, password: String) -> Bool {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard descriptor >= 0 else { return false }
    defer { close(descriptor) }
    var limit = timeval(tv_sec: 10, tv_usec: 0)
    setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = target.port.bigEndian
    address.sin_addr.s_addr = inet_addr(target.host)
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard connected == 0 else { return false }
    var buffer: [UInt8] = []
    guard readUntil(descriptor, Array("\r\n".utf8), &buffer) else { return false }
    let steps = [
        ("pb1", "LOGIN \(user) \(password)"), ("pb2", "SELECT INBOX"), ("pb3", "FETCH 1 BODY[]"), ("pb4", "LOGOUT"),
    ]
    for (tag, command) in steps {
        // FETCH 1 may fairly fail on an empty INBOX (a peer's fresh mailboxes); the rest must say OK.
        let marker = tag == "pb3" ? "\(tag) " : "\(tag) OK"
        guard sendAll(descriptor, "\(tag) \(command)\r\n"),
            readUntil(descriptor, Array(marker.utf8), &buffer)
        else { return false }
    }
    return true
}

// MARK: - Load

final class Tally: Sendable {
    let sessions = Atomic<Int>(0)
    let failures = Atomic<Int>(0)
    let stop = Atomic<Bool>(false)
}

func measure(_ target: Target, _ settings: Settings) -> Double {
    let clients = settings.clients
    let tally = Tally()
    var threads: [pthread_t] = []
    final class Work {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }
    for worker in 0..<clients {
        let work = Work {
            var number = worker
            while !tally.stop.load(ordering: .relaxed) {
                let ok = runSession(
                    target, user: "\(settings.userPrefix)\(number % settings.users + 1)",
                    password: settings.password)
                if ok { tally.sessions.add(1, ordering: .relaxed) } else { tally.failures.add(1, ordering: .relaxed) }
                number += clients
            }
        }
        var thread = pthread_t()
        let context = Unmanaged.passRetained(work).toOpaque()
        pthread_create(
            &thread, nil,
            { pointer in
                let work = Unmanaged<Work>.fromOpaque(pointer!).takeRetainedValue()
                work.body()
                return nil
            }, context)
        threads.append(thread)
    }
    let started = ContinuousClock.now
    var pause = timespec(tv_sec: settings.seconds, tv_nsec: 0)
    nanosleep(&pause, nil)  // the measuring window itself
    let done = tally.sessions.load(ordering: .relaxed)
    let elapsed = ContinuousClock.now - started
    tally.stop.store(true, ordering: .relaxed)
    for thread in threads { pthread_join(thread, nil) }
    let rate = Double(done) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    print(
        "\(target.name): \(Int(rate)) sessions/s (\(done) sessions, \(tally.failures.load(ordering: .relaxed)) failed)")
    return rate
}

// MARK: - Run

let settings = parseArguments()
guard let backend = settings.backend else { fail("--backend HOST:PORT is required") }
let loops = settings.loops
let clients = settings.clients
let poolMaximum = settings.poolMaximum
let peers = settings.peers

let group = try EventLoopGroup(loopCount: loops, workerCount: 1, name: "bench-fe")
var configuration = FrontendConfiguration()
configuration.listeners = [SocketAddress(host: "127.0.0.1", port: 0)]
configuration.tlsListeners = []
configuration.backends = [BackendEndpoint(name: "backend", host: backend.0, port: backend.1)]
configuration.pool.maximumConnections = max(poolMaximum, loops)
configuration.pool.minimumIdle = min(clients, poolMaximum)
configuration.maximumConnectionsPerAddress = 0
let server = try FrontendServer(
    configuration: configuration, logger: Logger(sink: LogSink(minimumLevel: .warning), service: "imap4"),
    metrics: MetricsRegistry())
let frontPort = try server.start(on: group)[0].port

let direct = Target(name: "direct", host: backend.0, port: backend.1)
let apus = Target(name: "apus-front-end", host: "127.0.0.1", port: frontPort)
var rates: [String: Double] = [:]
for target in [direct, apus] + peers { rates[target.name] = measure(target, settings) }
let status = server.poolStatus()[0]
print("pool: created \(status.created), reused \(status.reused), idle \(status.idle), busy \(status.busy)")
group.shutdown(gracePeriod: .seconds(1))
let through = rates["apus-front-end"] ?? 0
var comparisons = ["\(ratio(through, rates["direct"] ?? 0)) of direct"]
for peer in peers { comparisons.append("\(ratio(through, rates[peer.name] ?? 0)) of \(peer.name)") }
print("proxy-sessions: \(Int(through)) sessions/s through Apus (\(comparisons.joined(separator: ", ")))")

func ratio(_ a: Double, _ b: Double) -> String {
    guard b > 0 else { return "n/a" }
    let hundredths = Int((a / b * 100).rounded())
    return "\(hundredths / 100).\(hundredths % 100 < 10 ? "0" : "")\(hundredths % 100)x"
}
