//===----------------------------------------------------------------------===//
// Apus Service: runs services in this process: start, status, reload, graceful stop.
//===----------------------------------------------------------------------===//

import Glibc
import Reactor
import Synchronization
import Telemetry

/// The state of a service as `apus status` shows it.
public enum ServicePhase: String, Sendable, CaseIterable {
    case starting = "Starting"
    case running = "Running"
    case stopping = "Stopping"
    case stopped = "Stopped"
}

/// Where log lines go: standard error, which for a daemon is the log file itself (dup2'd onto
/// descriptor 2, so a runtime crash message lands in the log too). Reopening swaps the file
/// under descriptor 2 atomically, for logrotate.
final class LogOutput: Sendable {
    let sink: LogSink
    private let path: Mutex<String?>

    /// Logs to standard error, or to the file at `path` (created 0640) put in its place.
    init(file path: String?, level: LogLevel) throws(ServiceStartError) {
        self.path = Mutex(path)
        sink = LogSink(minimumLevel: level)
        if let path { try LogOutput.redirect(to: path) }
    }

    /// Opens the log file again (after rotation), possibly at a new path. False when it
    /// cannot be opened; the old file stays in use.
    func reopen(path newPath: String?) throws(ServiceStartError) {
        let target = path.withLock { current -> String? in current == nil ? nil : (newPath ?? current) }
        guard let target else { return }
        try LogOutput.redirect(to: target)
        path.withLock { $0 = target }
    }

    var file: String? { path.withLock { $0 } }

    private static func redirect(to path: String) throws(ServiceStartError) {
        // A fresh install has no /var/log/apus yet; a failure here shows in the open below.
        _ = Daemon.makeDirectory(directoryOf(path))
        let descriptor = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard descriptor >= 0 else {
            throw ServiceStartError("cannot open log file \(path): \(String(cString: strerror(errno)))")
        }
        dup2(descriptor, 2)
        close(descriptor)
    }
}

/// One or more services in this process, on one event loop group.
final class ServiceHost: Sendable {
    struct Record: Sendable {
        var phase: ServicePhase
        var settings: ServiceSettings
        var service: ManagedService?
        var tls: TLSContextHolder?
        var metrics: MetricsRegistry
        var logger: Logger
        var listeners: [(address: SocketAddress, tls: Bool)] = []
        var admin: SocketAddress?
        var startedAt = Deadline.now()
        var startedAtWallClock = time(nil)
    }

    let group: EventLoopGroup
    let log: LogOutput
    private let records = Mutex<[ServiceName: Record]>([:])
    private let configuration: Mutex<ApusConfiguration>
    private let reloading = Mutex<Int>(0)

    init(configuration: ApusConfiguration, log: LogOutput) throws(ServiceStartError) {
        do {
            group = try EventLoopGroup(name: "apus")
        } catch {
            throw ServiceStartError("cannot start event loops: \(error)")
        }
        self.log = log
        self.configuration = Mutex(configuration)
    }

    func logger(for service: ServiceName) -> Logger { Logger(sink: log.sink, service: service.rawValue) }

    var hostedServices: [ServiceName] { records.withLock { $0.keys.sorted() } }

    /// Marks `service` as starting (so the control socket answers `Starting` at once).
    func announce(_ service: ServiceName) {
        let settings = configuration.withLock { $0.settings(for: service) }
        records.withLock {
            $0[service] = Record(
                phase: .starting, settings: settings, service: nil, tls: nil, metrics: MetricsRegistry(),
                logger: logger(for: service))
        }
    }

