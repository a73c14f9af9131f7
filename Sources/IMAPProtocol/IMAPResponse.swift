// IMAPProtocol: IMAPResponse and the values it carries (server to client), as owned, Sendable values.

/// A server response (RFC 9051 section 7). Values are owned bytes, so a response can be kept, queued
/// or sent across threads; the encoder writes it without allocating, and the client-side parser
/// builds it (streaming large FETCH literals separately, see ``IMAPResponseParser``).
public enum IMAPResponse: Equatable, Sendable {
    /// `tag OK/NO/BAD [code] text` (RFC 9051 7.1). `S: a001 OK LOGIN completed`
    case tagged(tag: [UInt8], IMAPStatusResponse)
    /// `* ...` (RFC 9051 7.1-7.5). `S: * 23 EXISTS`
    case untagged(IMAPUntaggedResponse)
    /// `+ text` or `+ base64` (RFC 9051 7.6). `S: + Ready for literal data`
    case continuation([UInt8])
}

/// `OK` / `NO` / `BAD` / `PREAUTH` / `BYE` with an optional response code and human-readable text.
public struct IMAPStatusResponse: Equatable, Sendable {
    public enum Kind: Sendable, Equatable, CaseIterable {
        case ok, no, bad, preauth, bye
    }

    public var kind: Kind
    public var code: IMAPResponseCode?
    public var text: [UInt8]

    public init(_ kind: Kind, code: IMAPResponseCode? = nil, text: [UInt8]) {
        self.kind = kind
        self.code = code
        self.text = text
    }
}

/// Response codes (RFC 9051 7.1, RFC 5530, RFC 4315, RFC 7162, RFC 4469, RFC 5182, RFC 4978, RFC 6154,
/// RFC 3516, RFC 8474-free). `S: a OK [UIDVALIDITY 3857529045] UIDs valid`
public enum IMAPResponseCode: Equatable, Sendable {
    case alert, parse, readOnly, readWrite, tryCreate, uidNotSticky, noModificationSequence, closed
    case badCharset([[UInt8]])
    case capability([[UInt8]])
    case permanentFlags([[UInt8]])
    case uidNext(UInt32), uidValidity(UInt32), unseen(UInt32)
    /// `APPENDUID uidvalidity uid-set` (RFC 4315)
    case appendUID(uidValidity: UInt32, uids: [UInt8])
    /// `COPYUID uidvalidity source-set destination-set` (RFC 4315)
    case copyUID(uidValidity: UInt32, source: [UInt8], destination: [UInt8])
    /// `HIGHESTMODSEQ n` (RFC 7162)
    case highestModificationSequence(UInt64)
    /// `MODIFIED set` (RFC 7162)
    case modified([UInt8])
    // RFC 5530
    case unavailable, authenticationFailed, authorizationFailed, expired, privacyRequired, contactAdmin
    case noPermission, inUse, expungeIssued, corruption, serverBug, clientBug, cannotDo, limit, overQuota
    case alreadyExists, nonExistent
    /// `TOOBIG` (RFC 4469, RFC 7888)
    case tooBig
    /// `NOTSAVED` (RFC 5182)
    case notSaved
    /// `COMPRESSIONACTIVE` (RFC 4978)
    case compressionActive
    /// `USEATTR` (RFC 6154)
    case useAttribute
    /// `UNKNOWN-CTE` (RFC 3516)
    case unknownCTE
    /// `HASCHILDREN` (RFC 9051)
    case hasChildren
    /// Any other code, kept as its atom and optional text.
    case other(name: [UInt8], text: [UInt8]?)
}

