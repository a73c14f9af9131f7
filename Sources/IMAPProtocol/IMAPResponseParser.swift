// IMAPProtocol: the client side's response parser, streaming large FETCH literals.

/// The literal of a FETCH body item that is streamed rather than held (see ``IMAPResponseEvent``).
public struct IMAPStreamedBody: Equatable, Sendable {
    /// Which item: `BODY[section]<origin>`, `BINARY[section]`, or an RFC822 form.
    public enum Item: Equatable, Sendable {
        case body(section: [UInt8], origin: UInt64?)
        case binary(section: [UInt8])
        case rfc822, rfc822Header, rfc822Text
    }

    public var item: Item
    /// The number of bytes that follow as `.streamBytes`.
    public var size: UInt64
}

/// What the response parser found. Views are valid until the caller consumes the bytes.
public enum IMAPResponseEvent {
    /// A whole response.
    case response(IMAPResponse)
    /// A FETCH whose body literal is larger than the streaming threshold: the items before it, then
    /// the literal's header; its bytes follow as `.streamBytes`.
    case fetchStreamBegin(sequenceNumber: UInt32, itemsBefore: [IMAPFetchItem], body: IMAPStreamedBody)
    /// Bytes of the streamed literal, in order.
    case streamBytes(IMAPBytes)
    /// Items after one streamed literal and before the next.
    case fetchStreamNext(itemsBetween: [IMAPFetchItem], body: IMAPStreamedBody)
    /// The rest of a streamed FETCH: its last items.
    case fetchStreamEnd(itemsAfter: [IMAPFetchItem])
    /// Read more and call again.
    case needMoreBytes
    /// The server sent something unparseable: the connection cannot continue.
    case error(IMAPParseFailure)
}

/// Parses server responses for the proxy and the load generator, incrementally across reads. Each
/// call returns one event and how many bytes it consumed; FETCH body literals larger than
/// `streamingThreshold` come as a stream of slices, so a large message never sits whole in memory.
public struct IMAPResponseParser: Sendable {
    public var limits: IMAPLimits { framer.limits }
    public var streamingThreshold: Int { framer.streamingThreshold }

    private var framer: IMAPResponseFramer
    /// The sequence number of the FETCH whose literal is being streamed (its later items name it).
    private var streamedSequenceNumber: UInt32 = 0

    public init(limits: IMAPLimits = IMAPLimits(), streamingThreshold: Int = 16 * 1024) {
        framer = IMAPResponseFramer(limits: limits, streamingThreshold: streamingThreshold)
    }

    /// Examines the unconsumed bytes and returns the next event and how many bytes it used.
    public mutating func parse(_ buffer: UnsafeRawBufferPointer) -> (event: IMAPResponseEvent, consumed: Int) {
        parse(buffer, visiting: false) { _, _ in }
    }

    /// Like ``parse(_:)``, but the items of each FETCH response go to `visit` (with the response's
    /// sequence number) as views into `buffer`, checked against the same grammar and never copied:
    /// the event then carries no items (`.fetch(n, [])`, `.fetchStreamBegin(itemsBefore: [])`, ...).
    /// For a client that checks what a FETCH says without keeping it: a FETCH response then
    /// allocates nothing, whatever its envelopes and body structures hold.
    public mutating func parse(
        _ buffer: UnsafeRawBufferPointer, visitingFetchItems visit: (_ sequenceNumber: UInt32, IMAPFetchItemView) -> Void
    ) -> (event: IMAPResponseEvent, consumed: Int) {
        parse(buffer, visiting: true, visit)
    }

    private mutating func parse(
        _ buffer: UnsafeRawBufferPointer, visiting: Bool, _ visit: (UInt32, IMAPFetchItemView) -> Void
    ) -> (event: IMAPResponseEvent, consumed: Int) {
        switch framer.scan(buffer) {
        case .needMoreBytes:
            return (.needMoreBytes, 0)
        case .tooLarge:
            return (.error("Response too large"), 0)
        case .streamBytes(let count):
            return (.streamBytes(IMAPBytes(base: buffer.baseAddress, count: count)), count)
        case .complete(let length, let continuesStream):
            var parser = IMAPParser(UnsafeRawBufferPointer(rebasing: buffer[0..<length]), limits: limits)
            let event = continuesStream
                ? parseFetchTail(&parser, streamed: nil, visiting: visiting, visit)
                : parseWhole(&parser, visiting: visiting, visit)
            return (event, length)
        case .streamStart(let length, let size, let continuesStream):
            var parser = IMAPParser(UnsafeRawBufferPointer(rebasing: buffer[0..<length]), limits: limits)
            let event = continuesStream
                ? parseFetchTail(&parser, streamed: size, visiting: visiting, visit)
                : parseFetchStart(&parser, size, visiting: visiting, visit)
            return (event, length)
        }
    }

    // response = *(continue-req / response-data) response-done
    private mutating func parseWhole(
        _ parser: inout IMAPParser, visiting: Bool, _ visit: (UInt32, IMAPFetchItemView) -> Void
    ) -> IMAPResponseEvent {
        if visiting, let number = parser.fetchOpening() {
            // "(" msg-att ")" CRLF, each item seen in place.
            parser.buildsFetchValues = false
            var count = 0
            while !parser.skip(UInt8(ascii: ")")) {
                if count > 0 { guard parser.space() != nil else { return .error(parser.failure ?? "Bad FETCH") } }
                guard parser.fetchPiece(streamedSize: nil, number, visit) != nil else {
                    return .error(parser.failure ?? "Bad FETCH")
                }
                count += 1
            }
            guard parser.endOfLine() != nil else { return .error(parser.failure ?? "Bad FETCH end") }
            return .response(.untagged(.fetch(number, [])))
        }
        guard let response = parser.response(), parser.endOfLine() != nil else {
            return .error(parser.failure ?? "Invalid response")
        }
        return .response(response)
    }

