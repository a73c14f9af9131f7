// IMAPProtocol: server-side encoders: responses straight into an IMAPOutputBuffer.

extension IMAPOutputBuffer {
    // MARK: - Hot-path helpers (no values to build)

    // response-tagged = tag SP resp-cond-state CRLF;  resp-cond-state = ("OK" / "NO" / "BAD") SP resp-text
    /// Writes `tag OK [code] text` without building a response value.
    /// `S: a1 OK [READ-WRITE] SELECT completed`
    public mutating func writeTagged(
        tag: IMAPBytes, _ kind: IMAPStatusResponse.Kind, code: IMAPResponseCode? = nil, text: StaticString
    ) {
        write(bytes: tag)
        write(byte: 0x20)
        writeStatusBody(kind, code: code) { $0.write(text) }
        write("\r\n")
    }

    // message-data = nz-number SP ("EXPUNGE" / ("FETCH" SP msg-att));  mailbox-data =/ number SP "EXISTS"
    /// Writes `* n NAME` (EXISTS, RECENT, EXPUNGE).
    public mutating func writeUntagged(number: UInt32, _ name: StaticString) {
        write("* ")
        write(number: number)
        write(byte: 0x20)
        write(name)
        write("\r\n")
    }

    // continue-req = "+" SP (resp-text / base64) CRLF
    /// Writes `+ text`.
    public mutating func writeContinuation(_ text: StaticString = "Ready for literal data") {
        write("+ ")
        write(text)
        write("\r\n")
    }

    // MARK: - Responses

    /// Writes any response.
    public mutating func write(response: IMAPResponse) {
        switch response {
        case .tagged(let tag, let status):
            write(contentsOf: tag)
            write(byte: 0x20)
            writeStatusBody(status.kind, code: status.code) { $0.write(contentsOf: status.text) }
            write("\r\n")
        case .continuation(let text):
            write("+ ")
            write(contentsOf: text)
            write("\r\n")
        case .untagged(let untagged):
            write("* ")
            write(untagged: untagged)
            write("\r\n")
        }
    }

    // resp-cond-state / resp-cond-auth / resp-cond-bye, without the CRLF
    private mutating func writeStatusBody(
        _ kind: IMAPStatusResponse.Kind, code: IMAPResponseCode?, text: (inout IMAPOutputBuffer) -> Void
    ) {
        switch kind {
        case .ok: write("OK ")
        case .no: write("NO ")
        case .bad: write("BAD ")
        case .preauth: write("PREAUTH ")
        case .bye: write("BYE ")
        }
        if let code {
            write(byte: UInt8(ascii: "["))
            write(code: code)
            write("] ")
        }
        text(&self)
    }

