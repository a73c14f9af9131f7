//===----------------------------------------------------------------------===//
// Apus Service: the `apus` subcommands other than `load`.
//===----------------------------------------------------------------------===//

import Glibc

/// Entry point for `apus run|start|stop|restart|reload|status|serve|config|user`.
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
        if command == "user" { return UserCommand.run(options) }
        if options.passwordFromStandardInput {
            printError("apus \(command): --password-stdin belongs to apus user add|passwd")
            return 2
        }
        var services: [ServiceName] = []
        for word in options.words {
            guard let service = ServiceName(rawValue: word) else {
                printError("apus \(command): unknown argument '\(word)' (services are imap4 and imap4be)\n" + usage)
                return 2
            }
            if !services.contains(service) { services.append(service) }
        }
        let configurationPath = options.resolvedConfigurationPath()
        switch command {
        case "serve":
            guard services.count == 1 else {
                printError("apus serve: name one service (imap4 or imap4be)")
                return 2
            }
            return Daemon.serve(
                services[0], configurationPath: configurationPath, overrides: options.overrides,
                detach: options.detach, readyDescriptor: options.readyDescriptor)
        case "run":
            return RunCommand.run(
                services: services.isEmpty ? ServiceName.allCases : services,
                configurationPath: configurationPath, overrides: options.overrides)
        case "config":
            guard let configuration = options.loadConfiguration() else { return 1 }
            print(ConfigurationText.render(configuration), terminator: "")
            return 0
        case "start", "stop", "restart", "reload", "status":
            guard let configuration = options.loadConfiguration() else { return 1 }
            let control = ServiceControl(configuration: configuration, configurationPath: configuration.path)
            let named = services.isEmpty ? ServiceName.allCases : services
            switch command {
            case "start": return worst(named.sorted().map(control.start))
            case "stop": return worst(named.sorted().reversed().map(control.stop))
            case "restart":
                let stopped = worst(named.sorted().reversed().map(control.stop))
                return stopped != 0 ? stopped : worst(named.sorted().map(control.start))
            case "reload": return worst(named.sorted().map(control.reload))
            default:
                return control.status(named, json: options.json)
            }
        default:
            printError("apus: unknown command '\(command)'\n" + usage)
            return 2
        }
    }

    private static func worst(_ statuses: [Int32]) -> Int32 { statuses.max() ?? 0 }

    public static let usage = """
        usage: apus run [--service imap4|imap4be]              both in the foreground (first run: config, cert, demo user)
               apus start|stop|restart|reload [imap4|imap4be]  control the daemons (no name: both)
               apus status [--json] [imap4|imap4be]            one row per service; exit 0 only if all are Running
               apus config                                     print the effective configuration (a valid file)
               apus user add|passwd NAME [--password-stdin]    add a user or change a password (prompts on a terminal)
               apus user del NAME | apus user list             remove a user; list the users
               apus load [options]                             load generator (apus load --help)
        options: -c, --config PATH                             configuration (default \(ApusConfiguration.defaultPath),
                                                               else \(FirstRun.directoryName)/\(FirstRun.configurationName) here)
                 -o [SECTION.]KEY=VALUE                        set a configuration key (repeatable; no section: [global])
        environment: APUS_CONFIG                               configuration when --config is not given
        """

    /// Parsed options: `--config`, `-o`, `--json`, the daemon's own flags, and the other words
    /// (service names, or a `user` subcommand and name).
    struct Options {
        var words: [String] = []
        var configurationPath: String?
        var overrides: [ConfigurationOverride] = []
        var json = false
        var detach = false
        var readyDescriptor: Int32?
        var passwordFromStandardInput = false

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
                case "-o", "--option":
                    guard let text = value() else { return .failure("-o needs section.key=value") }
                    do throws(ConfigurationError) {
                        options.overrides.append(
                            try ConfigurationOverride.parse(text, baseDirectory: currentDirectory()))
                    } catch {
                        return .failure("\(error)")
                    }
                case "--json": options.json = true
                case "--detach": options.detach = true
                case "--password-stdin": options.passwordFromStandardInput = true
                case "--ready-fd":
                    guard let text = value(), let descriptor = Int32(text), descriptor > 2 else {
                        return .failure("--ready-fd needs a descriptor number above 2")
                    }
                    options.readyDescriptor = descriptor
                case "--service":
                    guard let name = value(), ServiceName(rawValue: name) != nil else {
                        return .failure("--service takes imap4 or imap4be")
                    }
                    options.words.append(name)
                default:
                    guard !argument.hasPrefix("-") || argument == "-" else {
                        return .failure("unknown option '\(argument)'")
                    }
                    options.words.append(argument)
                }
                index += 1
            }
            return .success(options)
        }

        /// The file to read: `--config`, else `APUS_CONFIG`, else /etc/apus/apus.conf or the
        /// first run's ./apus-data/apus.conf when one exists; nil when there is none (defaults).
        func resolvedConfigurationPath() -> String? {
            if let configurationPath { return configurationPath }
            if let named = getenv("APUS_CONFIG").map({ String(cString: $0) }), !named.isEmpty {
                return absolutePath(named, base: currentDirectory())
            }
            for candidate in [ApusConfiguration.defaultPath, FirstRun.configurationPath()]
            where access(candidate, F_OK) == 0 {
                return candidate
            }
            return nil
        }

        /// The configuration with the `-o` options applied, or nil after printing what is wrong.
        func loadConfiguration() -> ApusConfiguration? {
            do throws(ConfigurationError) {
                if let path = resolvedConfigurationPath() {
                    return try ApusConfiguration.load(path: path, overrides: overrides)
                }
                return try ApusConfiguration(file: nil, overrides: overrides)
            } catch {
                printError("apus: configuration error: \(error)")
                return nil
            }
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
