//===----------------------------------------------------------------------===//
// Apus Reactor: one event loop per core, each on its own thread.
//===----------------------------------------------------------------------===//

import CShims
import Glibc
import Synchronization

/// A set of event loops, one per thread, sharing listeners through SO_REUSEPORT, plus a
/// worker pool for blocking work.
///
/// ```swift
/// let group = try EventLoopGroup(loopCount: 2)
/// let port = try group.listen(ListenerSpec(host: "127.0.0.1", port: 0) { _ in MySession() })
/// …
/// group.shutdown(gracePeriod: .seconds(5))
/// ```
public final class EventLoopGroup: Sendable {
    /// The loops' handles, by index.
    public let loops: [EventLoopHandle]
    /// The worker pool the loops' `runBlocking` uses.
    public let workers: WorkerPool
    private let threads: Mutex<[JoinableThread]>
    private let nextLoop = Atomic<Int>(0)
    /// The UNIX listeners' socket files this group made, by path.
    private let unixSockets = Mutex<[String: UNIXSocketIdentity]>([:])

    /// Starts `loopCount` loops (default: one per core), `workerCount` storage workers and
    /// `computeWorkerCount` compute workers (default: one per core, as hashing is CPU-bound).
    ///
    /// Sets SIGPIPE to ignored for the process: writev, sendfile and OpenSSL's write(2) to a peer that
    /// has gone raise it, and a vanished peer must cost its connection (EPIPE), not the process.
    public init(loopCount: Int = EventLoopGroup.coreCount, workerCount: Int = 4,
                computeWorkerCount: Int = EventLoopGroup.coreCount, name: String = "apus") throws(IOError) {
        signal(SIGPIPE, SIG_IGN)
        _ = cshim_raise_nofile_limit(0) // as many descriptors as the hard limit allows
        var handles: [EventLoopHandle] = []
        for index in 0..<max(1, loopCount) { handles.append(try EventLoopHandle(index: index)) }
        loops = handles
        workers = WorkerPool(threadCount: workerCount, computeThreadCount: computeWorkerCount, name: "\(name)-work")
        let workers = self.workers
        var started: [JoinableThread] = []
        for handle in handles {
            started.append(JoinableThread(name: "\(name)-loop-\(handle.index)") {
                // epoll_create fails only when out of descriptors or memory at start-up; the
                // loop then stops at once and its tasks are dropped.
                guard let loop = try? EventLoop(handle: handle, workers: workers) else {
                    handle.stopped.store(true, ordering: .releasing)
                    return
                }
                loop.run()
            })
        }
        threads = Mutex(started)
    }

    /// Online processors.
    public static var coreCount: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    /// The next loop in turn, for spreading outbound connections.
    public func next() -> EventLoopHandle {
        loops[nextLoop.wrappingAdd(1, ordering: .relaxed).oldValue % loops.count]
    }

    /// Opens one listener per loop on `spec.host`:`spec.port` with SO_REUSEPORT and returns
    /// the port (the chosen one when `spec.port` is 0). Sockets are listening when this
    /// returns, so clients may connect at once.
    ///
    /// A port any other socket listens on fails with `EADDRINUSE` (call `listen on ADDRESS`),
    /// even another process's SO_REUSEPORT listener, which the kernel would otherwise let the
    /// new listeners share silently; unless `spec.sharedWithOtherProcesses` asks for that.
    ///
    /// A spec whose host is an absolute path makes a UNIX stream socket there instead (mode 0600,
    /// a stale file replaced: see `cshim_listen_unix`), shared by every loop through a duplicate
    /// descriptor each, since SO_REUSEPORT does not spread AF_UNIX connections. The caller
    /// removes the file when it is done with it (``removeUNIXSocket(_:)``).
    @discardableResult
    public func listen(_ spec: ListenerSpec) throws(IOError) -> UInt16 {
        if SocketAddress(host: spec.host, port: spec.port).isUNIX {
            try listenUNIX(spec)
            return 0
        }
        var port = spec.port
        if port != 0 && !spec.sharedWithOtherProcesses {
            // Probed without SO_REUSEPORT first. A narrow race remains (another server binding
            // between the probe and our bind), which only two servers starting at once can hit.
            let probe = cshim_probe_tcp_address(spec.host, port)
            guard probe == 0 else {
                throw IOError(errno: -probe, call: Self.listenCall(SocketAddress(host: spec.host, port: port)))
            }
        }
        var descriptors: [Int32] = []
        for _ in loops {
            let result = cshim_listen_tcp(spec.host, port, spec.backlog, 1)
            guard result >= 0 else {
                for descriptor in descriptors { Glibc.close(descriptor) }
                throw IOError(errno: -result, call: Self.listenCall(SocketAddress(host: spec.host, port: port)))
            }
            if port == 0 {
                var address = cshim_address()
                _ = cshim_local_address(result, &address)
                port = address.port
            }
            descriptors.append(result)
        }
        for (handle, descriptor) in zip(loops, descriptors) {
            var perLoop = spec
            perLoop.port = port
            let finalSpec = perLoop
            handle.execute { loop in loop.addListener(descriptor: descriptor, spec: finalSpec) }
        }
        return port
    }

