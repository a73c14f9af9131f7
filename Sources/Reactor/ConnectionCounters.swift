//===----------------------------------------------------------------------===//
// Apus Reactor: traffic and TLS handshake counts shared by the connections of a listener.
//===----------------------------------------------------------------------===//

import Synchronization

/// Counts kept by the reactor for every connection whose ``ConnectionOptions/counters`` points
/// here (typically all connections of one service's listeners), read from any thread by the
/// service's metrics.
///
/// The connection itself counts (one relaxed atomic add per read, write or handshake) so a
/// service gets bytes and handshakes without its handler seeing every read and write.
public final class ConnectionCounters: Sendable {
    private let handshakesCompleted = Atomic<UInt64>(0)
    private let handshakesFailed = Atomic<UInt64>(0)
    private let bytesReceived = Atomic<UInt64>(0)
    private let bytesSent = Atomic<UInt64>(0)
    private let readsWithoutData = Atomic<UInt64>(0)

    public init() {}

    /// TLS handshakes that finished (implicit TLS and STARTTLS).
    public var tlsHandshakesCompleted: UInt64 { handshakesCompleted.load(ordering: .relaxed) }
    /// TLS handshakes that failed or did not finish in time.
    public var tlsHandshakesFailed: UInt64 { handshakesFailed.load(ordering: .relaxed) }
    /// Bytes read from the peers (after TLS decryption).
    public var bytesRead: UInt64 { bytesReceived.load(ordering: .relaxed) }
    /// Bytes written to the peers (before TLS encryption), file regions included.
    public var bytesWritten: UInt64 { bytesSent.load(ordering: .relaxed) }
    /// Plain reads that found the socket empty (EAGAIN): system calls that moved nothing. A
    /// relay pays them per command in each direction unless a short read ends the round.
    public var emptyReads: UInt64 { readsWithoutData.load(ordering: .relaxed) }

    func handshakeCompleted() { handshakesCompleted.wrappingAdd(1, ordering: .relaxed) }
    func handshakeFailed() { handshakesFailed.wrappingAdd(1, ordering: .relaxed) }
    func read(_ count: Int) { bytesReceived.wrappingAdd(UInt64(count), ordering: .relaxed) }
    func wrote(_ count: Int) { bytesSent.wrappingAdd(UInt64(count), ordering: .relaxed) }
    func readFoundNothing() { readsWithoutData.wrappingAdd(1, ordering: .relaxed) }
}
