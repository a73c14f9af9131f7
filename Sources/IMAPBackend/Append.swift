// IMAPBackend: APPEND and MULTIAPPEND (RFC 9051 6.3.12, RFC 3502, RFC 4315 APPENDUID), streamed: the
// message literal goes from the read buffer straight into the store's temporary file.

import Glibc
import IMAPProtocol
import Reactor
import Telemetry
import MailStore

/// An APPEND in progress.
final class AppendState {
    let tag: [UInt8]
    let mailbox: Mailbox
    /// The message being received.
    var writer: AppendWriter?
    var flags: ParsedFlags
    var internalDate: Int64?
    /// Messages fully received, waiting for the end of the command.
    var received: [(writer: AppendWriter, flags: ParsedFlags, internalDate: Int64?)] = []
    /// The first failure (message too large, disk error): reported once the literal is read.
    var failure: StoreError?

    init(tag: [UInt8], mailbox: Mailbox, flags: ParsedFlags, internalDate: Int64?) {
        self.tag = tag
        self.mailbox = mailbox
        self.flags = flags
        self.internalDate = internalDate
    }

    /// The message being received is complete.
    func closeMessage() {
        guard let writer else { return }
        self.writer = nil
        if failure == nil {
            received.append((writer, flags, internalDate))
        } else {
            writer.cancel()
        }
    }

    func discard() {
        writer?.cancel()
        writer = nil
        for message in received { message.writer.cancel() }
        received = []
    }
}

/// The received messages' writers, handed to a worker to finish (flush, analyse, name) off the loop.
/// `@unchecked Sendable`: the session gives them up while the worker runs and does not touch them.
private final class FinishJob: @unchecked Sendable {
    let writers: [(AppendWriter, Int64?)]

    init(_ writers: [(AppendWriter, Int64?)]) { self.writers = writers }

    func run() -> Result<[StagedMessage], StoreError> {
        var staged: [StagedMessage] = []
        for (index, (writer, date)) in writers.enumerated() {
            do {
                staged.append(try writer.finish(internalDate: date))
            } catch {
                for (rest, _) in writers[(index + 1)...] { rest.cancel() }
                for message in staged { message.discard() }
                return .failure(error)
            }
        }
        return .success(staged)
    }
}

extension IMAPSession {
    /// The start of an APPEND, or the next message of a MULTIAPPEND: `C: a APPEND INBOX (\Seen) {310}`
    func handleAppendMessage(_ frame: UnsafeRawBufferPointer, literal: IMAPLiteralHeader, isFirst: Bool) {
        if isFirst {
            startAppend(frame, literal: literal)
            return
        }
        guard let append else {
            framer.rejectAppendMessage()
            return
        }
        switch parser.parseAppendNext(frame) {
        case .success(.message(let message)):
            append.closeMessage()
            guard let flags = ParsedFlags(message.flags) else {
                rejectAppend(append.tag, .bad, "Invalid flag in APPEND")
                return
            }
            append.flags = flags
            append.internalDate = message.internalDate.map(IMAPSession.epochSeconds)
            beginMessage(append, literal: literal)
        case .success(.end), .failure:
            rejectAppend(append.tag, .bad, "Invalid APPEND message")
        }
    }

    private func startAppend(_ frame: UnsafeRawBufferPointer, literal: IMAPLiteralHeader) {
        let parsed = parser.parseAppendStart(frame)
        guard case .success(let tagged) = parsed, case .append(let name, let message) = tagged.command else {
            recordBadAppend(parsed)
            return
        }
        let tag = tagged.tag.copyBytes()
        guard state == .authenticated || state == .selected, user != nil else {
            rejectAppend(tag, .bad, "Command not valid in this state")
            return
        }
        beginAppendCommand()
        guard let flags = ParsedFlags(message.flags) else {
            rejectAppend(tag, .bad, "Invalid flag in APPEND")
            return
        }
        guard let storeName = storeName(name) else {
            rejectAppend(tag, .no, code: .tryCreate, "No such mailbox")
            return
        }
        let internalDate = message.internalDate.map(IMAPSession.epochSeconds)
        // A target no session has open is opened on a worker; the literal waits unread meanwhile
        // (the framer stands right after the APPEND line until the session reads on).
        tag.withUnsafeBytes { tagBytes in
            withMailbox(storeName, tag: IMAPBytes(tagBytes)) { [self] _, opened in
                switch opened {
                case .success(let mailbox):
                    let state = AppendState(tag: tag, mailbox: mailbox, flags: flags, internalDate: internalDate)
                    append = state
                    beginMessage(state, literal: literal)
                case .failure(.mailboxNotFound):
                    rejectAppend(tag, .no, code: .tryCreate, "No such mailbox")
                case .failure(let error):
                    framer.rejectAppendMessage()
                    fail(tag, error)
                }
            }
        }
    }

