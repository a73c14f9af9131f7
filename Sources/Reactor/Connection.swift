//===----------------------------------------------------------------------===//
// Apus Reactor: one TCP connection, plain or TLS, owned by one event loop.
//===----------------------------------------------------------------------===//

import CShims
import Glibc

/// A numeric socket address, or the path of a UNIX stream socket.
///
/// A UNIX socket is an address whose `host` is an absolute path (no numeric host starts with
/// `/`) and whose port is 0, so listener specs, connects and pool settings carry it without a
/// second type. A connection accepted on a UNIX listener has the listener's path as its peer:
/// the connecting end has no name of its own, and saying which socket it came through is more
/// honest than a made-up 127.0.0.1.
public struct SocketAddress: Equatable, Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: UInt16
    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }
    /// The UNIX stream socket at `unixPath` (an absolute path).
    public init(unixPath: String) {
        host = unixPath
        port = 0
    }
    /// True for a UNIX socket: only the same user (or root) can reach it.
    public var isUNIX: Bool { host.utf8.first == UInt8(ascii: "/") }
    /// The longest path a UNIX socket may have, in bytes.
    public static var unixPathMaximum: Int { Int(cshim_unix_path_maximum()) }
    init(_ raw: cshim_address) {
        var raw = raw
        host = withUnsafeBytes(of: &raw.host) { bytes in
            String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        }
        port = raw.port
    }
    public var description: String {
        isUNIX ? "unix:\(host)" : host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// A region of an open file to send, after the bytes queued before it. The connection owns
/// the descriptor from then on and closes it when the region is sent or dropped.
struct FileRegion {
    var descriptor: Int32
    var offset: Int64
    var remaining: Int
    var closeWhenDone: Bool
}

/// A TCP connection owned by one ``EventLoop`` (and touched only on its thread), plain or
/// TLS, with a coalescing write path and backpressure.
///
/// Writes are queued and flushed once per loop tick, with `writev` when several chunks wait;
/// EPOLLOUT is armed only when the kernel's buffer is full. Reads are delivered from the
/// loop's shared buffer; only bytes a handler leaves unconsumed are kept per connection, so an
/// idle connection holds no buffer at all.
public final class Connection {
    enum State {
        case connecting
        case handshaking
        case active
        /// Output is being written before the close.
        case closing
        case closed
    }

    /// How to close.
    public enum CloseMode: Sendable {
        /// Write what is queued first (bounded by the closing grace period), then close.
        case afterFlush
        /// Close now, dropping queued output.
        case immediately
    }

    /// The loop that owns this connection now; changes only through ``transfer(to:)``.
    ///
    /// `unowned(unsafe)`: a checked `unowned` reference costs an atomic retain on every access
    /// (11% of the instructions of an echo). It is sound because a loop runs until all its
    /// connections are closed, and every path that touches `loop` first checks that this
    /// connection is open (a closed connection never reaches its loop again). Callers: read it
    /// only while ``isOpen``.
    public internal(set) unowned(unsafe) var loop: EventLoop
    /// The socket. Valid until the connection closes.
    public let descriptor: Int32
    /// The remote address.
    public let peer: SocketAddress
    /// The object told of reads, closes and the rest; replaceable (a session becomes a relay).
    public var handler: ConnectionHandler?

    var slot: UInt32 = 0
    var generation: UInt32 = 0
    var state: State
    var tls: OpaquePointer?
    /// Registered epoll events besides IN|RDHUP|ET (so: whether EPOLLOUT is armed).
    var writeArmed = false
    /// epoll said readable and no read has since returned EAGAIN (or come back short).
    var readable = true
    /// epoll reported the peer's FIN (or an error): reads go on until they return 0, since no
    /// further edge will announce the end of the stream.
    var peerHungUp = false
    var pausedByHandler = false
    var pausedByBackpressure = false
    /// A TLS read wanted a write, or a TLS write wanted a read: retry on the other event.
    var readWantsWrite = false
    var writeWantsRead = false
    /// A write returned EAGAIN: wait for EPOLLOUT before trying again.
    var writeBlocked = false
    var inFlushList = false
    var inReadyList = false
    /// The handler must be offered its unconsumed input again (after resumeReading).
    var redeliver = false
    /// Set by transfer(to:): the move happens once the current callback returns.
    var pendingTransfer: EventLoopHandle?
    var pendingStartTLS: (context: TLSContext, serverName: String?, session: TLSSession?)?
    var isServerSide: Bool

    /// Input the handler left unconsumed.
    var inbound = ByteBuffer()
    /// Output in order: first `outbound`, then `tail` (file regions and whatever follows them).
    var outbound = ByteBuffer()
    var tail: [OutputChunk] = []
    enum OutputChunk {
        case bytes(ByteBuffer)
        case file(FileRegion)
        /// Bytes spliced into this connection's pipe from another connection's socket.
        case pipe(PipeRegion)
    }
    /// Splicing input to another connection (``spliceInput(count:to:)``): the target, the bytes
    /// still to move, and those moved since the handler last asked.
    var spliceTarget: Connection?
    var spliceRemaining = 0
    var splicedInputCount = 0
    /// Splicing output from another connection: the pipe, the bytes in it, and a source waiting
    /// for it to drain (weak: the source may close first; touched once per pipe load only).
    var splicePipe: SplicePipe?
    var pipeQueued = 0
    /// Sources splicing into this connection now: the pipe is kept while any is, or while it
    /// holds bytes, and given back to the kernel after.
    var incomingSplices = 0
    weak var waitingSpliceSource: Connection?
    /// Bytes queued in outbound and tail together.
    public private(set) var queuedOutputBytes = 0

    let options: ConnectionOptions
    /// Close a connection that sends nothing for this long (nil: never).
    public var idleTimeout: Duration? {
        didSet { armConnectionTimer() }
    }
    var lastInput: Deadline
    var handshakeDeadline: Deadline?
    var closeDeadline: Deadline?
    /// The earliest deadline with an entry in the loop's timer heap.
    var timerArmedFor: Deadline?

    init(loop: EventLoop, descriptor: Int32, peer: SocketAddress, state: State, isServerSide: Bool,
         options: ConnectionOptions, handler: ConnectionHandler?) {
        self.loop = loop
        self.descriptor = descriptor
        self.peer = peer
        self.state = state
        self.isServerSide = isServerSide
        self.options = options
        self.handler = handler
        self.idleTimeout = options.idleTimeout
        self.lastInput = loop.now
    }

    // MARK: - Public state

    /// True from creation until the connection is closed (closing included).
    public var isOpen: Bool { state != .closed }
    /// True once TLS carries the connection (after the handshake started).
    public var isTLS: Bool { tls != nil }
    /// The negotiated TLS version ("TLSv1.3"), if any.
    public var tlsVersion: String? { tls.map { String(cString: cshim_tls_version($0)) } }
    /// The SNI host name the client asked for, if any (server side).
    public var tlsServerName: String? {
        guard let tls, let name = cshim_tls_server_name(tls) else { return nil }
        return String(cString: name)
    }
    /// The ALPN protocol agreed, if any.
    public var tlsALPN: String? {
        guard let tls else { return nil }
        var length: UInt32 = 0
        guard let bytes = cshim_tls_alpn(tls, &length), length > 0 else { return nil }
        return String(decoding: UnsafeRawBufferPointer(start: bytes, count: Int(length)), as: UTF8.self)
    }
    /// Whether this (client-side) connection resumed an earlier TLS session.
    public var tlsSessionReused: Bool { tls.map { cshim_tls_session_reused($0) == 1 } ?? false }

    /// The session to offer when reconnecting to the same server (client side; for TLS 1.3,
    /// available once the server's first data has been read).
    public func tlsSessionForResumption() -> TLSSession? {
        guard let tls, let session = cshim_tls_get_session(tls) else { return nil }
        return TLSSession(pointer: session)
    }

    // MARK: - Writing

    /// Queues bytes for writing (copied; flushed at the end of this loop tick).
    public func write(_ bytes: UnsafeRawBufferPointer) {
        guard acceptsOutput, bytes.count > 0 else { return }
        if tail.isEmpty {
            if outbound.capacity == 0 { outbound = loop.takeBuffer() }
            outbound.writeBytes(bytes)
        } else if case .bytes(var last) = tail[tail.count - 1] {
            tail[tail.count - 1] = .bytes(ByteBuffer()) // keep `last` uniquely referenced
            last.writeBytes(bytes)
            tail[tail.count - 1] = .bytes(last)
        } else {
            tail.append(.bytes(ByteBuffer(bytes: bytes)))
        }
        queued(bytes.count)
    }

    /// Queues the bytes of an array.
    public func write(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { write($0) }
    }

    /// Queues the UTF-8 bytes of a string (for fixed replies and tests; hot paths write bytes).
    public func write(_ string: String) {
        var string = string
        string.withUTF8 { write(UnsafeRawBufferPointer($0)) }
    }

    /// Queues a buffer without copying its bytes.
    public func write(_ buffer: ByteBuffer) {
        guard acceptsOutput, buffer.readableBytes > 0 else { return }
        if tail.isEmpty, outbound.readableBytes == 0 {
            loop.recycle(&outbound)
            outbound = buffer
        } else {
            tail.append(.bytes(buffer))
        }
        queued(buffer.readableBytes)
    }

    /// Queues `count` bytes of an open file from `offset`: sent with sendfile(2) on plain
    /// connections, read and encrypted in chunks on TLS ones. The connection takes the
    /// descriptor and closes it when done (or when the connection closes) if
    /// `closeWhenDone`.
    public func writeFile(descriptor fileDescriptor: Int32, offset: Int64, count: Int, closeWhenDone: Bool = true) {
        guard acceptsOutput, count > 0 else {
            if closeWhenDone { Glibc.close(fileDescriptor) }
            return
        }
        tail.append(.file(FileRegion(descriptor: fileDescriptor, offset: offset, remaining: count,
                                     closeWhenDone: closeWhenDone)))
        queued(count)
    }

    var acceptsOutput: Bool {
        switch state {
        case .connecting, .handshaking, .active: return true
        case .closing, .closed: return false
        }
    }

    func queued(_ count: Int) {
        queuedOutputBytes += count
        loop.scheduleFlush(self)
        if !pausedByBackpressure, queuedOutputBytes > options.highWaterMark {
            pausedByBackpressure = true
        }
    }

    // MARK: - Reading control

    /// Stops delivering input (a command is waiting on a worker, say). Input already read
    /// stays buffered; the kernel's buffer then fills and TCP pushes back on the peer.
    public func pauseReading() { pausedByHandler = true }

    /// Delivers input again, starting with what was left unconsumed.
    public func resumeReading() {
        guard pausedByHandler, state != .closed else { return }
        pausedByHandler = false
        redeliver = inbound.readableBytes > 0
        loop.markReady(self)
    }

    var readEnabled: Bool {
        // Nothing is read between a STARTTLS reply and the handshake: those bytes are plaintext.
        state == .active && !pausedByHandler && !pausedByBackpressure && pendingTransfer == nil && pendingStartTLS == nil
    }

    // MARK: - Lifecycle

    /// Closes the connection; the handler's `connectionClosed` follows (at once for
    /// `.immediately`, once output is written for `.afterFlush`).
    public func close(_ mode: CloseMode = .afterFlush) {
        switch state {
        case .closed:
            return
        case .closing:
            if mode == .immediately { finishClose(.local) }
        case .connecting, .handshaking, .active:
            if mode == .immediately || queuedOutputBytes == 0 || state != .active {
                finishClose(.local)
            } else {
                state = .closing
                closeDeadline = loop.now.adding(options.closingGracePeriod)
                armConnectionTimer()
                loop.scheduleFlush(self)
            }
        }
    }

    /// Switches this plain connection to TLS after the output queued so far (the reply to
    /// STARTTLS) is written. Input the handler has not consumed is discarded: bytes a client
    /// pipelined in plaintext after STARTTLS must never be read as if they came over TLS.
    public func startTLS(context: TLSContext, serverName: String? = nil, session: TLSSession? = nil) {
        guard state == .active, tls == nil else { return }
        pendingStartTLS = (context, serverName, session)
        inbound = ByteBuffer()
        discardInputThisCall = true
        loop.scheduleFlush(self)
    }
    /// Set by startTLS inside connectionRead: what the handler did not consume is dropped.
    var discardInputThisCall = false
    /// The handler heard connectionActive: a later handshake is a STARTTLS upgrade.
    var announcedActive = false

    /// Moves this connection, TLS state and buffered bytes included, to another loop once the
    /// current callback returns. The handler hears `connectionMoved` on the new loop. False
    /// (and nothing happens) when it cannot move now: not active, already moving, splicing, or
    /// `target` is its own loop.
    @discardableResult
    public func transfer(to target: EventLoopHandle) -> Bool {
        // A splice ties two connections to this loop; neither moves while it lasts.
        guard state == .active, target !== loop.handle, pendingTransfer == nil, spliceTarget == nil,
              pipeQueued == 0 else { return false }
        pendingTransfer = target
        loop.scheduleTransfer(self)
        return true
    }

    // MARK: - Event handling (loop thread)

    func handle(events: UInt32) {
        let errorOrHangup = events & (CSHIM_EPOLLERR | CSHIM_EPOLLHUP) != 0
        let writableNow = events & CSHIM_EPOLLOUT != 0 || errorOrHangup
        let readableNow = events & (CSHIM_EPOLLIN | CSHIM_EPOLLRDHUP) != 0 || errorOrHangup
        switch state {
        case .closed:
            return
        case .connecting:
            if writableNow { finishConnect() }
            return
        case .handshaking:
            if readableNow { readable = true }
            driveHandshake()
            return
        case .active, .closing:
            break
        }
        // Error and hang-up count as both directions, so whichever side runs sees the failure.
        if writableNow {
            writeBlocked = false
            if readWantsWrite {
                readWantsWrite = false
                performReads()
            }
            if state != .closed, queuedOutputBytes > 0 || pendingStartTLS != nil { flush() }
            if state != .closed, queuedOutputBytes == 0 { setWriteArmed(false) }
        }
        guard state != .closed else { return }
        if readableNow {
            readable = true
            if events & (CSHIM_EPOLLRDHUP | CSHIM_EPOLLERR | CSHIM_EPOLLHUP) != 0 { peerHungUp = true }
            if writeWantsRead {
                writeWantsRead = false
                flush()
            }
            if state == .active { performReads() }
            if state == .closing { drainAndDiscardInput() }
        }
    }

    /// Reads until EAGAIN, a budget of reads, or a pause; hands each chunk to the handler.
    func performReads() {
        if redeliver {
            redeliver = false
            deliverInbound()
        }
        var rounds = 0
        while readEnabled, readable, rounds < 16 {
            rounds += 1
            if spliceTarget != nil {
                if spliceStep() { continue }
                break
            }
            let buffer = loop.readBuffer
            let count: Int
            if let tls {
                let result = Int(cshim_tls_read(tls, buffer.baseAddress, buffer.count))
                if result > 0 {
                    count = result
                } else if result == Int(CSHIM_TLS_WANT_READ) {
                    readable = false
                    break
                } else if result == Int(CSHIM_TLS_WANT_WRITE) {
                    readWantsWrite = true
                    setWriteArmed(true)
                    break
                } else if result == Int(CSHIM_TLS_CLOSED) {
                    peerClosed()
                    break
                } else {
                    finishClose(.tlsFailure(TLSError.last().message))
                    break
                }
            } else {
                let result = Glibc.read(descriptor, buffer.baseAddress, buffer.count)
                if result > 0 {
                    count = result
                    // A short read emptied the socket: epoll (edge-triggered) reports the next
                    // arrival as a new edge, so another read now would only return EAGAIN, one
                    // wasted system call per message (per command, in each direction, for a
                    // relay). Not after a hang-up, whose edge has been consumed: read on to 0.
                    if result < buffer.count && !peerHungUp { readable = false }
                } else if result == 0 {
                    peerClosed()
                    break
                } else if errno == EAGAIN || errno == EWOULDBLOCK {
                    readable = false
                    options.counters?.readFoundNothing()
                    break
                } else if errno == EINTR {
                    continue
                } else {
                    finishClose(.ioError(IOError(errno: errno, call: "read")))
                    break
                }
            }
            lastInput = loop.now
            options.counters?.read(count)
            deliver(UnsafeRawBufferPointer(start: buffer.baseAddress, count: count))
        }
        // Budget spent with input still waiting (in the socket or decrypted inside OpenSSL):
        // edge-triggered epoll will not say so again, so the loop polls this connection next tick.
        if readEnabled, readable || (tls.map { cshim_tls_pending($0) > 0 } ?? false) {
            readable = true
            loop.markReady(self)
        }
    }

    private func deliver(_ bytes: UnsafeRawBufferPointer) {
        guard let handler else { return }
        if inbound.readableBytes == 0 {
            discardInputThisCall = false
            let consumed = handler.connectionRead(self, bytes)
            guard state != .closed, !discardInputThisCall else { return }
            if consumed < bytes.count {
                inbound.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[max(0, consumed)...]))
            }
        } else {
            inbound.writeBytes(bytes)
            deliverInbound()
        }
        if state != .closed, inbound.readableBytes > options.maximumBufferedInput {
            finishClose(.inputLimit)
        }
    }

    private func deliverInbound() {
        guard let handler, inbound.readableBytes > 0 else { return }
        discardInputThisCall = false
        let consumed = inbound.withUnsafeReadableBytes { handler.connectionRead(self, $0) }
        guard state != .closed, !discardInputThisCall else { return }
        inbound.moveReaderIndex(forwardBy: min(max(consumed, 0), inbound.readableBytes))
        if inbound.readableBytes == 0 {
            inbound = ByteBuffer() // an idle connection keeps no input buffer
        } else if inbound.readerIndex > inbound.capacity / 2 {
            inbound.discardReadBytes()
        }
    }

    /// A closing connection still reads (and drops) input, so the peer's writes never block
    /// it from reading our last replies.
    private func drainAndDiscardInput() {
        var rounds = 0
        while state == .closing, readable, rounds < 4 {
            rounds += 1
            let buffer = loop.readBuffer
            let result: Int
            if let tls {
                result = Int(cshim_tls_read(tls, buffer.baseAddress, buffer.count))
                if result <= 0 {
                    if result != Int(CSHIM_TLS_WANT_READ), result != Int(CSHIM_TLS_WANT_WRITE) { finishClose(.peerClosed) }
                    readable = false
                }
            } else {
                result = Glibc.read(descriptor, buffer.baseAddress, buffer.count)
                if result == 0 || (result < 0 && errno != EAGAIN && errno != EINTR) { finishClose(.peerClosed) }
                if result <= 0 { readable = false }
            }
        }
    }

    private func peerClosed() {
        readable = false
        guard let handler, state == .active else {
            finishClose(.peerClosed)
            return
        }
        handler.connectionReadEOF(self)
        // The default handler closes after flushing; one that keeps the connection open must
        // not be polled for reads again.
        if state == .active { pausedByHandler = true }
    }

    // MARK: - Flushing (loop thread, once per tick)

    /// Writes queued output until done or the kernel pushes back; then finishes a pending
    /// close or STARTTLS switch.
    func flush() {
        if !writeBlocked, !writeWantsRead, !readWantsWrite, state == .active || state == .closing {
            if tls != nil { flushTLS() } else { flushPlain() }
        }
        guard state != .closed else { return }
        if queuedOutputBytes == 0 {
            if outbound.capacity > 0 { loop.recycle(&outbound) }
            if state == .closing {
                finishClose(.local)
                return
            }
            if let pending = pendingStartTLS {
                pendingStartTLS = nil
                beginTLS(context: pending.context, isServer: isServerSide, serverName: pending.serverName,
                         session: pending.session)
                return
            }
        }
        if pausedByBackpressure, queuedOutputBytes < options.lowWaterMark {
            pausedByBackpressure = false
            loop.markReady(self)
            handler?.connectionWritable(self)
        }
    }

    private func flushPlain() {
        while queuedOutputBytes > 0 {
            if tail.isEmpty || outbound.readableBytes > 0 || isBytes(tail[0]) {
                // Gather the leading byte chunks into one writev.
                let iov = loop.iovecs
                var count = 0
                var total = 0
                if outbound.readableBytes > 0 {
                    outbound.withUnsafeReadableBytes { iov[0] = iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count) }
                    total += outbound.readableBytes
                    count = 1
                }
                for chunk in tail {
                    guard count < EventLoop.iovecCount, case .bytes(let buffer) = chunk else { break }
                    buffer.withUnsafeReadableBytes { iov[count] = iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count) }
                    total += buffer.readableBytes
                    count += 1
                }
                let written = Glibc.writev(descriptor, iov, Int32(count))
                if written < 0 {
                    if errno == EINTR { continue }
                    if errno == EAGAIN || errno == EWOULDBLOCK { return blockWrites() }
                    return finishClose(.ioError(IOError(errno: errno, call: "writev")))
                }
                consumeOutput(written)
                if written < total { return blockWrites() }
            } else if case .pipe(let region) = tail[0] {
                let sent = cshim_splice(region.pipe.readEnd, descriptor, region.remaining)
                if sent == -Int(EAGAIN) { return blockWrites() }
                // The pipe holds `remaining` bytes by our count: empty or failing, we lost track.
                if sent <= 0 {
                    return finishClose(.ioError(IOError(errno: sent == 0 ? EIO : Int32(-sent), call: "splice")))
                }
                consumeOutput(sent)
            } else if case .file(let region) = tail[0] {
                var offset = region.offset
                let sent = cshim_sendfile(descriptor, region.descriptor, &offset, min(region.remaining, 1 << 30))
                if sent < 0 {
                    if sent == -Int(EAGAIN) { return blockWrites() }
                    return finishClose(.ioError(IOError(errno: Int32(-sent), call: "sendfile")))
                }
                if sent == 0 { return dropFileRegionShortRead(region) }
                consumeOutput(sent) // the file region is at the front: it advances or goes
            }
        }
    }

    private func flushTLS() {
        guard let tls else { return }
        while queuedOutputBytes > 0 {
            var result: Int32
            if outbound.readableBytes > 0 {
                result = outbound.withUnsafeReadableBytes { cshim_tls_write(tls, $0.baseAddress, $0.count) }
            } else if case .bytes(let buffer) = tail[0] {
                result = buffer.withUnsafeReadableBytes { cshim_tls_write(tls, $0.baseAddress, $0.count) }
            } else if case .pipe = tail[0] {
                // spliceInput refuses TLS targets and STARTTLS waits for the queue to empty.
                return finishClose(.ioError(IOError(errno: EINVAL, call: "splice to a TLS connection")))
            } else if case .file(let region) = tail[0] {
                // Encrypting needs the bytes in memory: read a record's worth at a time. After a
                // want-write the same bytes are read again from the same offset.
                let buffer = loop.readBuffer
                let chunk = min(region.remaining, 16 * 1024, buffer.count)
                let got = pread(region.descriptor, buffer.baseAddress, chunk, off_t(region.offset))
                if got < 0, errno == EINTR { continue }
                if got <= 0 { return dropFileRegionShortRead(region) }
                result = cshim_tls_write(tls, buffer.baseAddress, got)
            } else {
                return
            }
            if result > 0 {
                consumeOutput(Int(result))
            } else if result == CSHIM_TLS_WANT_WRITE {
                return blockWrites()
            } else if result == CSHIM_TLS_WANT_READ {
                writeWantsRead = true
                return
            } else {
                return finishClose(result == CSHIM_TLS_CLOSED ? .peerClosed : .tlsFailure(TLSError.last().message))
            }
        }
    }

    private func isBytes(_ chunk: OutputChunk) -> Bool {
        if case .bytes = chunk { return true }
        return false
    }

    /// Removes `count` written bytes from the front of the queue (outbound, then tail).
    private func consumeOutput(_ count: Int) {
        var left = count
        queuedOutputBytes -= count
        options.counters?.wrote(count)
        let fromOutbound = min(left, outbound.readableBytes)
        if fromOutbound > 0 {
            outbound.moveReaderIndex(forwardBy: fromOutbound)
            left -= fromOutbound
        }
        while left > 0, !tail.isEmpty {
            switch tail[0] {
            case .bytes(var buffer):
                let part = min(left, buffer.readableBytes)
                tail[0] = .bytes(ByteBuffer())
                buffer.moveReaderIndex(forwardBy: part)
                left -= part
                if buffer.readableBytes == 0 { tail.removeFirst() } else { tail[0] = .bytes(buffer) }
            case .file(var region):
                let part = min(left, region.remaining)
                region.offset += Int64(part)
                region.remaining -= part
                left -= part
                if region.remaining == 0 {
                    if region.closeWhenDone { Glibc.close(region.descriptor) }
                    tail.removeFirst()
                } else {
                    tail[0] = .file(region)
                }
            case .pipe(var region):
                let part = min(left, region.remaining)
                region.remaining -= part
                left -= part
                if region.remaining == 0 { tail.removeFirst() } else { tail[0] = .pipe(region) }
                pipeDrained(part)
            }
        }
    }

    /// A file shorter than promised (truncated under us): the reply would be framed wrong, so
    /// the connection cannot go on.
    private func dropFileRegionShortRead(_ region: FileRegion) {
        finishClose(.ioError(IOError(errno: EIO, call: "read of a file region (file shorter than announced)")))
    }

    private func blockWrites() {
        writeBlocked = true
        setWriteArmed(true)
    }

    func setWriteArmed(_ armed: Bool) {
        guard armed != writeArmed, state != .closed else { return }
        writeArmed = armed
        loop.updateInterest(self)
    }

    // MARK: - Connect and handshake

    private func finishConnect() {
        let error = cshim_socket_error(descriptor)
        guard error == 0 else {
            return finishClose(.connectFailed(IOError(errno: error, call: "connect to \(peer)")))
        }
        if !peer.isUNIX { _ = cshim_set_nodelay(descriptor) } // TCP only: AF_UNIX has no Nagle
        setWriteArmed(false)
        if let pending = pendingStartTLS {
            pendingStartTLS = nil
            beginTLS(context: pending.context, isServer: false, serverName: pending.serverName, session: pending.session)
        } else {
            becomeActive()
        }
    }

    func beginTLS(context: TLSContext, isServer: Bool, serverName: String?, session: TLSSession?) {
        guard let tls = cshim_tls_new(context.pointer, descriptor, isServer ? 1 : 0, serverName, session?.pointer) else {
            return finishClose(.tlsFailure(TLSError.last().message))
        }
        self.tls = tls
        state = .handshaking
        readable = true
        handshakeDeadline = loop.now.adding(options.handshakeTimeout)
        armConnectionTimer()
        driveHandshake()
    }

    private func driveHandshake() {
        guard let tls else { return }
        let result = cshim_tls_handshake(tls)
        if result == 0 {
            handshakeDeadline = nil
            options.counters?.handshakeCompleted()
            setWriteArmed(false)
            becomeActive()
        } else if result == CSHIM_TLS_WANT_READ {
            setWriteArmed(false)
        } else if result == CSHIM_TLS_WANT_WRITE {
            setWriteArmed(true)
        } else {
            finishClose(.tlsFailure(TLSError.last().message))
        }
    }

    private func becomeActive() {
        state = .active
        readable = true
        handshakeDeadline = nil
        if announcedActive {
            handler?.connectionTLSEstablished(self)
        } else {
            announcedActive = true
            handler?.connectionActive(self)
        }
        if state == .active {
            if queuedOutputBytes > 0 { loop.scheduleFlush(self) }
            loop.markReady(self)
        }
    }

    // MARK: - Timers

    /// The earliest of the idle, handshake and closing deadlines.
    var nextDeadline: Deadline? {
        var earliest: Deadline? = nil
        if let idleTimeout, state == .active { earliest = lastInput.adding(idleTimeout) }
        if let handshakeDeadline { earliest = min(earliest ?? handshakeDeadline, handshakeDeadline) }
        if let closeDeadline { earliest = min(earliest ?? closeDeadline, closeDeadline) }
        return earliest
    }

    /// Makes sure the loop's heap holds an entry no later than our next deadline. Entries
    /// are never removed: a stale one finds nothing due and re-arms (lazy deletion).
    func armConnectionTimer() {
        guard state != .closed, let deadline = nextDeadline else { return }
        if let armed = timerArmedFor, armed <= deadline { return }
        timerArmedFor = deadline
        loop.timers.insert(deadline, .connection(slot: slot, generation: generation))
    }

    func connectionTimerFired(now: Deadline) {
        timerArmedFor = nil
        if let handshakeDeadline, handshakeDeadline <= now {
            return finishClose(.handshakeTimeout)
        }
        if let closeDeadline, closeDeadline <= now {
            return finishClose(.closeTimeout)
        }
        if let idleTimeout, state == .active, lastInput.adding(idleTimeout) <= now {
            lastInput = now // one notice per idle period if the handler keeps the connection
            handler?.connectionIdleTimeout(self)
        }
        armConnectionTimer()
    }

    // MARK: - Closing

    func finishClose(_ reason: CloseReason) {
        guard state != .closed else { return }
        let wasActive = state == .active || state == .closing
        // Every way out of a handshake but success (OpenSSL error, timeout, peer gone) lands here.
        if state == .handshaking { options.counters?.handshakeFailed() }
        state = .closed
        if let tls {
            // A courtesy close_notify when we end a healthy session; never waited for.
            if reason == .local, wasActive { _ = cshim_tls_shutdown(tls) }
            cshim_tls_free(tls)
            self.tls = nil
        }
        for case .file(let region) in tail where region.closeWhenDone { Glibc.close(region.descriptor) }
        tail = []
        releaseSplicing()
        loop.recycle(&outbound)
        inbound = ByteBuffer()
        queuedOutputBytes = 0
        loop.unregister(self, closing: true)
        Glibc.close(descriptor)
        let handler = self.handler
        self.handler = nil // break the usual handler <-> connection cycle
        handler?.connectionClosed(self, reason: reason)
    }
}
