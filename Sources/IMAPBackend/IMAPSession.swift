// IMAPBackend: IMAPSession, the per-connection state machine: bytes in, responses out.
//
// The session owns the framer and drives it over the bytes it is given, answers each command through
// the handler of its family (Authentication.swift, Mailboxes.swift, Select.swift, Fetch.swift, ...),
// and writes responses into one IMAPOutputBuffer that is handed to the transport, once per read when
// no command has to wait. Work that blocks (password hashing, fsync, opening a mailbox, parsing
// uncached structures) runs off the loop; meanwhile the session keeps what the client pipelined
// behind it unprocessed (reading on up to a bound), so commands run in order and a pipelined command
// sees the effects of the ones before it (RFC 9051 5.5). Commands of one session never run side by
// side: every session of a user shares one loop thread, and ordering is what makes a client's
// pipelined STORE-then-FETCH or APPEND-then-SEARCH mean what it says.

import Glibc
import IMAPProtocol
import MailStore
import Reactor
import Telemetry

final class IMAPSession {
    /// What the next complete frame is.
    enum InputMode {
        case command
        /// After `+ idling`: the next line must be DONE.
        case idle(tag: [UInt8])
        /// AUTHENTICATE waiting for a client response.
        case authenticate(AuthenticationExchange)
    }

    let context: BackendContext
    weak var transport: (any IMAPSessionTransport)?
    var framer: IMAPCommandFramer
    let parser: IMAPCommandParser
    var out = IMAPOutputBuffer(capacity: 16 * 1024)
    var state: SessionState = .notAuthenticated
    var mode: InputMode = .command
    /// A command is running off the loop (or waiting for output to drain): input is not processed.
    var waiting = false
    /// Set while `receive` runs over the client's bytes.
    private var receiving = false
    var badCommands: IMAPBadCommandCounter

    // Per-connection facts.
    let peerAddress: String
    let peerPort: UInt16
    let isTrustedProxy: Bool
    let sessionID: String
    var logger: Logger

    // Per-login state (all reset by UNAUTHENTICATE, RFC 8437 section 4.1).
    var clientAddress: String
    var clientPort: UInt16
    var forwardedSessionID: String?
    var isRev2 = false
    var userName: String?
    var user: UserEntry?
    var selected: SelectedMailbox?
    var append: AppendState?
    var fetchJob: FetchJob?
    /// The last FETCH's job, kept for the next one (see `FetchJob`).
    var spareFetchJob: FetchJob?
    var idleKeepalive: (() -> Void)?
    var loginTag: [UInt8] = []
    var pendingLogin: String?
    /// Set by STARTTLS: the rest of this read is plaintext pipelined after it, and is dropped.
    var discardInput = false

    private var commandStart = Deadline(nanoseconds: 0)
    private var commandRule = CommandTable.noop
    private(set) var isClosed = false
    private var started = false

    init(context: BackendContext, transport: any IMAPSessionTransport, peer: SocketAddress, sessionID: String) {
        self.context = context
        self.transport = transport
        framer = IMAPCommandFramer(limits: context.configuration.limits)
        parser = IMAPCommandParser(limits: context.configuration.limits)
        badCommands = IMAPBadCommandCounter(limits: context.configuration.limits)
        peerAddress = peer.host
        peerPort = peer.port
        clientAddress = peer.host
        clientPort = peer.port
        isTrustedProxy = context.configuration.isTrustedProxy(peer)
        self.sessionID = sessionID
        logger = context.logger.with("session", sessionID).with("client", peer.description)
    }

    // MARK: - Lifecycle

    /// Sends the greeting (RFC 9051 7.1.1) with the capabilities, and arms the pre-login timeout.
    func start() {
        started = true
        context.metrics.sessions.add(1)
        context.metrics.connections.increment()
        transport?.setIdleTimeout(context.configuration.preLoginIdleTimeout)
        out.write("* OK [")
        out.write(contentsOf: capabilities.responseCode)
        out.write("] ")
        out.write(contentsOf: context.configuration.greeting.utf8)
        out.write("\r\n")
        flush()
    }

    /// The connection is gone: release the user and the mailbox.
    func connectionClosed() {
        guard !isClosed else { return }
        isClosed = true
        if started { context.metrics.sessions.add(-1) }
        idleKeepalive?()
        idleKeepalive = nil
        append?.writer?.cancel()
        append = nil
        fetchJob = nil
        if let name = userName { logger.info("logout user=\(name)") }
        releaseUser()
    }

