// IMAPBackend: SEARCH and UID SEARCH (RFC 9051 6.4.4, RFC 4731 ESEARCH, RFC 5182 SAVE).

import Glibc
import IMAPProtocol
import Reactor
import Telemetry
import MailStore

extension IMAPSession {
    /// `C: a SEARCH UNSEEN FROM "smith"` / `S: * SEARCH 2 5` (IMAP4rev1), `* ESEARCH (TAG "a") ALL 2,5`
    func search(tag: IMAPBytes, command: IMAPSearchCommand, uid: Bool) {
        guard let selected else { return }
        if let charset = command.program.charset, !charset.equalsCaseInsensitive("UTF-8"),
           !charset.equalsCaseInsensitive("US-ASCII")
        {
            finish(tag, .no, code: .badCharset([Array("UTF-8".utf8), Array("US-ASCII".utf8)]), "Unsupported charset")
            return
        }
        var keys: [SearchKey] = []
        for key in command.program.keys {
            guard let converted = convert(key, selected) else {
                finish(tag, .bad, "Invalid search key")
                return
            }
            keys.append(converted)
        }
        let key: SearchKey = keys.count == 1 ? keys[0] : .and(keys)
        let result = selected.mailbox.search(key, recent: isRev2 ? [] : selected.recent)
        // Only messages this session knows of (ones not yet announced have no sequence number).
        let matches = result.uids.filter { selected.sequenceNumber(of: $0) != nil }
        let numbers = uid ? matches : matches.compactMap { selected.sequenceNumber(of: $0) }
        if let options = command.returnOptions ?? (isRev2 ? [.all] : nil) {
            let effective: IMAPSearchReturnOptions = options.isEmpty ? [.all] : options
            if effective.contains(.save) { selected.savedSearch = matches }
            out.write("* ESEARCH (TAG ")
            out.write(string: tag)
            out.write(byte: UInt8(ascii: ")"))
            if uid { out.write(" UID") }
            if effective.contains(.min), let first = numbers.first {
                out.write(" MIN ")
                out.write(number: first)
            }
            if effective.contains(.max), let last = numbers.last {
                out.write(" MAX ")
                out.write(number: last)
            }
            if effective.contains(.all), !numbers.isEmpty {
                out.write(" ALL ")
                out.write(contentsOf: IMAPSession.sequenceSetText(numbers))
            }
            if effective.contains(.count) {
                out.write(" COUNT ")
                out.write(number: numbers.count)
            }
            out.write("\r\n")
        } else {
            out.write("* SEARCH")
            for number in numbers {
                out.write(byte: 0x20)
                out.write(number: number)
            }
            out.write("\r\n")
        }
        // A message expunged elsewhere keeps its number here until EXPUNGE may be sent, but no
        // longer matches anything: say so (RFC 5530) rather than let the result look complete. A
        // UID SEARCH may send the EXPUNGE itself (it follows at once), so it needs no code.
        let incomplete = !uid && selected.holdsExpungedMessages
        finish(tag, .ok, code: incomplete ? .expungeIssued : nil, "SEARCH completed")
    }

    /// The store's key for a wire key; sequence sets become UID ranges of this session's view.
    private func convert(_ key: IMAPSearchKey, _ selected: SelectedMailbox) -> SearchKey? {
        func day(_ date: IMAPDate) -> Int64 { SearchKey.day(year: date.year, month: date.month, day: date.day) }
        func text(_ value: IMAPString) -> String { value.string }
        func ranges(_ set: IMAPSequenceSet, uid: Bool) -> SearchKey {
            if uid && !set.isSavedResult {
                return .uids(set.map { $0.resolved(largest: selected.uids.last ?? 0) })
            }
            return .uids(selected.resolve(set, uid: uid).map { $0.uid...$0.uid })
        }
        switch key {
        case .all: return .all
        case .answered: return .answered
        case .deleted: return .deleted
        case .draft: return .draft
        case .flagged: return .flagged
        case .seen: return .seen
        case .new: return .new
        case .old: return .old
        case .recent: return .recent
        case .unanswered: return .unanswered
        case .undeleted: return .undeleted
        case .undraft: return .undraft
        case .unflagged: return .unflagged
        case .unseen: return .unseen
        case .bcc(let value): return .header("BCC", text(value))
        case .cc(let value): return .header("CC", text(value))
        case .from(let value): return .header("FROM", text(value))
        case .to(let value): return .header("TO", text(value))
        case .subject(let value): return .content(.subject(text(value)))
        case .body(let value): return .content(.body(text(value)))
        case .text(let value): return .content(.text(text(value)))
        case .header(let name, let value): return .header(text(name), text(value))
        case .keyword(let flag): return .keyword(flag.bytes.string)
        case .unkeyword(let flag): return .unkeyword(flag.bytes.string)
        case .before(let date): return .before(day(date))
        case .on(let date): return .on(day(date))
        case .since(let date): return .since(day(date))
        case .sentBefore(let date): return .content(.sentDate(comparison: -1, day: day(date)))
        case .sentOn(let date): return .content(.sentDate(comparison: 0, day: day(date)))
        case .sentSince(let date): return .content(.sentDate(comparison: 1, day: day(date)))
        case .larger(let size): return .larger(Int64(clamping: size))
        case .smaller(let size): return .smaller(Int64(clamping: size))
        case .uid(let set): return ranges(set, uid: true)
        case .sequenceNumbers(let set): return ranges(set, uid: false)
        case .modificationSequence(_, _, let value): return .modseq(value)
        case .not(let inner): return convert(inner, selected).map { .not($0) }
        case .or(let left, let right):
            guard let left = convert(left, selected), let right = convert(right, selected) else { return nil }
            return .or(left, right)
        case .and(let keys):
            var converted: [SearchKey] = []
            for inner in keys {
                guard let value = convert(inner, selected) else { return nil }
                converted.append(value)
            }
            return .and(converted)
        }
    }
}
