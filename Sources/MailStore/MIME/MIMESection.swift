// MIMESection: which bytes answer BODY[section]<partial> (RFC 3501 section 6.4.5, RFC 9051 6.4.5),
// as a byte range of the message file or, for HEADER.FIELDS, the filtered header.

/// A section specification, as the protocol layer parsed it.
///
///     section-spec = section-msgtext / (section-part ["." section-text])
///     section-part = nz-number *("." nz-number)
///     section-text = section-msgtext / "MIME"
///     section-msgtext = "HEADER" / "HEADER.FIELDS" [".NOT"] SP header-list / "TEXT"
///
///     C: A1 FETCH 1 BODY[1.2.HEADER.FIELDS (FROM SUBJECT)]<0.100>
public struct MIMESection: Hashable, Sendable {
    public enum Text: Hashable, Sendable {
        /// No text part: the whole message, or the whole body of the part.
        case all
        case header
        /// HEADER.FIELDS: field names (any case), without the colon.
        case headerFields([[UInt8]])
        /// HEADER.FIELDS.NOT.
        case headerFieldsNot([[UInt8]])
        case text
        /// The MIME header of a part (needs a part number).
        case mime
    }

    /// Part numbers, 1-based; empty for the message itself.
    public var part: [Int]
    public var text: Text

    public init(part: [Int] = [], text: Text = .all) {
        self.part = part
        self.text = text
    }
}

/// `<origin.length>` of a partial fetch (RFC 3501 section 6.4.5).
public struct MIMEPartial: Hashable, Sendable {
    public var origin: Int
    public var length: Int

    public init(origin: Int, length: Int) {
        self.origin = origin
        self.length = length
    }

    /// The part of `range` the partial selects: starts `origin` bytes in, at most `length` long;
    /// empty (at the end) when `origin` is past the end, as RFC 3501 says.
    public func clip(_ range: Range<Int>) -> Range<Int> {
        let start = range.lowerBound + min(max(origin, 0), range.count)
        let end = start + min(max(length, 0), range.upperBound - start)
        return start..<end
    }
}

/// Where a section's bytes come from.
public enum MIMESectionLocation: Hashable, Sendable {
    /// Send these bytes of the message file (pread or sendfile them).
    case bytes(Range<Int>)
    /// Read this header range and pass it to ``MIMEHeaderFilter/filter(_:fields:excluding:)``,
    /// then apply any partial to the result.
    case filteredHeader(Range<Int>, fields: [[UInt8]], excluding: Bool)
}

extension MessageStructure {
    /// Where the bytes of `section` are; nil when the message has no such part, or the text spec
    /// does not apply to it (HEADER or TEXT of a part that is not message/rfc822, MIME of the
    /// message itself). A partial applies to ``MIMESectionLocation/bytes(_:)`` with
    /// ``MIMEPartial/clip(_:)``.
    public func locate(_ section: MIMESection, partial: MIMEPartial? = nil) -> MIMESectionLocation? {
        guard let node = resolvePart(section.part) else { return nil }
        let range: Range<Int>
        var fields: [[UInt8]] = []
        var excluding = false
        var filter = false
        switch section.text {
        case .all:
            range = section.part.isEmpty ? 0..<messageSize : parts[node].bodyRange
        case .mime:
            guard !section.part.isEmpty else { return nil }
            range = parts[node].headerRange
        case .header, .text, .headerFields, .headerFieldsNot:
            guard let message = messageRoot(of: node, isTop: section.part.isEmpty) else { return nil }
            switch section.text {
            case .text:
                range = parts[message].bodyRange
            case .headerFields(let names):
                (range, fields, filter) = (parts[message].headerRange, names, true)
            case .headerFieldsNot(let names):
                (range, fields, excluding, filter) = (parts[message].headerRange, names, true, true)
            default:
                range = parts[message].headerRange
            }
        }
        if filter { return .filteredHeader(range, fields: fields, excluding: excluding) }
        return .bytes(partial?.clip(range) ?? range)
    }

