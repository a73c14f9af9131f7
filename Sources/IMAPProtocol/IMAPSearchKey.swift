// IMAPProtocol: SEARCH keys and programs (RFC 9051 section 6.4.4, RFC 3501 section 6.4.4, RFC 7162,
// RFC 4731 / RFC 5182 return options).

/// One search key, as a tree (RFC 9051 "search-key"; RFC 3501's NEW/OLD/RECENT; RFC 7162's MODSEQ).
/// Building a tree allocates only for `NOT`, `OR` and parenthesised lists.
public enum IMAPSearchKey: Equatable {
    case all, answered, deleted, draft, flagged, seen, new, old, recent
    case unanswered, undeleted, undraft, unflagged, unseen
    case bcc(IMAPString), body(IMAPString), cc(IMAPString), from(IMAPString), subject(IMAPString)
    case text(IMAPString), to(IMAPString)
    case header(name: IMAPString, value: IMAPString)
    case keyword(IMAPFlag), unkeyword(IMAPFlag)
    case before(IMAPDate), on(IMAPDate), since(IMAPDate)
    case sentBefore(IMAPDate), sentOn(IMAPDate), sentSince(IMAPDate)
    case larger(UInt64), smaller(UInt64)
    case uid(IMAPSequenceSet)
    case sequenceNumbers(IMAPSequenceSet)
    /// `MODSEQ ["/flags/\Seen" all] 620162338` (RFC 7162 section 3.1.5); the entry is kept as sent.
    case modificationSequence(entry: IMAPString?, entryType: IMAPBytes?, value: UInt64)
    indirect case not(IMAPSearchKey)
    indirect case or(IMAPSearchKey, IMAPSearchKey)
    /// A parenthesised list: every key must match.
    case and([IMAPSearchKey])
}

/// The RETURN options of an extended SEARCH (RFC 4731, RFC 5182, RFC 9051 section 6.4.4).
public struct IMAPSearchReturnOptions: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let min = IMAPSearchReturnOptions(rawValue: 1 << 0)
    public static let max = IMAPSearchReturnOptions(rawValue: 1 << 1)
    public static let all = IMAPSearchReturnOptions(rawValue: 1 << 2)
    public static let count = IMAPSearchReturnOptions(rawValue: 1 << 3)
    public static let save = IMAPSearchReturnOptions(rawValue: 1 << 4)
}

/// A validated search program: an optional CHARSET and one or more keys that must all match. Parsing
/// checks every key (with the nesting limit) and keeps the text; ``keys`` builds each top-level key on
/// demand, so a flat SEARCH is parsed without allocation.
///
/// `C: A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"`
public struct IMAPSearchProgram: Equatable {
    /// `CHARSET x`, when given.
    public let charset: IMAPString?
    /// The validated keys' text.
    public let text: IMAPBytes
    /// How many top-level keys there are.
    public let count: Int

    init(charset: IMAPString?, text: IMAPBytes, count: Int) {
        self.charset = charset
        self.text = text
        self.count = count
    }

    /// Validates `text` as one or more space-separated search keys; nil if invalid.
    public init?(charset: IMAPString? = nil, _ text: IMAPBytes, limits: IMAPLimits = IMAPLimits()) {
        var parser = IMAPParser(text, limits: limits)
        guard let program = parser.searchKeys(charset: charset), parser.isAtEnd else { return nil }
        self = program
    }

    /// The top-level keys, built lazily (they all must match).
    public var keys: IMAPSearchKeySequence { IMAPSearchKeySequence(text: text) }

    public static func == (lhs: IMAPSearchProgram, rhs: IMAPSearchProgram) -> Bool {
        lhs.charset == rhs.charset && lhs.count == rhs.count && lhs.keys.elementsEqual(rhs.keys)
    }
}

/// The top-level keys of a validated search program.
public struct IMAPSearchKeySequence: Sequence, IteratorProtocol {
    var parser: IMAPParser

    init(text: IMAPBytes) {
        // Validation already enforced the caller's limits; re-walking needs no tighter ones.
        parser = IMAPParser(text, limits: IMAPLimits(maxNestingDepth: Int.max))
    }

    public mutating func next() -> IMAPSearchKey? {
        guard !parser.isAtEnd else { return nil }
        let key = parser.searchKey()
        _ = parser.skip(0x20)
        return key
    }
}

