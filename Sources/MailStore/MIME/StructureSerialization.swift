// StructureSerialization: MessageStructure to a compact, versioned byte blob and back, for the
// store's index cache.

/// Blob layout (all integers LEB128 varints unless noted):
///
///     blob      = magic version messageSize bareLineFeeds pool [partsLength] parts envelopes addresses
///                 parameters languages [header]
///     magic     = "AMS" (3 bytes) ; version = 1 / 2 / 3 (1 byte; 2 adds header, 3 adds partsLength)
///     header    = nstring ; the copy of the message's own header in the pool (`cachedHeader`), or NIL
///     pool      = count *OCTET
///     partsLength = the byte length of `parts`, so SEARCH SUBJECT reaches the envelopes without
///                 reading every part
///     parts     = count *(kind depth parent+1 subtreeEnd envelope+1 headerStart headerLength bodyLength
///                 lines bareLineFeeds text text range nstring nstring nstring nstring nstring range
///                 range nstring)
///     envelopes = count *(nstring nstring range*6 nstring nstring)
///     addresses = count *(nstring*4) ; parameters = count *(text text nstring) ; languages = count *text
///     text      = offset length ; nstring = 0 / (offset+1 length) ; range = lowerBound length
///
/// Reading validates everything an accessor could trip on (offsets inside the pool, ranges inside
/// their arrays, a well-formed part tree, offsets inside the message), so a damaged blob gives nil.
extension MessageStructure {
    /// The format written by ``serialize(into:)``. Versions 1 (no header copy) and 2 (no parts
    /// length) still read, since caches on disk hold them; a blob of any other version reads as nil
    /// (rebuild).
    public static let serializationVersion: UInt8 = 3
    private static let magic: [UInt8] = [UInt8(ascii: "A"), UInt8(ascii: "M"), UInt8(ascii: "S")]

    /// Appends the structure's blob to `output`.
    public func serialize(into output: inout [UInt8]) {
        serialize(into: &output, version: Self.serializationVersion)
    }

    /// Appends the blob in the layout of `version` (1 to the current one): the older layouts are
    /// what caches written by earlier releases hold, which tests check still read.
    func serialize(into output: inout [UInt8], version: UInt8) {
        var writer = BlobWriter(output: output)
        output = []
        writer.output.append(contentsOf: Self.magic)
        writer.output.append(version)
        writer.write(messageSize)
        writer.write(messageBareLineFeeds)
        writer.write(pool.count)
        writer.output.append(contentsOf: pool)
        let partsStart = writer.output.count
        writer.write(parts.count)
        for part in parts {
            writer.write(Int(part.kind.rawValue))
            writer.write(part.depth)
            writer.write(part.parent + 1)
            writer.write(part.subtreeEnd)
            writer.write(part.envelope + 1)
            writer.write(part.headerStart)
            writer.write(part.bodyStart - part.headerStart)
            writer.write(part.bodyEnd - part.bodyStart)
            writer.write(part.bodyLines)
            writer.write(part.bodyBareLineFeeds)
            writer.write(part.type)
            writer.write(part.subtype)
            writer.write(part.parameters)
            writer.write(part.id)
            writer.write(part.description)
            writer.write(part.encoding)
            writer.write(part.md5)
            writer.write(part.disposition)
            writer.write(part.dispositionParameters)
            writer.write(part.languages)
            writer.write(part.location)
        }
        if version >= 3 { writer.insertLength(since: partsStart) }
        writer.write(envelopes.count)
        for envelope in envelopes {
            writer.write(envelope.date)
            writer.write(envelope.subject)
            writer.write(envelope.from)
            writer.write(envelope.sender)
            writer.write(envelope.replyTo)
            writer.write(envelope.to)
            writer.write(envelope.cc)
            writer.write(envelope.bcc)
            writer.write(envelope.inReplyTo)
            writer.write(envelope.messageID)
        }
        writer.write(addresses.count)
        for address in addresses {
            writer.write(address.name)
            writer.write(address.adl)
            writer.write(address.mailbox)
            writer.write(address.host)
        }
        writer.write(parameters.count)
        for parameter in parameters {
            writer.write(parameter.name)
            writer.write(parameter.value)
            writer.write(parameter.extendedValue)
        }
        writer.write(languageTags.count)
        for tag in languageTags { writer.write(tag) }
        if version >= 2 { writer.write(cachedHeader) }
        output = writer.output
    }

    /// Reads a blob written by ``serialize(into:)``; nil when it is damaged, truncated, has bytes
    /// after its end or is of another version.
    public init?(serialized blob: some Collection<UInt8>) {
        let structure = blob.withContiguousStorageIfAvailable { Self.read(UnsafeRawBufferPointer($0)) }
            ?? Array(blob).withUnsafeBytes { Self.read($0) }
        guard let structure else { return nil }
        self = structure
    }

