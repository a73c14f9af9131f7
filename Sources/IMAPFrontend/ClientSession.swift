// IMAPFrontend: ClientSession, one mail client: pre-login answered here, then relayed to its back end.

import IMAPProtocol
import Reactor
import Telemetry

/// One client connection to the front end.
///
/// Before login the front end answers by itself (greeting, CAPABILITY, NOOP, ID, STARTTLS, LOGOUT,
/// LOGIN, AUTHENTICATE PLAIN and LOGIN with SASL-IR and continuations); it never needs a back
/// end for that. A login routes the user, borrows a pooled back-end connection and lets the back
/// end decide. After that the session relays bytes unchanged, following command boundaries with
/// ``IMAPCommandFramer`` only, to catch LOGOUT (answered here, then UNAUTHENTICATE on the hop),
/// UNAUTHENTICATE and STARTTLS (refused with BAD) and COMPRESS (the hop is then never reused).
final class ClientSession: ConnectionHandler {
    /// Where the session is. `CaseIterable` so tests can cover every state.
    enum Phase: CaseIterable {
        case notAuthenticated
        /// AUTHENTICATE is waiting for a client response line.
        case authenticating
        /// A login waits for a pool connection.
        case waitingForBackend
        /// ID and AUTHENTICATE went to the back end.
        case loggingIn
        /// A failed login's answer is being held back (failed logins are slowed per address).
        case delayingFailure
        case relaying
        /// LOGOUT seen: waiting for the answers to the commands before it.
        case loggingOut
        case closed
    }

    /// The SASL exchange in progress.
    private enum SASLStep {
        case plain
        case loginUser
        case loginPassword(user: [UInt8])
    }

    let context: FrontendLoopContext
    let connection: Connection
    let sessionID: String
    private(set) var phase: Phase = .notAuthenticated
    private var admitted = false
    private let parser: IMAPCommandParser
    private var framer: IMAPCommandFramer
    private var badCommands: IMAPBadCommandCounter
    /// The tag of the login or AUTHENTICATE being handled.
    private var loginTag: [UInt8] = []
    private var saslStep = SASLStep.plain
    /// The login's credentials, kept until its outcome: a login whose connection fails its lazy
    /// reset sends them again on another.
    private var credentials: LoginCredentials?
    /// A login already tried a second connection after one failed its lazy reset.
    private var retriedAfterFailedReset = false
    private var pool: BackendPool?
    private var backend: BackendConnection?
    private var timer: Timer?

    // Relay state: the command framer in front of the back end.
    private var relayFramer: IMAPCommandFramer
    /// Whether part of the current command has been forwarded (and its name checked).
    private var commandStarted = false
    /// Bytes of the current command forwarded while it was still incomplete.
    private var forwardedInCommand = 0
    private var inIdle = false
    private var logoutTag: [UInt8] = []
    /// `* CAPABILITY …` as the back end gave it at login, without UNAUTHENTICATE: the answer to a
    /// client's CAPABILITY after login (the hop's capability is the proxy's, not the client's).
    private var postLoginCapabilityLine: [UInt8] = []
    /// Our own lines for the client, held while a back-end response is mid-stream.
    private var pendingToClient: [UInt8] = []
    private var pausedForBackend = false
    private var opaque = false
    private var shutdownRequested = false

    init(context: FrontendLoopContext, connection: Connection) {
        self.context = context
        self.connection = connection
        sessionID = context.sessionIDs.next()
        let limits = context.core.configuration.limits
        parser = IMAPCommandParser(limits: limits)
        framer = IMAPCommandFramer(limits: limits)
        badCommands = IMAPBadCommandCounter(limits: limits)
        // After login the back end enforces its own limits; the relay only needs to keep step,
        // so literals are allowed as large as the back end may take.
        var relayLimits = limits
        relayLimits.maxAppendLiteralSize = UInt64(Int64.max)
        relayLimits.maxCommandLength = max(limits.maxCommandLength, 1024 * 1024)
        relayLimits.nonSynchronizingLiterals = .literalPlus
        relayFramer = IMAPCommandFramer(limits: relayLimits)
    }

