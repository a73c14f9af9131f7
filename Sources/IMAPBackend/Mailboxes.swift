// IMAPBackend: CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST (LIST-EXTENDED, LIST-STATUS,
// SPECIAL-USE), LSUB and STATUS.

import Glibc
import IMAPProtocol
import Reactor
import Telemetry
import MailStore

extension IMAPSession {
    // MARK: - CREATE / DELETE / RENAME

    /// RFC 9051 6.3.4, RFC 6154 (USE). The special uses are stored with the folder (MailStore's
    /// `apus-special-use`); only uses a Maildir folder cannot have (`\All`, `\Flagged`: virtual
    /// mailboxes) or unknown attributes are refused, with [USEATTR] (RFC 6154 section 3).
    /// `C: a CREATE Old (USE (\Archive))` / `S: a OK CREATE completed`
    func create(tag: IMAPBytes, name: IMAPMailboxName, specialUse: IMAPFlagList?) {
        guard let user else { return }
        guard let storeName = storeName(name) else {
            finish(tag, .no, code: .cannotDo, "Invalid mailbox name")
            return
        }
        var uses: [SpecialUse] = []
        for attribute in specialUse.map(Array.init) ?? [] {
            guard let use = SpecialUse(attribute: String(decoding: attribute.bytes.copyBytes(), as: UTF8.self)) else {
                finish(tag, .no, code: .useAttribute, "Special-use attribute not supported")
                return
            }
            uses.append(use)
        }
        do {
            try user.maildir.createMailbox(storeName, specialUses: uses)
            finish(tag, .ok, "CREATE completed")
        } catch {
            fail(tag, error)
        }
    }

    /// RFC 9051 6.3.5.
    func delete(tag: IMAPBytes, name: IMAPMailboxName) {
        guard let user else { return }
        guard let storeName = storeName(name) else {
            finish(tag, .no, code: .nonExistent, "No such mailbox")
            return
        }
        if let selected, selected.mailbox.name == storeName { deselect() }
        do {
            try user.maildir.deleteMailbox(storeName)
            finish(tag, .ok, "DELETE completed")
        } catch {
            fail(tag, error)
        }
    }

    /// RFC 9051 6.3.6.
    func rename(tag: IMAPBytes, from: IMAPMailboxName, to: IMAPMailboxName) {
        guard let user else { return }
        guard let source = storeName(from), let target = storeName(to) else {
            finish(tag, .no, code: .cannotDo, "Invalid mailbox name")
            return
        }
        if let selected, selected.mailbox.name == source, !source.isInbox { deselect() }
        do {
            try user.maildir.renameMailbox(source, to: target)
            finish(tag, .ok, "RENAME completed")
        } catch {
            fail(tag, error)
        }
    }

    /// RFC 9051 6.3.7 and 6.3.8.
    func subscribe(tag: IMAPBytes, name: IMAPMailboxName, subscribe: Bool) {
        guard let user else { return }
        guard let storeName = storeName(name) else {
            finish(tag, .no, code: .cannotDo, "Invalid mailbox name")
            return
        }
        do {
            if subscribe { try user.maildir.subscribe(storeName) } else { try user.maildir.unsubscribe(storeName) }
            finish(tag, .ok, subscribe ? "SUBSCRIBE completed" : "UNSUBSCRIBE completed")
        } catch {
            fail(tag, error)
        }
    }

    // MARK: - LIST

