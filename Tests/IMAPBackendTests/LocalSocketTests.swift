// IMAPBackend tests: the local socket, a UNIX stream listener a front end on the same host uses.

import Glibc
import IMAPBackend
import Reactor
import Telemetry
import Testing
import TestSupport

/// A back end listening on a local socket only, logging to a file the test reads.
private final class LocalSocketServer {
    let accounts: TestAccounts
    let group: EventLoopGroup
    let server: BackendServer
    var socketPath: String { accounts.directory.path + "/imap4be-imap.sock" }
    var logPath: String { accounts.directory.path + "/imap4be.log" }

    /// `beforeStart` runs once the paths exist and before the listener is made (a stale file).
    init(beforeStart: (String) -> Void = { _ in }) throws {
        accounts = try TestAccounts()
        let path = accounts.directory.path + "/imap4be-imap.sock"
        beforeStart(path)
        (group, server) = try unstartedServer(
            accounts, socketPath: path, loops: 2,
            sink: try LogSink(path: accounts.directory.path + "/imap4be.log"))
        _ = try server.start(on: group)
    }

    func stop() {
        server.beginShutdown()
        group.shutdown(gracePeriod: .seconds(2))
    }

    var log: String { readFile(logPath) }
}

/// A back end of `accounts` with only a local socket at `socketPath`, not started yet.
private func unstartedServer(
    _ accounts: TestAccounts, socketPath: String, loops: Int = 1, sink: LogSink = LogSink(minimumLevel: .error),
    configure: (inout BackendConfiguration) -> Void = { _ in }
) throws -> (EventLoopGroup, BackendServer) {
    var configuration = accounts.configuration()
    configuration.listeners = []
    configuration.localSocketPath = socketPath
    configure(&configuration)
    let group = try EventLoopGroup(loopCount: loops, workerCount: 1, name: "betest-unix")
    do {
        let server = try BackendServer(configuration: configuration, logger: Logger(sink: sink, service: "imap4be"),
                                       metrics: MetricsRegistry())
        return (group, server)
    } catch {
        group.shutdown(gracePeriod: .zero)
        throw error
    }
}

/// Leaves a socket file at `path` that nobody accepts on, as a crashed server would.
private func makeStaleSocket(_ path: String) throws {
    let group = try EventLoopGroup(loopCount: 1, workerCount: 1, name: "betest-stale")
    defer { group.shutdown(gracePeriod: .zero) }
    try group.listen(ListenerSpec(host: path, port: 0) { _ in preconditionFailure("no connection expected") })
}

private func fileMode(_ path: String) -> mode_t? {
    var status = stat()
    guard stat(path, &status) == 0 else { return nil }
    return status.st_mode
}

@Suite("Local socket")
struct LocalSocketTests {
    @Test func localSocketIsTrustedLikeAProxy() throws {
        let backend = try LocalSocketServer()
        defer { backend.stop() }
        let client = try TestClient(unixPath: backend.socketPath)
        #expect(client.readLine()?.hasPrefix("* OK") == true)
        let id = client.command("i", "ID (\"x-originating-ip\" \"198.51.100.9\" \"x-originating-port\" \"40000\")")
        #expect(id.hasSuffix("i OK ID completed\r\n"))
        // The capabilities after login offer UNAUTHENTICATE, as to a trusted proxy.
        let login = client.command("l", "LOGIN alice secret")
        #expect(login.contains("l OK") && login.contains("UNAUTHENTICATE"), "\(login)")
        #expect(backend.log.contains("login user=alice address=198.51.100.9"), "\(backend.log)")
        #expect(client.command("u", "UNAUTHENTICATE") == "u OK UNAUTHENTICATE completed\r\n")
        #expect(client.command("m", "LOGIN bob hunter2").contains("m OK"))
    }

    @Test func socketIsOwnerOnlyReplacesAStaleSocketAndIsGoneAfterAStop() throws {
        let backend = try LocalSocketServer { path in
            // What a crash leaves: our own socket file that nobody accepts on any more.
            #expect(throws: Never.self) { try makeStaleSocket(path) }
        }
        let mode = try #require(fileMode(backend.socketPath))
        #expect(mode & S_IFMT == S_IFSOCK)
        #expect(mode & 0o777 == 0o600)
        let client = try TestClient(unixPath: backend.socketPath)
        #expect(client.readLine()?.hasPrefix("* OK") == true)
        backend.stop()
        #expect(fileMode(backend.socketPath) == nil)
    }