    /// Reads a blob straight from memory (an mmap of the index, say); nil as above.
    public init?(serialized blob: UnsafeRawBufferPointer) {
        guard let structure = Self.read(blob) else { return nil }
        self = structure
    }

    /// The raw SUBJECT of the message's own envelope in a blob (nil inside when it has none),
    /// read without building the structure: SEARCH SUBJECT asks it of every message. Nil when the
    /// blob is damaged or of another version (the caller then builds the structure the usual way).
    public static func envelopeSubject(inSerialized blob: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer?? {
        guard var reader = openBlob(blob), let (_, _, poolBytes) = reader.readPrologue(), reader.skipParts()
        else { return nil }
        guard let envelopeCount = reader.readCount(elementSize: 10), envelopeCount > 0,
              let envelope = reader.readEnvelope()
        else { return nil }
        guard let subject = envelope.subject else { return .some(nil) }
        return .some(UnsafeRawBufferPointer(rebasing: poolBytes[Int(subject.offset)..<Int(subject.offset + subject.count)]))
    }

    /// A reader past the magic of a blob of a version this code reads; nil for anything else.
    private static func openBlob(_ blob: UnsafeRawBufferPointer) -> BlobReader? {
        guard blob.count >= 4, blob[0] == magic[0], blob[1] == magic[1], blob[2] == magic[2],
            blob[3] >= 1, blob[3] <= serializationVersion
        else { return nil }
        var reader = BlobReader(blob: blob, version: blob[3])
        reader.position = 4
        return reader
    }

    /// Replaces this structure with the one in a blob written by ``serialize(into:)``, keeping the
    /// arrays' capacity: FETCH decodes message after message into one structure, so after the first
    /// few it allocates nothing. False when the blob is damaged, truncated, has bytes after its end
    /// or is of another version; the structure is then left half-read, fit only to be read into
    /// again.
    public mutating func read(serialized blob: UnsafeRawBufferPointer) -> Bool {
        guard var reader = Self.openBlob(blob), let (messageSize, bareLineFeeds, poolBytes) = reader.readPrologue(),
              poolBytes.starts(with: MIMEText.prelude)
        else { return false }
        self.messageSize = messageSize
        messageBareLineFeeds = bareLineFeeds
        pool.removeAll(keepingCapacity: true)
        pool.append(contentsOf: poolBytes)
        parts.removeAll(keepingCapacity: true)
        envelopes.removeAll(keepingCapacity: true)
        addresses.removeAll(keepingCapacity: true)
        parameters.removeAll(keepingCapacity: true)
        languageTags.removeAll(keepingCapacity: true)
        cachedHeader = nil

        // Every count is read before its section, so each array grows once at most (counts are
        // bounded by the blob's length, see readCount).
        guard let partCount = reader.readCount(elementSize: 15), partCount > 0 else { return false }
        parts.reserveCapacity(partCount)
        for _ in 0..<partCount {
            guard let part = reader.readPart() else { return false }
            parts.append(part)
        }
        guard reader.isAtEndOfParts, let envelopeCount = reader.readCount(elementSize: 10) else { return false }
        envelopes.reserveCapacity(envelopeCount)
        for _ in 0..<envelopeCount {
            guard let envelope = reader.readEnvelope() else { return false }
            envelopes.append(envelope)
        }
        guard let addressCount = reader.readCount(elementSize: 4) else { return false }
        addresses.reserveCapacity(addressCount)
        for _ in 0..<addressCount {
            guard let name = reader.readNString(), let adl = reader.readNString(), let mailbox = reader.readNString(),
                let host = reader.readNString()
            else { return false }
            addresses.append(MIMEAddress(name: name, adl: adl, mailbox: mailbox, host: host))
        }
        guard let parameterCount = reader.readCount(elementSize: 5) else { return false }
        parameters.reserveCapacity(parameterCount)
        for _ in 0..<parameterCount {
            guard let name = reader.readText(), let value = reader.readText(), let extended = reader.readNString()
            else { return false }
            parameters.append(MIMEParameter(name: name, value: value, extendedValue: extended))
        }
        guard let languageCount = reader.readCount(elementSize: 2) else { return false }
        languageTags.reserveCapacity(languageCount)
        for _ in 0..<languageCount {
            guard let tag = reader.readText() else { return false }
            languageTags.append(tag)
        }
        if reader.version >= 2 {
            guard let header = reader.readNString() else { return false }
            cachedHeader = header
        }
        guard reader.position == blob.count, isConsistent else { return false }
        // A header copy must be exactly the message's own header.
        if let cachedHeader, Int(cachedHeader.count) != parts[0].headerRange.count { return false }
        return true
    }

    private static func read(_ blob: UnsafeRawBufferPointer) -> MessageStructure? {
        var structure = MessageStructure(messageSize: 0)
        // Not the shared prelude: the read would copy it before emptying it.
        structure.pool = []
        return structure.read(serialized: blob) ? structure : nil
    }

    /// Whether every index and range points where accessors and section resolution may go.
    private var isConsistent: Bool {
        guard !envelopes.isEmpty, parts[0].parent == -1, parts[0].subtreeEnd == parts.count, parts[0].depth == 0
        else { return false }
        for (index, part) in parts.enumerated() {
            guard part.headerStart >= 0, part.headerStart <= part.bodyStart, part.bodyStart <= part.bodyEnd,
                part.bodyEnd <= messageSize, part.subtreeEnd > index, part.subtreeEnd <= parts.count,
                part.envelope >= -1, part.envelope < envelopes.count,
                part.parameters.upperBound <= parameters.count,
                part.dispositionParameters.upperBound <= parameters.count,
                part.languages.upperBound <= languageTags.count
            else { return false }
            if index > 0 {
                let parent = part.parent
                guard parent >= 0, parent < index, part.subtreeEnd <= parts[parent].subtreeEnd,
                    part.depth == parts[parent].depth + 1
                else { return false }
            }
            if part.kind == .message && (part.envelope < 0 || part.subtreeEnd == index + 1) { return false }
        }
        // Named one by one: an array of the six lists would be built per envelope.
        for envelope in envelopes {
            let end = max(envelope.from.upperBound, envelope.sender.upperBound, envelope.replyTo.upperBound,
                          envelope.to.upperBound, envelope.cc.upperBound, envelope.bcc.upperBound)
            if end > addresses.count { return false }
        }
        return true
    }
}

/// Appends LEB128 varints and pooled-string references.
private struct BlobWriter {
    var output: [UInt8]

