// StructureBuilder: appending header-derived strings to a MessageStructure's pool.

extension MessageStructure {
    /// Copies message bytes into the pool as they are.
    mutating func appendPool(_ base: UnsafeRawBufferPointer, _ range: Range<Int>) -> MIMEText {
        let offset = UInt32(truncatingIfNeeded: pool.count)
        pool.append(contentsOf: base[range])
        return MIMEText(offset: offset, count: UInt32(truncatingIfNeeded: range.count))
    }

    /// Copies bytes into the pool.
    mutating func appendPool<C: Collection>(_ bytes: C) -> MIMEText where C.Element == UInt8 {
        let offset = UInt32(truncatingIfNeeded: pool.count)
        pool.append(contentsOf: bytes)
        return MIMEText(offset: offset, count: UInt32(truncatingIfNeeded: pool.count) &- offset)
    }

    /// Copies a raw header value unfolded: CR and LF removed, everything else kept as written
    /// (RFC 5322 section 2.2.3), which is also what Dovecot sends for Message-ID and Date.
    mutating func appendUnfolded(_ base: UnsafeRawBufferPointer, _ range: Range<Int>) -> MIMEText {
        let offset = UInt32(truncatingIfNeeded: pool.count)
        for byte in base[range] where byte != MIMEBytes.cr && byte != MIMEBytes.lf { pool.append(byte) }
        return MIMEText(offset: offset, count: UInt32(truncatingIfNeeded: pool.count) &- offset)
    }

    /// Copies the inside of a quoted string: quoted-pairs unescaped, line breaks removed.
    mutating func appendUnquoted(_ base: UnsafeRawBufferPointer, _ range: Range<Int>) -> MIMEText {
        let offset = UInt32(truncatingIfNeeded: pool.count)
        appendUnquotedBytes(base, range)
        return MIMEText(offset: offset, count: UInt32(truncatingIfNeeded: pool.count) &- offset)
    }

    mutating func appendUnquotedBytes(_ base: UnsafeRawBufferPointer, _ range: Range<Int>) {
        MIMEBytes.unquote(base[range], into: &pool)
    }

    /// The first word of a value (e.g. Content-Transfer-Encoding), comments skipped; nil if none.
    mutating func appendWord(_ base: UnsafeRawBufferPointer, _ range: Range<Int>) -> MIMEText? {
        var tokens = HeaderTokenizer(base, range: range)
        tokens.skipCFWS()
        let word = tokens.readWord(stoppingAt: ";")
        return word.isEmpty ? nil : appendPool(base, word)
    }
}
