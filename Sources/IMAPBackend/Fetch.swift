// IMAPBackend: FETCH and UID FETCH (RFC 9051 6.4.5, RFC 3516 BINARY), streaming bodies from the
// message files with backpressure.
//
// Message files that are already CRLF go out with sendfile (Connection.writeFile); files written by
// other servers with bare LF line ends are converted while being sent, and their canonical sizes are
// what RFC822.SIZE and the literal sizes report. A FETCH over many messages stops producing while the
// connection's queued output is above the high-water mark and goes on when the client has read it.

import Glibc
import IMAPProtocol
import Reactor
import Telemetry
import MailStore

/// One FETCH item, copied out of the read buffer (a FETCH may outlive the bytes it was parsed from).
enum FetchItem {
    case flags, uid, internalDate, rfc822Size, envelope, body, bodyStructure, modificationSequence, saveDate
    /// BODY[...], BODY.PEEK[...], RFC822, RFC822.HEADER, RFC822.TEXT; `label` is the response's name for it.
    case section(label: [UInt8], MIMESection, partial: IMAPPartial?, setsSeen: Bool)
    /// BINARY[part]<partial> (RFC 3516).
    case binary(label: [UInt8], part: [Int], partial: IMAPPartial?, setsSeen: Bool)
    /// BINARY.SIZE[part].
    case binarySize(label: [UInt8], part: [Int])

    var setsSeen: Bool {
        switch self {
        case .section(_, _, _, let setsSeen), .binary(_, _, _, let setsSeen): return setsSeen
        default: return false
        }
    }
}

/// A FETCH in progress. A session keeps its last one and fills it again for the next FETCH, so the
/// arrays keep their capacity and a FETCH of flags allocates nothing.
final class FetchJob {
    private(set) var tag: [UInt8] = []
    var targets: [(sequence: UInt32, uid: UInt32)] = []
    var items: [FetchItem] = []
    var next = 0
    /// Messages a non-PEEK body fetch marks \Seen (RFC 9051 6.4.5). The change is prepared once the
    /// bodies are written (preparing renames the files in the index before the disk) and is durable
    /// before the tagged OK.
    var seenChanged: Set<UInt32> = []
    /// The message whose response was cut off by backpressure in the middle of a streamed literal.
    var current: MessageInProgress?
    /// Whether an item needs the message's MIME structure (ENVELOPE, BODYSTRUCTURE, a part).
    private(set) var needsStructure = false
    /// Set while a worker analyses the next messages (the FETCH goes on when it is done).
    var analysing = false
    /// Targets before this index had their analysis tried: a message the worker could not analyse is
    /// not handed over again (FETCH parses it itself).
    var analysedThrough = 0
    /// A header section answered from the cached structure (HEADER.FIELDS of a message list), put
    /// together here before its literal is written: one array for the whole FETCH, not one per
    /// message.
    var sectionBytes: [UInt8] = []
    /// The structure of the last message written, whose arrays the next message's structure is
    /// decoded into: one structure for the whole FETCH, not five arrays and a pool per message.
    var spareStructure: MessageStructure?
    /// A FETCH by sequence number that skipped a message another session expunged (its EXPUNGE not
    /// yet sent here): the tagged OK says EXPUNGEISSUED. A UID FETCH ignores such UIDs (RFC 3501
    /// 6.4.8) and may send the EXPUNGE itself.
    private(set) var isUIDCommand = false
    var skippedExpunged = false

    /// Empties the job for the next FETCH (a UID FETCH when `isUIDCommand`), keeping the arrays'
    /// capacity.
    func reset(tag newTag: IMAPBytes, isUIDCommand uid: Bool) {
        tag.removeAll(keepingCapacity: true)
        for index in 0..<newTag.count { tag.append(newTag[index]) }
        targets.removeAll(keepingCapacity: true)
        items.removeAll(keepingCapacity: true)
        next = 0
        if !seenChanged.isEmpty { seenChanged = [] }
        current = nil
        analysing = false
        analysedThrough = 0
        needsStructure = false
        isUIDCommand = uid
        skippedExpunged = false
    }

