// perf BackendBench: the back end under a mixed IMAP load, and the same load against another server.
//
//   BackendBench serve DATA_DIR USERS_FILE PORT PIDFILE     runs Apus's back end until killed
//   BackendBench load HOST PORT CLIENTS SECONDS USERS       drives a server, prints rates and latencies
//
// Each client logs in as user(i % USERS + 1) with password "pass", selects INBOX and loops: FETCH
// flags and headers of the last 20 messages, FETCH a body, STORE, SEARCH, APPEND (fsync), every 5th
// round STORE \Deleted + EXPUNGE of one message, IDLE/DONE, and every 10th round LOGOUT and a new login.

import Glibc
import IMAPBackend
import Reactor
import Synchronization
import Telemetry

// MARK: - serve

func serve(_ arguments: [String]) throws {
    var configuration = BackendConfiguration(
        listeners: [BackendListener(host: "127.0.0.1", port: UInt16(arguments[4])!)], loginDisabledOnPlain: false,
        dataDirectory: arguments[2], usersFile: arguments[3])
    configuration.maxConnectionsPerUser = 0
    let group = try EventLoopGroup(workerCount: 4, name: "bench")
    let server = try BackendServer(configuration: configuration,
                                   logger: Logger(sink: LogSink(minimumLevel: .error), service: "imap4be"),
                                   metrics: MetricsRegistry())
    _ = try server.start(on: group)
    let file = fopen(arguments[5], "w")!
    fputs("\(getpid())\n", file)
    fclose(file)
    while true { pause() }
}

// MARK: - load

final class Statistics: Sendable {
    private let samples = Mutex<[String: [UInt64]]>([:])
    private let errors = Atomic<Int>(0)

    func record(_ name: String, _ nanoseconds: UInt64) {
        samples.withLock { $0[name, default: []].append(nanoseconds) }
    }
    func recordError() { errors.wrappingAdd(1, ordering: .relaxed) }
    var errorCount: Int { errors.load(ordering: .relaxed) }
    var all: [String: [UInt64]] { samples.withLock { $0 } }
}

func now() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}

/// One blocking IMAP connection.
final class Client {
    var descriptor: Int32 = -1
    var buffer: [UInt8] = []
    var exists = 0
    var tagNumber = 0
    var lastFailure: [UInt8] = []

    func connect(host: String, port: UInt16) -> Bool {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr(host)
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else { return false }
        return readLine() != nil
    }

    func close() {
        if descriptor >= 0 { Glibc.close(descriptor) }
        descriptor = -1
        buffer = []
    }

