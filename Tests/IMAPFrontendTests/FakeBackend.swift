// IMAPFrontend tests: FakeBackend, a small RFC 8437 back end on loopback that records what it saw.

import Glibc
import Reactor
import Synchronization

/// What the fake back end saw, in order; tests wait on it instead of sleeping.
enum FakeEvent: Equatable, Sendable {
    case accepted(connection: Int)
    /// The address a connection came from.
    case peer(String)
    case closed(connection: Int)
    /// A command by name (upper case) on a connection, with the user logged in when it arrived.
    case command(connection: Int, name: String, user: String?)
    /// The names of the commands that arrived in one read (one write of the front end's, on loopback).
    case received(connection: Int, names: [String])
    /// Something a clean pool would never cause (a login on an authenticated connection, a
    /// command inside IDLE, a state leaking into a new session).
    case violation(String)
}

/// A log of events other threads append to and a test waits on, with a deadline.
final class EventLog: Sendable {
    private let events = Mutex<[FakeEvent]>([])
    private let arrivals = Mutex<Int>(0)
    private let signal: Semaphore = Semaphore()

    func append(_ event: FakeEvent) {
        events.withLock { $0.append(event) }
        signal.post()
    }

    var all: [FakeEvent] { events.withLock { $0 } }

    /// Waits until `condition` holds over the events, up to `timeout`; returns whether it did.
    func wait(timeout: Duration = .seconds(10), until condition: ([FakeEvent]) -> Bool) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while true {
            if condition(all) { return true }
            let left = deadline - ContinuousClock.now
            if left <= .zero { return condition(all) }
            _ = signal.wait(timeout: left)
        }
    }

    var acceptedCount: Int { all.filter { if case .accepted = $0 { true } else { false } }.count }
    var closedCount: Int { all.filter { if case .closed = $0 { true } else { false } }.count }
    var violations: [String] { all.compactMap { if case .violation(let text) = $0 { text } else { nil } } }
    func commands(_ name: String) -> [FakeEvent] {
        all.filter { if case .command(_, let seen, _) = $0 { seen == name } else { false } }
    }
}

/// A POSIX semaphore usable from any thread.
final class Semaphore: @unchecked Sendable {
    private let pointer = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)
    init() { sem_init(pointer, 0, 0) }
    deinit {
        sem_destroy(pointer)
        pointer.deallocate()
    }
    func post() { sem_post(pointer) }
    /// True when posted before `timeout` passed.
    func wait(timeout: Duration) -> Bool {
        var deadline = timespec()
        clock_gettime(CLOCK_REALTIME, &deadline)
        let (seconds, attoseconds) = timeout.components
        let nanoseconds = Int(deadline.tv_nsec) + Int(attoseconds / 1_000_000_000)
        deadline.tv_sec += Int(seconds) + nanoseconds / 1_000_000_000
        deadline.tv_nsec = nanoseconds % 1_000_000_000
        while sem_timedwait(pointer, &deadline) != 0 {
            if errno != EINTR { return false }
        }
        return true
    }
}

/// How the fake behaves.
struct FakeBackendOptions: Sendable {
    /// Offer and honour UNAUTHENTICATE (RFC 8437); false behaves like Dovecot.
    var supportsUnauthenticate = true
    /// Advertise UNAUTHENTICATE only after login (RFC 8437 section 3 allows it).
    var unauthenticateOnlyAfterLogin = false
    /// Put CAPABILITY in the greeting; false makes the front end ask.
    var capabilityInGreeting = true
    /// Octets of the body FETCH returns.
    var fetchBodySize = 100
    /// Greet, then never answer anything (a hung back end).
    var silentAfterGreeting = false
    /// Implicit TLS on the listener.
    var tls: TLSContextHolder?
    /// How UNAUTHENTICATE fails, after reporting changes to the selected mailbox; nil: it succeeds.
    var unauthenticateFailure: UnauthenticateFailure?
    /// Pairs added to the ID answer (`"x-apus-loop" "1" "x-apus-loops" "2"`, as an Apus back end
    /// tells a trusted proxy), each with a space before it.
    var idFields = ""
    /// Untagged lines (CRLF-terminated) sent ahead of the NO to a login with a wrong password.
    var failedLoginUntagged = ""
    /// Hold the NO to a wrong password until ``FakeBackend/releaseHeldAnswers()``.
    var holdFailedLogins = false
}

