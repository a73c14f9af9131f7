// MessageStructure: the parsed shape of one message (envelope and MIME part tree) as byte offsets
// into the message file plus a small pool of header-derived strings.

/// A string held in a ``MessageStructure``'s pool: the bytes exactly as the structure stores them
/// (raw header bytes, possibly 8-bit, for envelope fields; UTF-8 for decoded parameter values).
public struct MIMEText: Hashable, Sendable {
    /// Offset of the first byte in ``MessageStructure/pool``.
    public var offset: UInt32
    /// Number of bytes.
    public var count: UInt32

    @inlinable
    public init(offset: UInt32, count: UInt32) {
        self.offset = offset
        self.count = count
    }
}

/// One address of an envelope address list, as RFC 3501 section 7.4.2 models it.
///
/// A group is two entries: a start (`mailbox` = group name, `host` = nil) and an end (all nil).
///
///     S: (("Ann" NIL "ann" "example.org")) / ((NIL NIL "team" NIL)(NIL NIL "bo" "x.org")(NIL NIL NIL NIL))
public struct MIMEAddress: Hashable, Sendable {
    /// The display name (phrase), unquoted; RFC 2047 encoded words are left as they are.
    public var name: MIMEText?
    /// The source route (`@a,@b`), obsolete but still seen.
    public var adl: MIMEText?
    /// The local part, or the group name of a group start.
    public var mailbox: MIMEText?
    /// The domain; nil for group markers.
    public var host: MIMEText?

    public init(name: MIMEText?, adl: MIMEText?, mailbox: MIMEText?, host: MIMEText?) {
        self.name = name
        self.adl = adl
        self.mailbox = mailbox
        self.host = host
    }
}

/// The ENVELOPE of a message or of an encapsulated message/rfc822 part (RFC 3501 section 7.4.2).
///
/// Date, subject, in-reply-to and message-id are the raw header values, unfolded (CR and LF
/// removed) and not decoded. Address lists are ranges of ``MessageStructure/addresses``; an empty
/// range is NIL. Sender and reply-to already hold the from list when their headers are absent or
/// empty, as RFC 3501 requires.
public struct MIMEEnvelope: Hashable, Sendable {
    public var date: MIMEText?
    public var subject: MIMEText?
    public var from: Range<Int> = 0..<0
    public var sender: Range<Int> = 0..<0
    public var replyTo: Range<Int> = 0..<0
    public var to: Range<Int> = 0..<0
    public var cc: Range<Int> = 0..<0
    public var bcc: Range<Int> = 0..<0
    public var inReplyTo: MIMEText?
    public var messageID: MIMEText?

    public init() {}
}

/// A Content-Type or Content-Disposition parameter after RFC 2231 processing.
public struct MIMEParameter: Hashable, Sendable {
    /// The attribute name without any RFC 2231 `*` or `*N` suffix, as written.
    public var name: MIMEText
    /// The value: unquoted, continuations joined, and for RFC 2231 extended values percent-decoded
    /// and converted from their charset to UTF-8.
    public var value: MIMEText
    /// For RFC 2231 extended values only: the joined wire form `charset'language'%XX...`, all ASCII,
    /// which an IMAP encoder sends as the value of `name*` (what Dovecot sends too). Nil otherwise.
    public var extendedValue: MIMEText?

    public init(name: MIMEText, value: MIMEText, extendedValue: MIMEText?) {
        self.name = name
        self.value = value
        self.extendedValue = extendedValue
    }
}

/// One node of the MIME part tree.
///
/// Offsets are byte positions in the message as parsed. The header runs from `headerStart` to
/// `bodyStart` and includes its terminating empty line when there is one; the body runs from
/// `bodyStart` to `bodyEnd` and excludes the line break that belongs to a following boundary
/// delimiter (RFC 2046 section 5.1.1).
public struct MIMEPart: Hashable, Sendable {
    /// What the part contains, which decides how IMAP numbers and describes it.
    public enum Kind: UInt8, Sendable {
        /// A body with no parsed inside (text, image, a too-deep multipart ...).
        case leaf = 0
        /// A multipart with a boundary: its children are its body parts.
        case multipart = 1
        /// A message/rfc822 part: its single child is the encapsulated message's root part.
        case message = 2
    }