    func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { return false }
            offset += sent
        }
        return true
    }

    private func fill() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return false }
        buffer += chunk[0..<count]
        return true
    }

    /// A line, with any literal at its end skipped (bodies are not kept).
    func readLine() -> [UInt8]? {
        while true {
            if let end = buffer.firstIndex(of: 0x0A) {
                let line = Array(buffer[...end])
                buffer.removeFirst(end + 1)
                if line.count >= 3, line[line.count - 3] == UInt8(ascii: "}"),
                   let open = line.lastIndex(of: UInt8(ascii: "{")),
                   let size = Int(String(decoding: line[(open + 1)..<(line.count - 3)], as: UTF8.self))
                {
                    while buffer.count < size { guard fill() else { return nil } }
                    buffer.removeFirst(size)
                    guard let rest = readLine() else { return nil }
                    return line + rest
                }
                return line
            }
            guard fill() else { return nil }
        }
    }

    /// Sends a command and reads to its tagged answer; false on a NO/BAD or a broken connection.
    func command(_ text: String, literal: [UInt8]? = nil) -> Bool {
        tagNumber += 1
        let tag = "t\(tagNumber)"
        var bytes = Array("\(tag) \(text)".utf8)
        if let literal { bytes += Array(" {\(literal.count)+}\r\n".utf8) + literal }
        bytes += [0x0D, 0x0A]
        guard send(bytes) else { return false }
        let prefix = Array("\(tag) ".utf8)
        while let line = readLine() {
            if line.starts(with: prefix) {
                let ok = line.dropFirst(prefix.count).starts(with: Array("OK".utf8))
                if !ok { lastFailure = Array(text.utf8.prefix(60)) + Array(" -> ".utf8) + line }
                return ok
            }
            track(line)
        }
        return false
    }

    /// Follows the mailbox size through untagged EXISTS and EXPUNGE.
    func track(_ line: [UInt8]) {
        guard line.starts(with: Array("* ".utf8)) else { return }
        if line.count > 9, line.suffix(8).elementsEqual(Array("EXISTS\r\n".utf8)) {
            exists = Int(String(decoding: line[2..<(line.count - 9)], as: UTF8.self)) ?? exists
        } else if line.suffix(9).elementsEqual(Array("EXPUNGE\r\n".utf8)) {
            exists = max(0, exists - 1)
        }
    }

    func idle() -> Bool {
        tagNumber += 1
        let tag = "t\(tagNumber)"
        guard send(Array("\(tag) IDLE\r\n".utf8)) else { return false }
        while let line = readLine() {
            if line.first == UInt8(ascii: "+") { break }
            if line.starts(with: Array("\(tag) ".utf8)) { return false }
            track(line)
        }
        guard send(Array("DONE\r\n".utf8)) else { return false }
        while let line = readLine() {
            if line.starts(with: Array("\(tag) ".utf8)) { return true }
            track(line)
        }
        return false
    }
}

func sampleMessage(_ number: Int) -> [UInt8] {
    var text = "From: Bench <bench@example.org>\r\nTo: user@example.org\r\nSubject: bench message \(number)\r\n"
    text += "Date: Mon, 7 Feb 2026 12:00:00 +0000\r\nMessage-ID: <\(number).\(now())@bench>\r\n\r\n"
    for line in 0..<30 { text += "Line \(line) of message \(number): the quick brown fox jumps over the lazy dog.\r\n" }
    return Array(text.utf8)
}

final class LoadClient: @unchecked Sendable {
    let index: Int
    let host: String
    let port: UInt16
    let user: String
    let statistics: Statistics
    let deadline: UInt64
    let client = Client()
    var random: UInt64

    init(index: Int, host: String, port: UInt16, users: Int, statistics: Statistics, deadline: UInt64) {
        self.index = index
        self.host = host
        self.port = port
        user = "user\(index % users + 1)"
        self.statistics = statistics
        self.deadline = deadline
        random = UInt64(index + 1) &* 0x9E37_79B9_7F4A_7C15
    }

    func next(_ bound: Int) -> Int {
        random ^= random << 13
        random ^= random >> 7
        random ^= random << 17
        return Int(random % UInt64(max(1, bound)))
    }

    func timed(_ name: String, _ body: () -> Bool) {
        let start = now()
        if body() {
            statistics.record(name, now() - start)
        } else {
            statistics.recordError()
            if getenv("BENCH_VERBOSE") != nil { print("error in \(name): \(String(decoding: client.lastFailure, as: UTF8.self))") }
        }
    }

    func login() -> Bool {
        client.close()
        guard client.connect(host: host, port: port) else {
            if getenv("BENCH_VERBOSE") != nil { print("connect failed: errno \(errno)") }
            return false
        }
        var ok = true
        timed("LOGIN") { ok = client.command("LOGIN \(user) pass"); return ok }
        guard ok else { return false }
        timed("SELECT") { client.command("SELECT INBOX") }
        return true
    }

