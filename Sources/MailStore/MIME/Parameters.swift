// Parameters: Content-Type and Content-Disposition parameters, with RFC 2231 continuations,
// charsets and percent-encoding.

/// A parameter as written, before RFC 2231 sections are joined.
struct RawParameter {
    /// The attribute name up to its first `*`.
    var name: Range<Int>
    /// `name*N` or `name*N*`: the section number; nil for `name` and `name*`.
    var section: Int?
    /// Whether the value is RFC 2231 extended (`name*` or `name*N*`): percent-encoded, and for the
    /// first section prefixed by `charset'language'`.
    var isExtended: Bool
    var value: Range<Int>
    var isQuoted: Bool
    var isUsed = false
}

extension MIMEParser {
    /// Reads `*(";" parameter)` and appends the joined parameters to the structure.
    ///
    ///     parameter := attribute "=" value                                ; RFC 2045 5.1
    ///     value     := token / quoted-string
    ///     extended-parameter := (ext-octet-name "*" ...) / (section "*" "=" ext-value)   ; RFC 2231 7
    ///
    /// Lenient: junk between parameters is skipped up to the next `;`.
    mutating func readParameters(_ tokens: inout HeaderTokenizer) -> Range<Int> {
        scratchParameters.removeAll(keepingCapacity: true)
        while !tokens.atEnd && scratchParameters.count < MIMELimits.maximumParametersPerField {
            tokens.skipCFWS()
            guard tokens.peek == UInt8(ascii: ";") else {
                tokens.skip(past: UInt8(ascii: ";"))
                continue
            }
            tokens.position += 1
            tokens.skipCFWS()
            let name = tokens.readWord(stoppingAt: "=;")
            tokens.skipCFWS()
            guard !name.isEmpty, tokens.peek == UInt8(ascii: "=") else { continue }
            tokens.position += 1
            tokens.skipCFWS()
            let isQuoted = tokens.peek == UInt8(ascii: "\"")
            let value = isQuoted ? tokens.readQuotedString() : tokens.readWord(stoppingAt: ";")
            scratchParameters.append(Self.splitName(base, name, value: value, isQuoted: isQuoted))
        }
        let first = structure.parameters.count
        for index in scratchParameters.indices where !scratchParameters[index].isUsed {
            let parameter = scratchParameters[index]
            if parameter.section == nil && !parameter.isExtended {
                scratchParameters[index].isUsed = true
                let name = structure.appendPool(base, parameter.name)
                let value = parameter.isQuoted
                    ? structure.appendUnquoted(base, parameter.value) : structure.appendPool(base, parameter.value)
                structure.parameters.append(MIMEParameter(name: name, value: value, extendedValue: nil))
            } else {
                appendJoined(startingAt: index)
            }
        }
        return first..<structure.parameters.count
    }

    /// `name`, `name*`, `name*3` or `name*3*`: where the attribute name ends and what follows.
    private static func splitName(_ base: UnsafeRawBufferPointer, _ name: Range<Int>, value: Range<Int>,
                                  isQuoted: Bool) -> RawParameter
    {
        var star = name.lowerBound
        while star < name.upperBound && base[star] != UInt8(ascii: "*") { star += 1 }
        guard star < name.upperBound else {
            return RawParameter(name: name, section: nil, isExtended: false, value: value, isQuoted: isQuoted)
        }
        var cursor = star + 1
        var section: Int?
        while cursor < name.upperBound, base[cursor] &- 48 < 10,
            (section ?? 0) < MIMELimits.maximumContinuationSections
        {
            section = (section ?? 0) * 10 + Int(base[cursor] - 48)
            cursor += 1
        }
        var isExtended = false
        if cursor < name.upperBound && base[cursor] == UInt8(ascii: "*") {
            isExtended = true
            cursor += 1
        }
        if section == nil && cursor == star + 1 { isExtended = true }  // `name*`
        guard cursor == name.upperBound, star > name.lowerBound else {
            // Not RFC 2231 after all (`a*b=`): keep the name whole.
            return RawParameter(name: name, section: nil, isExtended: false, value: value, isQuoted: isQuoted)
        }
        return RawParameter(name: name.lowerBound..<star, section: section, isExtended: isExtended,
                            value: value, isQuoted: isQuoted)
    }

