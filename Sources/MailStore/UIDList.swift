// MailStore: the UID list of a mailbox (UIDVALIDITY, UIDNEXT, uid -> file).
//
// Apus writes its own list, `apus-uidlist`, in the text format of Dovecot's `dovecot-uidlist`
// version 3, so the same parser reads both and a Dovecot list migrates with every UID:
//
//     3 V1764190000 N43
//     41 :1764190000.M1P9Q1.host,S=120,W=123
//     42 :1764190001.M5P9Q2.host,S=900,W=930:2,S
//
// Apus appends one line per new message (a single write, with O_APPEND) and rewrites the whole list
// only when compacting at open. The name after `:` may carry an info suffix; only its base (the part
// before `:`) identifies the file. UIDNEXT is the larger of the header's N and the highest UID + 1,
// so appended lines never need the header rewritten.

/// The parsed UID list.
struct UIDList: Equatable {
    static let fileName = "apus-uidlist"
    static let dovecotFileName = "dovecot-uidlist"

    struct Entry: Equatable {
        var uid: UInt32
        /// The recorded file name (base, possibly followed by `:2,<info>`).
        var name: Substring
        var base: Substring { name.prefix { $0 != ":" } }
    }

    var uidValidity: UInt32
    var uidNext: UInt32
    /// Entries sorted by UID, one per UID (a later duplicate line is ignored).
    var entries: [Entry]
    /// Lines that did not parse, or a last line cut short by a crash: compaction will drop them.
    var damagedLines: Int

    init(uidValidity: UInt32, uidNext: UInt32 = 1, entries: [Entry] = []) {
        self.uidValidity = uidValidity
        self.uidNext = uidNext
        self.entries = entries
        damagedLines = 0
    }

    /// Parses a version 3 list:
    ///
    ///     uidlist = header LF *(entry LF)
    ///     header  = "3" *(SP field)                  ; fields used: "V" uidvalidity, "N" uidnext
    ///     entry   = uid *(SP ext-field) SP ":" filename
    ///
    /// Throws `.damaged` when the header is unusable (the caller keeps the
    /// file aside rather than invent a new UIDVALIDITY over it).
    init(parsing bytes: [UInt8]) throws(StoreError) {
        let text = String(decoding: bytes, as: UTF8.self)
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        var damaged = 0
        // A list always ends with a newline; anything after the last one is a write cut short.
        if let last = lines.last {
            if !last.isEmpty { damaged += 1 }
            lines.removeLast()
        }
        guard let header = lines.first else { throw .damaged("empty UID list") }
        let fields = header.split(separator: " ")
        guard fields.first == "3" else { throw .damaged("UID list version is not 3") }
        var validity: UInt32?
        var next: UInt32 = 1
        for field in fields.dropFirst() {
            if field.hasPrefix("V") { validity = UInt32(field.dropFirst()) }
            if field.hasPrefix("N"), let value = UInt32(field.dropFirst()) { next = value }
        }
        guard let validity, validity != 0 else { throw .damaged("UID list has no UIDVALIDITY") }
        var parsed: [Entry] = []
        parsed.reserveCapacity(lines.count)
        for line in lines.dropFirst() {
            // <uid>[ <extension fields>] :<file name>
            guard let space = line.firstIndex(of: " "), let uid = UInt32(line[..<space]), uid > 0,
                let colon = line[space...].firstIndex(of: ":")
            else {
                damaged += 1
                continue
            }
            let name = line[line.index(after: colon)...]
            if name.isEmpty {
                damaged += 1
                continue
            }
            parsed.append(Entry(uid: uid, name: name))
        }
        parsed.sort { $0.uid < $1.uid }
        var unique: [Entry] = []
        unique.reserveCapacity(parsed.count)
        for entry in parsed where unique.last?.uid != entry.uid { unique.append(entry) }
        damaged += parsed.count - unique.count
        uidValidity = validity
        // A UID of 2^32-1 leaves UIDNEXT there: no UID is left, and appends say so.
        uidNext = max(next, unique.last.map { $0.uid == .max ? .max : $0.uid + 1 } ?? 1)
        entries = unique
        damagedLines = damaged
    }

    /// The whole list as written by compaction.
    var serialized: [UInt8] {
        var bytes: [UInt8] = []
        bytes.append(contentsOf: "3 V".utf8)
        bytes.appendDecimal(uidValidity)
        bytes.append(contentsOf: " N".utf8)
        bytes.appendDecimal(uidNext)
        bytes.append(UInt8(ascii: "\n"))
        for entry in entries { UIDList.appendLine(uid: entry.uid, name: entry.name, to: &bytes) }
        return bytes
    }

    /// Appends `<uid> :<name>\n`.
    static func appendLine<S: StringProtocol>(uid: UInt32, name: S, to bytes: inout [UInt8]) {
        bytes.appendDecimal(uid)
        bytes.append(contentsOf: " :".utf8)
        bytes.append(contentsOf: name.utf8)
        bytes.append(UInt8(ascii: "\n"))
    }
}
