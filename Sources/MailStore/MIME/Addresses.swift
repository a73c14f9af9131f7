// Addresses: RFC 5322 address lists (mailboxes and groups) into ENVELOPE address structures.

extension MIMEParser {
    /// Reads an address list into ``MessageStructure/addresses``.
    ///
    ///     address-list = (address *("," address)) / obs-addr-list         ; RFC 5322 3.4
    ///     address      = mailbox / group
    ///     mailbox      = name-addr / addr-spec
    ///     name-addr    = [display-name] angle-addr
    ///     angle-addr   = [CFWS] "<" [obs-route] addr-spec ">" [CFWS]
    ///     group        = display-name ":" [group-list] ";" [CFWS]
    ///     addr-spec    = local-part "@" domain
    ///
    /// Best effort on broken lists: empty elements are skipped, a group left open is closed at the
    /// end, a mailbox with no phrase takes its trailing comment as its name (`ann@x.org (Ann)`).
    /// A missing local part or domain is written `MISSING_MAILBOX` / `MISSING_DOMAIN` as Dovecot
    /// does (a NIL host would turn the address into a group marker): a lone word is a local part
    /// without a domain, several words are a name without an address.
    mutating func readAddressList(_ value: Range<Int>) -> Range<Int> {
        let first = structure.addresses.count
        var tokens = HeaderTokenizer(base, range: value)
        var inGroup = false
        while structure.addresses.count < MIMELimits.maximumAddressCount {
            tokens.skipCFWS()
            guard let byte = tokens.peek else { break }
            if byte == UInt8(ascii: ",") || byte == UInt8(ascii: ">") {
                tokens.position += 1
                continue
            }
            if byte == UInt8(ascii: ";") {
                tokens.position += 1
                if inGroup {
                    structure.addresses.append(MIMEAddress(name: nil, adl: nil, mailbox: nil, host: nil))
                    inGroup = false
                }
                continue
            }
            readWords(&tokens)
            switch tokens.peek {
            case UInt8(ascii: ":"):
                tokens.position += 1
                if inGroup { continue }  // groups do not nest: ignore a second start
                inGroup = true
                let name = appendWords(separatedBySpaces: true)
                structure.addresses.append(MIMEAddress(name: nil, adl: nil, mailbox: name, host: nil))
            case UInt8(ascii: "<"):
                tokens.position += 1
                let name = scratchWords.isEmpty ? nil : appendWords(separatedBySpaces: true)
                readAngleAddress(&tokens, name: name)
            case UInt8(ascii: "@"):
                tokens.position += 1
                let mailbox = appendWords(separatedBySpaces: false) ?? .missingMailbox
                tokens.lastComment = nil
                let host = readDomain(&tokens) ?? .missingDomain
                tokens.skipCFWS()
                let name = tokens.lastComment.map { structure.appendUnquoted(base, $0) }
                structure.addresses.append(MIMEAddress(name: name, adl: nil, mailbox: mailbox, host: host))
            default:
                if scratchWords.isEmpty {
                    tokens.position += 1  // a stray special: step over it
                    continue
                }
                if scratchWords.count == 1 && !scratchWords[0].isQuoted {
                    let mailbox = appendWords(separatedBySpaces: false)
                    structure.addresses.append(MIMEAddress(name: nil, adl: nil, mailbox: mailbox, host: .missingDomain))
                } else {
                    let name = appendWords(separatedBySpaces: true)
                    structure.addresses.append(MIMEAddress(name: name, adl: nil, mailbox: .missingMailbox,
                                                           host: .missingDomain))
                }
            }
        }
        if inGroup { structure.addresses.append(MIMEAddress(name: nil, adl: nil, mailbox: nil, host: nil)) }
        return first..<structure.addresses.count
    }

    /// Collects words (atoms, dot-atoms, quoted strings) up to a special into `scratchWords`.
    ///
    ///     phrase = 1*word / obs-phrase ; word = atom / quoted-string
    private mutating func readWords(_ tokens: inout HeaderTokenizer) {
        scratchWords.removeAll(keepingCapacity: true)
        while true {
            tokens.skipCFWS()
            guard let byte = tokens.peek else { return }
            if byte == UInt8(ascii: "\"") {
                scratchWords.append((tokens.readQuotedString(), true))
                continue
            }
            let word = tokens.readWord(stoppingAt: ",;:<>@")
            if word.isEmpty { return }
            if scratchWords.count < 1_000 { scratchWords.append((word, false)) }
        }
    }

    /// Appends the collected words to the pool: a display name (words separated by one space,
    /// quotes removed) or a local part (words run together); nil when there are none.
    private mutating func appendWords(separatedBySpaces: Bool) -> MIMEText? {
        guard !scratchWords.isEmpty else { return nil }
        let offset = UInt32(truncatingIfNeeded: structure.pool.count)
        for (index, word) in scratchWords.enumerated() {
            if separatedBySpaces && index > 0 { structure.pool.append(MIMEBytes.space) }
            if word.isQuoted {
                structure.appendUnquotedBytes(base, word.range)
            } else {
                structure.pool.append(contentsOf: base[word.range])
            }
        }
        return MIMEText(offset: offset, count: UInt32(truncatingIfNeeded: structure.pool.count) &- offset)
    }

    /// After `<`: `[obs-route] addr-spec ">"`.
    ///
    ///     obs-route = obs-domain-list ":" ; obs-domain-list = *(CFWS / ",") "@" domain *("," [CFWS] ["@" domain])
    private mutating func readAngleAddress(_ tokens: inout HeaderTokenizer, name: MIMEText?) {
        tokens.skipCFWS()
        var adl: MIMEText?
        if tokens.peek == UInt8(ascii: "@") {
            let start = tokens.position
            while let byte = tokens.peek, byte != UInt8(ascii: ":"), byte != UInt8(ascii: ">") { tokens.position += 1 }
            if tokens.peek == UInt8(ascii: ":") {
                let offset = UInt32(truncatingIfNeeded: structure.pool.count)
                for byte in base[start..<tokens.position] where !MIMEBytes.isWhitespace(byte) {
                    structure.pool.append(byte)
                }
                adl = MIMEText(offset: offset, count: UInt32(truncatingIfNeeded: structure.pool.count) &- offset)
                tokens.position += 1
            } else {
                tokens.position = start
            }
        }
        readWords(&tokens)
        let mailbox = appendWords(separatedBySpaces: false)
        var host = MIMEText.missingDomain
        if tokens.peek == UInt8(ascii: "@") {
            tokens.position += 1
            host = readDomain(&tokens) ?? .missingDomain
        }
        // Skip to the closing ">" (or the end of this address when it is missing).
        while let byte = tokens.peek, byte != UInt8(ascii: ">"), byte != UInt8(ascii: ",") {
            tokens.position += 1
        }
        if tokens.peek == UInt8(ascii: ">") { tokens.position += 1 }
        structure.addresses.append(MIMEAddress(name: name, adl: adl, mailbox: mailbox ?? .missingMailbox, host: host))
    }

    ///     domain = dot-atom / domain-literal / obs-domain
    private mutating func readDomain(_ tokens: inout HeaderTokenizer) -> MIMEText? {
        readWords(&tokens)
        return appendWords(separatedBySpaces: false)
    }
}
