// IMAPBackend: IDLE (RFC 2177, RFC 9051 6.3.13): updates pushed as they happen, keepalives, DONE.

import Glibc
import IMAPProtocol
import Reactor
import Telemetry
import MailStore

extension IMAPSession {
    /// `C: a IDLE` / `S: + idling` ... `S: * 4 EXISTS` ... `C: DONE` / `S: a OK IDLE terminated`
    func idle(tag: IMAPBytes) {
        writeUpdates(allowExpunge: true)
        out.write("+ idling\r\n")
        mode = .idle(tag: tag.copyBytes())
        // Mail a delivery agent left in new/ is picked up now; its EXISTS follows as an update.
        if let selected, let user, let transport, let commit = try? selected.mailbox.checkForNewMessages() {
            user.commit(commit, in: selected.mailbox, transport: transport) { [self] _ in
                if case .idle = mode {
                    writeUpdates(allowExpunge: true)
                    flush()
                }
            }
        }
        scheduleKeepalive()
    }

    private func scheduleKeepalive() {
        guard let transport else { return }
        idleKeepalive = transport.schedule(after: context.configuration.idleKeepaliveInterval) { [weak self] in
            guard let self, case .idle = mode else { return }
            out.write("* OK Still here\r\n")
            flush()
            scheduleKeepalive()
        }
    }

    /// The line after IDLE: DONE ends it; anything else is a protocol error that also ends it.
    func finishIdle(tag: [UInt8], frame: UnsafeRawBufferPointer) {
        mode = .command
        idleKeepalive?()
        idleKeepalive = nil
        switch parser.parseIdleDone(frame) {
        case .success:
            finish(tag, .ok, "IDLE terminated")
        case .failure:
            finish(tag, .bad, "Expected DONE")
        }
    }
}
