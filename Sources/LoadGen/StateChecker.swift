//===----------------------------------------------------------------------===//
// Apus LoadGen: state tracking that catches a wrong server.
//===----------------------------------------------------------------------===//

import IMAPProtocol

/// Something a correct server never does (RFC 9051 sections 2.3.1, 7.4, 7.5).
public enum LoadViolationKind: Int, CaseIterable, Sendable {
    /// A response names a sequence number beyond the EXISTS count this session was told.
    case sequenceBeyondExists
    /// A sequence number's UID changed without an EXPUNGE in between.
    case uidChanged
    /// UIDVALIDITY of a mailbox changed between SELECTs (or sessions) of the same user.
    case uidValidityChanged
    /// Flags differ from what this session stored (only checked where no other session shares the mailbox).
    case flagsMismatch
    /// RFC822.SIZE of a UID changed between fetches.
    case sizeChanged
    /// ENVELOPE of a UID changed between fetches.
    case envelopeChanged
    /// BODYSTRUCTURE of a UID changed between fetches.
    case bodyStructureChanged
    /// `* n EXPUNGE` for a sequence number this session does not know.
    case expungeUnknownSequence
    /// EXISTS shrank without EXPUNGE.
    case existsShrank
    /// A tagged response for a tag with no command in flight.
    case unknownTag
    /// A response the parser could not read.
    case unparseableResponse

    public var name: String {
        switch self {
        case .sequenceBeyondExists: "sequence-beyond-exists"
        case .uidChanged: "uid-changed"
        case .uidValidityChanged: "uidvalidity-changed"
        case .flagsMismatch: "flags-mismatch"
        case .sizeChanged: "size-changed"
        case .envelopeChanged: "envelope-changed"
        case .bodyStructureChanged: "bodystructure-changed"
        case .expungeUnknownSequence: "expunge-unknown-sequence"
        case .existsShrank: "exists-shrank"
        case .unknownTag: "unknown-tag"
        case .unparseableResponse: "unparseable-response"
        }
    }
}

/// Flags the generator stores and checks, as bits; flags outside this set are ignored.
struct TrackedFlags: OptionSet, Equatable {
    let rawValue: UInt16
    static let seen = TrackedFlags(rawValue: 1 << 0)
    static let flagged = TrackedFlags(rawValue: 1 << 1)
    static let answered = TrackedFlags(rawValue: 1 << 2)
    static let draft = TrackedFlags(rawValue: 1 << 3)
    static let deleted = TrackedFlags(rawValue: 1 << 4)
    static let keyword1 = TrackedFlags(rawValue: 1 << 5)
    static let keyword2 = TrackedFlags(rawValue: 1 << 6)
    static let keyword3 = TrackedFlags(rawValue: 1 << 7)

    /// Wire names, in bit order.
    static let names: [StaticString] = ["\\Seen", "\\Flagged", "\\Answered", "\\Draft", "\\Deleted",
                                        "$LoadA", "$LoadB", "$LoadC"]
    /// The flags a STORE draws from (never \Deleted: expunges are their own command).
    static let storable: [TrackedFlags] = [.seen, .flagged, .answered, .draft, .keyword1, .keyword2, .keyword3]

    init(rawValue: UInt16) { self.rawValue = rawValue }

    /// The tracked flags among a FETCH's `FLAGS (...)`.
    init(_ list: IMAPFlagListView) {
        var bits: UInt16 = 0
        for flag in list {
            for (bit, name) in TrackedFlags.names.enumerated() where flag.equalsCaseInsensitive(IMAPBytes(name)) {
                bits |= 1 << UInt16(bit)
            }
        }
        rawValue = bits
    }

    var description: String {
        var parts: [String] = []
        for (bit, name) in TrackedFlags.names.enumerated() where rawValue & (1 << UInt16(bit)) != 0 {
            parts.append(name.description)
        }
        return "(" + parts.joined(separator: " ") + ")"
    }
}

func equalsIgnoringCase(_ bytes: [UInt8], _ text: StaticString) -> Bool {
    guard bytes.count == text.utf8CodeUnitCount else { return false }
    let other = UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount)
    for index in 0..<bytes.count where bytes[index] | 0x20 != other[index] | 0x20 { return false }
    return true
}

