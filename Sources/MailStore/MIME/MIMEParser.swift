// MIMEParser: one pass over a whole message in memory, building its MessageStructure (RFC 5322,
// RFC 2045-2046, RFC 2231; ENVELOPE and BODYSTRUCTURE as RFC 3501 section 7.4.2 describes them).

extension MessageStructure {
    /// Parses a whole message.
    ///
    /// Never fails: broken mail (no closing boundary, a boundary never seen, bare LF line ends,
    /// 8-bit headers, no header, no body, absurd nesting) gives a best-effort structure. The parse
    /// is iterative, so nesting depth costs heap, not stack; depth and part count are capped by
    /// ``MIMELimits``.
    ///
    /// - Parameter message: the message bytes, e.g. an mmap of its file. Offsets in the result are
    ///   positions in this buffer.
    public init(parsing message: UnsafeRawBufferPointer) {
        var parser = MIMEParser(message: message)
        parser.run()
        self = parser.structure
    }

    /// Parses a whole message held in an array.
    public init(parsing message: [UInt8]) {
        self = message.withUnsafeBytes { MessageStructure(parsing: $0) }
    }
}

/// The parser's state: a cursor over lines and a stack of the parts still open around it.
struct MIMEParser {
    /// A part whose end has not been found yet.
    private struct OpenPart {
        var index: Int
        var inHeader: Bool
        /// Whether its header is the header of a message (the top or inside message/rfc822).
        var isMessageRoot: Bool
        /// For a message root, the envelope its header fills.
        var envelope: Int
        /// Whether a missing Content-Type means message/rfc822 (children of multipart/digest).
        var defaultsToMessage: Bool
        /// The boundary (in the pool) once a multipart's header is read.
        var boundary: MIMEText?
        /// Set by the close delimiter: later lines are epilogue and the boundary is retired.
        var closed = false
        /// Line feeds, and bare ones (no CR before), before the body start.
        var bodyStartLine = 0
        var bodyStartBare = 0
    }

    let base: UnsafeRawBufferPointer
    var structure: MessageStructure
    private var open: [OpenPart] = []
    /// Number of open multiparts still waiting for a boundary (skips the boundary check when 0).
    private var activeBoundaries = 0
    private var position = 0
    /// Line feeds before `position`.
    private var lineNumber = 0
    /// Line feeds without a CR before them, before `position`.
    private var bareLineFeeds = 0
    /// Reused between fields so reading parameters does not allocate per field.
    var scratchParameters: [RawParameter] = []
    var scratchBytes: [UInt8] = []
    var scratchWords: [(range: Range<Int>, isQuoted: Bool)] = []

    init(message: UnsafeRawBufferPointer) {
        base = message
        structure = MessageStructure(messageSize: message.count)
        // Room for a typical message, so the arrays do not grow step by step (allocations).
        structure.pool.reserveCapacity(512)
        structure.parts.reserveCapacity(8)
        structure.addresses.reserveCapacity(8)
        structure.parameters.reserveCapacity(8)
        open.reserveCapacity(8)
    }

    // MARK: - Line loop

    mutating func run() {
        structure.envelopes.append(MIMEEnvelope())
        openPart(at: 0, parent: -1, depth: 0, isMessageRoot: true, defaultsToMessage: false)
        let count = base.count
        while position < count {
            let lineStart = position
            let lineEnd = MIMEBytes.lineFeed(in: base, from: lineStart, to: count)
            let next = lineEnd < count ? lineEnd + 1 : count
            var contentEnd = lineEnd
            if contentEnd > lineStart && base[contentEnd - 1] == MIMEBytes.cr { contentEnd -= 1 }
            let bareLineFeed = lineEnd < count && contentEnd == lineEnd ? 1 : 0

            var endsHeader = false
            if activeBoundaries > 0, contentEnd - lineStart >= 2, base[lineStart] == UInt8(ascii: "-"),
                base[lineStart + 1] == UInt8(ascii: "-"),
                let (level, isClose) = matchBoundary(lineStart + 2, contentEnd),
                isClose || structure.parts.count < MIMELimits.maximumPartCount
            {
                handleBoundary(level: level, isClose: isClose, lineStart: lineStart, next: next)
            } else {
                endsHeader = open[open.count - 1].inHeader && contentEnd == lineStart
            }
            lineNumber += lineEnd < count ? 1 : 0
            bareLineFeeds += bareLineFeed
            position = next
            if endsHeader { endHeader(bodyStart: next) }
        }
        while !open.isEmpty {
            closeInnermost(bodyEnd: count, lineFeedsBeforeEnd: lineNumber, bareBeforeEnd: bareLineFeeds)
        }
        structure.messageBareLineFeeds = bareLineFeeds
    }

