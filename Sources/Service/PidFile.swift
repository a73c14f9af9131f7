//===----------------------------------------------------------------------===//
// Apus Service: pid files whose liveness is a lock, not a guess.
//===----------------------------------------------------------------------===//

import Glibc

/// A pid file in `run_dir` held under an exclusive `flock` for the life of the service.
///
/// Whether a service runs is whether its pid file is locked: the kernel drops the lock when
/// the process ends, however it ends (kill -9 included), so a recycled pid or a zombie never
/// reads as running, and a lock that can be taken marks the file stale.
public final class PidFile {
    public let path: String
    private let descriptor: Int32

    private init(path: String, descriptor: Int32) {
        self.path = path
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }

    /// What a pid file says about its service.
    public enum Probe: Equatable, Sendable {
        /// No pid file.
        case absent
        /// The file exists but no process holds it (the service died); it has been removed.
        case stale(pid: Int32?)
        /// A live process holds the file.
        case running(pid: Int32?)
        /// The file cannot be read (another user's service, say): the state is unknown.
        case inaccessible(reason: String)
    }

    /// Takes the pid file for this process and writes its pid.
    /// - Throws: a message naming the running holder, or the failed call.
    public static func acquire(path: String) throws(ServiceStartError) -> PidFile {
        // Retry when another process removed the file (as stale) between our open and lock:
        // the lock we got is then on a file nobody else will look at.
        for _ in 0..<10 {
            let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            guard descriptor >= 0 else {
                throw ServiceStartError("cannot create pid file \(path): \(String(cString: strerror(errno)))")
            }
            if flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
                let pid = readPid(descriptor)
                close(descriptor)
                throw ServiceStartError("already running" + (pid.map { " (pid \($0))" } ?? ""))
            }
            guard sameFile(descriptor, path) else {
                close(descriptor)
                continue
            }
            let text = Array("\(getpid())\n".utf8)
            _ = ftruncate(descriptor, 0)
            _ = text.withUnsafeBufferPointer { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
            return PidFile(path: path, descriptor: descriptor)
        }
        throw ServiceStartError("cannot lock pid file \(path): it keeps changing")
    }

    /// Removes the file (still locked, so nobody can mistake it for a stale one meanwhile).
    public func remove() {
        unlink(path)
    }

    /// Looks at the pid file at `path`; a stale one is removed (and `alsoRemove` with it: the
    /// dead service's control socket).
    public static func probe(path: String, alsoRemove: [String] = []) -> Probe {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            if errno == ENOENT || errno == ENOTDIR { return .absent }
            return .inaccessible(reason: "\(path): \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        let pid = readPid(descriptor)
        // A shared lock is enough to learn that nobody holds the exclusive one.
        if flock(descriptor, LOCK_SH | LOCK_NB) != 0 { return .running(pid: pid) }
        if sameFile(descriptor, path) {
            unlink(path)
            for other in alsoRemove { unlink(other) }
        }
        return .stale(pid: pid)
    }

    /// Waits until no process holds the pid file at `path` (the service has exited), at most
    /// `timeout`. Returns true when it is free (or gone).
    public static func waitUntilFree(path: String, timeout: Duration) -> Bool {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return true }
        defer { close(descriptor) }
        let deadline = ContinuousClock.now + timeout
        // An open descriptor keeps the lock's file even after the service unlinks it.
        while flock(descriptor, LOCK_SH | LOCK_NB) != 0 {
            if ContinuousClock.now >= deadline { return false }
            sleepBriefly(milliseconds: 10)
        }
        return true
    }

    private static func readPid(_ descriptor: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return nil }
        let text = String(decoding: buffer[0..<count], as: UTF8.self).trimmedASCIIWhitespace
        return Int32(text.trimmingSuffix("\n"))
    }

    private static func sameFile(_ descriptor: Int32, _ path: String) -> Bool {
        var opened = stat()
        var named = stat()
        guard fstat(descriptor, &opened) == 0, stat(path, &named) == 0 else { return false }
        return opened.st_dev == named.st_dev && opened.st_ino == named.st_ino
    }
}

/// Sleeps the calling (command-line) thread; never used on a loop thread.
func sleepBriefly(milliseconds: Int) {
    var request = timespec(tv_sec: milliseconds / 1000, tv_nsec: (milliseconds % 1000) * 1_000_000)
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0, errno == EINTR { request = remaining }
}
