// MailStoreTests: temporary data directories and small helpers shared by the store's tests.

import Glibc
@testable import MailStore

/// A fresh directory under /tmp, removed when the value goes away. Each test makes its own.
final class TemporaryDirectory {
    let path: String

    init() {
        var template = Array("/tmp/apus-store-test-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        path = String(cString: template.withUnsafeBufferPointer { $0.baseAddress! })
    }

    deinit {
        let parent = open("/tmp", O_RDONLY | O_DIRECTORY)
        let name = String(path.dropFirst("/tmp/".count))
        try? Directory.removeTree(name, in: parent)
        close(parent)
    }

    /// Opens (or reopens) a store on this directory.
    func openStore(_ configuration: StoreConfiguration = StoreConfiguration()) throws -> MailStore {
        try MailStore(dataDirectory: path + "/data", configuration: configuration)
    }
}

/// Appends one message made of `bytes` and commits it on the spot; returns its UID.
@discardableResult
func appendMessage(_ bytes: [UInt8], to mailbox: Mailbox, flags: SystemFlags = [], keywords: [String] = [],
                   internalDate: Int64? = nil) throws -> UInt32
{
    let writer = try mailbox.beginAppend()
    try bytes.withUnsafeBytes { try writer.write($0) }
    let staged = try writer.finish(internalDate: internalDate)
    let commit = try mailbox.prepareAppend([AppendRequest(message: staged, flags: flags, keywords: keywords)])
    try mailbox.commitNow(commit)
    return commit.assignedUIDs[0]
}

/// A small RFC 5322 message whose body names `tag`.
func sampleMessage(_ tag: String, bodyLines: Int = 3) -> [UInt8] {
    var text = "From: a@example.org\r\nTo: b@example.org\r\nSubject: message \(tag)\r\n\r\n"
    for line in 0..<bodyLines { text += "line \(line) of \(tag)\r\n" }
    return Array(text.utf8)
}

/// The bytes of a message as the store has them.
func storedBytes(of uid: UInt32, in mailbox: Mailbox) throws -> [UInt8] {
    let (file, _) = try mailbox.openMessage(uid: uid)
    return try file.readAll()
}

/// File names in a directory below the data directory (relative path of plain components).
/// The files in a directory, Maildir names in delivery order (`<seconds>.M<microseconds>P<pid>Q<n>`
/// compared as numbers: as text, M15655 would sort before M7815), anything else after them by name.
func fileNames(in path: String) -> [String] {
    let fd = open(path, O_RDONLY | O_DIRECTORY)
    guard fd >= 0 else { return [] }
    defer { close(fd) }
    return ((try? Directory.entries(of: fd)) ?? []).sorted { a, b in
        switch (deliveryOrder(a), deliveryOrder(b)) {
        case let (x?, y?) where x != y: return x.lexicographicallyPrecedes(y)
        case (_?, nil): return true
        case (nil, _?): return false
        default: return a < b
        }
    }
}

/// [seconds, microseconds, delivery counter] of a Maildir file name, when it has them.
func deliveryOrder(_ name: String) -> [Int]? {
    let parts = name.split(separator: ".", maxSplits: 2)
    guard parts.count >= 2, let seconds = Int(parts[0]), parts[1].first == "M" else { return nil }
    func number(after marker: Character) -> Int {
        guard let start = parts[1].firstIndex(of: marker) else { return 0 }
        return Int(parts[1][parts[1].index(after: start)...].prefix { $0.isNumber }) ?? 0
    }
    return [seconds, number(after: "M"), number(after: "Q")]
}

/// Writes a file at an absolute test path (setting up foreign Maildirs).
func writeFile(_ path: String, _ bytes: [UInt8]) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    precondition(fd >= 0, "cannot create \(path)")
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    close(fd)
}

func readFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    return try? FileHandle(fd: dup(fd)).readAll()
}

