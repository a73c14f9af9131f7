//===----------------------------------------------------------------------===//
// Apus Service: the typed configuration of both services, with single-host defaults.
//===----------------------------------------------------------------------===//

import Glibc
import MailStore
import Reactor
import Telemetry

/// The two services Apus runs (see DESIGN.md, "Services").
public enum ServiceName: String, CaseIterable, Comparable, Sendable {
    /// The client-access front end (MSExchangeIMAP4).
    case imap4
    /// The mailbox back end (MSExchangeIMAP4BE).
    case imap4be

    public static func < (a: ServiceName, b: ServiceName) -> Bool { a.order < b.order }

    /// Start order: the back end first, so the front end's pool finds it.
    var order: Int { self == .imap4be ? 0 : 1 }
}

/// One back end the front end relays to: `name=host:port[/tls][/noverify]`, or `name=unix:/path`
/// for a back end on this host reached over its UNIX socket (never TLS).
public struct BackendAddress: Equatable, Sendable, CustomStringConvertible {
    public var name: String
    public var address: SocketAddress
    /// The hop to this back end uses implicit TLS.
    public var tls: Bool
    /// Check the back end's certificate chain and name (TLS hops only).
    public var verifyCertificate: Bool

    public var description: String {
        "\(name)=\(address)" + (tls ? "/tls" : "") + (tls && !verifyCertificate ? "/noverify" : "")
    }
}

/// One routing table entry: a user (`alice@example.com`) or a whole domain (`@example.com`)
/// sent to the back end named `backend`.
public struct RouteEntry: Equatable, Sendable, CustomStringConvertible {
    public var pattern: String
    public var backend: String
    public var description: String { "\(pattern)=\(backend)" }
}

/// The settings of one service after `[global]` and its own section are applied over the defaults.
public struct ServiceSettings: Equatable, Sendable {
    public var name: ServiceName
    /// Plain listeners (STARTTLS offered when a certificate is configured).
    public var listen: [SocketAddress]
    /// Implicit TLS listeners.
    public var tlsListen: [SocketAddress]
    /// The operations endpoint (`/metrics`, `/status`); nil when `admin_listen = off`.
    public var adminListen: SocketAddress?
    public var dataDirectory: String
    /// The passwd-file of users; `<data_dir>/passwd` unless set (`<data_dir>/users/` holds the Maildirs).
    public var usersFile: String
    /// Where a daemon writes its log (the foreground writes to standard error).
    public var logFile: String
    public var logLevel: LogLevel
    public var certificate: String
    public var privateKey: String
    /// LOGINDISABLED on plain connections until STARTTLS (RFC 9051 section 6.2.3).
    public var loginDisabledOnPlain: Bool
    /// Idle limit before login.
    public var loginTimeout: Duration
    /// Idle limit after login (RFC 9051 section 5.4: at least 30 minutes).
    public var idleTimeout: Duration
    /// How long a graceful stop lets commands in flight finish.
    public var shutdownTimeout: Duration
    /// How long `apus start` waits for the service to accept connections.
    public var startTimeout: Duration
    /// imap4be: addresses or CIDRs whose forwarded client address and UNAUTHENTICATE are honoured.
    public var trustedProxies: [String]
    /// imap4be: the UNIX socket a front end on this host reaches it through (trusted like
    /// `trustedProxies`; mode 0600); nil when `local_socket = off`. Default `<run_dir>/imap4be-imap.sock`.
    public var localSocket: String?
    /// imap4: the back ends, in order.
    public var backends: [BackendAddress]
    /// imap4: users and domains routed explicitly; everyone else by rendezvous hashing.
    public var routes: [RouteEntry]
    /// imap4: a file of more `user=backend` lines, re-read on change.
    public var routesFile: String?
    public var poolMinIdle: Int
    public var poolMax: Int
    public var poolIdleTimeout: Duration
    /// imap4: source addresses for the hop (more than 64k sessions to one back end).
    public var sourceAddresses: [String]
    /// imap4: other processes may listen on the same `listen`/`tls_listen` ports (SO_REUSEPORT).
    public var listenReusePort: Bool
    /// imap4: the CA bundle that checks TLS back ends' certificates (nil: the system store).
    public var backendCAFile: String?
    /// imap4: NOOP health check interval of idle pool connections.
    public var poolHealthInterval: Duration
    /// imap4: how long a pooled connection's greeting, NOOP or UNAUTHENTICATE may take.
    public var poolResponseTimeout: Duration
    /// imap4: how long a connect (with its TLS handshake) to a back end may take.
    public var poolConnectTimeout: Duration
    /// imap4: how long a login waits for a connection when the pool is full.
    public var poolCheckoutTimeout: Duration
    /// imap4: the longest wait between reconnects to a back end that is down.
    public var poolReconnectMax: Duration
    /// imap4: how long a connection released by a client's LOGOUT may wait in the pool still logged
    /// in, its UNAUTHENTICATE sent with the next login (a round trip fewer); 0 sends it at once.
    public var poolLazyReset: Duration
    /// Concurrent connections allowed from one client address (0: no limit). The back end's
    /// default is 0: behind a front end every client comes from the front end's address.
    public var maxConnectionsPerAddress: Int
    /// imap4be: concurrent sessions of one user (0: no limit).
    public var maxConnectionsPerUser: Int
    /// imap4be: how long a verified password is remembered (0: not at all).
    public var authCacheTTL: Duration
    /// imap4be: how long a user stays open (Maildir, recently selected mailboxes) after the last session.
    public var linger: Duration
    /// imap4be: most users lingering open at once (0: none linger).
    public var lingerUsers: Int
    /// The first delay of an answer to a failed login; doubled per further failure…
    public var failedLoginDelay: Duration
    /// …up to this.
    public var failedLoginDelayMax: Duration
    /// imap4be (`[store] fsync`): which changes the store fsyncs before their tagged OK.
    public var storeFsync: FsyncPolicy