extension IMAPParser {
    // search-program = ["CHARSET" SP charset SP] search-key *(SP search-key)
    // (the caller parses the CHARSET; this validates the keys up to the end of the line)
    mutating func searchKeys(charset: IMAPString?) -> IMAPSearchProgram? {
        let start = position
        var count = 0
        // Validate without building trees, so NOT, OR and lists cost nothing; ``IMAPSearchProgram/keys``
        // builds them on demand.
        let wasBuilding = buildsSearchTrees
        buildsSearchTrees = false
        defer { buildsSearchTrees = wasBuilding }
        while true {
            guard searchKey() != nil else { return nil }
            count += 1
            guard peek() == 0x20 else { break }
            position += 1
        }
        return IMAPSearchProgram(charset: charset, text: view(start, position), count: count)
    }

    // charset = atom / quoted
    mutating func charset() -> IMAPString? {
        if peek() == UInt8(ascii: "\"") { return quoted() }
        return atom().map { IMAPString(raw: $0) }
    }

    // search-key = "ALL" / "ANSWERED" / "BCC" SP astring / ... / sequence-set / "(" search-key *(SP search-key) ")"
    mutating func searchKey() -> IMAPSearchKey? {
        guard let first = peek() else { return fail("Expected a search key") }
        if first == UInt8(ascii: "(") {
            return nested { parser in
                parser.position += 1
                var keys: [IMAPSearchKey] = []
                while true {
                    guard let key = parser.searchKey() else { return nil }
                    if parser.buildsSearchTrees { keys.append(key) }
                    if parser.skip(UInt8(ascii: ")")) { return parser.buildsSearchTrees ? .and(keys) : .all }
                    guard parser.space() != nil else { return nil }
                }
            }
        }
        if IMAPByteClass.isDigit(first) || first == UInt8(ascii: "*") || first == UInt8(ascii: "$") {
            return sequenceSet().map { .sequenceNumbers($0) }
        }
        let start = position
        while let byte = peek(), IMAPByteClass.isAtomChar(byte) { position += 1 }
        let name = view(start, position)
        switch name.count {
        case 2:
            if name.equalsCaseInsensitive("OR") {
                return nested { parser in
                    guard parser.space() != nil, let left = parser.searchKey(), parser.space() != nil,
                        let right = parser.searchKey()
                    else { return nil }
                    return parser.buildsSearchTrees ? .or(left, right) : .all
                }
            }
            if name.equalsCaseInsensitive("ON") { return dateArgument(IMAPSearchKey.on) }
            if name.equalsCaseInsensitive("CC") { return stringArgument(IMAPSearchKey.cc) }
            if name.equalsCaseInsensitive("TO") { return stringArgument(IMAPSearchKey.to) }
        case 3:
            if name.equalsCaseInsensitive("ALL") { return .all }
            if name.equalsCaseInsensitive("NEW") { return .new }
            if name.equalsCaseInsensitive("OLD") { return .old }
            if name.equalsCaseInsensitive("BCC") { return stringArgument(IMAPSearchKey.bcc) }
            if name.equalsCaseInsensitive("UID") {
                guard space() != nil, let set = sequenceSet() else { return nil }
                return .uid(set)
            }
            if name.equalsCaseInsensitive("NOT") {
                return nested { parser in
                    guard parser.space() != nil, let key = parser.searchKey() else { return nil }
                    return parser.buildsSearchTrees ? .not(key) : .all
                }
            }
        case 4:
            if name.equalsCaseInsensitive("SEEN") { return .seen }
            if name.equalsCaseInsensitive("BODY") { return stringArgument(IMAPSearchKey.body) }
            if name.equalsCaseInsensitive("FROM") { return stringArgument(IMAPSearchKey.from) }
            if name.equalsCaseInsensitive("TEXT") { return stringArgument(IMAPSearchKey.text) }
        case 5:
            if name.equalsCaseInsensitive("DRAFT") { return .draft }
            if name.equalsCaseInsensitive("SINCE") { return dateArgument(IMAPSearchKey.since) }
        case 6:
            if name.equalsCaseInsensitive("UNSEEN") { return .unseen }
            if name.equalsCaseInsensitive("RECENT") { return .recent }
            if name.equalsCaseInsensitive("BEFORE") { return dateArgument(IMAPSearchKey.before) }
            if name.equalsCaseInsensitive("HEADER") {
                guard space() != nil, let field = astring(), space() != nil, let value = astring() else { return nil }
                return .header(name: field, value: value)
            }
            if name.equalsCaseInsensitive("LARGER") { return numberArgument(IMAPSearchKey.larger) }
            if name.equalsCaseInsensitive("MODSEQ") { return modSequenceKey() }
            if name.equalsCaseInsensitive("SENTON") { return dateArgument(IMAPSearchKey.sentOn) }
        case 7:
            if name.equalsCaseInsensitive("DELETED") { return .deleted }
            if name.equalsCaseInsensitive("FLAGGED") { return .flagged }
            if name.equalsCaseInsensitive("UNDRAFT") { return .undraft }
            if name.equalsCaseInsensitive("SUBJECT") { return stringArgument(IMAPSearchKey.subject) }
            if name.equalsCaseInsensitive("KEYWORD") { return keywordArgument(IMAPSearchKey.keyword) }
            if name.equalsCaseInsensitive("SMALLER") { return numberArgument(IMAPSearchKey.smaller) }
        case 8:
            if name.equalsCaseInsensitive("ANSWERED") { return .answered }
        case 9:
            if name.equalsCaseInsensitive("UNDELETED") { return .undeleted }
            if name.equalsCaseInsensitive("UNFLAGGED") { return .unflagged }
            if name.equalsCaseInsensitive("UNKEYWORD") { return keywordArgument(IMAPSearchKey.unkeyword) }
            if name.equalsCaseInsensitive("SENTSINCE") { return dateArgument(IMAPSearchKey.sentSince) }
        case 10:
            if name.equalsCaseInsensitive("UNANSWERED") { return .unanswered }
            if name.equalsCaseInsensitive("SENTBEFORE") { return dateArgument(IMAPSearchKey.sentBefore) }
        default:
            break
        }
        return fail("Unknown search key")
    }

