// IMAPBackend: the back end's configuration (listeners, TLS, limits, timeouts, trusted proxies).

import Glibc
import IMAPProtocol
import MailStore
import Telemetry
import Reactor

/// A listening address of the back end.
public struct BackendListener: Sendable, Equatable {
    /// Numeric address to bind ("127.0.0.1", "0.0.0.0", "::").
    public var host: String
    /// Port; 0 picks an ephemeral one.
    public var port: UInt16
    /// Implicit TLS (port 1993 style) instead of plain text with STARTTLS.
    public var implicitTLS: Bool

    public init(host: String, port: UInt16, implicitTLS: Bool = false) {
        self.host = host
        self.port = port
        self.implicitTLS = implicitTLS
    }
}

/// An address or network (CIDR) whose connections are trusted proxies (RFC 8437 section 8).
///
/// `"10.0.0.0/8"`, `"127.0.0.1"`, `"::1"`, `"fd00::/8"`.
public struct TrustedNetwork: Sendable, Equatable {
    let address: [UInt8]
    let prefixLength: Int

    // network = address ["/" prefix-length]
    /// Parses an address or `address/prefix`; nil when it is neither IPv4 nor IPv6 text.
    public init?(_ text: String) {
        let pieces = text.split(separator: "/", maxSplits: 1).map(String.init)
        guard let first = pieces.first, let bytes = TrustedNetwork.parseAddress(first) else { return nil }
        address = bytes
        if pieces.count == 2 {
            guard let length = Int(pieces[1]), length >= 0, length <= bytes.count * 8 else { return nil }
            prefixLength = length
        } else {
            prefixLength = bytes.count * 8
        }
    }

    /// Whether `host` (numeric text, as the reactor reports peers) is inside this network.
    public func contains(_ host: String) -> Bool {
        guard var candidate = TrustedNetwork.parseAddress(host) else { return false }
        // An IPv4 peer on a dual-stack socket shows as ::ffff:a.b.c.d.
        if candidate.count == 16, address.count == 4, candidate[0..<10].allSatisfy({ $0 == 0 }),
           candidate[10] == 0xFF, candidate[11] == 0xFF
        {
            candidate = Array(candidate[12...])
        }
        guard candidate.count == address.count else { return false }
        var remaining = prefixLength
        for index in 0..<address.count where remaining > 0 {
            let bits = min(8, remaining)
            let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
            if candidate[index] & mask != address[index] & mask { return false }
            remaining -= bits
        }
        return true
    }

    // IPv4address = dec-octet "." dec-octet "." dec-octet "." dec-octet   (RFC 3986 section 3.2.2)
    static func parseAddress(_ text: String) -> [UInt8]? {
        if text.contains(":") { return parseIPv6(text) }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var bytes: [UInt8] = []
        for part in parts {
            guard let value = UInt8(part) else { return nil }
            bytes.append(value)
        }
        return bytes
    }

    // IPv6address = 8( h16 ":" ) with one "::" standing for a run of zero groups, the last 32 bits
    //               optionally as an IPv4address (RFC 4291 section 2.2, RFC 3986 section 3.2.2)
    static func parseIPv6(_ text: String) -> [UInt8]? {
        let halves = text.components(separatedByDoubleColon: ())
        func groups(_ part: Substring) -> [UInt8]? {
            if part.isEmpty { return [] }
            var bytes: [UInt8] = []
            let pieces = part.split(separator: ":", omittingEmptySubsequences: false)
            for (index, piece) in pieces.enumerated() {
                if index == pieces.count - 1, piece.contains("."), let v4 = parseAddress(String(piece)) {
                    bytes += v4
                    continue
                }
                guard piece.count <= 4, let value = UInt16(piece, radix: 16) else { return nil }
                bytes += [UInt8(value >> 8), UInt8(value & 0xFF)]
            }
            return bytes
        }
        guard let head = groups(halves.0) else { return nil }
        guard let tailPart = halves.1 else { return head.count == 16 ? head : nil }
        guard let tail = groups(tailPart), head.count + tail.count < 16 else { return nil }
        return head + [UInt8](repeating: 0, count: 16 - head.count - tail.count) + tail
    }
}

extension String {
    /// Splits at the first `::` (IPv6 zero compression).
    fileprivate func components(separatedByDoubleColon: Void) -> (Substring, Substring?) {
        let bytes = Array(utf8)
        var index = 0
        while index + 1 < bytes.count {
            if bytes[index] == 0x3A && bytes[index + 1] == 0x3A {
                let head = self[startIndex..<utf8.index(startIndex, offsetBy: index)]
                let tail = self[utf8.index(startIndex, offsetBy: index + 2)...]
                return (head, tail)
            }
            index += 1
        }
        return (self[...], nil)
    }
}

