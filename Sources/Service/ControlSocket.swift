//===----------------------------------------------------------------------===//
// Apus Service: the control socket (a Unix socket in run_dir) and systemd's notify socket.
//===----------------------------------------------------------------------===//

import CShims
import Glibc
import Reactor

/// Unix domain socket addresses and calls.
enum UnixSocket {
    /// `path` as a socket address; a leading `@` names an abstract socket (systemd may hand
    /// one out in NOTIFY_SOCKET). Nil when the path is too long for `sun_path`.
    static func address(_ path: String) -> (sockaddr_un, socklen_t)? {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        let abstract = bytes.first == UInt8(ascii: "@")
        if abstract { bytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard !bytes.isEmpty, bytes.count < capacity else { return nil }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        let base = MemoryLayout<sockaddr_un>.offset(of: \.sun_path)!
        // An abstract name is exactly its bytes; a path carries its terminating NUL.
        return (address, socklen_t(base + bytes.count + (abstract ? 0 : 1)))
    }

    /// A listening, blocking stream socket at `path`, mode 0600 from the start, and the file's
    /// identity (for ``UNIXSocketIdentity/removeFile(at:)``). A leftover socket file is replaced
    /// when stale (the caller holds the pid file lock, so it can only be a dead service's); a
    /// file, directory or symlink there is left and refused (see `cshim_listen_unix`).
    static func listen(path: String) throws(ServiceStartError) -> (Int32, UNIXSocketIdentity) {
        var identity = UNIXSocketIdentity(device: 0, inode: 0)
        let descriptor = cshim_listen_unix(path, 16, &identity.device, &identity.inode)
        guard descriptor >= 0 else {
            switch -descriptor {
            case ENAMETOOLONG: throw ServiceStartError("control socket path too long: \(path)")
            case ENOTSOCK: throw ServiceStartError("cannot bind control socket \(path): a file that is not a socket is there")
            default:
                throw ServiceStartError("cannot bind control socket \(path): \(String(cString: strerror(-descriptor)))")
            }
        }
        // The control thread's accept blocks.
        let flags = fcntl(descriptor, F_GETFL)
        guard flags >= 0, fcntl(descriptor, F_SETFL, flags & ~O_NONBLOCK) == 0 else {
            let code = errno
            close(descriptor)
            identity.removeFile(at: path)
            throw ServiceStartError("control socket \(path): fcntl: \(String(cString: strerror(code)))")
        }
        return (descriptor, identity)
    }

    /// A connected stream socket to `path` with send and receive timeouts, or nil.
    static func connect(path: String, timeout: Duration) -> Int32? {
        guard let resolved = address(path) else { return nil }
        var (address, length) = (resolved.0, resolved.1)
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { return nil }
        setTimeouts(descriptor, timeout)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(descriptor, $0, length) }
        }
        guard connected == 0 else {
            close(descriptor)
            return nil
        }
        return descriptor
    }

    static func setTimeouts(_ descriptor: Int32, _ timeout: Duration) {
        let (seconds, attoseconds) = timeout.components
        var value = timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Reads until EOF (or `limit` bytes, or the receive timeout).
    static func readAll(_ descriptor: Int32, limit: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < limit {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            if count <= 0 { break }
            bytes += chunk[0..<count]
        }
        return bytes
    }

    /// Reads one line (without its LF), at most `limit` bytes.
    static func readLine(_ descriptor: Int32, limit: Int) -> String? {
        var bytes: [UInt8] = []
        var byte: UInt8 = 0
        while bytes.count < limit {
            let count = read(descriptor, &byte, 1)
            if count < 0, errno == EINTR { continue }
            if count <= 0 { return nil }
            if byte == UInt8(ascii: "\n") { return String(decoding: bytes, as: UTF8.self).trimmingSuffix("\r") }
            bytes.append(byte)
        }
        return nil
    }
}

/// The control socket of a running service: one request line per connection (`status`,
/// `reload`, `stop`), one reply, then close. Served on its own thread, so it answers while the
/// service is still starting (`Starting`) or stopping.
///
/// ```
/// C: status
/// S: {"service":"imap4be","state":"Running","pid":4242,…}
/// ```
final class ControlServer: Sendable {
    let path: String
    private let descriptor: Int32
    private let identity: UNIXSocketIdentity

    /// Binds `path`; requests are answered by `respond` on the control thread.
    init(path: String, respond: @escaping @Sendable (String) -> String) throws(ServiceStartError) {
        self.path = path
        let (descriptor, identity) = try UnixSocket.listen(path: path)
        self.descriptor = descriptor
        self.identity = identity
        startDetachedThread {
            while true {
                let client = accept(descriptor, nil, nil)
                if client < 0 {
                    if errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE { continue }
                    return  // closed at exit
                }
                _ = fcntl(client, F_SETFD, FD_CLOEXEC)
                UnixSocket.setTimeouts(client, .seconds(5))
                if let request = UnixSocket.readLine(client, limit: 256) {
                    let reply = Array((respond(request.trimmedASCIIWhitespace) + "\n").utf8)
                    reply.withUnsafeBufferPointer { _ = writeAll(client, $0) }
                }
                close(client)
            }
        }
    }

    /// Removes the socket file (at exit), unless another file has replaced it since.
    func remove() { identity.removeFile(at: path) }

    /// Sends `request` to the control socket at `path`; nil when nobody answers.
    static func request(_ request: String, path: String, timeout: Duration = .seconds(10)) -> String? {
        guard let descriptor = UnixSocket.connect(path: path, timeout: timeout) else { return nil }
        defer { close(descriptor) }
        let line = Array((request + "\n").utf8)
        guard line.withUnsafeBufferPointer({ writeAll(descriptor, $0) }) else { return nil }
        let reply = UnixSocket.readAll(descriptor, limit: 1 << 20)
        guard !reply.isEmpty else { return nil }
        return String(decoding: reply, as: UTF8.self).trimmingSuffix("\n")
    }
}

/// Tells systemd about the service's state (`READY=1`, `STOPPING=1`, `STATUS=…`, `RELOADING=1`)
/// over the datagram socket named in `NOTIFY_SOCKET`, as `sd_notify(3)` does, without libsystemd.
enum SystemdNotifier {
    /// Sends `state`; does nothing when not started by systemd with `Type=notify`.
    @discardableResult
    static func notify(_ state: String) -> Bool {
        guard let variable = getenv("NOTIFY_SOCKET") else { return false }
        let path = String(cString: variable)
        guard path.hasPrefix("/") || path.hasPrefix("@"), let resolved = UnixSocket.address(path) else {
            return false
        }
        var (address, length) = (resolved.0, resolved.1)
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        let message = Array(state.utf8)
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                message.withUnsafeBytes {
                    sendto(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), socketAddress, length)
                }
            }
        }
        return sent == message.count
    }
}

/// Runs `body` on a new detached POSIX thread (the control socket, the signal waiter).
func startDetachedThread(_ body: @escaping @Sendable () -> Void) {
    final class Box {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    let result = pthread_create(
        &thread, nil,
        { argument in
            Unmanaged<Box>.fromOpaque(argument!).takeRetainedValue().body()
            return nil
        }, box)
    if result == 0 {
        pthread_detach(thread)
    } else {
        // Out of threads at start-up: run nothing rather than trap; the caller's socket stays
        // unanswered and `apus status` reports the service as not responding.
        Unmanaged<Box>.fromOpaque(box).release()
    }
}
