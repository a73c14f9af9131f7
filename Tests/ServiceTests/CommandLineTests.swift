//===----------------------------------------------------------------------===//
// Apus Service tests: `-o`, `apus config`, `apus user`, the first run and start-up errors, each
// with the real `apus` binary.
//===----------------------------------------------------------------------===//

import Glibc
import Reactor
import Service
import Testing
import TestSupport

@Suite("apus command line")
struct CommandLineTests {
    /// `apus run` makes a missing certificate: keep it in the test's directory.
    static let localCertificate = "certificate = tls/cert.pem\nprivate_key = tls/key.pem"

    // MARK: - -o and apus config

    @Test func configPrintsAFileThatLoadsBackAndHonoursOverrides() throws {
        let fixture = ServiceFixture(imap4be: "max_connections_per_user = 7")
        defer { fixture.cleanUp() }
        let result = fixture.apus("config", "-o", "imap4be.listen=127.0.0.1:2143", "-o", "imap4.pool_max=9",
                                  "-o", "store.fsync=always")
        #expect(result.status == 0, "\(result)")
        let lines = result.output.split(separator: "\n").map(String.init)
        let imap4be = try #require(lines.firstIndex(of: "[imap4be]"))
        let imap4 = try #require(lines.firstIndex(of: "[imap4]"))
        let store = try #require(lines.firstIndex(of: "[store]"))
        #expect(lines[imap4be..<imap4].contains("listen = 127.0.0.1:2143"))
        #expect(lines[imap4be..<imap4].contains("max_connections_per_user = 7"))
        #expect(lines[imap4..<store].contains("pool_max = 9"))
        #expect(lines[store...].contains("fsync = always"))

        // The output is a configuration file: printed again from it, it is the same text
        // (but for the first line, which names the file).
        let copy = fixture.directory.path + "/printed.conf"
        writeFile(copy, result.output)
        let again = fixture.apus(["config"], configuration: copy)
        #expect(again.status == 0, "\(again)")
        #expect(again.output.split(separator: "\n").dropFirst() == result.output.split(separator: "\n").dropFirst())
    }