    /// A mistyped local_socket naming a regular file must not delete it: start-up fails instead.
    @Test func aRegularFileAtThePathIsLeftAndStartFails() throws {
        let accounts = try TestAccounts()
        let path = accounts.directory.path + "/notes.txt"
        writeFile(path, "keep me\n")
        let (group, server) = try unstartedServer(accounts, socketPath: path)
        defer { group.shutdown(gracePeriod: .zero) }
        #expect {
            _ = try server.start(on: group)
        } throws: { error in
            "\(error)" == "local_socket: '\(path)' exists and is not a UNIX socket (left as it is: remove it or set local_socket to another path)"
        }
        #expect(readFile(path) == "keep me\n")
    }

    /// A symlink at the path is neither followed (to the stale socket it names) nor removed.
    @Test func aSymlinkAtThePathIsNotFollowedNorRemoved() throws {
        let accounts = try TestAccounts()
        let target = accounts.directory.path + "/elsewhere.sock"
        try makeStaleSocket(target)
        let path = accounts.directory.path + "/imap4be-imap.sock"
        #expect(symlink(target, path) == 0)
        let (group, server) = try unstartedServer(accounts, socketPath: path)
        defer { group.shutdown(gracePeriod: .zero) }
        #expect {
            _ = try server.start(on: group)
        } throws: { error in
            "\(error)".contains("exists and is not a UNIX socket")
        }
        var status = stat()
        #expect(lstat(path, &status) == 0 && status.st_mode & S_IFMT == S_IFLNK)
        #expect(fileMode(target).map { $0 & S_IFMT } == S_IFSOCK)
    }

    /// A socket file replaced after start (a new instance's) is left alone by the old one's stop.
    @Test func aStopLeavesAReplacementSocketFile() throws {
        let backend = try LocalSocketServer()
        #expect(unlink(backend.socketPath) == 0)
        try makeStaleSocket(backend.socketPath)
        backend.stop()
        #expect(fileMode(backend.socketPath).map { $0 & S_IFMT } == S_IFSOCK)
    }

    /// A socket another server still accepts on is not stale: a second back end is refused it.
    @Test func aLiveSocketIsNotTakenOver() throws {
        let first = try LocalSocketServer()
        defer { first.stop() }
        let accounts = try TestAccounts()
        let (group, second) = try unstartedServer(accounts, socketPath: first.socketPath)
        defer { group.shutdown(gracePeriod: .zero) }
        #expect {
            _ = try second.start(on: group)
        } throws: { error in
            "\(error)".hasPrefix("local_socket: cannot listen on \(first.socketPath)") && "\(error)".contains("in use")
        }
        let client = try TestClient(unixPath: first.socketPath)
        #expect(client.readLine()?.hasPrefix("* OK") == true)
    }

    /// Connections on the local socket all share one "address" (the socket's path); they are not
    /// held to the per-address limit, which would otherwise cap a front end's pool.
    @Test func localConnectionsAreNotCountedAsOneAddress() throws {
        let accounts = try TestAccounts()
        let path = accounts.directory.path + "/imap4be-imap.sock"
        let (group, server) = try unstartedServer(accounts, socketPath: path) { $0.maxConnectionsPerAddress = 1 }
        defer {
            server.beginShutdown()
            group.shutdown(gracePeriod: .seconds(2))
        }
        _ = try server.start(on: group)
        let clients = try (0..<3).map { _ in try TestClient(unixPath: path) }
        for client in clients { #expect(client.readLine()?.hasPrefix("* OK") == true) }
    }

    @Test func overLongPathIsAStartupErrorNamingTheKey() throws {
        let accounts = try TestAccounts()
        let (group, server) = try unstartedServer(
            accounts, socketPath: accounts.directory.path + "/" + String(repeating: "s", count: 200))
        defer { group.shutdown(gracePeriod: .zero) }
        #expect {
            _ = try server.start(on: group)
        } throws: { error in
            "\(error)".hasPrefix("local_socket: ") && "\(error)".contains("longer than the 107 bytes")
        }
    }
}