    /// True when any listener needs the certificate (implicit TLS, or STARTTLS on plain ones).
    public var usesTLS: Bool { !tlsListen.isEmpty }
}

/// The whole configuration: one file shared by both services.
///
/// Defaults suit one host running both: the back end on loopback 1143/1993, the front end on
/// 143/993 with the local back end as its only back end, operations endpoints on loopback with
/// ephemeral ports.
public struct ApusConfiguration: Sendable {
    /// The default file, used when neither `--config` nor `APUS_CONFIG` names one.
    public static let defaultPath = "/etc/apus/apus.conf"

    /// The file read, or nil for built-in defaults.
    public var path: String?
    /// The `-o` options applied over the file (kept for reloads and for daemons `apus start` runs).
    public var overrides: [ConfigurationOverride] = []
    /// Pid files and control sockets.
    public var runDirectory: String
    public var imap4: ServiceSettings
    public var imap4be: ServiceSettings
    /// Whether the file or an `-o` option set `local_socket` (false: the run-directory default,
    /// which `apus run` drops with a warning when it cannot make the run directory).
    public var localSocketIsExplicit = false

    init(path: String?, runDirectory: String, imap4: ServiceSettings, imap4be: ServiceSettings) {
        self.path = path
        self.runDirectory = runDirectory
        self.imap4 = imap4
        self.imap4be = imap4be
    }

    public func settings(for service: ServiceName) -> ServiceSettings {
        service == .imap4 ? imap4 : imap4be
    }

    public mutating func update(_ service: ServiceName, _ change: (inout ServiceSettings) -> Void) {
        if service == .imap4 { change(&imap4) } else { change(&imap4be) }
    }

    public func pidFilePath(for service: ServiceName) -> String { runDirectory + "/" + service.rawValue + ".pid" }
    public func controlSocketPath(for service: ServiceName) -> String {
        runDirectory + "/" + service.rawValue + ".sock"
    }

