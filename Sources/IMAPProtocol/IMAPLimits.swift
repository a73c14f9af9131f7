// IMAPProtocol: every limit the framer and parsers enforce, in one place.

/// The limits the framer and parsers enforce. Each has a test; each is checked before memory is spent.
public struct IMAPLimits: Sendable, Equatable {
    /// Most bytes of a command that is held whole in the read buffer: its lines plus any literals inside
    /// it, except APPEND message literals, which are streamed. Default 64 KiB.
    public var maxCommandLength: Int
    /// Largest APPEND message literal accepted (the APPENDLIMIT of RFC 7889). Default 64 MiB.
    public var maxAppendLiteralSize: UInt64
    /// Largest non-synchronizing literal whose bytes the framer will read and throw away to stay in step
    /// after rejecting a command; past this the connection cannot be resynchronised. Default 1 MiB.
    public var maxDiscardableLiteralSize: UInt64
    /// Deepest nesting of parentheses (search keys, fetch lists, body structures). Default 100.
    public var maxNestingDepth: Int
    /// Longest command tag. Default 64 bytes.
    public var maxTagLength: Int
    /// Most ranges in one sequence set. Default 10,000.
    public var maxSequenceSetRanges: Int
    /// Bad commands in a row before the session should disconnect. Default 10.
    public var maxBadCommands: Int
    /// Which non-synchronizing literals are allowed (RFC 7888). Default LITERAL+.
    public var nonSynchronizingLiterals: NonSynchronizingLiterals

    /// The RFC 7888 capability the server advertises.
    public enum NonSynchronizingLiterals: Sendable, Equatable {
        /// Neither LITERAL+ nor LITERAL-: every `{N+}` is a protocol error.
        case none
        /// LITERAL+: `{N+}` of any size (up to the other limits).
        case literalPlus
        /// LITERAL-: `{N+}` only up to 4096 bytes.
        case literalMinus

        /// The largest `{N+}` this mode allows.
        var maximum: UInt64 {
            switch self {
            case .none: return 0
            case .literalPlus: return UInt64.max
            case .literalMinus: return 4096
            }
        }
    }

    /// Limits with the documented defaults.
    public init(
        maxCommandLength: Int = 64 * 1024,
        maxAppendLiteralSize: UInt64 = 64 * 1024 * 1024,
        maxDiscardableLiteralSize: UInt64 = 1024 * 1024,
        maxNestingDepth: Int = 100,
        maxTagLength: Int = 64,
        maxSequenceSetRanges: Int = 10_000,
        maxBadCommands: Int = 10,
        nonSynchronizingLiterals: NonSynchronizingLiterals = .literalPlus
    ) {
        self.maxCommandLength = maxCommandLength
        self.maxAppendLiteralSize = maxAppendLiteralSize
        self.maxDiscardableLiteralSize = maxDiscardableLiteralSize
        self.maxNestingDepth = maxNestingDepth
        self.maxTagLength = maxTagLength
        self.maxSequenceSetRanges = maxSequenceSetRanges
        self.maxBadCommands = maxBadCommands
        self.nonSynchronizingLiterals = nonSynchronizingLiterals
    }
}

/// Counts bad commands in a row against ``IMAPLimits/maxBadCommands``; a good command resets it. A
/// client that keeps sending garbage is disconnected instead of being answered forever.
public struct IMAPBadCommandCounter: Sendable {
    /// Bad commands in a row after which the session should close.
    public let limit: Int
    /// Bad commands since the last good one.
    public private(set) var consecutive = 0

    public init(limits: IMAPLimits = IMAPLimits()) {
        limit = limits.maxBadCommands
    }

    /// Records a command answered with `BAD`; returns true when the session should now send
    /// `* BYE Too many invalid commands` and close.
    public mutating func recordBadCommand() -> Bool {
        consecutive += 1
        return consecutive >= limit
    }

    /// Records a command that parsed.
    public mutating func recordGoodCommand() { consecutive = 0 }
}
