// MailStore: the few file-system primitives the store is built on (openat-relative, EINTR-safe).
//
// Every path the store touches is a single component opened relative to a directory descriptor
// (openat, renameat, linkat, unlinkat); no absolute path is ever built from an untrusted name.

import Glibc
import Telemetry

/// An error from the store. Bad input and failed system calls become values; the store never traps
/// on them.
public enum StoreError: Error, Equatable, Sendable {
    /// A system call failed; `call` names it and `errno` is its error number.
    case system(call: String, errno: Int32)
    /// A mailbox name the store refuses (with the reason), e.g. `a/../b` or a name with NUL.
    case invalidMailboxName(String)
    /// A user name the store refuses (empty, too long, or with bytes outside the allowed set).
    case invalidUserName
    /// A user to add is in the users file already.
    case userExists
    /// A user to change or remove is not in the users file.
    case noSuchUser
    /// A password must not be empty.
    case emptyPassword
    /// The named mailbox does not exist.
    case mailboxNotFound
    /// A mailbox with that name exists already (CREATE, RENAME target).
    case mailboxExists
    /// INBOX cannot be deleted (RFC 3501 section 6.3.4).
    case cannotDeleteInbox
    /// Another process holds the data directory; `pid` is its process id when it wrote one.
    case dataDirectoryLocked(pid: Int32?)
    /// The operation would take the user over a quota limit (RFC 9208 `[OVERQUOTA]`).
    case overQuota
    /// A message is larger than `StoreConfiguration.maximumMessageSize`.
    case messageTooLarge
    /// No message with that UID exists in the mailbox.
    case noSuchMessage(UInt32)
    /// The mailbox's keyword table is full (Maildir has 26 keyword letters).
    case tooManyKeywords
    /// A keyword that is not a valid IMAP atom.
    case invalidKeyword
    /// The mailbox has no UIDs left under its UIDVALIDITY (UIDs are 32-bit, RFC 3501 section 2.3.1.1).
    case uidSpaceExhausted
    /// An append writer was used after it finished or failed.
    case writerClosed
    /// A store file (index, UID list) is unreadable and cannot be repaired automatically.
    case damaged(String)
}

extension StoreError: CustomStringConvertible {
    /// A sentence for logs and for the operator (never contains a password or message data).
    public var description: String {
        switch self {
        case .system(let call, let code): return "\(call) failed: \(String(cString: strerror(code))) (errno \(code))"
        case .invalidMailboxName(let reason): return "invalid mailbox name: \(reason)"
        case .invalidUserName:
            return "invalid user name (1 to \(UserName.maximumLength) of A-Z a-z 0-9 . _ - + @, not starting with . or -)"
        case .userExists: return "the user exists already"
        case .noSuchUser: return "no such user"
        case .emptyPassword: return "the password is empty"
        case .mailboxNotFound: return "no such mailbox"
        case .mailboxExists: return "mailbox already exists"
        case .cannotDeleteInbox: return "INBOX cannot be deleted"
        case .dataDirectoryLocked(let pid?):
            return "the data directory is in use by another Apus process (pid \(pid)); stop it first"
        case .dataDirectoryLocked(nil): return "the data directory is in use by another Apus process"
        case .overQuota: return "quota exceeded"
        case .messageTooLarge: return "message larger than the configured maximum"
        case .noSuchMessage(let uid): return "no message with UID \(uid)"
        case .tooManyKeywords: return "the mailbox has no room for another keyword"
        case .invalidKeyword: return "invalid keyword"
        case .writerClosed: return "the append writer is closed"
        case .uidSpaceExhausted: return "the mailbox has used up its UIDs; recreate it"
        case .damaged(let what): return "damaged store file: \(what)"
        }
    }
}

/// Retries a system call while it fails with EINTR; returns its result or throws `StoreError.system`.
@inline(__always)
func systemCall<T: FixedWidthInteger>(_ name: String, _ body: () -> T) throws(StoreError) -> T {
    while true {
        let result = body()
        if result >= 0 { return result }
        let code = errno
        if code == EINTR { continue }
        throw StoreError.system(call: name, errno: code)
    }
}

/// How long the store's fsyncs take, for the back end's metrics.
///
/// One per process, not per store: the fsyncs happen in file-system helpers that have no store at
/// hand, and a process serves one data directory.
public enum StoreSyncStatistics {
    /// Every fsync of a file or directory (count, sum and buckets), successful or not.
    public static let fsyncLatency = Histogram()
}

/// fsync(2) of `fd`, timed into ``StoreSyncStatistics/fsyncLatency``.
func durableSync(_ fd: Int32) throws(StoreError) {
    var start = timespec()
    clock_gettime(CLOCK_MONOTONIC, &start)
    defer {
        var end = timespec()
        clock_gettime(CLOCK_MONOTONIC, &end)
        let nanoseconds = (end.tv_sec - start.tv_sec) * 1_000_000_000 + (end.tv_nsec - start.tv_nsec)
        StoreSyncStatistics.fsyncLatency.observe(nanoseconds: UInt64(max(0, nanoseconds)))
    }
    _ = try systemCall("fsync") { fsync(fd) }
}

