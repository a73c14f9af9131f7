//===----------------------------------------------------------------------===//
// Apus Service tests: the configuration file, its defaults and its error messages.
//===----------------------------------------------------------------------===//

import MailStore
import Reactor
import Telemetry
import Testing
import TestSupport

@testable import Service

@Suite("Service configuration")
struct ConfigurationTests {
    func parse(_ text: String, path: String = "/etc/apus/apus.conf") throws(ConfigurationError) -> ApusConfiguration {
        try ApusConfiguration(file: try ConfigurationFile.parse(Array(text.utf8), path: path))
    }

    @Test func defaultsServeOneHost() throws {
        let configuration = try parse("")
        #expect(configuration.imap4be.listen == [SocketAddress(host: "127.0.0.1", port: 1143)])
        #expect(configuration.imap4be.tlsListen == [SocketAddress(host: "127.0.0.1", port: 1993)])
        #expect(configuration.imap4.listen == [SocketAddress(host: "0.0.0.0", port: 143)])
        #expect(configuration.imap4.tlsListen == [SocketAddress(host: "0.0.0.0", port: 993)])
        #expect(configuration.imap4.backends.map(\.description) == ["local=127.0.0.1:1143"])
        #expect(configuration.imap4be.adminListen == SocketAddress(host: "127.0.0.1", port: 0))
        #expect(configuration.imap4be.usersFile == "/var/lib/apus/passwd")
        #expect(configuration.runDirectory == "/run/apus")
        #expect(configuration.pidFilePath(for: .imap4be) == "/run/apus/imap4be.pid")
        #expect(configuration.imap4be.loginDisabledOnPlain)
        #expect(configuration.imap4be.idleTimeout == .seconds(1800))
    }

    @Test func globalAppliesToBothAndASectionOverridesIt() throws {
        // [global] written last still yields to the service section.
        let configuration = try parse(
            """
            [imap4]
            log_level = debug
            [global]
            log_level = warning
            data_dir = /srv/mail
            """)
        #expect(configuration.imap4.logLevel == .debug)
        #expect(configuration.imap4be.logLevel == .warning)
        #expect(configuration.imap4be.dataDirectory == "/srv/mail")
        #expect(configuration.imap4be.usersFile == "/srv/mail/passwd")
    }

    @Test func relativePathsFollowTheFile() throws {
        let configuration = try parse(
            "run_dir = run\n[imap4be]\ncertificate = tls/cert.pem\nusers_file = ./users\n",
            path: "/opt/apus/apus.conf")
        #expect(configuration.runDirectory == "/opt/apus/run")
        #expect(configuration.imap4be.certificate == "/opt/apus/tls/cert.pem")
        #expect(configuration.imap4be.usersFile == "/opt/apus/users")
        #expect(configuration.imap4.certificate == "/etc/apus/tls/cert.pem")
    }

