// IMAPFrontend: BackendConnection, one persistent connection to a back end and the back-end half of the relay.

import IMAPProtocol
import Reactor
import Telemetry

/// One pooled connection to a back end: greeted, unauthenticated while in the pool, lent to one
/// client session at a time.
///
/// It follows the back end's responses with ``IMAPResponseFramer`` alone (no parse): a tagged
/// line ends one command, so `outstanding` says when the connection is idle; that is what makes
/// returning it to the pool safe. During a session every response frame is passed to the client
/// unchanged, as soon as it is complete (large literals stream through in pieces).
///
/// ```
/// H1 ID ("x-originating-ip" "192.0.2.7" "x-originating-port" "50123" "x-session-id" "3f1c…")
/// H2 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==
/// …session relayed…
/// H3 UNAUTHENTICATE        (RFC 8437)  -> H3 OK  -> back in the pool
/// ```
///
/// After a client's LOGOUT the connection goes back to the pool still logged in (``needsReset``,
/// lazy reset): the next login writes `H4 UNAUTHENTICATE`, `H5 ID …` and `H6 AUTHENTICATE …` at
/// once and relays nothing before H4's OK; a connection not taken within the pool's lazy-reset
/// window is reset on its own.
final class BackendConnection: ConnectionHandler {
    /// Where the connection is in its life. `CaseIterable` so tests can cover every state.
    enum State: CaseIterable {
        /// TCP connect (and TLS handshake) under way.
        case connecting
        /// Waiting for the greeting.
        case greeting
        /// Asked CAPABILITY because the greeting did not say.
        case probing
        /// In the pool, unauthenticated.
        case idle
        /// In the pool, still logged in as the user of the session it last served (``needsReset``).
        case parked
        /// In a NOOP health check.
        case checking
        /// Lent to a session that has not sent its login yet.
        case reserved
        /// ID and AUTHENTICATE sent for a session.
        case loggingIn
        /// Relaying a logged-in session.
        case relaying
        /// The client left: waiting for the answers to its last commands before UNAUTHENTICATE.
        case draining
        /// UNAUTHENTICATE sent.
        case unauthenticating
        /// Idle, on its way to another loop's pool (``BackendPool/lendIdleConnection()``).
        case lent
        case closed
    }

    /// Strong on purpose: a connection closing during shutdown must still find its pool. The cycle
    /// with the pool's idle list ends when the connection closes.
    private(set) var pool: BackendPool
    var connection: Connection?
    private(set) var state: State = .connecting
    /// The session the connection serves (relaying, logging in).
    weak var owner: ClientSession?
    /// Sessions this connection has served (more than one means reuse).
    var sessionsServed = 0
    /// When the connection last went idle in the pool.
    private(set) var idleSince = Deadline(nanoseconds: 0)
    /// Whether the back end offers UNAUTHENTICATE; without it the connection serves one session.
    private(set) var supportsUnauthenticate = false
    /// Commands sent (by the client, or by us) whose tagged answer has not come yet.
    var outstanding = 0
    /// COMPRESS or something else the scan cannot follow: relay raw bytes, never reuse.
    var isOpaque = false
    /// Whether a streamed literal is passing: the client's stream is mid-response.
    var isMidResponse: Bool { inStreamedResponse }
    /// The back end sent `* BYE` to the client: no second BYE of our own.
    private(set) var byeRelayed = false
    /// Still logged in as the last session's user: UNAUTHENTICATE goes before anything else sent,
    /// and nothing the back end says before its OK (the last user's mailbox changes, say) reaches
    /// anyone.
    private(set) var needsReset = false
    /// The back end's event loop this connection is on, when the back end says (an Apus back end's
    /// `x-apus-loop` ID field, then the home loop of each user logged in); nil when unknown.
    private(set) var backendLoop: Int?
    /// The user of the login under way: after it the back end has moved the connection to that
    /// user's home loop, where it stays through UNAUTHENTICATE.
    private var loginUser: [UInt8] = []