    public var kind: Kind
    /// Nesting depth: 0 for the message itself.
    public var depth: Int
    /// Index of the parent in ``MessageStructure/parts``, or -1 for the root.
    public var parent: Int
    /// One past the index of this part's last descendant; children are the parts between.
    public var subtreeEnd: Int
    /// For a message/rfc822 part (kind ``Kind/message``), the index in ``MessageStructure/envelopes``
    /// of the encapsulated message's envelope; -1 otherwise. (The message's own envelope is
    /// `envelopes[0]`.)
    public var envelope: Int

    public var headerStart: Int
    public var bodyStart: Int
    public var bodyEnd: Int
    /// Number of line feeds in the body (`body-fld-lines` for text and message/rfc822 parts).
    public var bodyLines: Int
    /// Line feeds in the body with no CR before them. A server that sends such a file with bare
    /// LFs turned into CRLF (as Dovecot does) reports ``canonicalBodySize`` instead of ``bodySize``.
    public var bodyBareLineFeeds: Int

    /// Media type and subtype as written, or the RFC 2045 defaults.
    public var type: MIMEText
    public var subtype: MIMEText
    /// Range of ``MessageStructure/parameters`` holding the Content-Type parameters.
    public var parameters: Range<Int>
    public var id: MIMEText?
    public var description: MIMEText?
    /// Content-Transfer-Encoding as written; nil means the default 7bit.
    public var encoding: MIMEText?
    public var md5: MIMEText?
    public var disposition: MIMEText?
    public var dispositionParameters: Range<Int>
    /// Range of ``MessageStructure/languageTags`` holding the Content-Language tags.
    public var languages: Range<Int>
    public var location: MIMEText?

    /// Body size in bytes (`body-fld-octets`).
    @inlinable public var bodySize: Int { bodyEnd - bodyStart }
    /// Body size once every bare LF is a CRLF (RFC 5322 line ends).
    @inlinable public var canonicalBodySize: Int { bodyEnd - bodyStart + bodyBareLineFeeds }
    /// The header bytes, including the terminating empty line.
    @inlinable public var headerRange: Range<Int> { headerStart..<bodyStart }
    /// The body bytes.
    @inlinable public var bodyRange: Range<Int> { bodyStart..<bodyEnd }
}

/// The cached shape of one message: ENVELOPE, BODYSTRUCTURE and the offsets to serve any section.
///
/// Everything lives in five flat arrays so a typical message costs a handful of allocations.
/// `parts` is in pre-order: `parts[0]` is the message itself (its header is the message header).
public struct MessageStructure: Hashable, Sendable {
    /// Bytes of every ``MIMEText``; starts with ``MIMEText/prelude`` (the default values).
    public internal(set) var pool: [UInt8]
    public internal(set) var parts: [MIMEPart]
    /// `envelopes[0]` is the message's; message/rfc822 parts point at theirs.
    public internal(set) var envelopes: [MIMEEnvelope]
    public internal(set) var addresses: [MIMEAddress]
    public internal(set) var parameters: [MIMEParameter]
    public internal(set) var languageTags: [MIMEText]
    /// Size of the parsed message in bytes.
    public internal(set) var messageSize: Int
    /// Line feeds in the whole message with no CR before them (0 for a proper CRLF message).
    public internal(set) var messageBareLineFeeds = 0
    /// A copy of the message's own header (its `parts[0].headerRange`) at the end of the pool, kept
    /// in the cached blob when it is at most ``cachedHeaderLimit`` bytes, so FETCH BODY[HEADER] and
    /// BODY[HEADER.FIELDS (...)] (what clients ask for a message list) read no message file. Nil
    /// when not kept (a structure parsed from the message itself has the message at hand).
    public internal(set) var cachedHeader: MIMEText?