/// An open file or directory descriptor, closed when the last reference goes away.
///
/// Threading: immutable and `Sendable`; the durability batcher fsyncs it from a worker thread while
/// the owner thread keeps using it.
public final class FileHandle: Sendable {
    /// The descriptor number.
    public let fd: Int32

    init(fd: Int32) { self.fd = fd }
    deinit { close(fd) }

    /// Opens the directory `name` relative to `directory` (never following a symbolic link).
    static func openDirectory(_ name: String, in directory: Int32) throws(StoreError) -> FileHandle {
        let fd = try systemCall("openat") { openat(directory, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW) }
        return FileHandle(fd: fd)
    }

    /// Opens the directory at an absolute path the operator configured (the data directory only).
    static func openDirectory(path: String) throws(StoreError) -> FileHandle {
        let fd = try systemCall("open") { open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        return FileHandle(fd: fd)
    }

    /// Opens a regular file relative to `directory` with `flags` (O_CLOEXEC and O_NOFOLLOW added).
    static func openFile(_ name: String, in directory: Int32, flags: Int32, mode: mode_t = 0o600)
        throws(StoreError) -> FileHandle
    {
        let fd = try systemCall("openat") { openat(directory, name, flags | O_CLOEXEC | O_NOFOLLOW, mode) }
        return FileHandle(fd: fd)
    }

    /// Flushes the file's data and metadata to stable storage.
    func sync() throws(StoreError) { try durableSync(fd) }

    /// Writes all of `bytes` at `offset` (pwrite loop).
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(StoreError) {
        var done = 0
        while done < bytes.count {
            let base = bytes.baseAddress! + done
            let n = try systemCall("pwrite") { pwrite(fd, base, bytes.count - done, off_t(offset) + off_t(done)) }
            done += n
        }
    }

    /// Appends all of `bytes` with one write(2) on an O_APPEND descriptor (loops on short writes).
    func append(_ bytes: UnsafeRawBufferPointer) throws(StoreError) {
        var done = 0
        while done < bytes.count {
            let base = bytes.baseAddress! + done
            let n = try systemCall("write") { Glibc.write(fd, base, bytes.count - done) }
            done += n
        }
    }

    /// Writes all of `bytes` at `offset`.
    func write(_ bytes: [UInt8], at offset: Int64) throws(StoreError) {
        var failure: StoreError?
        bytes.withUnsafeBytes { buffer in
            do throws(StoreError) { try write(buffer, at: offset) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Appends all of `bytes` (O_APPEND descriptor).
    func append(_ bytes: [UInt8]) throws(StoreError) {
        var failure: StoreError?
        bytes.withUnsafeBytes { buffer in
            do throws(StoreError) { try append(buffer) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Reads up to `count` bytes at `offset`; fewer only at end of file.
    func read(count: Int, at offset: Int64) throws(StoreError) -> [UInt8] {
        if count == 0 { return [] }
        var failure: StoreError?
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            do throws(StoreError) {
                initialized = try read(into: UnsafeMutableRawBufferPointer(buffer), at: offset)
            } catch {
                failure = error
                initialized = 0
            }
        }
        if let failure { throw failure }
        return bytes
    }

    /// Fills `buffer` from `offset`; returns how many bytes it read, fewer only at end of file.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws(StoreError) -> Int {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw .system(call: "pread", errno: errno)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Size and modification time of the open file.
    func status() throws(StoreError) -> FileStatus {
        var info = stat()
        _ = try systemCall("fstat") { fstat(fd, &info) }
        return FileStatus(info)
    }

    /// Reads the whole file.
    func readAll() throws(StoreError) -> [UInt8] {
        let size = try status().size
        return try read(count: Int(size), at: 0)
    }
}

/// The parts of stat(2) the store uses.
struct FileStatus: Equatable, Sendable {
    var size: Int64
    /// Modification time in nanoseconds since the epoch.
    var modificationTime: Int64
    var inode: UInt64
    var isDirectory: Bool

    init(_ info: stat) {
        size = Int64(info.st_size)
        modificationTime = Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)
        inode = UInt64(info.st_ino)
        isDirectory = (info.st_mode & S_IFMT) == S_IFDIR
    }
}

/// Directory-relative helpers; `directory` is always a descriptor, `name` always one path component.
enum Directory {
    /// stat(2) of `name` in `directory` without following links, or nil when it does not exist.
    static func status(_ name: String, in directory: Int32) throws(StoreError) -> FileStatus? {
        var info = stat()
        if fstatat(directory, name, &info, AT_SYMLINK_NOFOLLOW) != 0 {
            if errno == ENOENT { return nil }
            throw StoreError.system(call: "fstatat", errno: errno)
        }
        return FileStatus(info)
    }

    /// Creates directory `name` unless it exists already.
    static func make(_ name: String, in directory: Int32) throws(StoreError) {
        if mkdirat(directory, name, 0o700) != 0 && errno != EEXIST {
            throw StoreError.system(call: "mkdirat", errno: errno)
        }
    }

    /// The names in a directory, without `.` and `..`. Reads through a duplicate of `directory`.
    static func entries(of directory: Int32) throws(StoreError) -> [String] {
        let copy = try systemCall("dup") { dup(directory) }
        guard let stream = fdopendir(copy) else {
            close(copy)
            throw StoreError.system(call: "fdopendir", errno: errno)
        }
        defer { closedir(stream) }
        rewinddir(stream)
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafePointer(to: entry.pointee.d_name) { pointer in
                pointer.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name == "." || name == ".." { continue }
            names.append(name)
        }
        return names
    }

    /// Reads a whole small file, or nil when it does not exist.
    static func readFile(_ name: String, in directory: Int32) throws(StoreError) -> [UInt8]? {
        let fd = openat(directory, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw StoreError.system(call: "openat", errno: errno)
        }
        return try FileHandle(fd: fd).readAll()
    }

    /// Replaces `name` atomically: writes a sibling temporary file, optionally fsyncs it, renames it
    /// over `name`, and optionally fsyncs the directory. With `keepingOwnership` the new file gets
    /// the old one's owner, group and mode (a file an administrator edits as root but a service
    /// reads as its own user).
    static func replaceFile(
        _ name: String, in directory: Int32, with bytes: [UInt8], durable: Bool, keepingOwnership: Bool = false
    ) throws(StoreError) {
        let temporary = name + ".apus-new"
        let file = try FileHandle.openFile(temporary, in: directory, flags: O_WRONLY | O_CREAT | O_TRUNC)
        var old = stat()
        if keepingOwnership, fstatat(directory, name, &old, AT_SYMLINK_NOFOLLOW) == 0 {
            _ = try systemCall("fchown") { fchown(file.fd, old.st_uid, old.st_gid) }
            _ = try systemCall("fchmod") { fchmod(file.fd, old.st_mode & 0o7777) }
        }
        try file.write(bytes, at: 0)
        if durable { try file.sync() }
        _ = try systemCall("renameat") { renameat(directory, temporary, directory, name) }
        if durable { try durableSync(directory) }
    }

    /// Removes a file; a missing file is not an error.
    static func removeFile(_ name: String, in directory: Int32) throws(StoreError) {
        if unlinkat(directory, name, 0) != 0 && errno != ENOENT {
            throw StoreError.system(call: "unlinkat", errno: errno)
        }
    }

    /// Removes a directory tree below `directory` (a deleted mailbox's folder). Does not follow links.
    static func removeTree(_ name: String, in directory: Int32) throws(StoreError) {
        let child = try FileHandle.openDirectory(name, in: directory)
        for entry in try entries(of: child.fd) {
            guard let info = try status(entry, in: child.fd) else { continue }
            if info.isDirectory {
                try removeTree(entry, in: child.fd)
            } else {
                try removeFile(entry, in: child.fd)
            }
        }
        if unlinkat(directory, name, AT_REMOVEDIR) != 0 && errno != ENOENT {
            throw StoreError.system(call: "unlinkat", errno: errno)
        }
    }
}

/// The current time in nanoseconds since the epoch (CLOCK_REALTIME).
func currentTimeNanoseconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
}

// MARK: - Byte helpers for the binary index and text files

/// Something bytes are appended to one at a time (an array, or the IMAP description's sink),
/// which then writes numbers in decimal without building a String.
protocol ByteAppending {
    mutating func append(_ byte: UInt8)
}

extension ByteAppending {
    /// Appends the decimal digits of `value` (a `-` first when negative), most significant first.
    mutating func appendDecimal<T: BinaryInteger>(_ value: T) {
        if value < 0 { append(UInt8(ascii: "-")) }
        let magnitude = UInt64(value.magnitude)
        var divisor: UInt64 = 1
        while magnitude / divisor >= 10 { divisor &*= 10 }
        repeat {
            append(UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: magnitude / divisor % 10))
            divisor /= 10
        } while divisor > 0
    }
}

extension Array: ByteAppending where Element == UInt8 {}

extension Array where Element == UInt8 {
    mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }
}

extension UnsafeRawBufferPointer {
    func loadLittleEndian<T: FixedWidthInteger>(at offset: Int, as type: T.Type) -> T {
        T(littleEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}

/// A 64-bit checksum over bytes, word at a time (damage detection, not security).
func checksum64(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    let words = bytes.count / 8
    for index in 0..<words {
        let word = bytes.loadUnaligned(fromByteOffset: index * 8, as: UInt64.self)
        hash = (hash ^ word) &* 0x0000_0100_0000_01b3
        hash ^= hash >> 29
    }
    for index in (words * 8)..<bytes.count {
        hash = (hash ^ UInt64(bytes[index])) &* 0x0000_0100_0000_01b3
    }
    return hash
}
