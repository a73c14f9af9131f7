// MailStoreTests: crash consistency with a real process killed by SIGKILL.
//
// The child is this test binary itself: the parent re-executes /proc/self/exe with
// `--testing-library swift-testing --filter crashChildWriterLoop` and APUS_CRASH_CHILD_DIR set, which
// enables the otherwise skipped `crashChildWriterLoop` test. The child appends (single and
// MULTIAPPEND), stores flags and expunges in a loop and reports on fd 3, after each commit returns,
// what it did ("acknowledged"), and before each operation what it is about to touch. The parent kills
// it with SIGKILL after a random number of acknowledgements, reopens the store and checks:
//   - every acknowledged append is present byte for byte, unless acknowledged as expunged;
//   - every message present is a whole message the child wrote (no partial message);
//   - no UID ever names two different messages; UIDNEXT is above every UID seen; UIDVALIDITY stays;
//   - acknowledged flags are what the files say, except on the message the child was working on;
//   - a MULTIAPPEND cut short by the kill left all of its messages or none;
//   - an index rebuilt from the files equals the one the reopen produced (modseqs aside).

import Glibc
import Testing
@testable import MailStore

enum CrashChild {
    static let directoryVariable = "APUS_CRASH_CHILD_DIR"
    static let seedVariable = "APUS_CRASH_CHILD_SEED"
    static let reportDescriptor: Int32 = 3

    static var isActive: Bool { getenv(directoryVariable) != nil }

    /// A deterministic pseudo-random sequence (SplitMix64).
    struct Random {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
    }

    /// The message with id `id`: a header naming it, then a body derived from it.
    static func message(id: UInt64) -> [UInt8] {
        var random = Random(state: id)
        let length = 40 + random.below(24_000)
        var bytes = Array("X-Apus-Id: \(id)\r\nX-Apus-Length: \(length)\r\n\r\n".utf8)
        bytes.reserveCapacity(bytes.count + length)
        for index in 0..<length {
            bytes.append(index % 72 == 71 ? 0x0A : UInt8(ascii: "a") + UInt8(random.below(26)))
        }
        return bytes
    }

    /// The id a stored message claims, if it has the header.
    static func claimedID(of bytes: [UInt8]) -> UInt64? {
        let prefix = Array("X-Apus-Id: ".utf8)
        guard bytes.starts(with: prefix) else { return nil }
        let digits = bytes.dropFirst(prefix.count).prefix { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
        return UInt64(String(decoding: digits, as: UTF8.self))
    }

    static func report(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(reportDescriptor, $0.baseAddress, $0.count) }
    }

    /// The child's loop; runs until it is killed.
    static func run() throws {
        let directory = String(cString: getenv(directoryVariable)!)
        let seed = UInt64(String(cString: getenv(seedVariable)!)) ?? 1
        var random = Random(state: seed)
        var nextID = seed << 20
        let store = try MailStore(dataDirectory: directory)
        let inbox = try store.openUser(UserName("crash")).mailbox(.inbox)
        let batcher = DurabilityBatcher()
        report("R")
        while true {
            let choice = random.below(100)
            if inbox.count > 24 || (choice < 20 && inbox.count > 0) {
                let uid = inbox.uids[random.below(inbox.count)]
                report("I \(uid)")
                let deleted = try inbox.prepareStore(uids: [uid], change: .add, flags: [.deleted])
                if let commit = deleted.commit { try inbox.commitNow(commit) }
                if let commit = inbox.prepareExpunge(uids: [uid]) { try inbox.commitNow(commit) }
                report("E \(uid)")
            } else if choice < 40 && inbox.count > 0 {
                let uid = inbox.uids[random.below(inbox.count)]
                report("I \(uid)")
                let flags = SystemFlags(rawValue: UInt8(random.below(32)) & ~SystemFlags.deleted.rawValue)
                let result = try inbox.prepareStore(uids: [uid], change: .replace, flags: flags)
                if let commit = result.commit { try inbox.commitNow(commit) }
                // Report what the store holds (a replace keeps Maildir's P, which is no IMAP flag).
                report("S \(uid) \(inbox.message(at: inbox.position(of: uid)!).flags.rawValue)")
            } else {
                // One to three messages in one commit (MULTIAPPEND), through the group-commit path.
                var requests: [AppendRequest] = []
                var ids: [UInt64] = []
                for _ in 0...random.below(3) {
                    nextID += 1
                    let bytes = message(id: nextID)
                    let writer = try inbox.beginAppend()
                    var offset = 0
                    while offset < bytes.count {
                        let end = min(bytes.count, offset + 1 + random.below(9000))
                        try bytes[offset..<end].withUnsafeBytes { try writer.write($0) }
                        offset = end
                    }
                    requests.append(AppendRequest(message: try writer.finish(), flags: [.seen]))
                    ids.append(nextID)
                }
                report("G " + ids.map(String.init).joined(separator: ","))
                let commit = try inbox.prepareAppend(requests)
                batcher.enqueue(commit)
                for completion in batcher.runPending() {
                    inbox.complete(completion.commit, error: completion.error)
                    if let error = completion.error { throw error }
                }
                for (uid, id) in zip(commit.assignedUIDs, ids) { report("A \(uid) \(id)") }
            }
        }
    }
}

