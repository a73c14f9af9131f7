// IMAPBackend: SELECT, EXAMINE, CLOSE, UNSELECT, and the selected mailbox's view: sequence numbers,
// and the untagged EXISTS / EXPUNGE / FETCH FLAGS updates other sessions' changes cause.

import Glibc
import IMAPProtocol
import Reactor
import Telemetry
import MailStore

/// A session's view of its selected mailbox. Sequence numbers are this session's: a message expunged
/// by someone else keeps its number here until the session may announce the EXPUNGE (RFC 9051 7.5.1).
final class SelectedMailbox {
    let mailbox: Mailbox
    let readOnly: Bool
    /// Message sequence number - 1 -> UID, ascending.
    var uids: [UInt32]
    /// Appends and expunges not yet announced, in order.
    var events: [MailboxEvent] = []
    /// UIDs whose flags changed and are not yet announced.
    var flagChanges: Set<UInt32> = []
    /// \Recent messages of this session (IMAP4rev1 only).
    var recent: Set<UInt32> = []
    /// UIDs of the last `SEARCH RETURN (SAVE)` (RFC 5182).
    var savedSearch: [UInt32] = []
    /// While the session completes its own STORE, it answers those flags itself.
    var ignoreFlagChanges = false
    /// The mailbox's `keywordsVersion` when this session last sent FLAGS.
    var announcedKeywordsVersion: Int

    init(mailbox: Mailbox, readOnly: Bool) {
        self.mailbox = mailbox
        self.readOnly = readOnly
        uids = mailbox.uids
        announcedKeywordsVersion = mailbox.keywordsVersion
    }

    var count: UInt32 { UInt32(uids.count) }

    /// Whether another session expunged messages whose EXPUNGE this session has not sent yet: the
    /// mailbox holds fewer messages up to this view's last UID than the view numbers (counted, not
    /// read from `events`, which hear of an expunge only once it is durable).
    var holdsExpungedMessages: Bool {
        guard let last = uids.last else { return false }
        return mailbox.messageCount(throughUID: last) < uids.count
    }

    /// The sequence number of `uid` in this view.
    func sequenceNumber(of uid: UInt32) -> UInt32? {
        let position = lowerBound(uid)
        return position < uids.count && uids[position] == uid ? UInt32(position + 1) : nil
    }

    /// The first position whose UID is >= `uid`.
    func lowerBound(_ uid: UInt32) -> Int { firstPosition { $0 >= uid } }

    /// The first position whose UID is > `uid`.
    func upperBound(_ uid: UInt32) -> Int { firstPosition { $0 > uid } }

    /// Binary search for the first position whose UID satisfies `isPast` (false, then true, in order).
    private func firstPosition(_ isPast: (UInt32) -> Bool) -> Int {
        var low = 0
        var high = uids.count
        while low < high {
            let middle = (low + high) / 2
            if isPast(uids[middle]) { high = middle } else { low = middle + 1 }
        }
        return low
    }

    /// The (sequence number, UID) pairs a set names, ascending and without duplicates. Sequence
    /// numbers beyond the view and UIDs not in it are left out (RFC 9051 6.4.8 for UIDs).
    func resolve(_ set: IMAPSequenceSet, uid: Bool) -> [(sequence: UInt32, uid: UInt32)] {
        var result: [(sequence: UInt32, uid: UInt32)] = []
        resolve(set, uid: uid, into: &result)
        return result
    }

    /// As `resolve(_:uid:)`, into `result` (emptied first, its capacity kept: FETCH reuses one array).
    func resolve(_ set: IMAPSequenceSet, uid: Bool, into result: inout [(sequence: UInt32, uid: UInt32)]) {
        result.removeAll(keepingCapacity: true)
        if set.isSavedResult {
            var positions = savedSearch.compactMap { sequenceNumber(of: $0).map { Int($0) - 1 } }
            positions.sort()
            appendPositions(positions, to: &result)
            return
        }
        // The positions each range covers, in the view's order.
        func positions(of range: IMAPSequenceRange) -> Range<Int> {
            if uid {
                let resolved = range.resolved(largest: uids.last ?? 0)
                let lower = lowerBound(resolved.lowerBound)
                return lower..<max(lower, upperBound(resolved.upperBound))
            }
            guard count > 0 else { return 0..<0 }
            let resolved = range.resolved(largest: count)
            let lower = max(Int(resolved.lowerBound), 1)
            let upper = min(Int(resolved.upperBound), Int(count))
            return lower <= upper ? (lower - 1)..<upper : 0..<0
        }
        var iterator = set.makeIterator()
        guard let first = iterator.next() else { return }
        guard let second = iterator.next() else {
            // One range, the common case: already ascending and without repeats.
            let covered = positions(of: first)
            result.reserveCapacity(covered.count)
            for position in covered { result.append((UInt32(position + 1), uids[position])) }
            return
        }
        var all: [Int] = []
        for range in [first, second] { all.append(contentsOf: positions(of: range)) }
        while let range = iterator.next() { all.append(contentsOf: positions(of: range)) }
        all.sort()
        appendPositions(all, to: &result)
    }

