// MailStore: users from a passwd-file in Dovecot's format, re-read when it changes.
//
//     # user:password:uid:gid:gecos:home:shell:extra fields
//     alice:{SHA512-CRYPT}$6$Qx…$…::::::
//     bob:{PLAIN}secret
//
// Only the user name and the password are used; the other fields are kept when Apus rewrites a line,
// and so are comments and lines Apus skips.

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
        /// The file's lines in order: users by name, anything else (comments, lines Apus skips)
        /// verbatim, so a rewrite keeps what an administrator wrote.
        var lines: [Line] = []

        enum Line {
            case user(String)
            case verbatim(ArraySlice<UInt8>)
        }

        var userNames: [String] {
            lines.compactMap { line in
                guard case .user(let name) = line else { return nil }
                return name
            }
        }
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

    /// The entry of `user` as the file was last read, provided the file is unchanged since: one
    /// stat and no read, so an event loop may ask. Nil when the file changed (or is gone, or cannot
    /// be looked at) as well as when there is no such user: the caller then asks ``entry(for:)``.
    public func entryIfUnchanged(for user: String) -> PasswordEntry? {
        guard let fingerprint = try? currentFingerprint() else { return nil }
        return snapshot.withLock { $0.fingerprint == fingerprint ? $0.entries[user] : nil }
    }

    /// The file's identity now (inode, size, modification time); nil when there is no file.
    private func currentFingerprint() throws(StoreError) -> FileFingerprint? {
        var info = stat()
        guard stat(path, &info) == 0 else {
            if errno == ENOENT { return nil }
            throw .system(call: "stat", errno: errno)
        }
        return FileFingerprint(FileStatus(info))
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

    /// What `setPassword` may do to the file.
    public enum PasswordChange: Sendable {
        /// Add a new user; `StoreError.userExists` when the user is there already.
        case add
        /// Change an existing user's password; `StoreError.noSuchUser` when there is none.
        case change
        /// Either.
        case addOrChange
    }

    /// Adds a user or changes a password (new hashes use `scheme`), rewriting the file atomically
    /// under the file's lock (``update(_:)``). User names are those the store accepts
    /// (``UserName``), so a name can never reach outside the data directory.
    public func setPassword(
        user: String, password: [UInt8], scheme: PasswordScheme = .sha512Crypt, change: PasswordChange = .addOrChange
    ) throws(StoreError) {
        _ = try UserName(user)
        guard !password.isEmpty else { throw .emptyPassword }
        // Hash before taking the lock: a concurrent writer waits for the rename only.
        guard let hashed = scheme.hash(password) else { throw .system(call: "crypt", errno: EINVAL) }
        try update { state throws(StoreError) in
            let existing = state.entries[user]
            if change == .add, existing != nil { throw .userExists }
            if change == .change, existing == nil { throw .noSuchUser }
            if existing == nil { state.lines.append(.user(user)) }
            state.entries[user] = PasswordEntry(user: user, password: hashed, otherFields: existing?.otherFields ?? [])
        }
    }

    /// Removes `user`'s line (the Maildir stays); `StoreError.noSuchUser` when there is none.
    public func removeUser(_ user: String) throws(StoreError) {
        // Checked first too, so a missing file (or its directory) is "no such user", not an error.
        guard try entry(for: user) != nil else { throw .noSuchUser }
        try update { state throws(StoreError) in
            guard state.entries.removeValue(forKey: user) != nil else { throw .noSuchUser }
            state.lines.removeAll { line in
                if case .user(let name) = line { return name == user }
                return false
            }
        }
    }

    /// The users in file order.
    public func userNames() throws(StoreError) -> [String] {
        try refresh()
        return snapshot.withLock { $0.userNames }
    }

    /// Read-modify-write of the whole file, safe against another process doing the same: an
    /// exclusive flock on `<path>.lock` (the file itself is replaced by rename, so its own lock
    /// would not be shared), a fresh read under it, then temp file, fsync, rename, directory
    /// fsync. Readers never lock: they see the old file or the new one.
    private func update(_ change: (inout Snapshot) throws(StoreError) -> Void) throws(StoreError) {
        // Read-only and readable by all: flock needs no write access, so whoever may replace the
        // users file can take the lock even when another user created the lock file.
        let lock = try systemCall("open") { open(path + ".lock", O_RDONLY | O_CREAT | O_CLOEXEC, 0o644) }
        defer { close(lock) }  // closing drops the lock
        _ = try systemCall("flock") { flock(lock, LOCK_EX) }
        var state = Snapshot()
        let existing = open(path, O_RDONLY | O_CLOEXEC)
        if existing >= 0 {
            state = PasswordFile.parse(try FileHandle(fd: existing).readAll())
        } else if errno != ENOENT {
            throw .system(call: "open", errno: errno)
        }
        try change(&state)
        var bytes: [UInt8] = []
        for line in state.lines {
            switch line {
            case .verbatim(let text): bytes.append(contentsOf: text)
            case .user(let name):
                guard let entry = state.entries[name] else { continue }
                bytes.append(contentsOf: ([entry.user, entry.password] + entry.otherFields).joined(separator: ":").utf8)
            }
            bytes.append(UInt8(ascii: "\n"))
        }
        let (directory, name) = splitPath()
        let parent = try FileHandle.openDirectory(path: directory)
        try Directory.replaceFile(name, in: parent.fd, with: bytes, durable: true, keepingOwnership: true)
        // Whatever this process cached is older than the file now.
        snapshot.withLock { $0.fingerprint = .none }
    }

    private func splitPath() -> (String, String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let directory = String(path[..<slash])
        return (directory.isEmpty ? "/" : directory, String(path[path.index(after: slash)...]))
    }

    private func refresh() throws(StoreError) {
        guard let fingerprint = try currentFingerprint() else {
            snapshot.withLock { $0 = Snapshot() }
            return
        }
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
        var lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        if lines.last?.isEmpty == true { lines.removeLast() }  // the final LF ends a line, it does not start one
        for line in lines {
            guard line.count <= maximumLineLength, line.first != UInt8(ascii: "#") else {
                result.lines.append(.verbatim(line))
                continue
            }
            let text = String(decoding: line.last == UInt8(ascii: "\r") ? line.dropLast() : line, as: UTF8.self)
            let fields = text.split(separator: ":", maxSplits: 7, omittingEmptySubsequences: false).map(String.init)
            guard fields.count >= 2, !fields[0].isEmpty, result.entries[fields[0]] == nil else {
                result.lines.append(.verbatim(line))
                continue
            }
            result.entries[fields[0]] = PasswordEntry(user: fields[0], password: fields[1],
                                                      otherFields: Array(fields.dropFirst(2)))
            result.lines.append(.user(fields[0]))
        }
        return result
    }
}
