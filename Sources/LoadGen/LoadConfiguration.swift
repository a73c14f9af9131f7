//===----------------------------------------------------------------------===//
// Apus LoadGen: what a load run does, and its command-line parser.
//===----------------------------------------------------------------------===//

import Glibc

/// A command-line or configuration mistake, with the words to show the user.
public struct LoadOptionError: Error, Equatable, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Everything a load run needs; ``LoadConfiguration/parse(_:)`` builds it from `apus load` arguments.
public struct LoadConfiguration: Sendable {
    public enum Mode: String, Sendable, CaseIterable {
        /// N sessions, each running a weighted mix of commands.
        case stress
        /// New sessions per second: connect, login, select, fetch, logout (as webmail does).
        case churn
        /// N sessions held in IDLE: memory and keepalive traffic.
        case idle
        /// Deliveries per second: APPEND in a loop.
        case append
    }

    public enum Security: String, Sendable {
        case plain, starttls, tls
    }

    /// Where user names come from.
    public enum Users: Sendable, Equatable {
        /// `user%d` with the number taken in turn from `range`.
        case template(String, ClosedRange<Int>)
        /// Names (and optional passwords) read from a file, one `user[:password]` per line.
        case list([(name: String, password: String?)])

        public static func == (a: Users, b: Users) -> Bool {
            switch (a, b) {
            case let (.template(x, r), .template(y, s)): return x == y && r == s
            case let (.list(x), .list(y)):
                return x.map(\.name) == y.map(\.name) && x.map(\.password) == y.map(\.password)
            default: return false
            }
        }
    }

    public var host = "127.0.0.1"
    public var port: UInt16 = 143
    public var security = Security.plain
    /// Check the server's certificate chain and name (off with `--insecure`).
    public var verifyCertificate = true
    public var caFile: String?
    public var users = Users.template("user%d", 1...100)
    public var password = "pass"
    public var mode = Mode.stress
    /// Concurrent sessions (stress, idle, append) or the most at once (churn).
    public var clients = 10
    /// Run time; the run ends at whichever of duration and command count comes first.
    public var duration: Duration? = nil
    public var commandLimit: Int? = nil
    public var seed: UInt64 = 1
    /// Sessions start spread over this long.
    public var rampUp: Duration = .zero
    /// Commands in flight per session (1: no pipelining).
    public var pipelineDepth = 1
    /// Local addresses to bind, in turn, for more than 64k connections from one host.
    public var sourceAddresses: [String] = []
    public var jsonPath: String?
    public var plotPath: String?
    public var mix = LoadCommandMix.standard
    /// Churn: new sessions per second; append: deliveries per second (0: as fast as the server goes;
    /// churn then starts a session whenever one ends, keeping `clients` going).
    public var rate = 0.0
    public var mailbox = "INBOX"
    /// Messages to APPEND from (an mbox file); generated messages when nil.
    public var messageFile: String?
    /// Stress: a session appends until its mailbox holds at least this many messages.
    public var prefill = 20
    /// How long a stress session stays in IDLE before DONE.
    public var idleHold: Duration = .milliseconds(200)
    /// Event loops (threads) driving the sessions.
    public var loops = 0
    /// No per-second progress lines.
    public var quiet = false
    /// A name for the run (the server measured) in reports and JSON.
    public var label = ""
    /// Sample the memory of this process and its descendants every second (idle mode).
    public var watchPID: Int32?
    /// How many violations are printed in full (all are counted).
    public var violationsPrinted = 10

    public init() {}

    /// The user name and password of session number `index`.
    func credentials(forSession index: Int) -> (user: String, password: String) {
        switch users {
        case .template(let template, let range):
            let number = range.lowerBound + index % range.count
            return (expand(template, number), password)
        case .list(let entries):
            let entry = entries[index % entries.count]
            return (entry.name, entry.password ?? password)
        }
    }

    /// How many distinct users there are; sessions beyond it share a user's mailbox.
    var userCount: Int {
        switch users {
        case .template(_, let range): range.count
        case .list(let entries): entries.count
        }
    }

    private func expand(_ template: String, _ number: Int) -> String {
        guard let marker = template.firstRange(of: "%d") else { return template + String(number) }
        var name = template
        name.replaceSubrange(marker, with: String(number))
        return name
    }