    /// `* n FETCH (items... BODY[...] {N}` CRLF, the literal to be streamed.
    private mutating func parseFetchStart(
        _ parser: inout IMAPParser, _ size: UInt64, visiting: Bool, _ visit: (UInt32, IMAPFetchItemView) -> Void
    ) -> IMAPResponseEvent {
        guard let number = parser.fetchOpening() else {
            return .error(parser.failure ?? "Only FETCH may carry a large literal")
        }
        parser.buildsFetchValues = !visiting
        streamedSequenceNumber = number
        var items: [IMAPFetchItem] = []
        while true {
            guard let piece = parser.fetchPiece(streamedSize: size, number, visit) else {
                return .error(parser.failure ?? "Bad FETCH")
            }
            switch piece {
            case .item(let item): if parser.buildsFetchValues { items.append(item) }
            case .streamed(let body): return .fetchStreamBegin(sequenceNumber: number, itemsBefore: items, body: body)
            }
            guard parser.space() != nil else { return .error(parser.failure ?? "Bad FETCH") }
        }
    }

    /// What follows a streamed literal: more items, maybe another streamed literal, or `)` CRLF.
    private func parseFetchTail(
        _ parser: inout IMAPParser, streamed size: UInt64?, visiting: Bool,
        _ visit: (UInt32, IMAPFetchItemView) -> Void
    ) -> IMAPResponseEvent {
        parser.buildsFetchValues = !visiting
        var items: [IMAPFetchItem] = []
        while true {
            if parser.skip(UInt8(ascii: ")")) {
                guard size == nil, parser.endOfLine() != nil else { return .error(parser.failure ?? "Bad FETCH end") }
                return .fetchStreamEnd(itemsAfter: items)
            }
            guard parser.space() != nil, let piece = parser.fetchPiece(streamedSize: size, streamedSequenceNumber, visit)
            else {
                return .error(parser.failure ?? "Bad FETCH")
            }
            switch piece {
            case .item(let item): if parser.buildsFetchValues { items.append(item) }
            case .streamed(let body): return .fetchStreamNext(itemsBetween: items, body: body)
            }
        }
    }
}

/// A FETCH item, or the header of one whose literal is streamed.
enum FetchPiece {
    case item(IMAPFetchItem)
    case streamed(IMAPStreamedBody)
}

extension IMAPParser {
    /// Copies a string's bytes out (responses are owned values); only validates, returning an empty
    /// placeholder, while FETCH values are not built.
    mutating func ownedString() -> [UInt8]? { string().map(owned) }

    mutating func ownedNString() -> [UInt8]?? {
        guard let value = nstring() else { return nil }
        return .some(value.map(owned))
    }

    mutating func ownedAString() -> [UInt8]? { astring().map(owned) }

    /// The bytes of `value`, or nothing (no allocation) while only validating.
    func owned(_ value: IMAPString) -> [UInt8] { buildsFetchValues ? value.copyBytes() : [] }

    // response-tagged / response-data / continue-req (without the final CRLF)
    mutating func response() -> IMAPResponse? {
        if skip(UInt8(ascii: "+")) {
            _ = skip(0x20)
            return .continuation(restOfLine())
        }
        if skip(UInt8(ascii: "*")) {
            guard space() != nil, let untagged = untaggedResponse() else { return nil }
            return .untagged(untagged)
        }
        guard let tag = tag(), space() != nil, let status = statusResponse() else { return nil }
        guard status.kind == .ok || status.kind == .no || status.kind == .bad else {
            return fail("Invalid tagged status")
        }
        return .tagged(tag: tag.copyBytes(), status)
    }

    /// The bytes up to the CRLF (text).
    mutating func restOfLine() -> [UInt8] {
        let start = position
        while let byte = peek(), byte != 0x0D, byte != 0x0A { position += 1 }
        return view(start, position).copyBytes()
    }

    // resp-cond-state = ("OK" / "NO" / "BAD") SP resp-text;  resp-text = ["[" resp-text-code "]" SP] [text]
    mutating func statusResponse() -> IMAPStatusResponse? {
        let kind: IMAPStatusResponse.Kind
        if skipKeyword("OK") {
            kind = .ok
        } else if skipKeyword("NO") {
            kind = .no
        } else if skipKeyword("BAD") {
            kind = .bad
        } else if skipKeyword("PREAUTH") {
            kind = .preauth
        } else if skipKeyword("BYE") {
            kind = .bye
        } else {
            return fail("Expected a status")
        }
        var status = IMAPStatusResponse(kind, text: [])
        guard skip(0x20) else { return status }
        if skip(UInt8(ascii: "[")) {
            guard let code = responseCode(), expect(UInt8(ascii: "]"), "Expected ]") != nil else { return nil }
            status.code = code
            _ = skip(0x20)
        }
        status.text = restOfLine()
        return status
    }

    private mutating func atoms(until terminator: UInt8?) -> [[UInt8]]? {
        var list: [[UInt8]] = []
        while true {
            if let terminator, peek() == terminator { return list }
            if terminator == nil, peek() == 0x0D || peek() == nil { return list }
            guard space() != nil, let flag = flagOrAtom() else { return nil }
            list.append(flag)
        }
    }