    /// Which open multipart, if any, the delimiter line `--<text>` belongs to, innermost first.
    ///
    ///     dash-boundary = "--" boundary                                  ; RFC 2046 5.1.1
    ///     delimiter     = CRLF dash-boundary ; close-delimiter = delimiter "--"
    ///     (then transport-padding: trailing blanks are allowed)
    private func matchBoundary(_ textStart: Int, _ contentEnd: Int) -> (Int, Bool)? {
        var level = open.count - 1
        while level >= 0 {
            if let boundary = open[level].boundary, !open[level].closed, !open[level].inHeader {
                let length = Int(boundary.count)
                if textStart + length <= contentEnd, matches(boundary, at: textStart) {
                    var rest = textStart + length
                    var isClose = false
                    if rest + 1 < contentEnd && base[rest] == UInt8(ascii: "-")
                        && base[rest + 1] == UInt8(ascii: "-")
                    {
                        isClose = true
                        rest += 2
                    }
                    while rest < contentEnd && (base[rest] == MIMEBytes.space || base[rest] == MIMEBytes.tab) {
                        rest += 1
                    }
                    if rest == contentEnd { return (level, isClose) }
                }
            }
            level -= 1
        }
        return nil
    }

    private func matches(_ boundary: MIMEText, at start: Int) -> Bool {
        let offset = Int(boundary.offset)
        for index in 0..<Int(boundary.count) where structure.pool[offset + index] != base[start + index] {
            return false
        }
        return true
    }

    private mutating func handleBoundary(level: Int, isClose: Bool, lineStart: Int, next: Int) {
        // The line break before the delimiter belongs to the delimiter (RFC 2046 5.1.1).
        var bodyEnd = lineStart
        var lineFeeds = lineNumber
        var bare = bareLineFeeds
        if bodyEnd > 0 && base[bodyEnd - 1] == MIMEBytes.lf {
            bodyEnd -= 1
            lineFeeds -= 1
            if bodyEnd > 0 && base[bodyEnd - 1] == MIMEBytes.cr { bodyEnd -= 1 } else { bare -= 1 }
        }
        while open.count - 1 > level {
            closeInnermost(bodyEnd: bodyEnd, lineFeedsBeforeEnd: lineFeeds, bareBeforeEnd: bare)
        }
        if isClose {
            open[level].closed = true
            activeBoundaries -= 1
            return
        }
        let multipart = open[level]
        openPart(at: next, parent: multipart.index, depth: structure.parts[multipart.index].depth + 1,
                 isMessageRoot: false, defaultsToMessage: structure.isDigest(multipart.index))
    }

    // MARK: - Parts

    private mutating func openPart(at start: Int, parent: Int, depth: Int, isMessageRoot: Bool,
                                   defaultsToMessage: Bool)
    {
        let index = structure.parts.count
        structure.parts.append(MIMEPart(
            kind: .leaf, depth: depth, parent: parent, subtreeEnd: index + 1, envelope: -1,
            headerStart: start, bodyStart: start, bodyEnd: start, bodyLines: 0, bodyBareLineFeeds: 0,
            type: .text, subtype: .plain, parameters: 0..<0, id: nil, description: nil, encoding: nil,
            md5: nil, disposition: nil, dispositionParameters: 0..<0, languages: 0..<0, location: nil))
        open.append(OpenPart(index: index, inHeader: true, isMessageRoot: isMessageRoot,
                             envelope: isMessageRoot ? structure.envelopes.count - 1 : -1,
                             defaultsToMessage: defaultsToMessage))
    }