    @Test func aBadOverrideStopsEveryCommandAndNamesTheOption() throws {
        let fixture = ServiceFixture()
        defer { fixture.cleanUp() }
        for command in ["config", "start", "status", "run", "serve imap4be"] {
            let arguments = command.split(separator: " ").map(String.init) + ["-o", "imap4be.idle_timeout=forever"]
            let result = fixture.apus(arguments)
            #expect(result.status != 0, "\(command): \(result)")
            #expect(
                result.errors.contains("-o imap4be.idle_timeout=forever: idle_timeout: 'forever' is not a duration"),
                "\(command): \(result)")
        }
        #expect(!fileExists(fixture.pidFile(.imap4be)))
        let unknown = fixture.apus("config", "-o", "imap4.lisen=127.0.0.1:1")
        #expect(unknown.status != 0 && unknown.errors.contains("-o imap4.lisen=127.0.0.1:1: unknown key 'lisen'"))
    }

    @Test func aMalformedLineIsNamedByFileAndLine() throws {
        let fixture = ServiceFixture()
        defer { fixture.cleanUp() }
        writeFile(fixture.configurationPath, readFile(fixture.configurationPath) + "this line has no equals sign\n")
        let line = readFile(fixture.configurationPath).split(separator: "\n", omittingEmptySubsequences: false).count - 1
        for command in ["config", "run"] {
            let result = fixture.apus(command)
            #expect(result.status == 1, "\(result)")
            #expect(
                result.errors.contains("\(fixture.configurationPath):\(line): expected 'key = value' or '[section]'"),
                "\(result)")
        }
    }

    /// A daemon `apus start` runs reads the file itself: it gets the same `-o` options, and keeps
    /// them across a reload.
    @Test func startPassesOverridesToTheDaemonAndReloadKeepsThem() throws {
        let fixture = ServiceFixture()
        defer { fixture.cleanUp() }
        let overriddenLog = fixture.directory.path + "/overridden.log"
        let started = fixture.apus("start", "imap4be", "-o", "log_file=\(overriddenLog)")
        #expect(started.status == 0, "\(started)")
        #expect(readFile(overriddenLog).contains("started (pid"))
        let reloaded = fixture.apus("reload", "imap4be")
        #expect(reloaded.status == 0, "\(reloaded)")
        // Re-read with the same -o, the log file is still the overridden one (not a change to restart for).
        #expect(reloaded.output.contains("log file reopened: \(overriddenLog)"), "\(reloaded)")
        #expect(!reloaded.output.contains("log_file"), "\(reloaded)")
        #expect(!fileExists(fixture.logPath), "the log never moved to the file's log_file")
        #expect(fixture.apus("stop", "imap4be").status == 0)
        #expect(readFile(overriddenLog).contains("stopped"))
    }

    // MARK: - apus user

    /// Users managed while `apus run` serves: the back end sees each change at the next login.
    @Test func usersAddedChangedAndRemovedTakeEffectOnARunningServer() throws {
        let fixture = ServiceFixture(
            imap4be: "login_disabled_on_plain = no\nfailed_login_delay = 1ms", global: CommandLineTests.localCertificate)
        defer { fixture.cleanUp() }
        let run = try ForegroundRun(fixture: fixture, environment: ["APUS_STAND_IN=0"])
        defer { run.end() }
        let backLine = try #require(run.printed.first { $0.hasPrefix("imap4be: listening on 127.0.0.1:") })
        let port = try #require(UInt16(backLine.dropFirst("imap4be: listening on 127.0.0.1:".count).prefix(while: \.isNumber)))
        func logIn(_ user: String, _ password: String) -> String? {
            guard let client = LineClient(port: port), client.readLine()?.hasPrefix("* OK") == true else { return nil }
            client.send("a LOGIN \(user) \(password)\r\n")
            while let line = client.readLine() {
                if line.hasPrefix("a ") { return String(line.dropFirst(2).prefix { $0 != " " }) }
            }
            return nil
        }

        let added = fixture.apus(input: "first-secret\n", "user", "add", "alice", "--password-stdin")
        #expect(added.status == 0, "\(added)")
        #expect(logIn("alice", "first-secret") == "OK")
        #expect(fixture.apus("user", "list").output.split(separator: "\n").contains("alice"))

        let changed = fixture.apus(input: "second-secret\r\n", "user", "passwd", "alice", "--password-stdin")
        #expect(changed.status == 0, "\(changed)")
        #expect(logIn("alice", "first-secret") == "NO", "the old password no longer works (nor its cached check)")
        #expect(logIn("alice", "second-secret") == "OK")

        #expect(fixture.apus("user", "del", "alice").status == 0)
        #expect(logIn("alice", "second-secret") == "NO")
        #expect(!fixture.apus("user", "list").output.split(separator: "\n").contains("alice"))
        #expect(run.interrupt() == 0)
    }

    @Test(arguments: [
        (["user", "add", "alice", "--password-stdin"], "x\n", "'alice': the user exists already"),
        (["user", "passwd", "nobody-here", "--password-stdin"], "x\n", "'nobody-here': no such user"),
        (["user", "del", "nobody-here"], "", "'nobody-here': no such user"),
        (["user", "add", "../../etc/x", "--password-stdin"], "x\n", "'../../etc/x': invalid user name"),
        (["user", "add", ".hidden", "--password-stdin"], "x\n", "invalid user name"),
        (["user", "add", "bob", "--password-stdin"], "\n", "the password is empty"),
        (["user", "add", "bob", "--password-stdin"], "", "the password is empty"),
        (["user", "add", "bob"], "", "not a terminal: pipe the password with --password-stdin"),
        (["user", "add", "bob", "--password-stdin"], String(repeating: "p", count: 1025) + "\n", "longer than 1024"),
    ])
    func userMistakesAreRefusedAndChangeNothing(arguments: [String], input: String, message: String) throws {
        let fixture = ServiceFixture()
        defer { fixture.cleanUp() }
        #expect(fixture.apus(input: "a-secret\n", "user", "add", "alice", "--password-stdin").status == 0)
        let before = readFile(fixture.directory.path + "/data/passwd")
        let result = fixture.apus(arguments, input: input)
        #expect(result.status == 1, "\(result)")
        #expect(result.errors.contains(message), "\(result)")
        #expect(readFile(fixture.directory.path + "/data/passwd") == before)
        #expect(!fileExists(fixture.directory.path + "/etc/x") && !fileExists(fixture.directory.path + "/data/etc"))
    }

    /// Without any configuration `apus user` says where it looked instead of inventing a users file.
    @Test func userCommandsWithoutAnyConfigurationSayWhatToDo() throws {
        try #require(!fileExists("/etc/apus/apus.conf"), "this test needs a machine without /etc/apus/apus.conf")
        let empty = TemporaryDirectory(prefix: "apus-service")
        let output = TemporaryDirectory(prefix: "apus-service")
        defer {
            empty.remove()
            output.remove()
        }
        let result = runCommand("/usr/bin/env", ["--chdir=\(empty.path)", apusExecutable, "user", "list"], in: output.path)
        #expect(result.status == 1, "\(result)")
        #expect(result.errors.contains("no configuration found"), "\(result)")
        #expect(result.errors.contains("run `apus run` here once, or give --config FILE"), "\(result)")
        let config = runCommand("/usr/bin/env", ["--chdir=\(empty.path)", apusExecutable, "config"], in: output.path)
        #expect(config.status == 0 && config.output.hasPrefix("# The effective Apus configuration (built-in defaults)"))
        #expect(!fileExists(empty.path + "/apus-data"), "only apus run makes the first-run files")
    }

    @Test func theUsersFileHoldsTheStrongestHash() throws {
        let fixture = ServiceFixture()
        defer { fixture.cleanUp() }
        #expect(fixture.apus(input: "s3cret\n", "user", "add", "carol", "--password-stdin").status == 0)
        let line = readFile(fixture.directory.path + "/data/passwd")
        #expect(line.hasPrefix("carol:{SHA512-CRYPT}$6$") && !line.contains("s3cret"))
    }

    /// The prompt on a terminal: no echo, typed twice; Python's pty module plays the terminal.
    @Test func addPromptsTwiceWithoutEchoOnATerminal() throws {
        let fixture = ServiceFixture()
        defer { fixture.cleanUp() }
        let script = """
            import os, pty, sys
            pid, fd = pty.fork()
            if pid == 0:
                os.execv(sys.argv[1], sys.argv[1:])
            seen = b""
            def until(text):
                global seen
                while text not in seen:
                    chunk = os.read(fd, 1024)
                    if not chunk: raise SystemExit("ended before " + repr(text) + ": " + repr(seen))
                    seen += chunk
            until(b"Password for dave: ")
            os.write(fd, b"typed-secret\\r")
            until(b"Retype the password: ")
            os.write(fd, b"typed-secret\\r")
            until(b"added user 'dave'")
            _, status = os.waitpid(pid, 0)
            assert b"typed-secret" not in seen, seen
            print("prompt ok", os.waitstatus_to_exitcode(status))
            """
        writeFile(fixture.directory.path + "/terminal_prompt.py", script)
        mkdir(fixture.directory.path + "/pty-output", 0o755)
        let result = runCommand(
            "/usr/bin/python3",
            [fixture.directory.path + "/terminal_prompt.py", apusExecutable, "user", "add", "dave", "--config", fixture.configurationPath],
            in: fixture.directory.path + "/pty-output")
        #expect(result.output.contains("prompt ok 0"), "\(result)")
        let check = fixture.apus("user", "list")
        #expect(check.output.split(separator: "\n").contains("dave"), "\(check)")
    }

    // MARK: - First run and start-up errors

    /// An ordinary user's first `apus run` with no configuration anywhere: it writes
    /// ./apus-data/apus.conf with ports above 1024, says so, and later commands read that file.
    @Test func firstRunAsAnOrdinaryUserWritesAConfigurationWithUnprivilegedPorts() throws {
        try #require(!fileExists("/etc/apus/apus.conf"), "this test needs a machine without /etc/apus/apus.conf")
        let home = TemporaryDirectory(prefix: "apus-service")
        defer { home.remove() }
        #expect(chown(home.path, 65534, 65534) == 0)
        // The fixed ports may be taken on this machine (a Dovecot peer uses 10143): listen on free ones.
        let ephemeral = ["imap4.listen", "imap4.tls_listen", "imap4be.listen", "imap4be.tls_listen"].flatMap {
            ["-o", "\($0)=127.0.0.1:0"]
        }
        let run = try AsNobody(in: home.path, ["run"] + ephemeral)
        defer { run.end() }
        let printed = run.readUntil { $0.hasPrefix("apus: Ctrl-C") }
        let written = home.path + "/apus-data/apus.conf"
        #expect(printed.contains("apus: first run: wrote \(written); later runs from this directory read it"))
        #expect(printed.contains { $0.hasPrefix("apus: not running as root") && $0.contains("10143 and 10993") })
        #expect(printed.contains("apus: add a user (another terminal, same directory): apus user add NAME"))
        let text = readFile(written)
        #expect(text.contains("listen = 0.0.0.0:10143\ntls_listen = 0.0.0.0:10993"))
        #expect(text.contains("listen = 127.0.0.1:11143\ntls_listen = 127.0.0.1:11993"))
        #expect(fileExists(home.path + "/apus-data/tls/cert.pem") && fileExists(home.path + "/apus-data/passwd"))
        #expect(run.interrupt() == 0)

        // The next command in that directory, with no --config, reads the written file.
        let config = try AsNobody(in: home.path, ["config"])
        defer { config.end() }
        let shown = config.readUntil { _ in false }
        #expect(config.wait() == 0)
        #expect(shown.first == "# The effective Apus configuration (from \(written)): every key with its value.")
        #expect(shown.contains("listen = 0.0.0.0:10143"))
    }

    @Test func aPortBelow1024IsRefusedToAnOrdinaryUserInWords() throws {
        let fixture = ServiceFixture(imap4be: "listen = 127.0.0.1:143", global: CommandLineTests.localCertificate)
        defer { fixture.cleanUp() }
        #expect(chown(fixture.directory.path, 65534, 65534) == 0)
        let run = try AsNobody(in: fixture.directory.path, ["run", "imap4be", "--config", fixture.configurationPath])
        defer { run.end() }
        #expect(run.wait() == 1)
        #expect(
            run.errors().contains(
                "127.0.0.1:143: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"),
            "\(run.errors())")
    }

    /// The default local socket lives in the run directory (default /run/apus): an ordinary user
    /// who cannot make it still runs, without the socket, warned.
    @Test func anUnmakeableRunDirectoryDropsTheDefaultLocalSocketWithAWarning() throws {
        let fixture = ServiceFixture(global: "run_dir = locked/run\n" + CommandLineTests.localCertificate)
        defer { fixture.cleanUp() }
        #expect(chown(fixture.directory.path, 65534, 65534) == 0)
        mkdir(fixture.directory.path + "/locked", 0o755)  // root's: nobody cannot make run/ in it
        let run = try AsNobody(in: fixture.directory.path, ["run", "imap4be", "--config", fixture.configurationPath])
        defer { run.end() }
        let printed = run.readUntil { $0.hasPrefix("apus: Ctrl-C") }
        #expect(printed.last?.hasPrefix("apus: Ctrl-C") == true, "\(printed) \(run.errors())")
        let socket = fixture.directory.path + "/locked/run/imap4be-imap.sock"
        #expect(run.errors().contains("apus: warning: running without the back end's local socket \(socket): Permission denied"),
                "\(run.errors())")
        #expect(run.interrupt() == 0)
    }

    /// A local socket set explicitly is wanted: one that cannot be made stops the start, in words.
    @Test func anExplicitLocalSocketThatCannotBeMadeFailsTheStart() throws {
        let fixture = ServiceFixture(imap4be: "local_socket = locked/sub/imap.sock", global: CommandLineTests.localCertificate)
        defer { fixture.cleanUp() }
        #expect(chown(fixture.directory.path, 65534, 65534) == 0)
        mkdir(fixture.directory.path + "/locked", 0o755)
        let run = try AsNobody(in: fixture.directory.path, ["run", "imap4be", "--config", fixture.configurationPath])
        defer { run.end() }
        #expect(run.wait() == 1)
        let path = fixture.directory.path + "/locked/sub/imap.sock"
        #expect(run.errors().contains("apus: local_socket \(path): Permission denied (set local_socket = off to run without it)"),
                "\(run.errors())")
    }

    @Test func anUnreadableCertificateIsNamed() throws {
        let fixture = ServiceFixture(
            imap4be: "tls_listen = 127.0.0.1:0\ncertificate = secret/cert.pem\nprivate_key = secret/key.pem")
        defer { fixture.cleanUp() }
        #expect(chown(fixture.directory.path, 65534, 65534) == 0)
        mkdir(fixture.directory.path + "/secret", 0o755)
        writeFile(fixture.directory.path + "/secret/cert.pem", "not readable by nobody\n")
        writeFile(fixture.directory.path + "/secret/key.pem", "not readable by nobody\n")
        chmod(fixture.directory.path + "/secret/cert.pem", 0o600)
        chmod(fixture.directory.path + "/secret/key.pem", 0o600)
        let run = try AsNobody(in: fixture.directory.path, ["run", "imap4be", "--config", fixture.configurationPath])
        defer { run.end() }
        #expect(run.wait() == 1)
        #expect(run.errors().contains("\(fixture.directory.path)/secret/cert.pem"), "\(run.errors())")
        #expect(run.errors().contains("Permission denied"), "\(run.errors())")
    }

    @Test func aDataDirectoryInUseByARunningProcessIsRefused() throws {
        let fixture = ServiceFixture(global: CommandLineTests.localCertificate)
        defer { fixture.cleanUp() }
        let started = fixture.apus(environment: ["APUS_STAND_IN=0"], "start", "imap4be")
        #expect(started.status == 0, "\(started)")
        let pid = try #require(Int32(readFile(fixture.pidFile(.imap4be)).prefix { $0.isNumber }))
        // A second back end on the same data directory, in the foreground (no pid file to find).
        let second = fixture.apus(environment: ["APUS_STAND_IN=0"], "run", "imap4be")
        #expect(second.status == 1, "\(second)")
        #expect(second.errors.contains("data directory is in use by process \(pid)"), "\(second)")
        #expect(fixture.apus("stop", "imap4be").status == 0)
    }
}

