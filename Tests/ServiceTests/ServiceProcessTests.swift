//===----------------------------------------------------------------------===//
// Apus Service tests: the seed's procedure with real processes (start, status, stop, restart,
// reload, kill -9, start failures), systemd readiness and `apus run`.
//===----------------------------------------------------------------------===//

import Glibc
import Reactor
import Service
import Testing
import TestSupport

/// Each row's service name and state from the status table.
func states(_ table: String) -> [String: String] {
    var result: [String: String] = [:]
    for line in table.split(separator: "\n").dropFirst() where !line.hasPrefix(" ") {
        let words = line.split(separator: " ")
        if words.count >= 2 { result[String(words[0])] = String(words[1]) }
    }
    return result
}

/// The seed's first steps: both services stopped (status exits 1); `apus start imap4be`; then
/// the back end reads Running and the front end Stopped (status still exits 1).
func startBackEndWithBothStopped(_ fixture: ServiceFixture, sourceLocation: SourceLocation = #_sourceLocation) {
    var result = fixture.apus("status")
    #expect(result.status == 1, "\(result)", sourceLocation: sourceLocation)
    #expect(states(result.output) == ["imap4": "Stopped", "imap4be": "Stopped"], sourceLocation: sourceLocation)

    result = fixture.apus("start", "imap4be")
    #expect(result.status == 0, "\(result)", sourceLocation: sourceLocation)
    #expect(result.output.hasPrefix("imap4be started (pid "), sourceLocation: sourceLocation)
    result = fixture.apus("status")
    #expect(result.status == 1, "one service is stopped: \(result)", sourceLocation: sourceLocation)
    #expect(states(result.output) == ["imap4": "Stopped", "imap4be": "Running"], sourceLocation: sourceLocation)
    #expect(fixture.apus("status", "imap4be").status == 0, sourceLocation: sourceLocation)
}

@Suite("Service processes")
struct ServiceProcessTests {
    @Test func seedProcedure() throws {
        let fixture = ServiceFixture()
        defer { fixture.cleanUp() }
        startBackEndWithBothStopped(fixture)

        var result = fixture.apus("start", "imap4")
        #expect(result.status == 0, "\(result)")
        result = fixture.apus("status")
        #expect(result.status == 0, "\(result)")
        #expect(states(result.output) == ["imap4": "Running", "imap4be": "Running"])

        // A session in IDLE on the front end gets BYE when the front end stops.
        let front = try #require(fixture.port(.imap4))
        let idle = try #require(LineClient(port: front))
        #expect(idle.readLine()?.hasPrefix("* OK ") == true)
        idle.send("a IDLE\r\n")
        #expect(idle.readLine() == "+ idling")
        #expect(fixture.status(.imap4)["sessions"]?.intValue == 1)
        result = fixture.apus("stop", "imap4")
        #expect(result.status == 0, "\(result)")
        #expect(result.output.hasPrefix("imap4 stopped (pid "))
        #expect(idle.readToEnd() == ["* BYE Apus is shutting down"])
        #expect(fixture.status(.imap4be)["state"]?.stringValue == "Running")

        // A command in flight on the back end finishes before its BYE.
        let back = try #require(fixture.port(.imap4be))
        let busy = try #require(LineClient(port: back))
        #expect(busy.readLine()?.hasPrefix("* OK ") == true)
        busy.send("b WAIT 700\r\n")
        #expect(busy.readLine() == "* waiting")
        result = fixture.apus("stop", "imap4be")
        #expect(result.status == 0, "\(result)")
        #expect(busy.readToEnd() == ["b OK waited", "* BYE Apus is shutting down"])

        result = fixture.apus("status")
        #expect(result.status == 1)
        #expect(states(result.output) == ["imap4": "Stopped", "imap4be": "Stopped"])
        #expect(!fileExists(fixture.pidFile(.imap4)) && !fileExists(fixture.pidFile(.imap4be)))
        #expect(!fileExists(fixture.runDirectory + "/imap4be.sock"))
        let log = readFile(fixture.logPath)
        #expect(log.contains("notice imap4be started (pid "))
        #expect(log.contains("notice imap4 stopped"))
        #expect(log.contains("info imap4 session=1 client=127.0.0.1:"))
    }

