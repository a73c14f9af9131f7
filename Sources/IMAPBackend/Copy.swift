// IMAPBackend: COPY, MOVE (RFC 9051 6.4.7-6.4.8, RFC 6851, RFC 4315 COPYUID), EXPUNGE and UID EXPUNGE.

import Glibc
import IMAPProtocol
import Reactor
import Telemetry
import MailStore

extension IMAPSession {
    /// `C: a UID MOVE 42:69 Trash` / `S: * OK [COPYUID 432 42:69 1202:1229]` / `S: * 22 EXPUNGE` ...
    func copy(tag: IMAPBytes, set: IMAPSequenceSet, destination: IMAPMailboxName, uid: Bool, move: Bool) {
        guard let selected, let user, let transport else { return }
        if !uid && selected.isOutOfRange(set) {
            finish(tag, .bad, "Message sequence number out of range")
            return
        }
        if move && selected.readOnly {
            finish(tag, .no, code: .readOnly, "Mailbox is read-only")
            return
        }
        guard let name = storeName(destination) else {
            finish(tag, .no, code: .tryCreate, "No such mailbox")
            return
        }
        let uids = selected.resolve(set, uid: uid).map(\.uid)
        withMailbox(name, tag: tag) { [self] tag, opened in
            switch opened {
            case .success(let target):
                copy(tag: tag, uids: uids, from: selected, to: target, move: move, user: user, transport: transport)
            case .failure(.mailboxNotFound):
                finish(tag, .no, code: .tryCreate, "No such mailbox")
            case .failure(let error):
                fail(tag, error)
            }
        }
    }

    /// COPY or MOVE once the target mailbox is open (on a worker, when no session had it open).
    private func copy(tag: IMAPBytes, uids: [UInt32], from selected: SelectedMailbox, to target: Mailbox, move: Bool,
                      user: UserEntry, transport: any IMAPSessionTransport)
    {
        guard !uids.isEmpty else {
            finish(tag, .ok, move ? "MOVE completed" : "COPY completed")
            return
        }
        let result: CopyResult
        do {
            result = move ? try selected.mailbox.prepareMove(uids: uids, to: target)
                          : try selected.mailbox.prepareCopy(uids: uids, to: target)
        } catch {
            fail(tag, error)
            return
        }
        let tagCopy = tag.copyBytes()
        suspend()
        user.commit(result.commit, in: selected.mailbox, transport: transport) { [self] error in
            if let error {
                fail(tagCopy, error)
            } else {
                let code = IMAPResponseCode.copyUID(
                    uidValidity: result.commit.uidValidity, source: IMAPSession.sequenceSetText(result.sourceUIDs),
                    destination: IMAPSession.sequenceSetText(result.commit.assignedUIDs))
                if move {
                    // RFC 6851 section 4.3: COPYUID in an untagged OK before the EXPUNGEs.
                    out.write("* OK ")
                    out.write(byte: UInt8(ascii: "["))
                    out.write(code: code)
                    out.write("] Moved\r\n")
                    finish(tagCopy, .ok, "MOVE completed")
                } else {
                    finish(tagCopy, .ok, code: code, "COPY completed")
                }
            }
            resume()
        }
    }

    /// EXPUNGE (RFC 9051 6.4.3) and UID EXPUNGE (RFC 4315 2.1); the EXPUNGE responses come from the
    /// session's own pending updates once the change is durable.
    func expunge(tag: IMAPBytes, uids set: IMAPSequenceSet?) {
        guard let selected, let user, let transport else { return }
        if selected.readOnly {
            finish(tag, .no, code: .readOnly, "Mailbox is read-only")
            return
        }
        let uids = set.map { selected.resolve($0, uid: true).map(\.uid) }
        guard let commit = selected.mailbox.prepareExpunge(uids: uids) else {
            finish(tag, .ok, "EXPUNGE completed")
            return
        }
        let tagCopy = tag.copyBytes()
        suspend()
        user.commit(commit, in: selected.mailbox, transport: transport) { [self] error in
            if let error { fail(tagCopy, error) } else { finish(tagCopy, .ok, "EXPUNGE completed") }
            resume()
        }
    }
}