    /// Builds and starts `service` with `settings` (default: from the configuration); returns
    /// the bound listener addresses. Throws a message naming the cause: the certificate, the
    /// address in use, the permission.
    @discardableResult
    func start(
        _ service: ServiceName, settings override: ServiceSettings? = nil
    ) throws(ServiceStartError)
        -> [SocketAddress]
    {
        if records.withLock({ $0[service] == nil }) { announce(service) }
        let configuration = self.configuration.withLock { $0 }
        let settings = override ?? configuration.settings(for: service)
        let logger = logger(for: service)
        let metrics = records.withLock { $0[service]!.metrics }
        let tls = try ServiceHost.loadTLS(settings, logger: logger)
        let context = ServiceContext(
            settings: settings, configuration: configuration, tls: tls, logger: logger,
            metrics: metrics)
        let managed: ManagedService
        let bound: [SocketAddress]
        do {
            managed = try ServiceRegistry.make(service, context: context)
        } catch {
            throw ServiceStartError("\(error)")
        }
        do {
            bound = try managed.start(on: group)
        } catch let error as IOError {
            throw ServiceStartError(ServiceHost.explain(error))
        } catch {
            throw ServiceStartError("\(error)")
        }
        records.withLock {
            $0[service]!.service = managed
            $0[service]!.settings = settings
            $0[service]!.tls = tls
            $0[service]!.listeners = bound.enumerated().map { ($1, $0 >= settings.listen.count) }
        }
        var admin: SocketAddress?
        if let address = settings.adminListen {
            do {
                admin = try AdminEndpoint.start(on: group, address: address, metrics: metrics) { [self] in
                    statusDocument(for: service)
                }
            } catch let error as IOError {
                throw ServiceStartError("admin_listen: " + ServiceHost.explain(error))
            } catch {
                throw ServiceStartError("admin_listen: \(error)")
            }
        }
        metrics.gauge("apus_start_time_seconds", help: "When the service started, in seconds since the epoch.")
            .set(Int64(time(nil)))
        records.withLock {
            $0[service]!.admin = admin
            $0[service]!.phase = .running
            $0[service]!.startedAt = .now()
            $0[service]!.startedAtWallClock = time(nil)
        }
        return bound
    }

    /// A listener failure in an administrator's words.
    static func explain(_ error: IOError) -> String {
        switch error.errno {
        case EADDRINUSE:
            EventLoopGroup.listenAddress(of: error).map { "address \($0) is in use" }
                ?? "\(error.call): address already in use"
        case EACCES: "\(error.call): permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        case EADDRNOTAVAIL: "\(error.call): no such local address on this host"
        default: error.description
        }
    }

    /// The server certificate for `settings`: required when there are implicit TLS listeners,
    /// used for STARTTLS when present otherwise.
    static func loadTLS(_ settings: ServiceSettings, logger: Logger) throws(ServiceStartError) -> TLSContextHolder? {
        let required = settings.usesTLS
        if !required, access(settings.certificate, F_OK) != 0 { return nil }
        do {
            return TLSContextHolder(try makeContext(settings))
        } catch {
            if required { throw error }
            logger.warning("STARTTLS not offered: \(error.message)")
            return nil
        }
    }