    @Test func frontEndDefaultsToTheLocalBackEndsListener() throws {
        let configuration = try parse("[imap4be]\nlisten = 0.0.0.0:2143\n")
        #expect(
            configuration.imap4.backends == [
                BackendAddress(
                    name: "local", address: SocketAddress(host: "127.0.0.1", port: 2143),
                    tls: false, verifyCertificate: false)
            ])
        let tlsOnly = try parse("[imap4be]\nlisten =\ntls_listen = [::]:2993\n")
        #expect(tlsOnly.imap4.backends.map(\.description) == ["local=[::1]:2993/tls/noverify"])
    }

    @Test func backEndsRoutesAndListsParse() throws {
        let configuration = try parse(
            """
            # comment
            ; another
            [imap4]\r
            listen = 127.0.0.1:143, [::1]:143
            backends = b1=10.0.0.1:1143, b2=10.0.0.2:1993/tls, b3=10.0.0.3:1993/tls/noverify
            routes = Alice@Example.com=b2, @example.org=b3
            pool_max = 8
            source_addresses = 127.0.0.2, 127.0.0.3
            listen_reuse_port = yes
            pool_lazy_reset = 250ms
            [imap4be]
            trusted_proxies = 10.0.0.0/8, ::1
            idle_timeout = 31m
            login_timeout = 250ms
            """)
        #expect(configuration.imap4.listen.map(\.description) == ["127.0.0.1:143", "[::1]:143"])
        #expect(
            configuration.imap4.backends.map(\.description)
                == ["b1=10.0.0.1:1143", "b2=10.0.0.2:1993/tls", "b3=10.0.0.3:1993/tls/noverify"])
        #expect(configuration.imap4.routes.map(\.description) == ["alice@example.com=b2", "@example.org=b3"])
        #expect(configuration.imap4.poolMax == 8)
        #expect(configuration.imap4.sourceAddresses == ["127.0.0.2", "127.0.0.3"])
        #expect(configuration.imap4.listenReusePort)
        #expect(!configuration.imap4be.listenReusePort)
        #expect(configuration.imap4.poolLazyReset == .milliseconds(250))
        #expect(configuration.imap4be.poolLazyReset == .seconds(1), "the default, unused by the back end")
        #expect(configuration.imap4be.trustedProxies == ["10.0.0.0/8", "::1"])
        #expect(configuration.imap4be.idleTimeout == .seconds(31 * 60))
        #expect(configuration.imap4be.loginTimeout == .milliseconds(250))
    }

    @Test func unixBackEndsAndTheLocalSocketParseAndPrintBack() throws {
        let configuration = try parse(
            """
            run_dir = /srv/run
            [imap4]
            backends = near=unix:/run/apus/imap4be-imap.sock, nearer=unix:/tmp/a/b.sock/noverify, far=10.0.0.2:1143
            [imap4be]
            local_socket = /run/apus/be.sock
            """)
        #expect(
            configuration.imap4.backends.map(\.description)
                == ["near=unix:/run/apus/imap4be-imap.sock", "nearer=unix:/tmp/a/b.sock", "far=10.0.0.2:1143"])
        #expect(configuration.imap4.backends[0].address == SocketAddress(unixPath: "/run/apus/imap4be-imap.sock"))
        #expect(configuration.imap4be.localSocket == "/run/apus/be.sock")
        // `apus config` writes them so that they read back the same.
        let text = ConfigurationText.render(configuration)
        #expect(text.contains("backends = near=unix:/run/apus/imap4be-imap.sock, nearer=unix:/tmp/a/b.sock/noverify"))
        #expect(text.contains("local_socket = /run/apus/be.sock\n"))
        let again = try parse(text)
        #expect(again.imap4.backends == configuration.imap4.backends)
        #expect(again.imap4be.localSocket == configuration.imap4be.localSocket)
        // The default is in the run directory (beside, not on, the control socket); `off` disables it.
        #expect(try parse("run_dir = /srv/run").imap4be.localSocket == "/srv/run/imap4be-imap.sock")
        #expect(try parse("[imap4be]\nlocal_socket = off").imap4be.localSocket == nil)
        #expect(ConfigurationText.render(try parse("[imap4be]\nlocal_socket = off")).contains("local_socket = off\n"))
    }

    @Test func storeFsyncIsOptimizedUnlessTheStoreSectionSaysAlways() throws {
        #expect(try parse("").imap4be.storeFsync == .optimized)
        let always = try parse("[store]\nfsync = always\n[imap4be]\nlisten = 127.0.0.1:1\n")
        #expect(always.imap4be.storeFsync == .always)
        #expect(always.imap4be.listen == [SocketAddress(host: "127.0.0.1", port: 1)])
        #expect(try parse("[store]\nfsync = optimized").imap4be.storeFsync == .optimized)
    }

    @Test func emptyListenMeansNoListener() throws {
        let configuration = try parse("[imap4be]\ntls_listen =\nadmin_listen = off\n")
        #expect(configuration.imap4be.tlsListen.isEmpty)
        #expect(configuration.imap4be.adminListen == nil)
        #expect(!configuration.imap4be.usesTLS)
    }

    @Test(arguments: [
        ("[imap4be]\nlisen = 127.0.0.1:1", 2, "unknown key 'lisen' in [imap4be]"),
        ("[imap5]", 1, "unknown section [imap5]"),
        ("[imap4]\nlisten = localhost:143", 2, "'localhost' is not a numeric IP address"),
        ("[imap4]\nlisten = 127.0.0.1", 2, "has no port"),
        ("[imap4]\nlisten = 127.0.0.1:70000", 2, "'70000' is not a port"),
        ("listen = 127.0.0.1:1", 1, "'listen' does not belong in [global]"),
        ("[imap4be]\nbackends = a=127.0.0.1:1", 2, "'backends' does not belong in [imap4be]"),
        ("[imap4be]\nlisten_reuse_port = yes", 2, "'listen_reuse_port' does not belong in [imap4be]"),
        ("[imap4]\nrun_dir = /tmp", 2, "'run_dir' does not belong in [imap4]"),
        ("idle_timeout = soon", 1, "'soon' is not a duration"),
        ("[imap4]\nlisten = 127.0.0.1:1\n\nlisten = 127.0.0.1:2", 4, "'listen' already set in [imap4] on line 2"),
        ("[imap4]\n[imap4]", 2, "section [imap4] repeated"),
        ("just some words", 1, "expected 'key = value' or '[section]'"),
        ("[imap4", 1, "section header without ']'"),
        ("[imap4]\nroutes = alice@example.com=nowhere", 2, "no back end named 'nowhere'"),
        ("[imap4]\nbackends = a=127.0.0.1:1/bogus", 2, "unknown back-end option 'bogus'"),
        ("[imap4]\nbackends = a=127.0.0.1:1, a=127.0.0.1:2", 2, "back end 'a' listed twice"),
        ("[imap4]\nbackends = a=unix:/run/apus/be.sock/tls", 2,
         "back end 'a': a UNIX-socket back end cannot use TLS"),
        ("[imap4]\nbackends = a=unix:run/be.sock", 2, "'run/be.sock' is not an absolute path"),
        ("[imap4]\nbackends = a=unix:/" + String(repeating: "d", count: 120), 2,
         "is 121 bytes, longer than the 107 a UNIX socket path may have"),
        ("[imap4be]\nlocal_socket = /" + String(repeating: "d", count: 120), 2,
         "local_socket: '/ddd"),
        ("[imap4]\nlocal_socket = /run/be.sock", 2, "'local_socket' does not belong in [imap4]"),
        ("log_level = loud", 1, "'loud' is not one of debug"),
        ("[imap4]\npool_max = 0", 2, "must be at least 1"),
        ("[imap4]\npool_min_idle = -1", 2, "'-1' is not a count"),
        ("[imap4be]\ntrusted_proxies = 10.0.0.0/33", 2, "bad prefix length"),
        ("login_disabled_on_plain = perhaps", 1, "'perhaps' is not yes or no"),
        ("Listen = 1", 1, "bad key name 'Listen'"),
        ("[store]\nfsync = sometimes", 2, "fsync: 'sometimes' is not optimized or always"),
        ("[imap4be]\nfsync = always", 2, "'fsync' does not belong in [imap4be] (only in [store])"),
        ("fsync = always", 1, "'fsync' does not belong in [global]"),
        ("[store]\nidle_timeout = 5m", 2, "'idle_timeout' does not belong in [store]"),
        ("[store]\nlisten = 127.0.0.1:1", 2, "'listen' does not belong in [store]"),
        ("\n\n" + String(repeating: "x", count: 9000), 3, "line longer than 8192 bytes"),
    ])
    func mistakesNameFileAndLine(text: String, line: Int, message: String) {
        #expect {
            _ = try parse(text, path: "/etc/apus/apus.conf")
        } throws: { error in
            guard let error = error as? ConfigurationError else { return false }
            return error.file == "/etc/apus/apus.conf" && error.line == line && error.message.contains(message)
                && error.description.hasPrefix("/etc/apus/apus.conf:\(line): ")
        }
    }

    @Test func invalidUTF8IsRefusedWithItsLine() {
        let bytes = Array("[imap4]\n".utf8) + [0x6C, 0x3D, 0xFF, 0x0A]
        #expect(throws: ConfigurationError(file: "f", line: 2, message: "not valid UTF-8")) {
            _ = try ConfigurationFile.parse(bytes, path: "f")
        }
    }

    @Test func aMissingFileIsNamed() {
        #expect(
            throws: ConfigurationError(
                file: "/nonexistent/apus.conf", line: 0,
                message: "cannot open: No such file or directory")
        ) {
            _ = try ApusConfiguration.load(path: "/nonexistent/apus.conf")
        }
        // The default path may be missing: built-in defaults then.
        #expect((try? ApusConfiguration.load(path: "/nonexistent/apus.conf", mayBeMissing: true))?.path == nil)
    }

    @Test func anOversizedFileIsRefused() throws {
        let directory = TemporaryDirectory(prefix: "apus-service")
        defer { directory.remove() }
        let line = "# " + String(repeating: "x", count: 1000) + "\n"
        writeFile(directory.path + "/big.conf", String(repeating: line, count: 1100))
        #expect(
            throws: ConfigurationError(
                file: directory.path + "/big.conf", line: 0, message: "larger than 1048576 bytes")
        ) {
            _ = try ApusConfiguration.load(path: directory.path + "/big.conf")
        }
    }

    @Test(arguments: [
        ("250ms", Duration.milliseconds(250)), ("30s", .seconds(30)), ("5m", .seconds(300)),
        ("2h", .seconds(7200)), ("1d", .seconds(86400)), ("45", .seconds(45)), ("0", .zero),
    ])
    func durations(text: String, expected: Duration) throws {
        #expect(try ConfigurationValue.duration(text) == expected)
    }

    @Test(arguments: ["", "s", "5 m", "-1s", "31d", "1.5s", "5x"])
    func badDurations(text: String) {
        #expect(throws: ConfigurationValueError.self) { try ConfigurationValue.duration(text) }
    }

    @Test func changedKeysNameEverySettingThatDiffers() throws {
        let old = try parse("").imap4
        var new = old
        new.poolMax = 3
        new.routes = [RouteEntry(pattern: "a", backend: "local")]
        new.logLevel = .error
        new.storeFsync = .always
        #expect(ServiceHost.changedKeys(old, new) == ["log_level", "routes", "pool_max", "fsync"])
        #expect(ServiceHost.changedKeys(old, old).isEmpty)
    }
}

