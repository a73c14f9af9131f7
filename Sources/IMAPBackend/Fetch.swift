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

/// A FETCH in progress.
final class FetchJob {
    let tag: [UInt8]
    let targets: [(sequence: UInt32, uid: UInt32)]
    let items: [FetchItem]
    var next = 0
    /// Messages a non-PEEK body fetch marks \Seen (RFC 9051 6.4.5). The change is prepared once the
    /// bodies are written (preparing renames the files in the index before the disk) and is durable
    /// before the tagged OK.
    var seenChanged: Set<UInt32> = []

    init(tag: [UInt8], targets: [(sequence: UInt32, uid: UInt32)], items: [FetchItem]) {
        self.tag = tag
        self.targets = targets
        self.items = items
    }
}

extension IMAPSession {
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
        var items: [FetchItem] = uid ? [.uid] : []
        for attribute in attributes {
            guard let item = IMAPSession.fetchItem(attribute) else {
                finish(tag, .bad, "Invalid section")
                return
            }
            if uid, case .uid = item { continue }
            items.append(item)
        }
        let job = FetchJob(tag: tag.copyBytes(), targets: selected.resolve(set, uid: uid), items: items)
        if !selected.readOnly, items.contains(where: \.setsSeen) {
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
        guard let job = fetchJob, let selected, let transport else {
            fetchJob = nil
            return
        }
        let highWater = context.configuration.outputHighWaterMark
        while job.next < job.targets.count {
            let target = job.targets[job.next]
            job.next += 1
            writeMessage(target.sequence, target.uid, job, selected)
            if out.count >= 64 * 1024 { flush() }
            if transport.queuedOutputBytes + out.count > highWater {
                flush()
                return  // writable() calls back when the client has read enough
            }
        }
        fetchJob = nil
        guard !job.seenChanged.isEmpty, let user,
              let commit = try? selected.mailbox.prepareStore(uids: job.seenChanged.sorted(), change: .add,
                                                              flags: .seen).commit
        else {
            finish(job.tag, .ok, "FETCH completed")
            resume()
            return
        }
        selected.ignoreFlagChanges = true
        user.commit(commit, in: selected.mailbox, transport: transport) { [self] error in
            selected.ignoreFlagChanges = false
            if let error { fail(job.tag, error) } else { finish(job.tag, .ok, "FETCH completed") }
            resume()
        }
    }

    private func writeMessage(_ sequence: UInt32, _ uid: UInt32, _ job: FetchJob, _ selected: SelectedMailbox) {
        let mailbox = selected.mailbox
        guard let position = mailbox.position(of: uid) else { return }  // expunged meanwhile
        var info = mailbox.message(at: position)
        if job.seenChanged.contains(uid) { info.flags.insert(.seen) }
        var structure: MessageStructure?
        var content: MessageContent?
        out.beginFetch(sequenceNumber: sequence)
        var first = true
        var wroteFlags = false
        for item in job.items {
            if !first { out.write(byte: 0x20) }
            first = false
            switch item {
            case .uid:
                out.write("UID ")
                out.write(number: uid)
            case .flags:
                out.write("FLAGS ")
                writeFlags(info, selected)
                wroteFlags = true
            case .internalDate:
                out.write("INTERNALDATE ")
                out.write(dateTime: IMAPSession.dateTime(epochSeconds: info.internalDate))
            case .saveDate:
                out.write("SAVEDATE ")
                out.write(dateTime: IMAPSession.dateTime(epochSeconds: info.saveDate))
            case .rfc822Size:
                out.write("RFC822.SIZE ")
                out.write(number: UInt64(max(0, info.size)))
            case .modificationSequence:
                out.write("MODSEQ (")
                out.write(number: info.modseq)
                out.write(byte: UInt8(ascii: ")"))
            case .envelope, .body, .bodyStructure:
                if structure == nil { structure = loadStructure(uid, mailbox, &content) }
                var bytes: [UInt8] = []
                switch item {
                case .envelope:
                    out.write("ENVELOPE ")
                    structure?.writeIMAPEnvelope(0, into: &bytes)
                case .body:
                    out.write("BODY ")
                    structure?.writeIMAPBody(0, extensions: false, into: &bytes)
                default:
                    out.write("BODYSTRUCTURE ")
                    structure?.writeIMAPBody(0, extensions: true, into: &bytes)
                }
                if bytes.isEmpty { bytes = Array("NIL".utf8) }
                out.write(contentsOf: bytes)
            case .section(let label, let section, let partial, _):
                writeItemName(label, partial: partial)
                writeSection(section, partial: partial, uid: uid, info: info, mailbox: mailbox,
                             structure: &structure, content: &content)
            case .binary(let label, let part, let partial, _):
                writeItemName(label, partial: partial)
                if content == nil { content = MessageContent(uid: uid, mailbox: mailbox) }
                if structure == nil { structure = loadStructure(uid, mailbox, &content) }
                let decoded = content.flatMap { content in
                    content.bytes.withUnsafeBytes { bytes in
                        structure?.decodedBody(ofPart: part, partial: partial.map {
                            MIMEPartial(origin: Int(clamping: $0.offset), length: Int(clamping: $0.length))
                        }, in: bytes)
                    }
                } ?? []
                if decoded.contains(0) {
                    out.write("~{")
                    out.write(number: decoded.count)
                    out.write("}\r\n")
                    out.write(contentsOf: decoded)
                } else {
                    out.write(byte: UInt8(ascii: "{"))
                    out.write(number: decoded.count)
                    out.write("}\r\n")
                    out.write(contentsOf: decoded)
                }
            case .binarySize(let label, let part):
                out.write(contentsOf: label)
                out.write(byte: 0x20)
                if content == nil { content = MessageContent(uid: uid, mailbox: mailbox) }
                if structure == nil { structure = loadStructure(uid, mailbox, &content) }
                let size = content.flatMap { content in
                    content.bytes.withUnsafeBytes { structure?.decodedBodySize(ofPart: part, in: $0) }
                } ?? 0
                out.write(number: size)
            }
        }
        if job.seenChanged.contains(uid) && !wroteFlags {
            out.write(" FLAGS ")
            writeFlags(info, selected)
        }
        out.endFetch()
    }