    /// RFC 9051 6.3.9, RFC 5258, RFC 5819, RFC 6154.
    /// `C: a LIST "" "*" RETURN (STATUS (MESSAGES))` / `S: * LIST (\HasNoChildren) "/" INBOX`
    func list(tag: IMAPBytes, command: IMAPListCommand) {
        guard let user else { return }
        let reference = decodeWire(command.reference.raw.copyBytes())
        let patterns = command.patterns.map { reference + decodeWire($0.copyBytes()) }
        // RFC 9051 6.3.9: an empty pattern asks for the hierarchy delimiter.
        if command.patterns.allSatisfy({ $0.count == 0 }) {
            out.write("* LIST (\\Noselect) \"/\" \"\"\r\n")
            finish(tag, .ok, "LIST completed")
            return
        }
        let entries: [MailboxListEntry]
        let subscribed: Set<String>
        do {
            entries = try user.maildir.listMailboxes()
            subscribed = Set(try user.maildir.subscriptions())
        } catch {
            fail(tag, error)
            return
        }
        let onlySubscribed = command.selectOptions.contains(.subscribed)
        let onlySpecialUse = command.selectOptions.contains(.specialUse)
        let showSubscribed = onlySubscribed || command.returnOptions.contains(.subscribed)
        let listed = entries.filter { entry in
            let name = entry.name.wireName
            guard patterns.contains(where: { IMAPSession.matches(Array(name.utf8), pattern: Array($0.utf8)) })
            else { return false }
            if onlySubscribed && !subscribed.contains(name) { return false }
            return !onlySpecialUse || !entry.specialUses.isEmpty
        }
        guard command.returnOptions.contains(.status) else {
            writeList(listed, subscribed: showSubscribed ? subscribed : [], statuses: [:])
            finish(tag, .ok, "LIST completed")
            return
        }
        // RFC 5819: the STATUS of each selectable mailbox listed; mailboxes not open are read on workers.
        let selectable = listed.filter { !$0.isPlaceholder }.map(\.name)
        let attributes = command.statusAttributes
        withMailboxes(selectable, tag: tag) { [self] tag, opened in
            var statuses: [MailboxName: MailboxStatus] = [:]
            for (name, result) in zip(selectable, opened) { statuses[name] = try? result.get().status }
            writeList(listed, subscribed: showSubscribed ? subscribed : [], statuses: statuses, attributes)
            finish(tag, .ok, "LIST completed")
        }
    }

    /// The `* LIST` lines of LIST, each followed by its `* STATUS` when `statuses` has one.
    private func writeList(_ entries: [MailboxListEntry], subscribed: Set<String>,
                           statuses: [MailboxName: MailboxStatus], _ attributes: IMAPStatusAttributes = [])
    {
        for entry in entries {
            out.write("* LIST (")
            var names: [String] = []
            if entry.isPlaceholder { names.append("\\Noselect") }
            names.append(entry.hasChildren ? "\\HasChildren" : "\\HasNoChildren")
            if subscribed.contains(entry.name.wireName) { names.append("\\Subscribed") }
            names += entry.specialUses.map(\.rawValue)
            out.write(contentsOf: names.joined(separator: " ").utf8)
            out.write(") \"/\" ")
            out.write(string: wireName(entry.name))
            out.write("\r\n")
            if let status = statuses[entry.name] { writeStatus(entry.name, status, attributes) }
        }
    }

    /// RFC 3501 6.3.9. `C: a LSUB "" "*"` / `S: * LSUB () "/" INBOX`
    func lsub(tag: IMAPBytes, reference: IMAPMailboxName, pattern: IMAPString) {
        guard let user else { return }
        let fullPattern = decodeWire(reference.raw.copyBytes()) + decodeWire(pattern.copyBytes())
        do {
            for name in try user.maildir.subscriptions().sorted()
            where IMAPSession.matches(Array(name.utf8), pattern: Array(fullPattern.utf8)) {
                out.write("* LSUB () \"/\" ")
                if let storeName = try? MailboxName(name) {
                    out.write(string: wireName(storeName))
                } else {
                    out.write(string: Array(name.utf8))
                }
                out.write("\r\n")
            }
            finish(tag, .ok, "LSUB completed")
        } catch {
            fail(tag, error)
        }
    }

