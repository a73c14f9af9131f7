// IMAPProtocol: IMAPCommand, one case per client command, and the small value types its cases carry.

/// A client command with its tag. Its views point into the frame it was parsed from.
public struct IMAPTaggedCommand: Equatable {
    public var tag: IMAPBytes
    public var command: IMAPCommand

    public init(tag: IMAPBytes, command: IMAPCommand) {
        self.tag = tag
        self.command = command
    }
}

/// Every client command Apus understands. Arguments are views into the read buffer (see ``IMAPBytes``).
/// UID forms carry `uid: true`. APPEND appears here as its start: the message bytes stream separately
/// (see ``IMAPCommandFramer`` and ``IMAPCommandParser/parseAppendNext(_:limits:)``).
public enum IMAPCommand: Equatable {
    /// RFC 9051 6.1.1. `C: a CAPABILITY` / `S: * CAPABILITY IMAP4rev2 ...`
    case capability
    /// RFC 9051 6.1.2. `C: a NOOP` / `S: a OK NOOP completed`
    case noop
    /// RFC 9051 6.1.3. `C: a LOGOUT` / `S: * BYE` / `S: a OK`
    case logout
    /// RFC 9051 6.2.1. `C: a STARTTLS` / `S: a OK Begin TLS negotiation now`
    case startTLS
    /// RFC 9051 6.2.2, RFC 4959 (SASL-IR). `C: a AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=`; an initial
    /// response of `=` is an empty one.
    case authenticate(mechanism: IMAPBytes, initialResponse: IMAPBytes?)
    /// RFC 9051 6.2.3. `C: a001 LOGIN SMITH SESAME`
    case login(user: IMAPString, password: IMAPString)
    /// RFC 5161, RFC 9051 6.3.1. `C: t2 ENABLE CONDSTORE QRESYNC` / `S: * ENABLED CONDSTORE QRESYNC`
    case enable(IMAPAtomList)
    /// RFC 9051 6.3.2, RFC 7162 3.1.8/3.2.5. `C: A142 SELECT INBOX (CONDSTORE)`
    case select(IMAPMailboxName, IMAPSelectParameters)
    /// RFC 9051 6.3.3. `C: A932 EXAMINE blurdybloop`
    case examine(IMAPMailboxName, IMAPSelectParameters)
    /// RFC 9051 6.3.4, RFC 6154 (USE). `C: t1 CREATE "Important Messages" (USE (\Important))`
    case create(IMAPMailboxName, specialUse: IMAPFlagList?)
    /// RFC 9051 6.3.5. `C: A683 DELETE blurdybloop`
    case delete(IMAPMailboxName)
    /// RFC 9051 6.3.6. `C: A683 RENAME blurdybloop sarasoop`
    case rename(from: IMAPMailboxName, to: IMAPMailboxName)
    /// RFC 9051 6.3.7. `C: A002 SUBSCRIBE #news.comp.mail.mime`
    case subscribe(IMAPMailboxName)
    /// RFC 9051 6.3.8. `C: A002 UNSUBSCRIBE #news.comp.mail.mime`
    case unsubscribe(IMAPMailboxName)
    /// RFC 9051 6.3.9, RFC 5258, RFC 5819. `C: A02 LIST (SUBSCRIBED) "" ("%" "Other/%") RETURN (CHILDREN)`
    case list(IMAPListCommand)
    /// RFC 3501 6.3.9. `C: A002 LSUB "#news." "comp.mail.*"`
    case lsub(reference: IMAPMailboxName, pattern: IMAPString)
    /// RFC 2342, RFC 9051 6.3.10. `C: A001 NAMESPACE`
    case namespace
    /// RFC 9051 6.3.11. `C: A042 STATUS blurdybloop (UIDNEXT MESSAGES)`
    case status(IMAPMailboxName, IMAPStatusAttributes)
    /// RFC 9051 6.3.12, RFC 3502. The start of an APPEND up to its first message literal.
    /// `C: A003 APPEND saved-messages (\Seen) {310}`
    case append(IMAPMailboxName, IMAPAppendMessage)
    /// RFC 2177, RFC 9051 6.3.13. `C: A002 IDLE` / `S: + idling` / `C: DONE`
    case idle
    /// RFC 3501 6.4.1. `C: FXXZ CHECK`
    case check
    /// RFC 9051 6.4.1. `C: A341 CLOSE`
    case close
    /// RFC 3691, RFC 9051 6.4.2. `C: A342 UNSELECT`
    case unselect
    /// RFC 9051 6.4.3. `C: A202 EXPUNGE`
    case expunge
    /// RFC 4315, RFC 9051 6.4.9. `C: A003 UID EXPUNGE 3000:3002`
    case uidExpunge(IMAPSequenceSet)
    /// RFC 9051 6.4.4, RFC 4731, RFC 7162. `C: A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994`
    case search(IMAPSearchCommand, uid: Bool)
    /// RFC 9051 6.4.5, RFC 3516, RFC 7162. `C: A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])`
    case fetch(IMAPSequenceSet, IMAPFetchAttributeList, IMAPFetchModifiers, uid: Bool)
    /// RFC 9051 6.4.6, RFC 7162 3.1.3. `C: A003 STORE 2:4 +FLAGS (\Deleted)`
    case store(IMAPSequenceSet, IMAPStoreAction, unchangedSince: UInt64?, uid: Bool)
    /// RFC 9051 6.4.7. `C: A003 COPY 2:4 MEETING`
    case copy(IMAPSequenceSet, IMAPMailboxName, uid: Bool)
    /// RFC 6851, RFC 9051 6.4.8. `C: a UID MOVE 42:69 foo`
    case move(IMAPSequenceSet, IMAPMailboxName, uid: Bool)
    /// RFC 2971. `C: a023 ID ("name" "sodr" "version" "19.34")`; `nil` for `ID NIL`.
    case id(IMAPIDParameters?)
    /// RFC 8437. `C: A3 UNAUTHENTICATE`
    case unauthenticate
    /// RFC 4978. `C: t1 COMPRESS DEFLATE`
    case compress(IMAPBytes)
    /// RFC 9208 4.2. `C: G0001 GETQUOTA "!partition.sda4"`
    case getQuota(root: IMAPString)
    /// RFC 9208 4.3. `C: G0002 GETQUOTAROOT INBOX`
    case getQuotaRoot(IMAPMailboxName)
    /// RFC 5256. `C: A283 SORT (SUBJECT REVERSE DATE) UTF-8 ALL`
    case sort(IMAPSortCriteria, IMAPSearchProgram, uid: Bool)
    /// RFC 5256. `C: A283 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000`
    case thread(algorithm: IMAPBytes, IMAPSearchProgram, uid: Bool)
}