    private func beginMessage(_ state: AppendState, literal: IMAPLiteralHeader) {
        do {
            state.writer = try state.mailbox.beginAppend()
        } catch {
            append = nil
            state.discard()
            framer.rejectAppendMessage()
            fail(state.tag, error)
            return
        }
        if literal.isSynchronizing { out.writeContinuation() }
    }

    private func recordBadAppend(_ parsed: IMAPParseResult<IMAPTaggedCommand>) {
        framer.rejectAppendMessage()
        if case .failure(let tag?, let reason) = parsed {
            out.write(bytes: tag)
            out.write(" BAD ")
            out.write(contentsOf: "\(reason)".utf8)
            out.write("\r\n")
        } else {
            out.write("* BAD Invalid APPEND\r\n")
        }
    }

    private func rejectAppend(_ tag: [UInt8], _ kind: IMAPStatusResponse.Kind, code: IMAPResponseCode? = nil,
                              _ text: StaticString)
    {
        framer.rejectAppendMessage()
        abortAppend()
        finish(tag, kind, code: code, text)
    }

    /// Bytes of the message literal.
    func appendBytes(_ bytes: UnsafeRawBufferPointer) {
        guard let append, append.failure == nil, let writer = append.writer else { return }
        do {
            try writer.write(bytes)
        } catch {
            append.failure = error
        }
    }

    /// Drops a half-received APPEND.
    func abortAppend() {
        append?.discard()
        append = nil
    }

    /// The CRLF after the last message: commit every message, then `OK [APPENDUID ...]`.
    func handleAppendEnd(_ frame: UnsafeRawBufferPointer) {
        guard let append else { return }
        self.append = nil
        guard case .success(.end) = parser.parseAppendNext(frame) else {
            append.discard()
            finish(append.tag, .bad, "Invalid APPEND end")
            return
        }
        append.closeMessage()
        if let failure = append.failure {
            append.discard()
            fail(append.tag, failure)
            return
        }
        guard let user, let transport else { return }
        // Finishing runs the MIME analysis over each message: on a worker, not on the loop.
        let job = FinishJob(append.received.map { ($0.writer, $0.internalDate) })
        let flags = append.received.map(\.flags)
        append.received = []
        suspend()
        transport.runBlocking({ job.run() }) { [self] result in
            let staged: [StagedMessage]
            switch result {
            case .failure(let error):
                fail(append.tag, error)
                resume()
                return
            case .success(let messages):
                staged = messages
            }
            let requests = zip(staged, flags).map { AppendRequest(message: $0, flags: $1.system, keywords: $1.keywords) }
            let commit: PendingCommit
            do throws(StoreError) {
                commit = try append.mailbox.prepareAppend(requests)
            } catch {
                for message in staged { message.discard() }
                fail(append.tag, error)
                resume()
                return
            }
            user.commit(commit, in: append.mailbox, transport: transport) { [self] error in
                if let error {
                    fail(append.tag, error)
                } else {
                    let uids = IMAPSession.sequenceSetText(commit.assignedUIDs)
                    finish(append.tag, .ok, code: .appendUID(uidValidity: commit.uidValidity, uids: uids),
                           "APPEND completed")
                }
                resume()
            }
        }
    }
}