    private var core: FrontendCore { context.core }
    private var isSecure: Bool { connection.isTLS }
    private var loginDisabled: Bool {
        !isSecure && core.configuration.loginDisabledOnPlain && core.configuration.tls != nil
    }

    // MARK: - Connection life

    func connectionActive(_ connection: Connection) {
        guard !core.isShuttingDown else {
            connection.write("* BYE Server shutting down\r\n")
            connection.close(.afterFlush)
            return
        }
        guard core.addressLimits.admit(connection.peer.host) else {
            core.logger.notice("refused \(connection.peer): too many connections from the address")
            connection.write("* BYE Too many connections from your address\r\n")
            connection.close(.afterFlush)
            return
        }
        admitted = true
        context.register(self)
        connection.idleTimeout = core.configuration.preLoginIdleTimeout
        connection.write(core.greeting(secure: isSecure, loginDisabled: loginDisabled))
    }

    func connectionClosed(_ connection: Connection, reason: CloseReason) {
        timer?.cancel()
        if admitted {
            core.addressLimits.release(connection.peer.host)
            context.unregister(self)
        }
        let previous = phase
        phase = .closed
        switch previous {
        case .waitingForBackend:
            pool?.cancelWait(self)
        case .loggingIn:
            backend?.clientVanished(atCommandBoundary: false, inIdle: false)
        case .relaying, .loggingOut:
            backend?.clientVanished(atCommandBoundary: !commandStarted, inIdle: inIdle)
        default:
            break
        }
        backend = nil
    }

    func connectionIdleTimeout(_ connection: Connection) {
        // A slow command, not an idle client.
        if phase == .relaying && !inIdle && backend?.outstanding ?? 0 > 0 { return }
        writeToClient(Array("* BYE Autologout; idle for too long\r\n".utf8))
        connection.close(.afterFlush)
    }

    func connectionShutdownRequested(_ connection: Connection) {
        beginShutdown()
    }

    /// `* BYE` now if nothing is in flight, else as soon as the last answer has been relayed.
    func beginShutdown() {
        shutdownRequested = true
        switch phase {
        case .relaying:
            guard let backend, !commandStarted, backend.outstanding == 0 || inIdle else { return }
            writeToClient(Array("* BYE Server shutting down\r\n".utf8))
            connection.close(.afterFlush)
        case .notAuthenticated, .authenticating, .delayingFailure:
            connection.write("* BYE Server shutting down\r\n")
            connection.close(.afterFlush)
        default:
            break
        }
    }

    func connectionWritable(_ connection: Connection) {
        backend?.resumeAfterClientDrained()
    }

