// IMAPProtocol: IMAPParser, the cursor the typed parsers walk a complete frame with.

/// Why a command was rejected: the text for `tag BAD`.
public typealias IMAPParseFailure = StaticString

/// The result of parsing one complete frame.
public enum IMAPParseResult<Value> {
    /// The frame held a valid `Value`.
    case success(Value)
    /// The frame is not valid. `tag` is the command's tag when it had one (a view into the frame):
    /// answer `tag BAD reason` (or `* BAD reason` without a tag).
    case failure(tag: IMAPBytes?, reason: IMAPParseFailure)
}

/// A cursor over one complete frame. Every parse function returns `nil` on failure after recording
/// the first reason in `failure`; nothing throws, nothing allocates unless a caller builds a tree.
struct IMAPParser {
    let base: UnsafeRawPointer
    let end: Int
    var position: Int
    var failure: IMAPParseFailure?
    /// The limits this parser enforces, copied out of `IMAPLimits` (the rest concern the framer).
    let maxNestingDepth: Int
    let maxTagLength: Int
    let maxSequenceSetRanges: Int
    /// Current nesting of parentheses (bounded by `limits.maxNestingDepth`).
    var depth = 0
    /// Whether search keys build their trees (NOT/OR/lists) or are only validated (no allocation).
    var buildsSearchTrees = true
    /// Whether FETCH values (flags, envelopes, body structures, section names, body data) are copied
    /// out into owned values, or only validated: a reader of views (``IMAPFetchItemView``) takes them
    /// from the frame, and the placeholders returned instead allocate nothing.
    var buildsFetchValues = true

    init(_ frame: UnsafeRawBufferPointer, limits: IMAPLimits) {
        // An empty frame never reaches a parser from the framer; a dummy base keeps loads well defined.
        base = frame.baseAddress ?? UnsafeRawPointer(bitPattern: 1).unsafelyUnwrapped
        end = frame.count
        position = 0
        maxNestingDepth = limits.maxNestingDepth
        maxTagLength = limits.maxTagLength
        maxSequenceSetRanges = limits.maxSequenceSetRanges
    }

    init(_ bytes: IMAPBytes, limits: IMAPLimits) { self.init(bytes.buffer, limits: limits) }

    // MARK: - Basics

    @inline(__always)
    var isAtEnd: Bool { position >= end }

    @inline(__always)
    func peek() -> UInt8? { position < end ? base.load(fromByteOffset: position, as: UInt8.self) : nil }

    @inline(__always)
    func peek(at offset: Int) -> UInt8? {
        position + offset < end ? base.load(fromByteOffset: position + offset, as: UInt8.self) : nil
    }

    @inline(__always)
    func byte(at offset: Int) -> UInt8 { base.load(fromByteOffset: offset, as: UInt8.self) }

    func view(_ start: Int, _ stop: Int) -> IMAPBytes { IMAPBytes(base: base + start, count: stop - start) }

    /// Records `reason` (the first one wins: it is closest to where things went wrong) and returns nil.
    mutating func fail<T>(_ reason: IMAPParseFailure) -> T? {
        if failure == nil { failure = reason }
        return nil
    }

    /// Consumes `byte` if it is next.
    @inline(__always)
    mutating func skip(_ byte: UInt8) -> Bool {
        if peek() == byte {
            position += 1
            return true
        }
        return false
    }

    mutating func expect(_ byte: UInt8, _ reason: IMAPParseFailure) -> Bool? {
        skip(byte) ? true : fail(reason)
    }

    // SP = %x20
    mutating func space() -> Bool? { expect(0x20, "Expected a space") }

    // CRLF = CR LF  (the frame must end right after it)
    mutating func endOfLine() -> Bool? {
        guard peek() == 0x0D, peek(at: 1) == 0x0A else {
            if peek() == 0x0A { return fail("Line must end with CRLF") }
            if peek() == 0x0D { return fail("Bare CR in command") }
            if peek() == 0 { return fail("NUL in command") }
            return fail("Unexpected characters at end of command")
        }
        position += 2
        return position == end ? true : fail("Unexpected bytes after end of command")
    }

    /// Consumes `keyword` (upper case) ignoring case, when it is next and not followed by an atom char.
    mutating func skipKeyword(_ keyword: StaticString) -> Bool {
        let length = keyword.utf8CodeUnitCount
        guard position + length <= end, view(position, position + length).equalsCaseInsensitive(keyword) else {
            return false
        }
        if let next = peek(at: length), IMAPByteClass.isAtomChar(next) { return false }
        position += length
        return true
    }

    /// Runs `body` one level deeper, refusing past the nesting limit.
    mutating func nested<T>(_ body: (inout IMAPParser) -> T?) -> T? {
        guard depth < maxNestingDepth else { return fail("Too deeply nested") }
        depth += 1
        defer { depth -= 1 }
        return body(&self)
    }

    // MARK: - Tokens

    // atom = 1*ATOM-CHAR
    mutating func atom() -> IMAPBytes? { run(IMAPByteClass.isAtomChar, "Expected an atom") }

    /// A run of one or more bytes of a class.
    mutating func run(_ isMember: (UInt8) -> Bool, _ reason: IMAPParseFailure) -> IMAPBytes? {
        let start = position
        while position < end, isMember(byte(at: position)) { position += 1 }
        guard position > start else { return fail(reason) }
        return view(start, position)
    }

    // tag = 1*<any ASTRING-CHAR except "+">
    mutating func tag() -> IMAPBytes? {
        guard let tag = run(IMAPByteClass.isTagChar, "Missing or invalid tag") else { return nil }
        return tag.count <= maxTagLength ? tag : fail("Tag too long")
    }

