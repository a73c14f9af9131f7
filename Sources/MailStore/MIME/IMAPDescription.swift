// IMAPDescription: ENVELOPE and BODYSTRUCTURE of a MessageStructure in IMAP syntax (RFC 3501
// section 7.4.2), written straight into FETCH's output buffer (and for logs and tests). FETCH of
// a message list calls these for every message, so they allocate nothing, read the pool in place
// and write through a scratch buffer (IMAPDescriptionSink).

extension MessageStructure {
    /// `(ENVELOPE (...) BODYSTRUCTURE (...))` as a server would send it; strings that cannot be
    /// quoted (8-bit, CR, LF) are written as literals.
    /// Invalid UTF-8 in 8-bit headers shows as U+FFFD here; ``writeIMAPDescription(into:)`` keeps it.
    public var debugIMAPDescription: String {
        var output: [UInt8] = []
        writeIMAPDescription(into: &output)
        return String(decoding: output, as: UTF8.self)
    }

    /// Writes `(ENVELOPE (...) BODYSTRUCTURE (...))` as bytes.
    public func writeIMAPDescription(into output: inout [UInt8]) {
        output.append(contentsOf: "(ENVELOPE ".utf8)
        writeIMAPEnvelope(0, into: &output)
        output.append(contentsOf: " BODYSTRUCTURE ".utf8)
        writeIMAPBody(0, extensions: true, into: &output)
        output.append(UInt8(ascii: ")"))
    }

    /// Writes envelope `index` (RFC 3501 `envelope`).
    public func writeIMAPEnvelope(_ index: Int, into output: inout [UInt8]) {
        withIMAPDescriptionWriter(appendingTo: &output) { $0.writeEnvelope(index, into: &$1) }
    }

    /// Writes part `index` as `body` (BODYSTRUCTURE with `extensions`, BODY without).
    public func writeIMAPBody(_ index: Int, extensions: Bool, into output: inout [UInt8]) {
        withIMAPDescriptionWriter(appendingTo: &output) { $0.writeBody(index, extensions: extensions, into: &$1) }
    }

    /// Runs `body` with a writer over this structure's pool and a sink (scratch on the stack) that
    /// appends to `output`.
    private func withIMAPDescriptionWriter(appendingTo output: inout [UInt8],
                                           _ body: (IMAPDescriptionWriter, inout IMAPDescriptionSink) -> Void)
    {
        pool.withUnsafeBufferPointer { pool in
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: IMAPDescriptionSink.scratchSize) { scratch in
                // The array moves into the sink and back, so it stays uniquely held and grows in place.
                var sink = IMAPDescriptionSink(appendingTo: output, scratch: scratch)
                output = []
                body(IMAPDescriptionWriter(structure: self, pool: pool), &sink)
                output = sink.finish()
            }
        }
    }
}

/// Writes a structure's ENVELOPE and BODYSTRUCTURE with its string pool's memory at hand, so each
/// string is read and copied without a slice of the pool (a retain and release each) or bounds
/// checks per byte.
struct IMAPDescriptionWriter {
    let structure: MessageStructure
    let pool: UnsafeBufferPointer<UInt8>

    /// Envelope `index`.
    ///
    ///     envelope = "(" env-date SP env-subject SP env-from SP env-sender SP env-reply-to SP env-to SP
    ///                env-cc SP env-bcc SP env-in-reply-to SP env-message-id ")"
    func writeEnvelope(_ index: Int, into output: inout IMAPDescriptionSink) {
        let envelope = structure.envelopes[index]
        output.append(UInt8(ascii: "("))
        writeIMAPString(envelope.date, into: &output)
        output.append(MIMEBytes.space)
        writeIMAPString(envelope.subject, into: &output)
        // One call per list rather than a loop over an array of them: that array was an
        // allocation per envelope.
        writeIMAPAddresses(envelope.from, into: &output)
        writeIMAPAddresses(envelope.sender, into: &output)
        writeIMAPAddresses(envelope.replyTo, into: &output)
        writeIMAPAddresses(envelope.to, into: &output)
        writeIMAPAddresses(envelope.cc, into: &output)
        writeIMAPAddresses(envelope.bcc, into: &output)
        output.append(MIMEBytes.space)
        writeIMAPString(envelope.inReplyTo, into: &output)
        output.append(MIMEBytes.space)
        writeIMAPString(envelope.messageID, into: &output)
        output.append(UInt8(ascii: ")"))
    }