    /// Joins the RFC 2231 sections of the parameter at `first` (and its later namesakes) into one
    /// parameter: the decoded UTF-8 value plus the joined wire form.
    private mutating func appendJoined(startingAt first: Int) {
        let nameRange = scratchParameters[first].name
        // Sections in order 0, 1, 2 ... ; RFC 2231 3 says sections may come in any order.
        var nextSection = 0
        var charset: Range<Int> = 0..<0
        let name = structure.appendPool(base, nameRange)
        scratchBytes.removeAll(keepingCapacity: true)
        var wire: [UInt8] = []
        var found = true
        var sawExtended = false
        while found {
            found = false
            for index in first..<scratchParameters.count where !scratchParameters[index].isUsed {
                let candidate = scratchParameters[index]
                guard candidate.section ?? 0 == nextSection, candidate.section != nil || candidate.isExtended,
                    Self.sameName(base, candidate.name, nameRange)
                else { continue }
                scratchParameters[index].isUsed = true
                var text = candidate.value
                if nextSection == 0 {
                    wire.append(contentsOf: [UInt8(ascii: "'"), UInt8(ascii: "'")])
                }
                if candidate.isExtended && nextSection == 0 {
                    // ext-value := [charset] "'" [language] "'" extended-other-values
                    let firstQuote = base[text].firstIndex(of: UInt8(ascii: "'"))
                    if let firstQuote, let secondQuote = base[(firstQuote + 1)..<text.upperBound]
                        .firstIndex(of: UInt8(ascii: "'"))
                    {
                        charset = text.lowerBound..<firstQuote
                        wire.removeAll(keepingCapacity: true)
                        wire.append(contentsOf: base[text.lowerBound...secondQuote])
                        text = (secondQuote + 1)..<text.upperBound
                    }
                }
                if candidate.isExtended {
                    sawExtended = true
                    Self.percentDecode(base[text], into: &scratchBytes)
                    wire.append(contentsOf: base[text])
                } else {
                    let start = scratchBytes.count
                    if candidate.isQuoted {
                        MIMEBytes.unquote(base[text], into: &scratchBytes)
                    } else {
                        scratchBytes.append(contentsOf: base[text])
                    }
                    Self.percentEncode(scratchBytes[start...], into: &wire)
                }
                nextSection += 1
                found = candidate.section != nil && nextSection < MIMELimits.maximumContinuationSections
                break
            }
        }
        // Sections past a gap (or without a section 0) are dropped, so a name gives one parameter.
        for index in first..<scratchParameters.count where !scratchParameters[index].isUsed {
            let other = scratchParameters[index]
            if (other.section != nil || other.isExtended) && Self.sameName(base, other.name, nameRange) {
                scratchParameters[index].isUsed = true
            }
        }
        guard sawExtended else {
            // Only plain sections (`name*0="a"; name*1="b"`): a plain parameter, joined.
            let value = structure.appendPool(scratchBytes)
            structure.parameters.append(MIMEParameter(name: name, value: value, extendedValue: nil))
            return
        }
        let valueOffset = UInt32(truncatingIfNeeded: structure.pool.count)
        var decoder = MIMECharsetDecoder(charsetName: base[charset])
        scratchBytes.withUnsafeBytes { decoder.decode($0, into: &structure.pool) }
        decoder.finish(into: &structure.pool)
        let value = MIMEText(offset: valueOffset,
                             count: UInt32(truncatingIfNeeded: structure.pool.count) &- valueOffset)
        let extended = structure.appendPool(wire)
        structure.parameters.append(MIMEParameter(name: name, value: value, extendedValue: extended))
    }

    private static func sameName(_ base: UnsafeRawBufferPointer, _ left: Range<Int>, _ right: Range<Int>) -> Bool {
        MIMEBytes.equalsIgnoringCase(base[left], base[right])
    }

    /// `%XX` to the byte it names; a `%` not followed by two hex digits stays as it is.
    static func percentDecode(_ bytes: Slice<UnsafeRawBufferPointer>, into output: inout [UInt8]) {
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let byte = bytes[index]
            if byte == UInt8(ascii: "%") && index + 2 < bytes.endIndex {
                if let high = MIMEBytes.hexValue(bytes[index + 1]), let low = MIMEBytes.hexValue(bytes[index + 2]) {
                    output.append(high << 4 | low)
                    index += 3
                    continue
                }
            }
            output.append(byte)
            index += 1
        }
    }

    /// Percent-encodes everything but RFC 2231 `attribute-char`s (so the wire form stays a token).
    static func percentEncode(_ bytes: ArraySlice<UInt8>, into output: inout [UInt8]) {
        let hex: StaticString = "0123456789ABCDEF"
        for byte in bytes {
            let isSpecial = byte <= 32 || byte >= 127 || byte == UInt8(ascii: "*") || byte == UInt8(ascii: "'")
                || byte == UInt8(ascii: "%") || Self.isTSpecial(byte)
            if isSpecial {
                output.append(UInt8(ascii: "%"))
                output.append(hex.utf8Start[Int(byte >> 4)])
                output.append(hex.utf8Start[Int(byte & 15)])
            } else {
                output.append(byte)
            }
        }
    }

    /// tspecials := "(" / ")" / "<" / ">" / "@" / "," / ";" / ":" / "\" / <"> / "/" / "[" / "]" / "?" / "="
    static func isTSpecial(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: "@"),
            UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: ":"), UInt8(ascii: "\\"), UInt8(ascii: "\""),
            UInt8(ascii: "/"), UInt8(ascii: "["), UInt8(ascii: "]"), UInt8(ascii: "?"), UInt8(ascii: "="):
            return true
        default:
            return false
        }
    }
}