    static func makeContext(_ settings: ServiceSettings) throws(ServiceStartError) -> TLSContext {
        for (what, path) in [("certificate", settings.certificate), ("private key", settings.privateKey)] {
            let descriptor = open(path, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else {
                throw ServiceStartError("cannot read \(what) \(path): \(String(cString: strerror(errno)))")
            }
            close(descriptor)
        }
        do {
            return try TLSContext.server(
                certificateChain: settings.certificate, privateKey: settings.privateKey,
                alpn: ["imap"])
        } catch {
            throw ServiceStartError("certificate \(settings.certificate) with key \(settings.privateKey): \(error)")
        }
    }

    // MARK: - Status

    /// The status document of `service`: what `apus status --json` prints and `/status` serves.
    func statusDocument(for service: ServiceName) -> JSONValue {
        guard let record = records.withLock({ $0[service] }) else {
            return .object([("service", .string(service.rawValue)), ("state", .string(ServicePhase.stopped.rawValue))])
        }
        var members: [(String, JSONValue)] = [
            ("service", .string(service.rawValue)),
            ("state", .string(record.phase.rawValue)),
            ("pid", .int(Int(getpid()))),
            (
                "listeners",
                .array(
                    record.listeners.map {
                        .object([("address", .string($0.address.description)), ("tls", .bool($0.tls))])
                    })
            ),
        ]
        if let admin = record.admin { members.append(("admin", .string(admin.description))) }
        if record.phase == .running || record.phase == .stopping {
            let seconds = (Deadline.now().nanoseconds &- record.startedAt.nanoseconds) / 1_000_000_000
            members.append(("uptime_seconds", .int(Int(seconds))))
            members.append(("started_at", .int(record.startedAtWallClock)))
        }
        if let managed = record.service {
            members.append(("sessions", .int(managed.sessionCount)))
            if service == .imap4 {
                members.append(
                    (
                        "pools",
                        .array(
                            managed.poolStatus().map {
                                .object([
                                    ("backend", .string($0.backend)), ("idle", .int($0.idle)), ("busy", .int($0.busy)),
                                    ("down", .bool($0.down)),
                                ])
                            })
                    ))
            }
        }
        members.append(("stand_in", .bool(ServiceRegistry.usesStandIn(service))))
        return .object(members)
    }

    // MARK: - Reload

    /// Re-reads the configuration file, the certificate and the routing, and reopens the log
    /// file, without dropping sessions. Returns, per hosted service, what changed and what was
    /// refused; a configuration that does not parse changes nothing.
    func reload() -> [(ServiceName, ReloadReport)] {
        reloading.withLock { count in
            count += 1
            let services = hostedServices
            let fresh: ApusConfiguration
            do throws(ConfigurationError) {
                fresh = try configuration.withLock { $0 }.reread()
            } catch {
                let report = ReloadReport(refused: ["configuration: \(error); nothing changed"])
                for service in services { records.withLock { $0[service]!.logger }.error("reload refused: \(error)") }
                return services.map { ($0, report) }
            }
            var reports: [(ServiceName, ReloadReport)] = []
            var logReopened = false
            for service in services {
                guard let record = records.withLock({ $0[service] }), let managed = record.service else { continue }
                var new = fresh.settings(for: service)
                let old = record.settings
                var report = ReloadReport()
                // In one process (`apus run`) the front end's default back end is the bound one.
                if service == .imap4, new.backends == ApusConfiguration.localBackends(for: fresh.imap4be) {
                    new.backends = old.backends
                }
                for (key, same) in [
                    ("listen", old.listen == new.listen), ("tls_listen", old.tlsListen == new.tlsListen),
                    ("admin_listen", old.adminListen == new.adminListen),
                ] where !same {
                    report.refused.append("\(key): takes effect after a restart")
                }
                new.listen = old.listen
                new.tlsListen = old.tlsListen
                new.adminListen = old.adminListen
                if old.logLevel != new.logLevel { report.changed.append("log_level: \(new.logLevel)") }
                if !logReopened, log.file != nil {
                    do throws(ServiceStartError) {
                        try log.reopen(path: new.logFile)
                        report.changed.append("log file reopened: \(new.logFile)")
                    } catch {
                        report.refused.append("log_file: \(error); still writing to \(log.file ?? "")")
                        new.logFile = old.logFile
                    }
                    logReopened = true
                }
                if let holder = record.tls {
                    do throws(ServiceStartError) {
                        holder.replace(with: try ServiceHost.makeContext(new))
                        report.changed.append("certificate reloaded: \(new.certificate)")
                    } catch {
                        report.refused.append("certificate: \(error); new connections keep the old one")
                        new.certificate = old.certificate
                        new.privateKey = old.privateKey
                    }
                } else if new.usesTLS || access(new.certificate, F_OK) == 0, old.certificate != new.certificate {
                    report.refused.append("certificate: TLS was off at start; takes effect after a restart")
                }
                let serviceReport = managed.reload(
                    ServiceContext(
                        settings: new, configuration: fresh, tls: record.tls,
                        logger: record.logger, metrics: record.metrics))
                report.changed += serviceReport.changed
                report.refused += serviceReport.refused
                let handled = [
                    "log_level", "log_file", "certificate", "private_key", "listen", "tls_listen", "admin_listen",
                ]
                for key in ServiceHost.changedKeys(old, new) where !handled.contains(key) {
                    let mentioned = (serviceReport.changed + serviceReport.refused).contains { $0.hasPrefix(key) }
                    if !mentioned { report.refused.append("\(key): takes effect after a restart") }
                }
                records.withLock { $0[service]!.settings = new }
                record.metrics.counter("apus_reloads_total", help: "Configuration reloads.").increment()
                for line in report.changed { record.logger.notice("reload: changed \(line)") }
                for line in report.refused { record.logger.warning("reload: refused \(line)") }
                if report.changed.isEmpty, report.refused.isEmpty { record.logger.notice("reload: nothing changed") }
                reports.append((service, report))
            }
            // Last, so the reload's own lines are written even when the new level would hide them.
            if let level = services.map({ fresh.settings(for: $0).logLevel }).min() { log.sink.minimumLevel = level }
            configuration.withLock { $0 = fresh }
            return reports
        }
    }

    /// Names of the configuration keys whose values differ, in `ConfigurationKey.all`'s order.
    /// Compared as `apus config` writes them, so a key that can be set can never be missed here.
    static func changedKeys(_ a: ServiceSettings, _ b: ServiceSettings) -> [String] {
        ConfigurationKey.all.filter { $0.name != "run_dir" && ConfigurationText.value($0, a) != ConfigurationText.value($0, b) }
            .map(\.name)
    }

    // MARK: - Stop

    /// Graceful stop of everything in this process: stop accepting, BYE to idle sessions,
    /// commands in flight finish within the longest configured `shutdown_timeout`.
    func stop() {
        let services = records.withLock { records in
            for key in records.keys { records[key]!.phase = .stopping }
            return records.values.compactMap(\.service)
        }
        let grace = records.withLock { $0.values.map(\.settings.shutdownTimeout).max() } ?? .seconds(30)
        // The loops' graceful shutdown starts first, with the configured bound: a loop keeps the
        // first grace period it is given, whatever a service's own beginShutdown asks later. It
        // returns with every listener closed: nothing is accepted once the stop has begun.
        group.beginShutdown(gracePeriod: grace)
        for service in services { service.beginShutdown() }
        group.shutdown(gracePeriod: grace)
        records.withLock { records in
            for key in records.keys { records[key]!.phase = .stopped }
        }
    }

    // MARK: - Control socket

    /// Answers one control socket request for `service`.
    func control(_ request: String, service: ServiceName) -> String {
        switch request {
        case "status":
            return statusDocument(for: service).text
        case "reload":
            let reports = reload()
            let report = reports.first { $0.0 == service }?.1 ?? ReloadReport()
            let failed = report.refused.contains { $0.hasPrefix("configuration:") }
            return JSONValue.object([
                ("ok", .bool(!failed)), ("changed", .array(report.changed.map { .string($0) })),
                ("refused", .array(report.refused.map { .string($0) })),
            ]).text
        case "stop":
            kill(getpid(), SIGTERM)
            return JSONValue.object([("ok", .bool(true))]).text
        default:
            return JSONValue.object([("ok", .bool(false)), ("error", .string("unknown request"))]).text
        }
    }

    /// Waits for signals (blocked in every thread by ``Signals/block()``): SIGHUP reloads,
    /// SIGTERM or SIGINT returns, so the caller stops gracefully.
    func waitForStopSignal() {
        while true {
            let signal = Signals.wait()
            if signal == SIGHUP {
                var now = timespec()
                clock_gettime(CLOCK_MONOTONIC, &now)
                // MONOTONIC_USEC lets systemd (Type=notify-reload) match this reload to its request.
                SystemdNotifier.notify("RELOADING=1\nMONOTONIC_USEC=\(now.tv_sec * 1_000_000 + now.tv_nsec / 1000)")
                _ = reload()
                SystemdNotifier.notify("READY=1")
            } else {
                return
            }
        }
    }
}

/// The signals a service handles, taken synchronously by one thread with sigwait(3): no
/// handler runs in signal context, so reload and stop are ordinary code.
enum Signals {
    static let handled: [Int32] = [SIGTERM, SIGINT, SIGHUP]

    /// Blocks the handled signals in the calling thread and every thread it starts later:
    /// call first thing, before any thread exists.
    static func block() {
        var set = signalSet()
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// Waits for one of the handled signals and returns it.
    static func wait() -> Int32 {
        var set = signalSet()
        var received: Int32 = 0
        while sigwait(&set, &received) != 0 {}
        return received
    }

    private static func signalSet() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in handled { sigaddset(&set, signal) }
        return set
    }
}