/// A list of atoms (ENABLE's capabilities), kept as a view and walked lazily.
public struct IMAPAtomList: Equatable, Sequence {
    /// The atoms separated by single spaces.
    public let text: IMAPBytes
    public let count: Int

    init(text: IMAPBytes, count: Int) {
        self.text = text
        self.count = count
    }

    /// Validates space-separated atoms.
    public init?(_ text: IMAPBytes) {
        var parser = IMAPParser(text, limits: IMAPLimits())
        guard let list = parser.atomList(), parser.isAtEnd else { return nil }
        self = list
    }

    public func makeIterator() -> IMAPElementIterator<IMAPBytes> { IMAPElementIterator(text) { $0.atom() } }

    /// Capability names compare case-insensitively.
    public static func == (lhs: IMAPAtomList, rhs: IMAPAtomList) -> Bool {
        lhs.count == rhs.count && lhs.elementsEqual(rhs) { $0.equalsCaseInsensitive($1) }
    }
}

/// SELECT/EXAMINE parameters (RFC 7162 sections 3.1.8 and 3.2.5).
public struct IMAPSelectParameters: Equatable {
    /// `(CONDSTORE)`
    public var condStore: Bool
    /// `(QRESYNC (uidvalidity modseq [known-uids] [(seqs uids)]))`
    public var qresync: IMAPQResyncParameters? {
        get { qresyncBox?.value }
        set { qresyncBox = newValue.map(QResyncBox.init) }
    }

    /// QRESYNC is rare and large; boxing it keeps every parsed command small, which matters because
    /// commands are returned by value on the hot path.
    private var qresyncBox: QResyncBox?

    private final class QResyncBox {
        let value: IMAPQResyncParameters
        init(_ value: IMAPQResyncParameters) { self.value = value }
    }

    public init(condStore: Bool = false, qresync: IMAPQResyncParameters? = nil) {
        self.condStore = condStore
        self.qresync = qresync
    }

    public static func == (lhs: IMAPSelectParameters, rhs: IMAPSelectParameters) -> Bool {
        lhs.condStore == rhs.condStore && lhs.qresync == rhs.qresync
    }
}

/// The QRESYNC select parameter (RFC 7162 section 3.2.5).
public struct IMAPQResyncParameters: Equatable {
    public var uidValidity: UInt32
    public var modificationSequence: UInt64
    public var knownUIDs: IMAPSequenceSet?
    /// `(known-sequence-set known-uid-set)`
    public var knownSequenceSet: IMAPSequenceSet?
    public var knownUIDSet: IMAPSequenceSet?

    public init(
        uidValidity: UInt32, modificationSequence: UInt64, knownUIDs: IMAPSequenceSet? = nil,
        knownSequenceSet: IMAPSequenceSet? = nil, knownUIDSet: IMAPSequenceSet? = nil
    ) {
        self.uidValidity = uidValidity
        self.modificationSequence = modificationSequence
        self.knownUIDs = knownUIDs
        self.knownSequenceSet = knownSequenceSet
        self.knownUIDSet = knownUIDSet
    }
}