    /// Part `index` as `body` (BODYSTRUCTURE with `extensions`, BODY without).
    ///
    /// A multipart with no parts (no boundary, or a boundary never found) gets one empty text/plain
    /// part, since the grammar needs at least one (`body-type-mpart = 1*body SP media-subtype`);
    /// a message/rfc822 part whose inside was not parsed (encoded, too deep) gets an all-NIL
    /// envelope and that same empty body. Both as Dovecot does.
    func writeBody(_ index: Int, extensions: Bool, into output: inout IMAPDescriptionSink) {
        let part = structure.parts[index]
        output.append(UInt8(ascii: "("))
        if structure.isType(index, "multipart") {
            // Children walked in place (``children(of:)`` would build an array per multipart).
            var child = index + 1
            if child >= part.subtreeEnd {
                writeEmptyIMAPBody(extensions: extensions, into: &output)
            }
            while child < part.subtreeEnd {
                writeBody(child, extensions: extensions, into: &output)
                child = structure.parts[child].subtreeEnd
            }
            output.append(MIMEBytes.space)
            writeIMAPString(part.subtype, into: &output)
            if extensions {
                output.append(MIMEBytes.space)
                writeIMAPParameters(part.parameters, into: &output)
                writeIMAPExtensionTail(part, into: &output)
            }
            output.append(UInt8(ascii: ")"))
            return
        }
        writeIMAPString(part.type, into: &output)
        output.append(MIMEBytes.space)
        writeIMAPString(part.subtype, into: &output)
        output.append(MIMEBytes.space)
        writeIMAPParameters(part.parameters, into: &output)
        output.append(MIMEBytes.space)
        writeIMAPString(part.id, into: &output)
        output.append(MIMEBytes.space)
        writeIMAPString(part.description, into: &output)
        output.append(MIMEBytes.space)
        writeIMAPString(part.encoding ?? .sevenBit, into: &output)
        output.append(MIMEBytes.space)
        output.appendDecimal(part.bodySize)
        if structure.isType(index, "message") && structure.isSubtype(index, "rfc822") {
            output.append(MIMEBytes.space)
            if part.kind == .message, part.envelope >= 0, index + 1 < part.subtreeEnd {
                writeEnvelope(part.envelope, into: &output)
                output.append(MIMEBytes.space)
                writeBody(index + 1, extensions: extensions, into: &output)
            } else {
                output.append("(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) ")
                writeEmptyIMAPBody(extensions: extensions, into: &output)
            }
            output.append(MIMEBytes.space)
            output.appendDecimal(part.bodyLines)
        } else if structure.isText(part) {
            output.append(MIMEBytes.space)
            output.appendDecimal(part.bodyLines)
        }
        if extensions {
            output.append(MIMEBytes.space)
            writeIMAPString(part.md5, into: &output)
            writeIMAPExtensionTail(part, into: &output)
        }
        output.append(UInt8(ascii: ")"))
    }

    /// ` body-fld-dsp SP body-fld-lang SP body-fld-loc`.
    private func writeIMAPExtensionTail(_ part: MIMEPart, into output: inout IMAPDescriptionSink) {
        output.append(MIMEBytes.space)
        if let disposition = part.disposition {
            output.append(UInt8(ascii: "("))
            writeIMAPString(disposition, into: &output)
            output.append(MIMEBytes.space)
            writeIMAPParameters(part.dispositionParameters, into: &output)
            output.append(UInt8(ascii: ")"))
        } else {
            output.append("NIL")
        }
        output.append(MIMEBytes.space)
        if part.languages.isEmpty {
            output.append("NIL")
        } else {
            output.append(UInt8(ascii: "("))
            for (position, tag) in structure.languageTags[part.languages].enumerated() {
                if position > 0 { output.append(MIMEBytes.space) }
                writeIMAPString(tag, into: &output)
            }
            output.append(UInt8(ascii: ")"))
        }
        output.append(MIMEBytes.space)
        writeIMAPString(part.location, into: &output)
    }

