//===----------------------------------------------------------------------===//
// Apus Service: what the service layer needs of a service it runs.
//===----------------------------------------------------------------------===//

import Glibc
import Reactor
import Telemetry

/// Everything a service is built from: its settings (after `[global]` and its section), the
/// whole configuration (the front end reads the back end's listeners for its default back-end
/// list), the TLS context holder the service layer owns (a reload replaces its context), and
/// the logger and metrics registry the operations endpoint serves.
public struct ServiceContext: Sendable {
    public var settings: ServiceSettings
    public var configuration: ApusConfiguration
    /// The server certificate for implicit TLS listeners and STARTTLS; nil when none is configured.
    public var tls: TLSContextHolder?
    public var logger: Logger
    public var metrics: MetricsRegistry
}

/// The pool state of one back end as the front end sees it (a row of `apus status`).
public struct PoolStatusRow: Equatable, Sendable {
    public var backend: String
    public var idle: Int
    public var busy: Int
    public var down: Bool

    public init(backend: String, idle: Int, busy: Int, down: Bool) {
        self.backend = backend
        self.idle = idle
        self.busy = busy
        self.down = down
    }
}

/// What a reload did: one short phrase per setting applied, one per setting refused (and why).
public struct ReloadReport: Equatable, Sendable {
    public var changed: [String] = []
    public var refused: [String] = []
    public init(changed: [String] = [], refused: [String] = []) {
        self.changed = changed
        self.refused = refused
    }
}

/// A network service the service layer can start, observe, reload and stop: the back end
/// (`BackendServer`), the front end (`FrontendServer`) or the stand-in used by the service
/// layer's own tests.
///
/// All calls come from the service layer's threads (never a loop thread), one at a time
/// except ``sessionCount`` and ``poolStatus()``, which the status paths call at any time.
public protocol ManagedService: AnyObject, Sendable {
    /// Opens the listeners on `group`; returns the bound addresses (ports resolved when 0 was
    /// asked), plain listeners first. A listener that cannot be opened throws, naming the address.
    func start(on group: EventLoopGroup) throws -> [SocketAddress]

    /// Stop accepting, `* BYE` to idle and IDLE sessions, let commands in flight finish. The
    /// service layer then shuts the loops down with the configured grace period.
    func beginShutdown()

    /// Open client sessions.
    var sessionCount: Int { get }

    /// The front end's pool per back end; empty for other services.
    func poolStatus() -> [PoolStatusRow]

    /// Applies what it can of a re-read configuration (`context.settings` is the new one) without
    /// dropping sessions: routing, back-end list, limits. The service layer itself handles log
    /// level, log file, certificate and listeners; every other setting that changed and is not
    /// named in the returned `changed` list is reported as needing a restart.
    func reload(_ context: ServiceContext) -> ReloadReport
}

extension ManagedService {
    public func poolStatus() -> [PoolStatusRow] { [] }
    public func reload(_ context: ServiceContext) -> ReloadReport { ReloadReport() }
}

/// A service that could not be made or started, in words for the administrator.
public struct ServiceStartError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Makes the services this binary runs.
///
/// `imap4be` is ``BackendService`` and `imap4` is ``FrontendService`` (Adapters.swift). The
/// stand-in (``StandInService``) serves both names instead with `APUS_STAND_IN=1` in the
/// environment, which the service layer's tests set so they exercise process control alone.
public enum ServiceRegistry {
    /// True when the stand-in serves `service` in this process.
    public static func usesStandIn(_ service: ServiceName) -> Bool {
        if let value = getenv("APUS_STAND_IN"), String(cString: value) == "1" { return true }
        return builtIn(service) == nil
    }

    /// Makes `service` from `context`.
    public static func make(_ service: ServiceName, context: ServiceContext) throws -> ManagedService {
        if !usesStandIn(service), let make = builtIn(service) { return try make(context) }
        context.logger.warning("serving the stand-in for \(service.rawValue): process control only, no mail")
        return StandInService(name: service, context: context)
    }

    /// The real implementations (Adapters.swift).
    static func builtIn(_ service: ServiceName) -> (@Sendable (ServiceContext) throws -> ManagedService)? {
        switch service {
        case .imap4be: { try BackendService(context: $0) }
        case .imap4: { try FrontendService(context: $0) }
        }
    }
}