    func run() {
        guard login() else {
            statistics.recordError()
            return
        }
        var round = 0
        while now() < deadline {
            round += 1
            let count = max(1, client.exists)
            timed("FETCH-HEADERS") {
                client.command("FETCH \(max(1, count - 19)):\(count) (FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])")
            }
            let target = next(count) + 1
            timed("FETCH-BODY") { client.command("FETCH \(target) BODY.PEEK[]") }
            timed("STORE") { client.command("STORE \(target) \(round % 2 == 0 ? "+" : "-")FLAGS (\\Seen)") }
            timed("SEARCH") { client.command("SEARCH UNSEEN") }
            timed("APPEND") { client.command("APPEND INBOX", literal: sampleMessage(round)) }
            if round % 5 == 0 {
                let victim = max(1, client.exists)
                timed("STORE") { client.command("STORE \(victim) +FLAGS.SILENT (\\Deleted)") }
                timed("EXPUNGE") { client.command("EXPUNGE") }
            }
            timed("IDLE") { client.idle() }
            if round % 10 == 0 {
                timed("LOGOUT") { client.command("LOGOUT") }
                guard login() else {
                    statistics.recordError()
                    return
                }
            }
        }
        _ = client.command("LOGOUT")
        client.close()
    }
}

func seed(host: String, port: UInt16, users: Int, messages: Int) {
    for user in 1...users {
        let client = Client()
        guard client.connect(host: host, port: port), client.command("LOGIN user\(user) pass"),
              client.command("SELECT INBOX") else { continue }
        var count = client.exists
        while count < messages {
            _ = client.command("APPEND INBOX", literal: sampleMessage(count))
            count += 1
        }
        _ = client.command("LOGOUT")
        client.close()
    }
}

func load(_ arguments: [String]) {
    let host = arguments[2]
    let port = UInt16(arguments[3])!
    let clients = Int(arguments[4])!
    let seconds = Int(arguments[5])!
    let users = Int(arguments[6])!
    seed(host: host, port: port, users: min(users, clients), messages: 50)
    let statistics = Statistics()
    let start = now()
    let deadline = start + UInt64(seconds) * 1_000_000_000
    var threads: [pthread_t] = []
    for index in 0..<clients {
        let job = LoadClient(index: index, host: host, port: port, users: users, statistics: statistics,
                             deadline: deadline)
        var thread = pthread_t()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        pthread_attr_setstacksize(&attributes, 256 * 1024)
        let context = Unmanaged.passRetained(job).toOpaque()
        pthread_create(&thread, &attributes, { context in
            let job = Unmanaged<LoadClient>.fromOpaque(context!).takeRetainedValue()
            job.run()
            return nil
        }, context)
        threads.append(thread)
    }
    for thread in threads { pthread_join(thread, nil) }
    let elapsed = Double(now() - start) / 1e9
    var total = 0
    var all: [UInt64] = []
    for (name, samples) in statistics.all.sorted(by: { $0.key < $1.key }) {
        let sorted = samples.sorted()
        total += sorted.count
        all += sorted
        let p50 = Double(sorted[sorted.count / 2]) / 1e6
        let p99 = Double(sorted[min(sorted.count - 1, sorted.count * 99 / 100)]) / 1e6
        print("  \(name): \(sorted.count) commands, p50 \(format(p50)) ms, p99 \(format(p99)) ms")
    }
    all.sort()
    let p50 = all.isEmpty ? 0 : Double(all[all.count / 2]) / 1e6
    let p99 = all.isEmpty ? 0 : Double(all[min(all.count - 1, all.count * 99 / 100)]) / 1e6
    print("RESULT commands=\(total) seconds=\(format(elapsed)) rate=\(format(Double(total) / elapsed)) "
          + "p50=\(format(p50)) p99=\(format(p99)) errors=\(statistics.errorCount)")
}

func format(_ value: Double) -> String {
    let scaled = (value * 100).rounded() / 100
    return "\(scaled)"
}

let arguments = CommandLine.arguments
signal(SIGPIPE, SIG_IGN)
switch arguments.count > 1 ? arguments[1] : "" {
case "serve" where arguments.count == 6: try serve(arguments)
case "load" where arguments.count == 7: load(arguments)
default:
    print("usage: BackendBench serve DATA USERS PORT PIDFILE | load HOST PORT CLIENTS SECONDS USERS")
    exit(2)
}
