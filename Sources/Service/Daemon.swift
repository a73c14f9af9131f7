//===----------------------------------------------------------------------===//
// Apus Service: `apus serve <service>`, one service as a process (a daemon, or under systemd).
//===----------------------------------------------------------------------===//

import Glibc
import Reactor
import Telemetry

/// Runs one service as its own process until SIGTERM/SIGINT (or `stop` on its control socket).
///
/// `apus start` runs it detached (`--detach --ready-fd 3`): it leaves the terminal's session,
/// logs to the configured file, and writes one line to the readiness pipe, `ready <listeners>`
/// once it accepts connections or `error <cause>` when it cannot start. Under systemd
/// (`Type=notify`) it logs to standard error and sends `READY=1` to `NOTIFY_SOCKET`.
/// Either way it holds `run_dir/<service>.pid` and answers on `run_dir/<service>.sock`.
enum Daemon {
    static func serve(
        _ service: ServiceName, configurationPath: String?, overrides: [ConfigurationOverride] = [], detach: Bool,
        readyDescriptor: Int32?
    ) -> Int32 {
        Signals.block()
        if detach {
            _ = setsid()
            _ = chdir("/")
            _ = umask(0o027)
        }
        let readiness = Readiness(descriptor: readyDescriptor)
        func fail(_ message: String) -> Int32 {
            readiness.send("error " + message)
            SystemdNotifier.notify("STATUS=\(message)")
            if readyDescriptor == nil { printError("apus: \(service.rawValue) could not start: \(message)") }
            return 1
        }

        let configuration: ApusConfiguration
        do throws(ConfigurationError) {
            configuration = try ApusConfiguration.load(commandLinePath: configurationPath, overrides: overrides)
        } catch {
            return fail("configuration error: \(error)")
        }
        let settings = configuration.settings(for: service)
        if let problem = makeDirectory(configuration.runDirectory) {
            return fail("run_dir \(configuration.runDirectory): \(problem)")
        }
        let pidFile: PidFile
        do throws(ServiceStartError) {
            pidFile = try PidFile.acquire(path: configuration.pidFilePath(for: service))
        } catch {
            return fail(error.message)
        }
        func failAndClean(_ message: String, _ cleanup: () -> Void = {}) -> Int32 {
            cleanup()
            pidFile.remove()
            return fail(message)
        }
        let host: ServiceHost
        let control: ControlServer
        do throws(ServiceStartError) {
            let log = try LogOutput(file: detach ? settings.logFile : nil, level: settings.logLevel)
            host = try ServiceHost(configuration: configuration, log: log)
            host.announce(service)
            control = try ControlServer(path: configuration.controlSocketPath(for: service)) { [host] request in
                host.control(request, service: service)
            }
        } catch {
            return failAndClean(error.message)
        }
        let logger = host.logger(for: service)
        do throws(ServiceStartError) {
            try host.start(service)
        } catch {
            logger.error("could not start: \(error.message)")
            return failAndClean(error.message) {
                control.remove()
                host.stop()
            }
        }
        let summary = listenerSummary(host.statusDocument(for: service))
        logger.notice("started (pid \(getpid())): \(summary)")
        readiness.send("ready " + summary)
        SystemdNotifier.notify("READY=1\nMAINPID=\(getpid())\nSTATUS=\(summary)")

        host.waitForStopSignal()

        SystemdNotifier.notify("STOPPING=1")
        logger.notice("stopping: no new connections; sessions get BYE once their commands finish")
        host.stop()
        logger.notice("stopped")
        control.remove()
        pidFile.remove()
        return 0
    }

    /// `127.0.0.1:1143, 127.0.0.1:1993 (TLS); admin 127.0.0.1:40123` from a status document.
    static func listenerSummary(_ document: JSONValue) -> String {
        let listeners = (document["listeners"]?.arrayValue ?? []).map { item -> String in
            (item["address"]?.stringValue ?? "?") + (item["tls"]?.boolValue == true ? " (TLS)" : "")
        }
        var text = "listening on " + (listeners.isEmpty ? "nothing" : listeners.joined(separator: ", "))
        if let admin = document["admin"]?.stringValue { text += "; admin http://\(admin)/" }
        return text
    }

    /// Creates `path` and its parents (0755) if missing; nil on success, else the reason.
    static func makeDirectory(_ path: String) -> String? {
        var current = ""
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, 0o755) != 0, errno != EEXIST { return String(cString: strerror(errno)) }
        }
        var info = stat()
        guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else { return "not a directory" }
        return nil
    }
}

/// The write end of `apus start`'s readiness pipe: one line, then closed.
final class Readiness {
    private var descriptor: Int32?

    init(descriptor: Int32?) { self.descriptor = descriptor }

    func send(_ line: String) {
        guard let descriptor else { return }
        let bytes = Array((line + "\n").utf8)
        bytes.withUnsafeBufferPointer { _ = writeAll(descriptor, $0) }
        close(descriptor)
        self.descriptor = nil
    }
}
