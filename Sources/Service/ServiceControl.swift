//===----------------------------------------------------------------------===//
// Apus Service: `apus start|stop|restart|reload|status`, the administrator's side.
//===----------------------------------------------------------------------===//

import Glibc

/// The commands an administrator runs against services started as daemons, with what they
/// print and their exit statuses.
struct ServiceControl {
    let configuration: ApusConfiguration
    /// Passed on to daemons so they read the same file.
    let configurationPath: String?

    // MARK: - start

    /// Starts `service` as a detached process and returns once it accepts connections (0), or
    /// prints why it could not start and returns 1 leaving no pid file. A running service is
    /// left alone (0).
    func start(_ service: ServiceName) -> Int32 {
        let pidPath = configuration.pidFilePath(for: service)
        let socketPath = configuration.controlSocketPath(for: service)
        switch PidFile.probe(path: pidPath, alsoRemove: [socketPath]) {
        case .running(let pid):
            print("\(service.rawValue) is already running" + (pid.map { " (pid \($0))" } ?? ""))
            return 0
        case .inaccessible(let reason):
            printError("apus: \(service.rawValue): cannot read its pid file: \(reason)")
            return 1
        case .absent, .stale:
            break
        }
        var pipeEnds: [Int32] = [0, 0]
        guard pipe(&pipeEnds) == 0 else {
            printError("apus: \(service.rawValue) could not start: pipe: \(String(cString: strerror(errno)))")
            return 1
        }
        // Above 3 and close-on-exec, so only the dup2 onto 3 reaches the child.
        let readEnd = fcntl(pipeEnds[0], F_DUPFD_CLOEXEC, 10)
        let writeEnd = fcntl(pipeEnds[1], F_DUPFD_CLOEXEC, 10)
        close(pipeEnds[0])
        close(pipeEnds[1])
        defer { close(readEnd) }
        var arguments = ["apus", "serve", service.rawValue, "--detach", "--ready-fd", "3"]
        if let configurationPath { arguments += ["--config", configurationPath] }
        // The daemon reads the file itself: it needs the same `-o` options to get the same configuration.
        for override in configuration.overrides { arguments += ["-o", override.text] }
        let spawned = spawn(arguments, readinessDescriptor: writeEnd)
        close(writeEnd)
        guard case .success(let pid) = spawned else {
            if case .failure(let message) = spawned {
                printError("apus: \(service.rawValue) could not start: \(message)")
            }
            return 1
        }
        let timeout = configuration.settings(for: service).startTimeout
        let outcome = readLine(readEnd, timeout: timeout)
        if case .line(let line) = outcome, line.hasPrefix("ready ") {
            print("\(service.rawValue) started (pid \(pid)), \(line.dropFirst(6))")
            return 0
        }
        let cause: String
        switch outcome {
        case .line(let line) where line.hasPrefix("error "):
            cause = String(line.dropFirst(6))
            _ = reap(pid)
        case .timedOut:
            kill(pid, SIGKILL)
            _ = reap(pid)
            cause = "not accepting connections after \(ServiceControl.text(timeout)) (start_timeout); killed it"
        default:
            cause = "it exited before accepting connections (\(reap(pid)))"
        }
        // The service removes its pid file on a clean failure; after a crash it is stale.
        _ = PidFile.probe(path: pidPath, alsoRemove: [socketPath])
        printError("apus: \(service.rawValue) could not start: \(cause)")
        return 1
    }

    private enum SpawnResult {
        case success(pid_t)
        case failure(String)
    }

    /// Runs this executable again with `arguments`: stdin, stdout and stderr on /dev/null
    /// (the daemon opens its log), `readinessDescriptor` as descriptor 3.
    private func spawn(_ arguments: [String], readinessDescriptor: Int32) -> SpawnResult {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for descriptor: Int32 in 0...2 {
            posix_spawn_file_actions_addopen(
                &actions, descriptor, "/dev/null", descriptor == 0 ? O_RDONLY : O_WRONLY, 0)
        }
        posix_spawn_file_actions_adddup2(&actions, readinessDescriptor, 3)
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid = pid_t()
        let result = posix_spawn(&pid, ServiceControl.executablePath(), &actions, nil, &argv, environ)
        guard result == 0 else { return .failure("posix_spawn: \(String(cString: strerror(result)))") }
        return .success(pid)
    }