    private mutating func parenthesizedAtoms() -> [[UInt8]]? {
        guard expect(UInt8(ascii: "("), "Expected (") != nil else { return nil }
        var list: [[UInt8]] = []
        var count = 0
        while !skip(UInt8(ascii: ")")) {
            if count > 0 { guard space() != nil else { return nil } }
            guard let flag = flagOrAtom() else { return nil }
            count += 1
            if buildsFetchValues { list.append(flag) }
        }
        return list
    }

    // flag-perm / mbx-list-flag / capability: ["\"] atom, or "\*"
    private mutating func flagOrAtom() -> [UInt8]? {
        let start = position
        _ = skip(UInt8(ascii: "\\"))
        if !skip(UInt8(ascii: "*")) { guard atom() != nil else { return nil } }
        return buildsFetchValues ? view(start, position).copyBytes() : []
    }

    private mutating func sequenceSetText() -> [UInt8]? { sequenceSet()?.text.copyBytes() }

    // resp-text-code = "ALERT" / "BADCHARSET" [SP "(" charset *(SP charset) ")"] / capability-data / "PARSE" /
    //   "PERMANENTFLAGS" SP "(" [flag-perm *(SP flag-perm)] ")" / "READ-ONLY" / "READ-WRITE" / "TRYCREATE" /
    //   "UIDNEXT" SP nz-number / "UIDVALIDITY" SP nz-number / "UNSEEN" SP nz-number / ... /
    //   atom [SP 1*<any TEXT-CHAR except "]">]
    mutating func responseCode() -> IMAPResponseCode? {
        let start = position
        while let byte = peek(), IMAPByteClass.isAtomChar(byte) { position += 1 }
        let name = view(start, position)
        guard !name.isEmpty else { return fail("Expected a response code") }
        let simple: [(StaticString, IMAPResponseCode)] = [
            ("ALERT", .alert), ("PARSE", .parse), ("READ-ONLY", .readOnly), ("READ-WRITE", .readWrite),
            ("TRYCREATE", .tryCreate), ("UIDNOTSTICKY", .uidNotSticky), ("NOMODSEQ", .noModificationSequence),
            ("CLOSED", .closed), ("UNAVAILABLE", .unavailable), ("AUTHENTICATIONFAILED", .authenticationFailed),
            ("AUTHORIZATIONFAILED", .authorizationFailed), ("EXPIRED", .expired), ("PRIVACYREQUIRED", .privacyRequired),
            ("CONTACTADMIN", .contactAdmin), ("NOPERM", .noPermission), ("INUSE", .inUse),
            ("EXPUNGEISSUED", .expungeIssued), ("CORRUPTION", .corruption), ("SERVERBUG", .serverBug),
            ("CLIENTBUG", .clientBug), ("CANNOT", .cannotDo), ("LIMIT", .limit), ("OVERQUOTA", .overQuota),
            ("ALREADYEXISTS", .alreadyExists), ("NONEXISTENT", .nonExistent), ("TOOBIG", .tooBig),
            ("NOTSAVED", .notSaved), ("COMPRESSIONACTIVE", .compressionActive), ("USEATTR", .useAttribute),
            ("UNKNOWN-CTE", .unknownCTE), ("HASCHILDREN", .hasChildren),
        ]
        for (text, code) in simple where name.equalsCaseInsensitive(text) && peek() == UInt8(ascii: "]") {
            return code
        }
        if name.equalsCaseInsensitive("CAPABILITY") { return atoms(until: UInt8(ascii: "]")).map { .capability($0) } }
        if name.equalsCaseInsensitive("PERMANENTFLAGS") {
            guard space() != nil, let flags = parenthesizedAtoms() else { return nil }
            return .permanentFlags(flags)
        }
        if name.equalsCaseInsensitive("BADCHARSET") {
            guard skip(0x20) else { return .badCharset([]) }
            guard expect(UInt8(ascii: "("), "Expected (") != nil else { return nil }
            var charsets: [[UInt8]] = []
            while !skip(UInt8(ascii: ")")) {
                if !charsets.isEmpty { guard space() != nil else { return nil } }
                guard let charset = ownedAString() else { return nil }
                charsets.append(charset)
            }
            return .badCharset(charsets)
        }
        if name.equalsCaseInsensitive("UIDNEXT") { return numberCode(IMAPResponseCode.uidNext) }
        if name.equalsCaseInsensitive("UIDVALIDITY") { return numberCode(IMAPResponseCode.uidValidity) }
        if name.equalsCaseInsensitive("UNSEEN") { return numberCode(IMAPResponseCode.unseen) }
        if name.equalsCaseInsensitive("APPENDUID") {
            guard space() != nil, let validity = nzNumber(), space() != nil, let uids = sequenceSetText() else {
                return nil
            }
            return .appendUID(uidValidity: validity, uids: uids)
        }
        if name.equalsCaseInsensitive("COPYUID") {
            guard space() != nil, let validity = nzNumber(), space() != nil, let source = sequenceSetText(),
                space() != nil, let destination = sequenceSetText()
            else { return nil }
            return .copyUID(uidValidity: validity, source: source, destination: destination)
        }
        if name.equalsCaseInsensitive("HIGHESTMODSEQ") {
            guard space() != nil, let value = modSequence() else { return nil }
            return .highestModificationSequence(value)
        }
        if name.equalsCaseInsensitive("MODIFIED") {
            guard space() != nil, let set = sequenceSetText() else { return nil }
            return .modified(set)
        }
        var text: [UInt8]?
        if skip(0x20) {
            let textStart = position
            while let byte = peek(), byte != UInt8(ascii: "]"), byte != 0x0D, byte != 0x0A { position += 1 }
            text = view(textStart, position).copyBytes()
        }
        return .other(name: name.copyBytes(), text: text)
    }