/// A scripted failure of UNAUTHENTICATE.
enum UnauthenticateFailure: String, CaseIterable, Sendable {
    case no, bad, bye, close
}

/// The fake's open connections, touched only on its loop's thread.
final class FakeSessionRegistry: @unchecked Sendable {
    var sessions: [Int: FakeBackendSession] = [:]
}

/// The fake back end: one event loop, one listener on 127.0.0.1. Users log in with password
/// `pw-<user>`. Beyond the login subset it answers SELECT, ENABLE, FETCH, IDLE, APPEND and
/// `XSTATE`, a private command reporting the connection's session state so a test can see any
/// state carried over from an earlier user.
final class FakeBackend: Sendable {
    let events = EventLog()
    let options: FakeBackendOptions
    let group: EventLoopGroup
    let port: UInt16
    private let registry = FakeSessionRegistry()

    init(options: FakeBackendOptions = FakeBackendOptions(), port: UInt16 = 0) throws {
        self.options = options
        group = try EventLoopGroup(loopCount: 1, workerCount: 1, name: "fake-be")
        let events = self.events
        let options = options
        let registry = registry
        let spec = ListenerSpec(host: "127.0.0.1", port: port, tls: options.tls) { _ in
            FakeBackendSession(options: options, events: events, registry: registry)
        }
        do {
            self.port = try group.listen(spec)
        } catch {
            group.shutdown(gracePeriod: .zero)
            throw error
        }
    }

    /// Stops at once: listener and every connection closed (a killed back end).
    func kill() { group.shutdown(gracePeriod: .zero) }

    /// Runs `body` on the fake's loop, over its open connections, and returns its result (nil if
    /// the loop did not run it within 10 seconds).
    private func onLoop<Result: Sendable>(_ body: @escaping @Sendable (FakeSessionRegistry) -> Result) -> Result? {
        let result = Mutex<Result?>(nil)
        let done = Semaphore()
        let registry = registry
        group.next().execute { _ in
            let value = body(registry)
            result.withLock { $0 = value }
            done.post()
        }
        _ = done.wait(timeout: .seconds(10))
        return result.withLock { $0 }
    }

    /// Writes `lines` (CRLF-terminated) unasked to every connection logged in as `user`, as a
    /// server reports changes to a selected mailbox; returns how many connections that was.
    func announce(_ lines: String, toSessionsOf user: String) -> Int {
        onLoop { registry in
            var count = 0
            for session in registry.sessions.values where session.user == user {
                session.connection?.write(lines)
                count += 1
            }
            return count
        } ?? 0
    }

    /// Writes the answers held back by ``FakeBackendOptions/holdFailedLogins``; returns how many.
    func releaseHeldAnswers() -> Int {
        onLoop { registry in
            var count = 0
            for session in registry.sessions.values {
                guard let answer = session.heldAnswer else { continue }
                session.heldAnswer = nil
                session.connection?.write(answer)
                count += 1
            }
            return count
        } ?? 0
    }

    /// The connections logged in as `user` now.
    func connectionCount(of user: String) -> Int {
        onLoop { registry in registry.sessions.values.filter { $0.user == user }.count } ?? -1
    }
}

private let fakeConnectionCounter = Atomic<Int>(0)

/// One connection to the fake back end.
final class FakeBackendSession: ConnectionHandler {
    let options: FakeBackendOptions
    let events: EventLog
    let registry: FakeSessionRegistry
    let number: Int
    weak var connection: Connection?
    var input: [UInt8] = []
    /// Bytes still owed to a literal, and the command they belong to.
    var literalRemaining = 0
    var pendingCommand: [UInt8] = []
    var user: String?
    var selected: String?
    var enabled: [String] = []
    var originatingSession: String?
    var idleTag: String?
    var sessions = 0
    /// An answer held back until the test releases it.
    var heldAnswer: String?

    init(options: FakeBackendOptions, events: EventLog, registry: FakeSessionRegistry) {
        self.options = options
        self.events = events
        self.registry = registry
        number = fakeConnectionCounter.add(1, ordering: .relaxed).newValue
    }