    private func listenUNIX(_ spec: ListenerSpec) throws(IOError) {
        let call = Self.listenCall(SocketAddress(unixPath: spec.host))
        var identity = UNIXSocketIdentity(device: 0, inode: 0)
        let first = Int32(try IOError.check(cshim_listen_unix(spec.host, spec.backlog, &identity.device, &identity.inode),
                                            call))
        var descriptors = [first]
        for _ in loops.dropFirst() {
            // Each loop closes its own listener descriptor; the socket closes with the last one.
            let duplicate = fcntl(first, F_DUPFD_CLOEXEC, 0)
            guard duplicate >= 0 else {
                let error = IOError(errno: errno, call: call)
                for descriptor in descriptors { Glibc.close(descriptor) }
                identity.removeFile(at: spec.host)
                throw error
            }
            descriptors.append(duplicate)
        }
        unixSockets.withLock { $0[spec.host] = identity }
        for (handle, descriptor) in zip(loops, descriptors) {
            handle.execute { loop in loop.addListener(descriptor: descriptor, spec: spec) }
        }
    }

    /// Removes the socket file of a UNIX listener this group made, at a clean stop, so no
    /// stale file outlives the server; but only while the file at `path` is still the one it
    /// made: another instance that has since replaced it keeps its own (a missing file is fine).
    public func removeUNIXSocket(_ path: String) {
        guard let identity = unixSockets.withLock({ $0.removeValue(forKey: path) }) else { return }
        identity.removeFile(at: path)
    }

    /// The `call` of a listener's ``IOError``: `listen on 0.0.0.0:1143`.
    public static func listenCall(_ address: SocketAddress) -> String { "listen on \(address)" }

    /// The address in a listener's ``IOError`` (see ``listenCall(_:)``), nil for other errors.
    public static func listenAddress(of error: IOError) -> String? {
        let prefix = "listen on "
        return error.call.hasPrefix(prefix) ? String(error.call.dropFirst(prefix.count)) : nil
    }

    /// Closes the listeners bound to `addresses` on every loop and returns once each loop has
    /// closed them: no connection to those addresses is accepted after this returns (one
    /// still in a closed listener's backlog is reset). Other listeners stay open.
    ///
    /// From a loop thread, that loop's listeners close just after the calling task returns
    /// (a loop cannot wait for itself); the other loops' are closed on return.
    public func closeListeners(_ addresses: [SocketAddress]) {
        runOnEveryLoopAndWait { loop in loop.closeListeners(matching: addresses) }
    }

    /// Begins every loop's graceful shutdown (see ``EventLoop/beginShutdown(gracePeriod:)``) and
    /// returns once each loop has closed its listeners, so nothing is accepted after this returns;
    /// the loops go on finishing their connections. Same rule for loop threads as
    /// ``closeListeners(_:)``.
    public func beginShutdown(gracePeriod: Duration) {
        runOnEveryLoopAndWait { loop in loop.beginShutdown(gracePeriod: gracePeriod) }
    }

    /// Runs `task` on every loop and waits until each has run it or has stopped (a stopped loop
    /// drops its tasks, and closed its listeners on the way out).
    private func runOnEveryLoopAndWait(_ task: @escaping @Sendable (EventLoop) -> Void) {
        let barrier = LoopBarrier(loopCount: loops.count)
        let current = pthread_self()
        for handle in loops {
            let index = handle.index
            handle.execute { loop in
                task(loop)
                barrier.arrive(index)
            }
            if handle.thread.load(ordering: .acquiring) == UInt(current) { barrier.arrive(index) }
        }
        barrier.wait { index in self.loops[index].stopped.load(ordering: .acquiring) }
    }

    /// Shuts every loop down gracefully (see ``EventLoop/beginShutdown(gracePeriod:)``), then
    /// the workers, and returns when all threads have ended. Never call it from a loop thread.
    public func shutdown(gracePeriod: Duration = .seconds(5)) {
        for handle in loops { handle.execute { loop in loop.beginShutdown(gracePeriod: gracePeriod) } }
        let started = threads.withLock { threads in
            let all = threads
            threads = []
            return all
        }
        for thread in started { thread.join() }
        workers.shutdown()
    }
}

/// Lets a thread outside the loops wait until every loop has run a task: each arrival wakes the
/// waiter through an eventfd.
final class LoopBarrier: Sendable {
    private let arrived: Mutex<[Bool]>
    private let wakeDescriptor: Int32

    init(loopCount: Int) {
        arrived = Mutex(Array(repeating: false, count: loopCount))
        wakeDescriptor = cshim_eventfd()
    }

    deinit { if wakeDescriptor >= 0 { Glibc.close(wakeDescriptor) } }

    func arrive(_ index: Int) {
        arrived.withLock { $0[index] = true }
        if wakeDescriptor >= 0 { _ = cshim_eventfd_signal(wakeDescriptor) }
    }

    /// Returns when every loop has arrived or `hasStopped` says it never will.
    func wait(hasStopped: (Int) -> Bool) {
        while true {
            let missing = arrived.withLock { flags in flags.indices.filter { !flags[$0] } }
            if missing.allSatisfy(hasStopped) { return }
            // Woken by each arrival; the timeout only re-checks for a loop that stopped meanwhile.
            var entry = pollfd(fd: wakeDescriptor, events: Int16(POLLIN), revents: 0)
            _ = poll(&entry, 1, wakeDescriptor >= 0 ? 100 : 10)
            if wakeDescriptor >= 0 { _ = cshim_eventfd_drain(wakeDescriptor) }
        }
    }
}

/// Which file a UNIX listener's socket is (st_dev, st_ino), recorded right after bind
/// (`cshim_listen_unix` reports it), so that removing it leaves a file that has replaced it.
public struct UNIXSocketIdentity: Sendable, Equatable {
    public var device: UInt64
    public var inode: UInt64

    public init(device: UInt64, inode: UInt64) {
        self.device = device
        self.inode = inode
    }

    /// Unlinks `path` when it is still this file.
    public func removeFile(at path: String) {
        var status = stat()
        guard lstat(path, &status) == 0, UInt64(status.st_dev) == device, UInt64(status.st_ino) == inode else { return }
        _ = unlink(path)
    }
}