    func connectionRead(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int {
        switch phase {
        case .relaying: return relayFromClient(bytes)
        case .notAuthenticated, .authenticating: return readBeforeLogin(bytes)
        case .loggingOut, .closed: return bytes.count
        case .waitingForBackend, .loggingIn, .delayingFailure:
            connection.pauseReading()
            return 0
        }
    }

    // MARK: - Before login

    private func readBeforeLogin(_ bytes: UnsafeRawBufferPointer) -> Int {
        var consumed = 0
        while consumed < bytes.count && connection.isOpen && (phase == .notAuthenticated || phase == .authenticating) {
            let rest = UnsafeRawBufferPointer(rebasing: bytes[consumed...])
            switch framer.scan(rest) {
            case .complete(let length):
                consumed += length
                if handleFrame(UnsafeRawBufferPointer(rebasing: rest[0..<length])) == .stopReading {
                    return consumed
                }
            case .needMoreBytes:
                return consumed
            case .needContinuation:
                connection.write("+ Ready for literal data\r\n")
                return consumed
            case .appendMessage(let length, _, _):
                // APPEND needs a login; refuse the message and skip whatever follows of it.
                framer.rejectAppendMessage()
                let tag = ClientSession.tag(of: UnsafeRawBufferPointer(rebasing: rest[0..<length]))
                reply(tag, "BAD Log in first")
                consumed += length
            case .appendEnd(let length):
                consumed += length
            case .appendBytes(let count), .discard(let count):
                consumed += count
            case .bad(let error):
                let tag = error.tag.map { $0.copyBytes() } ?? Array("*".utf8)
                switch error.recovery {
                case .skip(let count):
                    reply(tag, "BAD \(error.text)")
                    consumed += count
                    if !countBadCommand() { return bytes.count }
                case .disconnect:
                    connection.write("* BYE \(error.text)\r\n")
                    connection.close(.afterFlush)
                    return bytes.count
                }
            }
        }
        return consumed
    }

    private enum FrameOutcome { case carryOn, stopReading }

    private func handleFrame(_ frame: UnsafeRawBufferPointer) -> FrameOutcome {
        if phase == .authenticating { return handleSASLResponse(frame) }
        switch parser.parseCommand(frame) {
        case .failure(let tag, let reason):
            reply(tag?.copyBytes() ?? Array("*".utf8), "BAD \(reason)")
            return countBadCommand() ? .carryOn : .stopReading
        case .success(let tagged):
            badCommands.recordGoodCommand()
            return handleCommand(tagged)
        }
    }

    /// Counts a bad command; false (and the connection closing) when there were too many in a row.
    private func countBadCommand() -> Bool {
        guard badCommands.recordBadCommand() else { return true }
        connection.write("* BYE Too many invalid commands\r\n")
        connection.close(.afterFlush)
        return false
    }

    private func handleCommand(_ tagged: IMAPTaggedCommand) -> FrameOutcome {
        let tag = tagged.tag.copyBytes()
        switch tagged.command {
        case .capability:
            connection.write(core.capabilities(secure: isSecure, loginDisabled: loginDisabled).untaggedLine)
            reply(tag, "OK CAPABILITY completed")
        case .noop:
            reply(tag, "OK NOOP completed")
        case .id:
            connection.write("* ID (\"name\" \"Apus\")\r\n")
            reply(tag, "OK ID completed")
        case .logout:
            connection.write("* BYE Logging out\r\n")
            reply(tag, "OK LOGOUT completed")
            connection.close(.afterFlush)
            return .stopReading
        case .startTLS:
            guard !isSecure else {
                reply(tag, "BAD Already using TLS")
                return .carryOn
            }
            guard let tls = core.configuration.tls else {
                reply(tag, "BAD STARTTLS is not available")
                return .carryOn
            }
            reply(tag, "OK Begin TLS negotiation now")
            // Bytes pipelined after STARTTLS are dropped by the reactor (RFC 9051 section 6.2.1).
            connection.startTLS(context: tls.current)
            framer = IMAPCommandFramer(limits: core.configuration.limits)
            return .stopReading
        case .login(let user, let password):
            guard !loginDisabled else {
                reply(tag, "NO [PRIVACYREQUIRED] Log in after STARTTLS")
                return .carryOn
            }
            let userBytes = user.copyBytes()
            let passwordBytes = password.copyBytes()
            guard !userBytes.isEmpty, userBytes.count <= 255, passwordBytes.count <= 255,
                  !userBytes.contains(0), !passwordBytes.contains(0) else {
                reply(tag, "NO [AUTHENTICATIONFAILED] Invalid credentials")
                return .carryOn
            }
            return startLogin(tag: tag, LoginCredentials(user: userBytes, password: passwordBytes))
        case .authenticate(let mechanism, let initialResponse):
            return startAuthenticate(tag: tag, mechanism: mechanism, initialResponse: initialResponse)
        case .unauthenticate:
            reply(tag, "BAD Not logged in")
        default:
            reply(tag, "BAD Log in first")
        }
        return .carryOn
    }

    // authenticate = "AUTHENTICATE" SP auth-type [SP (base64 / "=")] *(CRLF base64)   (RFC 9051, RFC 4959)
    private func startAuthenticate(tag: [UInt8], mechanism: IMAPBytes, initialResponse: IMAPBytes?) -> FrameOutcome {
        let isPlain = mechanism.equalsCaseInsensitive("PLAIN")
        guard isPlain || mechanism.equalsCaseInsensitive("LOGIN") else {
            reply(tag, "NO Unsupported authentication mechanism")
            return .carryOn
        }
        guard !loginDisabled else {
            reply(tag, "NO [PRIVACYREQUIRED] Authenticate after STARTTLS")
            return .carryOn
        }
        loginTag = tag
        saslStep = isPlain ? .plain : .loginUser
        guard let initialResponse else {
            phase = .authenticating
            connection.write(isPlain ? "+ \r\n" : "+ VXNlcm5hbWU6\r\n")  // "Username:"
            return .carryOn
        }
        // "=" is an empty initial response (RFC 4959).
        let data: [UInt8]? =
            initialResponse.count == 1 && initialResponse[0] == UInt8(ascii: "=")
            ? [] : SASLBase64.decode(initialResponse.buffer)
        guard let data else {
            reply(tag, "BAD Invalid base64 in the initial response")
            return .carryOn
        }
        return continueSASL(with: data)
    }

    private func handleSASLResponse(_ frame: UnsafeRawBufferPointer) -> FrameOutcome {
        switch parser.parseAuthenticationResponse(frame) {
        case .success(.cancel):
            phase = .notAuthenticated
            reply(loginTag, "BAD AUTHENTICATE cancelled")
            return .carryOn
        case .success(.response(let text)):
            guard let data = SASLBase64.decode(text.buffer) else {
                phase = .notAuthenticated
                reply(loginTag, "BAD Invalid base64 in the response")
                return .carryOn
            }
            return continueSASL(with: data)
        case .failure:
            phase = .notAuthenticated
            reply(loginTag, "BAD Invalid AUTHENTICATE response line")
            return .carryOn
        }
    }

    private func continueSASL(with data: [UInt8]) -> FrameOutcome {
        switch saslStep {
        case .plain:
            guard let credentials = LoginCredentials(plainMessage: data) else {
                phase = .notAuthenticated
                reply(loginTag, "NO [AUTHENTICATIONFAILED] Invalid PLAIN message")
                return .carryOn
            }
            return startLogin(tag: loginTag, credentials)
        case .loginUser:
            guard !data.isEmpty, data.count <= 255, !data.contains(0) else {
                phase = .notAuthenticated
                reply(loginTag, "NO [AUTHENTICATIONFAILED] Invalid user name")
                return .carryOn
            }
            saslStep = .loginPassword(user: data)
            phase = .authenticating
            connection.write("+ UGFzc3dvcmQ6\r\n")  // "Password:"
            return .carryOn
        case .loginPassword(let user):
            guard data.count <= 255, !data.contains(0) else {
                phase = .notAuthenticated
                reply(loginTag, "NO [AUTHENTICATIONFAILED] Invalid password")
                return .carryOn
            }
            return startLogin(tag: loginTag, LoginCredentials(user: user, password: data))
        }
    }

    // MARK: - Login through the pool

    private func startLogin(tag: [UInt8], _ credentials: LoginCredentials) -> FrameOutcome {
        loginTag = tag
        let index = core.router.backendIndex(for: credentials.mailboxOwner)
        let pool = context.pools[index]
        self.pool = pool
        self.credentials = credentials
        retriedAfterFailedReset = false
        // Commands pipelined after the login wait in the buffer until its outcome is known.
        connection.pauseReading()
        checkOut(from: pool)
        return .stopReading
    }

    private func checkOut(from pool: BackendPool) {
        guard let credentials else { return answerUnavailable() }
        phase = .waitingForBackend
        switch pool.checkout(for: self, user: credentials.user) {
        case .ready(let backend):
            sendLogin(over: backend)
        case .unavailable:
            answerUnavailable()
        case .waiting:
            timer = connection.loop.schedule(after: pool.settings.checkoutTimeout) { [weak self] in
                guard let self, self.phase == .waitingForBackend else { return }
                self.pool?.cancelWait(self)
                self.answerUnavailable()
            }
        }
    }

    private func sendLogin(over backend: BackendConnection) {
        guard let credentials else { return }
        self.backend = backend
        phase = .loggingIn
        backend.beginLogin(for: self, credentials: credentials, clientAddress: connection.peer, sessionID: sessionID)
    }

    /// The pool has a connection for this waiting login.
    func backendReady(_ backend: BackendConnection) {
        timer?.cancel()
        guard phase == .waitingForBackend else {
            backend.pool.checkin(backend)
            return
        }
        sendLogin(over: backend)
    }

    /// The connection lent to this login was still logged in as its last user and did not return
    /// to not-authenticated state (UNAUTHENTICATE refused, BYE, closed, no answer). It is closed and
    /// nothing it said reached this client; the login tries once more on another connection.
    func backendResetFailed() {
        guard phase == .loggingIn, !retriedAfterFailedReset, let pool else { return backendUnavailable() }
        retriedAfterFailedReset = true
        backend = nil
        checkOut(from: pool)
    }

    /// The back end cannot be reached (down, no connection in time, or it broke during login).
    func backendUnavailable() {
        guard phase == .waitingForBackend || phase == .loggingIn else { return }
        answerUnavailable()
    }

    private func answerUnavailable() {
        core.loginsUnavailable.increment()
        timer?.cancel()
        backend = nil
        credentials = nil
        phase = .notAuthenticated
        reply(loginTag, "NO [UNAVAILABLE] The mailbox server is not available; try again later")
        connection.resumeReading()
    }

    /// The back end accepted the login: relay its answer (with the post-login CAPABILITY it gives,
    /// UNAUTHENTICATE left out) under the client's tag and start relaying.
    func backendLoginSucceeded(_ answer: PostLoginAnswer) {
        core.addressLimits.recordSuccess(connection.peer.host)
        core.loginsSucceeded.increment()
        credentials = nil
        phase = .relaying
        connection.idleTimeout = core.configuration.idleTimeout
        postLoginCapabilityLine = answer.capabilityLine
        // Queued writes join in the connection's buffer: one send.
        connection.write(answer.untagged)
        connection.write(loginTag)
        connection.write(ClientSession.space)
        connection.write(answer.taggedText)
        if shutdownRequested {
            beginShutdown()
            return
        }
        connection.resumeReading()
    }

    /// The back end refused the credentials: answer (after the per-address delay) with its words.
    func backendLoginRejected(taggedText: UnsafeRawBufferPointer) {
        core.loginsRejected.increment()
        credentials = nil
        backend = nil
        phase = .delayingFailure
        var answer = loginTag
        answer.append(0x20)
        answer += Array(taggedText)
        let delay = core.addressLimits.recordFailure(connection.peer.host, now: connection.loop.now)
        timer = connection.loop.schedule(after: delay) { [weak self] in
            guard let self, self.phase == .delayingFailure else { return }
            self.phase = .notAuthenticated
            self.connection.write(answer)
            self.connection.resumeReading()
        }
    }

    // MARK: - Relay

    /// The reactor's high-water mark (both sides use the default options): above it a connection
    /// stops and later calls `connectionWritable`, which is what resumes the other side.
    static let outputHighWaterMark = ConnectionOptions().highWaterMark

    /// The client's connection when bytes may be spliced to it (plain, no TLS).
    var plainClientConnection: Connection? { connection.isTLS || !connection.isOpen ? nil : connection }

    /// Literal bytes reached this client by splice(2).
    func countSplicedBytes(_ count: Int) { core.splicedBytes.increment(by: UInt64(count)) }

    /// Whether the client's queued output leaves room for more from the back end.
    var clientCanTakeMore: Bool { connection.queuedOutputBytes <= ClientSession.outputHighWaterMark }

    /// Bytes from the back end, written unchanged.
    func relayToClient(_ bytes: UnsafeRawBufferPointer) {
        connection.write(bytes)
        if !pendingToClient.isEmpty, backend?.isMidResponse != true {
            connection.write(pendingToClient)
            pendingToClient.removeAll()
        }
    }

    /// Our own lines (a BAD, the LOGOUT answer), never inside a back-end response.
    private func writeToClient(_ bytes: [UInt8]) {
        if backend?.isMidResponse == true {
            pendingToClient += bytes
        } else {
            connection.write(bytes)
        }
    }

    /// The back end's output to us drained: the client may send more.
    func backendDrained() {
        guard pausedForBackend else { return }
        pausedForBackend = false
        connection.resumeReading()
    }

    /// A tagged answer passed: the LOGOUT or a shutdown may now proceed.
    func backendCompletedCommand() {
        guard let backend, backend.outstanding == 0 else { return }
        // IDLE answered without DONE (refused, say): the next line is a command again.
        inIdle = false
        if phase == .loggingOut {
            finishLogout()
        } else if shutdownRequested {
            beginShutdown()
        }
    }

    /// The back end went away mid-session.
    func backendLost(byeRelayed: Bool) {
        backend = nil
        pendingToClient.removeAll()
        guard phase == .relaying || phase == .loggingOut else { return }
        if !byeRelayed {
            connection.write("* BYE The connection to the mailbox server was lost\r\n")
        }
        phase = .closed
        connection.close(.afterFlush)
    }

    private func relayFromClient(_ bytes: UnsafeRawBufferPointer) -> Int {
        // Message bytes spliced since the last read were never seen: count them as passed.
        let spliced = connection.takeSplicedInputCount()
        if spliced > 0 {
            relayFramer.skipAppendBytes(UInt64(spliced))
            core.splicedBytes.increment(by: UInt64(spliced))
        }
        guard let backend, let hop = backend.connection else { return bytes.count }
        if opaque {
            hop.write(bytes)
            return bytes.count
        }
        var consumed = 0
        while consumed < bytes.count && phase == .relaying {
            if hop.queuedOutputBytes > ClientSession.outputHighWaterMark {
                pausedForBackend = true
                connection.pauseReading()
                return consumed
            }
            let rest = UnsafeRawBufferPointer(rebasing: bytes[consumed...])
            switch relayFramer.scan(rest) {
            case .complete(let length):
                let frame = UnsafeRawBufferPointer(rebasing: rest[0..<length])
                consumed += length
                if !commandStarted && checkCommand(frame) == .intercepted { continue }
                hop.write(UnsafeRawBufferPointer(rebasing: frame[forwardedInCommand...]))
                commandStarted = false
                forwardedInCommand = 0
                if opaque {
                    hop.write(UnsafeRawBufferPointer(rebasing: bytes[consumed...]))
                    return bytes.count
                }
            case .needMoreBytes:
                // Pass on the literal bytes of a command already under way; a first line is held
                // whole until its command name has been checked.
                if commandStarted && rest.count > forwardedInCommand {
                    hop.write(UnsafeRawBufferPointer(rebasing: rest[forwardedInCommand...]))
                    forwardedInCommand = rest.count
                }
                return consumed
            case .needContinuation:
                if !commandStarted { _ = checkCommand(rest) }
                commandStarted = true
                hop.write(UnsafeRawBufferPointer(rebasing: rest[forwardedInCommand...]))
                forwardedInCommand = rest.count
                return consumed
            case .appendMessage(let length, _, let isFirst):
                if isFirst && !commandStarted { _ = checkCommand(rest) }
                commandStarted = true
                hop.write(UnsafeRawBufferPointer(rebasing: rest[forwardedInCommand..<length]))
                forwardedInCommand = 0
                consumed += length
                if consumed == bytes.count { spliceRestOfMessage(to: hop) }
            case .appendBytes(let count):
                hop.write(UnsafeRawBufferPointer(rebasing: rest[0..<count]))
                consumed += count
                if consumed == bytes.count { spliceRestOfMessage(to: hop) }
            case .appendEnd(let length):
                hop.write(UnsafeRawBufferPointer(rebasing: rest[0..<length]))
                commandStarted = false
                forwardedInCommand = 0
                consumed += length
            case .discard(let count):
                consumed += count
            case .bad(let error):
                // The relay can no longer follow the client's commands: end the session rather
                // than guess (the hop is closed, not reused, since a command may be half sent).
                writeToClient(Array("* BYE \(error.text)\r\n".utf8))
                connection.close(.afterFlush)
                return bytes.count
            }
        }
        return phase == .relaying ? consumed : bytes.count
    }

    /// The read ended inside a large APPEND message: the rest goes to a plain hop with splice(2),
    /// as large FETCH literals come back (see `BackendConnection.spliceRestOfLiteral`, which says
    /// why splicing literal bodies only is sound). The framer already knows the message's length.
    private func spliceRestOfMessage(to hop: Connection) {
        let remaining = relayFramer.appendBytesRemaining
        guard remaining >= BackendConnection.spliceThreshold, !opaque,
              hop.queuedOutputBytes <= ClientSession.outputHighWaterMark else { return }
        _ = connection.spliceInput(count: Int(remaining), to: hop)
    }

    private enum CommandDisposition { case forward, intercepted }

    /// Looks at the start of a client command (its tag and name) before it goes to the back end.
    private func checkCommand(_ bytes: UnsafeRawBufferPointer) -> CommandDisposition {
        guard let backend else { return .forward }
        if inIdle {
            // IDLE ends with DONE, which is not a command of its own.
            inIdle = false
            return .forward
        }
        // The tag is copied only for the commands answered here: relaying allocates nothing per command.
        let name = ClientSession.commandName(of: bytes)
        if ResponseLine.equalsUppercase(name, "LOGOUT") {
            logoutTag = ClientSession.tag(of: bytes)
            phase = .loggingOut
            connection.pauseReading()
            if backend.outstanding == 0 { finishLogout() }
            return .intercepted
        }
        if ResponseLine.equalsUppercase(name, "UNAUTHENTICATE") {
            writeToClient(ClientSession.tag(of: bytes) + Array(" BAD UNAUTHENTICATE is not available here\r\n".utf8))
            return .intercepted
        }
        if ResponseLine.equalsUppercase(name, "CAPABILITY"), backend.outstanding == 0, !postLoginCapabilityLine.isEmpty {
            // Answered here, from the login's list; only with nothing in flight, so the order of
            // untagged data the client sees is the back end's.
            writeToClient(postLoginCapabilityLine + ClientSession.tag(of: bytes) + Array(" OK CAPABILITY completed\r\n".utf8))
            return .intercepted
        }
        if ResponseLine.equalsUppercase(name, "STARTTLS") {
            writeToClient(ClientSession.tag(of: bytes) + Array(" BAD STARTTLS is not allowed after login\r\n".utf8))
            return .intercepted
        }
        if ResponseLine.equalsUppercase(name, "COMPRESS") {
            // The stream will be compressed both ways: relay it blind and never reuse the hop.
            opaque = true
            backend.isOpaque = true
        } else if ResponseLine.equalsUppercase(name, "IDLE") {
            inIdle = true
        }
        backend.outstanding += 1
        return .forward
    }

    /// LOGOUT with nothing in flight: answer it here and hand the hop back for UNAUTHENTICATE.
    private func finishLogout() {
        writeToClient(ClientSession.byeLine)
        writeToClient(logoutTag)
        writeToClient(ClientSession.logoutCompleted)
        phase = .closed
        connection.close(.afterFlush)
        let hop = backend
        backend = nil
        hop?.release()
    }

    // MARK: - Small helpers

    private static let space: [UInt8] = [0x20]
    private static let byeLine = Array("* BYE Logging out\r\n".utf8)
    private static let logoutCompleted = Array(" OK LOGOUT completed\r\n".utf8)

    private func reply(_ tag: [UInt8], _ text: String) {
        connection.write(tag + Array(" \(text)\r\n".utf8))
    }

    // tag = 1*<any ASTRING-CHAR except "+">
    /// The bytes before the first space (the whole line, CRLF excepted, if there is none).
    static func tag(of bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var end = 0
        while end < bytes.count, bytes[end] != 0x20, bytes[end] != 0x0D, bytes[end] != 0x0A { end += 1 }
        return Array(bytes[0..<min(end, 64)])
    }

    /// The word after the tag, ending at a space, a brace, or the line's end.
    static func commandName(of bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        var start = 0
        while start < bytes.count, bytes[start] != 0x20, bytes[start] != 0x0A { start += 1 }
        start += 1
        guard start < bytes.count else { return UnsafeRawBufferPointer(rebasing: bytes[0..<0]) }
        var end = start
        while end < bytes.count {
            let byte = bytes[end]
            if byte == 0x20 || byte == 0x0D || byte == 0x0A || byte == UInt8(ascii: "{") { break }
            end += 1
        }
        return UnsafeRawBufferPointer(rebasing: bytes[start..<end])
    }
}
