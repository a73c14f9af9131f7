// IMAPProtocol: FETCH attributes (RFC 9051 section 6.4.5, RFC 3501 section 6.4.5, RFC 3516, RFC 7162).

/// The simple FETCH attributes as a bit set, so the common FETCH needs no list at all.
public struct IMAPFetchAttributeSet: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let envelope = IMAPFetchAttributeSet(rawValue: 1 << 0)
    public static let flags = IMAPFetchAttributeSet(rawValue: 1 << 1)
    public static let internalDate = IMAPFetchAttributeSet(rawValue: 1 << 2)
    public static let rfc822Size = IMAPFetchAttributeSet(rawValue: 1 << 3)
    /// `BODY` without a section: the non-extensible BODYSTRUCTURE.
    public static let body = IMAPFetchAttributeSet(rawValue: 1 << 4)
    public static let bodyStructure = IMAPFetchAttributeSet(rawValue: 1 << 5)
    public static let uid = IMAPFetchAttributeSet(rawValue: 1 << 6)
    /// `MODSEQ` (RFC 7162).
    public static let modificationSequence = IMAPFetchAttributeSet(rawValue: 1 << 7)
    public static let rfc822 = IMAPFetchAttributeSet(rawValue: 1 << 8)
    public static let rfc822Header = IMAPFetchAttributeSet(rawValue: 1 << 9)
    public static let rfc822Text = IMAPFetchAttributeSet(rawValue: 1 << 10)
    /// At least one `BODY[...]`, `BINARY[...]` or `BINARY.SIZE[...]` is in the list: iterate it.
    public static let sections = IMAPFetchAttributeSet(rawValue: 1 << 11)
}

/// A section part: `1.2.3` (RFC 9051 "section-part"), walked lazily; empty for the whole message.
public struct IMAPSectionPart: Equatable, Sequence {
    /// The dotted numbers as sent.
    public let text: IMAPBytes

    public init(_ text: IMAPBytes) { self.text = text }
    /// The whole message.
    public static var whole: IMAPSectionPart { IMAPSectionPart(.empty) }

    public func makeIterator() -> Iterator { Iterator(text: text) }

    /// Walks the numbers of a validated part.
    public struct Iterator: IteratorProtocol {
        let text: IMAPBytes
        var offset = 0

        public mutating func next() -> UInt32? {
            guard offset < text.count else { return nil }
            var value: UInt32 = 0
            while offset < text.count, text[offset] != UInt8(ascii: ".") {
                // Validation has already checked each number fits.
                value = value &* 10 &+ UInt32(text[offset] &- 0x30)
                offset += 1
            }
            offset += 1
            return value
        }
    }
}

/// A list of header field names: `(From To Subject)` (RFC 9051 "header-list"), walked lazily.
public struct IMAPHeaderList: Equatable, Sequence {
    /// The text between the parentheses.
    public let text: IMAPBytes
    public let count: Int

    public func makeIterator() -> IMAPElementIterator<IMAPString> { IMAPElementIterator(text) { $0.astring() } }

    /// Header names compare case-insensitively.
    public static func == (lhs: IMAPHeaderList, rhs: IMAPHeaderList) -> Bool {
        lhs.count == rhs.count
            && lhs.elementsEqual(rhs) { left, right in
                left.copyBytes().withUnsafeBytes { leftBytes in
                    right.copyBytes().withUnsafeBytes { IMAPBytes(leftBytes).equalsCaseInsensitive(IMAPBytes($0)) }
                }
            }
    }
}

/// What part of a message a `BODY[...]` section names (RFC 9051 "section-spec").
public enum IMAPSectionText: Equatable {
    case header
    case headerFields(IMAPHeaderList)
    case headerFieldsNot(IMAPHeaderList)
    case text
    /// `MIME`: the MIME header of a body part (only after a part number).
    case mime
}

/// A `BODY[section]` section: a part and what of it.
public struct IMAPSection: Equatable {
    public var part: IMAPSectionPart
    public var text: IMAPSectionText?

    public init(part: IMAPSectionPart = .whole, text: IMAPSectionText? = nil) {
        self.part = part
        self.text = text
    }
}

/// `<offset.length>` of a partial fetch.
public struct IMAPPartial: Equatable, Sendable {
    public var offset: UInt64
    public var length: UInt64

    public init(offset: UInt64, length: UInt64) {
        self.offset = offset
        self.length = length
    }
}