    /// Most targets whose array a session keeps between FETCHes (32 KiB); a FETCH over a larger
    /// mailbox leaves its array behind, so an idle session holds no mailbox-sized buffer.
    static let retainedTargetCapacity = 4096
    /// Most parts a kept spare structure holds room for between FETCHes.
    static let retainedPartCapacity = 64

    /// Readies the finished job to be kept for the next FETCH: drops what it should not hold on to.
    func finished() {
        current = nil
        if targets.capacity > FetchJob.retainedTargetCapacity { targets = [] }
        if sectionBytes.capacity > MessageStructure.cachedHeaderLimit { sectionBytes = [] }
        // Like the targets: an idle session keeps no structure of an unusually large message.
        if let spare = spareStructure, spare.pool.capacity > 2 * MessageStructure.cachedHeaderLimit
            || spare.parts.capacity > FetchJob.retainedPartCapacity
        {
            spareStructure = nil
        }
    }

    /// Notes what the items need, once they are all in.
    func itemsComplete() {
        needsStructure = items.contains { item in
            switch item {
            case .envelope, .body, .bodyStructure, .binary, .binarySize: return true
            case .section(_, let section, _, _): return !(section.part.isEmpty && section.text == .all)
            default: return false
            }
        }
    }

    /// How many messages one worker round analyses: enough to amortise the hand-over, few enough
    /// that the blobs in flight stay small.
    static let analysisBatchSize = 64
}

/// One message's FETCH response while it is being written: where it stands in the item list, and
/// the literal being streamed, so the response can stop for backpressure and go on later.
struct MessageInProgress {
    let sequence: UInt32
    let uid: UInt32
    var info: MessageInfo
    var nextItem = 0
    var wroteFlags = false
    /// The message's structure once ``structureLoaded`` (nil when it has none); before, the previous
    /// message's, to decode into.
    var structure: MessageStructure?
    var structureLoaded = false
    var stream: LiteralStream?
    /// Bytes the stream still owes to the size its literal announced (a file cut short meanwhile is
    /// padded with spaces, since the announced size cannot be taken back).
    var owed = 0
}

extension IMAPSession {
    /// Output is written to the transport in pieces of about this size.
    static let fetchFlushThreshold = 64 * 1024

    /// `BODY[1.2]<0> ` or `BINARY[1]<0> `: a body item's name, with its origin when partial.
    private func writeItemName(_ label: [UInt8], partial: IMAPPartial?) {
        out.write(contentsOf: label)
        if let partial {
            out.write(byte: UInt8(ascii: "<"))
            out.write(number: partial.offset)
            out.write(byte: UInt8(ascii: ">"))
        }
        out.write(byte: 0x20)
    }

    /// `C: a UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])`
    func fetch(tag: IMAPBytes, set: IMAPSequenceSet, attributes: IMAPFetchAttributeList, uid: Bool) {
        guard let selected else { return }
        if !uid && selected.isOutOfRange(set) {
            finish(tag, .bad, "Message sequence number out of range")
            return
        }
        let job = spareFetchJob ?? FetchJob()
        spareFetchJob = nil
        job.reset(tag: tag, isUIDCommand: uid)
        if uid { job.items.append(.uid) }
        for attribute in attributes {
            guard let item = IMAPSession.fetchItem(attribute) else {
                spareFetchJob = job
                finish(tag, .bad, "Invalid section")
                return
            }
            if uid, case .uid = item { continue }
            job.items.append(item)
        }
        job.itemsComplete()
        selected.resolve(set, uid: uid, into: &job.targets)
        if !selected.readOnly, job.items.contains(where: \.setsSeen) {
            let unseen = job.targets.compactMap { target -> UInt32? in
                guard let position = selected.mailbox.position(of: target.uid) else { return nil }
                return selected.mailbox.message(at: position).flags.contains(.seen) ? nil : target.uid
            }
            job.seenChanged = Set(unseen)
        }
        fetchJob = job
        suspend()
        continueFetch()
    }

