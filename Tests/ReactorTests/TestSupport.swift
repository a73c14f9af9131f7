//===----------------------------------------------------------------------===//
// Apus Reactor tests: shared helpers (certificates, waiting, descriptor accounting).
//===----------------------------------------------------------------------===//

import Glibc
import Reactor
import Synchronization

/// A fresh temporary directory, removed by `remove()`.
struct TemporaryDirectory {
    let path: String

    init() {
        var template = Array("/tmp/apus-test-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func remove() {
        var (stack, dirs) = ([path], [String]())
        while let dir = stack.popLast() {
            dirs.append(dir)
            guard let handle = opendir(dir) else { continue }
            while let entry = readdir(handle) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if name == "." || name == ".." { continue }
                if entry.pointee.d_type == UInt8(DT_DIR) { stack.append(dir + "/" + name) } else { unlink(dir + "/" + name) }
            }
            closedir(handle)
        }
        for dir in dirs.reversed() { rmdir(dir) }
    }
}

/// A self-signed certificate and key made for one test.
struct TestCertificate {
    let directory = TemporaryDirectory()
    var certificatePath: String { directory.path + "/cert.pem" }
    var keyPath: String { directory.path + "/key.pem" }

    init(commonName: String = "localhost") throws {
        try SelfSignedCertificate.make(certificatePath: directory.path + "/cert.pem", keyPath: directory.path + "/key.pem",
                                       commonName: commonName)
    }

    func serverContext(alpn: [String] = []) throws -> TLSContextHolder {
        TLSContextHolder(try TLSContext.server(certificateChain: certificatePath, privateKey: keyPath, alpn: alpn))
    }

    func clientContext(alpn: [String] = []) throws -> TLSContext {
        try TLSContext.client(verify: true, caFile: certificatePath, alpn: alpn)
    }
}

/// A count other threads raise and a test waits on with a deadline: the test's only way to
/// synchronise with the loops (no sleeps).
final class Countdown: Sendable {
    private let remaining: Atomic<Int>
    private let semaphore = UnsafeSemaphore()

    init(_ count: Int) { remaining = Atomic(count) }

    func signal() {
        if remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { semaphore.post() }
    }

    var count: Int { remaining.load(ordering: .acquiring) }

    /// True if the count reached zero within `timeout`.
    func wait(timeout: Duration = .seconds(60)) -> Bool {
        if count <= 0 { return true }
        return semaphore.wait(timeout: timeout) || count <= 0
    }
}

final class UnsafeSemaphore: @unchecked Sendable {
    private let pointer = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)
    init() { sem_init(pointer, 0, 0) }
    deinit {
        sem_destroy(pointer)
        pointer.deallocate()
    }
    func post() { sem_post(pointer) }
    func wait(timeout: Duration) -> Bool {
        var deadline = timespec()
        clock_gettime(CLOCK_REALTIME, &deadline)
        let (seconds, attoseconds) = timeout.components
        deadline.tv_sec += Int(seconds)
        deadline.tv_nsec += Int(attoseconds / 1_000_000_000)
        if deadline.tv_nsec >= 1_000_000_000 {
            deadline.tv_sec += 1
            deadline.tv_nsec -= 1_000_000_000
        }
        while true {
            if sem_timedwait(pointer, &deadline) == 0 { return true }
            if errno != EINTR { return false }
        }
    }
}

/// A value shared between the test thread and loop threads.
final class Shared<Value: Sendable>: Sendable {
    private let storage: Mutex<Value>
    init(_ value: Value) { storage = Mutex(value) }
    var value: Value { storage.withLock { $0 } }
    func update<T>(_ body: (inout Value) -> T) -> T { storage.withLock { body(&$0) } }
}

/// The socket, epoll and eventfd descriptors of this process, by their /proc link text
/// (`socket:[inode]`), so a test can show it left none behind.
func openKernelObjects() -> Set<String> {
    var result = Set<String>()
    guard let directory = opendir("/proc/self/fd") else { return result }
    defer { closedir(directory) }
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard name.first?.isNumber == true else { continue }
        var target = [CChar](repeating: 0, count: 256)
        let length = readlink("/proc/self/fd/" + name, &target, target.count - 1)
        guard length > 0 else { continue }
        let text = String(decoding: target[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if text.hasPrefix("socket:") || text.contains("eventpoll") || text.contains("eventfd") {
            result.insert(name + "->" + text)
        }
    }
    return result
}

/// Runs `body` and returns the kernel objects it left open.
func leakedKernelObjects(_ body: () throws -> Void) rethrows -> Set<String> {
    let before = openKernelObjects()
    try body()
    return openKernelObjects().subtracting(before)
}

/// Server side: echoes whatever it reads.
final class EchoHandler: ConnectionHandler {
    func connectionRead(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int {
        connection.write(bytes)
        return bytes.count
    }
}

/// Client side: sends `payload` once connected and checks the echo byte for byte.
final class EchoProbe: ConnectionHandler {
    let payload: [UInt8]
    var received = 0
    var mismatch = false
    let done: Countdown
    let failures: Shared<[String]>

    init(payload: [UInt8], done: Countdown, failures: Shared<[String]>) {
        self.payload = payload
        self.done = done
        self.failures = failures
    }

    func connectionActive(_ connection: Connection) {
        connection.write(payload)
    }

    func connectionRead(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int {
        for byte in bytes {
            if received >= payload.count || payload[received] != byte { mismatch = true }
            received += 1
        }
        if received >= payload.count {
            if mismatch || received != payload.count {
                failures.update { $0.append("echo of \(payload.count) bytes came back as \(received) different bytes") }
            }
            connection.close(.immediately)
        }
        return bytes.count
    }

    func connectionClosed(_ connection: Connection, reason: CloseReason) {
        if received != payload.count || mismatch {
            failures.update { $0.append("closed (\(reason)) after \(received) of \(payload.count) bytes") }
        }
        done.signal()
    }
}

/// Deterministic bytes for a message: a position-dependent pattern, so reordering or loss shows.
func patternBytes(count: Int, seed: Int = 0) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: ($0 &* 31) &+ seed &+ ($0 >> 8)) }
}