    private mutating func numberCode(_ make: (UInt32) -> IMAPResponseCode) -> IMAPResponseCode? {
        guard space() != nil, let value = number() else { return nil }
        return make(value)
    }

    private mutating func numbers() -> [UInt32]? {
        var list: [UInt32] = []
        while peek() == 0x20, let next = peek(at: 1), IMAPByteClass.isDigit(next) {
            position += 1
            guard let value = number() else { return nil }
            list.append(value)
        }
        return list
    }

    // response-data = "*" SP (resp-cond-state / resp-cond-bye / mailbox-data / message-data / capability-data /
    //                 enable-data / namespace-response / id-response / quota-response) CRLF
    mutating func untaggedResponse() -> IMAPUntaggedResponse? {
        if let first = peek(), IMAPByteClass.isDigit(first) {
            guard let number = number(), space() != nil else { return nil }
            if skipKeyword("EXISTS") { return .exists(number) }
            if skipKeyword("RECENT") { return .recent(number) }
            if skipKeyword("EXPUNGE") { return .expunge(number) }
            guard skipKeyword("FETCH"), space() != nil, expect(UInt8(ascii: "("), "Expected (") != nil else {
                return fail("Unknown message data")
            }
            var items: [IMAPFetchItem] = []
            while !skip(UInt8(ascii: ")")) {
                if !items.isEmpty { guard space() != nil else { return nil } }
                guard case .item(let item)? = fetchItem(streamedSize: nil) else { return nil }
                items.append(item)
            }
            return .fetch(number, items)
        }
        let save = position
        if let status = statusResponse() { return .condition(status) }
        position = save
        failure = nil
        if skipKeyword("CAPABILITY") { return atoms(until: nil).map { .capability($0) } }
        if skipKeyword("ENABLED") { return atoms(until: nil).map { .enabled($0) } }
        if skipKeyword("FLAGS") {
            guard space() != nil, let flags = parenthesizedAtoms() else { return nil }
            return .flags(flags)
        }
        if skipKeyword("LIST") { return listResponse(isLSUB: false) }
        if skipKeyword("LSUB") { return listResponse(isLSUB: true) }
        if skipKeyword("STATUS") { return mailboxStatusResponse() }
        if skipKeyword("SEARCH") {
            guard let list = numbers() else { return nil }
            var modSeq: UInt64?
            if skip(0x20) {
                guard skip(UInt8(ascii: "(")), skipKeyword("MODSEQ"), space() != nil, let value = modSequence(),
                    skip(UInt8(ascii: ")"))
                else { return fail("Invalid SEARCH MODSEQ") }
                modSeq = value
            }
            return .search(list, modificationSequence: modSeq)
        }
        if skipKeyword("SORT") { return numbers().map { .sort($0) } }
        if skipKeyword("THREAD") {
            var threads: [IMAPThread] = []
            if skip(0x20) {
                while peek() == UInt8(ascii: "(") {
                    guard let thread = threadList() else { return nil }
                    threads.append(thread)
                }
            }
            return .thread(threads)
        }
        if skipKeyword("ESEARCH") { return extendedSearchResponse() }
        if skipKeyword("VANISHED") {
            guard space() != nil else { return nil }
            var earlier = false
            if skip(UInt8(ascii: "(")) {
                guard skipKeyword("EARLIER"), skip(UInt8(ascii: ")")), space() != nil else {
                    return fail("Invalid VANISHED")
                }
                earlier = true
            }
            guard let uids = sequenceSetText() else { return nil }
            return .vanished(earlier: earlier, uids: uids)
        }
        if skipKeyword("NAMESPACE") {
            guard space() != nil, let personal = namespaces(), space() != nil, let other = namespaces(),
                space() != nil, let shared = namespaces()
            else { return nil }
            return .namespace(personal: personal, otherUsers: other, shared: shared)
        }
        if skipKeyword("ID") { return idResponse() }
        if skipKeyword("QUOTAROOT") {
            guard space() != nil, let mailbox = ownedAString() else { return nil }
            var roots: [[UInt8]] = []
            while skip(0x20) {
                guard let root = ownedAString() else { return nil }
                roots.append(root)
            }
            return .quotaRoot(mailbox: mailbox, roots: roots)
        }
        if skipKeyword("QUOTA") { return quotaResponse() }
        return fail("Unknown response")
    }

    // mailbox-list = "(" [mbx-list-flags] ")" SP (DQUOTE QUOTED-CHAR DQUOTE / nil) SP mailbox [SP mbox-list-extended]
    private mutating func listResponse(isLSUB: Bool) -> IMAPUntaggedResponse? {
        guard space() != nil, let attributes = parenthesizedAtoms(), space() != nil else { return nil }
        var delimiter: UInt8?
        if !skipKeyword("NIL") {
            guard let quoted = quoted(), quoted.count == 1 else { return fail("Invalid delimiter") }
            delimiter = quoted.copyBytes()[0]
        }
        guard space() != nil, let mailbox = ownedAString() else { return nil }
        var extended: [UInt8]?
        if skip(0x20) { extended = restOfLine() }
        return .list(
            IMAPListResponse(
                isLSUB: isLSUB, attributes: attributes, delimiter: delimiter, mailbox: mailbox,
                extendedData: extended))
    }

