// IMAPProtocol: IMAPCommandFramer, the first parsing layer: where does a client command end?

/// A literal announced at the end of a line: `{N}`, `{N+}`, `~{N}` or `~{N+}` (RFC 3501 section 4.3,
/// RFC 7888, RFC 3516).
public struct IMAPLiteralHeader: Equatable, Sendable {
    /// The number of octets that follow the CRLF.
    public var size: UInt64
    /// `true` for `{N}`: the client waits for a continuation request before sending the bytes.
    public var isSynchronizing: Bool
    /// `true` for `~{N}` (literal8): the bytes may include NUL.
    public var isBinary: Bool

    public init(size: UInt64, isSynchronizing: Bool, isBinary: Bool) {
        self.size = size
        self.isSynchronizing = isSynchronizing
        self.isBinary = isBinary
    }
}

/// Why the framer rejected a command, what tag it had, and how to get back in step with the client.
public struct IMAPFrameError {
    /// What went wrong.
    public enum Reason: Equatable, Sendable {
        /// The command grew past `IMAPLimits.maxCommandLength` (a line, or inline literals).
        case commandTooLong
        /// A literal larger than its limit (APPENDLIMIT for APPEND, the command length otherwise), or a
        /// size that does not fit in 64 bits.
        case literalTooLarge
        /// `{N+}` while neither LITERAL+ nor LITERAL- is offered, or larger than 4096 under LITERAL-.
        case nonSynchronizingLiteralRefused
    }

    /// How the caller gets back in step after answering `tag BAD`.
    public enum Recovery: Equatable, Sendable {
        /// Consume `bytes` and carry on calling `scan`; any bytes the client still sends for this
        /// command come back as `.discard`.
        case skip(bytes: Int)
        /// The byte stream cannot be resynchronised: answer, then close the connection.
        case disconnect
    }

    /// The command's tag, when the line started with a valid one (a view into the caller's buffer).
    public var tag: IMAPBytes?
    public var reason: Reason
    public var recovery: Recovery

    /// Text for the `tag BAD` (or `* BYE`) line.
    public var text: StaticString {
        switch reason {
        case .commandTooLong: return "Command line too long"
        case .literalTooLarge: return "Literal too large"
        case .nonSynchronizingLiteralRefused: return "Non-synchronizing literal not allowed here"
        }
    }
}

/// What the framer found in the caller's buffer.
public enum IMAPFrameResult {
    /// Bytes `0..<length` are one complete command (ending with LF, usually CRLF) including any
    /// literals inside it. Parse it, then consume `length` bytes.
    case complete(length: Int)
    /// Read more bytes and call `scan` again over the same unconsumed bytes.
    case needMoreBytes
    /// A synchronizing literal was announced: send a continuation request (`+ Ready`) and read more.
    case needContinuation
    /// Bytes `0..<length` are the part of an APPEND command up to and including the CRLF after a message
    /// literal's announcement: the command's start when `isFirst` (parse with
    /// `IMAPCommandParser.parseAppendStart`), otherwise the next message of a MULTIAPPEND (parse with
    /// `parseAppendNext`). Consume `length`, send a continuation if the literal is synchronizing and the
    /// message is accepted (otherwise call ``IMAPCommandFramer/rejectAppendMessage()``), then call `scan`
    /// to receive the message bytes.
    case appendMessage(length: Int, literal: IMAPLiteralHeader, isFirst: Bool)
    /// Bytes `0..<length` end an APPEND after its last message (normally just CRLF; parse with
    /// `IMAPCommandParser.parseAppendNext`, which also rejects junk).
    case appendEnd(length: Int)
    /// Bytes `0..<count` are APPEND message bytes, in order: hand them on, then consume them.
    case appendBytes(count: Int)
    /// Bytes `0..<count` belong to a rejected command: consume and ignore them.
    case discard(count: Int)
    /// The command cannot be accepted; see the error's recovery.
    case bad(IMAPFrameError)
}

/// Server-side framing, incremental across reads: finds where each client command ends (CRLF lines
/// joined by literals), asks for continuations, streams APPEND message literals, and enforces limits.
///
/// Contract: pass the connection's unconsumed readable bytes on each call; between calls the caller
/// consumes exactly what a result says (nothing after `.needMoreBytes` or `.needContinuation`). The
/// framer remembers how far it has scanned, so each byte is looked at once.
///
/// ```
/// C: A003 APPEND saved-messages (\Seen) {310}     -> .appendMessage(length: 43, {310})
/// S: + Ready for literal data
/// C: Date: Mon, 7 Feb 1994 21:52:25 -0800 ...    -> .appendBytes(count: ...) until 310 bytes
/// C: <CRLF>                                       -> .complete(length: 2): the end of the APPEND
/// ```
public struct IMAPCommandFramer: Sendable {
    public let limits: IMAPLimits