    /// Built-in defaults, relative paths resolved against `baseDirectory`.
    public static func defaults(baseDirectory: String = "/") -> ApusConfiguration {
        func settings(_ name: ServiceName) -> ServiceSettings {
            ServiceSettings(
                name: name,
                listen: [
                    SocketAddress(host: name == .imap4 ? "0.0.0.0" : "127.0.0.1", port: name == .imap4 ? 143 : 1143)
                ],
                tlsListen: [
                    SocketAddress(host: name == .imap4 ? "0.0.0.0" : "127.0.0.1", port: name == .imap4 ? 993 : 1993)
                ],
                adminListen: SocketAddress(host: "127.0.0.1", port: 0),
                dataDirectory: "/var/lib/apus", usersFile: "", logFile: "/var/log/apus/apus.log", logLevel: .info,
                certificate: "/etc/apus/tls/cert.pem", privateKey: "/etc/apus/tls/key.pem",
                loginDisabledOnPlain: true, loginTimeout: .seconds(60),
                // The front end outlasts the back end by a minute, so the back end's BYE reaches the client.
                idleTimeout: .seconds(name == .imap4 ? 31 * 60 : 30 * 60),
                shutdownTimeout: .seconds(30), startTimeout: .seconds(30),
                trustedProxies: ["127.0.0.1", "::1"], localSocket: nil, backends: [], routes: [], routesFile: nil,
                poolMinIdle: 2, poolMax: 256, poolIdleTimeout: .seconds(300), sourceAddresses: [],
                listenReusePort: false,
                backendCAFile: nil, poolHealthInterval: .seconds(30), poolResponseTimeout: .seconds(5),
                poolConnectTimeout: .seconds(5), poolCheckoutTimeout: .seconds(10), poolReconnectMax: .seconds(10),
                poolLazyReset: .seconds(1),
                maxConnectionsPerAddress: name == .imap4 ? 50 : 0, maxConnectionsPerUser: 50,
                authCacheTTL: .seconds(60), linger: .seconds(30), lingerUsers: 256,
                failedLoginDelay: .milliseconds(name == .imap4 ? 250 : 500),
                failedLoginDelayMax: .seconds(name == .imap4 ? 8 : 15), storeFsync: .optimized)
        }
        var configuration = ApusConfiguration(
            path: nil, runDirectory: "/run/apus", imap4: settings(.imap4),
            imap4be: settings(.imap4be))
        configuration.finish(baseDirectory: baseDirectory, explicitUsersFile: [:], explicitBackends: false,
                             explicitLocalSocket: false)
        return configuration
    }

    /// Reads `path`; a missing file gives the defaults when `mayBeMissing` (the default path).
    /// The configuration `--config` or APUS_CONFIG named (which must exist), or else the default
    /// file if there is one, or else the defaults.
    public static func load(commandLinePath: String?, overrides: [ConfigurationOverride] = [])
        throws(ConfigurationError) -> ApusConfiguration
    {
        try load(path: commandLinePath ?? defaultPath, mayBeMissing: commandLinePath == nil, overrides: overrides)
    }

    public static func load(path: String, mayBeMissing: Bool = false, overrides: [ConfigurationOverride] = [])
        throws(ConfigurationError) -> ApusConfiguration
    {
        if mayBeMissing, access(path, F_OK) != 0, errno == ENOENT {
            return try ApusConfiguration(file: nil, overrides: overrides)
        }
        return try ApusConfiguration(file: try ConfigurationFile.read(path: path), overrides: overrides)
    }

    /// The configuration read again from the same file with the same `-o` options (a reload).
    public func reread() throws(ConfigurationError) -> ApusConfiguration {
        guard let path else { return self }
        return try ApusConfiguration.load(path: path, overrides: overrides)
    }

