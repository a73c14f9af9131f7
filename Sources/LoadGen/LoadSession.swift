//===----------------------------------------------------------------------===//
// Apus LoadGen: one simulated client, a state machine over one connection.
//===----------------------------------------------------------------------===//

import Glibc
import IMAPProtocol
import Reactor

/// One client session: greets, (STARTTLS,) logs in, selects, then runs its mode's commands, timing
/// each and checking every response against what it was told before.
///
/// The hot path (send a command, read its tagged answer or an EXISTS/EXPUNGE) allocates nothing:
/// commands are written into one reused buffer, and simple response lines are read in place; other
/// responses go through ``IMAPResponseParser`` and the ``MailboxChecker``.
final class LoadSession: ConnectionHandler {
    enum Phase {
        case connecting, greeting, startTLS, tlsHandshake, login, prepare, select, running, idling, loggingOut, done
    }

    /// A command on the wire awaiting its tagged answer.
    struct InFlight {
        var tag: UInt32
        var kind: LoadCommandKind
        /// False for set-up commands (CREATE, STARTTLS) that are not measured.
        var counted: Bool
        var start: UInt64
        var store: StoreExpectation?
        /// The server answered the STORE with a FETCH of the UID.
        var storeAnswered = false
        /// The command waits for `+` (IDLE, APPEND with a synchronizing literal).
        var awaitsContinuation = false
        var message = 0
    }

    unowned let driver: LoopDriver
    /// The client slot this session fills (it decides the user).
    let slot: Int
    let user: String
    let password: String
    private(set) var phase = Phase.connecting
    private(set) var connection: Connection?
    private var random: LoadRandom
    private(set) var checker: MailboxChecker
    private var parser = IMAPResponseParser()
    /// The parser holds part of a response (or is inside a streamed literal): it must see the
    /// next bytes, not the fast path.
    private var parserBusy = false
    private var streamedSequence: UInt32 = 0
    /// What the FETCH response being parsed said so far (its items are visited in place, not built).
    private var fetchFacts = FetchFacts()
    private var output = IMAPOutputBuffer(capacity: 512)
    private var nextTag: UInt32 = 1
    private var inFlight: [InFlight] = []
    /// Commands an operation queued to go next (an expunge's STORE then EXPUNGE, prefill APPENDs, churn's script).
    private var queue: [LoadCommandKind] = []
    private var literalPlus = false
    private var connectStart: UInt64 = 0
    private var unconsumed = 0
    private var idleSince: UInt64 = 0
    private var idleTimer: Reactor.Timer?
    private var paceTimer: Reactor.Timer?
    private var stopping = false
    // Copied once from the configuration: read for every command.
    private let pipelineDepth: Int
    private let mode: LoadConfiguration.Mode
    private let mix: LoadCommandMix
    /// An expunge operation stored \Deleted and sends EXPUNGE next.
    private var pendingExpunge = false
    /// An exclusive command drawn while others were in flight: it goes first once they are answered.
    private var deferred: LoadCommandKind?
    /// This session is in the loop's count of connected sessions.
    private var isCountedConnected = false

    init(driver: LoopDriver, slot: Int, seed: UInt64, checksFlags: Bool) {
        self.driver = driver
        self.slot = slot
        (user, password) = driver.configuration.credentials(forSession: slot)
        random = LoadRandom(seed: seed)
        checker = MailboxChecker(checksFlags: checksFlags, messageFacts: driver.messageFacts(for: user))
        pipelineDepth = driver.configuration.pipelineDepth
        mode = driver.configuration.mode
        mix = driver.configuration.mix
        inFlight.reserveCapacity(pipelineDepth + 2)
        queue.reserveCapacity(64)
    }

    private var configuration: LoadConfiguration { driver.configuration }
    private var statistics: LoopStatistics { driver.statistics }

    static func now() -> UInt64 { Deadline.now().nanoseconds }

    // MARK: - Lifecycle