    @Test func startingARunningServiceAndStoppingAStoppedOneSaySo() throws {
        let fixture = ServiceFixture()
        defer { fixture.cleanUp() }
        #expect(fixture.apus("start", "imap4be").status == 0)
        let pid = try #require(fixture.status(.imap4be)["pid"]?.intValue)
        let again = fixture.apus("start", "imap4be")
        #expect(again.status == 0)
        #expect(again.output == "imap4be is already running (pid \(pid))\n")
        #expect(fixture.status(.imap4be)["pid"]?.intValue == pid)
        #expect(fixture.apus("stop", "imap4be").status == 0)
        let stopAgain = fixture.apus("stop", "imap4be")
        #expect(stopAgain.status == 0)
        #expect(stopAgain.output == "imap4be is not running\n")
    }

    @Test func startAndStopWithoutANameMeanBoth() throws {
        let fixture = ServiceFixture()
        defer { fixture.cleanUp() }
        let started = fixture.apus("start")
        #expect(started.status == 0, "\(started)")
        // The back end starts first, so the front end's pool can find it.
        #expect(
            started.output.split(separator: "\n").map { $0.split(separator: " ").first ?? "" } == ["imap4be", "imap4"])
        #expect(fixture.apus("status").status == 0)
        let stopped = fixture.apus("stop")
        #expect(stopped.status == 0)
        #expect(
            stopped.output.split(separator: "\n").map { $0.split(separator: " ").first ?? "" } == ["imap4", "imap4be"])
        #expect(states(fixture.apus("status").output) == ["imap4": "Stopped", "imap4be": "Stopped"])
    }

    @Test func killNineReadsStoppedAndStartWorksAgain() throws {
        let fixture = ServiceFixture()
        defer { fixture.cleanUp() }
        #expect(fixture.apus("start", "imap4be").status == 0)
        let pid = try #require(fixture.status(.imap4be)["pid"]?.intValue)
        kill(pid_t(pid), SIGKILL)
        #expect(PidFile.waitUntilFree(path: fixture.pidFile(.imap4be), timeout: .seconds(10)))
        #expect(fileExists(fixture.pidFile(.imap4be)), "kill -9 leaves the pid file behind")

        let result = fixture.apus("status", "imap4be")
        #expect(result.status == 1)
        #expect(states(result.output) == ["imap4be": "Stopped"])
        #expect(!fileExists(fixture.pidFile(.imap4be)), "status removes a stale pid file")
        #expect(!fileExists(fixture.runDirectory + "/imap4be.sock"))

        #expect(fixture.apus("start", "imap4be").status == 0)
        let document = fixture.status(.imap4be)
        #expect(document["state"]?.stringValue == "Running")
        #expect(document["pid"]?.intValue != pid)
    }

    @Test func statusShowsStoppingWhileCommandsFinish() throws {
        let fixture = ServiceFixture()
        defer { fixture.cleanUp() }
        #expect(fixture.apus("start", "imap4be").status == 0)
        let port = try #require(fixture.port(.imap4be))
        let busy = try #require(LineClient(port: port))
        let idle = try #require(LineClient(port: port))
        #expect(busy.readLine()?.hasPrefix("* OK ") == true)
        #expect(idle.readLine()?.hasPrefix("* OK ") == true)
        busy.send("w WAIT 3000\r\n")
        #expect(busy.readLine() == "* waiting")
        idle.send("i IDLE\r\n")
        #expect(idle.readLine() == "+ idling")

        mkdir(fixture.directory.path + "/stop", 0o755)
        let stopper = spawnApus(
            ["stop", "imap4be", "--config", fixture.configurationPath], in: fixture.directory.path + "/stop")
        var reaped = false
        defer {
            if !reaped {
                kill(stopper, SIGKILL)
                reap(stopper)
            }
        }
        // The IDLE session's BYE says the stop has begun; the WAIT is still in flight.
        #expect(idle.readToEnd() == ["* BYE Apus is shutting down"])
        let during = fixture.apus("status", "imap4be")
        #expect(during.status == 1)
        #expect(states(during.output) == ["imap4be": "Stopping"])
        #expect(LineClient(port: port) == nil, "a stopping service accepts nothing")
        #expect(busy.readToEnd() == ["w OK waited", "* BYE Apus is shutting down"])
        #expect(reap(stopper) == 0)
        reaped = true
        #expect(readFile(fixture.directory.path + "/stop/stdout").hasPrefix("imap4be stopped (pid "))
        #expect(states(fixture.apus("status", "imap4be").output) == ["imap4be": "Stopped"])
    }

    @Test func startGivesUpAfterStartTimeout() throws {
        // No service is ready within no time at all: start kills it and cleans up.
        let fixture = ServiceFixture(global: "start_timeout = 0s")
        defer { fixture.cleanUp() }
        let result = fixture.apus("start", "imap4be")
        #expect(result.status == 1)
        #expect(
            result.errors.contains("imap4be could not start: not accepting connections after 0s (start_timeout)"),
            "\(result)")
        #expect(!fileExists(fixture.pidFile(.imap4be)))
        #expect(!fileExists(fixture.runDirectory + "/imap4be.sock"))
    }

    @Test func restartGivesANewProcess() throws {
        // Also: a log directory that does not exist yet is made.
        let fixture = ServiceFixture(global: "log_file = logs/apus.log")
        defer { fixture.cleanUp() }
        #expect(fixture.apus("start", "imap4be").status == 0)
        let before = try #require(fixture.status(.imap4be)["pid"]?.intValue)
        let result = fixture.apus("restart", "imap4be")
        #expect(result.status == 0, "\(result)")
        #expect(result.output.hasPrefix("imap4be stopped (pid \(before))\nimap4be started (pid "))
        let after = fixture.status(.imap4be)
        #expect(after["state"]?.stringValue == "Running")
        #expect(after["pid"]?.intValue != before)
        #expect(readFile(fixture.directory.path + "/logs/apus.log").contains("notice imap4be stopped"))
    }

    // MARK: - Start failures

    /// Runs `apus start imap4be` and checks it fails naming `cause`, leaving no pid file.
    func expectStartFails(
        _ fixture: ServiceFixture, naming cause: String, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let result = fixture.apus("start", "imap4be")
        #expect(result.status == 1, "\(result)", sourceLocation: sourceLocation)
        #expect(result.errors.contains(cause), "\(result)", sourceLocation: sourceLocation)
        #expect(!fileExists(fixture.pidFile(.imap4be)), sourceLocation: sourceLocation)
        #expect(!fileExists(fixture.runDirectory + "/imap4be.sock"), sourceLocation: sourceLocation)
        #expect(fixture.apus("status", "imap4be").status == 1, sourceLocation: sourceLocation)
    }

    @Test func startWithThePortInUseFails() throws {
        // A listener without SO_REUSEPORT holds the port, as another server would.
        let holder = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(holder) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(holder, pointer, length) == 0 && listen(holder, 1) == 0
                    && getsockname(holder, pointer, &length) == 0
            }
        }
        try #require(bound)
        let port = UInt16(bigEndian: address.sin_port)
        let fixture = ServiceFixture(imap4be: "listen = 127.0.0.1:\(port)")
        defer { fixture.cleanUp() }
        expectStartFails(fixture, naming: "imap4be could not start: address 127.0.0.1:\(port) is in use")
        expectRunFails(fixture, naming: "apus: imap4be could not start: address 127.0.0.1:\(port) is in use")
    }

    /// Another apus on the port: its listeners use SO_REUSEPORT, which the kernel would let a
    /// second server of the same user share silently.
    @Test func startOnAPortAnotherApusServesFails() throws {
        let first = ServiceFixture()
        defer { first.cleanUp() }
        #expect(first.apus("start", "imap4be").status == 0)
        let port = try #require(first.port(.imap4be))
        let second = ServiceFixture(imap4be: "listen = 127.0.0.1:\(port)")
        defer { second.cleanUp() }
        expectStartFails(second, naming: "imap4be could not start: address 127.0.0.1:\(port) is in use")
        expectRunFails(second, naming: "apus: imap4be could not start: address 127.0.0.1:\(port) is in use")
        // The first one still serves its port alone.
        let client = try #require(LineClient(port: port))
        #expect(client.readLine()?.hasPrefix("* OK ") == true)
        #expect(first.status(.imap4be)["sessions"]?.intValue == 1)
    }

    /// Runs `apus run` and checks it exits non-zero saying `cause` on standard error.
    func expectRunFails(
        _ fixture: ServiceFixture, naming cause: String, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        do {
            let run = try ForegroundRun(fixture: fixture)
            defer { run.end() }
            #expect(run.wait() == 1, sourceLocation: sourceLocation)
            let errors = readFile(fixture.directory.path + "/run-output/stderr")
            #expect(errors.contains(cause), "\(errors)", sourceLocation: sourceLocation)
            #expect(!fileExists(fixture.pidFile(.imap4be)), sourceLocation: sourceLocation)
        } catch {
            Issue.record("apus run: \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func startWithABadCertificateFails() throws {
        let fixture = ServiceFixture()
        defer { fixture.cleanUp() }
        let garbage = fixture.directory.path + "/garbage.pem"
        writeFile(garbage, "this is not a certificate\n")
        fixture.writeConfiguration(
            imap4be: "tls_listen = 127.0.0.1:0\ncertificate = \(garbage)\nprivate_key = \(garbage)")
        expectStartFails(fixture, naming: "certificate \(garbage)")
        fixture.writeConfiguration(
            imap4be: "tls_listen = 127.0.0.1:0\ncertificate = \(garbage)\nprivate_key = missing.pem")
        expectStartFails(
            fixture, naming: "cannot read private key \(fixture.directory.path)/missing.pem: No such file or directory")
    }

    @Test func startWithABadConfigurationLineFails() throws {
        let fixture = ServiceFixture(imap4be: "idle_timeout = forever")
        defer { fixture.cleanUp() }
        let lines = readFile(fixture.configurationPath).split(separator: "\n", omittingEmptySubsequences: false)
        let line = try #require(lines.firstIndex { $0.hasPrefix("idle_timeout") }) + 1
        expectStartFails(
            fixture, naming: "\(fixture.configurationPath):\(line): idle_timeout: 'forever' is not a duration")
        // The daemon reports the same on its own, e.g. under systemd.
        let serve = fixture.apus("serve", "imap4be")
        #expect(serve.status == 1)
        #expect(serve.errors.contains("\(fixture.configurationPath):\(line): idle_timeout"))
        #expect(!fileExists(fixture.pidFile(.imap4be)))
    }

    // MARK: - Reload

    @Test func reloadSwapsTheCertificateWithoutDroppingSessions() throws {
        let fixture = ServiceFixture()
        defer { fixture.cleanUp() }
        let directory = fixture.directory.path
        try SelfSignedCertificate.make(certificatePath: directory + "/a.pem", keyPath: directory + "/a.key")
        try SelfSignedCertificate.make(certificatePath: directory + "/b.pem", keyPath: directory + "/b.key")
        fixture.writeConfiguration(imap4be: "tls_listen = 127.0.0.1:0\ncertificate = a.pem\nprivate_key = a.key")
        let started = fixture.apus("start", "imap4be")
        #expect(started.status == 0, "\(started)")
        #expect(started.output.contains("(TLS)"))
        let tlsPort = try #require(fixture.port(.imap4be, tls: true))
        let plainPort = try #require(fixture.port(.imap4be))
        let session = try #require(LineClient(port: plainPort))
        #expect(session.readLine()?.hasPrefix("* OK ") == true)

        let group = try EventLoopGroup(loopCount: 1, workerCount: 1, name: "svc-test")
        defer { group.shutdown(gracePeriod: .seconds(1)) }
        #expect(try tlsGreeting(port: tlsPort, caFile: directory + "/a.pem", group: group)?.hasPrefix("* OK ") == true)
        #expect(try tlsGreeting(port: tlsPort, caFile: directory + "/b.pem", group: group) == nil)

        fixture.writeConfiguration(imap4be: "tls_listen = 127.0.0.1:0\ncertificate = b.pem\nprivate_key = b.key")
        let reloaded = fixture.apus("reload", "imap4be")
        #expect(reloaded.status == 0, "\(reloaded)")
        #expect(reloaded.output.contains("imap4be reloaded: certificate reloaded: \(directory)/b.pem"))
        #expect(try tlsGreeting(port: tlsPort, caFile: directory + "/b.pem", group: group)?.hasPrefix("* OK ") == true)
        #expect(try tlsGreeting(port: tlsPort, caFile: directory + "/a.pem", group: group) == nil)

        // The session opened before the reload goes on.
        session.send("c NOOP\r\n")
        #expect(session.readLine() == "c OK done")
        #expect(fixture.status(.imap4be)["state"]?.stringValue == "Running")

        // A broken new certificate is refused; new connections keep the one in use.
        writeFile(directory + "/broken.pem", "not a certificate\n")
        fixture.writeConfiguration(imap4be: "tls_listen = 127.0.0.1:0\ncertificate = broken.pem\nprivate_key = b.key")
        let refused = fixture.apus("reload", "imap4be")
        #expect(refused.status == 0, "\(refused)")
        #expect(refused.output.contains("imap4be refused: certificate: certificate \(directory)/broken.pem"))
        #expect(refused.output.contains("new connections keep the old one"))
        #expect(try tlsGreeting(port: tlsPort, caFile: directory + "/b.pem", group: group)?.hasPrefix("* OK ") == true)
    }

    @Test func reloadSaysWhatItRefusedAndReopensTheLog() throws {
        let fixture = ServiceFixture()
        defer { fixture.cleanUp() }
        #expect(fixture.apus("start", "imap4be").status == 0)
        let pid = fixture.status(.imap4be)["pid"]?.intValue

        // Rotation: the log is moved away; reload starts a new file.
        #expect(rename(fixture.logPath, fixture.logPath + ".1") == 0)
        // The store's fsync policy is fixed while the store is open.
        fixture.writeConfiguration(imap4be: "listen = 127.0.0.1:1\nlog_level = warning", imap4: "[store]\nfsync = always")
        var result = fixture.apus("reload", "imap4be")
        #expect(result.status == 0, "\(result)")
        let lines = result.output.split(separator: "\n").map(String.init)
        #expect(lines.contains("imap4be refused: listen: takes effect after a restart"))
        #expect(lines.contains("imap4be refused: fsync: takes effect after a restart"))
        #expect(lines.contains("imap4be reloaded: log_level: warning"))
        #expect(lines.contains("imap4be reloaded: log file reopened: \(fixture.logPath)"))
        #expect(
            readFile(fixture.logPath).contains("warning imap4be reload: refused listen: takes effect after a restart"))
        #expect(readFile(fixture.logPath + ".1").contains("started"))

        let notRunning = fixture.apus("reload", "imap4")
        #expect(notRunning.status == 1)
        #expect(notRunning.errors == "apus: imap4 is not running\n")

        // A configuration with a mistake changes nothing and says where the mistake is.
        writeFile(fixture.configurationPath, readFile(fixture.configurationPath) + "\nbogus_key = 1\n")
        result = fixture.apus("reload", "imap4be")
        #expect(result.status == 1)
        #expect(result.errors.contains("\(fixture.configurationPath):"))
        #expect(result.errors.contains("unknown key 'bogus_key'"))
        #expect(PidFile.probe(path: fixture.pidFile(.imap4be)) == .running(pid: pid.map { pid_t($0) }))
    }

    /// logrotate's way: move the file away, then SIGHUP (not `apus reload`) to the daemon.
    @Test func sighupReopensTheLogFile() throws {
        let fixture = ServiceFixture()
        defer { fixture.cleanUp() }
        #expect(fixture.apus("start", "imap4be").status == 0)
        let pid = try #require(fixture.status(.imap4be)["pid"]?.intValue)
        #expect(rename(fixture.logPath, fixture.logPath + ".1") == 0)
        kill(pid_t(pid), SIGHUP)
        #expect(eventually { readFile(fixture.logPath).contains("reload: changed log file reopened: \(fixture.logPath)") })
        #expect(readFile(fixture.logPath + ".1").contains("started"))
        // Later lines go to the new file too.
        let port = try #require(fixture.port(.imap4be))
        let client = try #require(LineClient(port: port))
        #expect(client.readLine()?.hasPrefix("* OK ") == true)
        #expect(eventually { readFile(fixture.logPath).contains("session=1 client=127.0.0.1:") })
        #expect(!readFile(fixture.logPath + ".1").contains("session=1 client="))
    }

    // MARK: - Operations endpoint

    @Test func operationsEndpointServesMetricsAndStatus() throws {
        let fixture = ServiceFixture()
        defer { fixture.cleanUp() }
        #expect(fixture.apus("start", "imap4be").status == 0)
        let admin = try #require(fixture.status(.imap4be)["admin"]?.stringValue)
        #expect(admin.hasPrefix("127.0.0.1:"), "loopback by default")
        let adminPort = try #require(UInt16(admin.split(separator: ":").last ?? ""))
        let plainPort = try #require(fixture.port(.imap4be))
        let session = try #require(LineClient(port: plainPort))
        #expect(session.readLine()?.hasPrefix("* OK ") == true)

        let metrics = try #require(LineClient(port: adminPort)).httpGet("/metrics")
        #expect(metrics.hasPrefix("HTTP/1.1 200 OK"))
        #expect(metrics.contains("\napus_sessions 1\n") || metrics.contains("\napus_sessions 1"))
        #expect(metrics.contains("# TYPE apus_start_time_seconds gauge"))
        let status = try #require(LineClient(port: adminPort)).httpGet("/status")
        #expect(status.hasPrefix("HTTP/1.1 200 OK"))
        let body = try #require(status.split(separator: "\n").last.map(String.init))
        let document = try #require(JSONValue.parse(body))
        #expect(document["state"]?.stringValue == "Running")
        #expect(document["sessions"]?.intValue == 1)
        #expect(try #require(LineClient(port: adminPort)).httpGet("/nothing").hasPrefix("HTTP/1.1 404"))
        // A request head past the limit is answered 431 and closed, not buffered further.
        let flood = try #require(LineClient(port: adminPort))
        flood.send("GET /metrics HTTP/1.1\r\nX-Filler: " + String(repeating: "a", count: 9000))
        #expect(flood.readLine() == "HTTP/1.1 431 Request Header Fields Too Large")
    }

    // MARK: - systemd and foreground

    @Test func systemdHearsReadyAndStopping() throws {
        let fixture = ServiceFixture()
        defer { fixture.cleanUp() }
        let socketPath = fixture.directory.path + "/notify"
        let notify = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(notify) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in socketPath.utf8.enumerated() { raw[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(notify, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        try #require(bound == 0)
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(notify, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        func receive() -> String {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = buffer.withUnsafeMutableBytes { recv(notify, $0.baseAddress, $0.count, 0) }
            return count > 0 ? String(decoding: buffer[0..<count], as: UTF8.self) : ""
        }

        mkdir(fixture.directory.path + "/serve", 0o755)
        let pid = spawnApus(
            ["serve", "imap4be", "--config", fixture.configurationPath], in: fixture.directory.path + "/serve",
            environment: ["NOTIFY_SOCKET=\(socketPath)"])
        var reaped = false
        defer {
            if !reaped {
                kill(pid, SIGKILL)
                reap(pid)
            }
        }
        let ready = receive()
        #expect(ready.hasPrefix("READY=1\nMAINPID=\(pid)\nSTATUS=listening on 127.0.0.1:"))
        #expect(fixture.status(.imap4be)["state"]?.stringValue == "Running")

        // SIGHUP reloads; systemd hears RELOADING=1, then READY=1 once it is done.
        fixture.writeConfiguration(global: "log_level = warning")
        kill(pid, SIGHUP)
        #expect(receive().hasPrefix("RELOADING=1\nMONOTONIC_USEC="))
        #expect(receive() == "READY=1")
        #expect(
            readFile(fixture.directory.path + "/serve/stderr").contains(
                "notice imap4be reload: changed log_level: warning"))

        kill(pid, SIGTERM)
        #expect(receive() == "STOPPING=1")
        #expect(reap(pid) == 0)
        reaped = true
        #expect(!fileExists(fixture.pidFile(.imap4be)))
        // In the foreground (systemd's journal) the log goes to standard error.
        #expect(readFile(fixture.directory.path + "/serve/stderr").contains("started (pid \(pid))"))
        #expect(!fileExists(fixture.logPath))
    }

    /// The README's run command with the real services: a mail client (Python's imaplib) logs in
    /// through the front end with STARTTLS, appends, reads back and logs out; Ctrl-C ends it.
    @Test func runServesMailThroughTheFrontEndToTheBackEnd() throws {
        let fixture = ServiceFixture(
            imap4be: "tls_listen = 127.0.0.1:0",
            global: "certificate = tls/cert.pem\nprivate_key = tls/key.pem")
        defer { fixture.cleanUp() }
        let run = try ForegroundRun(fixture: fixture, environment: ["APUS_STAND_IN=0"])
        defer { run.end() }
        let printed = run.printed
        let passwordLine = try #require(printed.first { $0.contains("with the user 'demo', password '") })
        let password = String(passwordLine.split(separator: "'")[3])
        let frontLine = try #require(printed.first { $0.hasPrefix("imap4: listening on 127.0.0.1:") })
        let frontPort = try #require(UInt16(frontLine.dropFirst("imap4: listening on 127.0.0.1:".count).prefix { $0.isNumber }))
        let script = """
            import imaplib, ssl, sys
            context = ssl.create_default_context(cafile=sys.argv[3])
            context.check_hostname = False
            m = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
            assert "LOGINDISABLED" in m.capabilities, m.capabilities
            m.starttls(ssl_context=context)
            m.login("demo", sys.argv[2])
            typ, data = m.append("INBOX", r"(\\Flagged)", None, b"Subject: through the front end\\r\\n\\r\\nhello\\r\\n")
            assert typ == "OK" and b"APPENDUID" in data[0], data
            typ, data = m.select("INBOX")
            assert data == [b"1"], data
            typ, data = m.fetch("1", "(FLAGS BODY.PEEK[TEXT])")
            assert b"\\\\Flagged" in data[0][0] and data[0][1] == b"hello\\r\\n", data
            caps = m.capability()[1][0]
            assert b"UNAUTHENTICATE" not in caps and b"IDLE" in caps, caps
            m.logout()
            print("mail ok")
            """
        writeFile(fixture.directory.path + "/client.py", script)
        mkdir(fixture.directory.path + "/client-output", 0o755)
        let result = runCommand("/usr/bin/python3", [fixture.directory.path + "/client.py", String(frontPort), password,
                                                     fixture.directory.path + "/tls/cert.pem"],
                                in: fixture.directory.path + "/client-output")
        #expect(result.output.contains("mail ok"), "\(result)")
        // Both services in one process with the default back end: the hop ran over the back end's
        // local socket, as the back end saw it.
        let socket = fixture.runDirectory + "/imap4be-imap.sock"
        let log = readFile(fixture.directory.path + "/run-output/stderr")
        #expect(log.contains("login user=demo address=127.0.0.1 proxy=unix:\(socket)"), "\(log)")
        #expect(run.interrupt() == 0)
        #expect(!fileExists(socket))
    }

    @Test func runServesBothInOneProcessAndMakesFirstRunFiles() throws {
        let fixture = ServiceFixture(
            imap4be: "tls_listen = 127.0.0.1:0",
            global: "certificate = tls/cert.pem\nprivate_key = tls/key.pem")
        defer { fixture.cleanUp() }
        let run = try ForegroundRun(fixture: fixture)
        defer { run.end() }
        let printed = run.printed
        #expect(
            printed.contains {
                $0.hasPrefix("apus: made a self-signed certificate: \(fixture.directory.path)/tls/cert.pem")
            })
        #expect(
            printed.contains { $0.hasPrefix("apus: made \(fixture.directory.path)/data/passwd with the user 'demo'") })
        #expect(readFile(fixture.directory.path + "/data/passwd").hasPrefix("demo:{SHA512-CRYPT}"))
        let frontLine = try #require(printed.first { $0.hasPrefix("imap4: listening on 127.0.0.1:") })
        let portText = frontLine.dropFirst("imap4: listening on 127.0.0.1:".count).prefix { $0.isNumber }
        let frontPort = try #require(UInt16(portText))
        let client = try #require(LineClient(port: frontPort))
        #expect(client.readLine() == "* OK [CAPABILITY IMAP4rev1 IDLE] Apus imap4 stand-in ready")
        #expect(printed.contains { $0.hasPrefix("imap4be: listening on 127.0.0.1:") && $0.contains("(TLS)") })
        #expect(!fileExists(fixture.pidFile(.imap4be)), "apus run keeps no pid file")

        run.signal(SIGINT)
        #expect(client.readToEnd() == ["* BYE Apus is shutting down"])
        #expect(run.wait() == 0)
    }
}

extension String {
    /// This text with the lines starting with `prefix` replaced by `replacement`.
    func replacingLine(startingWith prefix: String, with replacement: String) -> String {
        split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.hasPrefix(prefix) ? Substring(replacement) : $0 }
            .joined(separator: "\n")
    }
}