    /// Applies `file` over the defaults: `[global]` first (to both services), then each
    /// service's section. Paths are resolved against the file's directory.
    ///
    /// `overrides` (`-o` options) replace keys of the file first; with no file they apply over the
    /// defaults, which resolve paths against the current directory.
    public init(file given: ConfigurationFile?, overrides: [ConfigurationOverride] = []) throws(ConfigurationError) {
        let file = (given ?? ConfigurationFile(path: "(defaults)", sections: [("global", 0, [])])).applying(overrides)
        let directory =
            given == nil ? currentDirectory() : absolutePath(directoryOf(file.path), base: currentDirectory())
        self = ApusConfiguration.defaults(baseDirectory: directory)
        path = given?.path
        self.overrides = overrides
        var explicitUsersFile: [ServiceName: Bool] = [:]
        var explicitBackends = false
        var explicitLocalSocket = false
        // Global first, whatever the order in the file, so a service section always wins.
        let ordered = file.sections.filter { $0.name == "global" } + file.sections.filter { $0.name != "global" }
        for section in ordered {
            let targets: [ServiceName]
            switch section.name {
            case "global": targets = ServiceName.allCases
            case "imap4": targets = [.imap4]
            // The back end owns the store: [store] keys are its settings.
            case "imap4be", "store": targets = [.imap4be]
            default:
                let message =
                    "unknown section [\(section.name)] (expected [global], [imap4], [imap4be] or [store])"
                // A section only an `-o` option made has no line of its own: name the option.
                if section.line == 0, let first = section.entries.first {
                    throw ConfigurationError(file: file.path, entry: first, message: message)
                }
                throw ConfigurationError(file: file.path, line: section.line, message: message)
            }
            var seen: [String: Int] = [:]
            for entry in section.entries {
                if let earlier = seen[entry.key] {
                    throw ConfigurationError(
                        file: file.path, entry: entry,
                        message: "'\(entry.key)' already set in [\(section.name)] on line \(earlier)")
                }
                seen[entry.key] = entry.line
                guard let key = ConfigurationKey.all.first(where: { $0.name == entry.key }) else {
                    throw ConfigurationError(
                        file: file.path, entry: entry,
                        message: "unknown key '\(entry.key)' in [\(section.name)]")
                }
                guard key.scope.allows(section.name) else {
                    throw ConfigurationError(
                        file: file.path, entry: entry,
                        message: "'\(entry.key)' does not belong in [\(section.name)] (\(key.scope.where))")
                }
                let base = entry.override?.baseDirectory ?? directory
                do throws(ConfigurationValueError) {
                    if key.name == "run_dir" {
                        runDirectory = absolutePath(try ConfigurationValue.path(entry.value), base: base)
                        continue
                    }
                    for target in targets {
                        try update(target) { settings throws(ConfigurationValueError) in
                            try key.apply(&settings, entry.value, base)
                        }
                        if key.name == "users_file" { explicitUsersFile[target] = true }
                    }
                    if key.name == "backends" { explicitBackends = true }
                    if key.name == "local_socket" { explicitLocalSocket = true }
                } catch {
                    throw ConfigurationError(
                        file: file.path, entry: entry, message: "\(entry.key): \(error.message)")
                }
            }
        }
        finish(baseDirectory: directory, explicitUsersFile: explicitUsersFile, explicitBackends: explicitBackends,
               explicitLocalSocket: explicitLocalSocket)
        for route in imap4.routes where !imap4.backends.contains(where: { $0.name == route.backend }) {
            let message = "routes: no back end named '\(route.backend)'"
            guard let entry = file.sections.first(where: { $0.name == "imap4" })?.entries.first(where: {
                $0.key == "routes"
            }) else { throw ConfigurationError(file: file.path, line: 0, message: message) }
            throw ConfigurationError(file: file.path, entry: entry, message: message)
        }
    }

    private mutating func update(
        _ service: ServiceName,
        _ change: (inout ServiceSettings) throws(ConfigurationValueError) -> Void
    )
        throws(ConfigurationValueError)
    {
        if service == .imap4 { try change(&imap4) } else { try change(&imap4be) }
    }

    /// Derived defaults: the users file inside the data directory, the back end's local socket
    /// in the run directory, the front end's back-end list pointing at the local back end's
    /// first plain listener.
    private mutating func finish(
        baseDirectory: String, explicitUsersFile: [ServiceName: Bool], explicitBackends: Bool,
        explicitLocalSocket: Bool
    ) {
        for service in ServiceName.allCases where explicitUsersFile[service] != true {
            update(service) { $0.usersFile = $0.dataDirectory + "/passwd" }
        }
        localSocketIsExplicit = explicitLocalSocket
        if !explicitLocalSocket {
            // Not `imap4be.sock`: that name is the service's control socket.
            imap4be.localSocket = runDirectory + "/imap4be-imap.sock"
        }
        if !explicitBackends {
            imap4.backends = ApusConfiguration.localBackends(for: imap4be)
        }
    }

    /// The local back end as the front end reaches it: a wildcard listener becomes loopback.
    /// `overLocalSocket` (both services in one process, so the socket is surely this host's)
    /// prefers the back end's local socket when it has one.
    public static func localBackends(for backend: ServiceSettings, overLocalSocket: Bool = false) -> [BackendAddress] {
        if overLocalSocket, let path = backend.localSocket {
            return [BackendAddress(name: "local", address: SocketAddress(unixPath: path), tls: false, verifyCertificate: false)]
        }
        if var address = backend.listen.first {
            if address.host == "0.0.0.0" {
                address.host = "127.0.0.1"
            } else if address.host == "::" {
                address.host = "::1"
            }
            return [BackendAddress(name: "local", address: address, tls: false, verifyCertificate: false)]
        }
        if var address = backend.tlsListen.first {
            if address.host == "0.0.0.0" {
                address.host = "127.0.0.1"
            } else if address.host == "::" {
                address.host = "::1"
            }
            return [BackendAddress(name: "local", address: address, tls: true, verifyCertificate: false)]
        }
        return []
    }
}

/// A value that does not fit its key, in words (the caller adds file and line).
struct ConfigurationValueError: Error {
    var message: String
    init(_ message: String) { self.message = message }
}

/// Where a key may appear.
enum ConfigurationScope {
    case globalOnly, anywhere, serviceOnly, imap4Only, imap4beOnly, storeOnly