    private func appendPositions(_ positions: [Int], to result: inout [(sequence: UInt32, uid: UInt32)]) {
        result.reserveCapacity(positions.count)
        var last = -1
        for position in positions where position != last {
            result.append((UInt32(position + 1), uids[position]))
            last = position
        }
    }

    /// Whether a sequence set names a message beyond the view (a client error, `BAD` for non-UID forms).
    func isOutOfRange(_ set: IMAPSequenceSet) -> Bool {
        guard !set.isSavedResult else { return false }
        for range in set {
            if case .number(let first) = range.first, first > count { return true }
            if case .number(let last) = range.last, last > count { return true }
        }
        return false
    }
}

extension IMAPSession: MailboxObserver {
    func mailbox(_ mailbox: Mailbox, didChange event: MailboxEvent) {
        guard let selected, selected.mailbox === mailbox else { return }
        switch event {
        case .flagsChanged(let uids):
            if !selected.ignoreFlagChanges { selected.flagChanges.formUnion(uids) }
        case .appended, .expunged:
            selected.events.append(event)
        }
        // In IDLE, changes go out as they happen (RFC 2177).
        if case .idle = mode {
            writeUpdates(allowExpunge: true)
            flush()
        }
    }

    /// Writes the pending untagged updates: EXPUNGE and EXISTS (and RECENT in IMAP4rev1) when
    /// `allowExpunge`, then FETCH FLAGS of changed messages still in the view.
    func writeUpdates(allowExpunge: Bool) {
        guard let selected else { return }
        announceNewKeywords(selected)
        if allowExpunge && !selected.events.isEmpty {
            var announcedCount = selected.count
            var newMessages = false
            for event in selected.events {
                switch event {
                case .appended(let uids):
                    for uid in uids where uid > (selected.uids.last ?? 0) { selected.uids.append(uid) }
                    newMessages = true
                case .expunged(let uids):
                    for uid in uids {
                        guard let number = selected.sequenceNumber(of: uid) else { continue }
                        if number > announcedCount {
                            // Announce the messages before taking one of them away again.
                            writeExists(selected)
                            announcedCount = selected.count
                        }
                        selected.uids.remove(at: Int(number) - 1)
                        selected.flagChanges.remove(uid)
                        selected.recent.remove(uid)
                        out.writeUntagged(number: number, "EXPUNGE")
                        announcedCount -= 1
                    }
                case .flagsChanged:
                    break
                }
            }
            selected.events.removeAll()
            if newMessages || announcedCount != selected.count { writeExists(selected) }
        }
        if !selected.flagChanges.isEmpty {
            for uid in selected.flagChanges.sorted() {
                guard let number = selected.sequenceNumber(of: uid),
                      let position = selected.mailbox.position(of: uid) else { continue }
                let info = selected.mailbox.message(at: position)
                out.beginFetch(sequenceNumber: number)
                out.write("FLAGS ")
                writeFlags(info, selected)
                if state == .selected, isRev2 {
                    out.write(" UID ")
                    out.write(number: uid)
                }
                out.endFetch()
            }
            selected.flagChanges.removeAll()
        }
    }

    private func writeExists(_ selected: SelectedMailbox) {
        out.writeUntagged(number: selected.count, "EXISTS")
        if !isRev2 {
            if !selected.readOnly { selected.recent.formUnion(selected.mailbox.claimRecent()) }
            out.writeUntagged(number: UInt32(selected.recent.count), "RECENT")
        }
    }

    /// Writes a flag list: `(\Seen $Junk)`, with \Recent in IMAP4rev1.
    func writeFlags(_ info: MessageInfo, _ selected: SelectedMailbox) {
        out.write(byte: UInt8(ascii: "("))
        var first = true
        func separator() {
            if !first { out.write(byte: 0x20) }
            first = false
        }
        for (flag, name) in IMAPSession.systemFlagNames where info.flags.contains(flag) {
            separator()
            out.write(name)
        }
        if !isRev2, selected.recent.contains(info.uid) {
            separator()
            out.write("\\Recent")
        }
        if !info.keywords.isEmpty {
            for name in selected.mailbox.keywordNames(info.keywords) {
                separator()
                out.write(contentsOf: name.utf8)
            }
        }
        out.write(byte: UInt8(ascii: ")"))
    }