    public static let usage = """
        usage: apus load [options]
          --host ADDR            server address (numeric; default 127.0.0.1)
          --port N               server port (default 143)
          --plain | --starttls | --tls   connection security (default plain)
          --insecure             do not check the server certificate
          --ca-file FILE         trust this CA bundle
          --users TEMPLATE:A-B   user names, e.g. user%d:1-200 (default user%d:1-100)
          --users-file FILE      user names, one `user[:password]` per line
          --password PASS        password (default pass)
          --mode MODE            stress | churn | idle | append (default stress)
          --clients N            concurrent sessions (default 10)
          --duration T           run time: 30, 30s, 500ms, 2m (default 10s)
          --commands N           stop after N commands (whichever first)
          --seed N               random seed for a repeatable run (default 1)
          --ramp-up T            spread session starts over T
          --pipeline N           commands in flight per session (default 1: off)
          --source-address ADDR  bind outgoing connections to ADDR (repeatable, used in turn)
          --mix LIST             stress weights, e.g. noop=10,fetch-flags=20,append=2
                                 (commands: \(LoadCommandKind.mixable.map(\.name).joined(separator: " ")))
          --rate R               churn: sessions/s; append: deliveries/s (default 0: as fast as
                                 possible, churn keeping --clients sessions going)
          --mailbox NAME         mailbox to select and append to (default INBOX)
          --message-file MBOX    messages to APPEND (default: generated)
          --prefill N            stress: append until the mailbox holds N messages (default 20)
          --idle-hold T          stress: time in IDLE before DONE (default 200ms)
          --loops N              event loop threads (default: one per core)
          --watch-pid PID        sample memory of PID and its children every second
          --label NAME           name of the server measured, for reports
          --json FILE            write the results as JSON
          --plot FILE            write an SVG plot of throughput and latency over time
          --quiet                no per-second progress lines
        """

    /// Parses `apus load` arguments (after `load`).
    public static func parse(_ arguments: [String]) throws(LoadOptionError) -> LoadConfiguration {
        var configuration = LoadConfiguration()
        var index = 0
        func value(_ option: String) throws(LoadOptionError) -> String {
            index += 1
            guard index < arguments.count else { throw LoadOptionError("\(option) needs a value") }
            return arguments[index]
        }
        func integer(_ option: String, _ range: ClosedRange<Int>) throws(LoadOptionError) -> Int {
            let text = try value(option)
            guard let number = Int(text), range.contains(number) else {
                throw LoadOptionError(
                    "\(option): expected a number in \(range.lowerBound)...\(range.upperBound), got \(text)")
            }
            return number
        }
        while index < arguments.count {
            let option = arguments[index]
            switch option {
            case "--host": configuration.host = try value(option)
            case "--port": configuration.port = UInt16(try integer(option, 1...65535))
            case "--plain": configuration.security = .plain
            case "--starttls": configuration.security = .starttls
            case "--tls": configuration.security = .tls
            case "--insecure": configuration.verifyCertificate = false
            case "--ca-file": configuration.caFile = try value(option)
            case "--users": configuration.users = try parseUserTemplate(try value(option))
            case "--users-file": configuration.users = try readUsersFile(try value(option))
            case "--password": configuration.password = try value(option)
            case "--mode":
                let text = try value(option)
                guard let mode = Mode(rawValue: text) else { throw LoadOptionError("unknown --mode \(text)") }
                configuration.mode = mode
            case "--clients": configuration.clients = try integer(option, 1...10_000_000)
            case "--duration": configuration.duration = try parseDuration(try value(option), option)
            case "--commands": configuration.commandLimit = try integer(option, 1...Int.max)
            case "--seed":
                let text = try value(option)
                guard let seed = UInt64(text) else { throw LoadOptionError("--seed: expected a number, got \(text)") }
                configuration.seed = seed
            case "--ramp-up": configuration.rampUp = try parseDuration(try value(option), option)
            case "--pipeline": configuration.pipelineDepth = try integer(option, 1...1024)
            case "--source-address": configuration.sourceAddresses.append(try value(option))
            case "--mix": configuration.mix = try LoadCommandMix(parsing: try value(option))
            case "--rate":
                let text = try value(option)
                guard let rate = Double(text), rate >= 0, rate.isFinite else {
                    throw LoadOptionError("--rate: expected a non-negative number, got \(text)")
                }
                configuration.rate = rate
            case "--mailbox": configuration.mailbox = try value(option)
            case "--message-file": configuration.messageFile = try value(option)
            case "--prefill": configuration.prefill = try integer(option, 0...1_000_000)
            case "--idle-hold": configuration.idleHold = try parseDuration(try value(option), option)
            case "--loops": configuration.loops = try integer(option, 1...1024)
            case "--watch-pid": configuration.watchPID = Int32(try integer(option, 1...Int(Int32.max)))
            case "--label": configuration.label = try value(option)
            case "--json": configuration.jsonPath = try value(option)
            case "--plot": configuration.plotPath = try value(option)
            case "--quiet": configuration.quiet = true
            default: throw LoadOptionError("unknown option \(option)")
            }
            index += 1
        }
        if configuration.duration == nil && configuration.commandLimit == nil {
            configuration.duration = .seconds(10)
        }
        return configuration
    }