/// What a session has been told about the mailbox it selected, checked against each new response.
///
/// Sans-IO: the session feeds it parsed responses and its own STOREs; it returns violations.
struct MailboxChecker {
    struct Violation {
        var kind: LoadViolationKind
        var detail: String
    }

    /// Facts about a UID that never change while UIDVALIDITY holds. ENVELOPE and BODYSTRUCTURE are
    /// kept as digests (``Fingerprint``), not as parsed trees: a changed value still shows as a
    /// changed digest, and no FETCH has to build, keep or free a tree.
    struct Immutable {
        var size: UInt64?
        var envelope: Fingerprint?
        var bodyStructure: Fingerprint?
    }

    /// An ENVELOPE or BODYSTRUCTURE as last seen: digests of its spelling and of its value. The same
    /// spelling again (the common case: a server spells a value the same way each time) is the same
    /// value without computing the value's digest, which costs a few times more.
    struct Fingerprint {
        var spelling: UInt64
        var value: UInt64
    }

    /// UIDs by sequence number - 1; 0 while not yet learnt.
    private(set) var uids: [UInt32] = []
    private(set) var uidValidity: UInt32?
    /// Shared with the user's other sessions on this loop (see ``MessageFacts``).
    private let messageFacts: MessageFacts
    /// Flags by UID as last reported or stored; only used when `checksFlags`.
    private var flags: [UInt32: TrackedFlags] = [:]
    /// No other session uses this mailbox, so flags change only through our STOREs.
    let checksFlags: Bool

    init(checksFlags: Bool, messageFacts: MessageFacts = MessageFacts()) {
        self.checksFlags = checksFlags
        self.messageFacts = messageFacts
    }

    var exists: Int { uids.count }

    /// The UID at `sequence` (1-based), 0 if unknown or out of range.
    func uid(at sequence: Int) -> UInt32 {
        sequence >= 1 && sequence <= uids.count ? uids[sequence - 1] : 0
    }

    /// A SELECT starts: the mailbox view is rebuilt from its untagged responses.
    mutating func beginSelect() {
        uids.removeAll(keepingCapacity: true)
    }

    mutating func exists(_ count: UInt32) -> Violation? {
        let count = Int(count)
        if count < uids.count {
            let violation = Violation(kind: .existsShrank,
                                      detail: "* \(count) EXISTS after \(uids.count) without EXPUNGE")
            uids.removeLast(uids.count - count)
            return violation
        }
        if count > uids.count { uids.append(contentsOf: repeatElement(0, count: count - uids.count)) }
        return nil
    }

    mutating func expunge(_ sequence: UInt32) -> Violation? {
        let sequence = Int(sequence)
        guard sequence >= 1, sequence <= uids.count else {
            return Violation(kind: .expungeUnknownSequence, detail: "* \(sequence) EXPUNGE with \(uids.count) messages")
        }
        let uid = uids.remove(at: sequence - 1)
        if uid != 0 { flags.removeValue(forKey: uid) }
        return nil
    }

    /// UIDVALIDITY from SELECT; `known` is what this user's mailbox had before (other sessions).
    mutating func uidValidity(_ value: UInt32, known: UInt32?) -> Violation? {
        defer { uidValidity = value }
        let previous = uidValidity ?? known
        if let previous, previous != value {
            messageFacts.byUID.removeAll()
            flags.removeAll()
            return Violation(kind: .uidValidityChanged, detail: "UIDVALIDITY \(previous) became \(value)")
        }
        return nil
    }

    /// Sequence numbers in a SEARCH result.
    func searchResult(_ numbers: [UInt32], uid: Bool) -> Violation? {
        guard !uid, let beyond = numbers.first(where: { Int($0) > uids.count }) else { return nil }
        return Violation(kind: .sequenceBeyondExists, detail: "SEARCH returned \(beyond) with \(uids.count) messages")
    }