    private func writeEmptyIMAPBody(extensions: Bool, into output: inout IMAPDescriptionSink) {
        output.append("(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0")
        if extensions { output.append(" NIL NIL NIL NIL") }
        output.append(UInt8(ascii: ")"))
    }

    /// `body-fld-param`: NIL or a list of name/value pairs; RFC 2231 values as `name*` and their
    /// joined ASCII wire form.
    private func writeIMAPParameters(_ range: Range<Int>, into output: inout IMAPDescriptionSink) {
        guard !range.isEmpty else {
            output.append("NIL")
            return
        }
        output.append(UInt8(ascii: "("))
        for (position, parameter) in structure.parameters[range].enumerated() {
            if position > 0 { output.append(MIMEBytes.space) }
            if let extended = parameter.extendedValue {
                Self.writeIMAPString(bytes(parameter.name), suffix: UInt8(ascii: "*"), into: &output)
                output.append(MIMEBytes.space)
                writeIMAPString(extended, into: &output)
            } else {
                writeIMAPString(parameter.name, into: &output)
                output.append(MIMEBytes.space)
                writeIMAPString(parameter.value, into: &output)
            }
        }
        output.append(UInt8(ascii: ")"))
    }

    /// ` env-from` and the other lists: a space, then NIL or a list of `address`es.
    ///
    ///     address = "(" addr-name SP addr-adl SP addr-mailbox SP addr-host ")"
    private func writeIMAPAddresses(_ range: Range<Int>, into output: inout IMAPDescriptionSink) {
        output.append(MIMEBytes.space)
        guard !range.isEmpty else {
            output.append("NIL")
            return
        }
        output.append(UInt8(ascii: "("))
        for address in structure.addresses[range] {
            output.append(UInt8(ascii: "("))
            writeIMAPString(address.name, into: &output)
            output.append(MIMEBytes.space)
            writeIMAPString(address.adl, into: &output)
            output.append(MIMEBytes.space)
            writeIMAPString(address.mailbox, into: &output)
            output.append(MIMEBytes.space)
            writeIMAPString(address.host, into: &output)
            output.append(UInt8(ascii: ")"))
        }
        output.append(UInt8(ascii: ")"))
    }

    private func writeIMAPString(_ text: MIMEText?, into output: inout IMAPDescriptionSink) {
        guard let text else {
            output.append("NIL")
            return
        }
        Self.writeIMAPString(bytes(text), into: &output)
    }

    /// The bytes of a pooled string, in place.
    @inline(__always)
    private func bytes(_ text: MIMEText) -> UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(rebasing: pool[Int(text.offset)..<Int(text.offset) + Int(text.count)])
    }

    /// `nstring`: a quoted string when every byte may be quoted, else a literal; `suffix`, when
    /// given, is one more (ASCII, unquoted-safe) byte at the end of the string.
    ///
    ///     quoted = DQUOTE *QUOTED-CHAR DQUOTE ; literal = "{" number "}" CRLF *CHAR8
    static func writeIMAPString(_ bytes: UnsafeBufferPointer<UInt8>, suffix: UInt8? = nil, into output: inout IMAPDescriptionSink) {
        let form = IMAPStringForm.of(bytes)
        let suffixCount = suffix == nil ? 0 : 1
        guard form != .literal else {
            output.append(UInt8(ascii: "{"))
            output.appendDecimal(bytes.count + suffixCount)
            output.append("}\r\n")
            output.append(bytes)
            if let suffix { output.append(suffix) }
            return
        }
        output.append(UInt8(ascii: "\""))
        if form == .quoted {
            output.append(bytes)
        } else {
            // Each run between bytes that need a backslash goes in with one append.
            var runStart = 0
            for position in bytes.indices where isQuotedSpecial(bytes[position]) {
                output.append(UnsafeBufferPointer(rebasing: bytes[runStart..<position]))
                output.append(UInt8(ascii: "\\"))
                runStart = position
            }
            output.append(UnsafeBufferPointer(rebasing: bytes[runStart...]))
        }
        if let suffix { output.append(suffix) }
        output.append(UInt8(ascii: "\""))
    }

    /// The bytes a quoted string escapes (`quoted-specials = DQUOTE / "\\"`).
    @inline(__always)
    static func isQuotedSpecial(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\")
    }
}