    /// Produces FETCH responses until done or until the output backs up.
    func continueFetch() {
        guard let job = fetchJob, let selected, transport != nil else {
            fetchJob = nil
            return
        }
        guard !job.analysing else { return }
        while true {
            // Taken out rather than copied: a copy would retain every array of its structure.
            if var message = job.current.take() {
                guard writeMessage(&message, job, selected) else {
                    job.current = message
                    return  // writable() calls back when the client has read enough
                }
                if message.structure != nil { job.spareStructure = message.structure.take() }
            }
            guard job.next < job.targets.count else { break }
            let target = job.targets[job.next]
            if job.needsStructure, job.next >= job.analysedThrough, !selected.mailbox.hasCachedAnalysis(of: target.uid),
               analyseAhead(job, selected)
            {
                return  // continues when the worker is done
            }
            job.next += 1
            let mailbox = selected.mailbox
            guard let position = mailbox.position(of: target.uid) else {
                job.skippedExpunged = true  // expunged meanwhile, by another session
                continue
            }
            var info = mailbox.message(at: position)
            if job.seenChanged.contains(target.uid) { info.flags.insert(.seen) }
            announceNewKeywords(selected)
            out.beginFetch(sequenceNumber: target.sequence)
            job.current = MessageInProgress(sequence: target.sequence, uid: target.uid, info: info,
                                            structure: job.spareStructure.take())
            if out.count >= IMAPSession.fetchFlushThreshold { flush() }
            if outputBackedUp {
                flush()
                return
            }
        }
        fetchJob = nil
        job.finished()
        spareFetchJob = job
        // RFC 5530: a message the client still numbers was left out because it is gone.
        let code: IMAPResponseCode? = job.skippedExpunged && !job.isUIDCommand ? .expungeIssued : nil
        guard let transport, !job.seenChanged.isEmpty, let user,
              let commit = try? selected.mailbox.prepareStore(uids: job.seenChanged.sorted(), change: .add,
                                                              flags: .seen).commit
        else {
            finish(job.tag, .ok, code: code, "FETCH completed")
            resume()
            return
        }
        selected.ignoreFlagChanges = true
        user.commit(commit, in: selected.mailbox, transport: transport) { [self] error in
            selected.ignoreFlagChanges = false
            if let error { fail(job.tag, error) } else { finish(job.tag, .ok, code: code, "FETCH completed") }
            resume()
        }
    }

    /// Parses the next messages without a cached structure on a worker (reading message files on the
    /// loop would stall every session on it); false when there is nothing to hand over.
    private func analyseAhead(_ job: FetchJob, _ selected: SelectedMailbox) -> Bool {
        guard let executor = transport?.executor else { return false }
        let upcoming = job.targets[job.next..<min(job.next + FetchJob.analysisBatchSize, job.targets.count)]
        job.analysedThrough = upcoming.endIndex
        guard let batch = selected.mailbox.analysisBatch(for: upcoming.map(\.uid)) else { return false }
        job.analysing = true
        flush()
        executor.runBlocking({ batch.run() }) { [self] results in
            job.analysing = false
            selected.mailbox.storeAnalyses(results)
            continueFetch()
        }
        return true
    }

    /// Whether the connection holds more unsent output than the high-water mark allows.
    private var outputBackedUp: Bool {
        (transport?.queuedOutputBytes ?? 0) + out.count > context.configuration.outputHighWaterMark
    }