    /// Drops the selected mailbox and the user (logout, UNAUTHENTICATE, close).
    func releaseUser() {
        deselect()
        if let user, let transport { context.loopStates[transport.loopIndex].release(user) }
        user = nil
        userName = nil
    }

    /// The capability list for the session's state.
    var capabilities: IMAPCapabilitySet {
        let trusted = isTrustedProxy ? 1 : 0
        if state == .authenticated || state == .selected { return context.capabilities.afterLogin[trusted] }
        if isSecured { return context.capabilities.tlsBeforeLogin[trusted] }
        return context.capabilities.plainBeforeLogin[trusted]
    }

    /// TLS, or a trusted proxy's connection: the proxy ended the client's TLS itself, and the hop
    /// runs on the operator's own network (as Dovecot treats login_trusted_networks).
    var isSecured: Bool { transport?.isTLS == true || isTrustedProxy }

    /// Whether LOGIN/AUTHENTICATE are refused here (LOGINDISABLED, RFC 9051 6.2.3).
    var loginDisabled: Bool {
        context.configuration.loginDisabledOnPlain && context.configuration.tls != nil && !isSecured
    }

    // MARK: - Input

    /// Processes as many complete commands as `bytes` holds; returns how many bytes were used. The
    /// rest must be offered again with more input (and is, by the reactor, after `redeliverInput`).
    func receive(_ bytes: UnsafeRawBufferPointer) -> Int {
        if waiting || fetchJob != nil {
            // A command is waiting (on a worker, a timer, or a slow client): what the client pipelined
            // behind it stays unconsumed, kept by the connection, and reading goes on (RFC 9051 5.5)
            // until that much is kept; then TCP's flow control holds the rest.
            if bytes.count >= IMAPSession.waitingInputLimit { transport?.pauseReading() }
            return 0
        }
        receiving = true
        defer { receiving = false }
        var consumed = 0
        scanning: while !waiting, state != .logout, fetchJob == nil {
            if discardInput {
                discardInput = false
                consumed = bytes.count
                break scanning
            }
            let rest = UnsafeRawBufferPointer(rebasing: bytes[consumed...])
            switch framer.scan(rest) {
            case .needMoreBytes:
                break scanning
            case .needContinuation:
                out.writeContinuation()
                break scanning
            case .complete(let length):
                consumed += length
                handleFrame(UnsafeRawBufferPointer(rebasing: rest[0..<length]))
            case .appendMessage(let length, let literal, let isFirst):
                consumed += length
                handleAppendMessage(UnsafeRawBufferPointer(rebasing: rest[0..<length]), literal: literal,
                                    isFirst: isFirst)
            case .appendBytes(let count):
                consumed += count
                appendBytes(UnsafeRawBufferPointer(rebasing: rest[0..<count]))
            case .appendEnd(let length):
                consumed += length
                handleAppendEnd(UnsafeRawBufferPointer(rebasing: rest[0..<length]))
            case .discard(let count):
                consumed += count
            case .bad(let error):
                if let tag = error.tag {
                    out.writeTagged(tag: tag, .bad, text: error.text)
                } else {
                    out.write("* BAD ")
                    out.write(error.text)
                    out.write("\r\n")
                }
                switch error.recovery {
                case .skip(let count):
                    consumed += count
                    if append != nil { abortAppend() }
                case .disconnect:
                    // The byte stream cannot be resynchronised (an overlong line, a huge literal).
                    consumed = bytes.count
                    disconnect("Cannot continue after this error")
                }
            }
        }
        context.metrics.bytesIn.increment(by: UInt64(consumed))
        flush()
        return consumed
    }

    /// Sends `* BYE` and closes.
    func disconnect(_ text: String) {
        out.write("* BYE ")
        out.write(contentsOf: text.utf8)
        out.write("\r\n")
        state = .logout
        flush()
        transport?.close()
    }

    private func handleFrame(_ frame: UnsafeRawBufferPointer) {
        switch mode {
        case .idle(let tag):
            finishIdle(tag: tag, frame: frame)
            return
        case .authenticate(let exchange):
            continueAuthentication(exchange, frame: frame)
            return
        case .command:
            break
        }
        switch parser.parseCommand(frame) {
        case .failure(let tag, let reason):
            recordBad()
            if let tag {
                out.write(bytes: tag)
                out.write(" BAD ")
            } else {
                out.write("* BAD ")
            }
            out.write(contentsOf: "\(reason)".utf8)
            out.write("\r\n")
        case .success(let tagged):
            dispatch(tagged)
        }
    }

    private func recordBad() {
        if badCommands.recordBadCommand() { disconnect("Too many invalid commands") }
    }