    private enum Mode {
        /// Looking for the end of the current command.
        case frame
        /// Passing on the bytes of an APPEND message literal.
        case appendBytes(remaining: UInt64)
        /// Throwing away the bytes of a literal that belongs to a rejected command.
        case discardLiteral(remaining: UInt64)
        /// Throwing away the rest of a rejected command's line (searched up to `scanned`).
        case discardLine(scanned: Int)
    }

    private var mode: Mode = .frame
    /// Where the current frame's lines and inline literals have been scanned up to.
    private var lines = IMAPLineScanner()
    /// Whether this frame's command is APPEND (nil until a literal makes it matter).
    private var isAppend: Bool?
    /// Whether the frame continues an APPEND after a message literal (any literal now is a message).
    private var inAppendTail = false
    /// Whether the APPEND message literal being passed on was announced as `{N}`.
    private var appendLiteralIsSynchronizing = false

    public init(limits: IMAPLimits = IMAPLimits()) {
        self.limits = limits
    }

    /// Whether the framer is between commands (nothing of a command has been scanned yet).
    public var isIdle: Bool {
        if case .frame = mode { return lines.isAtStart && !inAppendTail }
        return false
    }

    /// Refuses the APPEND message just announced by `.appendMessage` (after answering `tag NO`/`BAD`).
    /// For a synchronizing literal the client sends nothing more, so the command is over; the bytes of
    /// a non-synchronizing one, and the rest of the command, come back as `.discard`.
    public mutating func rejectAppendMessage() {
        guard case .appendBytes(let remaining) = mode else { return }
        resetFrame()
        if appendLiteralIsSynchronizing {
            mode = .frame
        } else {
            mode = remaining == 0 ? .discardLine(scanned: 0) : .discardLiteral(remaining: remaining)
        }
    }

    /// Bytes of the APPEND message literal not yet reported (0 outside one).
    public var appendBytesRemaining: UInt64 {
        if case .appendBytes(let remaining) = mode { return remaining }
        return 0
    }

    /// Counts `count` bytes of the APPEND message literal as passed without seeing them (a relay
    /// moved them with splice(2)). At most ``appendBytesRemaining``.
    public mutating func skipAppendBytes(_ count: UInt64) {
        guard case .appendBytes(let remaining) = mode else { return }
        mode = .appendBytes(remaining: remaining - min(count, remaining))
    }

    /// Examines `buffer` (the unconsumed readable bytes) and says what to do next.
    public mutating func scan(_ buffer: UnsafeRawBufferPointer) -> IMAPFrameResult {
        switch mode {
        case .frame:
            return scanFrame(buffer)
        case .appendBytes(let remaining):
            if remaining == 0 {
                mode = .frame
                return scanFrame(buffer)
            }
            guard buffer.count > 0 else { return .needMoreBytes }
            let count = Int(min(UInt64(buffer.count), remaining))
            mode = .appendBytes(remaining: remaining - UInt64(count))
            return .appendBytes(count: count)
        case .discardLiteral(let remaining):
            guard buffer.count > 0 else { return .needMoreBytes }
            let count = Int(min(UInt64(buffer.count), remaining))
            let left = remaining - UInt64(count)
            mode = left == 0 ? .discardLine(scanned: 0) : .discardLiteral(remaining: left)
            return .discard(count: count)
        case .discardLine(let scanned):
            return scanDiscardedLine(buffer, scanned: scanned)
        }
    }

    private mutating func resetFrame() {
        lines.reset()
        isAppend = nil
        inAppendTail = false
    }

    private mutating func scanFrame(_ buffer: UnsafeRawBufferPointer) -> IMAPFrameResult {
        while true {
            let lineEnd: Int
            let ending: IMAPLineScanner.LineEnding
            switch lines.nextLine(buffer, maxLength: limits.maxCommandLength) {
            case .needMoreBytes: return .needMoreBytes
            case .tooLong: return fail(buffer, .commandTooLong, .disconnect)
            case .line(let end, let lineEnding):
                lineEnd = end
                ending = lineEnding
            }
            switch ending {
            case .none:
                let endsAppend = inAppendTail
                resetFrame()
                return endsAppend ? .appendEnd(length: lineEnd) : .complete(length: lineEnd)
            case .tooLarge(let isSynchronizing):
                return refuseLiteral(
                    buffer, lineEnd: lineEnd, size: nil, isSynchronizing: isSynchronizing,
                    reason: .literalTooLarge)
            case .literal(let header, let braceOffset):
                if !header.isSynchronizing && header.size > limits.nonSynchronizingLiterals.maximum {
                    return refuseLiteral(
                        buffer, lineEnd: lineEnd, size: header.size, isSynchronizing: false,
                        reason: .nonSynchronizingLiteralRefused)
                }
                if isMessageLiteral(buffer.baseAddress.unsafelyUnwrapped, braceOffset: braceOffset) {
                    if header.size > limits.maxAppendLiteralSize {
                        return refuseLiteral(
                            buffer, lineEnd: lineEnd, size: header.size,
                            isSynchronizing: header.isSynchronizing, reason: .literalTooLarge)
                    }
                    let isFirst = !inAppendTail
                    resetFrame()
                    inAppendTail = true
                    appendLiteralIsSynchronizing = header.isSynchronizing
                    mode = .appendBytes(remaining: header.size)
                    return .appendMessage(length: lineEnd, literal: header, isFirst: isFirst)
                }
                guard header.size <= UInt64(limits.maxCommandLength - lineEnd) else {
                    return refuseLiteral(
                        buffer, lineEnd: lineEnd, size: header.size,
                        isSynchronizing: header.isSynchronizing, reason: .literalTooLarge)
                }
                lines.skipLiteral(lineEnd: lineEnd, size: Int(header.size))
                if header.isSynchronizing { return .needContinuation }
            }
        }
    }