    func start(sourceAddress: String?) {
        connectStart = LoadSession.now()
        do {
            let tls = configuration.security == .tls ? driver.plan.tlsContext : nil
            var options = ConnectionOptions()
            options.handshakeTimeout = .seconds(30)
            options.closingGracePeriod = .seconds(2)
            connection = try driver.loop.connect(host: configuration.host, port: configuration.port,
                                                 sourceAddress: sourceAddress, tls: tls,
                                                 serverName: driver.plan.serverName, handler: self, options: options)
        } catch {
            statistics.completed(.connect, status: .no, nanoseconds: LoadSession.now() - connectStart)
            statistics.failed(.connectFailed)
            driver.report(.connectFailed, "\(user): \(error)")
            phase = .done
            driver.sessionEnded(self)
        }
    }

    /// The run is over: drop the connection now (commands still in flight are counted unanswered).
    func stop() {
        stopping = true
        idleTimer?.cancel()
        paceTimer?.cancel()
        connection?.close(.immediately)
    }

    func connectionActive(_ connection: Connection) {
        phase = .greeting
    }

    /// STARTTLS is done: log in over the protected connection.
    func connectionTLSEstablished(_ connection: Connection) {
        guard phase == .tlsHandshake else { return }
        phase = .login
        sendLogin()
    }

    func connectionClosed(_ connection: Connection, reason: CloseReason) {
        idleTimer?.cancel()
        paceTimer?.cancel()
        if phase == .idling { endIdle() }
        switch phase {
        // A connect the end of the run cut short did not fail: the server was never given the time.
        case .connecting where !stopping, .tlsHandshake where !stopping:
            statistics.completed(.connect, status: .no, nanoseconds: LoadSession.now() - connectStart)
            statistics.failed(.connectFailed)
            driver.report(.connectFailed, "\(user): connection to \(connection.peer) failed: \(reason)")
        case .loggingOut, .done:
            break
        default:
            if !stopping {
                statistics.failed(.unexpectedClose)
                driver.report(.unexpectedClose, "\(user): server closed the session in phase \(phase): \(reason)")
            }
        }
        if stopping { statistics.totals.failures[LoadFailureKind.unanswered.rawValue] += inFlight.count }
        if isCountedConnected {
            isCountedConnected = false
            statistics.connected -= 1
        }
        phase = .done
        self.connection = nil
        driver.sessionEnded(self)
    }

    // MARK: - Reading