    // "STATUS" SP mailbox SP "(" [status-att-list] ")"
    private mutating func mailboxStatusResponse() -> IMAPUntaggedResponse? {
        guard space() != nil, let mailbox = ownedAString(), space() != nil,
            expect(UInt8(ascii: "("), "Expected (") != nil
        else { return nil }
        var status = IMAPMailboxStatus()
        while !skip(UInt8(ascii: ")")) {
            if position > 0, byte(at: position - 1) != UInt8(ascii: "(") { guard space() != nil else { return nil } }
            var matched: IMAPStatusAttributes?
            for (attribute, name) in IMAPStatusAttributes.names where skipKeyword(name) {
                matched = attribute
                break
            }
            guard let attribute = matched, space() != nil, let value = number64() else {
                return fail("Invalid STATUS item")
            }
            let small = UInt32(truncatingIfNeeded: value)
            switch attribute {
            case .messages: status.messages = small
            case .uidNext: status.uidNext = small
            case .uidValidity: status.uidValidity = small
            case .unseen: status.unseen = small
            case .deleted: status.deleted = small
            case .size: status.size = value
            case .recent: status.recent = small
            case .highestModificationSequence: status.highestModificationSequence = value
            default: status.appendLimit = value
            }
        }
        return .mailboxStatus(mailbox: mailbox, status)
    }

    // thread-list = "(" (thread-members / thread-nested) ")"
    // thread-members = nz-number *(SP nz-number) [SP thread-nested];  thread-nested = 2*thread-list
    private mutating func threadList() -> IMAPThread? {
        guard expect(UInt8(ascii: "("), "Expected (") != nil else { return nil }
        return nested { parser in
            var thread = IMAPThread(members: [])
            while let byte = parser.peek(), IMAPByteClass.isDigit(byte) {
                guard let member = parser.nzNumber() else { return nil }
                thread.members.append(member)
                guard parser.skip(0x20) else { break }
            }
            while parser.peek() == UInt8(ascii: "(") {
                guard let child = parser.threadList() else { return nil }
                thread.children.append(child)
            }
            guard parser.expect(UInt8(ascii: ")"), "Expected )") != nil else { return nil }
            guard !thread.members.isEmpty || thread.children.count >= 2 else { return parser.fail("Invalid thread") }
            return thread
        }
    }

    // esearch-response = "ESEARCH" [search-correlator] [SP "UID"] *(SP search-return-data)
    private mutating func extendedSearchResponse() -> IMAPUntaggedResponse? {
        var result = IMAPExtendedSearchResponse()
        while skip(0x20) {
            if skip(UInt8(ascii: "(")) {
                guard skipKeyword("TAG"), space() != nil, let tag = ownedString(), skip(UInt8(ascii: ")")) else {
                    return fail("Invalid search correlator")
                }
                result.tag = tag
            } else if skipKeyword("UID") {
                result.uid = true
            } else if skipKeyword("MIN") {
                guard space() != nil, let value = nzNumber() else { return nil }
                result.min = value
            } else if skipKeyword("MAX") {
                guard space() != nil, let value = nzNumber() else { return nil }
                result.max = value
            } else if skipKeyword("ALL") {
                guard space() != nil, let set = sequenceSetText() else { return nil }
                result.all = set
            } else if skipKeyword("COUNT") {
                guard space() != nil, let value = number() else { return nil }
                result.count = value
            } else if skipKeyword("MODSEQ") {
                guard space() != nil, let value = modSequence() else { return nil }
                result.modificationSequence = value
            } else {
                return fail("Unknown ESEARCH data")
            }
        }
        return .extendedSearch(result)
    }

    // Namespace = nil / "(" 1*Namespace-Descr ")"
    private mutating func namespaces() -> [IMAPNamespace]? {
        if skipKeyword("NIL") { return [] }
        guard expect(UInt8(ascii: "("), "Expected (") != nil else { return nil }
        var list: [IMAPNamespace] = []
        while skip(UInt8(ascii: "(")) {
            guard let prefix = ownedString(), space() != nil else { return nil }
            var delimiter: UInt8?
            if !skipKeyword("NIL") {
                guard let text = ownedString(), text.count == 1 else { return fail("Invalid delimiter") }
                delimiter = text[0]
            }
            // Namespace_Response_Extensions are skipped up to the closing parenthesis.
            guard expect(UInt8(ascii: ")"), "Expected )") != nil else { return nil }
            list.append(IMAPNamespace(prefix: prefix, delimiter: delimiter))
        }
        guard expect(UInt8(ascii: ")"), "Expected )") != nil else { return nil }
        return list
    }

    // id-response = "ID" SP id-params-list
    private mutating func idResponse() -> IMAPUntaggedResponse? {
        guard space() != nil else { return nil }
        if skipKeyword("NIL") { return .id(nil) }
        guard expect(UInt8(ascii: "("), "Expected (") != nil else { return nil }
        var pairs: [IMAPIDPair] = []
        while !skip(UInt8(ascii: ")")) {
            if !pairs.isEmpty { guard space() != nil else { return nil } }
            guard let field = ownedString(), space() != nil, let value = ownedNString() else { return nil }
            pairs.append(IMAPIDPair(field: field, value: value))
        }
        return .id(pairs)
    }