    /// A literal ends an APPEND message's announcement unless it is the mailbox name, which comes right
    /// after `tag SP "APPEND" SP`.
    private mutating func isMessageLiteral(_ base: UnsafeRawPointer, braceOffset: Int) -> Bool {
        if inAppendTail { return true }
        let mailboxOffset = IMAPCommandFramer.appendMailboxOffset(base, limit: braceOffset)
        if isAppend == nil { isAppend = mailboxOffset != nil }
        return isAppend == true && mailboxOffset != braceOffset
    }

    /// The offset just after `tag SP "APPEND" SP` when the frame starts that way (within `limit`).
    private static func appendMailboxOffset(_ base: UnsafeRawPointer, limit: Int) -> Int? {
        var offset = 0
        while offset < limit, base.load(fromByteOffset: offset, as: UInt8.self) != 0x20 { offset += 1 }
        guard offset > 0, offset + 8 <= limit else { return nil }
        let name = IMAPBytes(base: base + offset + 1, count: 6)
        guard name.equalsCaseInsensitive("APPEND"),
            base.load(fromByteOffset: offset + 7, as: UInt8.self) == 0x20
        else { return nil }
        return offset + 8
    }

    private mutating func refuseLiteral(
        _ buffer: UnsafeRawBufferPointer, lineEnd: Int, size: UInt64?, isSynchronizing: Bool,
        reason: IMAPFrameError.Reason
    ) -> IMAPFrameResult {
        if isSynchronizing {
            // The client waits for a continuation that will not come: the command ends here.
            return fail(buffer, reason, .skip(bytes: lineEnd))
        }
        guard let size, size <= limits.maxDiscardableLiteralSize else {
            return fail(buffer, reason, .disconnect)
        }
        let result = fail(buffer, reason, .skip(bytes: lineEnd))
        mode = size == 0 ? .discardLine(scanned: 0) : .discardLiteral(remaining: size)
        return result
    }

    private mutating func fail(
        _ buffer: UnsafeRawBufferPointer, _ reason: IMAPFrameError.Reason, _ recovery: IMAPFrameError.Recovery
    ) -> IMAPFrameResult {
        let tag = IMAPCommandFramer.tag(in: buffer, maxLength: limits.maxTagLength)
        resetFrame()
        mode = .frame
        return .bad(IMAPFrameError(tag: tag, reason: reason, recovery: recovery))
    }

    /// Throws away the rest of a rejected command: up to its LF, and on through any further
    /// non-synchronizing literals it announces. The line is held until its LF arrives (so an
    /// announcement split across reads is still seen); `scanned` says how much was already searched.
    private mutating func scanDiscardedLine(_ buffer: UnsafeRawBufferPointer, scanned: Int) -> IMAPFrameResult {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return .needMoreBytes }
        guard let lineFeed = findLineFeed(base, from: min(scanned, buffer.count), to: buffer.count) else {
            if buffer.count > limits.maxCommandLength {
                mode = .frame
                return .bad(IMAPFrameError(tag: nil, reason: .commandTooLong, recovery: .disconnect))
            }
            mode = .discardLine(scanned: buffer.count)
            return .needMoreBytes
        }
        let contentEnd =
            lineFeed > 0 && base.load(fromByteOffset: lineFeed - 1, as: UInt8.self) == 0x0D
            ? lineFeed - 1 : lineFeed
        mode = .frame
        if case .literal(let header, _) = IMAPLineScanner.literalAtEnd(base, lineStart: 0, contentEnd: contentEnd),
            !header.isSynchronizing
        {
            guard header.size <= limits.maxDiscardableLiteralSize else {
                return .bad(IMAPFrameError(tag: nil, reason: .literalTooLarge, recovery: .disconnect))
            }
            mode = header.size == 0 ? .discardLine(scanned: 0) : .discardLiteral(remaining: header.size)
        }
        return .discard(count: lineFeed + 1)
    }

    /// The first tag-shaped token of the buffer, for error replies.
    static func tag(in buffer: UnsafeRawBufferPointer, maxLength: Int) -> IMAPBytes? {
        var length = 0
        while length < buffer.count, length <= maxLength, IMAPByteClass.isTagChar(buffer[length]) { length += 1 }
        guard length > 0, length <= maxLength, length < buffer.count, buffer[length] == 0x20 else { return nil }
        return IMAPBytes(base: buffer.baseAddress, count: length)
    }
}
