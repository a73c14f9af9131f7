//===----------------------------------------------------------------------===//
// Apus Service tests: `-o section.key=value`, `apus config`'s output, the first run's choices.
//===----------------------------------------------------------------------===//

import Reactor
import Telemetry
import TestSupport
import Testing

@testable import Service

@Suite("Configuration overrides and apus config")
struct ConfigurationOverrideTests {
    static let path = "/etc/apus/apus.conf"

    func load(_ text: String, _ options: [String], base: String = "/home/admin") throws(ConfigurationError)
        -> ApusConfiguration
    {
        var overrides: [ConfigurationOverride] = []
        for option in options { overrides.append(try ConfigurationOverride.parse(option, baseDirectory: base)) }
        return try ApusConfiguration(
            file: try ConfigurationFile.parse(Array(text.utf8), path: Self.path), overrides: overrides)
    }

    @Test func anOverrideReplacesTheFilesKeyAndMayAddASection() throws {
        let configuration = try load(
            "log_level = warning\n[imap4be]\nlisten = 127.0.0.1:1143\n",
            ["imap4be.listen=127.0.0.1:2143", "imap4.pool_max = 9", "log_level=debug", "imap4.pool_max=10"])
        #expect(configuration.imap4be.listen == [SocketAddress(host: "127.0.0.1", port: 2143)])
        #expect(configuration.imap4.poolMax == 10, "the later -o for a key wins")
        #expect(configuration.imap4be.logLevel == .debug && configuration.imap4.logLevel == .debug)
        // The front end's default back end follows the overridden listener, as it follows the file's.
        #expect(configuration.imap4.backends.map(\.address.port) == [2143])
    }

    @Test func aServiceSectionInTheFileStillBeatsAGlobalOverride() throws {
        let configuration = try load("[imap4]\nlog_level = error\n", ["global.log_level=debug"])
        #expect(configuration.imap4.logLevel == .error)
        #expect(configuration.imap4be.logLevel == .debug)
    }

    @Test func relativePathsInAnOverrideAreRelativeToWhereTheCommandRan() throws {
        let configuration = try load("data_dir = mail\n", ["imap4be.certificate=tls/c.pem", "run_dir=run"])
        #expect(configuration.imap4be.certificate == "/home/admin/tls/c.pem")
        #expect(configuration.runDirectory == "/home/admin/run")
        #expect(configuration.imap4be.dataDirectory == "/etc/apus/mail", "the file's own paths follow the file")
    }

    @Test func overridesApplyOverTheDefaultsWhenThereIsNoFile() throws {
        let override = try ConfigurationOverride.parse("imap4.listen=", baseDirectory: "/")
        let configuration = try ApusConfiguration(file: nil, overrides: [override])
        #expect(configuration.path == nil)
        #expect(configuration.imap4.listen.isEmpty)
        #expect(configuration.overrides == [override])
    }

    @Test(arguments: [
        ("imap4be.lisen=127.0.0.1:1", "-o imap4be.lisen=127.0.0.1:1", "unknown key 'lisen' in [imap4be]"),
        ("imap4be.listen=nowhere", "-o imap4be.listen=nowhere", "listen: 'nowhere' has no port"),
        ("imap5.listen=127.0.0.1:1", "-o imap5.listen=127.0.0.1:1", "unknown section [imap5]"),
        ("listen=127.0.0.1:1", "-o listen=127.0.0.1:1", "'listen' does not belong in [global]"),
        ("imap4be.idle_timeout=forever", "-o imap4be.idle_timeout=forever", "'forever' is not a duration"),
        ("imap4.routes=a@b=none", "-o imap4.routes=a@b=none", "no back end named 'none'"),
    ])
    func aBadOverrideIsNamedLikeAFileLine(option: String, named: String, message: String) {
        #expect {
            _ = try load("[imap4be]\nlisten = 127.0.0.1:1143\n", [option])
        } throws: { error in
            guard let error = error as? ConfigurationError else { return false }
            return error.file == named && error.line == 0 && error.message.contains(message)
                && error.description.hasPrefix(named + ": ")
        }
    }

    @Test(arguments: [
        ("imap4be.listen", "expected section.key=value"), ("a.b.c=1", "expected section.key=value"),
        ("Imap4.listen=1", "bad section name 'Imap4'"), ("imap4.=1", "bad key name ''"), ("=1", "bad key name ''"),
    ])
    func aMalformedOptionIsRefusedBeforeAnyFileIsRead(option: String, message: String) {
        #expect {
            _ = try ConfigurationOverride.parse(option, baseDirectory: "/")
        } throws: { error in
            guard let error = error as? ConfigurationError else { return false }
            return error.description == "-o \(option): \(message)"
        }
    }

    /// `apus config` output, read back as a file, is the same configuration.
    @Test(arguments: [
        "",
        """
        run_dir = /srv/run
        idle_timeout = 45m
        failed_login_delay = 1500ms
        [imap4be]
        listen = [::1]:1143, 127.0.0.1:2143
        tls_listen =
        admin_listen = off
        trusted_proxies = 10.0.0.0/8, ::1
        users_file = /srv/users
        log_level = debug
        [imap4]
        backends = mb1=10.0.0.11:1143, mb2=10.0.0.12:1993/tls/noverify, mb3=[::1]:1993/tls
        routes = alice@example.com=mb1, @example.org=mb2
        routes_file = /srv/routes
        backend_ca_file = /srv/ca.pem
        source_addresses = 127.0.0.2, 127.0.0.3
        listen_reuse_port = yes
        pool_idle_timeout = 2h
        login_disabled_on_plain = no
        [store]
        fsync = always
        """,
    ])
    func theEffectiveConfigurationLoadsBackToItself(text: String) throws {
        let original = try load(text, ["imap4.pool_max=7"])
        let printed = ConfigurationText.render(original)
        let reread = try ApusConfiguration(file: try ConfigurationFile.parse(Array(printed.utf8), path: "/x/p.conf"))
        #expect(reread.runDirectory == original.runDirectory)
        #expect(reread.imap4be == original.imap4be)
        #expect(reread.imap4 == original.imap4)
        #expect(printed.contains("\n[imap4]\n") && printed.contains("pool_max = 7\n"))
    }

    @Test func everyKeyIsPrinted() throws {
        let printed = ConfigurationText.render(ApusConfiguration.defaults())
        for key in ConfigurationKey.all {
            #expect(ConfigurationText.renderers[key.name] != nil || key.name == "run_dir", "\(key.name)")
            #expect(printed.contains("\n\(key.name) =") || printed.contains("\n# \(key.name) ="), "\(key.name)")
        }
    }

    @Test(arguments: [
        (Duration.seconds(30), "30s"), (.milliseconds(250), "250ms"), (.seconds(1800), "30m"), (.seconds(7200), "2h"),
        (.seconds(86400), "1d"), (.zero, "0s"), (.milliseconds(1500), "1500ms"), (.seconds(90), "90s"),
    ])
    func durationsAreWrittenAsTheyAreRead(duration: Duration, text: String) throws {
        #expect(ConfigurationValue.text(duration) == text)
        #expect(try ConfigurationValue.duration(text) == duration)
    }
}

