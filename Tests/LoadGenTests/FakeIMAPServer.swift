//===----------------------------------------------------------------------===//
// Apus LoadGen tests: a scripted IMAP server on a loopback socket that misbehaves on demand.
//===----------------------------------------------------------------------===//

import Reactor
import Synchronization

/// How the fake server goes wrong (or `.correct`: it does not).
enum Misbehaviour: Sendable, CaseIterable {
    case correct
    /// `* 9 FETCH` in a 3-message mailbox.
    case sequenceBeyondExists
    /// Sequence 1 reports UID 1, then UID 7.
    case uidChanged
    /// Each SELECT reports a new UIDVALIDITY.
    case uidValidityChanged
    /// `UID STORE +FLAGS (x)` answered with flags lacking x.
    case flagsMismatch
    /// RFC822.SIZE of a UID grows on each fetch.
    case sizeChanged
    /// ENVELOPE subject of a UID changes on each fetch.
    case envelopeChanged
    /// BODYSTRUCTURE size of a UID changes on each fetch.
    case bodyStructureChanged
    /// `* 7 EXPUNGE` in a 3-message mailbox.
    case expungeUnknownSequence
    /// A tagged OK for a tag no command carried.
    case unknownTag
    /// `* 1 EXISTS` after 3 without EXPUNGE.
    case existsShrank
    /// Turns every client away with `* BYE` as its greeting.
    case byeGreeting
    /// Not a misbehaviour: STOREs alternately answered `NO [EXPUNGEISSUED]` (as when another
    /// session expunged a message named) and a plain `NO`.
    case storesRaceExpunges
}

/// A fake IMAP4 server: three messages (UIDs 1-3), answers LOGIN, SELECT, FETCH, STORE, NOOP and
/// LOGOUT at once, and breaks the rules its ``Misbehaviour`` names.
final class FakeIMAPSession: ConnectionHandler {
    let misbehaviour: Misbehaviour
    private var fetches = 0
    private var selects = 0
    private var stores = 0
    private var flags: [Int: Set<String>] = [1: [], 2: [], 3: []]

    init(_ misbehaviour: Misbehaviour) { self.misbehaviour = misbehaviour }

    func connectionActive(_ connection: Connection) {
        if misbehaviour == .byeGreeting {
            connection.write("* BYE too many connections\r\n")
            connection.close(.afterFlush)
            return
        }
        connection.write("* OK [CAPABILITY IMAP4rev1 LITERAL+] fake ready\r\n")
    }