    // MARK: - Dispatch

    private func dispatch(_ tagged: IMAPTaggedCommand) {
        let rule = CommandTable.rule(for: tagged.command)
        let tag = tagged.tag
        guard rule.isValid(in: state) else {
            recordBad()
            out.writeTagged(tag: tag, .bad, text: "Command not valid in this state")
            return
        }
        badCommands.recordGoodCommand()
        commandRule = rule
        commandStart = Deadline.now()
        switch tagged.command {
        case .capability:
            out.write(contentsOf: capabilities.untaggedLine)
            finish(tag, .ok, "CAPABILITY completed")
        case .noop, .check:
            noop(tag: tag)
        case .logout:
            out.write("* BYE Logging out\r\n")
            finish(tag, .ok, "LOGOUT completed")
            state = .logout
            flush()
            transport?.close()
        case .startTLS:
            startTLS(tag: tag)
        case .login(let user, let password):
            login(tag: tag, user: user.copyBytes(), password: password.copyBytes())
        case .authenticate(let mechanism, let initial):
            authenticate(tag: tag, mechanism: mechanism, initialResponse: initial)
        case .unauthenticate:
            unauthenticate(tag: tag)
        case .id(let parameters):
            id(tag: tag, parameters: parameters)
        case .enable(let names):
            enable(tag: tag, names: names)
        case .select(let name, _):
            select(tag: tag, name: name, readOnly: false)
        case .examine(let name, _):
            select(tag: tag, name: name, readOnly: true)
        case .create(let name, let specialUse):
            create(tag: tag, name: name, specialUse: specialUse)
        case .delete(let name):
            delete(tag: tag, name: name)
        case .rename(let from, let to):
            rename(tag: tag, from: from, to: to)
        case .subscribe(let name):
            subscribe(tag: tag, name: name, subscribe: true)
        case .unsubscribe(let name):
            subscribe(tag: tag, name: name, subscribe: false)
        case .list(let command):
            list(tag: tag, command: command)
        case .lsub(let reference, let pattern):
            lsub(tag: tag, reference: reference, pattern: pattern)
        case .namespace:
            out.write("* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n")
            finish(tag, .ok, "NAMESPACE completed")
        case .status(let name, let attributes):
            status(tag: tag, name: name, attributes: attributes)
        case .append:
            // APPEND arrives through handleAppendMessage; a frame here has no message literal.
            finish(tag, .bad, "APPEND needs a message literal")
        case .idle:
            idle(tag: tag)
        case .close:
            closeMailbox(tag: tag, expunge: true)
        case .unselect:
            closeMailbox(tag: tag, expunge: false)
        case .expunge:
            expunge(tag: tag, uids: nil)
        case .uidExpunge(let set):
            expunge(tag: tag, uids: set)
        case .search(let command, let uid):
            search(tag: tag, command: command, uid: uid)
        case .fetch(let set, let attributes, _, let uid):
            fetch(tag: tag, set: set, attributes: attributes, uid: uid)
        case .store(let set, let action, let unchangedSince, let uid):
            store(tag: tag, set: set, action: action, unchangedSince: unchangedSince, uid: uid)
        case .copy(let set, let name, let uid):
            copy(tag: tag, set: set, destination: name, uid: uid, move: false)
        case .move(let set, let name, let uid):
            copy(tag: tag, set: set, destination: name, uid: uid, move: true)
        case .compress, .getQuota, .getQuotaRoot, .sort, .thread:
            finish(tag, .bad, "Command not supported")
        }
    }

    /// APPEND starts outside `dispatch` (through the framer's append results).
    func beginAppendCommand() {
        commandRule = CommandTable.append
        commandStart = Deadline.now()
    }

    // MARK: - Completion

    /// Writes the untagged updates the command may carry, then the tagged status, and records metrics.
    func finish(_ tag: IMAPBytes, _ kind: IMAPStatusResponse.Kind, code: IMAPResponseCode? = nil, _ text: StaticString) {
        writeUpdates(allowExpunge: commandRule.allowsExpunge)
        out.writeTagged(tag: tag, kind, code: code, text: text)
        recordCommand()
    }

    /// As `finish`, for a tag copied out of the read buffer (asynchronous completions).
    func finish(_ tag: [UInt8], _ kind: IMAPStatusResponse.Kind, code: IMAPResponseCode? = nil, _ text: StaticString) {
        tag.withUnsafeBytes { finish(IMAPBytes($0), kind, code: code, text) }
    }