    /// The bytes of `section` from the message in memory, partial applied; nil as ``locate(_:partial:)``.
    public func content(of section: MIMESection, partial: MIMEPartial? = nil,
                        in message: UnsafeRawBufferPointer) -> [UInt8]?
    {
        switch locate(section, partial: partial) {
        case nil:
            return nil
        case .bytes(let range):
            guard range.upperBound <= message.count else { return nil }
            return Array(message[range])
        case .filteredHeader(let range, let fields, let excluding):
            guard range.upperBound <= message.count else { return nil }
            let filtered = MIMEHeaderFilter.filter(UnsafeRawBufferPointer(rebasing: message[range]),
                                                   fields: fields, excluding: excluding)
            return Array(filtered[partial?.clip(filtered.indices) ?? filtered.indices])
        }
    }

    /// The part a part path names, or nil.
    ///
    /// RFC 3501 6.4.5: a non-multipart message has part 1, its body; the parts of an encapsulated
    /// message are numbered inside it. Like Dovecot, a `.1` after a part of a multipart that is
    /// neither multipart nor message/rfc822 names that part again (`1.1` is `1` when part 1 is a
    /// text part, but a single-part message has no `1.1`), and a multipart with no parts found (no
    /// boundary) has no part 1 either.
    public func resolvePart(_ path: [Int]) -> Int? {
        var node = 0
        for (position, number) in path.enumerated() {
            if position > 0 && parts[node].kind == .message {
                node += 1  // the encapsulated message's root part
            }
            if parts[node].kind == .multipart {
                guard let child = child(of: node, number: number) else { return nil }
                node = child
            } else if number != 1 || isType(node, "multipart") || (position > 0 && node == 0) {
                return nil
            }
        }
        return node
    }

    /// The root part of the message whose HEADER/TEXT a section names: the message itself, or
    /// the inside of a message/rfc822 part.
    private func messageRoot(of node: Int, isTop: Bool) -> Int? {
        if isTop { return 0 }
        return parts[node].kind == .message ? node + 1 : nil
    }
}

/// HEADER.FIELDS and HEADER.FIELDS.NOT over a header block.
public enum MIMEHeaderFilter {
    /// The fields of `header` whose names are (or with `excluding`, are not) in `fields`, whole
    /// and folded as written, followed by the empty line as RFC 3501 section 6.4.5 asks (when the
    /// header had one: a header cut short by the end of the message gets none, as with Dovecot).
    /// A last field without a line break gets CRLF.
    public static func filter(_ header: UnsafeRawBufferPointer, fields: [[UInt8]], excluding: Bool) -> [UInt8] {
        var output: [UInt8] = []
        filter(header, fields: fields, excluding: excluding, appendingTo: &output)
        return output
    }

    /// ``filter(_:fields:excluding:)`` appended to `output`, so a caller that filters a header per
    /// message (FETCH of a message list) can reuse one array.
    public static func filter(_ header: UnsafeRawBufferPointer, fields: [[UInt8]], excluding: Bool,
                              appendingTo output: inout [UInt8])
    {
        var iterator = HeaderFieldIterator(header, range: 0..<header.count)
        while let field = iterator.next() {
            let name = header[field.name]
            let listed = fields.contains { MIMEBytes.equalsIgnoringCase($0, name) }
            guard listed != excluding else { continue }
            output.append(contentsOf: header[field.field])
            if output.last != MIMEBytes.lf { appendLineBreak(to: &output) }
        }
        if Self.endsWithEmptyLine(header) { appendLineBreak(to: &output) }
    }

    private static func appendLineBreak(to output: inout [UInt8]) {
        output.append(MIMEBytes.cr)
        output.append(MIMEBytes.lf)
    }

    private static func endsWithEmptyLine(_ header: UnsafeRawBufferPointer) -> Bool {
        var end = header.count
        guard end > 0, header[end - 1] == MIMEBytes.lf else { return end == 0 }
        end -= 1
        if end > 0 && header[end - 1] == MIMEBytes.cr { end -= 1 }
        return end == 0 || header[end - 1] == MIMEBytes.lf
    }
}