    func allows(_ section: String) -> Bool {
        switch self {
        case .globalOnly: section == "global"
        case .anywhere: section != "store"
        case .serviceOnly: section == "imap4" || section == "imap4be"
        case .imap4Only: section == "imap4"
        case .imap4beOnly: section == "imap4be"
        case .storeOnly: section == "store"
        }
    }

    var `where`: String {
        switch self {
        case .globalOnly: "only in [global]"
        case .anywhere: "in [global], [imap4] or [imap4be]"
        case .serviceOnly: "only in [imap4] or [imap4be]"
        case .imap4Only: "only in [imap4]"
        case .imap4beOnly: "only in [imap4be]"
        case .storeOnly: "only in [store]"
        }
    }
}

/// Every configuration key, where it may appear and how its value applies: the one table to
/// extend when a service gains a setting.
struct ConfigurationKey: Sendable {
    let name: String
    let scope: ConfigurationScope
    let apply:
        @Sendable (inout ServiceSettings, String, _ baseDirectory: String) throws(ConfigurationValueError) -> Void

    typealias V = ConfigurationValue

    static let all: [ConfigurationKey] = [
        ConfigurationKey(name: "run_dir", scope: .globalOnly) { _, _, _ throws(ConfigurationValueError) in },
        ConfigurationKey(name: "data_dir", scope: .anywhere) { s, v, base throws(ConfigurationValueError) in
            s.dataDirectory = absolutePath(try V.path(v), base: base)
        },
        ConfigurationKey(name: "users_file", scope: .anywhere) { s, v, base throws(ConfigurationValueError) in
            s.usersFile = absolutePath(try V.path(v), base: base)
        },
        ConfigurationKey(name: "log_file", scope: .anywhere) { s, v, base throws(ConfigurationValueError) in
            s.logFile = absolutePath(try V.path(v), base: base)
        },
        ConfigurationKey(name: "log_level", scope: .anywhere) { s, v, _ throws(ConfigurationValueError) in
            guard let level = LogLevel(name: v) else {
                throw ConfigurationValueError("'\(v)' is not one of debug, info, notice, warning, error")
            }
            s.logLevel = level
        },
        ConfigurationKey(name: "certificate", scope: .anywhere) { s, v, base throws(ConfigurationValueError) in
            s.certificate = absolutePath(try V.path(v), base: base)
        },
        ConfigurationKey(name: "private_key", scope: .anywhere) { s, v, base throws(ConfigurationValueError) in
            s.privateKey = absolutePath(try V.path(v), base: base)
        },
        ConfigurationKey(name: "shutdown_timeout", scope: .anywhere) { s, v, _ throws(ConfigurationValueError) in
            s.shutdownTimeout = try V.duration(v)
        },
        ConfigurationKey(name: "start_timeout", scope: .anywhere) { s, v, _ throws(ConfigurationValueError) in
            s.startTimeout = try V.duration(v)
        },
        ConfigurationKey(name: "login_timeout", scope: .anywhere) { s, v, _ throws(ConfigurationValueError) in
            s.loginTimeout = try V.duration(v)
        },
        ConfigurationKey(name: "idle_timeout", scope: .anywhere) { s, v, _ throws(ConfigurationValueError) in
            s.idleTimeout = try V.duration(v)
        },
        ConfigurationKey(name: "login_disabled_on_plain", scope: .anywhere) { s, v, _ throws(ConfigurationValueError) in
            s.loginDisabledOnPlain = try V.bool(v)
        },
        ConfigurationKey(name: "max_connections_per_address", scope: .anywhere) {
            s, v, _ throws(ConfigurationValueError) in
            s.maxConnectionsPerAddress = try V.count(v)
        },
        ConfigurationKey(name: "failed_login_delay", scope: .anywhere) { s, v, _ throws(ConfigurationValueError) in
            s.failedLoginDelay = try V.duration(v)
        },
        ConfigurationKey(name: "failed_login_delay_max", scope: .anywhere) { s, v, _ throws(ConfigurationValueError) in
            s.failedLoginDelayMax = try V.duration(v)
        },
        ConfigurationKey(name: "max_connections_per_user", scope: .imap4beOnly) {
            s, v, _ throws(ConfigurationValueError) in
            s.maxConnectionsPerUser = try V.count(v)
        },
        ConfigurationKey(name: "auth_cache_ttl", scope: .imap4beOnly) { s, v, _ throws(ConfigurationValueError) in
            s.authCacheTTL = try V.duration(v)
        },
        ConfigurationKey(name: "linger", scope: .imap4beOnly) { s, v, _ throws(ConfigurationValueError) in
            s.linger = try V.duration(v)
        },
        ConfigurationKey(name: "linger_users", scope: .imap4beOnly) { s, v, _ throws(ConfigurationValueError) in
            s.lingerUsers = try V.count(v)
        },
        ConfigurationKey(name: "backend_ca_file", scope: .imap4Only) { s, v, base throws(ConfigurationValueError) in
            s.backendCAFile = absolutePath(try V.path(v), base: base)
        },
        ConfigurationKey(name: "pool_health_interval", scope: .imap4Only) { s, v, _ throws(ConfigurationValueError) in
            s.poolHealthInterval = try V.duration(v)
        },
        ConfigurationKey(name: "pool_response_timeout", scope: .imap4Only) { s, v, _ throws(ConfigurationValueError) in
            s.poolResponseTimeout = try V.duration(v)
        },
        ConfigurationKey(name: "pool_connect_timeout", scope: .imap4Only) { s, v, _ throws(ConfigurationValueError) in
            s.poolConnectTimeout = try V.duration(v)
        },
        ConfigurationKey(name: "pool_checkout_timeout", scope: .imap4Only) { s, v, _ throws(ConfigurationValueError) in
            s.poolCheckoutTimeout = try V.duration(v)
        },
        ConfigurationKey(name: "pool_reconnect_max", scope: .imap4Only) { s, v, _ throws(ConfigurationValueError) in
            s.poolReconnectMax = try V.duration(v)
        },
        ConfigurationKey(name: "pool_lazy_reset", scope: .imap4Only) { s, v, _ throws(ConfigurationValueError) in
            s.poolLazyReset = try V.duration(v)
        },
        ConfigurationKey(name: "listen", scope: .serviceOnly) { s, v, _ throws(ConfigurationValueError) in
            s.listen = try V.addresses(v)
        },
        ConfigurationKey(name: "tls_listen", scope: .serviceOnly) { s, v, _ throws(ConfigurationValueError) in
            s.tlsListen = try V.addresses(v)
        },
        ConfigurationKey(name: "admin_listen", scope: .serviceOnly) { s, v, _ throws(ConfigurationValueError) in
            if v == "off" || v == "no" {
                s.adminListen = nil
                return
            }
            let addresses = try V.addresses(v)
            guard addresses.count == 1 else { throw ConfigurationValueError("one address, or 'off'") }
            s.adminListen = addresses[0]
        },
        ConfigurationKey(name: "trusted_proxies", scope: .imap4beOnly) { s, v, _ throws(ConfigurationValueError) in
            s.trustedProxies = try V.list(v).map { item throws(ConfigurationValueError) in try V.networkOrAddress(item)
            }
        },
        ConfigurationKey(name: "local_socket", scope: .imap4beOnly) { s, v, base throws(ConfigurationValueError) in
            s.localSocket = v == "off" || v == "no" ? nil : try V.unixSocketPath(absolutePath(try V.path(v), base: base))
        },
        ConfigurationKey(name: "backends", scope: .imap4Only) { s, v, _ throws(ConfigurationValueError) in
            s.backends = try V.backends(v)
        },
        ConfigurationKey(name: "routes", scope: .imap4Only) { s, v, _ throws(ConfigurationValueError) in
            s.routes = try V.routes(v)
        },
        ConfigurationKey(name: "routes_file", scope: .imap4Only) { s, v, base throws(ConfigurationValueError) in
            s.routesFile = absolutePath(try V.path(v), base: base)
        },
        ConfigurationKey(name: "pool_min_idle", scope: .imap4Only) { s, v, _ throws(ConfigurationValueError) in
            s.poolMinIdle = try V.count(v)
        },
        ConfigurationKey(name: "pool_max", scope: .imap4Only) { s, v, _ throws(ConfigurationValueError) in
            s.poolMax = try V.count(v)
            if s.poolMax == 0 { throw ConfigurationValueError("must be at least 1") }
        },
        ConfigurationKey(name: "pool_idle_timeout", scope: .imap4Only) { s, v, _ throws(ConfigurationValueError) in
            s.poolIdleTimeout = try V.duration(v)
        },
        ConfigurationKey(name: "fsync", scope: .storeOnly) { s, v, _ throws(ConfigurationValueError) in
            guard let policy = FsyncPolicy(rawValue: v) else {
                throw ConfigurationValueError("'\(v)' is not optimized or always")
            }
            s.storeFsync = policy
        },
        ConfigurationKey(name: "listen_reuse_port", scope: .imap4Only) { s, v, _ throws(ConfigurationValueError) in
            s.listenReusePort = try V.bool(v)
        },
        ConfigurationKey(name: "source_addresses", scope: .imap4Only) { s, v, _ throws(ConfigurationValueError) in
            s.sourceAddresses = try V.list(v).map { item throws(ConfigurationValueError) in
                guard isNumericAddress(item) else {
                    throw ConfigurationValueError("'\(item)' is not a numeric address")
                }
                return item
            }
        },
    ]
}