    private func recordCommand() {
        let (counter, histogram) = context.metrics.command(commandRule)
        counter.increment()
        let now = Deadline.now()
        histogram.observe(nanoseconds: now.nanoseconds &- commandStart.nanoseconds)
    }

    /// The most output handed to the transport in one piece: what bounds a session's own response
    /// buffer, and what tests assert stays small however large the messages fetched are.
    private(set) var largestFlush = 0

    /// Hands the output buffer to the transport.
    func flush() {
        guard out.count > 0 else { return }
        if out.count > largestFlush { largestFlush = out.count }
        context.metrics.bytesOut.increment(by: UInt64(out.count))
        if let transport { out.bytes.withUnsafeBytes { transport.write($0) } }
        out.clear()
    }

    /// Input kept unprocessed while a command waits, before the session stops reading. Well below
    /// the connection's input limit (BackendServer sets it to at least twice this).
    static let waitingInputLimit = 256 * 1024

    /// Starts waiting for work off the loop: input is kept, not processed, until `resume()`.
    func suspend() {
        waiting = true
    }

    /// The off-loop work finished (its response is in `out`). Inside `receive` (the work finished at
    /// once) the loop there goes on with the next command and writes all answers in one piece.
    func resume() {
        waiting = false
        if receiving { return }
        flush()
        if shutdownPending {
            disconnect("Server shutting down")
            return
        }
        transport?.redeliverInput()
    }

    // MARK: - NOOP

    private func noop(tag: IMAPBytes) {
        // New mail a delivery agent put into new/ is picked up here and on IDLE.
        if let selected, let user, let transport, let commit = try? selected.mailbox.checkForNewMessages() {
            let tagCopy = tag.copyBytes()
            suspend()
            user.commit(commit, in: selected.mailbox, transport: transport) { [self] _ in
                finish(tagCopy, .ok, "NOOP completed")
                resume()
            }
            return
        }
        finish(tag, .ok, "NOOP completed")
    }

    // MARK: - Output backpressure

    /// The transport drained below its low-water mark: a suspended FETCH goes on.
    func writable() {
        guard fetchJob != nil else { return }
        continueFetch()
    }

    /// The connection moved to the user's home loop after login.
    func didMove() {
        guard let name = pendingLogin else { return }
        pendingLogin = nil
        completeLogin(user: name)
    }

    /// Idle timeout: `* BYE` and close.
    func timedOut() {
        disconnect("Autologout; idle for too long")
    }

    /// Graceful shutdown: idle sessions get `* BYE`; busy ones finish their command first.
    func shutdownRequested() {
        if case .idle = mode {
            disconnect("Server shutting down")
        } else if !waiting && fetchJob == nil {
            disconnect("Server shutting down")
        } else {
            shutdownPending = true
        }
    }

    var shutdownPending = false
}

/// Converts between wire mailbox names and the store's names.
extension IMAPSession {
    /// The store name for a wire name (modified UTF-7 in IMAP4rev1, UTF-8 in IMAP4rev2).
    func storeName(_ name: IMAPMailboxName) -> MailboxName? {
        guard let decoded = name.decoded(isUTF8: isRev2) else { return nil }
        return try? MailboxName(decoded)
    }

    /// The wire bytes for a store name.
    func wireName(_ name: MailboxName) -> [UInt8] {
        isRev2 ? Array(name.wireName.utf8) : IMAPModifiedUTF7.encode(name.wireName)
    }

    /// The response to a store error.
    func fail(_ tag: IMAPBytes, _ error: StoreError) {
        switch error {
        case .mailboxNotFound: finish(tag, .no, code: .nonExistent, "No such mailbox")
        case .mailboxExists: finish(tag, .no, code: .alreadyExists, "Mailbox exists")
        case .invalidMailboxName: finish(tag, .no, code: .cannotDo, "Invalid mailbox name")
        case .cannotDeleteInbox: finish(tag, .no, code: .cannotDo, "INBOX cannot be deleted")
        case .overQuota: finish(tag, .no, code: .overQuota, "Over quota")
        case .messageTooLarge: finish(tag, .no, code: .tooBig, "Message too large")
        case .tooManyKeywords, .invalidKeyword: finish(tag, .no, code: .cannotDo, "Keyword refused")
        case .noSuchMessage: finish(tag, .no, code: .expungeIssued, "Message expunged")
        default:
            logger.error("store error: \(error)")
            finish(tag, .no, code: .serverBug, "Internal error")
        }
    }

    func fail(_ tag: [UInt8], _ error: StoreError) {
        tag.withUnsafeBytes { fail(IMAPBytes($0), error) }
    }
}