    // quota-response = "QUOTA" SP quota-root-name SP quota-list
    // quota-list = "(" quota-resource *(SP quota-resource) ")"
    private mutating func quotaResponse() -> IMAPUntaggedResponse? {
        guard space() != nil, let root = ownedAString(), space() != nil,
            expect(UInt8(ascii: "("), "Expected (") != nil
        else { return nil }
        var resources: [IMAPQuotaResource] = []
        while !skip(UInt8(ascii: ")")) {
            if !resources.isEmpty { guard space() != nil else { return nil } }
            guard let name = atom(), space() != nil, let usage = number64(), space() != nil, let limit = number64()
            else {
                return nil
            }
            resources.append(IMAPQuotaResource(name: name.copyBytes(), usage: usage, limit: limit))
        }
        return .quota(root: root, resources)
    }

    // MARK: - FETCH items

    /// `"*" SP nz-number SP "FETCH" SP "("`: the sequence number, or nil with the position unchanged.
    mutating func fetchOpening() -> UInt32? {
        let save = position
        guard skip(UInt8(ascii: "*")), skip(0x20), let number = number(), skip(0x20), skipKeyword("FETCH"),
            skip(0x20), skip(UInt8(ascii: "("))
        else {
            position = save
            failure = nil
            return nil
        }
        return number
    }

    /// One FETCH item; while FETCH values are not built (a visiting parse), the item is handed to
    /// `visit` as a view of its wire text instead, and the returned item is a placeholder.
    mutating func fetchPiece(
        streamedSize: UInt64?, _ sequenceNumber: UInt32, _ visit: (UInt32, IMAPFetchItemView) -> Void
    ) -> FetchPiece? {
        let start = position
        let piece = fetchItem(streamedSize: streamedSize)
        guard !buildsFetchValues, let piece else { return piece }
        let text = view(start, position)
        // The value follows the item's name and a space (names with a section never reach the cases
        // that use it).
        var valueStart = 0
        while valueStart < text.count, text[valueStart] != 0x20 { valueStart += 1 }
        let value = text.slice(min(valueStart + 1, text.count)..<text.count)
        // Matched in place: binding the (placeholder) item would copy it.
        switch piece {
        case .item(.uid(let uid)): visit(sequenceNumber, .uid(uid))
        case .item(.rfc822Size(let size)): visit(sequenceNumber, .rfc822Size(size))
        case .item(.flags):
            // "(" ... ")": the list without its parentheses.
            visit(sequenceNumber, .flags(IMAPFlagListView(text: value.slice(1..<(value.count - 1)))))
        case .item(.envelope): visit(sequenceNumber, .envelope(IMAPValueText(raw: value)))
        case .item(.bodyStructure(_, let extensible)):
            visit(sequenceNumber, .bodyStructure(IMAPValueText(raw: value), extensible: extensible))
        case .item: visit(sequenceNumber, .other(text))
        case .streamed: break
        }
        return piece
    }

    /// A literal announcement that ends the frame is the streamed one: its bytes are not in the frame.
    private mutating func streamedLiteralFollows(_ size: UInt64?) -> Bool {
        guard size != nil, peek() == UInt8(ascii: "{") || peek() == UInt8(ascii: "~") else { return false }
        var probe = self
        _ = probe.skip(UInt8(ascii: "~"))
        guard probe.skip(UInt8(ascii: "{")), probe.number64() != nil, probe.skip(UInt8(ascii: "}")),
            probe.skip(0x0D), probe.skip(0x0A), probe.isAtEnd
        else { return false }
        self = probe
        return true
    }

    /// nstring, or a literal8 (BINARY responses).
    private mutating func ownedNStringOrBinary() -> [UInt8]?? {
        if peek() == UInt8(ascii: "~") {
            guard let data = literal(allowBinary: true) else { return nil }
            return .some(buildsFetchValues ? data.copyBytes() : [])
        }
        return ownedNString()
    }