    /// The innermost open part's header ended; its body starts at `bodyStart`.
    private mutating func endHeader(bodyStart: Int) {
        let level = open.count - 1
        let index = open[level].index
        open[level].inHeader = false
        open[level].bodyStartLine = lineNumber
        open[level].bodyStartBare = bareLineFeeds
        structure.parts[index].bodyStart = bodyStart
        structure.parts[index].bodyEnd = bodyStart
        let boundary = readHeader(part: index, envelope: open[level].isMessageRoot ? open[level].envelope : nil,
                                  defaultsToMessage: open[level].defaultsToMessage)
        let part = structure.parts[index]
        let canNest = part.depth < MIMELimits.maximumNestingDepth
            && structure.parts.count < MIMELimits.maximumPartCount
        if canNest, let boundary, structure.isType(index, "multipart") {
            structure.parts[index].kind = .multipart
            open[level].boundary = boundary
            activeBoundaries += 1
        } else if canNest, structure.isType(index, "message"), structure.isSubtype(index, "rfc822"),
            !structure.hasEncodedBody(index)
        {
            structure.parts[index].kind = .message
            structure.parts[index].envelope = structure.envelopes.count
            structure.envelopes.append(MIMEEnvelope())
            openPart(at: bodyStart, parent: index, depth: part.depth + 1, isMessageRoot: true,
                     defaultsToMessage: false)
        }
    }

    private mutating func closeInnermost(bodyEnd: Int, lineFeedsBeforeEnd: Int, bareBeforeEnd: Int) {
        if open[open.count - 1].inHeader {
            // A header that ran into a boundary or the end of the message: the body is empty.
            let end = max(bodyEnd, structure.parts[open[open.count - 1].index].headerStart)
            let saved = (lineNumber, bareLineFeeds)
            (lineNumber, bareLineFeeds) = (lineFeedsBeforeEnd, bareBeforeEnd)
            endHeader(bodyStart: end)
            (lineNumber, bareLineFeeds) = saved
            if open[open.count - 1].inHeader {
                // endHeader opened an encapsulated message with nothing in it: close that first.
                closeInnermost(bodyEnd: end, lineFeedsBeforeEnd: lineFeedsBeforeEnd, bareBeforeEnd: bareBeforeEnd)
            }
        }
        let top = open.removeLast()
        if top.boundary != nil && !top.closed { activeBoundaries -= 1 }
        let index = top.index
        let end = max(bodyEnd, structure.parts[index].bodyStart)
        structure.parts[index].bodyEnd = end
        let hasBody = end > structure.parts[index].bodyStart
        structure.parts[index].bodyLines = hasBody ? max(0, lineFeedsBeforeEnd - top.bodyStartLine) : 0
        structure.parts[index].bodyBareLineFeeds = hasBody ? max(0, bareBeforeEnd - top.bodyStartBare) : 0
        structure.parts[index].subtreeEnd = structure.parts.count
    }
}

// MARK: - Header fields of a part

