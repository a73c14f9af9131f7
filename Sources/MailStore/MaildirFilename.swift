// MailStore: Maildir file names.
//
// A message file is `<base>:2,<info>`. Apus makes bases Dovecot's way, so sizes need no stat:
//
//     1764190000.M123456P4242Q7.mailhost,S=2048,W=2090:2,FS
//
// `S=` is the file size and `W=` the size with every line ending as CRLF (RFC822.SIZE). The info
// part carries the system-flag letters in ASCII order, then one lower-case letter per keyword.

import Glibc
import Synchronization

/// The parsed parts of a Maildir file name that the store uses.
struct MaildirFilename: Equatable {
    /// The part before `:2,` (the UID list keys on it; it never changes when flags change).
    var base: Substring
    var flags: SystemFlags
    var keywords: KeywordSet
    /// `S=` when present.
    var fileSize: Int64?
    /// `W=` when present.
    var virtualSize: Int64?

    ///     name  = base [":2," *flag-letter]
    ///     base  = unique *("," field)                ; fields used: "S=" size, "W=" CRLF size
    init(parsing name: String) {
        var baseEnd = name.endIndex
        var flags = SystemFlags()
        var keywords = KeywordSet()
        if let colon = name.firstIndex(of: ":") {
            baseEnd = colon
            let info = name[name.index(after: colon)...]
            if info.hasPrefix("2,") {
                for letter in info.utf8.dropFirst(2) {
                    if let flag = SystemFlags.flag(forLetter: letter) {
                        flags.insert(flag)
                    } else if letter >= UInt8(ascii: "a") && letter <= UInt8(ascii: "z") {
                        keywords.insert(Int(letter - UInt8(ascii: "a")))
                    }
                }
            }
        }
        base = name[..<baseEnd]
        self.flags = flags
        self.keywords = keywords
        fileSize = MaildirFilename.field("S=", in: base)
        virtualSize = MaildirFilename.field("W=", in: base)
    }

    /// Finds `,S=<digits>` style fields after the first dot-separated part.
    private static func field(_ key: String, in base: Substring) -> Int64? {
        var remaining = base[...]
        while let comma = remaining.firstIndex(of: ",") {
            let after = remaining[remaining.index(after: comma)...]
            if after.hasPrefix(key) {
                let digits = after.dropFirst(key.count).prefix { $0.isASCII && $0.isNumber }
                return Int64(digits)
            }
            remaining = after
        }
        return nil
    }

    /// The file name for `base` with the given flags: `<base>:2,<letters>`.
    static func name(base: Substring, flags: SystemFlags, keywords: KeywordSet) -> String {
        var name = String(base)
        name.reserveCapacity(base.utf8.count + 12)
        name += ":2,"
        for (index, letter) in SystemFlags.letters.enumerated() where flags.rawValue & (1 << UInt8(index)) != 0 {
            name.unicodeScalars.append(Unicode.Scalar(letter))
        }
        for index in 0..<KeywordTable.capacity where keywords.contains(index) {
            name.unicodeScalars.append(Unicode.Scalar(UInt8(ascii: "a") + UInt8(index)))
        }
        return name
    }
}

/// Makes unique Maildir bases: `<seconds>.M<microseconds>P<pid>Q<counter>.<host>`.
///
/// Threading: `Sendable`; the counter is atomic so writers on any thread get distinct names.
final class MaildirNameGenerator: Sendable {
    private let counter = Atomic<UInt64>(0)
    private let host: String
    private let pid: Int32

    init() {
        var buffer = [CChar](repeating: 0, count: 256)
        let hostName =
            gethostname(&buffer, 255) == 0
            ? String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "localhost"
        // The Maildir convention escapes `/` and `:` in the host part; `,` would confuse S= parsing.
        var escaped = ""
        for scalar in hostName.unicodeScalars {
            switch scalar {
            case "/": escaped += "\\057"
            case ":": escaped += "\\072"
            case ",": escaped += "\\054"
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        host = escaped.isEmpty ? "localhost" : escaped
        pid = getpid()
    }

    /// A fresh unique base without sizes, with the time of saving in front (SAVEDATE comes from it).
    func uniqueStem(now: Int64 = currentTimeNanoseconds()) -> String {
        let sequence = counter.add(1, ordering: .relaxed).newValue
        let seconds = now / 1_000_000_000
        let micro = (now / 1000) % 1_000_000
        return "\(seconds).M\(micro)P\(pid)Q\(sequence).\(host)"
    }

    /// The name of a temporary file of this process in `tmp/` (cleared at the next open after a crash).
    func temporaryName() -> String {
        "apus-\(pid)-\(counter.add(1, ordering: .relaxed).newValue).tmp"
    }

    /// A base with Dovecot's size fields.
    static func base(stem: String, fileSize: Int64, virtualSize: Int64) -> String {
        "\(stem),S=\(fileSize),W=\(virtualSize)"
    }

    /// Seconds since the epoch encoded at the front of a base (`1764190000.M…`), if any.
    static func saveTime(ofBase base: Substring) -> Int64? {
        Int64(base.prefix { $0.isASCII && $0.isNumber })
    }
}