    /// This executable: the target of /proc/self/exe, so the daemon shows as `apus` in ps and
    /// top (not `exe`); /proc/self/exe itself when the file was replaced since (an upgrade).
    static func executablePath() -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard length > 0 else { return "/proc/self/exe" }
        let path = String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return path.hasSuffix(" (deleted)") || access(path, X_OK) != 0 ? "/proc/self/exe" : path
    }

    private enum ReadOutcome {
        case line(String)
        case endOfFile
        case timedOut
    }

    /// One line from `descriptor`, or EOF, or nothing within `timeout`.
    private func readLine(_ descriptor: Int32, timeout: Duration) -> ReadOutcome {
        let deadline = ContinuousClock.now + timeout
        var bytes: [UInt8] = []
        while true {
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else { return .timedOut }
            var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let milliseconds =
                remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000 + 1
            let ready = poll(&entry, 1, Int32(min(milliseconds, Int64(Int32.max))))
            if ready <= 0 { continue }  // EINTR or the deadline: checked above
            var byte: UInt8 = 0
            let count = read(descriptor, &byte, 1)
            if count < 0, errno == EINTR { continue }
            if count <= 0 { return .endOfFile }
            if byte == UInt8(ascii: "\n") { return .line(String(decoding: bytes, as: UTF8.self)) }
            bytes.append(byte)
            if bytes.count > 4096 { return .line(String(decoding: bytes, as: UTF8.self)) }
        }
    }

    /// Reaps the failed child and says how it ended.
    private func reap(_ pid: pid_t) -> String {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return "status unknown" }
        }
        let signal = status & 0x7F
        if signal == 0 { return "exit status \((status >> 8) & 0xFF)" }
        return "killed by signal \(signal)"
    }

    // MARK: - stop

    /// Stops `service` gracefully and returns once its process is gone (0). A stopped service
    /// says so (0). A service that outlives its shutdown timeout by 10 s is killed (1).
    func stop(_ service: ServiceName) -> Int32 {
        let pidPath = configuration.pidFilePath(for: service)
        switch PidFile.probe(path: pidPath, alsoRemove: [configuration.controlSocketPath(for: service)]) {
        case .absent:
            print("\(service.rawValue) is not running")
            return 0
        case .stale(let pid):
            print(
                "\(service.rawValue) is not running (removed the stale pid file of pid \(pid.map(String.init) ?? "?"))")
            return 0
        case .inaccessible(let reason):
            printError("apus: \(service.rawValue): cannot read its pid file: \(reason)")
            return 1
        case .running(let pid):
            guard let pid, pid > 0 else {
                printError("apus: \(service.rawValue): pid file \(pidPath) holds no pid")
                return 1
            }
            if kill(pid, SIGTERM) != 0, errno != ESRCH {
                printError("apus: cannot signal \(service.rawValue) (pid \(pid)): \(String(cString: strerror(errno)))")
                return 1
            }
            let bound = configuration.settings(for: service).shutdownTimeout + .seconds(10)
            if PidFile.waitUntilFree(path: pidPath, timeout: bound) {
                print("\(service.rawValue) stopped (pid \(pid))")
                return 0
            }
            kill(pid, SIGKILL)
            _ = PidFile.waitUntilFree(path: pidPath, timeout: .seconds(5))
            _ = PidFile.probe(path: pidPath, alsoRemove: [configuration.controlSocketPath(for: service)])
            printError(
                "apus: \(service.rawValue) (pid \(pid)) did not stop within \(ServiceControl.text(bound)); killed it")
            return 1
        }
    }

    // MARK: - reload

    /// Asks `service` to re-read configuration, certificate and routing; prints what changed
    /// and what was refused. 1 when it is not running or the configuration has an error.
    func reload(_ service: ServiceName) -> Int32 {
        let pidPath = configuration.pidFilePath(for: service)
        guard
            case .running(let pid) = PidFile.probe(
                path: pidPath, alsoRemove: [configuration.controlSocketPath(for: service)])
        else {
            printError("apus: \(service.rawValue) is not running")
            return 1
        }
        guard let reply = ControlServer.request("reload", path: configuration.controlSocketPath(for: service)),
            let document = JSONValue.parse(reply)
        else {
            // The control socket is the only way to hear the outcome; the signal still works.
            guard let pid, kill(pid, SIGHUP) == 0 else {
                printError("apus: \(service.rawValue) does not answer and cannot be signalled")
                return 1
            }
            print("\(service.rawValue): sent SIGHUP to pid \(pid) (control socket not answering; see the log)")
            return 0
        }
        let changed = (document["changed"]?.arrayValue ?? []).compactMap(\.stringValue)
        let refused = (document["refused"]?.arrayValue ?? []).compactMap(\.stringValue)
        if changed.isEmpty, refused.isEmpty { print("\(service.rawValue) reloaded: nothing changed") }
        for line in changed { print("\(service.rawValue) reloaded: \(line)") }
        for line in refused { print("\(service.rawValue) refused: \(line)") }
        return document["ok"]?.boolValue == true ? 0 : 1
    }

    // MARK: - status

    /// The status document of `service`: from its control socket when it runs, else Stopped
    /// (a stale pid file is removed on the way).
    func statusDocument(_ service: ServiceName) -> JSONValue {
        let socketPath = configuration.controlSocketPath(for: service)
        let stopped = JSONValue.object([("service", .string(service.rawValue)), ("state", .string("Stopped"))])
        switch PidFile.probe(path: configuration.pidFilePath(for: service), alsoRemove: [socketPath]) {
        case .absent, .stale:
            return stopped
        case .inaccessible(let reason):
            return .object([
                ("service", .string(service.rawValue)), ("state", .string("Unknown")),
                ("error", .string("cannot read the pid file: \(reason)")),
            ])
        case .running(let pid):
            if let reply = ControlServer.request("status", path: socketPath, timeout: .seconds(5)),
                let document = JSONValue.parse(reply)
            {
                return document
            }
            // Between taking the pid file and binding its socket a service is starting; a socket
            // that exists but does not answer means the service is stuck.
            let state = access(socketPath, F_OK) == 0 ? "Not responding" : "Starting"
            return .object([
                ("service", .string(service.rawValue)), ("state", .string(state)),
                ("pid", pid.map { .int(Int($0)) } ?? .null),
            ])
        }
    }

    /// Prints one row per service (or JSON); 0 only if every one is Running.
    func status(_ services: [ServiceName], json: Bool) -> Int32 {
        let documents = services.map(statusDocument)
        if json {
            print(JSONValue.object([("services", .array(documents))]).text)
        } else {
            print(ServiceControl.table(documents))
        }
        return documents.allSatisfy { $0["state"]?.stringValue == ServicePhase.running.rawValue } ? 0 : 1
    }

    /// The human-readable status table.
    static func table(_ documents: [JSONValue]) -> String {
        var rows = [["SERVICE", "STATE", "PID", "UPTIME", "SESSIONS", "LISTENERS"]]
        var extras: [Int: [String]] = [:]
        for document in documents {
            let listeners = (document["listeners"]?.arrayValue ?? []).map {
                ($0["address"]?.stringValue ?? "?") + ($0["tls"]?.boolValue == true ? " (TLS)" : "")
            }
            var listenerText = listeners.isEmpty ? "-" : listeners.joined(separator: ", ")
            if let admin = document["admin"]?.stringValue { listenerText += "; admin \(admin)" }
            if let error = document["error"]?.stringValue { listenerText = error }
            rows.append([
                document["service"]?.stringValue ?? "?", document["state"]?.stringValue ?? "?",
                document["pid"]?.intValue.map(String.init) ?? "-",
                document["uptime_seconds"]?.intValue.map(formatUptime) ?? "-",
                document["sessions"]?.intValue.map(String.init) ?? "-", listenerText,
            ])
            let pools = (document["pools"]?.arrayValue ?? []).map { pool in
                "  pool \(pool["backend"]?.stringValue ?? "?"): \(pool["idle"]?.intValue ?? 0) idle, "
                    + "\(pool["busy"]?.intValue ?? 0) busy, " + (pool["down"]?.boolValue == true ? "DOWN" : "up")
            }
            if !pools.isEmpty { extras[rows.count - 1] = pools }
        }
        var widths = Array(repeating: 0, count: rows[0].count)
        for row in rows { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
        var lines: [String] = []
        for (number, row) in rows.enumerated() {
            var line = ""
            for (index, cell) in row.enumerated() {
                line +=
                    index == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[index] - cell.count + 2)
            }
            lines.append(line)
            lines += extras[number] ?? []
        }
        return lines.joined(separator: "\n")
    }

    /// A duration as the configuration writes it: `30s`, `250ms`.
    static func text(_ duration: Duration) -> String { ConfigurationValue.text(duration) }

    static func formatUptime(_ seconds: Int) -> String {
        let days = seconds / 86400
        let hours = seconds / 3600 % 24
        let minutes = seconds / 60 % 60
        if days > 0 { return "\(days)d\(hours)h" }
        if hours > 0 { return "\(hours)h\(minutes < 10 ? "0" : "")\(minutes)m" }
        if minutes > 0 { return "\(minutes)m\(seconds % 60 < 10 ? "0" : "")\(seconds % 60)s" }
        return "\(seconds)s"
    }
}
