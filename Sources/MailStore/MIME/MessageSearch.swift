// MessageSearch: SEARCH keys over a message's text (RFC 3501 section 6.4.4): header fields, BODY
// and TEXT, case-insensitive over decoded UTF-8.

extension MessageStructure {
    /// SEARCH HEADER / FROM / TO / CC / BCC / SUBJECT: whether a field `name` of the message header
    /// contains the needle once its value is unfolded, RFC 2047-decoded and in UTF-8. An empty
    /// needle matches any message that has the field (RFC 3501 6.4.4). Reads only the header.
    public func headerField<C: Collection>(_ name: C, contains matcher: MIMETextMatcher,
                                           in message: UnsafeRawBufferPointer) -> Bool where C.Element == UInt8
    {
        let header = parts[0].headerRange
        guard header.upperBound <= message.count else { return false }
        var fields = HeaderFieldIterator(message, range: header)
        var decoded: [UInt8] = []
        while let field = fields.next() {
            guard MIMEBytes.equalsIgnoringCase(message[field.name], name) else { continue }
            if matcher.matchesHeaderValue(UnsafeRawBufferPointer(rebasing: message[field.value]), scratch: &decoded) {
                return true
            }
        }
        return false
    }

    /// SEARCH SUBJECT: whether the envelope's subject (the first Subject field, RFC 3501 6.4.4)
    /// contains the needle, matched as ``headerField(_:contains:in:)`` matches a field. Needs no
    /// message bytes: the envelope keeps the raw value, unfolded, which decodes to the same text as
    /// the folded field (RFC 2047 decoding drops line breaks). False when there is no Subject.
    public func subjectContains(_ matcher: MIMETextMatcher) -> Bool {
        guard let subject = envelope.subject else { return false }
        let range = Int(subject.offset)..<Int(subject.offset) + Int(subject.count)
        return pool.withUnsafeBytes { Self.subject(UnsafeRawBufferPointer(rebasing: $0[range]), contains: matcher) }
    }

    /// The one SUBJECT match, over an envelope subject's raw value (nil: the message has none),
    /// whether it comes from a structure or straight from a cached blob.
    static func subject(_ raw: UnsafeRawBufferPointer?, contains matcher: MIMETextMatcher) -> Bool {
        guard let raw else { return false }
        var decoded: [UInt8] = []
        return matcher.matchesHeaderValue(raw, scratch: &decoded)
    }

    /// SEARCH BODY: whether the body text contains the needle. Only text and message parts are
    /// searched (not images or other attachments), each after undoing its transfer encoding and
    /// converting its charset to UTF-8; the header of an attached message counts as body text.
    public func bodyContains(_ matcher: MIMETextMatcher, in message: UnsafeRawBufferPointer) -> Bool {
        var matcher = matcher
        guard parts[0].bodyEnd <= message.count else { return false }
        var utf8: [UInt8] = []
        for index in parts.indices {
            let part = parts[index]
            matcher.reset()
            switch part.kind {
            case .multipart:
                continue
            case .message:
                // The attached message's header: the body of its own part is searched in its turn.
                if headerTextContains(&matcher, parts[index + 1].headerRange, in: message) { return true }
            case .leaf:
                guard isType(index, "text") || isType(index, "message") else { continue }
                let charset = parameters[part.parameters].first {
                    MIMEBytes.equalsLowercase(bytes($0.name), "charset")
                }.map { bytes($0.value) } ?? []
                var decoder = MIMECharsetDecoder(charsetName: charset)
                MIMETransferDecoder.decode(UnsafeRawBufferPointer(rebasing: message[part.bodyRange]),
                                           encoding: MIMETransferEncoding(structure: self, part: index)) { piece in
                    utf8.removeAll(keepingCapacity: true)
                    piece.withUnsafeBytes { decoder.decode($0, into: &utf8) }
                    return !utf8.withUnsafeBytes { matcher.feed($0) }
                }
                utf8.removeAll(keepingCapacity: true)
                decoder.finish(into: &utf8)
                _ = utf8.withUnsafeBytes { matcher.feed($0) }
                if matcher.finish() { return true }
            }
        }
        return false
    }

    /// SEARCH TEXT: the message header (decoded) or the body text contains the needle.
    public func textContains(_ matcher: MIMETextMatcher, in message: UnsafeRawBufferPointer) -> Bool {
        var headerMatcher = matcher
        headerMatcher.reset()
        guard parts[0].headerRange.upperBound <= message.count else { return false }
        if headerTextContains(&headerMatcher, parts[0].headerRange, in: message) { return true }
        return bodyContains(matcher, in: message)
    }

    /// Searches a header block field by field (each value decoded; a match cannot span fields).
    private func headerTextContains(_ matcher: inout MIMETextMatcher, _ header: Range<Int>,
                                    in message: UnsafeRawBufferPointer) -> Bool
    {
        var fields = HeaderFieldIterator(message, range: header)
        var decoded: [UInt8] = []
        while let field = fields.next() {
            decoded.removeAll(keepingCapacity: true)
            decoded.append(contentsOf: message[field.name])
            decoded.append(contentsOf: [UInt8(ascii: ":"), MIMEBytes.space])
            MIMEEncodedWords.decode(UnsafeRawBufferPointer(rebasing: message[field.value]), into: &decoded)
            matcher.reset()
            _ = decoded.withUnsafeBytes { matcher.feed($0) }
            if matcher.finish() { return true }
        }
        return false
    }
}

extension MIMETextMatcher {
    /// Whether one raw header field value contains the needle once RFC 2047-decoded to UTF-8 (line
    /// breaks of a folded value are dropped by the decoding). `scratch` holds the decoded text, so a
    /// caller looping over fields reuses one buffer. The one matcher of header keys: HEADER, FROM,
    /// TO, CC, BCC over the message and SUBJECT over the cached envelope give the same answers.
    func matchesHeaderValue(_ rawValue: UnsafeRawBufferPointer, scratch decoded: inout [UInt8]) -> Bool {
        var fieldMatcher = self
        fieldMatcher.reset()
        // A value decoding would give back unchanged (most are) is matched as it stands.
        if MIMEEncodedWords.decodesToItself(rawValue) {
            fieldMatcher.feedASCII(rawValue)
            return fieldMatcher.finish()
        }
        decoded.removeAll(keepingCapacity: true)
        MIMEEncodedWords.decode(rawValue, into: &decoded)
        _ = decoded.withUnsafeBytes { fieldMatcher.feed($0) }
        return fieldMatcher.finish()
    }
}