    // msg-att-dynamic = "FLAGS" SP "(" [flag-fetch *(SP flag-fetch)] ")"
    // msg-att-static = "ENVELOPE" SP envelope / "INTERNALDATE" SP date-time / "RFC822.SIZE" SP number64 /
    //   "BODY" ["STRUCTURE"] SP body / "BODY" section ["<" number ">"] SP nstring /
    //   "BINARY" section-binary SP (nstring / literal8) / "BINARY.SIZE" section-binary SP number / "UID" SP uniqueid
    mutating func fetchItem(streamedSize: UInt64?) -> FetchPiece? {
        let start = position
        while let byte = peek(), IMAPByteClass.isAtomChar(byte), byte != UInt8(ascii: "[") { position += 1 }
        let name = view(start, position)
        if name.equalsCaseInsensitive("FLAGS") {
            guard space() != nil, let flags = parenthesizedAtoms() else { return nil }
            return .item(.flags(flags))
        }
        if name.equalsCaseInsensitive("UID") {
            guard space() != nil, let uid = nzNumber() else { return nil }
            return .item(.uid(uid))
        }
        if name.equalsCaseInsensitive("INTERNALDATE") {
            guard space() != nil, let date = dateTime() else { return nil }
            return .item(.internalDate(date))
        }
        if name.equalsCaseInsensitive("RFC822.SIZE") {
            guard space() != nil, let size = number64() else { return nil }
            return .item(.rfc822Size(size))
        }
        if name.equalsCaseInsensitive("ENVELOPE") {
            guard space() != nil, let envelope = envelope() else { return nil }
            return .item(.envelope(envelope))
        }
        if name.equalsCaseInsensitive("MODSEQ") {
            guard space() != nil, skip(UInt8(ascii: "(")), let value = modSequence(), skip(UInt8(ascii: ")")) else {
                return fail("Invalid MODSEQ")
            }
            return .item(.modificationSequence(value))
        }
        if name.equalsCaseInsensitive("BODYSTRUCTURE") {
            guard space() != nil, let body = bodyStructure() else { return nil }
            return .item(.bodyStructure(body, extensible: true))
        }
        if name.equalsCaseInsensitive("BODY") && peek() == 0x20 {
            position += 1
            guard let body = bodyStructure() else { return nil }
            return .item(.bodyStructure(body, extensible: false))
        }
        if name.equalsCaseInsensitive("BODY") || name.equalsCaseInsensitive("BINARY")
            || name.equalsCaseInsensitive("BINARY.SIZE")
        {
            guard skip(UInt8(ascii: "[")) else { return fail("Expected [") }
            let sectionStart = position
            while let byte = peek(), byte != UInt8(ascii: "]"), byte != 0x0D, byte != 0x0A { position += 1 }
            let section = buildsFetchValues ? view(sectionStart, position).copyBytes() : []
            guard skip(UInt8(ascii: "]")) else { return fail("Expected ]") }
            if name.equalsCaseInsensitive("BINARY.SIZE") {
                guard space() != nil, let size = number64() else { return nil }
                return .item(.binarySize(section: section, size: size))
            }
            let isBinary = name.equalsCaseInsensitive("BINARY")
            var origin: UInt64?
            if !isBinary && skip(UInt8(ascii: "<")) {
                guard let value = number64(), skip(UInt8(ascii: ">")) else { return fail("Invalid origin") }
                origin = value
            }
            guard space() != nil else { return nil }
            if let size = streamedSize, streamedLiteralFollows(size) {
                let item: IMAPStreamedBody.Item =
                    isBinary ? .binary(section: section) : .body(section: section, origin: origin)
                return .streamed(IMAPStreamedBody(item: item, size: size))
            }
            guard let data = ownedNStringOrBinary() else { return nil }
            return .item(
                isBinary ? .binary(section: section, data: data) : .body(section: section, origin: origin, data: data))
        }
        let rfc822: [(StaticString, IMAPStreamedBody.Item, ([UInt8]?) -> IMAPFetchItem)] = [
            ("RFC822", .rfc822, { .rfc822(data: $0) }), ("RFC822.HEADER", .rfc822Header, { .rfc822Header(data: $0) }),
            ("RFC822.TEXT", .rfc822Text, { .rfc822Text(data: $0) }),
        ]
        for (text, streamedItem, make) in rfc822 where name.equalsCaseInsensitive(text) {
            guard space() != nil else { return nil }
            if let size = streamedSize, streamedLiteralFollows(size) {
                return .streamed(IMAPStreamedBody(item: streamedItem, size: size))
            }
            guard let data = ownedNString() else { return nil }
            return .item(make(data))
        }
        return fail("Unknown FETCH item")
    }

    // envelope = "(" env-date SP env-subject SP env-from SP env-sender SP env-reply-to SP env-to SP env-cc SP
    //            env-bcc SP env-in-reply-to SP env-message-id ")"
    mutating func envelope() -> IMAPEnvelope? {
        guard expect(UInt8(ascii: "("), "Expected (") != nil, let date = ownedNString(), space() != nil,
            let subject = ownedNString(), space() != nil, let from = addresses(), space() != nil,
            let sender = addresses(), space() != nil, let replyTo = addresses(), space() != nil, let to = addresses(),
            space() != nil, let cc = addresses(), space() != nil, let bcc = addresses(), space() != nil,
            let inReplyTo = ownedNString(), space() != nil, let messageID = ownedNString(),
            expect(UInt8(ascii: ")"), "Expected )") != nil
        else { return nil }
        return IMAPEnvelope(
            date: date, subject: subject, from: from, sender: sender, replyTo: replyTo, to: to, cc: cc,
            bcc: bcc, inReplyTo: inReplyTo, messageID: messageID)
    }

    // env-from = "(" 1*address ")" / nil;  address = "(" addr-name SP addr-adl SP addr-mailbox SP addr-host ")"
    private mutating func addresses() -> [IMAPAddress]? {
        if skipKeyword("NIL") { return [] }
        guard expect(UInt8(ascii: "("), "Expected (") != nil else { return nil }
        var list: [IMAPAddress] = []
        var count = 0
        while skip(UInt8(ascii: "(")) {
            guard let name = ownedNString(), space() != nil, let adl = ownedNString(), space() != nil,
                let mailbox = ownedNString(), space() != nil, let host = ownedNString(),
                expect(UInt8(ascii: ")"), "Expected )") != nil
            else { return nil }
            count += 1
            if buildsFetchValues { list.append(IMAPAddress(name: name, adl: adl, mailbox: mailbox, host: host)) }
        }
        guard count > 0, expect(UInt8(ascii: ")"), "Expected )") != nil else { return fail("Invalid address list") }
        return list
    }