/// Untagged data (RFC 9051 section 7.2-7.5 and the extensions').
public enum IMAPUntaggedResponse: Equatable, Sendable {
    /// `* OK/NO/BAD/PREAUTH/BYE ...`
    case condition(IMAPStatusResponse)
    /// `* CAPABILITY IMAP4rev2 ...`
    case capability([[UInt8]])
    /// `* ENABLED CONDSTORE` (RFC 5161)
    case enabled([[UInt8]])
    /// `* LIST (\HasNoChildren) "/" INBOX` (or LSUB)
    case list(IMAPListResponse)
    /// `* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292)`
    case mailboxStatus(mailbox: [UInt8], IMAPMailboxStatus)
    /// `* FLAGS (\Answered \Flagged ...)`
    case flags([[UInt8]])
    /// `* 23 EXISTS`
    case exists(UInt32)
    /// `* 5 RECENT` (IMAP4rev1)
    case recent(UInt32)
    /// `* 44 EXPUNGE`
    case expunge(UInt32)
    /// `* SEARCH 2 84 882` with an optional `(MODSEQ n)` (RFC 7162)
    case search([UInt32], modificationSequence: UInt64?)
    /// `* ESEARCH (TAG "A282") MIN 2 COUNT 3` (RFC 4731, RFC 9051)
    case extendedSearch(IMAPExtendedSearchResponse)
    /// `* VANISHED (EARLIER) 300:310,405,411` (RFC 7162)
    case vanished(earlier: Bool, uids: [UInt8])
    /// `* 12 FETCH (FLAGS (\Seen) UID 4827313)`
    case fetch(UInt32, [IMAPFetchItem])
    /// `* NAMESPACE (("" "/")) NIL NIL` (RFC 2342)
    case namespace(personal: [IMAPNamespace], otherUsers: [IMAPNamespace], shared: [IMAPNamespace])
    /// `* ID ("name" "Apus")` (RFC 2971); nil for `* ID NIL`.
    case id([IMAPIDPair]?)
    /// `* QUOTA "" (STORAGE 10 512)` (RFC 9208)
    case quota(root: [UInt8], [IMAPQuotaResource])
    /// `* QUOTAROOT INBOX ""` (RFC 9208)
    case quotaRoot(mailbox: [UInt8], roots: [[UInt8]])
    /// `* SORT 2 84 882` (RFC 5256)
    case sort([UInt32])
    /// `* THREAD (2)(3 6 (4 23)(44 7 96))` (RFC 5256)
    case thread([IMAPThread])
}

/// One thread of a THREAD reply (RFC 5256 "thread-list"): messages in a chain, then the branches that
/// follow the last of them. A single branch is written as a longer chain, so values round-trip when
/// `children` is empty or has at least two threads.
public struct IMAPThread: Equatable, Sendable {
    public var members: [UInt32]
    public var children: [IMAPThread]

    public init(members: [UInt32], children: [IMAPThread] = []) {
        self.members = members
        self.children = children
    }
}

/// A field and value of ID (RFC 2971).
public struct IMAPIDPair: Equatable, Sendable {
    public var field: [UInt8]
    public var value: [UInt8]?

    public init(field: [UInt8], value: [UInt8]?) {
        self.field = field
        self.value = value
    }
}

/// One namespace: prefix and hierarchy delimiter (RFC 2342).
public struct IMAPNamespace: Equatable, Sendable {
    public var prefix: [UInt8]
    public var delimiter: UInt8?

    public init(prefix: [UInt8], delimiter: UInt8?) {
        self.prefix = prefix
        self.delimiter = delimiter
    }
}

/// One quota resource: name, usage and limit (RFC 9208).
public struct IMAPQuotaResource: Equatable, Sendable {
    public var name: [UInt8]
    public var usage: UInt64
    public var limit: UInt64

    public init(name: [UInt8], usage: UInt64, limit: UInt64) {
        self.name = name
        self.usage = usage
        self.limit = limit
    }
}

/// A LIST or LSUB reply (RFC 9051 7.3.1, RFC 5258 extended data such as CHILDINFO and OLDNAME).
public struct IMAPListResponse: Equatable, Sendable {
    public var isLSUB: Bool
    /// `\HasNoChildren`, `\Noselect`, `\Sent`, ...
    public var attributes: [[UInt8]]
    public var delimiter: UInt8?
    /// The name as it goes on the wire (modified UTF-7 or UTF-8, as the session requires).
    public var mailbox: [UInt8]
    /// `("CHILDINFO" ("SUBSCRIBED"))` and the like, kept as raw text after the mailbox.
    public var extendedData: [UInt8]?

    public init(
        isLSUB: Bool = false, attributes: [[UInt8]], delimiter: UInt8?, mailbox: [UInt8], extendedData: [UInt8]? = nil
    ) {
        self.isLSUB = isLSUB
        self.attributes = attributes
        self.delimiter = delimiter
        self.mailbox = mailbox
        self.extendedData = extendedData
    }
}