    mutating func write(_ value: Int) {
        var remaining = UInt64(UInt(bitPattern: value))
        while remaining >= 0x80 {
            output.append(UInt8(truncatingIfNeeded: remaining) | 0x80)
            remaining >>= 7
        }
        output.append(UInt8(remaining))
    }

    mutating func write(_ text: MIMEText) {
        write(Int(text.offset))
        write(Int(text.count))
    }

    mutating func write(_ text: MIMEText?) {
        guard let text else {
            write(0)
            return
        }
        write(Int(text.offset) + 1)
        write(Int(text.count))
    }

    mutating func write(_ range: Range<Int>) {
        write(range.lowerBound)
        write(range.count)
    }

    /// Puts the byte length of what was written since `start` at `start`, as a varint (the length
    /// is known only once the section is written; blobs are written once and read many times).
    mutating func insertLength(since start: Int) {
        var length = BlobWriter(output: [])
        length.write(output.count - start)
        output.insert(contentsOf: length.output, at: start)
    }
}

/// Reads what ``BlobWriter`` wrote, checking bounds at every step; nil means damaged.
private struct BlobReader {
    let blob: UnsafeRawBufferPointer
    let version: UInt8
    var position = 0
    var poolCount = 0
    /// Where `parts` ends, from a version 3 prologue; nil for older blobs.
    var partsEnd: Int?

    init(blob: UnsafeRawBufferPointer, version: UInt8) {
        self.blob = blob
        self.version = version
    }

    /// A non-negative varint that fits in 62 bits (offsets and counts never need more).
    @inline(__always)
    mutating func read() -> Int? {
        // Most varints of a blob (kinds, flags, short lengths) are one byte: those are read inline
        // where they are asked for; only the longer ones call out.
        if position < blob.count, blob[position] < 0x80 {
            defer { position += 1 }
            return Int(blob[position])
        }
        return readLongerVarint()
    }

    /// ``read()`` of a varint of more than one byte (or of none left).
    @inline(never)
    private mutating func readLongerVarint() -> Int? {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while position < blob.count && shift < 63 {
            let byte = blob[position]
            position += 1
            value |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return value < 1 << 62 ? Int(value) : nil }
            shift += 7
        }
        return nil
    }

    /// A count of elements that each take at least `elementSize` bytes, so a damaged count cannot
    /// make the reader reserve or loop more than the blob could hold.
    mutating func readCount(elementSize: Int) -> Int? {
        guard let count = read(), count <= (blob.count - position) / elementSize else { return nil }
        return count
    }