    /// `* n FETCH (...)`: checks and learns. `stored` is the flag change this FETCH answers, if any.
    /// `flagsMayChange`: a STORE this session cannot attribute to a UID is in flight.
    mutating func fetch(_ sequence: UInt32, _ facts: FetchFacts, stored: StoreExpectation?,
                        flagsMayChange: Bool = false, into violations: inout [Violation]) {
        let sequence = Int(sequence)
        guard sequence >= 1, sequence <= uids.count else {
            violations.append(Violation(kind: .sequenceBeyondExists,
                                        detail: "* \(sequence) FETCH with \(uids.count) messages"))
            return
        }
        learnUID(facts.uid, at: sequence, into: &violations)
        learnUID(facts.otherUID, at: sequence, into: &violations)
        let uid = uids[sequence - 1]
        guard uid != 0 else { return }
        for contradiction in LoadViolationKind.allCases where facts.contradicts(contradiction) {
            violations.append(Violation(kind: contradiction, detail: "UID \(uid): two different values in one FETCH"))
        }
        if let size = facts.size {
            if let known = messageFacts.byUID[uid]?.size, known != size {
                violations.append(Violation(kind: .sizeChanged, detail: "UID \(uid) size \(known) became \(size)"))
            }
            messageFacts.byUID[uid, default: Immutable()].size = size
        }
        if let sighting = facts.envelope,
            let fingerprint = MailboxChecker.compare(sighting, messageFacts.byUID[uid]?.envelope, into: &violations,
                                                     Violation(kind: .envelopeChanged, detail: "UID \(uid) envelope changed"))
        {
            messageFacts.byUID[uid, default: Immutable()].envelope = fingerprint
        }
        if let sighting = facts.bodyStructure,
            let fingerprint = MailboxChecker.compare(sighting, messageFacts.byUID[uid]?.bodyStructure, into: &violations,
                                                     Violation(kind: .bodyStructureChanged, detail: "UID \(uid) body structure changed"))
        {
            messageFacts.byUID[uid, default: Immutable()].bodyStructure = fingerprint
        }
        if let reported = facts.flags {
            if checksFlags, let stored, stored.uid == uid {
                if !stored.isSatisfied(by: reported) {
                    violations.append(Violation(kind: .flagsMismatch,
                        detail: "UID \(uid) STORE \(stored.describe) answered FLAGS \(reported.description)"))
                }
            } else if checksFlags, !flagsMayChange, let known = flags[uid], known != reported {
                violations.append(Violation(kind: .flagsMismatch,
                    detail: "UID \(uid) had FLAGS \(known.description), now \(reported.description)"))
            }
            if checksFlags { flags[uid] = reported }
        }
    }

    /// Checks a value seen against the one known: `changed` when they differ. Returns the fingerprint
    /// to keep, nil when the known one stands (same spelling: nothing computed).
    private static func compare(_ sighting: ValueSighting, _ known: Fingerprint?, into violations: inout [Violation],
                                _ changed: @autoclosure () -> Violation) -> Fingerprint? {
        if let known, known.spelling == sighting.spelling { return nil }
        var sighting = sighting
        let fingerprint = Fingerprint(spelling: sighting.spelling, value: sighting.valueDigest())
        if let known, known.value != fingerprint.value { violations.append(changed()) }
        return fingerprint
    }

    /// A UID reported for `sequence` (0: none): it must be the one known there, if any.
    private mutating func learnUID(_ reported: UInt32, at sequence: Int, into violations: inout [Violation]) {
        guard reported != 0 else { return }
        let known = uids[sequence - 1]
        if known != 0 && known != reported {
            violations.append(Violation(kind: .uidChanged,
                                        detail: "sequence \(sequence) was UID \(known), now UID \(reported)"))
        }
        uids[sequence - 1] = reported
    }

    /// Flags changed where this session cannot tell which UID: nothing known about flags holds any more.
    mutating func forgetFlags() { flags.removeAll(keepingCapacity: true) }

    /// A STORE completed OK: with `.SILENT` absent the server reported the flags already.
    mutating func storeCompleted(_ expectation: StoreExpectation, answered: Bool) {
        guard checksFlags, !answered, var known = flags[expectation.uid] else { return }
        known = expectation.apply(to: known)
        flags[expectation.uid] = known
    }
}

/// A flag change this session asked for on one UID, to check the server's FETCH answer against.
struct StoreExpectation {
    enum Action { case add, remove, replace }
    var uid: UInt32
    var action: Action
    var flags: TrackedFlags

    func isSatisfied(by reported: TrackedFlags) -> Bool {
        switch action {
        case .add: reported.isSuperset(of: flags)
        case .remove: reported.isDisjoint(with: flags)
        case .replace: reported == flags
        }
    }

    func apply(to known: TrackedFlags) -> TrackedFlags {
        switch action {
        case .add: known.union(flags)
        case .remove: known.subtracting(flags)
        case .replace: flags
        }
    }

