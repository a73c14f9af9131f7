//===----------------------------------------------------------------------===//
// Apus Service: the back end and front end as managed services (configuration mapping).
//===----------------------------------------------------------------------===//
//
// PENDING: move to Sources/Service/Adapters.swift once IMAPBackend (BackendServer) and
// IMAPFrontend (FrontendServer) are merged, and make ServiceRegistry.builtIn return them
// (see the wiring steps in the Service report).

import IMAPBackend
import IMAPFrontend
import Reactor
import Telemetry

/// imap4be: a `BackendServer` built from `[global]` + `[imap4be]`.
final class BackendService: ManagedService {
    let server: BackendServer

    /// Makes the directory the local socket `path` goes in (`apus run` makes no run directory of
    /// its own; daemons do, for their pid files). Nil, or why it could not.
    static func makeLocalSocketDirectory(_ path: String) -> String? { Daemon.makeDirectory(directoryOf(path)) }

    /// The start-up error for a local socket whose directory could not be made.
    static func localSocketFailure(_ path: String, _ problem: String) -> String {
        "local_socket \(path): \(problem) (set local_socket = off to run without it)"
    }

    init(context: ServiceContext) throws {
        let settings = context.settings
        var trusted: [TrustedNetwork] = []
        for text in settings.trustedProxies {
            // The configuration checked the syntax; the back end's parser is the final word.
            guard let network = TrustedNetwork(text) else {
                throw ServiceStartError("trusted_proxies: '\(text)' is not usable")
            }
            trusted.append(network)
        }
        var configuration = BackendConfiguration(
            listeners: settings.listen.map { BackendListener(host: $0.host, port: $0.port) }
                + settings.tlsListen.map { BackendListener(host: $0.host, port: $0.port, implicitTLS: true) },
            tls: context.tls, loginDisabledOnPlain: settings.loginDisabledOnPlain,
            dataDirectory: settings.dataDirectory, usersFile: settings.usersFile, trustedProxies: trusted,
            preLoginIdleTimeout: settings.loginTimeout, postLoginIdleTimeout: settings.idleTimeout,
            authCacheTTL: settings.authCacheTTL, maxConnectionsPerUser: settings.maxConnectionsPerUser,
            maxConnectionsPerAddress: settings.maxConnectionsPerAddress,
            linger: settings.linger, lingerUsers: settings.lingerUsers, failedLoginDelay: settings.failedLoginDelay,
            maxFailedLoginDelay: settings.failedLoginDelayMax, storeFsync: settings.storeFsync)
        if let path = settings.localSocket {
            if let problem = BackendService.makeLocalSocketDirectory(path) {
                throw ServiceStartError(BackendService.localSocketFailure(path, problem))
            }
            configuration.localSocketPath = path
        }
        server = try BackendServer(configuration: configuration, logger: context.logger, metrics: context.metrics)
        ServiceMetrics.exposeTLSHandshakes(server.connectionCounters, prefix: "apus_imap4be", in: context.metrics)
        ServiceMetrics.exposeStoreSyncs(in: context.metrics)
    }

    func start(on group: EventLoopGroup) throws -> [SocketAddress] {
        do {
            return try server.start(on: group)
        } catch BackendError.listen(_, let error) {
            throw error  // the service layer words listener failures (in use, permission) itself
        }
    }

    func beginShutdown() { server.beginShutdown() }

    var sessionCount: Int { server.sessionCount }

    /// The back end has no settings it can change in place yet: everything else is reported
    /// by the service layer as taking effect after a restart.
    func reload(_ context: ServiceContext) -> ReloadReport { ReloadReport() }
}

/// imap4: a `FrontendServer` built from `[global]` + `[imap4]`.
final class FrontendService: ManagedService {
    let server: FrontendServer

    init(context: ServiceContext) throws {
        let settings = context.settings
        var configuration = FrontendConfiguration()
        configuration.listeners = settings.listen
        configuration.tlsListeners = settings.tlsListen
        configuration.listenersSharedWithOtherProcesses = settings.listenReusePort
        configuration.tls = context.tls
        configuration.loginDisabledOnPlain = settings.loginDisabledOnPlain
        configuration.backends = try settings.backends.map { backend in
            var hop: TLSContext?
            if backend.tls {
                do {
                    hop = try TLSContext.client(verify: backend.verifyCertificate, caFile: settings.backendCAFile)
                } catch {
                    throw ServiceStartError("back end \(backend.name): TLS client context: \(error)")
                }
            }
            return BackendEndpoint(name: backend.name, host: backend.address.host, port: backend.address.port, tls: hop)
        }
        configuration.routes = Dictionary(settings.routes.map { ($0.pattern, $0.backend) }, uniquingKeysWith: { $1 })
        configuration.routesFile = settings.routesFile
        configuration.pool.minimumIdle = settings.poolMinIdle
        configuration.pool.maximumConnections = settings.poolMax
        configuration.pool.idleTimeout = settings.poolIdleTimeout
        configuration.pool.healthCheckInterval = settings.poolHealthInterval
        configuration.pool.responseTimeout = settings.poolResponseTimeout
        configuration.pool.connectTimeout = settings.poolConnectTimeout
        configuration.pool.checkoutTimeout = settings.poolCheckoutTimeout
        configuration.pool.lazyResetWindow = settings.poolLazyReset
        configuration.pool.reconnectMaximumBackoff = settings.poolReconnectMax
        configuration.pool.sourceAddresses = settings.sourceAddresses
        configuration.maximumConnectionsPerAddress = settings.maxConnectionsPerAddress
        configuration.failedLoginDelay = settings.failedLoginDelay
        configuration.failedLoginMaximumDelay = settings.failedLoginDelayMax
        configuration.preLoginIdleTimeout = settings.loginTimeout
        configuration.idleTimeout = settings.idleTimeout
        let server = try FrontendServer(configuration: configuration, logger: context.logger, metrics: context.metrics)
        self.server = server
        ServiceMetrics.exposeTLSHandshakes(server.connectionCounters, prefix: "apus_imap4", in: context.metrics)
        ServiceMetrics.exposeClientBytes(server.connectionCounters, prefix: "apus_imap4", in: context.metrics)
        ServiceMetrics.exposePools(settings.backends.map(\.name), status: { server.poolStatus() }, in: context.metrics)
    }

    func start(on group: EventLoopGroup) throws -> [SocketAddress] { try server.start(on: group) }

    func beginShutdown() { server.beginShutdown() }

    var sessionCount: Int { server.sessionCount }

    func poolStatus() -> [PoolStatusRow] {
        server.poolStatus().map { PoolStatusRow(backend: $0.name, idle: $0.idle, busy: $0.busy, down: $0.down) }
    }

    /// The routes file is re-read by the front end itself whenever it changes; the back-end
    /// list and the inline routes are fixed at start (FrontendServer has no call to swap them).
    func reload(_ context: ServiceContext) -> ReloadReport {
        var report = ReloadReport()
        if let file = context.settings.routesFile {
            report.changed.append("routes_file: \(file) is re-read whenever it changes")
        }
        return report
    }
}