/// One FETCH attribute (RFC 9051 "fetch-att", plus RFC 3501's RFC822 forms and RFC 7162's MODSEQ).
public enum IMAPFetchAttribute: Equatable {
    case envelope, flags, internalDate, rfc822Size, body, bodyStructure, uid, modificationSequence
    case rfc822, rfc822Header, rfc822Text
    /// `BODY[section]<partial>` or `BODY.PEEK[...]`.
    case bodySection(IMAPSection, partial: IMAPPartial?, peek: Bool)
    /// `BINARY[part]<partial>` or `BINARY.PEEK[...]` (RFC 3516).
    case binary(IMAPSectionPart, partial: IMAPPartial?, peek: Bool)
    /// `BINARY.SIZE[part]` (RFC 3516).
    case binarySize(IMAPSectionPart)

    /// The bit of a simple attribute; `.sections` for the others.
    var setMember: IMAPFetchAttributeSet {
        switch self {
        case .envelope: return .envelope
        case .flags: return .flags
        case .internalDate: return .internalDate
        case .rfc822Size: return .rfc822Size
        case .body: return .body
        case .bodyStructure: return .bodyStructure
        case .uid: return .uid
        case .modificationSequence: return .modificationSequence
        case .rfc822: return .rfc822
        case .rfc822Header: return .rfc822Header
        case .rfc822Text: return .rfc822Text
        case .bodySection, .binary, .binarySize: return .sections
        }
    }
}

/// The attributes of a FETCH: a bit set of the simple ones, and the validated text for lazy iteration
/// over all of them (macros expanded). Parsing allocates nothing.
///
/// `C: A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])`
public struct IMAPFetchAttributeList: Equatable, Sequence {
    /// The macros of RFC 9051 section 6.4.5.
    public enum Macro: Sendable {
        /// `(FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)`
        case all
        /// `(FLAGS INTERNALDATE RFC822.SIZE)`
        case fast
        /// `(FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY)`
        case full

        var attributes: IMAPFetchAttributeSet {
            switch self {
            case .fast: return [.flags, .internalDate, .rfc822Size]
            case .all: return [.flags, .internalDate, .rfc822Size, .envelope]
            case .full: return [.flags, .internalDate, .rfc822Size, .envelope, .body]
            }
        }
    }

    /// The simple attributes asked for (and `.sections` when there is more to iterate).
    public let simple: IMAPFetchAttributeSet
    /// The macro, when one was used.
    public let macro: Macro?
    /// The attribute text (a single attribute or the inside of the list); empty for a macro.
    public let text: IMAPBytes

    init(simple: IMAPFetchAttributeSet, macro: Macro?, text: IMAPBytes) {
        self.simple = simple
        self.macro = macro
        self.text = text
    }

    /// A list of a macro.
    public init(macro: Macro) { self.init(simple: macro.attributes, macro: macro, text: .empty) }

    /// Validates `text` as space-separated attributes (without parentheses); nil if invalid.
    public init?(_ text: IMAPBytes) {
        var parser = IMAPParser(text, limits: IMAPLimits())
        var simple: IMAPFetchAttributeSet = []
        while true {
            guard let attribute = parser.fetchAttribute() else { return nil }
            simple.insert(attribute.setMember)
            if parser.isAtEnd { break }
            guard parser.space() != nil else { return nil }
        }
        self.init(simple: simple, macro: nil, text: text)
    }

    public func makeIterator() -> Iterator { Iterator(macro: macro, text: text) }

    /// Walks the attributes: a macro's expansion, or the validated text.
    public struct Iterator: IteratorProtocol {
        let macro: Macro?
        var expanded = 0
        var elements: IMAPElementIterator<IMAPFetchAttribute>

        init(macro: Macro?, text: IMAPBytes) {
            self.macro = macro
            elements = IMAPElementIterator(text) { $0.fetchAttribute() }
        }

        public mutating func next() -> IMAPFetchAttribute? {
            guard let macro else { return elements.next() }
            // RFC 9051 6.4.5: FAST, then ALL adds ENVELOPE, then FULL adds BODY.
            defer { expanded += 1 }
            switch (expanded, macro) {
            case (0, _): return .flags
            case (1, _): return .internalDate
            case (2, _): return .rfc822Size
            case (3, .all), (3, .full): return .envelope
            case (4, .full): return .body
            default: return nil
            }
        }
    }