/// Everything the back end needs to run. Defaults follow the issue: 60 s before login, 30 minutes
/// after, 50 connections per user, LOGINDISABLED on plain connections until STARTTLS.
public struct BackendConfiguration: Sendable {
    /// Where to listen; the default is 0.0.0.0:1143 (plain, STARTTLS) and 0.0.0.0:1993 (TLS).
    public var listeners: [BackendListener]
    /// The server certificate and key; nil offers no STARTTLS and refuses implicit-TLS listeners.
    public var tls: TLSContextHolder?
    /// Refuse LOGIN and AUTHENTICATE on plain connections until STARTTLS (RFC 9051 6.2.3).
    public var loginDisabledOnPlain: Bool
    /// The data directory (users' Maildirs).
    public var dataDirectory: String
    /// The passwd-file with the users.
    public var usersFile: String
    /// Networks whose connections may use UNAUTHENTICATE and forward client addresses with ID.
    public var trustedProxies: [TrustedNetwork]
    /// A UNIX stream socket to listen on as well (config `local_socket`; nil: none), for a front
    /// end on the same host. Its connections are trusted like `trustedProxies`: the file is
    /// mode 0600, so only the server's own user (or root) can connect.
    public var localSocketPath: String? = nil
    /// Framing and parsing limits; `maxAppendLiteralSize` is the APPENDLIMIT advertised.
    public var limits: IMAPLimits
    /// Idle time allowed before login.
    public var preLoginIdleTimeout: Duration
    /// Idle time allowed after login, IDLE included (RFC 9051 5.4: at least 30 minutes).
    public var postLoginIdleTimeout: Duration
    /// Interval of `* OK Still here` during IDLE, well inside NAT timeouts.
    public var idleKeepaliveInterval: Duration
    /// How long a verified password is remembered (0 disables the cache).
    public var authCacheTTL: Duration
    /// Most concurrent sessions of one user (0: unlimited).
    public var maxConnectionsPerUser: Int
    /// How long a user's Maildir and recently selected mailboxes stay open after the user's last
    /// session ends (0: closed at once), so a quick return (webmail, a front end's pooled session)
    /// reads no index back.
    public var linger: Duration
    /// Most users lingering open at once, per process (the oldest close first).
    public var lingerUsers: Int
    /// Most concurrent connections from one client address (0: unlimited).
    public var maxConnectionsPerAddress: Int
    /// The first delay after a failed login; it doubles per further failure of the address or user.
    public var failedLoginDelay: Duration
    /// The longest delay after failed logins.
    public var maxFailedLoginDelay: Duration
    /// Which changes the store fsyncs before their tagged OK (`[store] fsync`).
    public var storeFsync: FsyncPolicy
    /// Output queued above this makes a FETCH wait for the client to read (backpressure).
    public var outputHighWaterMark: Int
    /// Greeting text after `* OK [CAPABILITY ...]`.
    public var greeting: String
    /// Tests only: runs on the worker just before a mailbox is read from disk, with its name (a test
    /// holds it there to make an open as slow as a 100k-message mailbox's).
    public var testsOnly_beforeMailboxLoad: (@Sendable (String) -> Void)? = nil

    public init(
        listeners: [BackendListener] = [BackendListener(host: "0.0.0.0", port: 1143),
                                        BackendListener(host: "0.0.0.0", port: 1993, implicitTLS: true)],
        tls: TLSContextHolder? = nil, loginDisabledOnPlain: Bool = true, dataDirectory: String,
        usersFile: String, trustedProxies: [TrustedNetwork] = [], limits: IMAPLimits = IMAPLimits(),
        preLoginIdleTimeout: Duration = .seconds(60), postLoginIdleTimeout: Duration = .seconds(30 * 60),
        idleKeepaliveInterval: Duration = .seconds(2 * 60), authCacheTTL: Duration = .seconds(60),
        maxConnectionsPerUser: Int = 50, maxConnectionsPerAddress: Int = 0,
        linger: Duration = .seconds(30), lingerUsers: Int = 256,
        failedLoginDelay: Duration = .milliseconds(500), maxFailedLoginDelay: Duration = .seconds(15),
        storeFsync: FsyncPolicy = .optimized, outputHighWaterMark: Int = 256 * 1024, greeting: String = "Apus imap4be ready."
    ) {
        self.listeners = listeners
        self.tls = tls
        self.loginDisabledOnPlain = loginDisabledOnPlain
        self.dataDirectory = dataDirectory
        self.usersFile = usersFile
        self.trustedProxies = trustedProxies
        self.limits = limits
        self.preLoginIdleTimeout = preLoginIdleTimeout
        self.postLoginIdleTimeout = postLoginIdleTimeout
        self.idleKeepaliveInterval = idleKeepaliveInterval
        self.authCacheTTL = authCacheTTL
        self.maxConnectionsPerUser = maxConnectionsPerUser
        self.maxConnectionsPerAddress = maxConnectionsPerAddress
        self.linger = linger
        self.lingerUsers = lingerUsers
        self.failedLoginDelay = failedLoginDelay
        self.maxFailedLoginDelay = maxFailedLoginDelay
        self.storeFsync = storeFsync
        self.outputHighWaterMark = outputHighWaterMark
        self.greeting = greeting
    }

    /// Whether `peer` is a trusted proxy: one of `trustedProxies`, or any connection on the
    /// local socket.
    func isTrustedProxy(_ peer: SocketAddress) -> Bool {
        peer.isUNIX || trustedProxies.contains { $0.contains(peer.host) }
    }
}