@Suite("First run")
struct FirstRunTests {
    @Test func anOrdinaryUserGetsPortsAbove1024AndRootTheStandardOnes() {
        let user = FirstRun.ports(mayBindPrivilegedPorts: false)
        #expect(user == .init(frontEndPlain: 10143, frontEndTLS: 10993, backEndPlain: 11143, backEndTLS: 11993))
        let root = FirstRun.ports(mayBindPrivilegedPorts: true)
        #expect(root == .init(frontEndPlain: 143, frontEndTLS: 993, backEndPlain: 1143, backEndTLS: 1993))
    }

    @Test(arguments: [false, true])
    func theWrittenFileLoadsWithThosePortsAndEverythingBesideIt(privileged: Bool) throws {
        let ports = FirstRun.ports(mayBindPrivilegedPorts: privileged)
        let text = FirstRun.configurationText(ports: ports)
        let configuration = try ApusConfiguration(
            file: try ConfigurationFile.parse(Array(text.utf8), path: "/home/u/apus-data/apus.conf"))
        #expect(configuration.imap4.listen == [SocketAddress(host: "0.0.0.0", port: ports.frontEndPlain)])
        #expect(configuration.imap4.tlsListen == [SocketAddress(host: "0.0.0.0", port: ports.frontEndTLS)])
        #expect(configuration.imap4be.listen == [SocketAddress(host: "127.0.0.1", port: ports.backEndPlain)])
        #expect(configuration.imap4be.tlsListen == [SocketAddress(host: "127.0.0.1", port: ports.backEndTLS)])
        #expect(configuration.imap4.backends.map(\.address.port) == [ports.backEndPlain])
        #expect(configuration.runDirectory == "/home/u/apus-data/run")
        for settings in [configuration.imap4, configuration.imap4be] {
            #expect(settings.dataDirectory == "/home/u/apus-data/mail")
            #expect(settings.usersFile == "/home/u/apus-data/passwd")
            #expect(settings.certificate == "/home/u/apus-data/tls/cert.pem")
            #expect(settings.logFile == "/home/u/apus-data/apus.log")
        }
    }
}

@Suite("Shipped documentation")
struct ShippedDocumentationTests {
    @Test func theSampleFileDocumentsEveryKey() {
        let lines = readFile(ShippedFilesTests.root + "/dist/apus.conf").split(separator: "\n")
        for key in ConfigurationKey.all {
            #expect(lines.contains { $0.hasPrefix("\(key.name) =") || $0.hasPrefix("# \(key.name) =") }, "\(key.name)")
        }
    }

    @Test func theReadmeShowsTheRunCommandAndTheFirstUser() {
        let lines = readFile(ShippedFilesTests.root + "/README.md").split(separator: "\n")
        #expect(lines.contains("swift run -c release apus run"))
        #expect(lines.contains { $0.hasPrefix("swift run -c release apus user add ") })
    }
}