    private var framer: IMAPResponseFramer
    /// Inside a response whose literal is being streamed (frames that follow continue it).
    private var inStreamedResponse = false
    private var tagNumber = 0
    private var expectedTag: [UInt8] = []
    private var idTag: [UInt8] = []
    /// The tag of the UNAUTHENTICATE a lazy reset sent ahead of a login.
    private var resetTag: [UInt8] = []
    /// Untagged lines the back end sent during login (post-login CAPABILITY, say), held until the
    /// login's outcome is known.
    private var loginUntagged: [UInt8] = []
    private var timer: Timer?
    private var pausedForClient = false

    init(pool: BackendPool) {
        self.pool = pool
        // Responses (not commands) can carry big literals inline; stream them past 16 KiB.
        framer = IMAPResponseFramer(limits: IMAPLimits(maxCommandLength: 1024 * 1024), streamingThreshold: 16 * 1024)
    }

    // MARK: - Commands of our own

    private func nextTag() -> [UInt8] {
        tagNumber &+= 1
        var tag = IMAPOutputBuffer(capacity: 12)
        tag.write(byte: UInt8(ascii: "H"))
        tag.write(number: tagNumber)
        return tag.bytes
    }

    private func send(_ tag: [UInt8], _ text: String) {
        guard let connection else { return }
        connection.write(tag + Array(" \(text)\r\n".utf8))
    }

    private func armTimer() {
        timer?.cancel()
        guard let connection else { return }
        timer = connection.loop.schedule(after: pool.settings.responseTimeout) { [weak self] in
            guard let self, self.timer != nil else { return }
            self.pool.logger.warning("back end \(self.pool.endpoint.name) did not answer in time (\(self.state))")
            let pool = self.pool
            let state = self.state
            self.close()
            // Short exchanges of ours that went unanswered mean a hung back end. (Greeting and
            // probing mark it down through `connectionClosed`; a drain may wait on a long command.)
            if state == .checking || state == .loggingIn || state == .unauthenticating { pool.connectionTimedOut() }
        }
    }

    private func disarmTimer() {
        timer?.cancel()
        timer = nil
    }

    /// Closes the connection now; the pool hears of it through `connectionClosed`.
    func close() {
        disarmTimer()
        connection?.close(.immediately)
    }

    // MARK: - Pool transitions

    /// Ends one use of the connection as it goes back to the pool, whatever the pool does with it
    /// next (keep it, hand it straight to a waiting login, reset it, lend it): the pool calls this
    /// before any of those. Why one place: a connection handed on with reading still paused for
    /// its last client never reads the next login's answers (the response timeout then marks the
    /// back end down), and untagged lines of a failed login kept here would reach the next user.
    func prepareForPool() {
        owner = nil
        outstanding = 0
        isOpaque = false
        byeRelayed = false
        inStreamedResponse = false
        loginUntagged.removeAll()
        if pausedForClient {
            pausedForClient = false
            connection?.resumeReading()
        }
    }

    /// Into the idle list: `.idle`, or `.parked` when still logged in (``needsReset``).
    /// (``prepareForPool()`` has already ended the last use.)
    func markIdle(since: Deadline) {
        state = needsReset ? .parked : .idle
        idleSince = since
    }

    func markCheckedOut() { state = .reserved }

    /// Leaves this loop's pool for another loop's; `connectionMoved` finishes the move there.
    func markLent() { state = .lent }

    func closeWhileIdle() { close() }

    func startHealthCheck() {
        state = .checking
        expectedTag = nextTag()
        send(expectedTag, "NOOP")
        armTimer()
    }

    // MARK: - Login

