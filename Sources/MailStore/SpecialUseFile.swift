// MailStore: the special-use attributes a mailbox was created with (RFC 6154 CREATE ... USE), kept in
// `apus-special-use` inside the folder: one attribute per line. Kept in the folder itself so RENAME
// carries it along and DELETE removes it, with no user-wide table to keep in step.

/// The special-use attributes of one folder, as stored in its `apus-special-use` file.
struct SpecialUseFile: Equatable {
    static let fileName = "apus-special-use"
    private(set) var uses: [SpecialUse]

    init(_ uses: [SpecialUse]) {
        var unique: [SpecialUse] = []
        for use in uses where !unique.contains(use) { unique.append(use) }
        self.uses = unique
    }

    ///     file = *(use-attr LF)       ; e.g. "\Archive" LF; unknown lines are skipped
    init(parsing bytes: [UInt8]) {
        self.init(bytes.split(separator: UInt8(ascii: "\n")).compactMap {
            SpecialUse(attribute: String(decoding: $0, as: UTF8.self))
        })
    }

    var serialized: [UInt8] {
        var bytes: [UInt8] = []
        for use in uses {
            bytes.append(contentsOf: use.rawValue.utf8)
            bytes.append(UInt8(ascii: "\n"))
        }
        return bytes
    }
}

extension SpecialUse {
    /// The use an attribute names (`\archive` as well as `\Archive`); nil for attributes this store
    /// cannot give a folder (`\All` and `\Flagged` name virtual mailboxes, which Maildir has not).
    public init?(attribute: String) {
        let folded = attribute.lowercased()
        guard let use = SpecialUse.allCases.first(where: { $0.rawValue.lowercased() == folded }) else { return nil }
        self = use
    }
}