extension MIMEParser {
    /// Reads the fields of the innermost part's header that BODYSTRUCTURE and ENVELOPE need.
    /// Returns the multipart boundary, if a Content-Type gave one. The first of repeated fields wins.
    private mutating func readHeader(part index: Int, envelope envelopeIndex: Int?, defaultsToMessage: Bool)
        -> MIMEText?
    {
        let isMessageRoot = envelopeIndex != nil
        var part = structure.parts[index]
        var envelope = MIMEEnvelope()
        var seen: UInt32 = 0
        var boundary: MIMEText?
        var fields = HeaderFieldIterator(base, range: part.headerStart..<part.bodyStart)
        if defaultsToMessage {
            part.type = .message
            part.subtype = .rfc822
        }
        while let field = fields.next() {
            let name = field.name
            guard let kind = HeaderName(base, name), seen & kind.bit == 0 else { continue }
            if kind.isEnvelope && !isMessageRoot { continue }
            seen |= kind.bit
            let value = field.value
            switch kind {
            case .contentType:
                boundary = readContentType(value, into: &part)
            case .contentTransferEncoding:
                part.encoding = structure.appendWord(base, value)
            case .contentID:
                part.id = structure.appendUnfolded(base, value)
            case .contentDescription:
                part.description = structure.appendUnfolded(base, value)
            case .contentMD5:
                part.md5 = structure.appendUnfolded(base, value)
            case .contentDisposition:
                var tokens = HeaderTokenizer(base, range: value)
                tokens.skipCFWS()
                let word = tokens.readWord(stoppingAt: ";")
                if !word.isEmpty {
                    part.disposition = structure.appendPool(base, word)
                    part.dispositionParameters = readParameters(&tokens)
                }
            case .contentLanguage:
                part.languages = readLanguageTags(value)
            case .contentLocation:
                part.location = structure.appendUnfolded(base, value)
            case .date:
                envelope.date = structure.appendUnfolded(base, value)
            case .subject:
                envelope.subject = structure.appendUnfolded(base, value)
            case .inReplyTo:
                envelope.inReplyTo = structure.appendUnfolded(base, value)
            case .messageID:
                envelope.messageID = structure.appendUnfolded(base, value)
            case .from:
                envelope.from = readAddressList(value)
            case .sender:
                envelope.sender = readAddressList(value)
            case .replyTo:
                envelope.replyTo = readAddressList(value)
            case .to:
                envelope.to = readAddressList(value)
            case .cc:
                envelope.cc = readAddressList(value)
            case .bcc:
                envelope.bcc = readAddressList(value)
            }
        }
        if let envelopeIndex {
            // RFC 3501 7.4.2: absent or empty Sender and Reply-To take the From list.
            if envelope.sender.isEmpty { envelope.sender = envelope.from }
            if envelope.replyTo.isEmpty { envelope.replyTo = envelope.from }
            structure.envelopes[envelopeIndex] = envelope
        }
        if structure.isText(part) && !structure.hasParameter(part.parameters, "charset") {
            // RFC 2045 5.2: a missing charset of a text part is us-ascii. It goes after the others
            // (as Dovecot puts it), so the part's parameters must be the last ones in the array.
            var start = part.parameters.isEmpty ? structure.parameters.count : part.parameters.lowerBound
            if !part.parameters.isEmpty && part.parameters.upperBound != structure.parameters.count {
                start = structure.parameters.count
                structure.parameters.append(contentsOf: structure.parameters[part.parameters])
            }
            structure.parameters.append(MIMEParameter(name: .charset, value: .usASCII, extendedValue: nil))
            part.parameters = start..<structure.parameters.count
        }
        structure.parts[index] = part
        return boundary
    }

    /// Reads `type "/" subtype *(";" parameter)` (RFC 2045 section 5.1). A field without a valid
    /// type/subtype is ignored as a whole, so the defaults apply (RFC 2045 section 5.2).
    private mutating func readContentType(_ value: Range<Int>, into part: inout MIMEPart) -> MIMEText? {
        var tokens = HeaderTokenizer(base, range: value)
        tokens.skipCFWS()
        let type = tokens.readWord(stoppingAt: "/;")
        tokens.skipCFWS()
        var subtype = 0..<0
        if tokens.peek == UInt8(ascii: "/") {
            tokens.position += 1
            tokens.skipCFWS()
            subtype = tokens.readWord(stoppingAt: ";")
        }
        guard !type.isEmpty && !subtype.isEmpty else { return nil }
        part.type = structure.appendPool(base, type)
        part.subtype = structure.appendPool(base, subtype)
        part.parameters = readParameters(&tokens)
        guard base.equalsLowercase(type, "multipart") else { return nil }
        for parameter in structure.parameters[part.parameters]
        where MIMEBytes.equalsLowercase(structure.bytes(parameter.name), "boundary") {
            return parameter.value.count > 0 ? parameter.value : nil
        }
        return nil
    }

