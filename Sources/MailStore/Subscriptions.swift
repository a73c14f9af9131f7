// MailStore: the user's subscription list (RFC 3501 section 6.3.6), `subscriptions` in the Maildir
// root: one wire mailbox name per line. Dovecot 2.3's tab-separated version 2 lines are read too.

/// The set of subscribed mailbox names, in the order they were added.
struct Subscriptions: Equatable {
    static let fileName = "subscriptions"
    private(set) var names: [String]

    init(_ names: [String] = []) { self.names = names }

    ///     file = ["V" TAB "2" LF] *(name LF)        ; version 2 names: prefix TAB level *(TAB level)
    init(parsing bytes: [UInt8]) {
        var names: [String] = []
        var isVersion2 = false
        for line in bytes.split(separator: UInt8(ascii: "\n")) {
            var text = String(decoding: line, as: UTF8.self)
            if names.isEmpty && !isVersion2 && text == "V\t2" {
                isVersion2 = true
                continue
            }
            if isVersion2 {
                // Version 2 lines are "<namespace prefix>\t<level>\t<level>…".
                text = text.split(separator: "\t", omittingEmptySubsequences: false).dropFirst()
                    .joined(separator: "/")
            }
            if !text.isEmpty && !names.contains(text) { names.append(text) }
        }
        self.names = names
    }

    var serialized: [UInt8] {
        var bytes: [UInt8] = []
        for name in names {
            bytes.append(contentsOf: name.utf8)
            bytes.append(UInt8(ascii: "\n"))
        }
        return bytes
    }

    mutating func add(_ name: String) -> Bool {
        if names.contains(name) { return false }
        names.append(name)
        return true
    }

    mutating func remove(_ name: String) -> Bool {
        guard let index = names.firstIndex(of: name) else { return false }
        names.remove(at: index)
        return true
    }
}