    private mutating func write(untagged: IMAPUntaggedResponse) {
        switch untagged {
        case .condition(let status):
            writeStatusBody(status.kind, code: status.code) { $0.write(contentsOf: status.text) }
        case .capability(let names):
            write("CAPABILITY")
            writeAtoms(names, leadingSpace: true)
        case .enabled(let names):
            write("ENABLED")
            writeAtoms(names, leadingSpace: true)
        case .list(let list):
            write(list: list)
        case .mailboxStatus(let mailbox, let status):
            write("STATUS ")
            write(astring: mailbox)
            write(" (")
            write(mailboxStatus: status)
            write(byte: UInt8(ascii: ")"))
        case .flags(let flags):
            write("FLAGS (")
            writeAtoms(flags, leadingSpace: false)
            write(byte: UInt8(ascii: ")"))
        case .exists(let count):
            write(number: count)
            write(" EXISTS")
        case .recent(let count):
            write(number: count)
            write(" RECENT")
        case .expunge(let number):
            write(number: number)
            write(" EXPUNGE")
        case .search(let numbers, let modSeq):
            write("SEARCH")
            for number in numbers {
                write(byte: 0x20)
                write(number: number)
            }
            if let modSeq {
                write(" (MODSEQ ")
                write(number: modSeq)
                write(byte: UInt8(ascii: ")"))
            }
        case .extendedSearch(let result):
            write(extendedSearch: result)
        case .vanished(let earlier, let uids):
            write(earlier ? "VANISHED (EARLIER) " : "VANISHED ")
            write(contentsOf: uids)
        case .fetch(let number, let items):
            write(number: number)
            write(" FETCH (")
            for (index, item) in items.enumerated() {
                if index > 0 { write(byte: 0x20) }
                write(fetchItem: item)
            }
            write(byte: UInt8(ascii: ")"))
        case .namespace(let personal, let other, let shared):
            write("NAMESPACE ")
            write(namespaces: personal)
            write(byte: 0x20)
            write(namespaces: other)
            write(byte: 0x20)
            write(namespaces: shared)
        case .id(let pairs):
            write("ID ")
            guard let pairs else {
                write("NIL")
                return
            }
            write(byte: UInt8(ascii: "("))
            for (index, pair) in pairs.enumerated() {
                if index > 0 { write(byte: 0x20) }
                write(string: pair.field)
                write(byte: 0x20)
                write(nstring: pair.value)
            }
            write(byte: UInt8(ascii: ")"))
        case .quota(let root, let resources):
            write("QUOTA ")
            write(astring: root)
            write(" (")
            for (index, resource) in resources.enumerated() {
                if index > 0 { write(byte: 0x20) }
                write(contentsOf: resource.name)
                write(byte: 0x20)
                write(number: resource.usage)
                write(byte: 0x20)
                write(number: resource.limit)
            }
            write(byte: UInt8(ascii: ")"))
        case .quotaRoot(let mailbox, let roots):
            write("QUOTAROOT ")
            write(astring: mailbox)
            for root in roots {
                write(byte: 0x20)
                write(astring: root)
            }
        case .sort(let numbers):
            write("SORT")
            for number in numbers {
                write(byte: 0x20)
                write(number: number)
            }
        case .thread(let threads):
            write("THREAD")
            if !threads.isEmpty { write(byte: 0x20) }
            for thread in threads { write(thread: thread) }
        }
    }

    // thread-list = "(" (thread-members / thread-nested) ")"
    // thread-members = nz-number *(SP nz-number) [SP thread-nested];  thread-nested = 2*thread-list
    private mutating func write(thread: IMAPThread) {
        write(byte: UInt8(ascii: "("))
        writeThreadContent(thread)
        write(byte: UInt8(ascii: ")"))
    }

    private mutating func writeThreadContent(_ thread: IMAPThread) {
        for (index, member) in thread.members.enumerated() {
            if index > 0 { write(byte: 0x20) }
            write(number: member)
        }
        if thread.children.count == 1 {
            // One branch is no branch: it continues the chain.
            if !thread.members.isEmpty { write(byte: 0x20) }
            writeThreadContent(thread.children[0])
            return
        }
        if !thread.children.isEmpty && !thread.members.isEmpty { write(byte: 0x20) }
        for child in thread.children { write(thread: child) }
    }

    private mutating func writeAtoms(_ atoms: [[UInt8]], leadingSpace: Bool) {
        for (index, atom) in atoms.enumerated() {
            if leadingSpace || index > 0 { write(byte: 0x20) }
            write(contentsOf: atom)
        }
    }

    /// Writes bytes as an astring: an atom when possible, otherwise a string.
    public mutating func write(astring value: [UInt8]) {
        value.withUnsafeBytes { write(astring: IMAPBytes($0)) }
    }