extension ServiceFixture {
    /// `apus <arguments> --config <file>` with `input` as its standard input.
    func apus(input: String = "", environment: [String] = [], _ arguments: String...) -> CommandResult {
        apus(arguments, input: input, environment: environment)
    }

    /// `apus <arguments> --config <configuration, else the fixture's file>` with `input` as its standard input.
    func apus(_ arguments: [String], input: String = "", environment: [String] = [], configuration: String? = nil)
        -> CommandResult
    {
        let outputDirectory = TemporaryDirectory(prefix: "apus-service")
        defer { outputDirectory.remove() }
        writeFile(outputDirectory.path + "/stdin", input)
        let pid = spawnApus(
            arguments + ["--config", configuration ?? configurationPath], in: outputDirectory.path,
            environment: environment,
            standardInput: outputDirectory.path + "/stdin")
        let status = reap(pid)
        return CommandResult(
            status: status, output: readFile(outputDirectory.path + "/stdout"),
            errors: readFile(outputDirectory.path + "/stderr"))
    }
}

/// `apus` run as the user nobody (setpriv) in `directory`, with no configuration in its
/// environment; its standard output comes through a pipe, its standard error goes to a file.
final class AsNobody {
    /// A copy of the built `apus` that nobody may run: the checkout (and so `.build`) may sit
    /// below a directory only its owner can enter, such as /root on a CI machine.
    static let executable: String = {
        let directory = TemporaryDirectory(prefix: "apus-nobody")
        chmod(directory.path, 0o755)
        let copy = directory.path + "/apus"
        let source = open(apusExecutable, O_RDONLY | O_CLOEXEC)
        let target = open(copy, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o755)
        guard source >= 0, target >= 0 else { return apusExecutable }
        defer { close(source); close(target) }
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
            if count <= 0 { break }
            guard chunk.withUnsafeBytes({ write(target, $0.baseAddress, count) }) == count else { return apusExecutable }
        }
        fchmod(target, 0o755)
        copyDirectory = directory
        // Removed when the test process exits (a static has no deinit to run).
        atexit { AsNobody.copyDirectory?.remove() }
        return copy
    }()
    nonisolated(unsafe) private static var copyDirectory: TemporaryDirectory?

    let pid: pid_t
    private let reader: PipeLineReader
    private let errorsPath: String
    private let outputDirectory = TemporaryDirectory(prefix: "apus-service")
    private var reaped = false

    init(in directory: String, _ arguments: [String]) throws {
        var pipeEnds: [Int32] = [0, 0]
        try #require(pipe(&pipeEnds) == 0)
        chmod(outputDirectory.path, 0o755)
        errorsPath = outputDirectory.path + "/stderr"
        pid = spawnProgram(
            "/usr/bin/setpriv", name: "setpriv",
            ["--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/env", "--chdir=\(directory)",
             Self.executable] + arguments,
            in: outputDirectory.path, environment: ["PATH=/usr/bin:/bin", "APUS_STAND_IN=0"],
            standardOutput: pipeEnds[1])
        close(pipeEnds[1])
        reader = PipeLineReader(descriptor: pipeEnds[0])
    }

    /// Lines of standard output up to and including the first that `isLast` accepts (or to EOF).
    func readUntil(_ isLast: (String) -> Bool) -> [String] {
        var lines: [String] = []
        while let line = reader.readLine() {
            lines.append(line)
            if isLast(line) { break }
        }
        return lines
    }

    func errors() -> String { readFile(errorsPath) }

    func wait() -> Int32 {
        reaped = true
        return reap(pid)
    }

    func interrupt() -> Int32 {
        kill(pid, SIGINT)
        return wait()
    }

    func end() {
        close(reader.descriptor)
        if !reaped {
            kill(pid, SIGKILL)
            reap(pid)
        }
        outputDirectory.remove()
    }
}