    /// Writes the items of one message from where it stopped; false when it stopped again for
    /// backpressure in the middle of a streamed literal.
    private func writeMessage(_ message: inout MessageInProgress, _ job: FetchJob, _ selected: SelectedMailbox) -> Bool {
        let mailbox = selected.mailbox
        let uid = message.uid
        guard drainStream(&message) else { return false }
        while message.nextItem < job.items.count {
            let item = job.items[message.nextItem]
            if message.nextItem > 0 { out.write(byte: 0x20) }
            message.nextItem += 1
            switch item {
            case .uid:
                out.write("UID ")
                out.write(number: uid)
            case .flags:
                out.write("FLAGS ")
                writeFlags(message.info, selected)
                message.wroteFlags = true
            case .internalDate:
                out.write("INTERNALDATE ")
                out.write(dateTime: IMAPSession.dateTime(epochSeconds: message.info.internalDate))
            case .saveDate:
                out.write("SAVEDATE ")
                out.write(dateTime: IMAPSession.dateTime(epochSeconds: message.info.saveDate))
            case .rfc822Size:
                out.write("RFC822.SIZE ")
                out.write(number: UInt64(max(0, message.info.size)))
            case .modificationSequence:
                out.write("MODSEQ (")
                out.write(number: message.info.modseq)
                out.write(byte: UInt8(ascii: ")"))
            case .envelope, .body, .bodyStructure:
                loadStructure(of: &message, mailbox)
                let structure = message.structure
                // Written straight into the output buffer: no array per item to copy from.
                switch item {
                case .envelope:
                    out.write("ENVELOPE ")
                    structure?.writeIMAPEnvelope(0, into: &out.bytes)
                case .body:
                    out.write("BODY ")
                    structure?.writeIMAPBody(0, extensions: false, into: &out.bytes)
                default:
                    out.write("BODYSTRUCTURE ")
                    structure?.writeIMAPBody(0, extensions: true, into: &out.bytes)
                }
                // The file is gone (expunged while this FETCH waited): NIL is not a valid envelope
                // or body structure, so a client's parser gets the emptiest valid ones instead.
                if structure == nil {
                    if case .envelope = item {
                        out.write("(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)")
                    } else {
                        out.write("(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 0 0)")
                    }
                }
            case .section(let label, let section, let partial, _):
                writeItemName(label, partial: partial)
                writeSection(section, partial: partial, mailbox: mailbox, message: &message, job: job)
            case .binary(let label, let part, let partial, _):
                writeItemName(label, partial: partial)
                writeBinary(part: part, partial: partial, mailbox: mailbox, message: &message)
            case .binarySize(let label, let part):
                out.write(contentsOf: label)
                out.write(byte: 0x20)
                // An identity encoding (7bit, 8bit, binary) decodes to itself: its size is the
                // body's, with no read; the others are measured by decoding.
                out.write(number: binaryPart(part, mailbox: mailbox, message: &message).map {
                    $0.encoding == .identity ? $0.source.count
                        : LiteralStream.measure(file: $0.file, source: $0.source, transform: .decode($0.encoding)).size
                } ?? 0)
            }
            guard drainStream(&message) else { return false }
        }
        if job.seenChanged.contains(uid) && !message.wroteFlags {
            out.write(" FLAGS ")
            writeFlags(message.info, selected)
        }
        out.endFetch()
        return true
    }

    /// Sends the message's streamed literal until it ends (true) or the output backs up (false).
    private func drainStream(_ message: inout MessageInProgress) -> Bool {
        guard var stream = message.stream else { return true }
        // Taken out, not copied: a second reference would make the first advance copy the
        // stream's buffers (copy on write) on every call.
        message.stream = nil
        var owed = message.owed
        while !stream.isFinished {
            stream.advance { piece in
                out.write(contentsOf: piece)
                owed -= piece.count
            }
            if out.count >= IMAPSession.fetchFlushThreshold { flush() }
            if !stream.isFinished && outputBackedUp {
                flush()
                message.stream = stream
                message.owed = owed
                return false
            }
        }
        if owed > 0 { out.write(contentsOf: repeatElement(UInt8(ascii: " "), count: owed)) }
        message.stream = nil
        message.owed = 0
        return true
    }

    /// Starts a literal of `size` bytes whose bytes `stream` produces (drained by `writeMessage`).
    private func beginStreamedLiteral(_ stream: LiteralStream, size: Int, binary: Bool, message: inout MessageInProgress) {
        out.write(binary ? "~{" : "{")
        out.write(number: size)
        out.write("}\r\n")
        message.stream = stream
        message.owed = size
    }