    static let systemFlagNames: [(SystemFlags, StaticString)] = [
        (.answered, "\\Answered"), (.flagged, "\\Flagged"), (.deleted, "\\Deleted"), (.seen, "\\Seen"),
        (.draft, "\\Draft"),
    ]

    // MARK: - SELECT / EXAMINE

    /// RFC 9051 6.3.2 and 6.3.3.
    func select(tag: IMAPBytes, name: IMAPMailboxName, readOnly: Bool) {
        // A failed SELECT leaves no mailbox selected (RFC 9051 6.3.2); with one selected, the old one is
        // closed first and announced with [CLOSED] (RFC 7162 3.2.11, 9051 7.1).
        // The previous mailbox object is held until the new one is open: re-selecting it (or a mailbox
        // another session holds) then finds it open, instead of closing it and reading it back.
        let previous = selected?.mailbox
        deselect()
        if previous != nil { out.write("* OK [CLOSED] Previous mailbox closed\r\n") }
        state = .authenticated
        guard let mailboxName = storeName(name) else {
            finish(tag, .no, code: .nonExistent, "No such mailbox")
            return
        }
        withMailbox(mailboxName, tag: tag) { [self] tag, opened in
            withExtendedLifetime(previous) {}
            switch opened {
            case .success(let mailbox):
                // A mailbox that was already open (another session's, or kept open after the user's
                // last logout) has not looked in new/ since: mail a delivery agent put there counts
                // in EXISTS now, as it would after reading the mailbox from disk. One fstat when
                // nothing arrived.
                if let user, let transport, let commit = try? mailbox.checkForNewMessages() {
                    let tagCopy = tag.copyBytes()
                    suspend()
                    user.commit(commit, in: mailbox, transport: transport) { [self] _ in
                        guard !isClosed else { return }
                        tagCopy.withUnsafeBytes { selectOpened(tag: IMAPBytes($0), mailbox: mailbox, readOnly: readOnly) }
                        resume()
                    }
                    return
                }
                selectOpened(tag: tag, mailbox: mailbox, readOnly: readOnly)
            case .failure(let error): fail(tag, error)
            }
        }
    }

    /// Runs `body` with the mailbox once it is open: at once when a session has it open, otherwise
    /// after a worker opened it, the session waiting meanwhile (later commands stay unread, so they
    /// run in order) while the loop serves everyone else.
    func withMailbox(_ name: MailboxName, tag: IMAPBytes,
                     _ body: @escaping (IMAPBytes, Result<Mailbox, StoreError>) -> Void)
    {
        withMailboxes([name], tag: tag) { tag, opened in body(tag, opened[0]) }
    }

    /// As `withMailbox`, for several mailboxes (LIST RETURN (STATUS)): `body` gets the outcome of each,
    /// in order, once all are open; those not open yet are opened on workers side by side.
    func withMailboxes(_ names: [MailboxName], tag: IMAPBytes,
                       _ body: @escaping (IMAPBytes, [Result<Mailbox, StoreError>]) -> Void)
    {
        guard let user else { return }
        var opened: [Result<Mailbox, StoreError>] = names.map { name in
            user.maildir.openedMailboxIfCurrent(name).map { .success($0) } ?? .failure(.mailboxNotFound)
        }
        let missing = opened.indices.filter { if case .failure = opened[$0] { true } else { false } }
        if missing.isEmpty { return body(tag, opened) }
        let tagCopy = tag.copyBytes()
        suspend()
        var remaining = missing.count
        for index in missing {
            user.openMailbox(names[index], executor: transport?.executor,
                             beforeLoad: context.configuration.testsOnly_beforeMailboxLoad) { [self] result in
                opened[index] = result
                remaining -= 1
                guard remaining == 0, !isClosed else { return }
                // `body` may wait again (COPY's commit): then its own completion resumes.
                waiting = false
                tagCopy.withUnsafeBytes { body(IMAPBytes($0), opened) }
                if !waiting { resume() }
            }
        }
    }