    // resp-text-code (RFC 9051 section 9 and extensions)
    /// Writes a response code without its brackets.
    public mutating func write(code: IMAPResponseCode) {
        switch code {
        case .alert: write("ALERT")
        case .parse: write("PARSE")
        case .readOnly: write("READ-ONLY")
        case .readWrite: write("READ-WRITE")
        case .tryCreate: write("TRYCREATE")
        case .uidNotSticky: write("UIDNOTSTICKY")
        case .noModificationSequence: write("NOMODSEQ")
        case .closed: write("CLOSED")
        case .badCharset(let charsets):
            write("BADCHARSET")
            if !charsets.isEmpty {
                write(" (")
                for (index, charset) in charsets.enumerated() {
                    if index > 0 { write(byte: 0x20) }
                    write(astring: charset)
                }
                write(byte: UInt8(ascii: ")"))
            }
        case .capability(let names):
            write("CAPABILITY")
            writeAtoms(names, leadingSpace: true)
        case .permanentFlags(let flags):
            write("PERMANENTFLAGS (")
            writeAtoms(flags, leadingSpace: false)
            write(byte: UInt8(ascii: ")"))
        case .uidNext(let value): writeCode("UIDNEXT ", value)
        case .uidValidity(let value): writeCode("UIDVALIDITY ", value)
        case .unseen(let value): writeCode("UNSEEN ", value)
        case .appendUID(let validity, let uids):
            writeCode("APPENDUID ", validity)
            write(byte: 0x20)
            write(contentsOf: uids)
        case .copyUID(let validity, let source, let destination):
            writeCode("COPYUID ", validity)
            write(byte: 0x20)
            write(contentsOf: source)
            write(byte: 0x20)
            write(contentsOf: destination)
        case .highestModificationSequence(let value):
            write("HIGHESTMODSEQ ")
            write(number: value)
        case .modified(let set):
            write("MODIFIED ")
            write(contentsOf: set)
        case .unavailable: write("UNAVAILABLE")
        case .authenticationFailed: write("AUTHENTICATIONFAILED")
        case .authorizationFailed: write("AUTHORIZATIONFAILED")
        case .expired: write("EXPIRED")
        case .privacyRequired: write("PRIVACYREQUIRED")
        case .contactAdmin: write("CONTACTADMIN")
        case .noPermission: write("NOPERM")
        case .inUse: write("INUSE")
        case .expungeIssued: write("EXPUNGEISSUED")
        case .corruption: write("CORRUPTION")
        case .serverBug: write("SERVERBUG")
        case .clientBug: write("CLIENTBUG")
        case .cannotDo: write("CANNOT")
        case .limit: write("LIMIT")
        case .overQuota: write("OVERQUOTA")
        case .alreadyExists: write("ALREADYEXISTS")
        case .nonExistent: write("NONEXISTENT")
        case .tooBig: write("TOOBIG")
        case .notSaved: write("NOTSAVED")
        case .compressionActive: write("COMPRESSIONACTIVE")
        case .useAttribute: write("USEATTR")
        case .unknownCTE: write("UNKNOWN-CTE")
        case .hasChildren: write("HASCHILDREN")
        case .other(let name, let text):
            write(contentsOf: name)
            if let text {
                write(byte: 0x20)
                write(contentsOf: text)
            }
        }
    }

    private mutating func writeCode(_ name: StaticString, _ value: UInt32) {
        write(name)
        write(number: value)
    }

    // mailbox-list = "(" [mbx-list-flags] ")" SP (DQUOTE QUOTED-CHAR DQUOTE / nil) SP mailbox [SP mbox-list-extended]
    private mutating func write(list: IMAPListResponse) {
        write(list.isLSUB ? "LSUB (" : "LIST (")
        writeAtoms(list.attributes, leadingSpace: false)
        write(") ")
        if let delimiter = list.delimiter {
            write(byte: UInt8(ascii: "\""))
            if IMAPByteClass.isQuotedSpecial(delimiter) { write(byte: UInt8(ascii: "\\")) }
            write(byte: delimiter)
            write(byte: UInt8(ascii: "\""))
        } else {
            write("NIL")
        }
        write(byte: 0x20)
        write(astring: list.mailbox)
        if let extended = list.extendedData {
            write(byte: 0x20)
            write(contentsOf: extended)
        }
    }

    // status-att-list = status-att-val *(SP status-att-val)
    private mutating func write(mailboxStatus status: IMAPMailboxStatus) {
        var first = true
        func item(_ name: StaticString, _ value: UInt64?, into buffer: inout IMAPOutputBuffer) {
            guard let value else { return }
            if !first { buffer.write(byte: 0x20) }
            first = false
            buffer.write(name)
            buffer.write(byte: 0x20)
            buffer.write(number: value)
        }
        item("MESSAGES", status.messages.map(UInt64.init), into: &self)
        item("UIDNEXT", status.uidNext.map(UInt64.init), into: &self)
        item("UIDVALIDITY", status.uidValidity.map(UInt64.init), into: &self)
        item("UNSEEN", status.unseen.map(UInt64.init), into: &self)
        item("DELETED", status.deleted.map(UInt64.init), into: &self)
        item("SIZE", status.size, into: &self)
        item("RECENT", status.recent.map(UInt64.init), into: &self)
        item("HIGHESTMODSEQ", status.highestModificationSequence, into: &self)
        item("APPENDLIMIT", status.appendLimit, into: &self)
    }