    mutating func readBytes(_ count: Int) -> UnsafeRawBufferPointer? {
        guard count <= blob.count - position else { return nil }
        defer { position += count }
        return UnsafeRawBufferPointer(rebasing: blob[position..<position + count])
    }

    mutating func readText() -> MIMEText? {
        guard let offset = read(), let count = read(), offset <= poolCount, count <= poolCount - offset,
            let offset32 = UInt32(exactly: offset), let count32 = UInt32(exactly: count)
        else { return nil }
        return MIMEText(offset: offset32, count: count32)
    }

    /// nil when damaged, `.some(nil)` for NIL.
    mutating func readNString() -> MIMEText?? {
        guard let marker = read() else { return nil }
        guard marker > 0 else { return .some(nil) }
        guard let count = read(), marker - 1 <= poolCount, count <= poolCount - (marker - 1),
            let offset32 = UInt32(exactly: marker - 1), let count32 = UInt32(exactly: count)
        else { return nil }
        return .some(MIMEText(offset: offset32, count: count32))
    }

    mutating func readRange() -> Range<Int>? {
        guard let lower = read(), let count = read(), lower <= Int.max - count else { return nil }
        return lower..<lower + count
    }

    /// messageSize bareLineFeeds pool [partsLength]: the sizes and the pool's bytes (which later
    /// texts index); from version 3 on, where the parts end (``partsEnd``).
    mutating func readPrologue() -> (messageSize: Int, bareLineFeeds: Int, pool: UnsafeRawBufferPointer)? {
        guard let messageSize = read(), let bareLineFeeds = read(), bareLineFeeds <= messageSize,
            let poolCount = readCount(elementSize: 1), let poolBytes = readBytes(poolCount)
        else { return nil }
        self.poolCount = poolCount
        if version >= 3 {
            guard let partsLength = readCount(elementSize: 1) else { return nil }
            partsEnd = position + partsLength
        }
        return (messageSize, bareLineFeeds, poolBytes)
    }

    /// Moves past `parts` to the envelopes: straight there when the prologue says where they end,
    /// else by reading every part; false when damaged.
    mutating func skipParts() -> Bool {
        if let partsEnd {
            position = partsEnd
            return true
        }
        guard let partCount = readCount(elementSize: 15), partCount > 0 else { return false }
        for _ in 0..<partCount where readPart() == nil { return false }
        return true
    }

    /// Whether the parts just read end where the prologue said (always true before version 3).
    var isAtEndOfParts: Bool { partsEnd.map { $0 == position } ?? true }

    /// One entry of `parts` (see the layout above).
    mutating func readPart() -> MIMEPart? {
        guard let kindValue = read(), kindValue <= 2, let kind = MIMEPart.Kind(rawValue: UInt8(kindValue)),
            let depth = read(), let parentPlusOne = read(),
            let subtreeEnd = read(), let envelopePlusOne = read(), let headerStart = read(),
            let headerLength = read(), let bodyLength = read(), let lines = read(),
            let bare = read(), let type = readText(), let subtype = readText(),
            let parameters = readRange(), let id = readNString(),
            let description = readNString(), let encoding = readNString(),
            let md5 = readNString(), let disposition = readNString(),
            let dispositionParameters = readRange(), let languages = readRange(),
            let location = readNString()
        else { return nil }
        return MIMEPart(
            kind: kind, depth: depth, parent: parentPlusOne - 1, subtreeEnd: subtreeEnd,
            envelope: envelopePlusOne - 1, headerStart: headerStart, bodyStart: headerStart &+ headerLength,
            bodyEnd: headerStart &+ headerLength &+ bodyLength, bodyLines: lines, bodyBareLineFeeds: bare,
            type: type, subtype: subtype, parameters: parameters, id: id, description: description,
            encoding: encoding, md5: md5, disposition: disposition, dispositionParameters: dispositionParameters,
            languages: languages, location: location)
    }

    /// One entry of `envelopes`.
    mutating func readEnvelope() -> MIMEEnvelope? {
        var envelope = MIMEEnvelope()
        guard let date = readNString(), let subject = readNString(), let from = readRange(),
            let sender = readRange(), let replyTo = readRange(), let to = readRange(),
            let cc = readRange(), let bcc = readRange(), let inReplyTo = readNString(),
            let messageID = readNString()
        else { return nil }
        (envelope.date, envelope.subject) = (date, subject)
        (envelope.inReplyTo, envelope.messageID) = (inReplyTo, messageID)
        (envelope.from, envelope.sender, envelope.replyTo) = (from, sender, replyTo)
        (envelope.to, envelope.cc, envelope.bcc) = (to, cc, bcc)
        return envelope
    }
}