/// Records every event a mailbox announces.
final class EventRecorder: MailboxObserver {
    var events: [MailboxEvent] = []
    func mailbox(_ mailbox: Mailbox, didChange event: MailboxEvent) { events.append(event) }
}

/// Starts `path` with `arguments` (argv[0] included) and `environment`, with descriptors of this
/// process mapped into the child (`child fd <- our fd`); unmapped 0, 1 and 2 go to /dev/null.
/// Returns the child's pid, or nil when posix_spawn failed.
func spawnProcess(_ path: String, arguments: [String], environment: [String], descriptors: [(child: Int32, ours: Int32)])
    -> pid_t?
{
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    for standard in Int32(0)...2 where !descriptors.contains(where: { $0.child == standard }) {
        posix_spawn_file_actions_addopen(&actions, standard, "/dev/null", standard == 0 ? O_RDONLY : O_WRONLY, 0)
    }
    for mapping in descriptors { posix_spawn_file_actions_adddup2(&actions, mapping.ours, mapping.child) }
    var argv = arguments.map { strdup($0) } + [nil]
    var envp = environment.map { strdup($0) } + [nil]
    defer {
        for pointer in argv { free(pointer) }
        for pointer in envp { free(pointer) }
    }
    var child: pid_t = 0
    return posix_spawn(&child, path, &actions, nil, &argv, &envp) == 0 ? child : nil
}

/// Runs a program to completion with `input` on its stdin; returns its wait status and stdout.
func runProgram(_ path: String, _ arguments: [String], environment: [String], input: [UInt8] = [])
    -> (status: Int32, output: [UInt8])
{
    guard let stdinPipe = makePipe(), let stdoutPipe = makePipe() else { return (-1, []) }
    let child = spawnProcess(path, arguments: [path] + arguments, environment: environment,
                             descriptors: [(0, stdinPipe[0]), (1, stdoutPipe[1])])
    close(stdinPipe[0])
    close(stdoutPipe[1])
    _ = input.withUnsafeBytes { write(stdinPipe[1], $0.baseAddress, $0.count) }
    close(stdinPipe[1])
    let output = readToEnd(stdoutPipe[0])
    close(stdoutPipe[0])
    guard let child else { return (-1, output) }
    var status: Int32 = 0
    while waitpid(child, &status, 0) < 0 && errno == EINTR {}
    return (status, output)
}

/// A pipe whose ends are closed on exec (tests run in parallel: a child must not inherit another
/// test's pipe, or that pipe never sees end of file). posix_spawn's dup2 clears the flag on the
/// descriptors it maps into the child.
func makePipe() -> [Int32]? {
    var ends: [Int32] = [0, 0]
    guard pipe(&ends) == 0 else { return nil }
    for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
    return ends
}

/// Reads a descriptor until end of file, passing each chunk to `chunk` (if given) as it arrives.
@discardableResult
func readToEnd(_ fd: Int32, chunk: ([UInt8]) -> Void = { _ in }) -> [UInt8] {
    var all: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = read(fd, &buffer, buffer.count)
        if count < 0 && errno == EINTR { continue }
        if count <= 0 { return all }
        chunk(Array(buffer[0..<count]))
        all += buffer[0..<count]
    }
}

extension MessageContentSearcher {
    /// ``answer(_:cached:)`` of a key asked once, over a blob held in an array (SEARCH itself
    /// prepares each key once and passes blobs in place).
    func answer(_ key: ContentSearchKey, cached: [UInt8]) -> Bool? {
        cached.withUnsafeBytes { answer(prepare(key), cached: $0) }
    }

    /// ``matches(_:message:cached:)`` of a key asked once, over a blob held in an array.
    func matches(_ key: ContentSearchKey, message: UnsafeRawBufferPointer, cached: [UInt8]) -> Bool {
        cached.withUnsafeBytes { matches(prepare(key), message: message, cached: $0) }
    }
}