    // esearch-response = "ESEARCH" [search-correlator] [SP "UID"] *(SP search-return-data)
    private mutating func write(extendedSearch result: IMAPExtendedSearchResponse) {
        write("ESEARCH")
        if let tag = result.tag {
            write(" (TAG ")
            write(string: tag)
            write(byte: UInt8(ascii: ")"))
        }
        if result.uid { write(" UID") }
        if let min = result.min { writeCode(" MIN ", min) }
        if let max = result.max { writeCode(" MAX ", max) }
        if let all = result.all {
            write(" ALL ")
            write(contentsOf: all)
        }
        if let count = result.count { writeCode(" COUNT ", count) }
        if let modSeq = result.modificationSequence {
            write(" MODSEQ ")
            write(number: modSeq)
        }
    }

    // Namespace = nil / "(" 1*Namespace-Descr ")"
    // Namespace-Descr = "(" string SP (DQUOTE QUOTED-CHAR DQUOTE / nil) ")"
    private mutating func write(namespaces: [IMAPNamespace]) {
        guard !namespaces.isEmpty else {
            write("NIL")
            return
        }
        write(byte: UInt8(ascii: "("))
        for namespace in namespaces {
            write(byte: UInt8(ascii: "("))
            write(string: namespace.prefix)
            write(byte: 0x20)
            if let delimiter = namespace.delimiter {
                write(string: [delimiter])
            } else {
                write("NIL")
            }
            write(byte: UInt8(ascii: ")"))
        }
        write(byte: UInt8(ascii: ")"))
    }

    // MARK: - FETCH items

    // msg-att-dynamic / msg-att-static (RFC 9051 section 9)
    /// Writes one FETCH item (without separators).
    public mutating func write(fetchItem item: IMAPFetchItem) {
        switch item {
        case .flags(let flags):
            write("FLAGS (")
            writeAtoms(flags, leadingSpace: false)
            write(byte: UInt8(ascii: ")"))
        case .uid(let uid): writeCode("UID ", uid)
        case .internalDate(let date):
            write("INTERNALDATE ")
            write(dateTime: date)
        case .rfc822Size(let size):
            write("RFC822.SIZE ")
            write(number: size)
        case .envelope(let envelope):
            write("ENVELOPE ")
            write(envelope: envelope)
        case .bodyStructure(let structure, let extensible):
            write(extensible ? "BODYSTRUCTURE " : "BODY ")
            write(bodyStructure: structure, extensible: extensible)
        case .modificationSequence(let value):
            write("MODSEQ (")
            write(number: value)
            write(byte: UInt8(ascii: ")"))
        case .body(let section, let origin, let data):
            write("BODY[")
            write(contentsOf: section)
            write(byte: UInt8(ascii: "]"))
            if let origin {
                write(byte: UInt8(ascii: "<"))
                write(number: origin)
                write(byte: UInt8(ascii: ">"))
            }
            write(byte: 0x20)
            write(nstring: data)
        case .binary(let section, let data):
            write("BINARY[")
            write(contentsOf: section)
            write("] ")
            if let data, data.contains(0) {
                // NUL can only travel in a literal8 (RFC 3516).
                write("~{")
                write(number: data.count)
                write("}\r\n")
                write(contentsOf: data)
            } else {
                write(nstring: data)
            }
        case .binarySize(let section, let size):
            write("BINARY.SIZE[")
            write(contentsOf: section)
            write("] ")
            write(number: size)
        case .rfc822(let data):
            write("RFC822 ")
            write(nstring: data)
        case .rfc822Header(let data):
            write("RFC822.HEADER ")
            write(nstring: data)
        case .rfc822Text(let data):
            write("RFC822.TEXT ")
            write(nstring: data)
        }
    }