    /// The untagged data and tagged OK of SELECT/EXAMINE for an open mailbox.
    private func selectOpened(tag: IMAPBytes, mailbox: Mailbox, readOnly: Bool) {
        let view = SelectedMailbox(mailbox: mailbox, readOnly: readOnly)
        if !isRev2 && !readOnly { view.recent = Set(mailbox.claimRecent()) }
        selected = view
        mailbox.addObserver(self)
        user?.maildir.noteSelected(mailbox)
        state = .selected
        let keywords = mailbox.keywords
        writeFlagsResponse(view, keywords: keywords)
        out.writeUntagged(number: view.count, "EXISTS")
        if !isRev2 { out.writeUntagged(number: UInt32(view.recent.count), "RECENT") }
        writePermanentFlags(view, keywords: keywords)
        out.write("* OK [UIDVALIDITY ")
        out.write(number: mailbox.uidValidity)
        out.write("] UIDs valid\r\n* OK [UIDNEXT ")
        out.write(number: mailbox.uidNext)
        out.write("] Predicted next UID\r\n")
        if !isRev2, let firstUnseen = firstUnseenSequenceNumber(view) {
            out.write("* OK [UNSEEN ")
            out.write(number: firstUnseen)
            out.write("] First unseen\r\n")
        }
        if isRev2 {
            out.write("* LIST () \"/\" ")
            out.write(string: wireName(mailbox.name))
            out.write("\r\n")
        }
        if readOnly {
            finish(tag, .ok, code: .readOnly, "EXAMINE completed")
        } else {
            finish(tag, .ok, code: .readWrite, "SELECT completed")
        }
    }

    /// `* FLAGS (...)`: the flags and keywords (`keywords`, the mailbox's) a client may see on this
    /// mailbox's messages.
    private func writeFlagsResponse(_ selected: SelectedMailbox, keywords: [String]) {
        out.write("* FLAGS (")
        writeSystemFlagsAndKeywords(keywords)
        out.write(")\r\n")
        selected.announcedKeywordsVersion = selected.mailbox.keywordsVersion
    }

    /// `* OK [PERMANENTFLAGS (...)]`, with `\*` while keywords can still be created.
    private func writePermanentFlags(_ selected: SelectedMailbox, keywords: [String]) {
        if selected.readOnly {
            out.write("* OK [PERMANENTFLAGS ()] No permanent flags permitted\r\n")
            return
        }
        out.write("* OK [PERMANENTFLAGS (")
        writeSystemFlagsAndKeywords(keywords)
        out.write(selected.mailbox.canCreateKeywords ? " \\*)] Limited\r\n" : ")] Limited\r\n")
    }

    /// The five system flags a client may set, then `keywords`, space-separated (FLAGS and
    /// PERMANENTFLAGS list the same ones).
    private func writeSystemFlagsAndKeywords(_ keywords: [String]) {
        out.write("\\Answered \\Flagged \\Deleted \\Seen \\Draft")
        for keyword in keywords {
            out.write(byte: 0x20)
            out.write(contentsOf: keyword.utf8)
        }
    }

    /// FLAGS (and, read-write, PERMANENTFLAGS) again when keywords were created since the session
    /// last said them (by its own STORE or APPEND or by another session): a client learns keywords
    /// from FLAGS (RFC 9051 7.3.5) and may reject a FETCH FLAGS naming one it was not told of.
    /// Called before any FETCH that may show flags; costs one comparison when nothing changed.
    func announceNewKeywords(_ selected: SelectedMailbox) {
        guard selected.announcedKeywordsVersion != selected.mailbox.keywordsVersion else { return }
        let keywords = selected.mailbox.keywords
        writeFlagsResponse(selected, keywords: keywords)
        // Read-only, PERMANENTFLAGS stays "()": said once at EXAMINE.
        if !selected.readOnly { writePermanentFlags(selected, keywords: keywords) }
    }

    private func firstUnseenSequenceNumber(_ view: SelectedMailbox) -> UInt32? {
        for (offset, uid) in view.uids.enumerated() {
            if let position = view.mailbox.position(of: uid), !view.mailbox.message(at: position).flags.contains(.seen) {
                return UInt32(offset + 1)
            }
        }
        return nil
    }

    /// Leaves the selected state without a response.
    func deselect() {
        guard let selected else { return }
        selected.mailbox.removeObserver(self)
        self.selected = nil
        if state == .selected { state = .authenticated }
    }

    // MARK: - CLOSE / UNSELECT

    /// CLOSE (RFC 9051 6.4.1: expunges \Deleted silently when read-write) and UNSELECT (RFC 3691).
    func closeMailbox(tag: IMAPBytes, expunge: Bool) {
        guard let selected, let user, let transport else { return }
        deselect()
        if expunge, !selected.readOnly, let commit = selected.mailbox.prepareExpunge() {
            let tagCopy = tag.copyBytes()
            suspend()
            user.commit(commit, in: selected.mailbox, transport: transport) { [self] error in
                if let error { fail(tagCopy, error) } else { finish(tagCopy, .ok, "CLOSE completed") }
                resume()
            }
            return
        }
        finish(tag, .ok, expunge ? "CLOSE completed" : "UNSELECT completed")
    }
}
