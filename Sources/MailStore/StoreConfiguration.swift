// MailStore: configuration and the hooks the MIME layer plugs into.

/// Turns a whole message into the opaque blob the index caches for it (the MIME layer's serialized
/// ENVELOPE and BODYSTRUCTURE), so FETCH ENVELOPE/BODYSTRUCTURE of many messages reads no message
/// file. Called once per new message, on whatever thread finishes the append (a worker), and again
/// whenever a cached blob is missing or damaged.
public protocol MessageAnalyzer: Sendable {
    func analyze(_ message: UnsafeRawBufferPointer) -> [UInt8]
}

/// A search key that needs the message's text (headers or body) rather than the index.
public enum ContentSearchKey: Equatable, Sendable {
    /// HEADER field-name string (RFC 3501 section 6.4.4): any field of that name; FROM, TO, CC and
    /// BCC map here.
    case header(field: String, value: String)
    /// SUBJECT string: "the envelope structure's SUBJECT field" (RFC 3501 and RFC 9051 section
    /// 6.4.4), which is the message's first Subject field, so a searcher can answer it from the
    /// cached envelope without reading the message file.
    case subject(String)
    /// BODY string.
    case body(String)
    /// TEXT string (header and body).
    case text(String)
    /// SENTBEFORE/SENTON/SENTSINCE: the Date: header's date compared with a day (days since
    /// 1970-01-01), `comparison` being -1 (before), 0 (on) or 1 (since).
    case sentDate(comparison: Int, day: Int64)
}

/// Answers content keys of SEARCH (case-insensitive matching over decoded UTF-8 text is the MIME
/// layer's job). A SEARCH prepares each content key once (``prepare(_:)``), then asks about every
/// message: `answer(_:cached:)` first, which may decide from the cached blob (the envelope's Subject
/// and Date) without reading the file; only when it returns nil does the store read the message file
/// and call `matches(_:message:cached:)`, passing the same blob so that the message's structure need
/// not be analysed again (it may be empty or of an older format).
public protocol MessageContentSearcher: Sendable {
    /// A key made ready for a whole SEARCH: what would otherwise be built again for every message
    /// (a case-folded needle and its match table).
    associatedtype PreparedKey
    func prepare(_ key: ContentSearchKey) -> PreparedKey
    /// `cached` is read in place (SEARCH passes each message's blob where it lies in the cache it
    /// read), so it is valid only during the call.
    func answer(_ key: PreparedKey, cached: UnsafeRawBufferPointer) -> Bool?
    func matches(_ key: PreparedKey, message: UnsafeRawBufferPointer, cached: UnsafeRawBufferPointer) -> Bool
}

/// Per-user limits (RFC 9208 STORAGE and MESSAGE resources). Zero means unlimited.
public struct QuotaLimits: Equatable, Sendable {
    /// Total RFC822.SIZE of all the user's messages, in bytes.
    public var storageBytes: Int64
    /// Number of messages in all the user's mailboxes.
    public var messages: Int64

    public init(storageBytes: Int64 = 0, messages: Int64 = 0) {
        self.storageBytes = storageBytes
        self.messages = messages
    }

    public static let unlimited = QuotaLimits()
}

/// The special-use folders created at a user's first login (RFC 6154).
public enum SpecialUse: String, CaseIterable, Sendable {
    case sent = "\\Sent"
    case drafts = "\\Drafts"
    case trash = "\\Trash"
    case junk = "\\Junk"
    case archive = "\\Archive"

    /// The folder's default name.
    public var defaultName: String {
        switch self {
        case .sent: return "Sent"
        case .drafts: return "Drafts"
        case .trash: return "Trash"
        case .junk: return "Junk"
        case .archive: return "Archive"
        }
    }
}

/// How a store behaves. Immutable once the store is open.
public struct StoreConfiguration: Sendable {
    /// Builds the cached ENVELOPE/BODYSTRUCTURE blob; nil caches nothing.
    public var analyzer: (any MessageAnalyzer)?
    /// Answers HEADER/BODY/TEXT/SENT* search keys; nil makes those keys match nothing.
    public var contentSearcher: (any MessageContentSearcher)?
    /// Largest message APPEND accepts, in bytes.
    public var maximumMessageSize: Int64
    /// Quota of every user.
    public var quota: QuotaLimits
    /// Which changes are fsynced before their tagged OK (`[store] fsync`).
    public var fsyncPolicy: FsyncPolicy

    public init(analyzer: (any MessageAnalyzer)? = nil, contentSearcher: (any MessageContentSearcher)? = nil,
                maximumMessageSize: Int64 = 64 << 20, quota: QuotaLimits = .unlimited,
                fsyncPolicy: FsyncPolicy = .optimized)
    {
        self.analyzer = analyzer
        self.contentSearcher = contentSearcher
        self.maximumMessageSize = maximumMessageSize
        self.quota = quota
        self.fsyncPolicy = fsyncPolicy
    }
}