    /// Starts `* n FETCH (`: follow with items separated by spaces, then ``endFetch()``.
    public mutating func beginFetch(sequenceNumber: UInt32) {
        write("* ")
        write(number: sequenceNumber)
        write(" FETCH (")
    }

    /// Writes the literal header of a body item whose bytes the caller sends next (for example with
    /// sendfile): `BODY[section]<origin> {size}` CRLF.
    public mutating func writeBodyLiteralHeader(section: IMAPBytes, origin: UInt64?, size: UInt64) {
        write("BODY[")
        write(bytes: section)
        write(byte: UInt8(ascii: "]"))
        if let origin {
            write(byte: UInt8(ascii: "<"))
            write(number: origin)
            write(byte: UInt8(ascii: ">"))
        }
        write(" {")
        write(number: size)
        write("}\r\n")
    }

    /// Ends a FETCH started with ``beginFetch(sequenceNumber:)``.
    public mutating func endFetch() { write(")\r\n") }

    // envelope = "(" env-date SP env-subject SP env-from SP env-sender SP env-reply-to SP env-to SP env-cc SP
    //            env-bcc SP env-in-reply-to SP env-message-id ")"
    /// Writes an ENVELOPE's parenthesised value.
    public mutating func write(envelope: IMAPEnvelope) {
        write(byte: UInt8(ascii: "("))
        write(nstring: envelope.date)
        write(byte: 0x20)
        write(nstring: envelope.subject)
        // One call per list (not a loop over an array literal, which would allocate).
        write(addresses: envelope.from)
        write(addresses: envelope.sender)
        write(addresses: envelope.replyTo)
        write(addresses: envelope.to)
        write(addresses: envelope.cc)
        write(addresses: envelope.bcc)
        write(byte: 0x20)
        write(nstring: envelope.inReplyTo)
        write(byte: 0x20)
        write(nstring: envelope.messageID)
        write(byte: UInt8(ascii: ")"))
    }

    // env-from = "(" 1*address ")" / nil;  address = "(" addr-name SP addr-adl SP addr-mailbox SP addr-host ")"
    /// Writes SP and an address list.
    private mutating func write(addresses: [IMAPAddress]) {
        write(byte: 0x20)
        guard !addresses.isEmpty else {
            write("NIL")
            return
        }
        write(byte: UInt8(ascii: "("))
        for address in addresses {
            write(byte: UInt8(ascii: "("))
            write(nstring: address.name)
            write(byte: 0x20)
            write(nstring: address.adl)
            write(byte: 0x20)
            write(nstring: address.mailbox)
            write(byte: 0x20)
            write(nstring: address.host)
            write(byte: UInt8(ascii: ")"))
        }
        write(byte: UInt8(ascii: ")"))
    }

    // body = "(" (body-type-1part / body-type-mpart) ")"
    /// Writes BODY (`extensible: false`) or BODYSTRUCTURE (`true`).
    public mutating func write(bodyStructure: IMAPBodyStructure, extensible: Bool) {
        write(byte: UInt8(ascii: "("))
        switch bodyStructure {
        case .singlePart(let part):
            write(bodyPart: part, extensible: extensible)
        case .multipart(let parts, let subtype, let parameters, let extensionData):
            // body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart]
            for part in parts { write(bodyStructure: part, extensible: extensible) }
            write(byte: 0x20)
            write(string: subtype)
            if extensible {
                write(byte: 0x20)
                write(bodyParameters: parameters)
                write(bodyExtension: extensionData)
            }
        }
        write(byte: UInt8(ascii: ")"))
    }