    // body = "(" (body-type-1part / body-type-mpart) ")"
    mutating func bodyStructure() -> IMAPBodyStructure? {
        guard expect(UInt8(ascii: "("), "Expected (") != nil else { return nil }
        return nested { parser in
            if parser.peek() == UInt8(ascii: "(") {
                // body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart]
                var parts: [IMAPBodyStructure] = []
                while parser.peek() == UInt8(ascii: "(") {
                    guard let part = parser.bodyStructure() else { return nil }
                    if parser.buildsFetchValues { parts.append(part) }
                }
                guard parser.space() != nil, let subtype = parser.ownedString() else { return nil }
                var parameters: [IMAPBodyParameter] = []
                var extensionData: IMAPBodyExtension?
                if parser.skip(0x20) {
                    guard let parsed = parser.bodyParameters() else { return nil }
                    parameters = parsed
                    guard let ext = parser.bodyExtension() else { return nil }
                    extensionData = ext
                }
                guard parser.expect(UInt8(ascii: ")"), "Expected )") != nil else { return nil }
                guard parser.buildsFetchValues else { return IMAPBodyStructure.unbuilt }
                return .multipart(parts: parts, subtype: subtype, parameters: parameters, extensionData: extensionData)
            }
            // body-type-1part = (body-type-basic / body-type-msg / body-type-text) [SP body-ext-1part]
            guard let typeText = parser.string(), parser.space() != nil, let subtypeText = parser.string(),
                parser.space() != nil, let parameters = parser.bodyParameters(), parser.space() != nil,
                let id = parser.ownedNString(), parser.space() != nil, let description = parser.ownedNString(),
                parser.space() != nil, let encoding = parser.ownedString(), parser.space() != nil,
                let size = parser.number()
            else { return nil }
            var part = IMAPBodyPart(
                type: parser.owned(typeText), subtype: parser.owned(subtypeText), parameters: parameters, id: id,
                description: description, encoding: encoding, size: size, kind: .basic)
            if typeText.equalsCaseInsensitive("MESSAGE")
                && (subtypeText.equalsCaseInsensitive("RFC822") || subtypeText.equalsCaseInsensitive("GLOBAL"))
            {
                guard parser.space() != nil, let envelope = parser.envelope(), parser.space() != nil,
                    let body = parser.bodyStructure(), parser.space() != nil, let lines = parser.number()
                else { return nil }
                part.kind = .message(envelope: envelope, body: body, lines: lines)
            } else if typeText.equalsCaseInsensitive("TEXT") {
                guard parser.space() != nil, let lines = parser.number() else { return nil }
                part.kind = .text(lines: lines)
            }
            if parser.skip(0x20) {
                guard let md5 = parser.ownedNString(), let ext = parser.bodyExtension() else { return nil }
                part.md5 = md5
                part.extensionData = ext
            }
            guard parser.expect(UInt8(ascii: ")"), "Expected )") != nil else { return nil }
            return parser.buildsFetchValues ? .singlePart(part) : IMAPBodyStructure.unbuilt
        }
    }

    // body-fld-param = "(" string SP string *(SP string SP string) ")" / nil
    private mutating func bodyParameters() -> [IMAPBodyParameter]? {
        if skipKeyword("NIL") { return [] }
        guard expect(UInt8(ascii: "("), "Expected (") != nil else { return nil }
        var list: [IMAPBodyParameter] = []
        var count = 0
        while !skip(UInt8(ascii: ")")) {
            if count > 0 { guard space() != nil else { return nil } }
            guard let name = ownedString(), space() != nil, let value = ownedString() else { return nil }
            count += 1
            if buildsFetchValues { list.append(IMAPBodyParameter(name: name, value: value)) }
        }
        return list
    }

    // [SP body-fld-dsp [SP body-fld-lang [SP body-fld-loc *(SP body-extension)]]]
    /// The shared extension fields; nil fields stay empty. Returns `.some(nil)` when nothing is set.
    private mutating func bodyExtension() -> IMAPBodyExtension?? {
        var ext = IMAPBodyExtension()
        if skip(0x20) {
            if !skipKeyword("NIL") {
                guard expect(UInt8(ascii: "("), "Expected (") != nil, let kind = ownedString(), space() != nil,
                    let parameters = bodyParameters(), expect(UInt8(ascii: ")"), "Expected )") != nil
                else { return nil }
                ext.disposition = IMAPBodyDisposition(kind: kind, parameters: parameters)
            }
            if skip(0x20) {
                if skip(UInt8(ascii: "(")) {
                    var count = 0
                    while !skip(UInt8(ascii: ")")) {
                        if count > 0 { guard space() != nil else { return nil } }
                        guard let language = ownedString() else { return nil }
                        count += 1
                        if buildsFetchValues { ext.languages.append(language) }
                    }
                } else {
                    guard let language = ownedNString() else { return nil }
                    if let language, buildsFetchValues { ext.languages = [language] }
                }
                if skip(0x20) {
                    guard let location = ownedNString() else { return nil }
                    ext.location = location
                    // body-extension values beyond the location are not kept.
                    while skip(0x20) { guard skipBodyExtension() != nil else { return nil } }
                }
            }
        }
        let isEmpty = ext.disposition == nil && ext.languages.isEmpty && ext.location == nil
        return .some(isEmpty ? nil : ext)
    }

    // body-extension = nstring / number64 / "(" body-extension *(SP body-extension) ")"
    private mutating func skipBodyExtension() -> Bool? {
        if skip(UInt8(ascii: "(")) {
            return nested { parser in
                repeat {
                    guard parser.skipBodyExtension() != nil else { return nil }
                } while parser.skip(0x20)
                return parser.expect(UInt8(ascii: ")"), "Expected )")
            }
        }
        if let byte = peek(), IMAPByteClass.isDigit(byte) { return number64().map { _ in true } }
        return nstring().map { _ in true }
    }
}

extension IMAPBodyStructure {
    /// What a parser that only validates returns for any body structure: one shared value, so
    /// validating allocates nothing (an indirect enum case is a heap box).
    static let unbuilt = IMAPBodyStructure.multipart(parts: [], subtype: [], parameters: [], extensionData: nil)
}