    var capabilities: String {
        let advertised = options.supportsUnauthenticate && (user != nil || !options.unauthenticateOnlyAfterLogin)
        return "IMAP4rev1 IMAP4rev2 SASL-IR AUTH=PLAIN ID ENABLE IDLE LITERAL+" + (advertised ? " UNAUTHENTICATE" : "")
    }

    func connectionActive(_ connection: Connection) {
        self.connection = connection
        registry.sessions[number] = self
        events.append(.peer(connection.peer.host))
        events.append(.accepted(connection: number))
        connection.write(
            options.capabilityInGreeting ? "* OK [CAPABILITY \(capabilities)] fake ready\r\n" : "* OK fake ready\r\n")
    }

    func connectionShutdownRequested(_ connection: Connection) { connection.close(.immediately) }

    func connectionClosed(_ connection: Connection, reason: CloseReason) {
        registry.sessions[number] = nil
        user = nil
        events.append(.closed(connection: number))
    }

    func connectionRead(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int {
        input += bytes
        var names: [String] = []
        defer { if !names.isEmpty { events.append(.received(connection: number, names: names)) } }
        while connection.isOpen {
            if literalRemaining > 0 {
                let take = min(literalRemaining, input.count)
                if take == 0 { break }
                pendingCommand += input[0..<take]
                input.removeFirst(take)
                literalRemaining -= take
                continue
            }
            guard let lineFeed = input.firstIndex(of: 0x0A) else { break }
            let line = Array(input[0...lineFeed])
            input.removeFirst(lineFeed + 1)
            pendingCommand += line
            // A literal announced at the end of the line: `{N}` or `{N+}`.
            var text = String(decoding: line, as: UTF8.self)
            while text.last?.isNewline == true { text.removeLast() }
            if text.hasSuffix("}"), let open = text.lastIndex(of: "{") {
                var number = String(text[text.index(after: open)..<text.index(before: text.endIndex)])
                let synchronizing = !number.hasSuffix("+")
                if !synchronizing { number.removeLast() }
                if let size = Int(number) {
                    literalRemaining = size
                    if synchronizing { connection.write("+ go ahead\r\n") }
                    continue
                }
            }
            let command = pendingCommand
            pendingCommand = []
            let words = String(decoding: command, as: UTF8.self).split(separator: " ", maxSplits: 2)
            names.append(words.count >= 2 ? words[1].uppercased().trimmingSuffixNewline : "DONE")
            handle(command, connection)
        }
        return bytes.count
    }

    private func handle(_ command: [UInt8], _ connection: Connection) {
        var text = String(decoding: command, as: UTF8.self)
        while text.last?.isNewline == true { text.removeLast() }
        if let tag = idleTag {
            if text.uppercased() == "DONE" {
                idleTag = nil
                events.append(.command(connection: number, name: "DONE", user: user))
                connection.write("\(tag) OK IDLE terminated\r\n")
            } else {
                events.append(.violation("command inside IDLE: \(text)"))
            }
            return
        }
        let words = text.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
        guard words.count >= 2 else {
            connection.write("* BAD no tag\r\n")
            return
        }
        let tag = words[0]
        let name = words[1].uppercased()
        let argument = words.count > 2 ? words[2] : ""
        events.append(.command(connection: number, name: name, user: user))
        if options.silentAfterGreeting { return }
        func reply(_ text: String) { connection.write("\(tag) \(text)\r\n") }
        let authenticatedOnly: Set = ["SELECT", "ENABLE", "FETCH", "IDLE", "XSTATE", "APPEND", "COMPRESS"]
        if authenticatedOnly.contains(name) && user == nil {
            reply("NO not authenticated")
            return
        }
        switch name {
        case "CAPABILITY":
            connection.write("* CAPABILITY \(capabilities)\r\n")
            reply("OK done")
        case "NOOP":
            reply("OK done")
        case "ID":
            if user != nil { events.append(.violation("ID from the proxy on an authenticated connection")) }
            if let found = argument.split(separator: " ").firstIndex(of: "\"x-session-id\""),
                found + 1 < argument.split(separator: " ").count
            {
                originatingSession = String(
                    argument.split(separator: " ")[found + 1].filter { $0 != "\"" && $0 != ")" })
            }
            connection.write("* ID (\"name\" \"fake\"\(options.idFields))\r\n")
            reply("OK done")
        case "AUTHENTICATE":
            if user != nil { events.append(.violation("login on an authenticated connection (user \(user!))")) }
            let parts = argument.split(separator: " ")
            guard parts.count == 2, parts[0].uppercased() == "PLAIN",
                let decoded = decodeBase64(String(parts[1]))
            else {
                reply("BAD bad AUTHENTICATE")
                return
            }
            let fields = decoded.split(separator: 0, omittingEmptySubsequences: false).map {
                String(decoding: $0, as: UTF8.self)
            }
            guard fields.count == 3, fields[2] == "pw-" + fields[1] else {
                if !options.failedLoginUntagged.isEmpty { connection.write(options.failedLoginUntagged) }
                let answer = "\(tag) NO [AUTHENTICATIONFAILED] wrong password\r\n"
                if options.holdFailedLogins { heldAnswer = answer } else { connection.write(answer) }
                return
            }
            user = fields[1]
            sessions += 1
            let afterLogin = options.unauthenticateOnlyAfterLogin ? " UNAUTHENTICATE" : ""
            reply("OK [CAPABILITY IMAP4rev2 ENABLE IDLE UNSELECT XSTATE\(afterLogin)] logged in as \(fields[1])")
        case "UNAUTHENTICATE":
            guard options.supportsUnauthenticate, user != nil else {
                reply("BAD not now")
                return
            }
            // Changes to the selected mailbox come before the answer, as a real server reports them.
            if selected != nil { connection.write("* 4 EXISTS\r\n* 1 FETCH (FLAGS (\\Deleted))\r\n* 1 EXPUNGE\r\n") }
            switch options.unauthenticateFailure {
            case .no?: return reply("NO [UNAVAILABLE] cannot unauthenticate now")
            case .bad?: return reply("BAD not now")
            case .bye?:
                connection.write("* BYE going away\r\n")
                return connection.close(.afterFlush)
            case .close?: return connection.close(.immediately)
            case nil: break
            }
            user = nil
            selected = nil
            enabled = []
            originatingSession = nil
            reply("OK unauthenticated")
        case "SELECT":
            selected = argument
            connection.write("* 3 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n")
            reply("OK [READ-WRITE] selected")
        case "ENABLE":
            enabled.append(argument)
            connection.write("* ENABLED \(argument)\r\n")
            reply("OK enabled")
        case "FETCH":
            let body = [UInt8](repeating: UInt8(ascii: "x"), count: options.fetchBodySize)
            connection.write("* 1 FETCH (BODY[] {\(body.count)}\r\n")
            connection.write(body)
            connection.write(")\r\n")
            reply("OK fetched")
        case "IDLE":
            idleTag = tag
            connection.write("+ idling\r\n")
        case "APPEND":
            reply("OK appended \(command.count) octets")
        case "XSTATE":
            let enabledList = enabled.isEmpty ? "NIL" : enabled.joined(separator: ",")
            let line = "user=\(user ?? "NIL") selected=\(selected ?? "NIL") enabled=\(enabledList) "
                + "session=\(originatingSession ?? "NIL")"
            connection.write("* XSTATE \(line)\r\n")
            reply("OK state")
        case "COMPRESS":
            reply("OK compression would start now")
        case "LOGOUT":
            connection.write("* BYE bye\r\n")
            reply("OK logged out")
            connection.close(.afterFlush)
        default:
            reply("BAD unknown command \(name)")
        }
    }

    private func decodeBase64(_ text: String) -> [UInt8]? {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var bits: UInt32 = 0
        var count = 0
        var output: [UInt8] = []
        for byte in text.utf8 {
            if byte == UInt8(ascii: "=") { break }
            guard let value = alphabet.firstIndex(of: byte) else { return nil }
            bits = bits << 6 | UInt32(value)
            count += 6
            if count >= 8 {
                count -= 8
                output.append(UInt8(truncatingIfNeeded: bits >> UInt32(count)))
            }
        }
        return output
    }
}