/// LIST selection options (RFC 5258 section 3.1, RFC 6154).
public struct IMAPListSelectOptions: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let subscribed = IMAPListSelectOptions(rawValue: 1 << 0)
    public static let remote = IMAPListSelectOptions(rawValue: 1 << 1)
    public static let recursiveMatch = IMAPListSelectOptions(rawValue: 1 << 2)
    public static let specialUse = IMAPListSelectOptions(rawValue: 1 << 3)
}

/// LIST return options (RFC 5258 section 3.2, RFC 5819, RFC 6154).
public struct IMAPListReturnOptions: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let subscribed = IMAPListReturnOptions(rawValue: 1 << 0)
    public static let children = IMAPListReturnOptions(rawValue: 1 << 1)
    public static let specialUse = IMAPListReturnOptions(rawValue: 1 << 2)
    /// `STATUS (...)`: see ``IMAPListCommand/statusAttributes``.
    public static let status = IMAPListReturnOptions(rawValue: 1 << 3)
}

/// The arguments of LIST (RFC 9051 6.3.9, RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS).
public struct IMAPListCommand: Equatable {
    public var selectOptions: IMAPListSelectOptions
    public var reference: IMAPMailboxName
    /// One or more patterns (`%`, `*` wildcards).
    public var patterns: IMAPPatternList
    public var returnOptions: IMAPListReturnOptions
    /// The attributes of `RETURN (STATUS (...))`.
    public var statusAttributes: IMAPStatusAttributes

    public init(
        selectOptions: IMAPListSelectOptions = [], reference: IMAPMailboxName, patterns: IMAPPatternList,
        returnOptions: IMAPListReturnOptions = [], statusAttributes: IMAPStatusAttributes = []
    ) {
        self.selectOptions = selectOptions
        self.reference = reference
        self.patterns = patterns
        self.returnOptions = returnOptions
        self.statusAttributes = statusAttributes
    }
}

/// One pattern, or a parenthesised list of them (RFC 5258 "mbox-or-pat"), as a view.
public struct IMAPPatternList: Equatable, Sequence {
    /// The pattern, or the text between the parentheses.
    public let text: IMAPBytes
    public let count: Int
    /// Whether it was sent as a parenthesised list.
    public let isList: Bool

    init(text: IMAPBytes, count: Int, isList: Bool) {
        self.text = text
        self.count = count
        self.isList = isList
    }

    /// A single pattern of static text.
    public init(_ pattern: StaticString) { self.init(text: IMAPBytes(pattern), count: 1, isList: false) }

    public func makeIterator() -> IMAPElementIterator<IMAPString> { IMAPElementIterator(text) { $0.listMailbox() } }

    public static func == (lhs: IMAPPatternList, rhs: IMAPPatternList) -> Bool {
        lhs.count == rhs.count && lhs.elementsEqual(rhs)
    }
}

/// STATUS data items (RFC 9051 6.3.11, RFC 7162, RFC 8438 SIZE, RFC 7889 APPENDLIMIT, RFC 3501 RECENT).
public struct IMAPStatusAttributes: OptionSet, Sendable, Hashable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let messages = IMAPStatusAttributes(rawValue: 1 << 0)
    public static let uidNext = IMAPStatusAttributes(rawValue: 1 << 1)
    public static let uidValidity = IMAPStatusAttributes(rawValue: 1 << 2)
    public static let unseen = IMAPStatusAttributes(rawValue: 1 << 3)
    public static let deleted = IMAPStatusAttributes(rawValue: 1 << 4)
    public static let size = IMAPStatusAttributes(rawValue: 1 << 5)
    public static let recent = IMAPStatusAttributes(rawValue: 1 << 6)
    public static let highestModificationSequence = IMAPStatusAttributes(rawValue: 1 << 7)
    public static let appendLimit = IMAPStatusAttributes(rawValue: 1 << 8)

    /// Wire names in bit order.
    static let names: [(IMAPStatusAttributes, StaticString)] = [
        (.messages, "MESSAGES"), (.uidNext, "UIDNEXT"), (.uidValidity, "UIDVALIDITY"), (.unseen, "UNSEEN"),
        (.deleted, "DELETED"), (.size, "SIZE"), (.recent, "RECENT"), (.highestModificationSequence, "HIGHESTMODSEQ"),
        (.appendLimit, "APPENDLIMIT"),
    ]
}

/// One APPEND message's announcement: flags, date and the literal that follows (RFC 3502
/// "append-message"). The message bytes themselves arrive as `.appendBytes` from the framer.
public struct IMAPAppendMessage: Equatable {
    public var flags: IMAPFlagList?
    public var internalDate: IMAPDateTime?
    public var literal: IMAPLiteralHeader