    public static func == (lhs: IMAPFetchAttributeList, rhs: IMAPFetchAttributeList) -> Bool {
        lhs.simple == rhs.simple && lhs.elementsEqual(rhs)
    }
}

/// FETCH modifiers (RFC 7162 section 3.1.4 and 3.2.6).
public struct IMAPFetchModifiers: Equatable, Sendable {
    /// `CHANGEDSINCE n`
    public var changedSince: UInt64?
    /// `VANISHED` (UID FETCH only, with CHANGEDSINCE).
    public var vanished: Bool

    public init(changedSince: UInt64? = nil, vanished: Bool = false) {
        self.changedSince = changedSince
        self.vanished = vanished
    }

    public var isEmpty: Bool { changedSince == nil && !vanished }
}

extension IMAPParser {
    // fetch-att = "ENVELOPE" / "FLAGS" / "INTERNALDATE" / "RFC822" [".HEADER" / ".SIZE" / ".TEXT"] /
    //             "BODY" ["STRUCTURE"] / "UID" / "BODY" section [partial] / "BODY.PEEK" section [partial] /
    //             "BINARY" [".PEEK"] section-binary [partial] / "BINARY.SIZE" section-binary / "MODSEQ"
    mutating func fetchAttribute() -> IMAPFetchAttribute? {
        let start = position
        while let byte = peek(), IMAPByteClass.isAtomChar(byte), byte != UInt8(ascii: "[") { position += 1 }
        let name = view(start, position)
        switch name.count {
        case 3 where name.equalsCaseInsensitive("UID"): return .uid
        case 4 where name.equalsCaseInsensitive("BODY"):
            if peek() == UInt8(ascii: "[") { return bodySection(peek: false) }
            return .body
        case 5 where name.equalsCaseInsensitive("FLAGS"): return .flags
        case 6 where name.equalsCaseInsensitive("RFC822"): return .rfc822
        case 6 where name.equalsCaseInsensitive("MODSEQ"): return .modificationSequence
        case 6 where name.equalsCaseInsensitive("BINARY"): return binarySection(peek: false)
        case 8 where name.equalsCaseInsensitive("ENVELOPE"): return .envelope
        case 9 where name.equalsCaseInsensitive("BODY.PEEK"): return bodySection(peek: true)
        case 11 where name.equalsCaseInsensitive("RFC822.SIZE"): return .rfc822Size
        case 11 where name.equalsCaseInsensitive("RFC822.TEXT"): return .rfc822Text
        case 11 where name.equalsCaseInsensitive("BINARY.PEEK"): return binarySection(peek: true)
        case 11 where name.equalsCaseInsensitive("BINARY.SIZE"):
            guard let part = binaryPart() else { return nil }
            return .binarySize(part)
        case 12 where name.equalsCaseInsensitive("INTERNALDATE"): return .internalDate
        case 13 where name.equalsCaseInsensitive("BODYSTRUCTURE"): return .bodyStructure
        case 13 where name.equalsCaseInsensitive("RFC822.HEADER"): return .rfc822Header
        default: return fail("Unknown FETCH attribute")
        }
    }

    // "BODY" section [partial];  section = "[" [section-spec] "]"
    // section-spec = section-msgtext / (section-part ["." section-text])
    mutating func bodySection(peek isPeek: Bool) -> IMAPFetchAttribute? {
        guard expect(UInt8(ascii: "["), "Expected [") != nil else { return nil }
        var section = IMAPSection()
        if !skip(UInt8(ascii: "]")) {
            if let byte = peek(), IMAPByteClass.isDigit(byte) {
                guard let part = sectionPart() else { return nil }
                section.part = part
                if skip(UInt8(ascii: ".")) {
                    guard let text = sectionText(allowMIME: true) else { return nil }
                    section.text = text
                }
            } else {
                guard let text = sectionText(allowMIME: false) else { return nil }
                section.text = text
            }
            guard expect(UInt8(ascii: "]"), "Expected ]") != nil else { return nil }
        }
        guard let partial = optionalPartial() else { return nil }
        return .bodySection(section, partial: partial, peek: isPeek)
    }

    // "BINARY" [".PEEK"] section-binary [partial]
    mutating func binarySection(peek isPeek: Bool) -> IMAPFetchAttribute? {
        guard let part = binaryPart(), let partial = optionalPartial() else { return nil }
        return .binary(part, partial: partial, peek: isPeek)
    }

