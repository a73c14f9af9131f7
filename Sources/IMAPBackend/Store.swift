// IMAPBackend: STORE and UID STORE (RFC 9051 6.4.6, RFC 7162 UNCHANGEDSINCE), with flag-list helpers.

import Glibc
import IMAPProtocol
import Reactor
import Telemetry
import MailStore

/// A flag list split into system flags and keywords.
struct ParsedFlags {
    var system: SystemFlags = []
    var keywords: [String] = []

    /// nil when the list holds \Recent or an unknown system flag (neither may be stored).
    init?(_ list: IMAPFlagList?) {
        guard let list else { return }
        for flag in list {
            if flag.isSystemFlag {
                switch flag.system {
                case .answered?: system.insert(.answered)
                case .flagged?: system.insert(.flagged)
                case .deleted?: system.insert(.deleted)
                case .seen?: system.insert(.seen)
                case .draft?: system.insert(.draft)
                case .recent?, nil: return nil
                }
            } else {
                keywords.append(flag.bytes.string)
            }
        }
    }
}

extension IMAPSession {
    /// `C: a STORE 2:4 +FLAGS (\Deleted)` / `S: * 2 FETCH (FLAGS (\Deleted \Seen))`
    func store(tag: IMAPBytes, set: IMAPSequenceSet, action: IMAPStoreAction, unchangedSince: UInt64?, uid: Bool) {
        guard let selected, let user, let transport else { return }
        if !uid && selected.isOutOfRange(set) {
            finish(tag, .bad, "Message sequence number out of range")
            return
        }
        if selected.readOnly {
            finish(tag, .no, code: .readOnly, "Mailbox is read-only")
            return
        }
        guard let flags = ParsedFlags(action.flags) else {
            finish(tag, .bad, "Invalid flag in list")
            return
        }
        let targets = selected.resolve(set, uid: uid)
        let change: FlagChange
        switch action.kind {
        case .replace: change = .replace
        case .add: change = .add
        case .remove: change = .remove
        }
        let result: StoreFlagsResult
        do {
            result = try selected.mailbox.prepareStore(uids: targets.map(\.uid), change: change, flags: flags.system,
                                                       keywords: flags.keywords, unchangedSince: unchangedSince)
        } catch {
            fail(tag, error)
            return
        }
        let tagCopy = tag.copyBytes()
        let modified = result.modified
        let answer = { [self] in
            // Without .SILENT every named message's flags are returned (RFC 9051 6.4.6).
            var expungedElsewhere = false
            if !action.silent {
                announceNewKeywords(selected)
                for target in targets {
                    guard let position = selected.mailbox.position(of: target.uid) else {
                        expungedElsewhere = true
                        continue
                    }
                    out.beginFetch(sequenceNumber: target.sequence)
                    out.write("FLAGS ")
                    writeFlags(selected.mailbox.message(at: position), selected)
                    if uid {
                        out.write(" UID ")
                        out.write(number: target.uid)
                    }
                    out.endFetch()
                }
            }
            let modifiedSet = modified.isEmpty ? nil
                : IMAPSession.sequenceSetText(modified.compactMap { uid ? $0 : selected.sequenceNumber(of: $0) })
            // A UID STORE ignores UIDs that no longer exist (RFC 3501 6.4.8) and may send their
            // EXPUNGE now; a STORE by number cannot, so it says why a message named came back
            // without FLAGS (RFC 2180 4.2.3), the others' flags set. MODIFIED, when some failed
            // UNCHANGEDSINCE, rides on that NO (RFC 7162 3.1.3, example 11).
            if expungedElsewhere && !uid {
                finish(tagCopy, .no, code: modifiedSet.map { .modified($0) } ?? .expungeIssued,
                       "Some of the messages have been deleted")
            } else if let modifiedSet {
                finish(tagCopy, .ok, code: .modified(modifiedSet), "Conditional STORE failed")
            } else {
                finish(tagCopy, .ok, "STORE completed")
            }
        }
        guard let commit = result.commit else {
            answer()
            return
        }
        suspend()
        selected.ignoreFlagChanges = true
        user.commit(commit, in: selected.mailbox, transport: transport) { [self] error in
            selected.ignoreFlagChanges = false
            if let error {
                fail(tagCopy, error)
            } else {
                answer()
            }
            resume()
        }
    }

    /// `1:3,7,9:10` for ascending numbers (COPYUID, APPENDUID, MODIFIED, ESEARCH ALL).
    static func sequenceSetText(_ numbers: [UInt32]) -> [UInt8] {
        var output = IMAPOutputBuffer(capacity: 64)
        var index = 0
        let sorted = numbers.sorted()
        while index < sorted.count {
            var end = index
            while end + 1 < sorted.count, sorted[end + 1] == sorted[end] &+ 1 { end += 1 }
            if output.count > 0 { output.write(byte: UInt8(ascii: ",")) }
            output.write(number: sorted[index])
            if end > index {
                output.write(byte: UInt8(ascii: ":"))
                output.write(number: sorted[end])
            }
            index = end + 1
        }
        return output.bytes
    }
}
