// TestSupport: child processes (python3, curl, the mail clients) run with a deadline, the files they
// read and write, and bounded waits.

import Glibc

/// The outcome of a child process.
public struct ProcessResult: Sendable {
    public var status: Int32
    public var output: String
    public var timedOut: Bool
}

/// Whether an external tool is on PATH.
public func toolExists(_ name: String) -> Bool {
    for directory in (String(cString: getenv("PATH") ?? strdup("/usr/bin")).split(separator: ":")) {
        if access("\(directory)/\(name)", X_OK) == 0 { return true }
    }
    return false
}

/// Whether a test whose tool is missing must fail (CI) rather than skip.
public var isCI: Bool { getenv("CI") != nil }

/// For a test's `.enabled(if:)` trait: the tools are all on PATH, or this is CI, where a missing
/// tool must fail the test rather than skip it.
public func toolsPresentOrCI(_ names: String...) -> Bool { isCI || names.allSatisfy(toolExists) }

/// Runs a program with arguments and optional stdin bytes; stdout and stderr are collected. Killed
/// (and reported) when it runs past `timeout`.
public func runProcess(_ arguments: [String], input: [UInt8] = [], environment: [String] = [],
                timeout: Duration = .seconds(120)) -> ProcessResult
{
    var outputPipe: [Int32] = [0, 0]
    var inputPipe: [Int32] = [0, 0]
    pipe(&outputPipe)
    pipe(&inputPipe)
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    posix_spawn_file_actions_adddup2(&actions, inputPipe[0], 0)
    posix_spawn_file_actions_adddup2(&actions, outputPipe[1], 1)
    posix_spawn_file_actions_adddup2(&actions, outputPipe[1], 2)
    posix_spawn_file_actions_addclose(&actions, outputPipe[0])
    posix_spawn_file_actions_addclose(&actions, inputPipe[1])
    var environmentStrings: [String] = []
    var index = 0
    while let entry = environ[index] {
        environmentStrings.append(String(cString: entry))
        index += 1
    }
    environmentStrings += environment
    let argv = arguments.map { strdup($0) } + [nil]
    let envp = environmentStrings.map { strdup($0) } + [nil]
    defer {
        argv.forEach { free($0) }
        envp.forEach { free($0) }
        posix_spawn_file_actions_destroy(&actions)
    }
    var pid: pid_t = 0
    let spawned = posix_spawnp(&pid, arguments[0], &actions, nil, argv, envp)
    Glibc.close(outputPipe[1])
    Glibc.close(inputPipe[0])
    guard spawned == 0 else {
        Glibc.close(outputPipe[0])
        Glibc.close(inputPipe[1])
        return ProcessResult(status: -1, output: "spawn failed: \(spawned)", timedOut: false)
    }
    // Feed stdin from a thread so a child that writes a lot first cannot deadlock us.
    let writer = inputPipe[1]
    let payload = input
    var feeder = pthread_t()
    let box = Unmanaged.passRetained(FeedJob(descriptor: writer, bytes: payload)).toOpaque()
    pthread_create(&feeder, nil, { context in
        let job = Unmanaged<FeedJob>.fromOpaque(context!).takeRetainedValue()
        job.run()
        return nil
    }, box)
    var output: [UInt8] = []
    let deadline = ContinuousClock.now + timeout
    var timedOut = false
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let remaining = deadline - ContinuousClock.now
        if remaining <= .zero {
            timedOut = true
            kill(pid, SIGKILL)
            break
        }
        var poller = pollfd(fd: outputPipe[0], events: Int16(POLLIN), revents: 0)
        let milliseconds = Int32(min(1000, max(1, remaining.components.seconds * 1000)))
        let ready = poll(&poller, 1, milliseconds)
        if ready < 0 && errno == EINTR { continue }
        if ready == 0 { continue }
        let count = chunk.withUnsafeMutableBytes { read(outputPipe[0], $0.baseAddress, $0.count) }
        if count <= 0 { break }
        output += chunk[0..<count]
    }
    Glibc.close(outputPipe[0])
    pthread_join(feeder, nil)
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let exitCode = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : -(status & 0x7F)
    return ProcessResult(status: exitCode, output: String(decoding: output, as: UTF8.self), timedOut: timedOut)
}

private final class FeedJob {
    let descriptor: Int32
    let bytes: [UInt8]
    init(descriptor: Int32, bytes: [UInt8]) {
        self.descriptor = descriptor
        self.bytes = bytes
    }
    func run() {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            if written <= 0 { break }
            offset += written
        }
        Glibc.close(descriptor)
    }
}

/// Writes `text` to `path`.
public func writeFile(_ path: String, _ text: String) {
    let file = fopen(path, "w")!
    fputs(text, file)
    fclose(file)
}

/// The text of the file at `path` ("" when it cannot be read).
public func readFile(_ path: String) -> String {
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else { return "" }
    defer { close(descriptor) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        if count <= 0 { break }
        bytes += chunk[0..<count]
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Files in a directory (names only).
public func directoryEntries(_ path: String) -> [String] {
    guard let handle = opendir(path) else { return [] }
    defer { closedir(handle) }
    var names: [String] = []
    while let entry = readdir(handle) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { names.append(name) }
    }
    return names.sorted()
}

/// Waits for `condition` with a deadline (polling; the only waits in these tests are bounded).
public func waitUntil(timeout: Duration = .seconds(30), _ condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        var pause = timespec(tv_sec: 0, tv_nsec: 2_000_000)
        nanosleep(&pause, nil)
    }
    return condition()
}