    /// Writes the literal of a body section: sendfile for CRLF files; for files with bare LF line
    /// ends, converted while streaming (the whole message's converted size is RFC822.SIZE from the
    /// index; a part's is measured first). HEADER.FIELDS reads only the header.
    private func writeSection(_ section: MIMESection, partial: IMAPPartial?, mailbox: Mailbox,
                              message: inout MessageInProgress, job: FetchJob)
    {
        let mimePartial = partial.map { MIMEPartial(origin: Int(clamping: $0.offset), length: Int(clamping: $0.length)) }
        let isWhole = section.part.isEmpty && section.text == .all
        var location: MIMESectionLocation?
        if !isWhole {
            loadStructure(of: &message, mailbox)
            guard let structure = message.structure, let located = structure.locate(section) else {
                writeLiteral([])
                return
            }
            // The message's own header is in the cached structure (what a message list fetches):
            // answered without opening the file.
            if Self.cachedHeaderSection(located, structure, into: &job.sectionBytes) {
                let cached = job.sectionBytes
                writeLiteral(cached[mimePartial?.clip(cached.indices) ?? cached.indices])
                return
            }
            location = located
        }
        guard let opened = try? mailbox.openMessage(uid: message.uid) else {
            // Expunged meanwhile (the FETCH waited on a slow client): NIL, which a client knows
            // for "no data"; an empty string would pass for the body itself.
            out.write("NIL")
            return
        }
        let fileSize = Int(opened.size)
        let isCanonical = Int64(fileSize) == message.info.size
        switch location ?? .bytes(0..<fileSize) {
        case .filteredHeader(let header, let fields, let excluding):
            // Filtered over the mapped file: a header of any size is never copied, only the fields kept.
            var filtered = (try? Mailbox.withMappedFile(opened.file) { file -> [UInt8] in
                guard header.upperBound <= file.count else { return [] }
                return MIMEHeaderFilter.filter(UnsafeRawBufferPointer(rebasing: file[header]), fields: fields,
                                               excluding: excluding)
            }) ?? []
            if !isCanonical { filtered = IMAPSession.canonicalLineEnds(filtered) }
            writeLiteral(filtered[mimePartial?.clip(filtered.indices) ?? filtered.indices])
        case .bytes(let range):
            guard range.upperBound <= fileSize else {
                out.write("\"\"")
                return
            }
            if isCanonical {
                sendFileRange(opened.file, mimePartial?.clip(range) ?? range)
                return
            }
            let size = isWhole ? Int(message.info.size)
                : LiteralStream.measure(file: opened.file, source: range, transform: .canonicalLineEnds).size
            let window = mimePartial?.clip(0..<size) ?? 0..<size
            beginStreamedLiteral(LiteralStream(file: opened.file, source: range, transform: .canonicalLineEnds,
                                               window: window),
                                 size: window.count, binary: false, message: &message)
        }
    }

    /// Puts in `output` (emptied first) the bytes of a header section (BODY[HEADER],
    /// BODY[HEADER.FIELDS (...)], their NOT forms) of the message's own header, from the copy the
    /// cached structure keeps, with CRLF line ends; false when the section is elsewhere or no copy
    /// is kept.
    static func cachedHeaderSection(_ location: MIMESectionLocation, _ structure: MessageStructure,
                                    into output: inout [UInt8]) -> Bool
    {
        output.removeAll(keepingCapacity: true)
        switch location {
        case .filteredHeader(let header, let fields, let excluding):
            guard let cached = structure.cachedBytes(of: header) else { return false }
            cached.withUnsafeBytes {
                MIMEHeaderFilter.filter($0, fields: fields, excluding: excluding, appendingTo: &output)
            }
        case .bytes(let range):
            guard let cached = structure.cachedBytes(of: range) else { return false }
            output.append(contentsOf: cached)
        }
        if structure.messageBareLineFeeds != 0 { output = IMAPSession.canonicalLineEnds(output) }
        return true
    }

    /// `{N}` CRLF and the file's bytes in `range`, with sendfile where the connection allows.
    private func sendFileRange(_ file: FileHandle, _ range: Range<Int>) {
        out.write(byte: UInt8(ascii: "{"))
        out.write(number: range.count)
        out.write("}\r\n")
        guard range.count > 0 else { return }
        flush()
        let descriptor = dup(file.fd)
        if descriptor >= 0 {
            context.metrics.bytesOut.increment(by: UInt64(range.count))
            transport?.writeFile(descriptor: descriptor, offset: Int64(range.lowerBound), count: range.count)
        } else {
            // Out of descriptors: fall back to reading (the literal size is already sent).
            out.write(contentsOf: IMAPSession.read(file.fd, range))
        }
    }

