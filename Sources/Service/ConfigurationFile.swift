//===----------------------------------------------------------------------===//
// Apus Service: the INI-like configuration file, read into sections of keyed values.
//===----------------------------------------------------------------------===//

import Glibc

/// A configuration mistake, named by file and line so an administrator can go straight to it:
/// `/etc/apus/apus.conf:12: unknown key 'lisen' in [imap4]`.
public struct ConfigurationError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The file read (or "(defaults)" for a mistake in built-in values).
    public var file: String
    /// 1-based line number; 0 when the mistake is not on one line (the file cannot be read).
    public var line: Int
    public var message: String

    public init(file: String, line: Int, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    public var description: String { line > 0 ? "\(file):\(line): \(message)" : "\(file): \(message)" }

    /// A mistake in `entry` of `file`: named by the `-o` option when the entry came from one.
    init(file: String, entry: ConfigurationEntry, message: String) {
        if let override = entry.override {
            self.init(file: override.description, line: 0, message: message)
        } else {
            self.init(file: file, line: entry.line, message: message)
        }
    }
}

/// One `key = value` line, with where it came from.
public struct ConfigurationEntry: Equatable, Sendable {
    public var key: String
    public var value: String
    /// 0 for an entry set on the command line.
    public var line: Int
    /// The `-o` option that set this entry, or nil for a line of the file.
    public var override: ConfigurationOverride? = nil
}

/// The file as written: sections in order, each a list of entries.
///
/// ```
/// # comment (also ';'); whole lines only, since '#' may appear in a path
/// [global]
/// run_dir = /run/apus
/// [imap4]
/// listen = 0.0.0.0:143
/// ```
///
/// Keys before any section header belong to `[global]`. Section and key names are lower-case
/// ASCII letters, digits and `_`; values run to the end of the line, trimmed.
public struct ConfigurationFile: Sendable {
    /// The longest line accepted; a longer one is a mistake, not a value.
    public static let maximumLineLength = 8192
    /// The largest file read.
    public static let maximumFileSize = 1 << 20

    public var path: String
    public var sections: [(name: String, line: Int, entries: [ConfigurationEntry])]

    /// Reads and splits `path`; throws with the file and line of the first malformed line.
    public static func read(path: String) throws(ConfigurationError) -> ConfigurationFile {
        let bytes: [UInt8]
        do {
            bytes = try readWholeFile(path: path, limit: maximumFileSize)
        } catch {
            throw ConfigurationError(file: path, line: 0, message: error.description)
        }
        return try parse(bytes, path: path)
    }

    /// Splits `text` (the contents of `path`) into sections and entries.
    public static func parse(_ text: [UInt8], path: String) throws(ConfigurationError) -> ConfigurationFile {
        var file = ConfigurationFile(path: path, sections: [("global", 0, [])])
        var lineNumber = 0
        var start = 0
        while start < text.count {
            lineNumber += 1
            var end = start
            while end < text.count, text[end] != UInt8(ascii: "\n") { end += 1 }
            let next = end + 1
            if end - start > maximumLineLength {
                throw ConfigurationError(
                    file: path, line: lineNumber,
                    message: "line longer than \(maximumLineLength) bytes")
            }
            var line = text[start..<end]
            start = next
            if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
            guard let decoded = String(validating: line, as: UTF8.self) else {
                throw ConfigurationError(file: path, line: lineNumber, message: "not valid UTF-8")
            }
            let trimmed = decoded.trimmedASCIIWhitespace
            if trimmed.isEmpty || trimmed.hasPrefix("#") || trimmed.hasPrefix(";") { continue }
            if trimmed.hasPrefix("[") {
                guard trimmed.hasSuffix("]") else {
                    throw ConfigurationError(file: path, line: lineNumber, message: "section header without ']'")
                }
                let name = String(trimmed.dropFirst().dropLast()).trimmedASCIIWhitespace
                guard isName(name) else {
                    throw ConfigurationError(file: path, line: lineNumber, message: "bad section name '\(name)'")
                }
                if file.sections.contains(where: { $0.name == name && $0.line > 0 }) {
                    throw ConfigurationError(file: path, line: lineNumber, message: "section [\(name)] repeated")
                }
                if name == "global", file.sections.count == 1 {
                    file.sections[0].line = lineNumber
                } else {
                    file.sections.append((name, lineNumber, []))
                }
                continue
            }
            guard let equals = trimmed.firstIndex(of: "=") else {
                throw ConfigurationError(
                    file: path, line: lineNumber,
                    message: "expected 'key = value' or '[section]', found '\(trimmed)'")
            }
            let key = String(trimmed[..<equals]).trimmedASCIIWhitespace
            let value = String(trimmed[trimmed.index(after: equals)...]).trimmedASCIIWhitespace
            guard isName(key) else {
                throw ConfigurationError(file: path, line: lineNumber, message: "bad key name '\(key)'")
            }
            file.sections[file.sections.count - 1].entries.append(
                ConfigurationEntry(
                    key: key, value: value,
                    line: lineNumber))
        }
        return file
    }

    static func isName(_ name: String) -> Bool {
        !name.isEmpty
            && name.utf8.allSatisfy { byte in
                (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                    || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                    || byte == UInt8(ascii: "_")
            }
    }
}

extension StringProtocol {
    /// The string without leading and trailing spaces and tabs.
    var trimmedASCIIWhitespace: String {
        var slice = Substring(self)
        while let first = slice.first, first == " " || first == "\t" { slice = slice.dropFirst() }
        while let last = slice.last, last == " " || last == "\t" { slice = slice.dropLast() }
        return String(slice)
    }
}

/// A file that could not be read, in words.
struct FileReadError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// Reads a whole (small) file; refuses one larger than `limit` bytes.
func readWholeFile(path: String, limit: Int) throws(FileReadError) -> [UInt8] {
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else { throw FileReadError(message: "cannot open: \(String(cString: strerror(errno)))") }
    defer { close(descriptor) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 16384)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        if count < 0, errno == EINTR { continue }
        if count < 0 { throw FileReadError(message: "cannot read: \(String(cString: strerror(errno)))") }
        if count == 0 { return bytes }
        bytes += chunk[0..<count]
        if bytes.count > limit { throw FileReadError(message: "larger than \(limit) bytes") }
    }
}