    /// Sends, pipelined, the client's address for the back end's logs and limits (RFC 2971 ID with
    /// the x-originating-* fields Dovecot also uses) and the client's own credentials.
    func beginLogin(for session: ClientSession, credentials: LoginCredentials, clientAddress: SocketAddress,
                    sessionID: String) {
        owner = session
        state = .loggingIn
        loginUser = credentials.user
        // Written into the pool's buffer (taken out for the while, so that it stays uniquely
        // referenced, and put back): a login builds its commands without allocating or formatting
        // Strings, and idle connections keep no buffer of their own.
        var loginCommands = pool.takeCommandBuffer()
        defer { pool.returnCommandBuffer(loginCommands) }
        if needsReset {
            // Still the last user's session: UNAUTHENTICATE first, in the same write.
            resetTag = nextTag()
            loginCommands.write(contentsOf: resetTag)
            loginCommands.write(" UNAUTHENTICATE\r\n")
        }
        idTag = nextTag()
        expectedTag = nextTag()
        // A numeric host and a hex session ID never need escaping inside a quoted string.
        loginCommands.write(contentsOf: idTag)
        loginCommands.write(" ID (\"x-originating-ip\" \"")
        loginCommands.write(contentsOf: clientAddress.host.utf8)
        loginCommands.write("\" \"x-originating-port\" \"")
        loginCommands.write(number: UInt32(clientAddress.port))
        loginCommands.write("\" \"x-session-id\" \"")
        loginCommands.write(contentsOf: sessionID.utf8)
        loginCommands.write("\")\r\n")
        loginCommands.write(contentsOf: expectedTag)
        loginCommands.write(" AUTHENTICATE PLAIN ")
        loginCommands.write(contentsOf: credentials.plainInitialResponse)
        loginCommands.write("\r\n")
        connection?.write(loginCommands.bytes)
        armTimer()
    }

    /// Ends the session's use of the connection when the back end allows UNAUTHENTICATE and nothing
    /// is in flight, otherwise closes it. Called after LOGOUT was answered. With a lazy-reset window
    /// the connection goes back to the pool still logged in and the next login (or the pool, once
    /// the window passes) sends the UNAUTHENTICATE; without one it is sent now.
    func release() {
        owner = nil
        // Not implied by `outstanding == 0`: an untagged response with a streamed literal (an
        // unsolicited FETCH, say) may still be passing after the last tagged answer.
        guard state == .relaying, outstanding == 0, !inStreamedResponse, !isOpaque, supportsUnauthenticate,
              connection?.isOpen == true
        else {
            close()
            return
        }
        if pool.settings.lazyResetWindow > .zero {
            needsReset = true
            pool.checkin(self)
        } else {
            unauthenticate()
        }
    }

    /// Sends UNAUTHENTICATE; its OK brings the connection back to the pool clean.
    func unauthenticate() {
        state = .unauthenticating
        pool.connectionReturning()
        expectedTag = nextTag()
        send(expectedTag, "UNAUTHENTICATE")
        armTimer()
    }

    /// The client went away. In IDLE (and at a command boundary): send DONE and release after the
    /// tagged answer; with commands in flight: wait for their answers, then release; mid-command,
    /// mid-literal or opaque: close.
    func clientVanished(atCommandBoundary: Bool, inIdle: Bool) {
        owner = nil
        guard state == .relaying, atCommandBoundary, !isOpaque, supportsUnauthenticate else {
            close()
            return
        }
        // Reading may have stopped for the client's sake; the answers must now be read and dropped.
        resumeAfterClientDrained()
        if inIdle { connection?.write(Array("DONE\r\n".utf8)) }
        if outstanding == 0 {
            unauthenticate()
        } else {
            state = .draining
            armTimer()
        }
    }

    /// The client's output drained: carry on relaying what the back end sent.
    func resumeAfterClientDrained() {
        guard pausedForClient else { return }
        pausedForClient = false
        connection?.resumeReading()
    }

    // MARK: - ConnectionHandler

    func connectionActive(_ connection: Connection) {
        state = .greeting
        armTimer()
    }

