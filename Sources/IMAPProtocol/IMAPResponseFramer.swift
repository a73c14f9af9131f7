// IMAPProtocol: IMAPResponseFramer, where does a server response end? (client side and proxy relay)

/// What the response framer found in the caller's buffer.
public enum IMAPResponseFrame: Equatable {
    /// Bytes `0..<length` are a whole response (with any small literals inside it), or, when
    /// `continuesStream`, the rest of a response after a streamed literal.
    case complete(length: Int, continuesStream: Bool)
    /// Bytes `0..<length` are a response up to and including the CRLF after a literal of `size` bytes
    /// that is streamed: the bytes follow as `.streamBytes`. `continuesStream` as above.
    case streamStart(length: Int, size: UInt64, continuesStream: Bool)
    /// Bytes `0..<count` belong to the streamed literal.
    case streamBytes(count: Int)
    /// Read more and call again over the same unconsumed bytes.
    case needMoreBytes
    /// The response is longer than the limit or announces an impossible literal: close the connection.
    case tooLarge
}

/// Server-response framing, incremental across reads: finds where each response ends (CRLF lines
/// joined by literals) and streams literals larger than `streamingThreshold` instead of holding them.
/// The proxy can follow response boundaries with it alone (a tagged line ends a command); the
/// ``IMAPResponseParser`` builds on it.
///
/// Contract as for ``IMAPCommandFramer``: pass the unconsumed bytes; consume exactly what a result says.
public struct IMAPResponseFramer: Sendable {
    public let limits: IMAPLimits
    /// Literals larger than this are streamed (0 streams every non-empty literal).
    public let streamingThreshold: Int

    private var streamRemaining: UInt64 = 0
    private var lines = IMAPLineScanner()
    /// After a streamed literal, the next frame continues the same response.
    private var continuesStream = false

    public init(limits: IMAPLimits = IMAPLimits(), streamingThreshold: Int = 16 * 1024) {
        self.limits = limits
        self.streamingThreshold = streamingThreshold
    }

    /// Examines the unconsumed bytes and says what they are.
    public mutating func scan(_ buffer: UnsafeRawBufferPointer) -> IMAPResponseFrame {
        if streamRemaining > 0 {
            guard buffer.count > 0 else { return .needMoreBytes }
            let count = Int(min(UInt64(buffer.count), streamRemaining))
            streamRemaining -= UInt64(count)
            return .streamBytes(count: count)
        }
        while true {
            let lineEnd: Int
            let ending: IMAPLineScanner.LineEnding
            switch lines.nextLine(buffer, maxLength: limits.maxCommandLength) {
            case .needMoreBytes: return .needMoreBytes
            case .tooLong: return .tooLarge
            case .line(let end, let lineEnding):
                lineEnd = end
                ending = lineEnding
            }
            switch ending {
            case .none:
                let continues = continuesStream
                resetFrame()
                return .complete(length: lineEnd, continuesStream: continues)
            case .tooLarge:
                return .tooLarge
            case .literal(let header, _):
                if header.size > UInt64(streamingThreshold) {
                    let continues = continuesStream
                    resetFrame()
                    continuesStream = true
                    streamRemaining = header.size
                    return .streamStart(length: lineEnd, size: header.size, continuesStream: continues)
                }
                guard header.size <= UInt64(limits.maxCommandLength - lineEnd) else { return .tooLarge }
                lines.skipLiteral(lineEnd: lineEnd, size: Int(header.size))
            }
        }
    }

    /// Bytes of the streamed literal not yet reported (0 outside a streamed literal).
    public var streamBytesRemaining: UInt64 { streamRemaining }

    /// Counts `count` bytes of the streamed literal as passed without seeing them (a relay moved
    /// them with splice(2)). At most ``streamBytesRemaining``.
    public mutating func skipStreamBytes(_ count: UInt64) {
        streamRemaining -= min(count, streamRemaining)
    }

    private mutating func resetFrame() {
        lines.reset()
        continuesStream = false
    }
}
