//===----------------------------------------------------------------------===//
// Apus Reactor: TLS contexts, certificate reload and client sessions.
//===----------------------------------------------------------------------===//

import CShims
import Synchronization

/// A TLS failure with OpenSSL's own words for it.
public struct TLSError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }

    /// The calling thread's last TLS error text (read it right after the failing call).
    static func last() -> TLSError {
        var text = [CChar](repeating: 0, count: 256)
        cshim_tls_last_error(&text, text.count)
        return TLSError(String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
}

/// A configured OpenSSL context (server or client side).
///
/// Sendable because an `SSL_CTX` is thread-safe once configured, and this type never
/// configures it after creation: reloading a certificate makes a new context (see
/// ``TLSContextHolder``). Connections made from it hold their own reference, so dropping
/// this object never pulls the context from under a live connection.
public final class TLSContext: @unchecked Sendable {
    let pointer: OpaquePointer
    /// True for a server-side context.
    public let isServer: Bool

    private init(pointer: OpaquePointer, isServer: Bool) {
        self.pointer = pointer
        self.isServer = isServer
    }

    deinit { cshim_tls_context_free(pointer) }

    /// A server context from a PEM certificate chain and key; TLS 1.2 minimum.
    /// - Parameters:
    ///   - alpn: protocol names to accept (e.g. `["imap"]`); a client offering ALPN must offer
    ///     one of them. Empty: ALPN ignored.
    ///   - serverNames: other server contexts by SNI host name: a client asking for
    ///     `mail.example.org` gets that context's certificate; any other name gets this one.
    public static func server(certificateChain: String, privateKey: String, alpn: [String] = [],
                              serverNames: [String: TLSContext] = [:]) throws(TLSError) -> TLSContext {
        var error = [CChar](repeating: 0, count: 256)
        let wire = alpnWireFormat(alpn)
        let pointer = wire.withUnsafeBufferPointer { alpnBytes in
            cshim_tls_server_context(certificateChain, privateKey, alpnBytes.baseAddress, alpnBytes.count, &error, error.count)
        }
        guard let pointer else { throw TLSError(string(fromC: error)) }
        let context = TLSContext(pointer: pointer, isServer: true)
        for (name, alternative) in serverNames where alternative.isServer {
            guard cshim_tls_server_context_add_name(pointer, name, alternative.pointer) == 0 else {
                throw TLSError("out of memory adding the certificate for \(name)")
            }
        }
        return context
    }

    /// A client context; TLS 1.2 minimum.
    /// - Parameters:
    ///   - verify: check the server's chain and name (against `caFile`, or the system store).
    ///   - alpn: protocol names to offer.
    public static func client(verify: Bool, caFile: String? = nil, alpn: [String] = []) throws(TLSError) -> TLSContext {
        var error = [CChar](repeating: 0, count: 256)
        let wire = alpnWireFormat(alpn)
        let pointer = wire.withUnsafeBufferPointer { alpnBytes in
            cshim_tls_client_context(verify ? 1 : 0, caFile, alpnBytes.baseAddress, alpnBytes.count, &error, error.count)
        }
        guard let pointer else { throw TLSError(string(fromC: error)) }
        return TLSContext(pointer: pointer, isServer: false)
    }

    private static func alpnWireFormat(_ names: [String]) -> [UInt8] {
        var wire: [UInt8] = []
        for name in names where !name.isEmpty && name.utf8.count < 256 {
            wire.append(UInt8(name.utf8.count))
            wire.append(contentsOf: name.utf8)
        }
        return wire
    }
}

func string(fromC text: [CChar]) -> String {
    String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// The current server context of a listener, replaceable at run time: a reload swaps in a new
/// context for new connections while existing ones finish on the old one.
public final class TLSContextHolder: Sendable {
    private let context: Mutex<TLSContext>

    public init(_ context: TLSContext) { self.context = Mutex(context) }

    /// The context new connections use.
    public var current: TLSContext { context.withLock { $0 } }

    /// Replaces the context for connections accepted from now on.
    public func replace(with newContext: TLSContext) { context.withLock { $0 = newContext } }
}

/// A TLS session a client can offer to resume on its next connection to the same server,
/// saving the full handshake (the proxy hop reconnects often).
///
/// Sendable because an `SSL_SESSION` is reference-counted by OpenSSL and not changed once
/// the handshake that made it is over.
public final class TLSSession: @unchecked Sendable {
    let pointer: OpaquePointer
    init(pointer: OpaquePointer) { self.pointer = pointer }
    deinit { cshim_tls_session_free(pointer) }
}

/// Certificate files made without the openssl command-line tool.
public enum SelfSignedCertificate {
    /// Writes a new EC P-256 self-signed certificate for `commonName` (also valid for
    /// localhost, 127.0.0.1 and ::1) and its key (mode 0600).
    public static func make(certificatePath: String, keyPath: String, commonName: String = "localhost",
                            days: Int32 = 825) throws(TLSError) {
        var error = [CChar](repeating: 0, count: 256)
        if cshim_tls_make_self_signed(certificatePath, keyPath, commonName, days, &error, error.count) != 0 {
            throw TLSError(string(fromC: error))
        }
    }
}