    private mutating func stringArgument(_ make: (IMAPString) -> IMAPSearchKey) -> IMAPSearchKey? {
        guard space() != nil, let value = astring() else { return nil }
        return make(value)
    }

    private mutating func dateArgument(_ make: (IMAPDate) -> IMAPSearchKey) -> IMAPSearchKey? {
        guard space() != nil, let value = date() else { return nil }
        return make(value)
    }

    private mutating func numberArgument(_ make: (UInt64) -> IMAPSearchKey) -> IMAPSearchKey? {
        guard space() != nil, let value = number64() else { return nil }
        return make(value)
    }

    // flag-keyword = atom (a system flag is not a keyword)
    private mutating func keywordArgument(_ make: (IMAPFlag) -> IMAPSearchKey) -> IMAPSearchKey? {
        guard space() != nil, let value = atom() else { return nil }
        return make(IMAPFlag(value))
    }

    // search-modsequence = "MODSEQ" [search-modseq-ext] SP mod-sequence-valzer
    // search-modseq-ext = SP entry-name SP entry-type-req;  entry-name = entry-flag-name (a quoted string)
    // entry-type-req = entry-type-resp / "all";  entry-type-resp = "priv" / "shared"
    private mutating func modSequenceKey() -> IMAPSearchKey? {
        guard space() != nil else { return nil }
        var entry: IMAPString?
        var entryType: IMAPBytes?
        if peek() == UInt8(ascii: "\"") {
            guard let name = quoted(), space() != nil, let type = atom() else { return nil }
            guard
                type.equalsCaseInsensitive("PRIV") || type.equalsCaseInsensitive("SHARED")
                    || type.equalsCaseInsensitive("ALL")
            else { return fail("Invalid MODSEQ entry type") }
            guard space() != nil else { return nil }
            entry = name
            entryType = type
        }
        guard let value = modSequence() else { return nil }
        return .modificationSequence(entry: entry, entryType: entryType, value: value)
    }

    // search-return-opts = SP "RETURN" SP "(" [search-return-opt *(SP search-return-opt)] ")"
    // search-return-opt = "MIN" / "MAX" / "ALL" / "COUNT" / "SAVE"
    mutating func searchReturnOptions() -> IMAPSearchReturnOptions? {
        var options: IMAPSearchReturnOptions = []
        guard
            parenthesizedList(
                allowEmpty: true,
                { parser in
                    if parser.skipKeyword("MIN") {
                        options.insert(.min)
                    } else if parser.skipKeyword("MAX") {
                        options.insert(.max)
                    } else if parser.skipKeyword("ALL") {
                        options.insert(.all)
                    } else if parser.skipKeyword("COUNT") {
                        options.insert(.count)
                    } else if parser.skipKeyword("SAVE") {
                        options.insert(.save)
                    } else {
                        return parser.fail("Unknown SEARCH return option")
                    }
                    return true
                }) != nil
        else { return nil }
        return options
    }
}