    // body-type-1part = (body-type-basic / body-type-msg / body-type-text) [SP body-ext-1part]
    // body-fields = body-fld-param SP body-fld-id SP body-fld-desc SP body-fld-enc SP body-fld-octets
    private mutating func write(bodyPart part: IMAPBodyPart, extensible: Bool) {
        write(string: part.type)
        write(byte: 0x20)
        write(string: part.subtype)
        write(byte: 0x20)
        write(bodyParameters: part.parameters)
        write(byte: 0x20)
        write(nstring: part.id)
        write(byte: 0x20)
        write(nstring: part.description)
        write(byte: 0x20)
        write(string: part.encoding)
        write(byte: 0x20)
        write(number: part.size)
        switch part.kind {
        case .basic: break
        case .text(let lines):
            write(byte: 0x20)
            write(number: lines)
        case .message(let envelope, let body, let lines):
            write(byte: 0x20)
            write(envelope: envelope)
            write(byte: 0x20)
            write(bodyStructure: body, extensible: extensible)
            write(byte: 0x20)
            write(number: lines)
        }
        if extensible {
            // body-ext-1part = body-fld-md5 [SP body-fld-dsp [SP body-fld-lang [SP body-fld-loc *(SP body-extension)]]]
            write(byte: 0x20)
            write(nstring: part.md5)
            write(bodyExtension: part.extensionData)
        }
    }

    // body-fld-param = "(" string SP string *(SP string SP string) ")" / nil
    private mutating func write(bodyParameters: [IMAPBodyParameter]) {
        guard !bodyParameters.isEmpty else {
            write("NIL")
            return
        }
        write(byte: UInt8(ascii: "("))
        for (index, parameter) in bodyParameters.enumerated() {
            if index > 0 { write(byte: 0x20) }
            write(string: parameter.name)
            write(byte: 0x20)
            write(string: parameter.value)
        }
        write(byte: UInt8(ascii: ")"))
    }

    // SP body-fld-dsp SP body-fld-lang SP body-fld-loc  (always all three, so parsers meet one shape)
    // body-fld-dsp = "(" string SP body-fld-param ")" / nil;  body-fld-lang = nstring / "(" string *(SP string) ")"
    private mutating func write(bodyExtension: IMAPBodyExtension?) {
        let value = bodyExtension ?? IMAPBodyExtension()
        write(byte: 0x20)
        if let disposition = value.disposition {
            write(byte: UInt8(ascii: "("))
            write(string: disposition.kind)
            write(byte: 0x20)
            write(bodyParameters: disposition.parameters)
            write(byte: UInt8(ascii: ")"))
        } else {
            write("NIL")
        }
        write(byte: 0x20)
        if value.languages.isEmpty {
            write("NIL")
        } else {
            write(byte: UInt8(ascii: "("))
            for (index, language) in value.languages.enumerated() {
                if index > 0 { write(byte: 0x20) }
                write(string: language)
            }
            write(byte: UInt8(ascii: ")"))
        }
        write(byte: 0x20)
        write(nstring: value.location)
    }
}

/// A CAPABILITY list rendered once, at configuration time, in both of its forms: the untagged line
/// and the response code. Sessions copy the bytes; nothing is built per call.
///
/// `S: * CAPABILITY IMAP4rev1 IMAP4rev2 STARTTLS AUTH=PLAIN LITERAL+`
public struct IMAPCapabilitySet: Sendable, Equatable {
    /// The capability names, as given.
    public let names: [[UInt8]]
    /// `* CAPABILITY ...` CRLF.
    public let untaggedLine: [UInt8]
    /// `CAPABILITY ...` for `[...]` in a greeting or tagged OK.
    public let responseCode: [UInt8]

    /// Renders `names` (atoms such as `IMAP4rev2`, `AUTH=PLAIN`).
    public init(_ names: [String]) {
        self.names = names.map { Array($0.utf8) }
        var code = IMAPOutputBuffer(capacity: 256)
        code.write(code: .capability(self.names))
        responseCode = code.bytes
        var line = IMAPOutputBuffer(capacity: 256)
        line.write(response: .untagged(.capability(self.names)))
        untaggedLine = line.bytes
    }

    /// Whether `name` is in the set (ASCII case-insensitive).
    public func contains(_ name: String) -> Bool {
        let wanted = Array(name.utf8)
        return names.contains { candidate in
            candidate.count == wanted.count
                && zip(candidate, wanted).allSatisfy { IMAPByteClass.upper($0) == IMAPByteClass.upper($1) }
        }
    }
}
