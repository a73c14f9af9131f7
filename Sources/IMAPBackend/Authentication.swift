// IMAPBackend: LOGIN, AUTHENTICATE (PLAIN, LOGIN; SASL-IR), STARTTLS, UNAUTHENTICATE, ID, ENABLE.

import Glibc
import IMAPProtocol
import Telemetry
import MailStore
import Reactor

/// Where an AUTHENTICATE exchange stands.
enum AuthenticationExchange {
    /// PLAIN (RFC 4616) waiting for its one response.
    case plain(tag: [UInt8])
    /// LOGIN waiting for the user name, then the password.
    case loginUser(tag: [UInt8])
    case loginPassword(tag: [UInt8], user: [UInt8])
}

extension IMAPSession {
    // MARK: - LOGIN

    /// RFC 9051 6.2.3. `C: a1 LOGIN smith sesame` / `S: a1 OK [CAPABILITY ...] Logged in`
    func login(tag: IMAPBytes, user: [UInt8], password: [UInt8]) {
        if loginDisabled {
            finish(tag, .no, code: .privacyRequired, "LOGIN disabled until STARTTLS")
            return
        }
        verify(tag: tag.copyBytes(), user: user, password: password)
    }

    // MARK: - AUTHENTICATE

    /// RFC 9051 6.2.2, RFC 4959 (SASL-IR). `C: a AUTHENTICATE PLAIN AHVzZXIAcGFzcw==`
    func authenticate(tag: IMAPBytes, mechanism: IMAPBytes, initialResponse: IMAPBytes?) {
        if loginDisabled {
            finish(tag, .no, code: .privacyRequired, "Authentication disabled until STARTTLS")
            return
        }
        let tagCopy = tag.copyBytes()
        if mechanism.equalsCaseInsensitive("PLAIN") {
            guard let initialResponse else {
                out.write("+ \r\n")
                mode = .authenticate(.plain(tag: tagCopy))
                return
            }
            authenticationResponse(.plain(tag: tagCopy), initialResponse)
        } else if mechanism.equalsCaseInsensitive("LOGIN") {
            guard let initialResponse else {
                out.write("+ VXNlcm5hbWU6\r\n")  // "Username:"
                mode = .authenticate(.loginUser(tag: tagCopy))
                return
            }
            authenticationResponse(.loginUser(tag: tagCopy), initialResponse)
        } else {
            finish(tag, .no, code: .cannotDo, "Unsupported authentication mechanism")
        }
    }

    /// A client line during AUTHENTICATE.
    func continueAuthentication(_ exchange: AuthenticationExchange, frame: UnsafeRawBufferPointer) {
        mode = .command
        switch parser.parseAuthenticationResponse(frame) {
        case .failure:
            finish(exchange.tag, .bad, "Invalid response")
        case .success(.cancel):
            finish(exchange.tag, .bad, "Authentication cancelled")
        case .success(.response(let data)):
            authenticationResponse(exchange, data)
        }
    }

