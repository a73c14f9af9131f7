// MailStore: the data directory, its lock, and the users' Maildirs.
//
//     <data>/apus.lock              flock(2)ed by the one process that owns the directory; holds its pid
//     <data>/users/<user>/          the user's Maildir++ (INBOX: cur new tmp; folders: .Sent .Work ...)

import CShims
import Glibc
import Synchronization

/// An open data directory. Holding it holds the directory's lock; one process owns a data directory.
///
/// Threading: `Sendable` and immutable; `openUser` may be called from any thread, and the returned
/// `UserMaildir` then belongs to the caller's thread (the user's event loop).
public final class MailStore: Sendable {
    static let lockFileName = "apus.lock"
    static let usersDirectoryName = "users"

    /// The store's configuration.
    public let configuration: StoreConfiguration
    let dataDirectory: FileHandle
    let usersDirectory: FileHandle
    private let lock: FileHandle
    let nameGenerator = MaildirNameGenerator()
    /// The users whose `UserMaildir` is alive, so a second open finds the first.
    private let openUsers = Mutex<[String: OpenUser]>([:])

    /// Opens (creating when needed) the data directory at `path` and takes its lock.
    ///
    /// - Throws: `StoreError.dataDirectoryLocked(pid:)` when another process (or another open
    ///   `MailStore` in this one) holds it; `StoreError.system` when the directory cannot be used.
    public init(dataDirectory path: String, configuration: StoreConfiguration = StoreConfiguration()) throws(StoreError) {
        if mkdir(path, 0o700) != 0 && errno != EEXIST { throw .system(call: "mkdir", errno: errno) }
        let data = try FileHandle.openDirectory(path: path)
        let lock = try FileHandle.openFile(MailStore.lockFileName, in: data.fd, flags: O_RDWR | O_CREAT)
        if flock(lock.fd, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            guard code == EWOULDBLOCK else { throw .system(call: "flock", errno: code) }
            let holder = (try? lock.read(count: 32, at: 0)).flatMap { Int32(String(decoding: $0, as: UTF8.self)
                .trimmingASCIIWhitespace) }
            throw .dataDirectoryLocked(pid: holder)
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(lock.fd, 0)
        try lock.write(pid, at: 0)
        try Directory.make(MailStore.usersDirectoryName, in: data.fd)
        self.usersDirectory = try FileHandle.openDirectory(MailStore.usersDirectoryName, in: data.fd)
        // Each user's Maildir is made in a block group of its own rather than next to users/.
        // A Maildir creates a file per delivery and unlinks one per expunge, and ext4 allocates a
        // file's inode in its directory's group; without a journal it also steps over every inode
        // of that group freed in the last 5-35 s, one inode-table lookup each. With every user in
        // one group, that walk grew with the whole server's expunge rate and took a fifth of the
        // back end's CPU under issue 5's mix. Best effort: other file systems have no such flag,
        // and users made before it was set stay where they are.
        _ = cshim_mark_top_directory(usersDirectory.fd)
        self.dataDirectory = data
        self.lock = lock
        self.configuration = configuration
    }

    deinit {
        // Unlock explicitly: a child process forked by another thread may still share the lock's
        // open file description until it execs, and closing our descriptor alone would leave the
        // directory locked for that moment.
        flock(lock.fd, LOCK_UN)
    }

    /// Opens a user's Maildir, creating it with INBOX and the special-use folders on first login.
    ///
    /// While a user's `UserMaildir` is alive, opening the user again returns the same object: there
    /// is one per user, so each mailbox has one `Mailbox` and one owner thread. Call it for a user
    /// only on that user's thread (the back end's home loop of the user).
    public func openUser(_ name: UserName) throws(StoreError) -> UserMaildir {
        if let open = openUsers.withLock({ $0[name.value] })?.user { return open }
        let isNew = try Directory.status(name.value, in: usersDirectory.fd) == nil
        if isNew { try createMaildir(for: name) }
        let root = try FileHandle.openDirectory(name.value, in: usersDirectory.fd)
        let user = UserMaildir(name: name, root: root, store: self)
        let entry = OpenUser(user)
        openUsers.withLock { users in
            users = users.filter { $0.value.user != nil }
            users[name.value] = entry
        }
        return user
    }

    /// Creates the Maildir under a temporary name and renames it into place, so a crash never leaves
    /// a half-made user behind.
    private func createMaildir(for name: UserName) throws(StoreError) {
        let staging = ".new-" + name.value
        if try Directory.status(staging, in: usersDirectory.fd) != nil {
            try Directory.removeTree(staging, in: usersDirectory.fd)
        }
        try Directory.make(staging, in: usersDirectory.fd)
        let root = try FileHandle.openDirectory(staging, in: usersDirectory.fd)
        try Maildir.createFolder(in: root.fd)
        for use in SpecialUse.allCases {
            let folder = try MailboxName(use.defaultName)
            try Directory.make(folder.folderName, in: root.fd)
            let handle = try FileHandle.openDirectory(folder.folderName, in: root.fd)
            try Maildir.createFolder(in: handle.fd, marker: true)
            try handle.sync()
        }
        try Directory.replaceFile(Subscriptions.fileName, in: root.fd,
                                  with: Subscriptions(SpecialUse.allCases.map(\.defaultName)).serialized, durable: true)
        try root.sync()
        if renameat(usersDirectory.fd, staging, usersDirectory.fd, name.value) != 0 && errno != EEXIST
            && errno != ENOTEMPTY
        {
            throw .system(call: "renameat", errno: errno)
        }
        try usersDirectory.sync()
    }
}

/// A weak entry of the registry of open users. The registry is shared by all threads, but an entry
/// is only ever handed back to `openUser` for its own user, which runs on that user's thread (the
/// contract of `openUser`); weak references load atomically.
final class OpenUser: @unchecked Sendable {
    weak var user: UserMaildir?
    init(_ user: UserMaildir) { self.user = user }
}

/// Maildir layout helpers.
enum Maildir {
    /// Creates cur/ new/ tmp/ in `directory` and, for a Maildir++ folder, the `maildirfolder` marker.
    static func createFolder(in directory: Int32, marker: Bool = false) throws(StoreError) {
        for name in ["cur", "new", "tmp"] { try Directory.make(name, in: directory) }
        if marker {
            // An empty file; the handle closes at once.
            _ = try FileHandle.openFile("maildirfolder", in: directory, flags: O_WRONLY | O_CREAT)
        }
        try durableSync(directory)
    }
}

extension String {
    var trimmingASCIIWhitespace: Substring {
        let bytes = utf8
        let start = bytes.firstIndex { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 } ?? bytes.endIndex
        let end = bytes.lastIndex { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }.map { bytes.index(after: $0) }
            ?? start
        return self[start..<end]
    }
}
