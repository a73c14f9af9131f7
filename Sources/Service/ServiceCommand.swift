//===----------------------------------------------------------------------===//
// Apus Service: the `apus` subcommands other than `load`.
//===----------------------------------------------------------------------===//

import Glibc

/// Entry point for `apus run|start|stop|restart|reload|status|serve`.
public enum ServiceCommand {
    /// Runs the subcommand in `arguments` (without the program name); returns the exit status.
    public static func run(_ arguments: [String]) -> Int32 {
        guard let command = arguments.first else {
            printError(usage)
            return 2
        }
        let options: Options
        switch Options.parse(Array(arguments.dropFirst())) {
        case .success(let parsed): options = parsed
        case .failure(let message):
            printError("apus \(command): \(message)\n" + usage)
            return 2
        }
        let configurationPath =
            options.configurationPath
            ?? getenv("APUS_CONFIG").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }
        switch command {
        case "serve":
            guard options.services.count == 1 else {
                printError("apus serve: name one service (imap4 or imap4be)")
                return 2
            }
            return Daemon.serve(
                options.services[0], configurationPath: configurationPath, detach: options.detach,
                readyDescriptor: options.readyDescriptor)
        case "run":
            return RunCommand.run(
                services: options.services.isEmpty ? ServiceName.allCases : options.services,
                configurationPath: configurationPath)
        case "start", "stop", "restart", "reload", "status":
            let configuration: ApusConfiguration
            do throws(ConfigurationError) {
                configuration = try ApusConfiguration.load(commandLinePath: configurationPath)
            } catch {
                printError("apus: configuration error: \(error)")
                return 1
            }
            let control = ServiceControl(configuration: configuration, configurationPath: configuration.path)
            let named = options.services.isEmpty ? ServiceName.allCases : options.services
            switch command {
            case "start": return worst(named.sorted().map(control.start))
            case "stop": return worst(named.sorted().reversed().map(control.stop))
            case "restart":
                let stopped = worst(named.sorted().reversed().map(control.stop))
                return stopped != 0 ? stopped : worst(named.sorted().map(control.start))
            case "reload": return worst(named.sorted().map(control.reload))
            default:
                return control.status(
                    options.services.isEmpty ? ServiceName.allCases : options.services,
                    json: options.json)
            }
        default:
            printError("apus: unknown command '\(command)'\n" + usage)
            return 2
        }
    }

    private static func worst(_ statuses: [Int32]) -> Int32 { statuses.max() ?? 0 }

    public static let usage = """
        usage: apus run [--service imap4|imap4be]              both in the foreground (first run: cert, demo user)
               apus start|stop|restart|reload [imap4|imap4be]  control the daemons (no name: both)
               apus status [--json] [imap4|imap4be]            one row per service; exit 0 only if all are Running
               apus load [options]                             load generator (apus load --help)
        options: --config PATH                                 configuration (default \(ApusConfiguration.defaultPath))
        environment: APUS_CONFIG                               configuration when --config is not given
        """

    /// Parsed options: service names, `--config`, `--json`, and the daemon's own flags.
    struct Options {
        var services: [ServiceName] = []
        var configurationPath: String?
        var json = false
        var detach = false
        var readyDescriptor: Int32?

        enum Parsed {
            case success(Options)
            case failure(String)
        }

        static func parse(_ arguments: [String]) -> Parsed {
            var options = Options()
            var index = 0
            func value() -> String? {
                index += 1
                return index < arguments.count ? arguments[index] : nil
            }
            while index < arguments.count {
                let argument = arguments[index]
                switch argument {
                case "--config", "-c":
                    guard let path = value(), !path.isEmpty else { return .failure("--config needs a path") }
                    options.configurationPath = absolutePath(path, base: currentDirectory())
                case "--json": options.json = true
                case "--detach": options.detach = true
                case "--ready-fd":
                    guard let text = value(), let descriptor = Int32(text), descriptor > 2 else {
                        return .failure("--ready-fd needs a descriptor number above 2")
                    }
                    options.readyDescriptor = descriptor
                case "--service":
                    guard let name = value(), let service = ServiceName(rawValue: name) else {
                        return .failure("--service takes imap4 or imap4be")
                    }
                    options.services.append(service)
                default:
                    guard let service = ServiceName(rawValue: argument) else {
                        return .failure("unknown argument '\(argument)' (services are imap4 and imap4be)")
                    }
                    if !options.services.contains(service) { options.services.append(service) }
                }
                index += 1
            }
            return .success(options)
        }
    }
}

func printError(_ text: String) {
    var line = text
    if !line.hasSuffix("\n") { line += "\n" }
    line.withUTF8 { bytes in _ = writeAll(2, bytes) }
}

@discardableResult
func writeAll(_ descriptor: Int32, _ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
    var offset = 0
    while offset < bytes.count {
        let written = Glibc.write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
        if written < 0, errno == EINTR { continue }
        if written <= 0 { return false }
        offset += written
    }
    return true
}