/// Parsers for the value syntaxes of the configuration file.
enum ConfigurationValue {
    static func path(_ value: String) throws(ConfigurationValueError) -> String {
        guard !value.isEmpty else { throw ConfigurationValueError("empty path") }
        return value
    }

    /// `yes`/`no`, `true`/`false`, `on`/`off`.
    static func bool(_ value: String) throws(ConfigurationValueError) -> Bool {
        switch value.lowercased() {
        case "yes", "true", "on", "1": return true
        case "no", "false", "off", "0": return false
        default: throw ConfigurationValueError("'\(value)' is not yes or no")
        }
    }

    /// A non-negative decimal number, at most 10^9.
    static func count(_ value: String) throws(ConfigurationValueError) -> Int {
        guard let number = Int(value), number >= 0, number <= 1_000_000_000 else {
            throw ConfigurationValueError("'\(value)' is not a count")
        }
        return number
    }

    /// `250ms`, `30s`, `5m`, `2h`, `1d`; a bare number is seconds. At most 30 days.
    static func duration(_ value: String) throws(ConfigurationValueError) -> Duration {
        let units: [(suffix: String, milliseconds: Int64)] = [
            ("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000),
            ("d", 86_400_000),
        ]
        var digits = Substring(value)
        var scale: Int64 = 1000
        for unit in units where value.hasSuffix(unit.suffix) {
            let number = value.dropLast(unit.suffix.count)
            if !number.isEmpty, number.allSatisfy(\.isNumber) {
                digits = number
                scale = unit.milliseconds
                break
            }
        }
        guard let number = Int64(digits), number >= 0, number <= 30 * 86_400_000 / scale else {
            throw ConfigurationValueError("'\(value)' is not a duration (like 30s, 5m, 250ms)")
        }
        return .milliseconds(number * scale)
    }

    /// A duration as `duration(_:)` reads it, in the largest unit that divides it: `30m`, `250ms`.
    static func text(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let milliseconds = seconds * 1000 + attoseconds / 1_000_000_000_000_000
        let units: [(suffix: String, milliseconds: Int64)] = [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)]
        for unit in units where milliseconds > 0 && milliseconds % unit.milliseconds == 0 {
            return "\(milliseconds / unit.milliseconds)\(unit.suffix)"
        }
        return milliseconds == 0 ? "0s" : "\(milliseconds)ms"
    }