    func connectionRead(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int {
        var consumed = 0
        while let newline = bytes[consumed...].firstIndex(of: 0x0A) {
            let line = String(decoding: bytes[consumed..<newline], as: UTF8.self)
            consumed = newline + 1
            answer(line.hasSuffix("\r") ? String(line.dropLast()) : line, connection)
        }
        return consumed
    }

    private func answer(_ line: String, _ connection: Connection) {
        let words = line.split(separator: " ").map(String.init)
        guard words.count >= 2 else { return }
        let tag = words[0]
        var command = words[1].uppercased()
        var arguments = Array(words.dropFirst(2))
        if command == "UID", let first = arguments.first {
            command = "UID " + first.uppercased()
            arguments.removeFirst()
        }
        var reply = ""
        switch command {
        case "LOGIN":
            reply = "\(tag) OK logged in\r\n"
        case "SELECT":
            selects += 1
            let validity = misbehaviour == .uidValidityChanged ? 100 + selects : 100
            reply = "* 3 EXISTS\r\n* OK [UIDVALIDITY \(validity)] ok\r\n* OK [UIDNEXT 4] ok\r\n"
            reply += "\(tag) OK [READ-WRITE] done\r\n"
        case "FETCH":
            fetches += 1
            let (low, high) = range(arguments.first ?? "1")
            for sequence in low...high { reply += fetchLine(sequence, items: line.uppercased()) }
            if misbehaviour == .sequenceBeyondExists { reply += "* 9 FETCH (UID 9 FLAGS ())\r\n" }
            reply += "\(tag) OK fetched\r\n"
        case "UID STORE":
            let uid = Int(arguments.first ?? "1") ?? 1
            let flag = String((arguments.last ?? "()").dropFirst().dropLast())
            let adding = arguments.count > 1 && arguments[1].hasPrefix("+")
            if adding { flags[uid, default: []].insert(flag) } else { flags[uid, default: []].remove(flag) }
            var shown = flags[uid, default: []]
            if misbehaviour == .flagsMismatch { if adding { shown.remove(flag) } else { shown.insert(flag) } }
            reply = "* \(uid) FETCH (UID \(uid) FLAGS (\(shown.sorted().joined(separator: " "))))\r\n"
            if misbehaviour == .storesRaceExpunges {
                stores += 1
                reply = stores % 2 == 0 ? "\(tag) NO [EXPUNGEISSUED] Some of the messages have been deleted\r\n"
                    : "\(tag) NO refused\r\n"
            } else {
                reply += "\(tag) OK stored\r\n"
            }
        case "NOOP":
            switch misbehaviour {
            case .expungeUnknownSequence: reply = "* 7 EXPUNGE\r\n"
            case .unknownTag: reply = "A999999 OK nobody asked\r\n"
            case .existsShrank: reply = "* 1 EXISTS\r\n"
            default: break
            }
            reply += "\(tag) OK noop\r\n"
        case "LOGOUT":
            reply = "* BYE bye\r\n\(tag) OK logged out\r\n"
            connection.write(reply)
            connection.close(.afterFlush)
            return
        default:
            reply = "\(tag) OK done\r\n"
        }
        connection.write(reply)
    }

    private func range(_ text: String) -> (Int, Int) {
        let parts = text.split(separator: ":").compactMap { Int($0) }
        let low = min(max(parts.first ?? 1, 1), 3)
        let high = min(max(parts.last ?? low, low), 3)
        return (low, high)
    }

    private func fetchLine(_ sequence: Int, items: String) -> String {
        var uid = sequence
        if misbehaviour == .uidChanged && sequence == 1 && fetches > 1 { uid = 7 }
        var parts = ["UID \(uid)", "FLAGS (\(flags[uid, default: []].sorted().joined(separator: " ")))"]
        if items.contains("RFC822.SIZE") {
            parts.append("RFC822.SIZE \(misbehaviour == .sizeChanged ? 100 + fetches : 100)")
        }
        if items.contains("ENVELOPE") {
            let subject = misbehaviour == .envelopeChanged ? "subject \(fetches)" : "subject"
            parts.append("ENVELOPE (\"Thu, 26 Nov 2026 10:00:00 +0000\" \"\(subject)\" "
                + "((\"A\" NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL NIL \"<m\(uid)@example.org>\")")
        }
        if items.contains("BODYSTRUCTURE") {
            let size = misbehaviour == .bodyStructureChanged ? 50 + fetches : 50
            parts.append("BODYSTRUCTURE (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" \(size) 3)")
        }
        return "* \(sequence) FETCH (\(parts.joined(separator: " ")))\r\n"
    }
}

/// The fake server on an ephemeral loopback port, with its own loop.
final class FakeIMAPServer {
    let group: EventLoopGroup
    let port: UInt16
    private let peers = PeerLog()

    init(_ misbehaviour: Misbehaviour, host: String = "127.0.0.1") throws {
        group = try EventLoopGroup(loopCount: 1, workerCount: 1, name: "fake-imap")
        let peers = self.peers
        port = try group.listen(ListenerSpec(host: host, port: 0) { connection in
            peers.add(connection.peer.host)
            return FakeIMAPSession(misbehaviour)
        })
    }

    /// The addresses clients connected from.
    var peerHosts: Set<String> { peers.hosts }

    func shutdown() { group.shutdown(gracePeriod: .milliseconds(100)) }
}

/// Client addresses seen by the fake server's loop, read by the test thread.
final class PeerLog: Sendable {
    private let seen = Mutex<Set<String>>([])
    func add(_ host: String) { _ = seen.withLock { $0.insert(host) } }
    var hosts: Set<String> { seen.withLock { $0 } }
}