    // number = 1*DIGIT  (32-bit unsigned)
    mutating func number() -> UInt32? {
        guard let value = number64(), value <= UInt64(UInt32.max) else { return fail("Number out of range") }
        return UInt32(value)
    }

    // nz-number = digit-nz *DIGIT
    mutating func nzNumber() -> UInt32? {
        guard let value = number() else { return nil }
        return value > 0 ? value : fail("Number must not be zero")
    }

    // number64 = 1*DIGIT  (63-bit unsigned, RFC 9051)
    mutating func number64() -> UInt64? {
        let start = position
        var value: UInt64 = 0
        while let byte = peek(), IMAPByteClass.isDigit(byte) {
            let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(UInt64(byte - 0x30))
            guard !overflow1, !overflow2 else { return fail("Number out of range") }
            value = sum
            position += 1
        }
        guard position > start else { return fail("Expected a number") }
        return value
    }

    // mod-sequence-value = 1*DIGIT  (1 <= n <= 9,223,372,036,854,775,807; RFC 7162)
    mutating func modSequence() -> UInt64? {
        guard let value = number64() else { return nil }
        return value <= UInt64(Int64.max) ? value : fail("Mod-sequence out of range")
    }

    // quoted = DQUOTE *QUOTED-CHAR DQUOTE
    mutating func quoted() -> IMAPString? {
        guard skip(UInt8(ascii: "\"")) else { return fail("Expected a quoted string") }
        let start = position
        var hasEscapes = false
        while position < end {
            let byte = byte(at: position)
            if byte == UInt8(ascii: "\"") {
                let value = IMAPString(raw: view(start, position), hasEscapes: hasEscapes)
                position += 1
                return value
            }
            if byte == UInt8(ascii: "\\") {
                guard let next = peek(at: 1), IMAPByteClass.isQuotedSpecial(next) else {
                    return fail("Invalid escape in quoted string")
                }
                hasEscapes = true
                position += 2
                continue
            }
            guard IMAPByteClass.isQuotedChar(byte) else {
                return fail(byte == 0 ? "NUL in quoted string" : "Invalid character in quoted string")
            }
            position += 1
        }
        return fail("Unterminated quoted string")
    }

    // literal = "{" number64 ["+"] "}" CRLF *CHAR8;  literal8 = "~{" number64 ["+"] "}" CRLF *OCTET
    /// A literal inside a complete frame (the framer has checked its size against the limits).
    mutating func literal(allowBinary: Bool = false) -> IMAPBytes? {
        let isBinary = skip(UInt8(ascii: "~"))
        if isBinary && !allowBinary { return fail("literal8 not allowed here") }
        guard skip(UInt8(ascii: "{")), let size = number64() else { return fail("Expected a literal") }
        _ = skip(UInt8(ascii: "+"))
        guard skip(UInt8(ascii: "}")), skip(0x0D), skip(0x0A) else { return fail("Malformed literal") }
        guard size <= UInt64(end - position) else { return fail("Literal longer than the command") }
        let start = position
        position += Int(size)
        if !isBinary && containsNUL(base + start, position - start) { return fail("NUL in literal") }
        return view(start, position)
    }

    // string = quoted / literal
    mutating func string() -> IMAPString? {
        switch peek() {
        case UInt8(ascii: "\""): return quoted()
        case UInt8(ascii: "{"): return literal().map { IMAPString(raw: $0) }
        default: return fail("Expected a string")
        }
    }

    // astring = 1*ASTRING-CHAR / string
    mutating func astring() -> IMAPString? {
        switch peek() {
        case UInt8(ascii: "\""), UInt8(ascii: "{"): return string()
        default: return run(IMAPByteClass.isAStringChar, "Expected an astring").map { IMAPString(raw: $0) }
        }
    }

    // nstring = string / nil
    mutating func nstring() -> IMAPString?? {
        if skipKeyword("NIL") { return .some(nil) }
        guard let value = string() else { return nil }
        return .some(value)
    }

    // list-mailbox = 1*list-char / string
    mutating func listMailbox() -> IMAPString? {
        switch peek() {
        case UInt8(ascii: "\""), UInt8(ascii: "{"): return string()
        default: return run(IMAPByteClass.isListChar, "Expected a mailbox pattern").map { IMAPString(raw: $0) }
        }
    }

    // mailbox = "INBOX" / astring
    mutating func mailbox() -> IMAPMailboxName? { astring().map(IMAPMailboxName.init) }

    /// Parses `"(" element *(SP element) ")"` (or an empty list when `allowEmpty`), returning the view
    /// between the parentheses; elements are validated by `element` and not kept (zero allocation).
    mutating func parenthesizedList(
        allowEmpty: Bool, _ element: (inout IMAPParser) -> Bool?
    ) -> (text: IMAPBytes, count: Int)? {
        guard skip(UInt8(ascii: "(")) else { return fail("Expected (") }
        return nested { parser in
            let start = parser.position
            var count = 0
            if parser.skip(UInt8(ascii: ")")) {
                return allowEmpty ? (parser.view(start, start), 0) : parser.fail("Empty list")
            }
            while true {
                guard element(&parser) != nil else { return nil }
                count += 1
                if parser.peek() == UInt8(ascii: ")") {
                    let text = parser.view(start, parser.position)
                    parser.position += 1
                    return (text, count)
                }
                guard parser.space() != nil else { return nil }
            }
        }
    }
}