/// STATUS values; nil means not asked for (RFC 9051 7.3.2).
public struct IMAPMailboxStatus: Equatable, Sendable {
    public var messages: UInt32?
    public var uidNext: UInt32?
    public var uidValidity: UInt32?
    public var unseen: UInt32?
    public var deleted: UInt32?
    public var size: UInt64?
    public var recent: UInt32?
    public var highestModificationSequence: UInt64?
    public var appendLimit: UInt64?

    public init(
        messages: UInt32? = nil, uidNext: UInt32? = nil, uidValidity: UInt32? = nil, unseen: UInt32? = nil,
        deleted: UInt32? = nil, size: UInt64? = nil, recent: UInt32? = nil, highestModificationSequence: UInt64? = nil,
        appendLimit: UInt64? = nil
    ) {
        self.messages = messages
        self.uidNext = uidNext
        self.uidValidity = uidValidity
        self.unseen = unseen
        self.deleted = deleted
        self.size = size
        self.recent = recent
        self.highestModificationSequence = highestModificationSequence
        self.appendLimit = appendLimit
    }
}

/// An ESEARCH reply (RFC 4731, RFC 9051 7.3.4).
public struct IMAPExtendedSearchResponse: Equatable, Sendable {
    /// The tag of the SEARCH it answers.
    public var tag: [UInt8]?
    public var uid: Bool
    public var min: UInt32?
    public var max: UInt32?
    /// `ALL` as a sequence set text.
    public var all: [UInt8]?
    public var count: UInt32?
    /// `MODSEQ n` (RFC 7162)
    public var modificationSequence: UInt64?

    public init(
        tag: [UInt8]? = nil, uid: Bool = false, min: UInt32? = nil, max: UInt32? = nil, all: [UInt8]? = nil,
        count: UInt32? = nil, modificationSequence: UInt64? = nil
    ) {
        self.tag = tag
        self.uid = uid
        self.min = min
        self.max = max
        self.all = all
        self.count = count
        self.modificationSequence = modificationSequence
    }
}

/// One item of a FETCH reply (RFC 9051 7.5.2).
public enum IMAPFetchItem: Equatable, Sendable {
    case flags([[UInt8]])
    case uid(UInt32)
    case internalDate(IMAPDateTime)
    case rfc822Size(UInt64)
    case envelope(IMAPEnvelope)
    /// `BODY` (non-extensible) or `BODYSTRUCTURE` (with extension data).
    case bodyStructure(IMAPBodyStructure, extensible: Bool)
    /// `MODSEQ (n)` (RFC 7162)
    case modificationSequence(UInt64)
    /// `BODY[section]<origin> nstring`; `section` is its wire text (`1.2.HEADER`), empty for the whole.
    case body(section: [UInt8], origin: UInt64?, data: [UInt8]?)
    /// `BINARY[part] nstring / literal8` (RFC 3516)
    case binary(section: [UInt8], data: [UInt8]?)
    /// `BINARY.SIZE[part] n` (RFC 3516)
    case binarySize(section: [UInt8], size: UInt64)
    /// `RFC822`, `RFC822.HEADER`, `RFC822.TEXT` (IMAP4rev1)
    case rfc822(data: [UInt8]?), rfc822Header(data: [UInt8]?), rfc822Text(data: [UInt8]?)
}

/// An address of an ENVELOPE (RFC 9051 7.5.2): a group starts with a nil host and the group name as
/// mailbox, and ends with nil mailbox and host.
public struct IMAPAddress: Equatable, Sendable {
    public var name: [UInt8]?
    public var adl: [UInt8]?
    public var mailbox: [UInt8]?
    public var host: [UInt8]?

    public init(name: [UInt8]?, adl: [UInt8]? = nil, mailbox: [UInt8]?, host: [UInt8]?) {
        self.name = name
        self.adl = adl
        self.mailbox = mailbox
        self.host = host
    }
}