    /// BINARY[part]<partial> (RFC 3516): the part's body decoded while streaming, its decoded size
    /// measured by a first pass. A decoded NUL makes it a literal8.
    private func writeBinary(part: [Int], partial: IMAPPartial?, mailbox: Mailbox, message: inout MessageInProgress) {
        guard let located = binaryPart(part, mailbox: mailbox, message: &message) else {
            writeLiteral([])
            return
        }
        let transform = LiteralTransform.decode(located.encoding)
        let measured = LiteralStream.measure(file: located.file, source: located.source, transform: transform)
        let mimePartial = partial.map { MIMEPartial(origin: Int(clamping: $0.offset), length: Int(clamping: $0.length)) }
        let window = mimePartial?.clip(0..<measured.size) ?? 0..<measured.size
        beginStreamedLiteral(LiteralStream(file: located.file, source: located.source, transform: transform, window: window),
                             size: window.count, binary: measured.hasNUL, message: &message)
    }

    /// The file, body range and transfer encoding of a part; nil when there is no such part or its
    /// encoding is unknown.
    private func binaryPart(_ part: [Int], mailbox: Mailbox, message: inout MessageInProgress)
        -> (file: FileHandle, source: Range<Int>, encoding: MIMETransferEncoding)?
    {
        loadStructure(of: &message, mailbox)
        guard let structure = message.structure, let node = structure.resolvePart(part),
              let opened = try? mailbox.openMessage(uid: message.uid), structure.parts[node].bodyEnd <= Int(opened.size)
        else { return nil }
        let encoding = MIMETransferEncoding(structure: structure, part: node)
        guard encoding != .unknown else { return nil }
        return (opened.file, structure.parts[node].bodyRange, encoding)
    }

    private func writeLiteral(_ bytes: ArraySlice<UInt8>) {
        out.write(byte: UInt8(ascii: "{"))
        out.write(number: bytes.count)
        out.write("}\r\n")
        out.write(contentsOf: bytes)
    }

    /// Loads the message's structure into `message.structure` on first use: from the index cache
    /// when possible, decoded into the arrays it already holds, else parsed from the mapped file.
    func loadStructure(of message: inout MessageInProgress, _ mailbox: Mailbox) {
        guard !message.structureLoaded else { return }
        message.structureLoaded = true
        var structure = message.structure.take() ?? MessageStructure()
        // Decoded from the cache record where it was read, with no array copy of the blob.
        let decoded = (try? mailbox.withCachedAnalysis(of: message.uid) { blob in
            !blob.isEmpty && structure.read(serialized: blob)
        }) ?? false
        message.structure = decoded ? structure
            : try? mailbox.withMessageBytes(of: message.uid) { MessageStructure(parsing: $0) }
    }

