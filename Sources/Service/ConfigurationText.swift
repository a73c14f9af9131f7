//===----------------------------------------------------------------------===//
// Apus Service: `apus config`, the effective configuration written out as a configuration file.
//===----------------------------------------------------------------------===//

import MailStore
import Reactor
import Telemetry

/// `apus config` prints this: every key with the value the services would use, in the file's own
/// format, so the output loads back to the same configuration (`apus config > new.conf` starts a
/// file). `[global]` holds `run_dir` and every key both services share; each service's section
/// its own keys and the shared keys whose value differs; `[store]` the back end's store keys.
enum ConfigurationText {
    static func render(_ configuration: ApusConfiguration) -> String {
        var text = "# The effective Apus configuration"
        text += configuration.path.map { " (from \($0)" } ?? " (built-in defaults"
        text += configuration.overrides.isEmpty ? ")" : " with " + configuration.overrides.map(\.description).joined(
            separator: " ") + ")"
        text += ": every key with its value.\n\n[global]\n"
        text += line("run_dir", configuration.runDirectory)
        let keys = ConfigurationKey.all.filter { $0.name != "run_dir" }
        func shared(_ key: ConfigurationKey) -> Bool {
            key.scope == .anywhere && value(key, configuration.imap4) == value(key, configuration.imap4be)
        }
        for key in keys where shared(key) { text += entry(key, configuration.imap4be) }
        for service in [ServiceName.imap4be, .imap4] {
            text += "\n[\(service.rawValue)]\n"
            for key in keys where key.scope.allows(service.rawValue) && !shared(key) {
                text += entry(key, configuration.settings(for: service))
            }
        }
        // The back end's store.
        text += "\n[store]\n"
        for key in keys where key.scope == .storeOnly { text += entry(key, configuration.imap4be) }
        return text
    }

    private static func entry(_ key: ConfigurationKey, _ settings: ServiceSettings) -> String {
        guard let value = value(key, settings) else {
            // An optional path that is not set has no value the file could hold: show the key only.
            return "# \(key.name) = (not set)\n"
        }
        return line(key.name, value)
    }

    private static func line(_ key: String, _ value: String) -> String {
        value.isEmpty ? "\(key) =\n" : "\(key) = \(value)\n"
    }

    /// The value of `key` in `settings` as the file writes it; nil for an unset optional.
    static func value(_ key: ConfigurationKey, _ settings: ServiceSettings) -> String? {
        guard let render = renderers[key.name] else {
            // Every key of ConfigurationKey.all has a renderer (a test holds us to it).
            preconditionFailure("no renderer for configuration key '\(key.name)'")
        }
        return render(settings)
    }

    private static func yesNo(_ value: Bool) -> String { value ? "yes" : "no" }
    private static func duration(_ value: Duration) -> String { ConfigurationValue.text(value) }
    private static func addresses(_ value: [SocketAddress]) -> String {
        value.map(\.description).joined(separator: ", ")
    }
    /// `name=address[/tls][/noverify]`: `noverify` written whenever verification is off, even on a
    /// plain hop, so the value reads back equal.
    private static func backend(_ value: BackendAddress) -> String {
        "\(value.name)=\(value.address)" + (value.tls ? "/tls" : "") + (value.verifyCertificate ? "" : "/noverify")
    }

    /// How each key's value is written, by key name (run_dir is not a service setting).
    static let renderers: [String: @Sendable (ServiceSettings) -> String?] = [
        "data_dir": { $0.dataDirectory },
        "users_file": { $0.usersFile },
        "log_file": { $0.logFile },
        "log_level": { $0.logLevel.description },
        "certificate": { $0.certificate },
        "private_key": { $0.privateKey },
        "shutdown_timeout": { duration($0.shutdownTimeout) },
        "start_timeout": { duration($0.startTimeout) },
        "login_timeout": { duration($0.loginTimeout) },
        "idle_timeout": { duration($0.idleTimeout) },
        "login_disabled_on_plain": { yesNo($0.loginDisabledOnPlain) },
        "max_connections_per_address": { String($0.maxConnectionsPerAddress) },
        "failed_login_delay": { duration($0.failedLoginDelay) },
        "failed_login_delay_max": { duration($0.failedLoginDelayMax) },
        "max_connections_per_user": { String($0.maxConnectionsPerUser) },
        "auth_cache_ttl": { duration($0.authCacheTTL) },
        "linger": { duration($0.linger) },
        "linger_users": { String($0.lingerUsers) },
        "backend_ca_file": { $0.backendCAFile },
        "pool_health_interval": { duration($0.poolHealthInterval) },
        "pool_response_timeout": { duration($0.poolResponseTimeout) },
        "pool_connect_timeout": { duration($0.poolConnectTimeout) },
        "pool_checkout_timeout": { duration($0.poolCheckoutTimeout) },
        "pool_lazy_reset": { duration($0.poolLazyReset) },
        "pool_reconnect_max": { duration($0.poolReconnectMax) },
        "listen": { addresses($0.listen) },
        "tls_listen": { addresses($0.tlsListen) },
        "admin_listen": { $0.adminListen?.description ?? "off" },
        "trusted_proxies": { $0.trustedProxies.joined(separator: ", ") },
        "local_socket": { $0.localSocket ?? "off" },
        "backends": { $0.backends.map(backend).joined(separator: ", ") },
        "routes": { $0.routes.map(\.description).joined(separator: ", ") },
        "routes_file": { $0.routesFile },
        "pool_min_idle": { String($0.poolMinIdle) },
        "pool_max": { String($0.poolMax) },
        "pool_idle_timeout": { duration($0.poolIdleTimeout) },
        "source_addresses": { $0.sourceAddresses.joined(separator: ", ") },
        "listen_reuse_port": { yesNo($0.listenReusePort) },
        "fsync": { $0.storeFsync.rawValue },
    ]
}
