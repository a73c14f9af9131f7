// MailStore: users from a passwd-file in Dovecot's format, re-read when it changes.
//
//     # user:password:uid:gid:gecos:home:shell:extra fields
//     alice:{SHA512-CRYPT}$6$Qx…$…::::::
//     bob:{PLAIN}secret
//
// Only the user name and the password are used; the other fields are kept when Apus rewrites a line.

import Glibc
import Synchronization

/// One line of the passwd-file.
public struct PasswordEntry: Equatable, Sendable {
    public var user: String
    /// `{SCHEME}hash` as stored.
    public var password: String
    /// The fields after the password (uid, gid, gecos, home, shell, extra), kept verbatim.
    public var otherFields: [String]
}

/// The user database. Looks the file's identity up (stat) on each use and re-reads it when its
/// inode, size or modification time changed.
///
/// Threading: `Sendable`; its state is behind a mutex, and `verify` hashes outside the lock, so any
/// number of worker threads may verify passwords at once.
public final class PasswordFile: Sendable {
    /// Longest line considered; a longer line is skipped.
    public static let maximumLineLength = 4096

    private struct Snapshot {
        var fingerprint: FileFingerprint = .none
        var entries: [String: PasswordEntry] = [:]
        var order: [String] = []
    }

    /// The file's path (configured by the operator).
    public let path: String
    private let snapshot = Mutex(Snapshot())

    public init(path: String) {
        self.path = path
    }

    /// The entry of `user`, or nil. Re-reads the file when it changed.
    public func entry(for user: String) throws(StoreError) -> PasswordEntry? {
        try refresh()
        return snapshot.withLock { $0.entries[user] }
    }

    /// True when the user exists and `password` matches. Runs the hash: call it on a worker.
    public func verify(user: String, password: [UInt8]) -> Bool {
        guard let entry = try? entry(for: user) else {
            // Hash anyway so a missing user costs about as long as a wrong password.
            _ = PasswordVerifier.verify(password, against: PasswordFile.dummyHash)
            return false
        }
        return PasswordVerifier.verify(password, against: entry.password)
    }

    private static let dummyHash = "{SHA512-CRYPT}$6$apusdummysalt$ODfqYmjwhqfD0kbWbtjb9OHlL3wTRgSDCZhcEIpj2HNYt5ok7bhoiwKh5gakrvT0/ROAl1pgDuMsBVZg7eE1i."

    /// Adds a user or changes a password (new hashes use `scheme`), rewriting the file atomically.
    public func setPassword(user: String, password: [UInt8], scheme: PasswordScheme = .sha512Crypt)
        throws(StoreError)
    {
        guard !user.isEmpty, !user.contains(":"), !user.contains("\n"), !user.hasPrefix("#") else {
            throw .invalidUserName
        }
        guard let hashed = scheme.hash(password) else { throw .system(call: "crypt", errno: EINVAL) }
        try refresh()
        let bytes = snapshot.withLock { state -> [UInt8] in
            if state.entries[user] == nil { state.order.append(user) }
            let others = state.entries[user]?.otherFields ?? []
            state.entries[user] = PasswordEntry(user: user, password: hashed, otherFields: others)
            var bytes: [UInt8] = []
            for name in state.order {
                guard let entry = state.entries[name] else { continue }
                bytes.append(contentsOf: ([entry.user, entry.password] + entry.otherFields).joined(separator: ":").utf8)
                bytes.append(UInt8(ascii: "\n"))
            }
            return bytes
        }
        let (directory, name) = splitPath()
        let parent = try FileHandle.openDirectory(path: directory)
        try Directory.replaceFile(name, in: parent.fd, with: bytes, durable: true)
    }

    private func splitPath() -> (String, String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let directory = String(path[..<slash])
        return (directory.isEmpty ? "/" : directory, String(path[path.index(after: slash)...]))
    }

    private func refresh() throws(StoreError) {
        var info = stat()
        guard stat(path, &info) == 0 else {
            if errno == ENOENT {
                snapshot.withLock { $0 = Snapshot() }
                return
            }
            throw .system(call: "stat", errno: errno)
        }
        let fingerprint = FileFingerprint(FileStatus(info))
        if snapshot.withLock({ $0.fingerprint == fingerprint }) { return }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .system(call: "open", errno: errno) }
        let bytes = try FileHandle(fd: fd).readAll()
        let parsed = PasswordFile.parse(bytes)
        snapshot.withLock { state in
            state = parsed
            state.fingerprint = fingerprint
        }
    }

    ///     file  = *(line LF)
    ///     line  = "#" comment / user ":" password [":" uid ":" gid ":" gecos ":" home ":" shell ":" extra]
    private static func parse(_ bytes: [UInt8]) -> Snapshot {
        var result = Snapshot()
        for line in bytes.split(separator: UInt8(ascii: "\n")) {
            guard line.count <= maximumLineLength, line.first != UInt8(ascii: "#") else { continue }
            let text = String(decoding: line.last == UInt8(ascii: "\r") ? line.dropLast() : line, as: UTF8.self)
            let fields = text.split(separator: ":", maxSplits: 7, omittingEmptySubsequences: false).map(String.init)
            guard fields.count >= 2, !fields[0].isEmpty, result.entries[fields[0]] == nil else { continue }
            result.entries[fields[0]] = PasswordEntry(user: fields[0], password: fields[1],
                                                      otherFields: Array(fields.dropFirst(2)))
            result.order.append(fields[0])
        }
        return result
    }
}