    public init(flags: IMAPFlagList? = nil, internalDate: IMAPDateTime? = nil, literal: IMAPLiteralHeader) {
        self.flags = flags
        self.internalDate = internalDate
        self.literal = literal
    }
}

/// What follows an APPEND message: another message (MULTIAPPEND) or the end of the command.
public enum IMAPAppendNext: Equatable {
    case message(IMAPAppendMessage)
    case end
}

/// The arguments of SEARCH (RFC 9051 6.4.4): return options (ESEARCH when present) and the program.
public struct IMAPSearchCommand: Equatable {
    /// `RETURN (...)` options; nil when absent (a classic `* SEARCH` answer).
    public var returnOptions: IMAPSearchReturnOptions?
    public var program: IMAPSearchProgram

    public init(returnOptions: IMAPSearchReturnOptions? = nil, program: IMAPSearchProgram) {
        self.returnOptions = returnOptions
        self.program = program
    }
}

/// The change of a STORE (RFC 9051 6.4.6): `FLAGS`, `+FLAGS` or `-FLAGS`, optionally `.SILENT`.
public struct IMAPStoreAction: Equatable {
    public enum Kind: Sendable, Equatable {
        case replace, add, remove
    }

    public var kind: Kind
    public var silent: Bool
    public var flags: IMAPFlagList

    public init(kind: Kind, silent: Bool, flags: IMAPFlagList) {
        self.kind = kind
        self.silent = silent
        self.flags = flags
    }
}

/// ID parameters (RFC 2971): field/value pairs, kept as a view and walked lazily.
public struct IMAPIDParameters: Equatable, Sequence {
    /// The text between the parentheses.
    public let text: IMAPBytes
    /// Number of pairs.
    public let count: Int

    init(text: IMAPBytes, count: Int) {
        self.text = text
        self.count = count
    }

    // response-data = "*" SP id-response CRLF;  id-response = "ID" SP id-params-list   (RFC 2971 section 4)
    /// The pairs of a server's ID answer line, `* ID ("name" "Apus" ...)`, viewed in `line` (nothing
    /// copied, nothing allocated: a proxy reads it at every login); nil for `* ID NIL` and for a line
    /// that is not a valid ID answer.
    public init?(idResponse line: UnsafeRawBufferPointer, limits: IMAPLimits = IMAPLimits()) {
        var parser = IMAPParser(line, limits: limits)
        guard parser.skip(UInt8(ascii: "*")), parser.space() != nil, parser.skipKeyword("ID"), parser.space() != nil,
              !parser.skipKeyword("NIL"), let parameters = parser.idParameterList()
        else { return nil }
        self = parameters
    }

    public func makeIterator() -> IMAPElementIterator<(field: IMAPString, value: IMAPString?)> {
        IMAPElementIterator(text) { parser in
            guard let field = parser.string(), parser.space() != nil, let value = parser.nstring() else { return nil }
            return (field, value)
        }
    }

    public static func == (lhs: IMAPIDParameters, rhs: IMAPIDParameters) -> Bool {
        lhs.count == rhs.count && lhs.elementsEqual(rhs) { $0.field == $1.field && $0.value == $1.value }
    }
}

/// SORT criteria (RFC 5256): `(REVERSE DATE SUBJECT)`, kept as a view.
public struct IMAPSortCriteria: Equatable, Sequence {
    /// A sort key (RFC 5256 section 3, RFC 5957 DISPLAYFROM/DISPLAYTO).
    public enum Key: Sendable, Equatable, CaseIterable {
        case arrival, cc, date, from, size, subject, to, displayFrom, displayTo

        /// Wire names, longest first where one is a prefix of another.
        static let names: [(Key, StaticString)] = [
            (.arrival, "ARRIVAL"), (.cc, "CC"), (.date, "DATE"), (.from, "FROM"), (.size, "SIZE"),
            (.subject, "SUBJECT"), (.to, "TO"), (.displayFrom, "DISPLAYFROM"), (.displayTo, "DISPLAYTO"),
        ]
    }

    /// The text between the parentheses.
    public let text: IMAPBytes
    public let count: Int

    init(text: IMAPBytes, count: Int) {
        self.text = text
        self.count = count
    }

    public func makeIterator() -> IMAPElementIterator<(reverse: Bool, key: Key)> {
        IMAPElementIterator(text) { $0.sortCriterion() }
    }

    public static func == (lhs: IMAPSortCriteria, rhs: IMAPSortCriteria) -> Bool {
        lhs.count == rhs.count && lhs.elementsEqual(rhs) { $0.reverse == $1.reverse && $0.key == $1.key }
    }
}