    /// Headers larger than this are not copied into the cached blob (typical ones are 1-4 KiB).
    public static let cachedHeaderLimit = 16 * 1024

    /// Keeps a copy of the message's own header in the structure (for its cached blob), when it is
    /// small enough. `message` must be the message this structure was parsed from.
    public mutating func keepHeader(of message: UnsafeRawBufferPointer) {
        let header = parts[0].headerRange
        guard cachedHeader == nil, !header.isEmpty, header.count <= Self.cachedHeaderLimit,
              header.upperBound <= message.count, let offset = UInt32(exactly: pool.count)
        else { return }
        pool.append(contentsOf: UnsafeRawBufferPointer(rebasing: message[header]))
        cachedHeader = MIMEText(offset: offset, count: UInt32(header.count))
    }

    /// The cached copy of `range` of the message, when `range` is exactly the message's own header
    /// and the copy is kept (no copy made).
    public func cachedBytes(of range: Range<Int>) -> ArraySlice<UInt8>? {
        guard let cachedHeader, range == parts[0].headerRange else { return nil }
        return bytes(cachedHeader)
    }

    /// RFC822.SIZE of a server that sends bare LFs as CRLF (as Dovecot does).
    @inlinable public var canonicalMessageSize: Int { messageSize + messageBareLineFeeds }

    init(messageSize: Int) {
        pool = MIMEText.prelude
        parts = []
        envelopes = []
        addresses = []
        parameters = []
        languageTags = []
        self.messageSize = messageSize
    }

    /// The structure of an empty message (one text/plain part, an envelope of NILs): a valid
    /// structure to start from, for ``read(serialized:)`` to fill again and again.
    public init() {
        self.init(parsing: UnsafeRawBufferPointer(start: nil, count: 0))
    }

    /// The message's own envelope.
    @inlinable public var envelope: MIMEEnvelope { envelopes[0] }

    /// The bytes of a pooled string (no copy).
    @inlinable
    public func bytes(_ text: MIMEText) -> ArraySlice<UInt8> {
        pool[Int(text.offset)..<Int(text.offset) + Int(text.count)]
    }

    /// The pooled string as a Swift String, invalid UTF-8 repaired; for tests, logs and search.
    public func string(_ text: MIMEText) -> String {
        String(decoding: bytes(text), as: UTF8.self)
    }

    /// Indices of the direct children of `part`, in order.
    public func children(of part: Int) -> [Int] {
        var result: [Int] = []
        var child = part + 1
        while child < parts[part].subtreeEnd {
            result.append(child)
            child = parts[child].subtreeEnd
        }
        return result
    }

    /// Index of the `number`th (1-based) child of `part`, or nil.
    public func child(of part: Int, number: Int) -> Int? {
        guard number >= 1 else { return nil }
        var child = part + 1
        var seen = 1
        while child < parts[part].subtreeEnd {
            if seen == number { return child }
            seen += 1
            child = parts[child].subtreeEnd
        }
        return nil
    }
}

// MARK: - Default values

extension MIMEText {
    /// Default strings every structure's pool starts with, so defaults cost no pool bytes.
    static let prelude: [UInt8] = Array("textplaincharsetus-asciimessagerfc8227bitMISSING_MAILBOXMISSING_DOMAIN".utf8)
    public static let text = MIMEText(offset: 0, count: 4)
    public static let plain = MIMEText(offset: 4, count: 5)
    public static let charset = MIMEText(offset: 9, count: 7)
    public static let usASCII = MIMEText(offset: 16, count: 8)
    public static let message = MIMEText(offset: 24, count: 7)
    public static let rfc822 = MIMEText(offset: 31, count: 6)
    public static let sevenBit = MIMEText(offset: 37, count: 4)
    /// Stands for an address's missing local part, as Dovecot writes it (RFC 3501 has no NIL there).
    public static let missingMailbox = MIMEText(offset: 41, count: 15)
    /// Stands for an address's missing domain: a NIL host would read as a group marker.
    public static let missingDomain = MIMEText(offset: 56, count: 14)
}
