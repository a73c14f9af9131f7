//===----------------------------------------------------------------------===//
// Apus Service: `apus run`, both services in the foreground in one process.
//===----------------------------------------------------------------------===//

import Glibc
import MailStore
import Reactor
import Telemetry

/// `apus run [--service imap4|imap4be] [--config PATH] [-o KEY=VALUE]...`: the quickest way to try
/// Apus. Logs go to standard error; Ctrl-C stops gracefully; SIGHUP reloads. No pid file or
/// control socket: `apus status` manages daemons only.
///
/// Without a configuration file it writes one into `./apus-data` (``FirstRun``) and keeps
/// everything there; the first run makes a self-signed certificate there and a users file with a
/// `demo` user, and prints the password.
enum RunCommand {
    static func run(services: [ServiceName], configurationPath: String?, overrides: [ConfigurationOverride]) -> Int32 {
        Signals.block()
        let path: String
        if let configurationPath {
            path = configurationPath
        } else {
            switch FirstRun.writeConfiguration() {
            case .success(let written): path = written
            case .failure(let error):
                printError("apus: \(error)")
                return 1
            }
        }
        var configuration: ApusConfiguration
        do throws(ConfigurationError) {
            configuration = try ApusConfiguration.load(path: path, overrides: overrides)
        } catch {
            printError("apus: configuration error: \(error)")
            return 1
        }
        if let problem = prepareFirstRun(&configuration, services: services) {
            printError("apus: \(problem)")
            return 1
        }
        let host: ServiceHost
        do throws(ServiceStartError) {
            let level = services.map { configuration.settings(for: $0).logLevel }.min() ?? .info
            host = try ServiceHost(configuration: configuration, log: try LogOutput(file: nil, level: level))
        } catch {
            printError("apus: \(error)")
            return 1
        }
        var bound: [ServiceName: [SocketAddress]] = [:]
        for service in services.sorted() {
            var settings = configuration.settings(for: service)
            // One process: the front end's default back end is the back end just started, over its
            // local socket when it has one (the cheaper hop), else on the port it really got (0
            // asks for an ephemeral one).
            if service == .imap4, let backend = bound[.imap4be],
                settings.backends == ApusConfiguration.localBackends(for: configuration.imap4be)
            {
                var local = configuration.imap4be
                local.listen = Array(backend.prefix(local.listen.count))
                local.tlsListen = Array(backend.dropFirst(local.listen.count))
                settings.backends = ApusConfiguration.localBackends(for: local, overLocalSocket: true)
            }
            do throws(ServiceStartError) {
                bound[service] = try host.start(service, settings: settings)
            } catch {
                printError("apus: \(service.rawValue) could not start: \(error)")
                host.stop()
                return 1
            }
            print("\(service.rawValue): " + Daemon.listenerSummary(host.statusDocument(for: service)))
        }
        printHowToConnect(configuration, bound: bound)
        fflush(nil)  // stdout may be a pipe or file: show the above now, not at exit
        host.waitForStopSignal()
        print("apus: stopping (sessions get BYE once their commands finish)")
        host.stop()
        return 0
    }

    /// Makes the certificate and the users file (with a demo user) when missing. Nil when all
    /// is ready, else what went wrong.
    static func prepareFirstRun(_ configuration: inout ApusConfiguration, services: [ServiceName]) -> String? {
        for service in services {
            let settings = configuration.settings(for: service)
            if settings.usesTLS || !settings.listen.isEmpty,
                access(settings.certificate, F_OK) != 0, access(settings.privateKey, F_OK) != 0
            {
                if let problem = Daemon.makeDirectory(directoryOf(settings.certificate))
                    ?? Daemon.makeDirectory(directoryOf(settings.privateKey))
                {
                    return "cannot make the certificate's directory: \(problem)"
                }
                do {
                    try SelfSignedCertificate.make(certificatePath: settings.certificate, keyPath: settings.privateKey)
                } catch {
                    return "cannot make a self-signed certificate at \(settings.certificate): \(error)"
                }
                print("apus: made a self-signed certificate: \(settings.certificate) (key \(settings.privateKey))")
            }
            if service == .imap4be, access(settings.usersFile, F_OK) != 0 {
                if let problem = Daemon.makeDirectory(directoryOf(settings.usersFile)) {
                    return "cannot make the users file's directory: \(problem)"
                }
                let password = randomPassword()
                do {
                    try PasswordFile(path: settings.usersFile).setPassword(user: "demo", password: Array(password.utf8))
                } catch {
                    return "cannot write the users file \(settings.usersFile): \(error)"
                }
                print("apus: made \(settings.usersFile) with the user 'demo', password '\(password)' (shown once)")
            }
            if service == .imap4be, let path = settings.localSocket,
               let problem = BackendService.makeLocalSocketDirectory(path) {
                // The default socket is a convenience: without it the front end takes TCP.
                guard !configuration.localSocketIsExplicit else { return BackendService.localSocketFailure(path, problem) }
                printError("apus: warning: running without the back end's local socket \(path): \(problem) "
                           + "(set run_dir or local_socket to a writable place, or local_socket = off)")
                configuration.imap4be.localSocket = nil
            }
            if service == .imap4be, let problem = Daemon.makeDirectory(settings.dataDirectory) {
                return "cannot make the data directory \(settings.dataDirectory): \(problem)"
            }
        }
        return nil
    }

    static func printHowToConnect(_ configuration: ApusConfiguration, bound: [ServiceName: [SocketAddress]]) {
        let service: ServiceName = bound[.imap4] != nil ? .imap4 : .imap4be
        let settings = configuration.settings(for: service)
        guard let addresses = bound[service] else { return }
        let plain = addresses.prefix(settings.listen.count).first
        let tls = addresses.dropFirst(settings.listen.count).first
        func local(_ address: SocketAddress) -> String {
            address.host == "0.0.0.0" ? "127.0.0.1" : address.host == "::" ? "::1" : address.host
        }
        print(
            "apus: connect a mail client to "
                + [
                    plain.map { "\(local($0)) port \($0.port) (STARTTLS)" },
                    tls.map { "\(local($0)) port \($0.port) (TLS)" },
                ].compactMap { $0 }.joined(separator: " or ")
                + "; the certificate is self-signed unless you configured one")
        if let tls {
            print(
                "apus: try: openssl s_client -quiet -connect \(local(tls)):\(tls.port)   then   a LOGIN demo <password>"
            )
        }
        // `apus user` finds /etc/apus/apus.conf and ./apus-data/apus.conf by itself; any other file it must be told.
        let found = [ApusConfiguration.defaultPath, FirstRun.configurationPath()].contains(configuration.path ?? "")
        print(
            "apus: add a user (another terminal, same directory): apus user add NAME"
                + (found ? "" : " --config \(configuration.path ?? "FILE")"))
        print("apus: Ctrl-C stops gracefully")
    }

    /// Twelve letters and digits from the kernel's random source.
    static func randomPassword() -> String {
        let alphabet = Array("abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")
        var bytes = [UInt8](repeating: 0, count: 12)
        let descriptor = open("/dev/urandom", O_RDONLY | O_CLOEXEC)
        if descriptor >= 0 {
            _ = bytes.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            close(descriptor)
        }
        return String(bytes.map { alphabet[Int($0) % alphabet.count] })
    }
}