@Suite("Shipped files")
struct ShippedFilesTests {
    /// The repository root, from this file's path.
    static let root: String = {
        var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)  // Tests/ServiceTests/ConfigurationTests.swift
        return parts.joined(separator: "/")
    }()

    @Test func exampleConfigurationParsesToTheDefaults() throws {
        let example = try ApusConfiguration.load(path: Self.root + "/dist/apus.conf")
        let defaults = ApusConfiguration.defaults()
        #expect(example.runDirectory == defaults.runDirectory)
        #expect(example.imap4be == defaults.imap4be)
        #expect(example.imap4 == defaults.imap4)
    }

    @Test(arguments: ServiceName.allCases)
    func systemdUnitsRunTheirService(service: ServiceName) {
        let unit = readFile(Self.root + "/dist/systemd/apus-\(service.rawValue).service")
        let lines = unit.split(separator: "\n").map(String.init)
        #expect(lines.contains("Type=notify"))
        #expect(lines.contains("ExecStart=/usr/local/bin/apus serve \(service.rawValue) --config /etc/apus/apus.conf"))
        #expect(lines.contains("ExecReload=/bin/kill -HUP $MAINPID"))
        #expect(lines.contains("RuntimeDirectory=apus") && lines.contains("RuntimeDirectoryPreserve=yes"))
        #expect(lines.contains("NoNewPrivileges=yes") && lines.contains("ProtectSystem=strict"))
        // The front end alone may bind ports below 1024.
        #expect(lines.contains("AmbientCapabilities=CAP_NET_BIND_SERVICE") == (service == .imap4))
    }
}
