// MailStore: message flags as Maildir stores them (info suffix letters) and per-mailbox keywords.

/// The system flags (RFC 3501 section 2.3.2) plus Maildir's "passed" flag, stored as the upper-case
/// letters of the Maildir info suffix: D draft, F flagged, P passed, R replied (\Answered),
/// S seen, T trashed (\Deleted).
public struct SystemFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let draft = SystemFlags(rawValue: 1 << 0)
    public static let flagged = SystemFlags(rawValue: 1 << 1)
    /// Maildir's P (forwarded); not an IMAP system flag, kept so other readers keep seeing it.
    public static let passed = SystemFlags(rawValue: 1 << 2)
    public static let answered = SystemFlags(rawValue: 1 << 3)
    public static let seen = SystemFlags(rawValue: 1 << 4)
    public static let deleted = SystemFlags(rawValue: 1 << 5)

    /// Maildir letters in ASCII order, matched bit for bit with the flags above.
    static let letters: [UInt8] = Array("DFPRST".utf8)

    /// The flag for one info-suffix letter, or nil for a letter the store does not know.
    static func flag(forLetter letter: UInt8) -> SystemFlags? {
        guard let index = letters.firstIndex(of: letter) else { return nil }
        return SystemFlags(rawValue: 1 << UInt8(index))
    }
}

/// A set of keywords of one mailbox, as bits indexed by the mailbox's keyword table (bit 0 is
/// Maildir letter `a`).
public struct KeywordSet: Hashable, Sendable {
    public var bits: UInt32
    public init(bits: UInt32 = 0) { self.bits = bits }
    public static let empty = KeywordSet()
    public func contains(_ index: Int) -> Bool { bits & (1 << UInt32(index)) != 0 }
    public mutating func insert(_ index: Int) { bits |= 1 << UInt32(index) }
    public var isEmpty: Bool { bits == 0 }
}

/// A mailbox's keyword table in Dovecot's `dovecot-keywords` format: one line per keyword,
/// `<index> <name>`, index 0 being Maildir letter `a`. Apus reads and writes the same file, so
/// Dovecot, and any reader that keeps unknown letters, see the same keywords.
///
///     0 $Forwarded
///     1 Work
struct KeywordTable: Equatable {
    /// Maildir offers the letters a to z.
    static let capacity = 26
    static let fileName = "dovecot-keywords"

    private(set) var names: [String] = []

    init(names: [String] = []) { self.names = names }

    /// Parses the file; lines that do not parse and indexes out of range are skipped.
    ///
    ///     keywords = *(index SP keyword LF)          ; index 0..25, letter = "a" + index
    init(parsing bytes: [UInt8]) {
        var table = [String?](repeating: nil, count: KeywordTable.capacity)
        for line in bytes.split(separator: UInt8(ascii: "\n")) {
            guard let space = line.firstIndex(of: UInt8(ascii: " ")),
                let index = Int(String(decoding: line[line.startIndex..<space], as: UTF8.self)),
                index >= 0, index < KeywordTable.capacity
            else { continue }
            let name = String(decoding: line[(space + 1)...], as: UTF8.self)
            if KeywordTable.isValidKeyword(name) { table[index] = name }
        }
        let last = table.lastIndex { $0 != nil } ?? -1
        names = (0..<(last + 1)).map { table[$0] ?? "" }
    }

    var serialized: [UInt8] {
        var bytes: [UInt8] = []
        for (index, name) in names.enumerated() where !name.isEmpty {
            bytes.appendDecimal(index)
            bytes.append(UInt8(ascii: " "))
            bytes.append(contentsOf: name.utf8)
            bytes.append(UInt8(ascii: "\n"))
        }
        return bytes
    }

    /// The index of `name` (keywords compare case-insensitively, RFC 3501 section 2.3.2).
    func index(of name: String) -> Int? {
        names.firstIndex { KeywordTable.equalIgnoringASCIICase($0, name) }
    }

    /// The index of `name`, adding it when new. Throws when all 26 letters are taken.
    mutating func indexAdding(_ name: String) throws(StoreError) -> Int {
        guard KeywordTable.isValidKeyword(name) else { throw .invalidKeyword }
        if let existing = index(of: name) { return existing }
        if let free = names.firstIndex(of: "") {
            names[free] = name
            return free
        }
        guard names.count < KeywordTable.capacity else { throw .tooManyKeywords }
        names.append(name)
        return names.count - 1
    }

    var isFull: Bool { names.count >= KeywordTable.capacity && !names.contains("") }

    /// The names of the keywords in `set`, in table order.
    func names(of set: KeywordSet) -> [String] {
        names.indices.filter { set.contains($0) && !names[$0].isEmpty }.map { names[$0] }
    }

    /// A keyword is an IMAP atom that does not start with a backslash (RFC 3501 `flag-keyword`).
    static func isValidKeyword(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 100, name.utf8.first != UInt8(ascii: "\\") else { return false }
        for byte in name.utf8 {
            switch byte {
            case 0...0x20, 0x7F...0xFF, UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "{"), UInt8(ascii: "%"),
                UInt8(ascii: "*"), UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "]"):
                return false
            default: continue
            }
        }
        return true
    }

    static func equalIgnoringASCIICase(_ a: String, _ b: String) -> Bool {
        a.utf8.count == b.utf8.count && a.utf8.elementsEqual(b.utf8) { lowerASCII($0) == lowerASCII($1) }
    }

    static func lowerASCII(_ byte: UInt8) -> UInt8 {
        (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z")) ? byte | 0x20 : byte
    }
}