    // section-binary = "[" [section-part] "]"
    mutating func binaryPart() -> IMAPSectionPart? {
        guard expect(UInt8(ascii: "["), "Expected [") != nil else { return nil }
        if skip(UInt8(ascii: "]")) { return .whole }
        guard let part = sectionPart(), expect(UInt8(ascii: "]"), "Expected ]") != nil else { return nil }
        return part
    }

    // section-part = nz-number *("." nz-number)
    mutating func sectionPart() -> IMAPSectionPart? {
        let start = position
        while true {
            guard nzNumber() != nil else { return nil }
            guard peek() == UInt8(ascii: "."), let next = peek(at: 1), IMAPByteClass.isDigit(next) else { break }
            position += 1
        }
        return IMAPSectionPart(view(start, position))
    }

    // section-msgtext = "HEADER" / "HEADER.FIELDS" [".NOT"] SP header-list / "TEXT"
    // section-text = section-msgtext / "MIME"
    mutating func sectionText(allowMIME: Bool) -> IMAPSectionText? {
        if skipKeyword("HEADER") { return .header }
        if skipKeyword("TEXT") { return .text }
        if allowMIME && skipKeyword("MIME") { return .mime }
        let isNot: Bool
        if skipKeyword("HEADER.FIELDS.NOT") {
            isNot = true
        } else if skipKeyword("HEADER.FIELDS") {
            isNot = false
        } else {
            return fail("Invalid section")
        }
        guard space() != nil, let list = headerList() else { return nil }
        return isNot ? .headerFieldsNot(list) : .headerFields(list)
    }

    // header-list = "(" header-fld-name *(SP header-fld-name) ")";  header-fld-name = astring
    mutating func headerList() -> IMAPHeaderList? {
        guard let list = parenthesizedList(allowEmpty: false, { $0.astring().map { _ in true } }) else { return nil }
        return IMAPHeaderList(text: list.text, count: list.count)
    }

    // partial = "<" number64 "." nz-number64 ">"
    /// `.some(nil)` when there is no partial.
    mutating func optionalPartial() -> IMAPPartial?? {
        guard skip(UInt8(ascii: "<")) else { return .some(nil) }
        guard let offset = number64(), skip(UInt8(ascii: ".")), let length = number64(), length > 0,
            skip(UInt8(ascii: ">"))
        else { return fail("Invalid partial") }
        return .some(IMAPPartial(offset: offset, length: length))
    }

    // fetch-att list: "ALL" / "FULL" / "FAST" / fetch-att / "(" fetch-att *(SP fetch-att) ")"
    mutating func fetchAttributeList() -> IMAPFetchAttributeList? {
        if skipKeyword("ALL") { return IMAPFetchAttributeList(macro: .all) }
        if skipKeyword("FAST") { return IMAPFetchAttributeList(macro: .fast) }
        if skipKeyword("FULL") { return IMAPFetchAttributeList(macro: .full) }
        var simple: IMAPFetchAttributeSet = []
        if peek() != UInt8(ascii: "(") {
            let start = position
            guard let attribute = fetchAttribute() else { return nil }
            return IMAPFetchAttributeList(simple: attribute.setMember, macro: nil, text: view(start, position))
        }
        guard
            let list = parenthesizedList(
                allowEmpty: false,
                { parser in
                    guard let attribute = parser.fetchAttribute() else { return nil }
                    simple.insert(attribute.setMember)
                    return true
                })
        else { return nil }
        return IMAPFetchAttributeList(simple: simple, macro: nil, text: list.text)
    }

    // fetch-modifiers = SP "(" fetch-modifier *(SP fetch-modifier) ")"
    // fetch-modifier = "CHANGEDSINCE" SP mod-sequence-valzer / "VANISHED"
    mutating func fetchModifiers() -> IMAPFetchModifiers? {
        var modifiers = IMAPFetchModifiers()
        guard
            parenthesizedList(
                allowEmpty: false,
                { parser in
                    if parser.skipKeyword("CHANGEDSINCE") {
                        guard parser.space() != nil, let value = parser.modSequence() else { return nil }
                        modifiers.changedSince = value
                        return true
                    }
                    if parser.skipKeyword("VANISHED") {
                        modifiers.vanished = true
                        return true
                    }
                    return parser.fail("Unknown FETCH modifier")
                }) != nil
        else { return nil }
        return modifiers
    }
}
