//===----------------------------------------------------------------------===//
// Apus Reactor: what a connection's owner is told.
//===----------------------------------------------------------------------===//

/// Why a connection ended.
public enum CloseReason: Equatable, Sendable {
    /// We closed it (``Connection/close(_:)``).
    case local
    /// The peer closed its side and we closed ours.
    case peerClosed
    /// A read or write failed (reset by peer, broken pipe, …).
    case ioError(IOError)
    /// The TLS handshake or a TLS read or write failed; OpenSSL's words.
    case tlsFailure(String)
    /// The TLS handshake or the connect did not finish in time.
    case handshakeTimeout
    /// Closing with output still queued took longer than the closing grace period.
    case closeTimeout
    /// An outbound connect failed.
    case connectFailed(IOError)
    /// More input was buffered unconsumed than ``ConnectionOptions/maximumBufferedInput``.
    case inputLimit
    /// The event loop shut down with the connection still open past the grace period.
    case shutdown
}

/// The owner of a connection: a session state machine, a proxy relay, a test.
///
/// All calls come on the connection's event loop thread, one at a time. A handler may call
/// any ``Connection`` method from inside a callback, including `close` and `transfer`.
public protocol ConnectionHandler: AnyObject {
    /// The connection carries application bytes: after accept (plain), after the TLS
    /// handshake (implicit TLS), or after an outbound connect (and its handshake). Called once
    /// per connection: a later STARTTLS upgrade is ``connectionTLSEstablished(_:)``.
    func connectionActive(_ connection: Connection)

    /// A ``Connection/startTLS(context:serverName:session:)`` upgrade finished its handshake: the
    /// bytes from now on are protected (a client sends its command again, a session records it).
    func connectionTLSEstablished(_ connection: Connection)

    /// Bytes arrived. Return how many were consumed; the rest is offered again, with what
    /// arrives next, and at once after ``Connection/resumeReading()``. The bytes are valid only
    /// during the call.
    func connectionRead(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int

    /// The peer closed its sending side. Default: close once queued output is written.
    func connectionReadEOF(_ connection: Connection)

    /// Queued output fell below the low-water mark after having passed the high-water mark:
    /// a producer that stopped (a large FETCH) may go on.
    func connectionWritable(_ connection: Connection)

    /// No input arrived for ``Connection/idleTimeout``. Default: close.
    func connectionIdleTimeout(_ connection: Connection)

    /// The connection now lives on another loop (called on the new loop).
    func connectionMoved(_ connection: Connection)

    /// The loop is shutting down gracefully. Default: close once queued output is written.
    func connectionShutdownRequested(_ connection: Connection)

    /// The connection is closed; the last call.
    func connectionClosed(_ connection: Connection, reason: CloseReason)
}

extension ConnectionHandler {
    public func connectionActive(_ connection: Connection) {}
    public func connectionTLSEstablished(_ connection: Connection) {}
    public func connectionReadEOF(_ connection: Connection) { connection.close(.afterFlush) }
    public func connectionWritable(_ connection: Connection) {}
    public func connectionIdleTimeout(_ connection: Connection) { connection.close(.immediately) }
    public func connectionMoved(_ connection: Connection) {}
    public func connectionShutdownRequested(_ connection: Connection) { connection.close(.afterFlush) }
    public func connectionClosed(_ connection: Connection, reason: CloseReason) {}
}

/// Per-connection limits and marks, with defaults for an IMAP server.
public struct ConnectionOptions: Sendable {
    /// Stop reading while queued output is above this many bytes…
    public var highWaterMark: Int = 256 * 1024
    /// …and resume below this many.
    public var lowWaterMark: Int = 64 * 1024
    /// Input kept unconsumed by the handler beyond this closes the connection (``CloseReason/inputLimit``).
    public var maximumBufferedInput: Int = 1024 * 1024
    /// How long a TLS handshake or an outbound connect may take.
    public var handshakeTimeout: Duration = .seconds(30)
    /// How long a connection closing after its output may wait for the peer to read it.
    public var closingGracePeriod: Duration = .seconds(10)
    /// Close a connection with no input for this long (nil: never). Settable per connection.
    public var idleTimeout: Duration? = nil
    /// Where the connection counts its bytes and TLS handshakes (nil: not counted).
    public var counters: ConnectionCounters? = nil

    public init() {}
}