    var describe: String {
        switch action {
        case .add: "+FLAGS " + flags.description
        case .remove: "-FLAGS " + flags.description
        case .replace: "FLAGS " + flags.description
        }
    }
}

/// What the sessions of one user (on one loop) were told about the messages of its mailbox that
/// never changes while UIDVALIDITY holds: a later session checks against what an earlier one saw
/// (a UID names the same message in every session, RFC 9051 2.3.1.1), and seldom computes a value
/// digest again, as a server spells a value the same way each time.
final class MessageFacts {
    var byUID: [UInt32: MailboxChecker.Immutable] = [:]

    init() {}
}

/// What one FETCH response said that the checker looks at, gathered item by item as the parser
/// visits them (``IMAPResponseParser/parse(_:visitingFetchItems:)``): fixed size, nothing to free.
struct FetchFacts {
    var uid: UInt32 = 0
    /// A second UID item that differs from the first (a server contradicting itself within one response).
    var otherUID: UInt32 = 0
    var size: UInt64?
    var envelope: ValueSighting?
    /// BODYSTRUCTURE or BODY (the form, extensible or not, is mixed into both digests).
    var bodyStructure: ValueSighting?
    var flags: TrackedFlags?
    /// Immutable facts given twice with different values within this response, as bits by
    /// ``LoadViolationKind`` raw value (bits, not an array: facts are copied and dropped per FETCH).
    private var contradictions: UInt32 = 0

    init(uid: UInt32 = 0, size: UInt64? = nil, flags: TrackedFlags? = nil) {
        self.uid = uid
        self.size = size
        self.flags = flags
    }

    mutating func add(_ item: IMAPFetchItemView) {
        switch item {
        case .uid(let reported):
            if uid == 0 { uid = reported } else if reported != uid { otherUID = reported }
        case .rfc822Size(let reported):
            FetchFacts.learn(&size, reported, .sizeChanged, &contradictions)
        case .envelope(let text):
            FetchFacts.learn(&envelope, ValueSighting(text, form: 0), .envelopeChanged, &contradictions)
        case .bodyStructure(let text, let extensible):
            FetchFacts.learn(&bodyStructure, ValueSighting(text, form: extensible ? 1 : 2), .bodyStructureChanged,
                             &contradictions)
        case .flags(let list):
            flags = TrackedFlags(list)
        case .other:
            break
        }
    }

    func contradicts(_ kind: LoadViolationKind) -> Bool { contradictions & (1 << UInt32(kind.rawValue)) != 0 }

    private static func learn(_ slot: inout UInt64?, _ value: UInt64, _ kind: LoadViolationKind,
                              _ contradictions: inout UInt32) {
        if let known = slot, known != value { contradictions |= 1 << UInt32(kind.rawValue) }
        slot = value
    }

    private static func learn(_ slot: inout ValueSighting?, _ sighting: ValueSighting, _ kind: LoadViolationKind,
                              _ contradictions: inout UInt32) {
        var sighting = sighting
        if var known = slot, known.spelling != sighting.spelling, known.valueDigest() != sighting.valueDigest() {
            contradictions |= 1 << UInt32(kind.rawValue)
        }
        slot = sighting
    }

    /// Computes what is still only a view (``ValueSighting/settle()``): call while the response's
    /// bytes are still in the read buffer, before they may move (a FETCH streamed over several reads).
    mutating func settle() {
        envelope?.settle()
        bodyStructure?.settle()
    }
}

/// An ENVELOPE or BODYSTRUCTURE of the FETCH being read: the digest of its spelling at once, the
/// digest of its value only if the checker needs it (see ``MailboxChecker/Fingerprint``).
///
/// Holds a view of the wire text until ``settle()``: valid only while the response is being handled.
struct ValueSighting {
    let spelling: UInt64
    private var text: IMAPValueText?
    private var value: UInt64 = 0
    /// Mixed into both digests (a BODY and a BODYSTRUCTURE of one message differ).
    private let form: UInt64

    init(_ text: IMAPValueText, form: UInt64) {
        self.form = form
        spelling = text.spellingDigest ^ form
        self.text = text
    }

    /// The value's digest, computed from the view the first time.
    mutating func valueDigest() -> UInt64 {
        settle()
        return value
    }

    /// Computes the value's digest now and drops the view.
    mutating func settle() {
        guard let text else { return }
        value = text.digest ^ form
        self.text = nil
    }
}