    /// Content-Language: a comma-separated list of language tags (RFC 3282).
    private mutating func readLanguageTags(_ value: Range<Int>) -> Range<Int> {
        let first = structure.languageTags.count
        var tokens = HeaderTokenizer(base, range: value)
        while !tokens.atEnd && structure.languageTags.count - first < MIMELimits.maximumParametersPerField {
            tokens.skipCFWS()
            let tag = tokens.readWord(stoppingAt: ",")
            if !tag.isEmpty { structure.languageTags.append(structure.appendPool(base, tag)) }
            tokens.skip(past: UInt8(ascii: ","))
        }
        return first..<structure.languageTags.count
    }
}

// MARK: - Header names

/// The header fields the parser reads, each with a bit so the first occurrence wins.
enum HeaderName: UInt8 {
    case contentType, contentTransferEncoding, contentID, contentDescription, contentMD5
    case contentDisposition, contentLanguage, contentLocation
    case date, subject, from, sender, replyTo, to, cc, bcc, inReplyTo, messageID

    var bit: UInt32 { 1 << rawValue }
    var isEnvelope: Bool { rawValue >= HeaderName.date.rawValue }

    /// Recognises a field name, case-insensitively, without allocating.
    init?(_ base: UnsafeRawBufferPointer, _ name: Range<Int>) {
        let bytes = base[name]
        switch name.count {
        case 2:
            if MIMEBytes.equalsLowercase(bytes, "to") { self = .to; return }
            if MIMEBytes.equalsLowercase(bytes, "cc") { self = .cc; return }
        case 3:
            if MIMEBytes.equalsLowercase(bytes, "bcc") { self = .bcc; return }
        case 4:
            if MIMEBytes.equalsLowercase(bytes, "date") { self = .date; return }
            if MIMEBytes.equalsLowercase(bytes, "from") { self = .from; return }
        case 6:
            if MIMEBytes.equalsLowercase(bytes, "sender") { self = .sender; return }
        case 7:
            if MIMEBytes.equalsLowercase(bytes, "subject") { self = .subject; return }
        case 8:
            if MIMEBytes.equalsLowercase(bytes, "reply-to") { self = .replyTo; return }
        case 10:
            if MIMEBytes.equalsLowercase(bytes, "message-id") { self = .messageID; return }
            if MIMEBytes.equalsLowercase(bytes, "content-id") { self = .contentID; return }
        case 11:
            if MIMEBytes.equalsLowercase(bytes, "in-reply-to") { self = .inReplyTo; return }
            if MIMEBytes.equalsLowercase(bytes, "content-md5") { self = .contentMD5; return }
        case 12:
            if MIMEBytes.equalsLowercase(bytes, "content-type") { self = .contentType; return }
        case 16:
            if MIMEBytes.equalsLowercase(bytes, "content-language") { self = .contentLanguage; return }
            if MIMEBytes.equalsLowercase(bytes, "content-location") { self = .contentLocation; return }
        case 19:
            if MIMEBytes.equalsLowercase(bytes, "content-description") { self = .contentDescription; return }
            if MIMEBytes.equalsLowercase(bytes, "content-disposition") { self = .contentDisposition; return }
        case 25:
            if MIMEBytes.equalsLowercase(bytes, "content-transfer-encoding") {
                self = .contentTransferEncoding
                return
            }
        default:
            break
        }
        return nil
    }
}

// MARK: - Type tests

extension MessageStructure {
    func isType(_ index: Int, _ lower: StaticString) -> Bool {
        MIMEBytes.equalsLowercase(bytes(parts[index].type), lower)
    }

    func isSubtype(_ index: Int, _ lower: StaticString) -> Bool {
        MIMEBytes.equalsLowercase(bytes(parts[index].subtype), lower)
    }

    func isText(_ part: MIMEPart) -> Bool {
        MIMEBytes.equalsLowercase(bytes(part.type), "text")
    }

    func hasParameter(_ range: Range<Int>, _ lower: StaticString) -> Bool {
        parameters[range].contains { MIMEBytes.equalsLowercase(bytes($0.name), lower) }
    }

    func isDigest(_ index: Int) -> Bool {
        isType(index, "multipart") && isSubtype(index, "digest")
    }

    /// Whether the part's body is base64 or quoted-printable (so its bytes are not its content).
    func hasEncodedBody(_ index: Int) -> Bool {
        MIMETransferEncoding(structure: self, part: index) != .identity
    }
}