    func connectionRead(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int {
        // Literal bytes spliced since the last read were never seen: count them as passed.
        let spliced = connection.takeSplicedInputCount()
        if spliced > 0 {
            framer.skipStreamBytes(UInt64(spliced))
            owner?.countSplicedBytes(spliced)
        }
        if isOpaque && state == .relaying {
            owner?.relayToClient(bytes)
            return bytes.count
        }
        var consumed = 0
        while consumed < bytes.count && connection.isOpen {
            if state == .relaying, let owner, !owner.clientCanTakeMore {
                pausedForClient = true
                connection.pauseReading()
                return consumed
            }
            let rest = UnsafeRawBufferPointer(rebasing: bytes[consumed...])
            switch framer.scan(rest) {
            case .needMoreBytes:
                return consumed
            case .tooLarge:
                pool.logger.warning("back end \(pool.endpoint.name) sent a response past the limit")
                close()
                return bytes.count
            case .complete(let length, let continuesStream):
                let frame = UnsafeRawBufferPointer(rebasing: rest[0..<length])
                consumed += length
                inStreamedResponse = false
                handleFrame(frame, startsResponse: !continuesStream)
            case .streamStart(let length, _, let continuesStream):
                let frame = UnsafeRawBufferPointer(rebasing: rest[0..<length])
                consumed += length
                // Marked before relaying: nothing of ours may be written into the middle of it.
                inStreamedResponse = true
                if state == .relaying { owner?.relayToClient(frame) }
                if !continuesStream && state == .relaying && ResponseLine(bytes: frame).kind == .tagged {
                    unexpected("a tagged response with a literal")
                } else if state != .relaying && state != .draining {
                    unexpected("a literal")
                } else if consumed == bytes.count {
                    spliceRestOfLiteral(connection)
                }
            case .streamBytes(let count):
                if state == .relaying { owner?.relayToClient(UnsafeRawBufferPointer(rebasing: rest[0..<count])) }
                consumed += count
                if consumed == bytes.count { spliceRestOfLiteral(connection) }
            }
        }
        return connection.isOpen ? consumed : bytes.count
    }

    /// Literals at least this large are spliced when both sides are plain (below it, the two
    /// extra system calls per pipe load cost more than the copies they save).
    static let spliceThreshold: UInt64 = 64 * 1024

    /// The read ended inside a large literal: the rest of it goes to a plain client with splice(2),
    /// socket to pipe to socket, never copied through this process.
    ///
    /// Why this much and no more: the framing scan must see every byte that can hold a response
    /// boundary, and inside a literal none can: the framer already knows the literal's length,
    /// so skipping it (``IMAPResponseFramer/skipStreamBytes(_:)``) loses nothing. Lines (and
    /// small literals) still pass through the buffer, where the scan follows tags, BYE and
    /// continuations. Splicing every byte through a pipe and peeking at it with tee(2) would
    /// need a copy for the scan anyway, and two more system calls per read. With TLS on either
    /// side the bytes must be in memory to be decrypted or encrypted: one read into the loop's
    /// buffer, one copy into the other side's output.
    private func spliceRestOfLiteral(_ hop: Connection) {
        let remaining = framer.streamBytesRemaining
        guard remaining >= BackendConnection.spliceThreshold, state == .relaying, !isOpaque,
              let owner, owner.clientCanTakeMore, let client = owner.plainClientConnection else { return }
        _ = hop.spliceInput(count: Int(remaining), to: client)
    }

    /// One complete response frame (or the end of a streamed one when `!startsResponse`).
    private func handleFrame(_ frame: UnsafeRawBufferPointer, startsResponse: Bool) {
        let line = ResponseLine(bytes: frame)
        switch state {
        case .relaying:
            owner?.relayToClient(frame)
            guard startsResponse else { return }
            switch line.kind {
            case .tagged:
                outstanding = max(0, outstanding - 1)
                owner?.backendCompletedCommand()
            case .untagged:
                if line.status == .bye {
                    byeRelayed = true
                } else if !supportsUnauthenticate && line.untaggedIs("CAPABILITY") {
                    supportsUnauthenticate = line.containsToken("UNAUTHENTICATE")
                }
            case .continuation:
                break
            }
        case .draining:
            guard startsResponse, line.kind == .tagged else { return }
            outstanding = max(0, outstanding - 1)
            if outstanding == 0 { unauthenticate() }
        case .greeting:
            disarmTimer()
            guard line.kind == .untagged, line.status == .ok else { return unexpected("a greeting other than OK") }
            if line.containsToken("CAPABILITY") {
                supportsUnauthenticate = line.containsToken("UNAUTHENTICATE")
                pool.connectionGreeted(self)
            } else {
                state = .probing
                expectedTag = nextTag()
                send(expectedTag, "CAPABILITY")
                armTimer()
            }
        case .probing:
            if line.kind == .untagged && line.untaggedIs("CAPABILITY") {
                supportsUnauthenticate = line.containsToken("UNAUTHENTICATE")
            } else if line.kind == .tagged && line.hasTag(expectedTag) && line.status == .ok {
                disarmTimer()
                pool.connectionGreeted(self)
            } else if line.kind != .untagged {
                unexpected("an answer to CAPABILITY")
            }
        case .checking:
            if line.kind == .untagged && line.status == .bye { return close() }
            guard line.kind == .tagged else { return }
            guard line.hasTag(expectedTag), line.status == .ok else { return unexpected("an answer to NOOP") }
            disarmTimer()
            pool.healthCheckPassed(self)
        case .unauthenticating:
            if line.kind == .untagged {
                if line.status == .bye { close() }
                return
            }
            guard line.kind == .tagged, line.hasTag(expectedTag), line.status == .ok else {
                return unexpected("an answer to UNAUTHENTICATE")
            }
            disarmTimer()
            needsReset = false
            pool.checkin(self)
        case .loggingIn:
            handleLoginFrame(frame, line)
        case .parked, .reserved:
            // Still the last user's session: its mailbox may report changes (EXISTS, EXPUNGE,
            // FETCH), which are dropped. BYE or anything tagged: it cannot be reused.
            // An unauthenticated connection has nothing to say but BYE (its autologout).
            if !needsReset || line.kind != .untagged || line.status == .bye { close() }
        case .idle, .lent:
            close()
        case .connecting, .closed:
            break
        }
    }

    private func handleLoginFrame(_ frame: UnsafeRawBufferPointer, _ line: ResponseLine) {
        if needsReset { return handleResetAnswer(line) }
        switch line.kind {
        case .untagged:
            if line.status == .bye { return unexpected("BYE during login") }
            // The answer to our ID is ours; the rest (a post-login CAPABILITY, say) is the client's.
            if line.untaggedIs("ID") {
                recordBackendLoop(fromIDAnswer: frame)
            } else {
                loginUntagged += frame
            }
        case .continuation:
            unexpected("a continuation request to AUTHENTICATE PLAIN with an initial response")
        case .tagged:
            if line.hasTag(idTag) { return }
            guard line.hasTag(expectedTag) else { return unexpected("an unknown tag during login") }
            disarmTimer()
            let text = UnsafeRawBufferPointer(rebasing: frame[line.afterTag...])
            let session = owner
            let user = loginUser
            loginUser = []
            switch line.status {
            case .ok:
                // The back end answered from the user's home loop (moved there, or already on it).
                // The loop count is the pool's (one per back end, from the ID answers), not a copy here.
                let loopCount = pool.backendLoopCount
                if loopCount > 0 { backendLoop = HomeLoop.index(ofUser: user, loopCount: loopCount) }
                let answer = pool.postLoginAnswer(untagged: loginUntagged, taggedText: text)
                if answer.backendOffersUnauthenticate { supportsUnauthenticate = true }
                state = .relaying
                session?.backendLoginSucceeded(answer)
                loginUntagged.removeAll()
            case .no:
                owner = nil
                session?.backendLoginRejected(taggedText: text)
                pool.checkin(self)
            default:
                owner = nil
                session?.backendUnavailable()
                close()
            }
        }
    }

    /// What a lazy reset's UNAUTHENTICATE gets before its OK belongs to the last user's session:
    /// untagged lines are dropped, never relayed or kept for the login's answer; anything but the
    /// OK (NO, BAD, BYE) closes the connection, and the login tries another.
    private func handleResetAnswer(_ line: ResponseLine) {
        switch line.kind {
        case .untagged:
            if line.status == .bye { unexpected("BYE to UNAUTHENTICATE") }
        case .continuation:
            unexpected("a continuation request to UNAUTHENTICATE")
        case .tagged:
            guard line.hasTag(resetTag), line.status == .ok else { return unexpected("an answer to UNAUTHENTICATE") }
            needsReset = false
        }
    }

    /// The most event loops a back end's ID answer is believed to have (a bound on what it says).
    static let maximumBackendLoops = 4096

    // id-response = "ID" SP id-params-list   (RFC 2971 section 4)
    /// Records `"x-apus-loop" "N" "x-apus-loops" "M"` from the back end's answer to our ID: where
    /// the connection is before the login moves it. A back end that does not send both, or sends
    /// numbers out of range, leaves the loop unknown (the pool then hands the connection out by
    /// recency alone, as for Dovecot).
    private func recordBackendLoop(fromIDAnswer frame: UnsafeRawBufferPointer) {
        guard let parameters = IMAPIDParameters(idResponse: frame) else { return }
        var loop: Int?
        var loopCount: Int?
        for (field, value) in parameters {
            guard let digits = value?.unescapedView, let number = BackendConnection.decimal(digits) else { continue }
            // Field names ignore case (RFC 2971 section 3.3); compared unescaped, as the back end's
            // `id()` reads them, so a quoted name with escapes matches too.
            if field.equalsCaseInsensitive("X-APUS-LOOP") { loop = number }
            if field.equalsCaseInsensitive("X-APUS-LOOPS") { loopCount = number }
        }
        guard let loop, let loopCount, loopCount >= 1, loopCount <= BackendConnection.maximumBackendLoops,
              loop < loopCount
        else { return }
        backendLoop = loop
        pool.backendReported(loopCount: loopCount)
    }

    // number = 1*DIGIT   (RFC 9051 section 9), at most 9 digits here
    private static func decimal(_ bytes: IMAPBytes) -> Int? {
        guard bytes.count > 0, bytes.count <= 9 else { return nil }
        var value = 0
        for index in 0..<bytes.count {
            let byte = bytes[index]
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return value
    }

    /// The back end said something a pooled connection cannot go on from: close it (a login
    /// under way on it hears of it once it is closed, so nothing more of it can reach the client).
    private func unexpected(_ what: String) {
        pool.logger.warning("back end \(pool.endpoint.name) sent \(what) while \(state); closing the connection")
        guard state == .loggingIn, let session = owner else { return close() }
        owner = nil
        close()
        loginFailed(session)
    }

    /// The connection closed under `session`'s login: a connection that was still the last user's
    /// session lets the login try once more elsewhere; otherwise the back end counts as lost.
    private func loginFailed(_ session: ClientSession) {
        if needsReset {
            session.backendResetFailed()
        } else {
            session.backendUnavailable()
        }
    }

    func connectionWritable(_ connection: Connection) {
        owner?.backendDrained()
    }

    func connectionMoved(_ connection: Connection) {
        guard state == .lent, let adopter = pool.shared.pool(on: connection.loop) else { return close() }
        pool = adopter
        adopter.adopt(self)
    }

    func connectionIdleTimeout(_ connection: Connection) {
        close()
    }

    func connectionShutdownRequested(_ connection: Connection) {
        if state == .idle || state == .parked || state == .checking || state == .greeting || state == .probing {
            close()
        }
    }

    func connectionClosed(_ connection: Connection, reason: CloseReason) {
        disarmTimer()
        let previous = state
        state = .closed
        self.connection = nil
        if previous == .lent {
            // Closed in transit, on the new loop: the old loop's pool no longer counts it.
            pool.shared.releaseSlot()
            return
        }
        let session = owner
        owner = nil
        pool.connectionClosed(self, state: previous)
        switch previous {
        case .loggingIn, .reserved: if let session { loginFailed(session) }
        case .relaying: session?.backendLost(byeRelayed: byeRelayed)
        default: break
        }
    }
}