    /// `user%d:1-200`, or a bare template with the default range.
    static func parseUserTemplate(_ text: String) throws(LoadOptionError) -> Users {
        guard let colon = text.lastIndex(of: ":") else { return .template(text, 1...100) }
        let template = String(text[..<colon])
        let bounds = text[text.index(after: colon)...].split(separator: "-")
        guard bounds.count == 2, let low = Int(bounds[0]), let high = Int(bounds[1]), low >= 0, low <= high else {
            throw LoadOptionError("--users: expected TEMPLATE:LOW-HIGH, e.g. user%d:1-200, got \(text)")
        }
        return .template(template, low...high)
    }

    static func readUsersFile(_ path: String) throws(LoadOptionError) -> Users {
        guard let bytes = readWholeFile(path) else { throw LoadOptionError("cannot read --users-file \(path)") }
        var entries: [(name: String, password: String?)] = []
        for line in bytes.split(separator: UInt8(ascii: "\n")) {
            let text = String(decoding: line, as: UTF8.self).trimmingSpaces
            if text.isEmpty || text.hasPrefix("#") { continue }
            if let colon = text.firstIndex(of: ":") {
                entries.append((String(text[..<colon]), String(text[text.index(after: colon)...])))
            } else {
                entries.append((text, nil))
            }
        }
        guard !entries.isEmpty else { throw LoadOptionError("--users-file \(path) lists no users") }
        return .list(entries)
    }

    /// `30`, `30s`, `500ms`, `2m`.
    static func parseDuration(_ text: String, _ option: String) throws(LoadOptionError) -> Duration {
        var number = Substring(text)
        var scale = 1000.0
        if number.hasSuffix("ms") {
            number = number.dropLast(2)
            scale = 1
        } else if number.hasSuffix("s") {
            number = number.dropLast()
        } else if number.hasSuffix("m") {
            number = number.dropLast()
            scale = 60_000
        }
        guard let value = Double(number), value >= 0, value.isFinite, value * scale < 1e12 else {
            throw LoadOptionError("\(option): expected a time like 30s, 500ms or 2m, got \(text)")
        }
        return .milliseconds(Int64((value * scale).rounded()))
    }
}

extension String {
    var trimmingSpaces: String {
        var view = Substring(self)
        while let first = view.first, first == " " || first == "\t" || first == "\r" { view = view.dropFirst() }
        while let last = view.last, last == " " || last == "\t" || last == "\r" { view = view.dropLast() }
        return String(view)
    }
}

/// The bytes of a file, or nil when it cannot be read.
func readWholeFile(_ path: String) -> [UInt8]? {
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else { return nil }
    defer { close(descriptor) }
    var result: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        if count < 0 {
            if errno == EINTR { continue }
            return nil
        }
        if count == 0 { return result }
        result.append(contentsOf: chunk[0..<count])
    }
}

extension Duration {
    /// Seconds as a Double.
    var seconds: Double {
        let (whole, fraction) = components
        return Double(whole) + Double(fraction) / 1e18
    }

    var nanoseconds: UInt64 {
        let (whole, fraction) = components
        if whole < 0 { return 0 }
        return UInt64(whole) &* 1_000_000_000 &+ UInt64(fraction / 1_000_000_000)
    }
}
