// MailStore: wire mailbox names <-> Maildir++ folder names, reversibly and safely.
//
// Wire names are UTF-8 with `/` as the hierarchy separator. On disk a folder is one directory
// entry `.A.B` below the user's Maildir: components are joined with `.`, and every byte that could
// mean something to the file system or to the Maildir++ layout is escaped as `%XX`:
//
//     wire "Work/Q1.2026"   ->  disk ".Work.Q1%2E2026"
//     wire "~tmp/a%b"       ->  disk ".%7Etmp.a%25b"
//
// Because `.` and `/` never survive unescaped inside a component, an encoded name is always a
// single path component that cannot be `.` or `..`, whatever the client sent.

/// A validated mailbox name: its wire form and the Maildir++ folder entry it maps to.
public struct MailboxName: Hashable, Sendable, CustomStringConvertible {
    /// Longest folder directory entry the store creates (file systems allow 255 bytes).
    public static let maximumEncodedLength = 240
    /// Deepest hierarchy the store accepts.
    public static let maximumDepth = 32
    /// The hierarchy separator on the wire (RFC 3501 section 5.1.1).
    public static let separator: UInt8 = UInt8(ascii: "/")

    /// The name as the client sees it, with `INBOX` (any case) normalised to upper case.
    public let wireName: String
    /// The folder's directory entry (`.A.B`), or the empty string for INBOX (the Maildir root).
    public let folderName: String

    /// True for INBOX itself.
    public var isInbox: Bool { folderName.isEmpty }
    public var description: String { wireName }

    /// The INBOX.
    public static let inbox = MailboxName(wireName: "INBOX", folderName: "")

    private init(wireName: String, folderName: String) {
        self.wireName = wireName
        self.folderName = folderName
    }

    /// Validates a wire name and maps it to its folder.
    ///
    /// Rejected with `StoreError.invalidMailboxName`: the empty name, NUL, empty components (`a//b`,
    /// a leading or trailing `/`), `.` and `..` components, more than `maximumDepth` levels and names
    /// whose folder entry would exceed `maximumEncodedLength` bytes.
    public init(_ wire: String) throws(StoreError) {
        let bytes = Array(wire.utf8)
        if bytes.isEmpty { throw .invalidMailboxName("empty name") }
        if bytes.contains(0) { throw .invalidMailboxName("NUL in name") }
        var components = bytes.split(separator: MailboxName.separator, omittingEmptySubsequences: false)
        if components.count > MailboxName.maximumDepth { throw .invalidMailboxName("hierarchy too deep") }
        // RFC 9051 section 5.1: INBOX is case-insensitive, also as the first level of a hierarchy.
        if Self.isInboxComponent(components[0]) {
            if components.count == 1 {
                self = .inbox
                return
            }
            components[0] = ArraySlice("INBOX".utf8)
        }
        var folder: [UInt8] = []
        var normalisedWire: [UInt8] = []
        for (position, component) in components.enumerated() {
            if component.isEmpty { throw .invalidMailboxName("empty hierarchy level") }
            if component.elementsEqual(".".utf8) || component.elementsEqual("..".utf8) {
                throw .invalidMailboxName("'.' or '..' level")
            }
            folder.append(UInt8(ascii: "."))
            Self.encode(component, into: &folder)
            if position > 0 { normalisedWire.append(MailboxName.separator) }
            normalisedWire.append(contentsOf: component)
        }
        if folder.count > MailboxName.maximumEncodedLength { throw .invalidMailboxName("name too long") }
        wireName = String(decoding: normalisedWire, as: UTF8.self)
        folderName = String(decoding: folder, as: UTF8.self)
    }