    static func read(_ descriptor: Int32, _ range: Range<Int>) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: range.count)
        var done = 0
        while done < range.count {
            let result = bytes.withUnsafeMutableBytes {
                pread(descriptor, $0.baseAddress! + done, range.count - done, off_t(range.lowerBound + done))
            }
            if result < 0 && errno == EINTR { continue }
            guard result > 0 else { break }
            done += result
        }
        return Array(bytes[0..<done])
    }

    /// CRLF for every bare LF (RFC 9051 requires CRLF on the wire).
    static func canonicalLineEnds(_ bytes: [UInt8]) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count + bytes.count / 32)
        var previous: UInt8 = 0
        for byte in bytes {
            if byte == 0x0A && previous != 0x0D { output.append(0x0D) }
            output.append(byte)
            previous = byte
        }
        return output
    }

    /// Seconds since the epoch as a UTC date-time.
    static func dateTime(epochSeconds: Int64) -> IMAPDateTime {
        let days = epochSeconds >= 0 ? epochSeconds / 86_400 : (epochSeconds - 86_399) / 86_400
        let secondsOfDay = Int(epochSeconds - days * 86_400)
        // Civil from days, after H. Hinnant's algorithm.
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = Int(dayOfYear - (153 * monthIndex + 2) / 5 + 1)
        let month = Int(monthIndex < 10 ? monthIndex + 3 : monthIndex - 9)
        let year = Int(yearOfEra + era * 400) + (month <= 2 ? 1 : 0)
        return IMAPDateTime(date: IMAPDate(year: year, month: month, day: day), hour: secondsOfDay / 3600,
                            minute: secondsOfDay / 60 % 60, second: secondsOfDay % 60, zoneMinutes: 0)
    }

    /// Seconds since the epoch of a date-time (APPEND's date).
    static func epochSeconds(_ value: IMAPDateTime) -> Int64 {
        let day = SearchKey.day(year: value.date.year, month: value.date.month, day: value.date.day)
        return day * 86_400 + Int64(value.hour * 3600 + value.minute * 60 + value.second) - Int64(value.zoneMinutes * 60)
    }

    // MARK: - Items

    /// The owned form of a parsed attribute; nil for a section that cannot be answered.
    static func fetchItem(_ attribute: IMAPFetchAttribute) -> FetchItem? {
        switch attribute {
        case .envelope: return .envelope
        case .flags: return .flags
        case .internalDate: return .internalDate
        case .rfc822Size: return .rfc822Size
        case .body: return .body
        case .bodyStructure: return .bodyStructure
        case .uid: return .uid
        case .modificationSequence: return .modificationSequence
        case .rfc822: return .section(label: Array("RFC822".utf8), MIMESection(), partial: nil, setsSeen: true)
        case .rfc822Header:
            return .section(label: Array("RFC822.HEADER".utf8), MIMESection(text: .header), partial: nil, setsSeen: false)
        case .rfc822Text:
            return .section(label: Array("RFC822.TEXT".utf8), MIMESection(text: .text), partial: nil, setsSeen: true)
        case .bodySection(let section, let partial, let peek):
            let part = Array(section.part).map { Int($0) }
            var label = Array("BODY[".utf8)
            label += part.map(String.init).joined(separator: ".").utf8
            let text: MIMESection.Text
            func names(_ list: IMAPHeaderList) -> [[UInt8]] { list.map { $0.copyBytes() } }
            let separator: [UInt8] = part.isEmpty ? [] : [UInt8(ascii: ".")]
            switch section.text {
            case nil:
                text = .all
            case .header?:
                text = .header
                label += separator + Array("HEADER".utf8)
            case .text?:
                text = .text
                label += separator + Array("TEXT".utf8)
            case .mime?:
                text = .mime
                label += separator + Array("MIME".utf8)
            case .headerFields(let list)?:
                text = .headerFields(names(list))
                label += separator + Array("HEADER.FIELDS (".utf8) + joinNames(names(list)) + [UInt8(ascii: ")")]
            case .headerFieldsNot(let list)?:
                text = .headerFieldsNot(names(list))
                label += separator + Array("HEADER.FIELDS.NOT (".utf8) + joinNames(names(list)) + [UInt8(ascii: ")")]
            }
            label.append(UInt8(ascii: "]"))
            return .section(label: label, MIMESection(part: part, text: text), partial: partial, setsSeen: !peek)
        case .binary(let part, let partial, let peek):
            let numbers = Array(part).map { Int($0) }
            let label = Array("BINARY[\(numbers.map(String.init).joined(separator: "."))]".utf8)
            return .binary(label: label, part: numbers, partial: partial, setsSeen: !peek)
        case .binarySize(let part):
            let numbers = Array(part).map { Int($0) }
            return .binarySize(label: Array("BINARY.SIZE[\(numbers.map(String.init).joined(separator: "."))]".utf8),
                               part: numbers)
        }
    }

    /// Header names for a label, each as an astring.
    private static func joinNames(_ names: [[UInt8]]) -> [UInt8] {
        var output = IMAPOutputBuffer(capacity: 64)
        for (index, name) in names.enumerated() {
            if index > 0 { output.write(byte: 0x20) }
            name.withUnsafeBytes { output.write(astring: IMAPBytes($0)) }
        }
        return output.bytes
    }
}