/// How a pooled string goes on the wire: quoted as it is, quoted with backslashes before its
/// quotes and backslashes, or (for controls other than tab, DEL and 8-bit bytes, which a quoted
/// string cannot carry) a literal.
enum IMAPStringForm: Equatable {
    case quoted
    case quotedWithEscapes
    case literal

    /// The form of `bytes`, found a word (eight or four bytes) at a time: a word holding none of
    /// the bytes that matter (nearly every word of a header) costs a few instructions, and only a
    /// word holding one is looked at byte by byte. The last word is the string's last eight (or
    /// four) bytes, overlapping the one before rather than leaving a tail to go through bytewise.
    /// ENVELOPE writes some thirty strings a message.
    static func of(_ bytes: UnsafeBufferPointer<UInt8>) -> IMAPStringForm {
        var form = IMAPStringForm.quoted
        let count = bytes.count
        guard let base = bytes.baseAddress else { return form }
        let raw = UnsafeRawPointer(base)
        if count >= 8 {
            var start = 0
            while true {
                let word = raw.loadUnaligned(fromByteOffset: start, as: UInt64.self)
                if mayHoldSpecialByte(word) && !note(bytes, start..<start + 8, in: &form) { return .literal }
                if start == count - 8 { break }
                start = Swift.min(start + 8, count - 8)
            }
        } else {
            // Four to seven bytes: the first four and the last four; fewer: byte by byte.
            let mayHold = count < 4 || mayHoldSpecialByte(raw.loadUnaligned(as: UInt32.self))
                || mayHoldSpecialByte(raw.loadUnaligned(fromByteOffset: count - 4, as: UInt32.self))
            if mayHold && !note(bytes, 0..<count, in: &form) { return .literal }
        }
        return form
    }

    /// Notes the bytes of `range`: false when one can only go in a literal.
    private static func note(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>,
                             in form: inout IMAPStringForm) -> Bool
    {
        for byte in UnsafeBufferPointer(rebasing: bytes[range]) where !note(byte, in: &form) { return false }
        return true
    }

    /// Notes a byte that needs escaping in `form`; false for a byte only a literal can carry.
    @inline(__always)
    private static func note(_ byte: UInt8, in form: inout IMAPStringForm) -> Bool {
        if byte < 0x20 && byte != MIMEBytes.tab || byte >= 0x7F { return false }
        if IMAPDescriptionWriter.isQuotedSpecial(byte) { form = .quotedWithEscapes }
        return true
    }

    /// Whether any byte of `word` may be below 0x20, 0x7F or above, a quote or a backslash. Never
    /// false when one is; sometimes true when none is (the bytes are then looked at one by one).
    /// The lowest byte below `n` always sets its high bit in `(x - n*ones) & ~x`, whatever the
    /// bytes above it do: a borrow only comes from a lower byte that is itself below.
    @inline(__always)
    private static func mayHoldSpecialByte<Word: FixedWidthInteger & UnsignedInteger>(_ word: Word) -> Bool {
        let ones = Word.max / 0xFF
        let highBits = ones &* 0x80
        let below0x20 = (word &- ones &* 0x20) & ~word
        let isDelete = hasZeroByte(word ^ (ones &* 0x7F), ones)
        let isQuote = hasZeroByte(word ^ (ones &* Word(UInt8(ascii: "\""))), ones)
        let isBackslash = hasZeroByte(word ^ (ones &* Word(UInt8(ascii: "\\"))), ones)
        return (word | below0x20 | isDelete | isQuote | isBackslash) & highBits != 0
    }

    /// High bits set at (at least) the lowest zero byte of `word`; none when it has none.
    @inline(__always)
    private static func hasZeroByte<Word: FixedWidthInteger & UnsignedInteger>(_ word: Word, _ ones: Word) -> Word {
        (word &- ones) & ~word
    }
}