    /// Comma-separated items, blanks dropped.
    static func list(_ value: String) -> [String] {
        value.split(separator: ",").map { $0.trimmedASCIIWhitespace }.filter { !$0.isEmpty }
    }

    /// `host:port` or `[v6host]:port`, host numeric.
    static func address(_ text: String) throws(ConfigurationValueError) -> SocketAddress {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw ConfigurationValueError("'\(text)' is not [address]:port")
            }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                throw ConfigurationValueError("'\(text)' has no port (write address:port)")
            }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard isNumericAddress(String(host)) else {
            throw ConfigurationValueError("'\(host)' is not a numeric IP address")
        }
        guard let port = UInt16(portText) else { throw ConfigurationValueError("'\(portText)' is not a port") }
        return SocketAddress(host: String(host), port: port)
    }

    /// A comma-separated list of addresses (may be empty: no listener of that kind).
    static func addresses(_ value: String) throws(ConfigurationValueError) -> [SocketAddress] {
        try list(value).map { item throws(ConfigurationValueError) in try address(item) }
    }

    /// An address or CIDR (`10.0.0.0/8`, `::1`).
    static func networkOrAddress(_ item: String) throws(ConfigurationValueError) -> String {
        let parts = item.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, isNumericAddress(String(parts[0])) else {
            throw ConfigurationValueError("'\(item)' is not an address or network")
        }
        if parts.count == 2 {
            let maximum = parts[0].contains(":") ? 128 : 32
            guard let bits = Int(parts[1]), bits >= 0, bits <= maximum else {
                throw ConfigurationValueError("'\(item)' has a bad prefix length")
            }
        }
        return item
    }

    /// A UNIX socket's absolute path, checked against the length a socket path may have.
    static func unixSocketPath(_ path: String) throws(ConfigurationValueError) -> String {
        guard path.hasPrefix("/") else { throw ConfigurationValueError("'\(path)' is not an absolute path") }
        let maximum = SocketAddress.unixPathMaximum
        guard path.utf8.count <= maximum else {
            throw ConfigurationValueError(
                "'\(path)' is \(path.utf8.count) bytes, longer than the \(maximum) a UNIX socket path may have")
        }
        return path
    }

    static let backendOptions: Set<String> = ["tls", "noverify", "plain"]

    /// `name=host:port[/tls][/noverify], …`, or `name=unix:/path[/noverify]` (options are the
    /// trailing `/word`s that name one, so a path keeps its own slashes).
    static func backends(_ value: String) throws(ConfigurationValueError) -> [BackendAddress] {
        var result: [BackendAddress] = []
        for item in list(value) {
            guard let equals = item.firstIndex(of: "=") else {
                throw ConfigurationValueError("'\(item)' is not name=address:port[/tls][/noverify] or name=unix:/path")
            }
            let name = item[..<equals].trimmedASCIIWhitespace
            let target = item[item.index(after: equals)...].trimmedASCIIWhitespace
            var options = target.split(separator: "/", omittingEmptySubsequences: false).map { $0.trimmedASCIIWhitespace }
            guard !name.isEmpty, !target.isEmpty else { throw ConfigurationValueError("'\(item)' is incomplete") }
            guard !result.contains(where: { $0.name == name }) else {
                throw ConfigurationValueError("back end '\(name)' listed twice")
            }
            let address: SocketAddress
            if target.hasPrefix("unix:") {
                var path = target.dropFirst("unix:".count)
                options = []
                while let slash = path.lastIndex(of: "/"), backendOptions.contains(String(path[path.index(after: slash)...])) {
                    options.insert(String(path[path.index(after: slash)...]), at: 0)
                    path = path[..<slash]
                }
                if options.contains("tls") {
                    throw ConfigurationValueError(
                        "back end '\(name)': a UNIX-socket back end cannot use TLS (the hop never leaves this host)")
                }
                address = SocketAddress(unixPath: try unixSocketPath(String(path)))
            } else {
                address = try self.address(options.removeFirst())
            }
            var backend = BackendAddress(name: name, address: address, tls: false, verifyCertificate: true)
            for option in options {
                switch option {
                case "tls": backend.tls = true
                case "noverify": backend.verifyCertificate = false
                case "plain": backend.tls = false
                default: throw ConfigurationValueError("unknown back-end option '\(option)' (tls, noverify, plain)")
                }
            }
            result.append(backend)
        }
        return result
    }

    /// `user@domain=backend, @domain=backend, …`
    static func routes(_ value: String) throws(ConfigurationValueError) -> [RouteEntry] {
        try list(value).map { item throws(ConfigurationValueError) in
            guard let equals = item.lastIndex(of: "=") else {
                throw ConfigurationValueError("'\(item)' is not user=backend")
            }
            let pattern = item[..<equals].trimmedASCIIWhitespace
            let backend = item[item.index(after: equals)...].trimmedASCIIWhitespace
            guard !pattern.isEmpty, !backend.isEmpty else { throw ConfigurationValueError("'\(item)' is incomplete") }
            return RouteEntry(pattern: pattern.lowercased(), backend: backend)
        }
    }
}

/// True for a numeric IPv4 or IPv6 address (the reactor binds numeric hosts only).
func isNumericAddress(_ text: String) -> Bool {
    var buffer = in6_addr()
    return inet_pton(AF_INET, text, &buffer) == 1 || inet_pton(AF_INET6, text, &buffer) == 1
}

func currentDirectory() -> String {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    guard getcwd(&buffer, buffer.count) != nil else { return "/" }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

func directoryOf(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return slash == path.startIndex ? "/" : String(path[..<slash])
}

/// `path` made absolute against `base` (daemons run from `/`, so relative paths must be fixed
/// at load time).
func absolutePath(_ path: String, base: String) -> String {
    if path.hasPrefix("/") { return path }
    if path == "." { return base }
    var result = base.hasSuffix("/") ? base : base + "/"
    var rest = Substring(path)
    while rest.hasPrefix("./") { rest = rest.dropFirst(2) }
    result += rest
    return result == "/." ? "/" : result
}