@Suite struct CrashConsistencyTests {
    @Test(.enabled(if: CrashChild.isActive, "runs only as the child of killedWriterNeverLosesAcknowledgedWork"))
    func crashChildWriterLoop() throws {
        try CrashChild.run()
    }

    /// What the parent knows across kills.
    struct Ledger {
        var uidValidity: UInt32?
        /// Every UID ever seen, with the id of its message: a UID may never change message.
        var messageOfUID: [UInt32: UInt64] = [:]
        /// Acknowledged appends not acknowledged as expunged.
        var live: Set<UInt32> = []
        var expunged: Set<UInt32> = []
        var flags: [UInt32: SystemFlags] = [:]
        var highestUID: UInt32 = 0
    }

    @Test func killedWriterNeverLosesAcknowledgedWork() throws {
        let temporary = TemporaryDirectory()
        let dataDirectory = temporary.path + "/data"
        var ledger = Ledger()
        var random = CrashChild.Random(state: UInt64(getpid()))
        let kills = 210
        var acknowledged = 0
        var interruptedGroups = 0
        for iteration in 0..<kills {
            let lines = try runChild(dataDirectory: dataDirectory, seed: UInt64(iteration + 1),
                                     killAfter: random.below(7))
            var inFlight: UInt32?
            var unacknowledgedGroup: [UInt64]?
            for line in lines {
                let fields = line.split(separator: " ")
                switch fields.first {
                case "I": inFlight = UInt32(fields[1])
                case "G": unacknowledgedGroup = fields[1].split(separator: ",").map { UInt64($0)! }
                case "A":
                    let uid = UInt32(fields[1])!
                    ledger.live.insert(uid)
                    ledger.flags[uid] = [.seen]
                    #expect(ledger.messageOfUID[uid] == nil || ledger.messageOfUID[uid] == UInt64(fields[2])!,
                            "UID \(uid) reused")
                    ledger.messageOfUID[uid] = UInt64(fields[2])!
                    acknowledged += 1
                    unacknowledgedGroup = nil
                case "S":
                    ledger.flags[UInt32(fields[1])!] = SystemFlags(rawValue: UInt8(fields[2])!)
                    inFlight = nil
                case "E":
                    let uid = UInt32(fields[1])!
                    ledger.live.remove(uid)
                    ledger.expunged.insert(uid)
                    inFlight = nil
                default: break
                }
            }
            let presentIDs = try verify(dataDirectory: dataDirectory, ledger: &ledger, inFlight: inFlight)
            if let group = unacknowledgedGroup {
                let survivors = group.filter { presentIDs.contains($0) }.count
                #expect(survivors == 0 || survivors == group.count, "MULTIAPPEND \(group) half there")
                interruptedGroups += group.count > 1 ? 1 : 0
            }
        }
        // The runs did real work.
        #expect(acknowledged > kills / 2)
        #expect(!ledger.expunged.isEmpty)
        print("crash test: \(kills) kills, \(acknowledged) acknowledged appends, \(interruptedGroups) interrupted MULTIAPPENDs")
    }

    /// Starts the child, reads its reports until `killAfter` acknowledgements (0: just after it is
    /// ready), kills it with SIGKILL, and returns every report it made before it died.
    private func runChild(dataDirectory: String, seed: UInt64, killAfter: Int) throws -> [String] {
        let pipeEnds = try #require(makePipe())
        let arguments = ["/proc/self/exe", "--testing-library", "swift-testing", "--filter", "crashChildWriterLoop"]
        var environment = ["\(CrashChild.directoryVariable)=\(dataDirectory)", "\(CrashChild.seedVariable)=\(seed)"]
        var index = 0
        while let entry = environ[index] {
            let text = String(cString: entry)
            if !text.hasPrefix("APUS_CRASH_CHILD") { environment.append(text) }
            index += 1
        }
        let spawned = spawnProcess("/proc/self/exe", arguments: arguments, environment: environment,
                                   descriptors: [(CrashChild.reportDescriptor, pipeEnds[1])])
        close(pipeEnds[1])
        defer { close(pipeEnds[0]) }
        let child = try #require(spawned)

        var lines: [String] = []
        var pending: [UInt8] = []
        var acknowledgements = 0
        var killed = false
        readToEnd(pipeEnds[0]) { chunk in
            pending += chunk
            while let newline = pending.firstIndex(of: 0x0A) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                lines.append(line)
                if line.hasPrefix("A ") || line.hasPrefix("S ") || line.hasPrefix("E ") { acknowledgements += 1 }
                if !killed && (line == "R" && killAfter == 0 || acknowledgements >= killAfter && killAfter > 0) {
                    kill(child, SIGKILL)
                    killed = true
                }
            }
        }
        var status: Int32 = 0
        while waitpid(child, &status, 0) < 0 && errno == EINTR {}
        // Killed by our signal (status & 0x7f is the terminating signal).
        #expect(status & 0x7F == SIGKILL, "child ended otherwise: status \(status), reports \(lines.suffix(3))")
        return lines
    }

    /// Reopens the store, checks it against the ledger, and returns the ids of the messages present.
    private func verify(dataDirectory: String, ledger: inout Ledger, inFlight: UInt32?) throws -> Set<UInt64> {
        var reopened: [MessageInfo] = []
        var presentIDs: Set<UInt64> = []
        do {
            let store = try MailStore(dataDirectory: dataDirectory)
            let inbox = try store.openUser(UserName("crash")).mailbox(.inbox)
            if let validity = ledger.uidValidity { #expect(inbox.uidValidity == validity) }
            ledger.uidValidity = inbox.uidValidity
            let present = Set(inbox.uids)
            // The operation the child was killed in may have become durable without being reported.
            if let inFlight, !present.contains(inFlight), ledger.live.remove(inFlight) != nil {
                ledger.expunged.insert(inFlight)
            }
            for uid in ledger.live { #expect(present.contains(uid), "acknowledged UID \(uid) lost") }
            for uid in ledger.expunged { #expect(!present.contains(uid), "expunged UID \(uid) came back") }
            for position in 0..<inbox.count {
                let info = inbox.message(at: position)
                let bytes = try storedBytes(of: info.uid, in: inbox)
                let id = try #require(CrashChild.claimedID(of: bytes), "UID \(info.uid) is not a whole message")
                presentIDs.insert(id)
                #expect(bytes == CrashChild.message(id: id), "UID \(info.uid) is partial or damaged")
                if let known = ledger.messageOfUID[info.uid] { #expect(known == id, "UID \(info.uid) reused") }
                ledger.messageOfUID[info.uid] = id
                ledger.highestUID = max(ledger.highestUID, info.uid)
                if let acknowledged = ledger.flags[info.uid], info.uid != inFlight {
                    #expect(info.flags == acknowledged, "flags of UID \(info.uid)")
                }
                ledger.flags[info.uid] = info.flags
            }
            #expect(inbox.uidNext > ledger.highestUID)
            reopened = (0..<inbox.count).map { inbox.message(at: $0) }
            try inbox.close()
        }
        // Rebuild from the files alone and compare.
        unlink(dataDirectory + "/users/crash/apus-index")
        let store = try MailStore(dataDirectory: dataDirectory)
        let inbox = try store.openUser(UserName("crash")).mailbox(.inbox)
        let rebuilt = (0..<inbox.count).map { inbox.message(at: $0) }
        let strip = { (infos: [MessageInfo]) in infos.map { [Int64($0.uid), Int64($0.flags.rawValue), Int64($0.keywords.bits), $0.size, $0.internalDate, $0.saveDate] } }
        #expect(strip(rebuilt) == strip(reopened))
        try inbox.close()
        return presentIDs
    }
}