/// ENVELOPE (RFC 9051 7.5.2): nstrings and address lists (nil or empty is `NIL`).
public struct IMAPEnvelope: Equatable, Sendable {
    public var date: [UInt8]?
    public var subject: [UInt8]?
    public var from: [IMAPAddress]
    public var sender: [IMAPAddress]
    public var replyTo: [IMAPAddress]
    public var to: [IMAPAddress]
    public var cc: [IMAPAddress]
    public var bcc: [IMAPAddress]
    public var inReplyTo: [UInt8]?
    public var messageID: [UInt8]?

    public init(
        date: [UInt8]? = nil, subject: [UInt8]? = nil, from: [IMAPAddress] = [], sender: [IMAPAddress] = [],
        replyTo: [IMAPAddress] = [], to: [IMAPAddress] = [], cc: [IMAPAddress] = [], bcc: [IMAPAddress] = [],
        inReplyTo: [UInt8]? = nil, messageID: [UInt8]? = nil
    ) {
        self.date = date
        self.subject = subject
        self.from = from
        self.sender = sender
        self.replyTo = replyTo
        self.to = to
        self.cc = cc
        self.bcc = bcc
        self.inReplyTo = inReplyTo
        self.messageID = messageID
    }
}

/// A `name value` parameter of a body part (`("CHARSET" "UTF-8")`).
public struct IMAPBodyParameter: Equatable, Sendable {
    public var name: [UInt8]
    public var value: [UInt8]

    public init(name: [UInt8], value: [UInt8]) {
        self.name = name
        self.value = value
    }
}

/// Content-Disposition in BODYSTRUCTURE extension data.
public struct IMAPBodyDisposition: Equatable, Sendable {
    public var kind: [UInt8]
    public var parameters: [IMAPBodyParameter]

    public init(kind: [UInt8], parameters: [IMAPBodyParameter] = []) {
        self.kind = kind
        self.parameters = parameters
    }
}

/// Extension data shared by single and multipart bodies (RFC 9051 "body-ext-1part"/"body-ext-mpart"
/// after their first field). Languages are written as a list.
public struct IMAPBodyExtension: Equatable, Sendable {
    public var disposition: IMAPBodyDisposition?
    public var languages: [[UInt8]]
    public var location: [UInt8]?

    public init(disposition: IMAPBodyDisposition? = nil, languages: [[UInt8]] = [], location: [UInt8]? = nil) {
        self.disposition = disposition
        self.languages = languages
        self.location = location
    }
}

/// A single body part (RFC 9051 "body-type-1part").
public struct IMAPBodyPart: Equatable, Sendable {
    /// What kind of single part: basic, text (with lines) or message/rfc822 (with its own structure).
    public enum Kind: Equatable, Sendable {
        case basic
        case text(lines: UInt32)
        case message(envelope: IMAPEnvelope, body: IMAPBodyStructure, lines: UInt32)
    }

    public var type: [UInt8]
    public var subtype: [UInt8]
    public var parameters: [IMAPBodyParameter]
    public var id: [UInt8]?
    public var description: [UInt8]?
    public var encoding: [UInt8]
    public var size: UInt32
    public var kind: Kind
    /// BODYSTRUCTURE extension data: MD5 then the shared extension.
    public var md5: [UInt8]?
    public var extensionData: IMAPBodyExtension?

    public init(
        type: [UInt8], subtype: [UInt8], parameters: [IMAPBodyParameter] = [], id: [UInt8]? = nil,
        description: [UInt8]? = nil, encoding: [UInt8], size: UInt32, kind: Kind, md5: [UInt8]? = nil,
        extensionData: IMAPBodyExtension? = nil
    ) {
        self.type = type
        self.subtype = subtype
        self.parameters = parameters
        self.id = id
        self.description = description
        self.encoding = encoding
        self.size = size
        self.kind = kind
        self.md5 = md5
        self.extensionData = extensionData
    }
}

/// BODY / BODYSTRUCTURE (RFC 9051 7.5.2), recursive.
public indirect enum IMAPBodyStructure: Equatable, Sendable {
    case singlePart(IMAPBodyPart)
    /// Parts, subtype (`MIXED`), and extension data: parameters then the shared extension.
    case multipart(
        parts: [IMAPBodyStructure], subtype: [UInt8], parameters: [IMAPBodyParameter],
        extensionData: IMAPBodyExtension?)
}