    /// Maps a folder directory entry found on disk (`.A.B`) back to a name, or nil when the entry
    /// is not a Maildir++ folder (no leading dot, `.` or `..`, an empty level).
    public init?(folderName entry: String) {
        let bytes = Array(entry.utf8)
        guard bytes.count > 1, bytes[0] == UInt8(ascii: "."), entry != ".." else { return nil }
        let components = bytes[1...].split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        var wire: [UInt8] = []
        for (position, component) in components.enumerated() {
            if component.isEmpty { return nil }
            if position > 0 { wire.append(MailboxName.separator) }
            guard Self.decode(component, into: &wire) else { return nil }
        }
        guard let name = try? MailboxName(String(decoding: wire, as: UTF8.self)), !name.isInbox,
            name.folderName == entry
        else { return nil }
        self = name
    }

    /// The parent's name (`A/B` for `A/B/C`), nil for a top-level name.
    public var parent: MailboxName? {
        guard let cut = wireName.utf8.lastIndex(of: MailboxName.separator) else { return nil }
        return try? MailboxName(String(wireName[..<cut]))
    }

    /// True when `self` lies below `ancestor` in the hierarchy.
    public func isDescendant(of ancestor: MailboxName) -> Bool {
        if ancestor.isInbox { return false }
        return folderName.utf8.starts(with: ancestor.folderName.utf8)
            && folderName.utf8.count > ancestor.folderName.utf8.count
            && folderName.utf8.dropFirst(ancestor.folderName.utf8.count).first == UInt8(ascii: ".")
    }

    // MARK: - Escaping

    private static func isInboxComponent(_ component: ArraySlice<UInt8>) -> Bool {
        component.count == 5 && component.elementsEqual("INBOX".utf8) { $0 & 0xDF == $1 }
    }

    private static func needsEscape(_ byte: UInt8, first: Bool) -> Bool {
        switch byte {
        case 0..<0x20, 0x7F: return true
        case UInt8(ascii: "%"), UInt8(ascii: "."), UInt8(ascii: "/"), UInt8(ascii: "*"), UInt8(ascii: "\\"):
            return true
        case UInt8(ascii: "~"): return first
        default: return false
        }
    }

    private static func encode(_ component: ArraySlice<UInt8>, into out: inout [UInt8]) {
        let hex = Array("0123456789ABCDEF".utf8)
        for (offset, byte) in component.enumerated() {
            if needsEscape(byte, first: offset == 0) {
                out.append(UInt8(ascii: "%"))
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 15)])
            } else {
                out.append(byte)
            }
        }
    }

    /// Decodes `%XX`; a `%` not followed by two hex digits is kept literally (names from other
    /// servers). Returns false for an escaped NUL or `/`, which no wire name may contain.
    private static func decode(_ component: ArraySlice<UInt8>, into out: inout [UInt8]) -> Bool {
        var index = component.startIndex
        while index < component.endIndex {
            let byte = component[index]
            if byte == UInt8(ascii: "%"), index + 2 < component.endIndex,
                let high = Hex.value(component[index + 1]), let low = Hex.value(component[index + 2])
            {
                let decoded = high << 4 | low
                if decoded == 0 || decoded == MailboxName.separator { return false }
                out.append(decoded)
                index += 3
            } else {
                out.append(byte)
                index += 1
            }
        }
        return true
    }
}

/// A validated user name, safe to use as one directory entry under the data directory.
public struct UserName: Hashable, Sendable, CustomStringConvertible {
    /// Longest accepted user name in bytes.
    public static let maximumLength = 128
    /// The name as given at login.
    public let value: String
    public var description: String { value }

    /// Accepts 1 to `maximumLength` bytes of `A-Z a-z 0-9 . _ - + @`, not starting with `.` or `-`.
    public init(_ value: String) throws(StoreError) {
        let bytes = value.utf8
        guard !bytes.isEmpty, bytes.count <= UserName.maximumLength,
            bytes.first != UInt8(ascii: "."), bytes.first != UInt8(ascii: "-")
        else { throw .invalidUserName }
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"),
                UInt8(ascii: "+"), UInt8(ascii: "@"):
                continue
            default: throw .invalidUserName
            }
        }
        self.value = value
    }
}
