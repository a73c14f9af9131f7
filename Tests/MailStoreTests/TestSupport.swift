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
func fileNames(in path: String) -> [String] {
    let fd = open(path, O_RDONLY | O_DIRECTORY)
    guard fd >= 0 else { return [] }
    defer { close(fd) }
    return ((try? Directory.entries(of: fd)) ?? []).sorted()
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