    func connectionRead(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int {
        statistics.received(bytes.count - unconsumed)
        if phase == .idling { statistics.totals.idleBytesReceived += bytes.count - unconsumed }
        var offset = 0
        while offset < bytes.count && phase != .done {
            let rest = UnsafeRawBufferPointer(rebasing: bytes[offset...])
            if !parserBusy {
                guard let newline = memchr(rest.baseAddress!, 0x0A, rest.count) else { break }
                let lineLength = rest.baseAddress!.distance(to: UnsafeRawPointer(newline)) + 1
                let line = UnsafeRawBufferPointer(rebasing: rest[0..<lineLength])
                if handleSimpleLine(line) {
                    offset += lineLength
                    continue
                }
            }
            let (event, consumed) = parser.parse(rest) { _, item in fetchFacts.add(item) }
            if case .needMoreBytes = event {
                parserBusy = true
                break
            }
            offset += consumed
            handle(event)
            if case .error = event { break }
        }
        // A STARTTLS switch discards what was not consumed; everything else is offered again.
        unconsumed = phase == .tlsHandshake ? 0 : bytes.count - offset
        return offset
    }

    /// Tagged status lines, `+` and `* n EXISTS/EXPUNGE/RECENT`, read in place. False: not one of
    /// those (or a literal follows), so the full parser takes the line.
    private func handleSimpleLine(_ line: UnsafeRawBufferPointer) -> Bool {
        let count = line.count
        guard count >= 3, line[count - 2] == 0x0D else { return false }
        if line[count - 3] == UInt8(ascii: "}") { return false }
        let first = line[0]
        if first == UInt8(ascii: "+") {
            continuation()
            return true
        }
        if first == UInt8(ascii: "*") {
            // "* " number SP ("EXISTS" / "EXPUNGE" / "RECENT") CRLF
            var index = 2
            guard count > 4, line[1] == 0x20 else { return false }
            var number: UInt32 = 0
            while index < count, line[index] >= 0x30, line[index] <= 0x39 {
                let (product, overflow) = number.multipliedReportingOverflow(by: 10)
                guard !overflow else { return false }
                number = product &+ UInt32(line[index] - 0x30)
                index += 1
            }
            guard index > 2, index < count, line[index] == 0x20 else { return false }
            let word = UnsafeRawBufferPointer(rebasing: line[(index + 1)..<(count - 2)])
            if matches(word, "EXISTS") {
                if let violation = checker.exists(number) { violated(violation) }
            } else if matches(word, "EXPUNGE") {
                if let violation = checker.expunge(number) { violated(violation) }
            } else if matches(word, "RECENT") {
                // Nothing to check.
            } else {
                return false
            }
            return true
        }
        // tag SP ("OK" / "NO" / "BAD") [SP text] CRLF
        guard let space = line.firstIndex(of: 0x20), space > 0 else { return false }
        var status: IMAPStatusKind
        let afterTag = UnsafeRawBufferPointer(rebasing: line[(space + 1)..<(count - 2)])
        if startsWithWord(afterTag, "OK") {
            status = .ok
        } else if startsWithWord(afterTag, "NO") {
            // "NO" alone (no text) is a plain NO.
            let text = UnsafeRawBufferPointer(rebasing: afterTag[min(3, afterTag.count)...])
            status = isExpungeIssued(text) ? .expungeIssued : .no
        } else if startsWithWord(afterTag, "BAD") {
            status = .bad
        } else {
            return false
        }
        var tag: UInt32 = 0
        var valid = line[0] == UInt8(ascii: "A") && space > 1 && space <= 10
        if valid {
            for index in 1..<space {
                let byte = line[index]
                guard byte >= 0x30, byte <= 0x39 else {
                    valid = false
                    break
                }
                tag = tag &* 10 &+ UInt32(byte - 0x30)
            }
        }
        guard valid, let position = inFlight.firstIndex(where: { $0.tag == tag }) else {
            let text = String(decoding: line[0..<(count - 2)], as: UTF8.self)
            violated(MailboxChecker.Violation(kind: .unknownTag, detail: "tagged response to no command: \(text)"))
            return true
        }
        let command = inFlight.remove(at: position)
        completed(command, status: status)
        return true
    }

    // resp-text = ["[" resp-text-code "]" SP] [text];  resp-text-code =/ "EXPUNGEISSUED" (RFC 5530)
    /// Whether a NO's text (after "NO ") starts with the EXPUNGEISSUED code.
    private func isExpungeIssued(_ text: UnsafeRawBufferPointer) -> Bool {
        let code: StaticString = "[EXPUNGEISSUED]"
        return matches(UnsafeRawBufferPointer(rebasing: text.prefix(code.utf8CodeUnitCount)), code)
    }

    private func matches(_ bytes: UnsafeRawBufferPointer, _ word: StaticString) -> Bool {
        guard bytes.count == word.utf8CodeUnitCount else { return false }
        for index in 0..<bytes.count where bytes[index] & 0xDF != word.utf8Start[index] { return false }
        return true
    }

    private func startsWithWord(_ bytes: UnsafeRawBufferPointer, _ word: StaticString) -> Bool {
        let length = word.utf8CodeUnitCount
        guard bytes.count >= length else { return false }
        for index in 0..<length where bytes[index] & 0xDF != word.utf8Start[index] { return false }
        return bytes.count == length || bytes[length] == 0x20
    }

    private func handle(_ event: IMAPResponseEvent) {
        switch event {
        case .response(let response):
            parserBusy = false
            handle(response)
        case .fetchStreamBegin(let sequence, _, _):
            // The items before, between and after streamed literals were visited into fetchFacts;
            // what they view goes with the literal's bytes, so it is computed now.
            parserBusy = true
            streamedSequence = sequence
            fetchFacts.settle()
        case .fetchStreamNext:
            fetchFacts.settle()
        case .streamBytes:
            break
        case .fetchStreamEnd:
            parserBusy = false
            fetched(streamedSequence)
        case .needMoreBytes:
            break
        case .error(let failure):
            statistics.failed(.unparseableResponse)
            violated(MailboxChecker.Violation(kind: .unparseableResponse, detail: "\(failure)"))
            connection?.close(.immediately)
        }
    }

    private func handle(_ response: IMAPResponse) {
        switch response {
        case .continuation:
            continuation()
        case .tagged(let tag, let status):
            let number = tagNumber(tag)
            guard let number, let position = inFlight.firstIndex(where: { $0.tag == number }) else {
                violated(MailboxChecker.Violation(kind: .unknownTag,
                    detail: "tagged response to no command: \(String(decoding: tag, as: UTF8.self))"))
                return
            }
            let command = inFlight.remove(at: position)
            let kind: IMAPStatusKind =
                switch status.kind {
                case .ok: .ok
                case .no: status.code == .expungeIssued ? .expungeIssued : .no
                default: .bad
                }
            completed(command, status: kind)
        case .untagged(let untagged):
            untaggedResponse(untagged)
        }
    }

    private func tagNumber(_ tag: [UInt8]) -> UInt32? {
        guard tag.count > 1, tag.count <= 10, tag[0] == UInt8(ascii: "A") else { return nil }
        var value: UInt32 = 0
        for byte in tag.dropFirst() {
            guard byte >= 0x30, byte <= 0x39 else { return nil }
            value = value &* 10 &+ UInt32(byte - 0x30)
        }
        return value
    }

    private func untaggedResponse(_ untagged: IMAPUntaggedResponse) {
        switch untagged {
        case .condition(let status):
            switch status.code {
            case .capability(let capabilities): learn(capabilities)
            case .uidValidity(let value):
                if let violation = checker.uidValidity(value, known: driver.uidValidity[user]) { violated(violation) }
                driver.uidValidity[user] = value
            default: break
            }
            if phase == .greeting && status.kind == .bye {
                // The server turns us away (too many connections, shutting down).
                statistics.failed(.connectFailed)
                let text = String(decoding: status.text, as: UTF8.self)
                driver.report(.connectFailed, "\(user): greeted with * BYE \(text)")
                phase = .loggingOut
                connection?.close(.immediately)
            } else if phase == .greeting {
                greeted(preauthenticated: status.kind == .preauth)
            } else if status.kind == .bye && phase != .loggingOut && !stopping {
                driver.report(.unexpectedClose, "\(user): * BYE \(String(decoding: status.text, as: UTF8.self))")
            }
        case .capability(let capabilities):
            learn(capabilities)
        case .exists(let count):
            if let violation = checker.exists(count) { violated(violation) }
        case .expunge(let sequence):
            if let violation = checker.expunge(sequence) { violated(violation) }
        case .fetch(let sequence, _):
            fetched(sequence)
        case .search(let numbers, _):
            if let violation = checker.searchResult(numbers, uid: false) { violated(violation) }
        default:
            break
        }
    }

    private func learn(_ capabilities: [[UInt8]]) {
        if capabilities.contains(where: { equalsIgnoringCase($0, "LITERAL+") }) { literalPlus = true }
    }

    /// A whole FETCH response was read, its items gathered in `fetchFacts`.
    private func fetched(_ sequence: UInt32) {
        let facts = fetchFacts
        fetchFacts = FetchFacts()
        // The oldest unanswered STORE on this UID is the one this FETCH answers (responses come in order).
        var expectation: StoreExpectation?
        var storeIndex: Int?
        let reportedUID = facts.otherUID != 0 ? facts.otherUID : facts.uid
        if reportedUID != 0 {
            storeIndex = inFlight.firstIndex { $0.store?.uid == reportedUID && !$0.storeAnswered }
            expectation = storeIndex.flatMap { inFlight[$0].store }
        }
        // A STORE by sequence number (UID not yet known) may change any message's flags; and with
        // pipelining a server may run a FETCH and a STORE side by side (Dovecot does), so a FETCH
        // can show flags before or after a STORE in flight: flags are then only learnt, not checked.
        let pipelined = pipelineDepth > 1
        let unattributed = inFlight.contains { $0.kind == .store && ($0.store == nil || pipelined) }
        if pipelined { expectation = nil }
        var violations: [MailboxChecker.Violation] = []
        checker.fetch(sequence, facts, stored: expectation, flagsMayChange: unattributed, into: &violations)
        if let storeIndex { inFlight[storeIndex].storeAnswered = true }
        for violation in violations { violated(violation) }
    }

    private func violated(_ violation: MailboxChecker.Violation) {
        statistics.violated(violation.kind)
        driver.collector.violation("\(violation.kind.name): \(user): \(violation.detail)")
    }

    // MARK: - Phases

    private func greeted(preauthenticated: Bool) {
        connectionUp()
        if preauthenticated {
            // PREAUTH (RFC 9051 7.1.4): already authenticated, no LOGIN (and no STARTTLS) possible.
            loggedIn()
        } else if configuration.security == .starttls {
            phase = .startTLS
            send(.login, counted: false) { $0.write("STARTTLS") }
        } else {
            phase = .login
            sendLogin()
        }
    }

    private func connectionUp() {
        statistics.completed(.connect, status: .ok, nanoseconds: LoadSession.now() - connectStart)
        statistics.connected += 1
        isCountedConnected = true
    }

    private func sendLogin() {
        let user = self.user
        let password = self.password
        send(.login) { output in
            output.write("LOGIN ")
            var user = user
            var password = password
            user.withUTF8 { output.write(astring: IMAPBytes(UnsafeRawBufferPointer($0))) }
            output.write(byte: 0x20)
            password.withUTF8 { output.write(astring: IMAPBytes(UnsafeRawBufferPointer($0))) }
        }
    }

    private func sendSelect() {
        phase = .select
        checker.beginSelect()
        let mailbox = configuration.mailbox
        send(.select) { output in
            output.write("SELECT ")
            var mailbox = mailbox
            mailbox.withUTF8 { output.write(astring: IMAPBytes(UnsafeRawBufferPointer($0))) }
        }
    }

    private func completed(_ command: InFlight, status: IMAPStatusKind) {
        let elapsed = LoadSession.now() &- command.start
        if command.counted { statistics.completed(command.kind, status: status, nanoseconds: elapsed) }
        switch phase {
        case .startTLS:
            guard status == .ok, let context = driver.plan.tlsContext else {
                statistics.failed(.connectFailed)
                driver.report(.connectFailed, "\(user): STARTTLS refused")
                connection?.close(.immediately)
                return
            }
            phase = .tlsHandshake
            connection?.startTLS(context: context, serverName: driver.plan.serverName)
        case .login:
            guard status == .ok else {
                statistics.failed(.loginFailed)
                driver.report(.loginFailed, "\(user): LOGIN answered \(status)")
                phase = .loggingOut
                connection?.close(.immediately)
                return
            }
            loggedIn()
        case .prepare:
            sendSelect()
        case .select:
            guard status == .ok else {
                driver.report(.loginFailed, "\(user): SELECT \(configuration.mailbox) answered \(status)")
                phase = .loggingOut
                connection?.close(.immediately)
                return
            }
            selected()
        case .running, .idling:
            if command.kind == .idle { endIdle() }
            if let store = command.store, status == .ok {
                checker.storeCompleted(store, answered: command.storeAnswered)
            } else if command.kind == .store {
                // A STORE by sequence number changed a message whose UID this session may not know yet.
                checker.forgetFlags()
            }
            if command.kind == .logout {
                phase = .loggingOut
                return
            }
            if mode == .append && configuration.rate > 0 && command.kind == .append {
                pace(after: command.start)
                return
            }
            fill()
        default:
            break
        }
    }

    private func loggedIn() {
        switch mode {
        case .append:
            phase = .running
            fill()
        case .stress where driver.plan.needsTargetMailbox:
            phase = .prepare
            send(.list, counted: false) { $0.write("CREATE apus-load") }
        default:
            sendSelect()
        }
    }

    private func selected() {
        phase = .running
        switch mode {
        case .stress:
            // Only a mix that reads or changes messages needs some in the mailbox.
            let missing = driver.plan.mixNeedsMessages ? configuration.prefill - checker.exists : 0
            if missing > 0 { queue.append(contentsOf: repeatElement(.append, count: missing)) }
        case .churn:
            queue.append(contentsOf: [.fetchFlags, .fetchHeaders, .logout])
        case .idle:
            queue.append(.idle)
        case .append:
            break
        }
        fill()
    }

    /// Append mode with a rate: the next delivery starts one interval after the last began.
    private func pace(after start: UInt64) {
        let interval = Double(configuration.clients) / configuration.rate
        let due = start &+ UInt64(interval * 1e9)
        let now = LoadSession.now()
        if due <= now {
            fill()
            return
        }
        paceTimer = driver.loop.schedule(after: .nanoseconds(Int64(due - now))) { [weak self] in self?.fill() }
    }

    // MARK: - Writing

    /// Sends commands until the pipeline is full, an exclusive command is in flight, or the run stops.
    func fill() {
        guard phase == .running, !stopping, connection != nil else { return }
        while inFlight.count < pipelineDepth {
            if let last = inFlight.last, last.kind.isExclusive || last.awaitsContinuation { return }
            let kind = nextKind()
            if kind.isExclusive && !inFlight.isEmpty {
                deferred = kind
                return
            }
            guard driver.mayStartCommand() else { return }
            issue(kind)
            if phase != .running { return }
        }
    }

    private func nextKind() -> LoadCommandKind {
        if let kind = deferred {
            deferred = nil
            return kind
        }
        if pendingExpunge { return .expunge }
        if !queue.isEmpty { return queue.removeFirst() }
        switch mode {
        case .append: return .append
        case .idle: return .idle
        case .churn: return .logout
        case .stress:
            let kind = mix.pick(random.below(mix.total))
            return kind == .login ? .logout : kind
        }
    }

    private func issue(_ kind: LoadCommandKind) {
        let exists = checker.exists
        let needsMessages: Bool
        switch kind {
        case .fetchFlags, .fetchHeaders, .fetchBody, .store, .copy, .move, .expunge: needsMessages = true
        default: needsMessages = false
        }
        if needsMessages && exists == 0 {
            issue(.append)
            return
        }
        switch kind {
        case .connect, .login:
            send(.noop) { $0.write("NOOP") }
        case .noop:
            send(.noop) { $0.write("NOOP") }
        case .list:
            send(.list) { $0.write("LIST \"\" \"*\"") }
        case .status:
            send(.status) { $0.write("STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN)") }
        case .select:
            sendSelect()
        case .fetchFlags:
            fetchRange(.fetchFlags, maximum: 10, exists: exists, items: " (UID FLAGS)")
        case .fetchHeaders:
            fetchRange(.fetchHeaders, maximum: 5, exists: exists, items:
                " (UID RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE)])")
        case .fetchBody:
            let sequence = random.inclusive(exists)
            send(.fetchBody) { output in
                output.write("FETCH ")
                output.write(number: sequence)
                output.write(" (UID RFC822.SIZE BODY.PEEK[])")
            }
        case .store:
            let sequence = random.inclusive(exists)
            let flag = TrackedFlags.storable[random.below(TrackedFlags.storable.count)]
            let add = random.below(2) == 0
            storeFlags(sequence: sequence, flags: flag, add: add, kind: .store)
        case .expunge:
            // Mark one message \Deleted (counted as a store), then EXPUNGE as the next command.
            if pendingExpunge {
                pendingExpunge = false
                send(.expunge) { $0.write("EXPUNGE") }
            } else {
                pendingExpunge = true
                storeFlags(sequence: random.inclusive(exists), flags: .deleted, add: true, kind: .store)
            }
        case .search:
            let choice = random.below(3)
            send(.search) { output in
                switch choice {
                case 0: output.write("SEARCH FLAGGED")
                case 1: output.write("SEARCH UNSEEN")
                default: output.write("SEARCH SUBJECT \"report\"")
                }
            }
        case .copy, .move:
            let sequence = random.inclusive(exists)
            send(kind) { output in
                output.write(kind == .copy ? "COPY " : "MOVE ")
                output.write(number: sequence)
                output.write(" apus-load")
            }
        case .append:
            sendAppend()
        case .idle:
            send(.idle, awaitsContinuation: true) { $0.write("IDLE") }
        case .logout:
            send(.logout) { $0.write("LOGOUT") }
        }
    }

    /// `FETCH low:high items` over a random range of up to `maximum` messages.
    private func fetchRange(_ kind: LoadCommandKind, maximum: Int, exists: Int, items: StaticString) {
        let (low, high) = range(maximum: maximum, exists: exists)
        send(kind) { output in
            output.write("FETCH ")
            output.write(number: low)
            output.write(byte: UInt8(ascii: ":"))
            output.write(number: high)
            output.write(items)
        }
    }

    /// A range of up to `maximum` sequence numbers within `1...exists`.
    private func range(maximum: Int, exists: Int) -> (Int, Int) {
        let length = min(exists, random.inclusive(maximum))
        let low = random.inclusive(exists - length + 1)
        return (low, low + length - 1)
    }

    /// `UID STORE uid ±FLAGS (flag)` when the UID is known (so the answer can be checked), else by sequence.
    private func storeFlags(sequence: Int, flags: TrackedFlags, add: Bool, kind: LoadCommandKind) {
        let uid = checker.uid(at: sequence)
        let bit = flags.rawValue.trailingZeroBitCount
        let name = TrackedFlags.names[bit]
        let expectation = uid == 0 ? nil : StoreExpectation(uid: uid, action: add ? .add : .remove, flags: flags)
        send(kind, store: expectation) { output in
            if uid != 0 {
                output.write("UID STORE ")
                output.write(number: uid)
            } else {
                output.write("STORE ")
                output.write(number: sequence)
            }
            output.write(add ? " +FLAGS (" : " -FLAGS (")
            output.write(name)
            output.write(byte: UInt8(ascii: ")"))
        }
    }

    private func sendAppend() {
        let messages = driver.plan.messages.messages
        let message = random.below(messages.count)
        let size = messages[message].count
        let mailbox = configuration.mailbox
        let nonSynchronizing = literalPlus
        send(.append, awaitsContinuation: !nonSynchronizing, message: message) { output in
            output.write("APPEND ")
            var mailbox = mailbox
            mailbox.withUTF8 { output.write(astring: IMAPBytes(UnsafeRawBufferPointer($0))) }
            output.write(" {")
            output.write(number: size)
            output.write(nonSynchronizing ? "+}" : "}")
        }
        if nonSynchronizing { writeMessage(message) }
    }

    private func writeMessage(_ message: Int) {
        guard let connection else { return }
        let bytes = driver.plan.messages.messages[message]
        bytes.withUnsafeBytes { connection.write($0) }
        connection.write(UnsafeRawBufferPointer(start: LoadSession.crlf.utf8Start, count: 2))
        statistics.sent(bytes.count + 2)
    }

    private static let crlf: StaticString = "\r\n"

    /// Writes `tag SP command CRLF` and records it in flight.
    private func send(_ kind: LoadCommandKind, counted: Bool = true, store: StoreExpectation? = nil,
                      awaitsContinuation: Bool = false, message: Int = 0, _ body: (inout IMAPOutputBuffer) -> Void) {
        guard let connection else { return }
        let tag = nextTag
        nextTag &+= 1
        output.clear()
        output.write(byte: UInt8(ascii: "A"))
        output.write(number: tag)
        output.write(byte: 0x20)
        body(&output)
        output.write("\r\n")
        output.bytes.withUnsafeBytes { connection.write($0) }
        statistics.sent(output.count)
        inFlight.append(InFlight(tag: tag, kind: kind, counted: counted, start: LoadSession.now(), store: store,
                                 awaitsContinuation: awaitsContinuation, message: message))
        if kind == .logout { phase = .loggingOut }
    }

    /// `+`: the oldest command waiting for it goes on.
    private func continuation() {
        guard let index = inFlight.firstIndex(where: { $0.awaitsContinuation }) else { return }
        inFlight[index].awaitsContinuation = false
        let command = inFlight[index]
        switch command.kind {
        case .idle:
            phase = .idling
            idleSince = LoadSession.now()
            if mode != .idle {
                idleTimer = driver.loop.schedule(after: configuration.idleHold) { [weak self] in self?.sendDone() }
            }
        case .append:
            writeMessage(command.message)
            fill()
        default:
            break
        }
    }

    private func sendDone() {
        guard phase == .idling, let connection else { return }
        let done = LoadSession.done
        connection.write(UnsafeRawBufferPointer(start: done.utf8Start, count: done.utf8CodeUnitCount))
        statistics.sent(LoadSession.done.utf8CodeUnitCount)
    }

    private static let done: StaticString = "DONE\r\n"

    private func endIdle() {
        guard phase == .idling else { return }
        statistics.totals.idleSeconds += Double(LoadSession.now() &- idleSince) / 1e9
        phase = .running
    }
}

extension LoadCommandKind {
    /// Commands that must be alone on the wire: they change what later commands mean (SELECT,
    /// and MOVE and EXPUNGE, which renumber messages under pipelined sequence numbers) or wait for `+`.
    var isExclusive: Bool {
        switch self {
        case .select, .idle, .logout, .login, .move, .expunge: true
        default: false
        }
    }
}