/// Lines from a pipe, waiting at most 20 s for each.
final class PipeLineReader {
    let descriptor: Int32
    private var buffer: [UInt8] = []
    init(descriptor: Int32) { self.descriptor = descriptor }

    func readLine() -> String? {
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return line
            }
            var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 20_000) > 0 else { return nil }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count <= 0 { return nil }
            buffer += chunk[0..<count]
        }
    }
}

/// `apus run --config <fixture>` in the foreground, with the front end's back end left to its
/// default (the local one, on the port it really got); `printed` holds its start-up lines.
final class ForegroundRun {
    let pid: pid_t
    let printed: [String]
    private let output: Int32
    private var reaped = false

    init(fixture: ServiceFixture, environment: [String] = []) throws {
        var text = readFile(fixture.configurationPath)
        text = text.replacingLine(startingWith: "backends", with: "")
        writeFile(fixture.configurationPath, text)
        var pipeEnds: [Int32] = [0, 0]
        try #require(pipe(&pipeEnds) == 0)
        mkdir(fixture.directory.path + "/run-output", 0o755)
        pid = spawnApus(["run", "--config", fixture.configurationPath], in: fixture.directory.path + "/run-output",
                        environment: environment, standardOutput: pipeEnds[1])
        close(pipeEnds[1])
        output = pipeEnds[0]
        let reader = PipeLineReader(descriptor: output)
        var lines: [String] = []
        while let line = reader.readLine() {
            lines.append(line)
            if line.hasPrefix("apus: Ctrl-C") { break }
        }
        printed = lines
    }

    func signal(_ number: Int32) { kill(pid, number) }

    /// Waits for the process to end; its exit status.
    func wait() -> Int32 {
        reaped = true
        return reap(pid)
    }

    /// Ctrl-C, then its exit status.
    func interrupt() -> Int32 {
        signal(SIGINT)
        return wait()
    }

    /// Kills it if no test step ended it (on every path out of a test).
    func end() {
        close(output)
        if !reaped {
            kill(pid, SIGKILL)
            reap(pid)
        }
    }
}