    private func authenticationResponse(_ exchange: AuthenticationExchange, _ data: IMAPBytes) {
        // "=" is an empty initial response (RFC 4959).
        let decoded = data.count == 1 && data[0] == UInt8(ascii: "=") ? [] : Base64.decode(data.buffer)
        guard let decoded else {
            finish(exchange.tag, .bad, "Invalid base64")
            return
        }
        switch exchange {
        case .plain(let tag):
            // message = [authzid] NUL authcid NUL passwd (RFC 4616 section 2)
            let fields = decoded.split(separator: 0, maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3, !fields[1].isEmpty, fields[0].isEmpty || fields[0] == fields[1] else {
                context.metrics.loginFailures.increment()
                finish(tag, .no, code: .authenticationFailed, "Authentication failed")
                return
            }
            verify(tag: tag, user: Array(fields[1]), password: Array(fields[2]))
        case .loginUser(let tag):
            out.write("+ UGFzc3dvcmQ6\r\n")  // "Password:"
            mode = .authenticate(.loginPassword(tag: tag, user: decoded))
        case .loginPassword(let tag, let user):
            verify(tag: tag, user: user, password: decoded)
        }
    }

    // MARK: - Verification

    /// Checks the password (on a worker unless the cache of recent successes answers); success
    /// moves the session to the user's home loop.
    private func verify(tag: [UInt8], user userBytes: [UInt8], password: [UInt8]) {
        guard let transport else { return }
        let user = String(decoding: userBytes, as: UTF8.self)
        let authenticator = context.authenticator
        suspend()
        // A reconnect the cache answers goes on here, on the loop: the check costs a keyed hash and a
        // stat, less than the hop to a worker and back (eventfd write, futex wake, two context
        // switches) that every pooled proxy session's login paid.
        if authenticator.verifyFromCache(user: user, password: password) {
            passwordChecked(tag: tag, user: user, success: true)
            return
        }
        // The compute lane: a login must not wait behind the storage lane's queue of fsyncs.
        transport.runBlocking(on: .compute, { authenticator.verify(user: user, password: password) }) { [self] success in
            passwordChecked(tag: tag, user: user, success: success)
        }
    }

    /// On the loop, once the password is checked (by the cache or on a worker): a success goes on to
    /// the user's home loop, a failure is counted, logged and answered after the failure delay.
    private func passwordChecked(tag: [UInt8], user: String, success: Bool) {
        guard !isClosed else { return }
        let authenticator = context.authenticator
        if success {
            authenticator.recordSuccess(address: clientAddress, user: user)
            loginTag = tag
            let home = context.homeLoop(of: user)
            if self.transport?.moveToLoop(home) == true {
                context.metrics.loginsMoved.increment()
                pendingLogin = user
            } else {
                context.metrics.loginsOnHomeLoop.increment()
                completeLogin(user: user)
            }
            return
        }
        authenticator.recordFailure(address: clientAddress, user: user)
        context.metrics.loginFailures.increment()
        logger.notice("login failed user=\(user) address=\(clientAddress)")
        let delay = authenticator.delay(address: clientAddress, user: user)
        let answer = { [self] in
            finish(tag, .no, code: .authenticationFailed, "Authentication failed")
            resume()
        }
        if delay > .zero, let transport = self.transport {
            // Slowed, never blocking the loop: the answer waits on a timer.
            _ = transport.schedule(after: delay) { [self] in if !isClosed { answer() } }
        } else {
            answer()
        }
    }

    /// On the home loop: opens the user's Maildir there and answers the login.
    func completeLogin(user name: String) {
        guard let transport else { return }
        let tag = loginTag
        loginTag = []
        let entry: UserEntry?
        do {
            entry = try context.loopStates[transport.loopIndex].acquire(
                user: name, store: context.store, limit: context.configuration.maxConnectionsPerUser)
        } catch {
            logger.error("cannot open mailbox of \(name): \(error)")
            finish(tag, .no, code: .unavailable, "Mailbox unavailable")
            resume()
            return
        }
        guard let entry else {
            finish(tag, .no, code: .limit, "Too many connections for this user")
            resume()
            return
        }
        user = entry
        userName = name
        state = .authenticated
        context.metrics.logins.increment()
        transport.setIdleTimeout(context.configuration.postLoginIdleTimeout)
        // Through a proxy, which one (and over which hop: a local socket reads unix:/path).
        let proxy = isTrustedProxy && clientAddress != peerAddress ? " proxy=\(SocketAddress(host: peerAddress, port: peerPort))" : ""
        logger.info("login user=\(name) address=\(clientAddress)" + proxy
                    + (forwardedSessionID.map { " proxy-session=\($0)" } ?? ""))
        finish(tag, .ok, code: .capability(capabilities.names), "Logged in")
        resume()
    }

    // MARK: - STARTTLS

    /// RFC 9051 6.2.1. Bytes pipelined after the command in plaintext are discarded (the reactor drops
    /// its buffer; `discardInput` makes this call drop the rest of what it was given).
    func startTLS(tag: IMAPBytes) {
        guard let tls = context.configuration.tls, transport?.isTLS == false else {
            finish(tag, .bad, "STARTTLS not available")
            return
        }
        finish(tag, .ok, "Begin TLS negotiation now")
        flush()
        framer = IMAPCommandFramer(limits: context.configuration.limits)
        discardInput = true
        transport?.startTLS(tls.current)
    }

    // MARK: - UNAUTHENTICATE

    /// RFC 8437: back to the not-authenticated state, every per-login state reset (section 4.1); never
    /// NO. Offered only to trusted proxies.
    func unauthenticate(tag: IMAPBytes) {
        guard isTrustedProxy else {
            finish(tag, .bad, "Command not supported")
            return
        }
        if let name = userName { logger.info("unauthenticate user=\(name)") }
        releaseUser()
        state = .notAuthenticated
        isRev2 = false
        clientAddress = peerAddress
        clientPort = peerPort
        forwardedSessionID = nil
        logger = context.logger.with("session", sessionID).with("client", "\(peerAddress):\(peerPort)")
        transport?.setIdleTimeout(context.configuration.preLoginIdleTimeout)
        finish(tag, .ok, "UNAUTHENTICATE completed")
    }

    // MARK: - ID

    /// RFC 2971. From a trusted proxy, `x-originating-ip`, `x-originating-port` and `x-session-id`
    /// replace the peer's address for logs and login throttling.
    ///
    /// A trusted proxy's answer also says which event loop the connection is on now and how many
    /// there are: `"x-apus-loop" "1" "x-apus-loops" "2"` (RFC 2971 section 3.3 allows any field
    /// name of at most 30 octets; the "x-" prefix keeps clear of names it defines). With the loop
    /// count and Reactor's ``HomeLoop`` the front end knows where each pooled connection sits
    /// after a login, and hands a user one already on the user's home loop, which spares the move. Plain clients are not told: it is of no use to them and says
    /// something about the server's layout.
    func id(tag: IMAPBytes, parameters: IMAPIDParameters?) {
        if isTrustedProxy, let parameters {
            for (field, value) in parameters {
                guard let value else { continue }
                if field.equalsCaseInsensitive("X-ORIGINATING-IP") {
                    clientAddress = value.string
                } else if field.equalsCaseInsensitive("X-ORIGINATING-PORT") {
                    clientPort = UInt16(value.string) ?? clientPort
                } else if field.equalsCaseInsensitive("X-SESSION-ID") {
                    forwardedSessionID = value.string
                }
            }
            logger = context.logger.with("session", sessionID).with("client", "\(clientAddress):\(clientPort)")
        }
        out.write("* ID (\"name\" \"Apus\" \"version\" \"1\"")
        if isTrustedProxy, let transport {
            out.write(" \"x-apus-loop\" \"")
            out.write(number: transport.loopIndex)
            out.write("\" \"x-apus-loops\" \"")
            out.write(number: context.loopStates.count)
            out.write("\"")
        }
        out.write(")\r\n")
        finish(tag, .ok, "ID completed")
    }

    // MARK: - ENABLE

    /// RFC 5161, RFC 9051 6.3.1. `C: a ENABLE IMAP4rev2` / `S: * ENABLED IMAP4rev2`
    func enable(tag: IMAPBytes, names: IMAPAtomList) {
        out.write("* ENABLED")
        for name in names where name.equalsCaseInsensitive("IMAP4REV2") {
            isRev2 = true
            out.write(" IMAP4rev2")
        }
        out.write("\r\n")
        finish(tag, .ok, "ENABLE completed")
    }
}

extension AuthenticationExchange {
    var tag: [UInt8] {
        switch self {
        case .plain(let tag), .loginUser(let tag), .loginPassword(let tag, _): return tag
        }
    }
}

/// Base64 (RFC 4648) for SASL responses.
enum Base64 {
    private static let values: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, byte) in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8.enumerated() {
            table[Int(byte)] = UInt8(index)
        }
        return table
    }()

    // base64 = *(4base64-char) [base64-terminal]   (RFC 9051 section 9, RFC 4648 section 4)
    /// Decodes `text`; nil when it is not valid base64.
    static func decode(_ text: UnsafeRawBufferPointer) -> [UInt8]? {
        var output: [UInt8] = []
        output.reserveCapacity(text.count * 3 / 4)
        var accumulator: UInt32 = 0
        var bits = 0
        var padding = 0
        for byte in text {
            if byte == UInt8(ascii: "=") {
                padding += 1
                continue
            }
            guard padding == 0 else { return nil }
            let value = values[Int(byte)]
            guard value != 0xFF else { return nil }
            accumulator = accumulator << 6 | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                output.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
            }
        }
        guard padding <= 2, (text.count % 4 == 0 || padding == 0) else { return nil }
        return output
    }

    /// Encodes `bytes` (tests and clients).
    static func encode(_ bytes: [UInt8]) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var output: [UInt8] = []
        var index = 0
        while index < bytes.count {
            let chunk = Array(bytes[index..<min(index + 3, bytes.count)])
            let value = chunk.enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << UInt32(16 - 8 * $1.offset) }
            for position in 0..<4 {
                if position <= chunk.count {
                    output.append(alphabet[Int(value >> UInt32(18 - 6 * position) & 0x3F)])
                } else {
                    output.append(UInt8(ascii: "="))
                }
            }
            index += 3
        }
        return String(decoding: output, as: UTF8.self)
    }
}