/// A plain blocking-socket client for loopback tests, with every wait bounded by poll(2).
final class BlockingClient {
    let descriptor: Int32
    private var closed = false

    struct ConnectError: Error { let errno: Int32 }

    /// Connects to 127.0.0.1:`port`, from `source` (an IPv4 address in host order, bound first)
    /// when given.
    init(port: UInt16, source: UInt32? = nil) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if let source {
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            local.sin_addr.s_addr = source.bigEndian
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if bound != 0 {
                let code = errno
                Glibc.close(descriptor)
                throw ConnectError(errno: code)
            }
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if result != 0 {
            let code = errno
            Glibc.close(descriptor)
            throw ConnectError(errno: code)
        }
    }

    /// A loopback port that nothing listens on (it was bound and released).
    static func unusedPort() throws -> UInt16 {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { Glibc.close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                _ = bind(listener, pointer, length)
                return getsockname(listener, pointer, &length)
            }
        }
        return UInt16(bigEndian: address.sin_port)
    }

    func close() {
        if !closed { Glibc.close(descriptor) }
        closed = true
    }

    func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }

    func send(_ text: String) { send(Array(text.utf8)) }

    private func waitFor(_ events: Int16, timeout: Duration) -> Bool {
        var poller = pollfd(fd: descriptor, events: events, revents: 0)
        let ms = Int32(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        return poll(&poller, 1, ms) > 0
    }

    /// Reads exactly `count` bytes, or what came before a close or 10 seconds of silence.
    func read(count: Int) -> [UInt8] {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while result.count < count, waitFor(Int16(POLLIN), timeout: .seconds(10)) {
            let n = Glibc.recv(descriptor, &chunk, min(chunk.count, count - result.count), 0)
            if n <= 0 { break }
            result += chunk[0..<n]
        }
        return result
    }

    /// Reads until the peer closes (or `timeout` of silence); says whether it closed.
    func readUntilClosed(timeout: Duration) -> (bytes: [UInt8], closed: Bool) {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while waitFor(Int16(POLLIN), timeout: timeout) {
            let n = Glibc.recv(descriptor, &chunk, chunk.count, 0)
            if n <= 0 { return (result, true) }
            result += chunk[0..<n]
        }
        return (result, false)
    }

    /// Writes `bytes` without reading anything back, until the kernel stops taking them for
    /// 300 ms (the peer stopped reading). Returns how many were taken.
    func writeWithoutReading(_ bytes: [UInt8]) -> Int {
        var offset = 0
        while offset < bytes.count, waitFor(Int16(POLLOUT), timeout: .milliseconds(300)) {
            let n = bytes[offset...].withUnsafeBytes {
                Glibc.send(descriptor, $0.baseAddress, min($0.count, 65536), Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            }
            if n <= 0 { continue }
            offset += n
        }
        return offset
    }

    /// Writes `remainder` while reading, until `expecting` bytes have been read in all.
    func exchange(remainder: [UInt8], expecting: Int) -> [UInt8] {
        var received: [UInt8] = []
        received.reserveCapacity(expecting)
        var offset = 0
        var chunk = [UInt8](repeating: 0, count: 65536)
        while received.count < expecting {
            var poller = pollfd(fd: descriptor, events: Int16(POLLIN) | (offset < remainder.count ? Int16(POLLOUT) : 0), revents: 0)
            guard poll(&poller, 1, 10_000) > 0 else { break }
            if poller.revents & Int16(POLLIN) != 0 {
                let n = Glibc.recv(descriptor, &chunk, chunk.count, Int32(MSG_DONTWAIT))
                if n == 0 { break }
                if n > 0 { received += chunk[0..<n] }
            }
            if poller.revents & Int16(POLLOUT) != 0, offset < remainder.count {
                let n = remainder[offset...].withUnsafeBytes {
                    Glibc.send(descriptor, $0.baseAddress, min($0.count, 65536), Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                }
                if n > 0 { offset += n }
            }
        }
        return received
    }
}