    /// Writes the literal of a body section: sendfile for CRLF files, converted bytes otherwise.
    private func writeSection(_ section: MIMESection, partial: IMAPPartial?, uid: UInt32, info: MessageInfo,
                              mailbox: Mailbox, structure: inout MessageStructure?, content: inout MessageContent?)
    {
        let mimePartial = partial.map { MIMEPartial(origin: Int(clamping: $0.offset), length: Int(clamping: $0.length)) }
        let isWhole = section.part.isEmpty && section.text == .all
        guard let opened = try? mailbox.openMessage(uid: uid) else {
            out.write("\"\"")
            return
        }
        let fileSize = Int(opened.size)
        let isCanonical = Int64(fileSize) == info.size
        if isCanonical {
            var range: Range<Int>? = nil
            var filtered: [UInt8]? = nil
            if isWhole {
                range = mimePartial?.clip(0..<fileSize) ?? 0..<fileSize
            } else {
                if structure == nil { structure = loadStructure(uid, mailbox, &content) }
                switch structure?.locate(section, partial: mimePartial) {
                case .bytes(let located)?:
                    range = located
                case .filteredHeader(let header, let fields, let excluding)?:
                    let headerBytes = IMAPSession.read(opened.file.fd, header)
                    let result = headerBytes.withUnsafeBytes {
                        MIMEHeaderFilter.filter($0, fields: fields, excluding: excluding)
                    }
                    filtered = Array(result[mimePartial?.clip(result.indices) ?? result.indices])
                case nil:
                    filtered = []
                }
            }
            if let filtered {
                writeLiteral(filtered)
            } else if let range, range.upperBound <= fileSize {
                out.write(byte: UInt8(ascii: "{"))
                out.write(number: range.count)
                out.write("}\r\n")
                if range.count > 0 {
                    flush()
                    let descriptor = dup(opened.file.fd)
                    if descriptor >= 0 {
                        context.metrics.bytesOut.increment(by: UInt64(range.count))
                        transport?.writeFile(descriptor: descriptor, offset: Int64(range.lowerBound), count: range.count)
                    } else {
                        // Out of descriptors: fall back to reading (the literal size is already sent).
                        out.write(contentsOf: IMAPSession.read(opened.file.fd, range))
                    }
                }
            } else {
                out.write("\"\"")
            }
            return
        }
        // Bare LF line ends: build the section from the file in memory and convert it to CRLF.
        if content == nil { content = MessageContent(uid: uid, mailbox: mailbox) }
        if !isWhole && structure == nil { structure = loadStructure(uid, mailbox, &content) }
        guard let content else {
            out.write("\"\"")
            return
        }
        let raw: [UInt8]?
        if isWhole {
            raw = content.bytes
        } else {
            raw = content.bytes.withUnsafeBytes { structure?.content(of: section, in: $0) }
        }
        let canonical = IMAPSession.canonicalLineEnds(raw ?? [])
        writeLiteral(Array(canonical[mimePartial?.clip(canonical.indices) ?? canonical.indices]))
    }

    private func writeLiteral(_ bytes: [UInt8]) {
        out.write(byte: UInt8(ascii: "{"))
        out.write(number: bytes.count)
        out.write("}\r\n")
        out.write(contentsOf: bytes)
    }

    /// The message's structure, from the index cache when possible, else parsed from the file.
    func loadStructure(_ uid: UInt32, _ mailbox: Mailbox, _ content: inout MessageContent?) -> MessageStructure? {
        if let blob = try? mailbox.cachedAnalysis(of: uid), !blob.isEmpty, let structure = MessageStructure(serialized: blob) {
            return structure
        }
        if content == nil { content = MessageContent(uid: uid, mailbox: mailbox) }
        return content.map { MessageStructure(parsing: $0.bytes) }
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

/// A message file read into memory (for bare-LF files and BINARY decoding).
struct MessageContent {
    let bytes: [UInt8]

    init?(uid: UInt32, mailbox: Mailbox) {
        guard let opened = try? mailbox.openMessage(uid: uid) else { return nil }
        var status = stat()
        guard fstat(opened.file.fd, &status) == 0 else { return nil }
        bytes = IMAPSession.read(opened.file.fd, 0..<Int(status.st_size))
    }
}