    /// Wire bytes to Unicode text (modified UTF-7 in IMAP4rev1).
    private func decodeWire(_ bytes: [UInt8]) -> String {
        if isRev2 { return String(decoding: bytes, as: UTF8.self) }
        return IMAPModifiedUTF7.decode(bytes) ?? String(decoding: bytes, as: UTF8.self)
    }

    /// LIST wildcard matching: `*` matches anything, `%` anything but the delimiter (RFC 9051 6.3.9).
    /// INBOX matches case-insensitively.
    static func matches(_ name: [UInt8], pattern: [UInt8]) -> Bool {
        var name = name
        if name.count >= 5, String(decoding: name[0..<5], as: UTF8.self).uppercased() == "INBOX",
           name.count == 5 || name[5] == MailboxName.separator,
           pattern.count >= 5, String(decoding: pattern[0..<5], as: UTF8.self).uppercased() == "INBOX"
        {
            name.replaceSubrange(0..<5, with: pattern[0..<5])
        }
        // Iterative matcher with backtracking over the last wildcard; `%` backtracks only within a level.
        func match(_ n: Int, _ p: Int) -> Bool {
            if p == pattern.count { return n == name.count }
            let wildcard = pattern[p]
            if wildcard == UInt8(ascii: "*") || wildcard == UInt8(ascii: "%") {
                var end = n
                while true {
                    if match(end, p + 1) { return true }
                    guard end < name.count else { return false }
                    if wildcard == UInt8(ascii: "%") && name[end] == MailboxName.separator { return false }
                    end += 1
                }
            }
            guard n < name.count, name[n] == wildcard else { return false }
            return match(n + 1, p + 1)
        }
        return match(0, 0)
    }

    // MARK: - STATUS

    /// RFC 9051 6.3.11, RFC 8438 (SIZE), RFC 7889 (APPENDLIMIT).
    /// `C: a STATUS INBOX (MESSAGES UNSEEN)` / `S: * STATUS INBOX (MESSAGES 3 UNSEEN 1)`
    func status(tag: IMAPBytes, name: IMAPMailboxName, attributes: IMAPStatusAttributes) {
        guard let storeName = storeName(name) else {
            finish(tag, .no, code: .nonExistent, "No such mailbox")
            return
        }
        withMailbox(storeName, tag: tag) { [self] tag, opened in
            switch opened {
            case .success(let mailbox):
                writeStatus(storeName, mailbox.status, attributes)
                finish(tag, .ok, "STATUS completed")
            case .failure(let error):
                fail(tag, error)
            }
        }
    }

    private func writeStatus(_ name: MailboxName, _ status: MailboxStatus, _ attributes: IMAPStatusAttributes) {
        out.write("* STATUS ")
        out.write(string: wireName(name))
        out.write(" (")
        var first = true
        func item(_ label: StaticString, _ value: UInt64) {
            if !first { out.write(byte: 0x20) }
            first = false
            out.write(label)
            out.write(byte: 0x20)
            out.write(number: value)
        }
        if attributes.contains(.messages) { item("MESSAGES", UInt64(status.messages)) }
        if attributes.contains(.uidNext) { item("UIDNEXT", UInt64(status.uidNext)) }
        if attributes.contains(.uidValidity) { item("UIDVALIDITY", UInt64(status.uidValidity)) }
        if attributes.contains(.unseen) { item("UNSEEN", UInt64(status.unseen)) }
        if attributes.contains(.deleted) { item("DELETED", UInt64(status.deleted)) }
        if attributes.contains(.size) { item("SIZE", UInt64(max(0, status.size))) }
        if attributes.contains(.recent) { item("RECENT", UInt64(status.recent)) }
        if attributes.contains(.highestModificationSequence) { item("HIGHESTMODSEQ", status.highestModseq) }
        if attributes.contains(.appendLimit) { item("APPENDLIMIT", context.configuration.limits.maxAppendLiteralSize) }
        out.write(")\r\n")
    }
}
