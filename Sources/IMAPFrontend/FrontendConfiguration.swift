// IMAPFrontend: FrontendConfiguration, everything the imap4 front end is told at start-up.

import IMAPProtocol
import Reactor

/// One back end (an imap4be, or any IMAP server offering RFC 8437 UNAUTHENTICATE) the front end
/// relays to. Config: one entry of `[imap4] backends`.
public struct BackendEndpoint: Sendable {
    /// The name routes refer to (`alice@example.com mailbox2`) and status reports show.
    public var name: String
    /// Numeric address of the back end, or the absolute path of its UNIX socket (a back end on
    /// this host: the hop then skips the loopback device and both TCP stacks; port 0, no TLS,
    /// no source addresses).
    public var host: String
    public var port: UInt16
    /// A client TLS context for a TLS hop (certificate checking is set when it is made:
    /// `TLSContext.client(verify:caFile:)`); nil for a plain hop.
    public var tls: TLSContext?
    /// The name to check the back end's certificate against (default: `host`).
    public var serverName: String?

    public init(name: String, host: String, port: UInt16, tls: TLSContext? = nil, serverName: String? = nil) {
        self.name = name
        self.host = host
        self.port = port
        self.tls = tls
        self.serverName = serverName
    }
}

/// How each back end's pool of persistent connections behaves (DESIGN.md, "The proxy hop").
///
/// Counts are per back end for the whole front end, over all event loops: a back-end connection
/// lives on one loop with the client sessions it serves, and a loop whose logins find every
/// connection taken borrows an idle one from another loop.
public struct BackendPoolSettings: Sendable {
    /// Connections kept open, greeted and idle ahead of demand, all loops together. Config `pool_min_idle`.
    public var minimumIdle: Int = 2
    /// Most connections to one back end, all loops together. Config `pool_max`.
    public var maximumConnections: Int = 256
    /// Idle connections above `minimumIdle` unused this long are closed. Config `pool_idle_timeout`.
    public var idleTimeout: Duration = .seconds(300)
    /// How often idle connections are checked with NOOP. Config `pool_health_interval`.
    public var healthCheckInterval: Duration = .seconds(30)
    /// How long a NOOP, the greeting, an UNAUTHENTICATE or a drain may take before the
    /// connection is given up. Config `pool_response_timeout`.
    public var responseTimeout: Duration = .seconds(5)
    /// How long connect (and the TLS handshake) may take. Config `pool_connect_timeout`.
    public var connectTimeout: Duration = .seconds(5)
    /// How long a login waits for a connection when the pool is at its maximum. Config `pool_checkout_timeout`.
    public var checkoutTimeout: Duration = .seconds(10)
    /// First wait before reconnecting to a back end marked down; doubled per failure.
    public var reconnectInitialBackoff: Duration = .milliseconds(100)
    /// Longest wait between reconnect attempts. Config `pool_reconnect_max`.
    public var reconnectMaximumBackoff: Duration = .seconds(10)
    /// Local addresses hop connections are made from, in turn (like Dovecot's `login_source_ips`),
    /// so one front end can hold more than 64k connections to one back end. Empty: the kernel picks.
    /// Config `source_addresses`.
    public var sourceAddresses: [String] = []
    /// How long a connection released by a client's LOGOUT may wait in the pool still logged in as
    /// that client's user. The next login on it sends UNAUTHENTICATE, ID and AUTHENTICATE in one
    /// write, a round trip fewer per session; past this window the pool sends UNAUTHENTICATE on its
    /// own, so the back end does not hold the user's session (a per-user connection slot, a selected
    /// mailbox) for long. Zero: UNAUTHENTICATE at once on release.
    public var lazyResetWindow: Duration = .seconds(1)

    public init() {}
}

/// The imap4 front end's configuration (config section `[imap4]`).
public struct FrontendConfiguration: Sendable {
    /// Plain listeners offering STARTTLS when `tls` is set (`listen`, default port 143).
    public var listeners: [SocketAddress] = [SocketAddress(host: "0.0.0.0", port: 143)]
    /// Implicit-TLS listeners (`tls_listen`, default 993); ignored without `tls`.
    public var tlsListeners: [SocketAddress] = [SocketAddress(host: "0.0.0.0", port: 993)]
    /// Other front-end processes may listen on the same addresses, the kernel spreading clients
    /// over them (`listen_reuse_port`): how a machine runs more sessions than one process's
    /// descriptor limit allows. Off: a port in use fails the start.
    public var listenersSharedWithOtherProcesses = false
    /// The server certificate for STARTTLS and the implicit-TLS listeners.
    public var tls: TLSContextHolder?
    /// Refuse LOGIN and AUTHENTICATE before TLS on plain listeners (LOGINDISABLED). Only takes
    /// effect when `tls` is set, since otherwise a client could never log in.
    public var loginDisabledOnPlain: Bool = true
    /// The back ends (`backends`).
    public var backends: [BackendEndpoint] = []
    /// Routes: user name or `@domain` (lower case) to a back end's name (`routes`).
    public var routes: [String: String] = [:]
    /// A routes file (`routes_file`): lines `user-or-@domain backend-name`, `#` comments; re-read
    /// when it changes, checked every `routesFileCheckInterval`. Its entries override `routes`.
    public var routesFile: String?
    public var routesFileCheckInterval: Duration = .seconds(5)
    /// Pool behaviour, the same for every back end.
    public var pool = BackendPoolSettings()
    /// Most simultaneous connections from one client address (0: no limit). `max_connections_per_address`.
    public var maximumConnectionsPerAddress: Int = 50
    /// The answer to a failed login is delayed by this, doubled for each further failure from the
    /// same address (`failed_login_delay`)…
    public var failedLoginDelay: Duration = .milliseconds(250)
    /// …up to this (`failed_login_delay_max`).
    public var failedLoginMaximumDelay: Duration = .seconds(8)
    /// Clients that send nothing for this long before logging in are disconnected.
    public var preLoginIdleTimeout: Duration = .seconds(60)
    /// Logged-in clients silent this long are disconnected (RFC 9051 5.4: at least 30 minutes).
    public var idleTimeout: Duration = .seconds(31 * 60)
    /// Framing limits for client commands (pre-login and relayed).
    public var limits = IMAPLimits()
    /// Text of the greeting after `* OK [CAPABILITY ...]`.
    public var greetingText: String = "Apus IMAP4 front end ready"

    public init() {}
}

/// What went wrong with a configuration; a value, never a trap.
public struct FrontendConfigurationError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The state of one back end's pool for `apus status` and the metrics endpoint.
public struct BackendPoolStatus: Sendable, Equatable {
    /// The back end's name.
    public var name: String
    /// Connections open, greeted and waiting in the pool.
    public var idle: Int
    /// Connections serving a client session (logging in, relaying or being released).
    public var busy: Int
    /// Whether the back end is marked down (logins answered `NO [UNAVAILABLE]`).
    public var down: Bool
    /// Connections opened since start.
    public var created: Int
    /// Logins served by a connection that had served an earlier session.
    public var reused: Int
    /// TLS hop connections that resumed an earlier TLS session (no full handshake).
    public var tlsResumed: Int
    /// Connections closed since start (idle timeout, failed health check, back end gone, stop).
    public var closed: Int = 0
}
