//===----------------------------------------------------------------------===//
// Apus LoadGen: the commands a load session sends, their weights, and a seeded random source.
//===----------------------------------------------------------------------===//

/// What the generator counts and times separately. `connect` is the time from connect(2) to the
/// greeting (and the TLS handshake when there is one).
public enum LoadCommandKind: Int, CaseIterable, Sendable {
    case connect, login, list, status, select, fetchFlags, fetchHeaders, fetchBody, store, search
    case copy, move, append, expunge, idle, noop, logout

    /// The name used on the command line, in reports and in JSON.
    public var name: String {
        switch self {
        case .connect: "connect"
        case .login: "login"
        case .list: "list"
        case .status: "status"
        case .select: "select"
        case .fetchFlags: "fetch-flags"
        case .fetchHeaders: "fetch-headers"
        case .fetchBody: "fetch-body"
        case .store: "store"
        case .search: "search"
        case .copy: "copy"
        case .move: "move"
        case .append: "append"
        case .expunge: "expunge"
        case .idle: "idle"
        case .noop: "noop"
        case .logout: "logout"
        }
    }

    public init?(name: String) {
        guard let kind = LoadCommandKind.allCases.first(where: { $0.name == name }) else { return nil }
        self = kind
    }

    /// Commands a stress session may draw from its mix (connect is not a command).
    static var mixable: [LoadCommandKind] { allCases.filter { $0 != .connect } }

    /// Whether the time to this command's answer measures the server. Not for IDLE, which lasts as
    /// long as the session holds it (`--idle-hold`), nor connect, a TCP and greeting time apart from
    /// commands: both stay out of the "all commands" and per-second latencies.
    var latencyIsTheServers: Bool { self != .idle && self != .connect }
}

/// Relative weights of the commands a stress session draws, as given by `--mix noop=10,fetch-flags=5`.
public struct LoadCommandMix: Sendable, Equatable {
    public private(set) var weights: [Int]
    private var cumulative: [Int] = []

    /// imaptest-like default: mostly reads, some writes, occasional re-login. (The text is ours and
    /// valid: `try!` can only fail if this line is edited wrongly, and the tests would show it.)
    public static let standard = try! LoadCommandMix(parsing:
        "noop=10,list=2,status=5,select=3,fetch-flags=20,fetch-headers=10,fetch-body=5,store=10,search=5,"
        + "copy=2,move=1,append=4,expunge=1,idle=1,logout=1,login=0")

    public init(weights: [LoadCommandKind: Int]) {
        self.weights = LoadCommandKind.allCases.map { weights[$0] ?? 0 }
        rebuild()
    }

    /// Parses `name=weight[,name=weight...]`.
    public init(parsing text: String) throws(LoadOptionError) {
        var table: [LoadCommandKind: Int] = [:]
        for part in text.split(separator: ",") {
            let pieces = part.split(separator: "=", maxSplits: 1)
            guard pieces.count == 2, let kind = LoadCommandKind(name: String(pieces[0])), kind != .connect else {
                throw LoadOptionError("unknown command in --mix: \(part) (known: "
                    + LoadCommandKind.mixable.map(\.name).joined(separator: " ") + ")")
            }
            guard let weight = Int(pieces[1]), weight >= 0, weight <= 1_000_000 else {
                throw LoadOptionError("bad weight in --mix: \(part)")
            }
            table[kind] = weight
        }
        self.init(weights: table)
        guard total > 0 else { throw LoadOptionError("--mix gives every command weight 0") }
    }

    private mutating func rebuild() {
        var running = 0
        cumulative = weights.map { weight in
            running += weight
            return running
        }
    }

    public var total: Int { cumulative.last ?? 0 }

    func weight(of kind: LoadCommandKind) -> Int { weights[kind.rawValue] }

    /// The command whose weight interval holds `draw` (0..<total).
    func pick(_ draw: Int) -> LoadCommandKind {
        var low = 0
        var high = cumulative.count - 1
        while low < high {
            let middle = (low + high) / 2
            if cumulative[middle] > draw { high = middle } else { low = middle + 1 }
        }
        return LoadCommandKind(rawValue: low) ?? .noop
    }
}

/// SplitMix64: small, fast and repeatable from a seed (each session derives its own stream).
struct LoadRandom {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A value in 0..<bound (bound > 0).
    mutating func below(_ bound: Int) -> Int {
        guard bound > 1 else { return 0 }
        return Int(truncatingIfNeeded: next() % UInt64(bound))
    }

    /// A value in 1...bound (bound > 0).
    mutating func inclusive(_ bound: Int) -> Int { below(bound) + 1 }
}
