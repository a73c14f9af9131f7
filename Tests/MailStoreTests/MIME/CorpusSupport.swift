// CorpusSupport: loading the MIME corpus and reading IMAP response syntax into trees, for tests.

import Glibc
import Testing

@testable import MailStore

/// The corpus of awkward messages next to this file, and Dovecot's captured answers.
enum Corpus {
    static let directory: String = {
        let file = #filePath
        let slash = file.lastIndex(of: "/")!
        return String(file[..<slash]) + "/Corpus"
    }()

    /// Names of the corpus messages (without `.eml`), sorted.
    static var names: [String] {
        guard let directory = opendir(directory) else { return [] }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name.hasSuffix(".eml") { names.append(String(name.dropLast(4))) }
        }
        return names.sorted()
    }

    static func message(_ name: String) -> [UInt8] { read(directory + "/" + name + ".eml") }

    static func dovecotAnswer(_ name: String) -> [UInt8] { read(directory + "/" + name + ".dovecot") }

    static func read(_ path: String) -> [UInt8] {
        guard let file = fopen(path, "rb") else { return [] }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = fread(&buffer, 1, buffer.count, file)
            if count <= 0 { break }
            bytes.append(contentsOf: buffer[0..<count])
        }
        return bytes
    }
}

/// An IMAP response value: enough of RFC 3501's syntax to compare ENVELOPE and BODYSTRUCTURE
/// answers whatever string form (quoted or literal) each server chose.
indirect enum IMAPTree: Equatable, CustomStringConvertible {
    case nil_
    case string([UInt8])
    case number(Int)
    case atom(String)
    case list([IMAPTree])

    var description: String {
        switch self {
        case .nil_: return "NIL"
        case .string(let bytes): return "\"" + String(decoding: bytes, as: UTF8.self) + "\""
        case .number(let value): return String(value)
        case .atom(let atom): return atom
        case .list(let items): return "(" + items.map(\.description).joined(separator: " ") + ")"
        }
    }

    /// Parses one value; nil on a syntax error.
    static func parse(_ bytes: [UInt8]) -> IMAPTree? {
        var position = 0
        return parseValue(bytes, &position)
    }

    private static func parseValue(_ bytes: [UInt8], _ position: inout Int) -> IMAPTree? {
        while position < bytes.count && (bytes[position] == 32 || bytes[position] == 13 || bytes[position] == 10) {
            position += 1
        }
        guard position < bytes.count else { return nil }
        switch bytes[position] {
        case UInt8(ascii: "("):
            position += 1
            var items: [IMAPTree] = []
            while true {
                while position < bytes.count && bytes[position] == 32 { position += 1 }
                guard position < bytes.count else { return nil }
                if bytes[position] == UInt8(ascii: ")") {
                    position += 1
                    return .list(items)
                }
                guard let item = parseValue(bytes, &position) else { return nil }
                items.append(item)
            }
        case UInt8(ascii: "\""):
            position += 1
            var value: [UInt8] = []
            while position < bytes.count && bytes[position] != UInt8(ascii: "\"") {
                if bytes[position] == UInt8(ascii: "\\") { position += 1 }
                guard position < bytes.count else { return nil }
                value.append(bytes[position])
                position += 1
            }
            position += 1
            return .string(value)
        case UInt8(ascii: "{"):
            var count = 0
            position += 1
            while position < bytes.count && bytes[position] != UInt8(ascii: "}") {
                count = count * 10 + Int(bytes[position] - 48)
                position += 1
            }
            position += 3  // "}" CRLF
            guard position + count <= bytes.count else { return nil }
            defer { position += count }
            return .string(Array(bytes[position..<position + count]))
        default:
            let start = position
            while position < bytes.count && bytes[position] != 32 && bytes[position] != UInt8(ascii: ")")
                && bytes[position] != 13 && bytes[position] != 10
            {
                position += 1
            }
            let atom = String(decoding: bytes[start..<position], as: UTF8.self)
            if atom == "NIL" { return .nil_ }
            if let number = Int(atom) { return .number(number) }
            return .atom(atom)
        }
    }

    /// Every place where `self` and `other` differ, as `path: ours | theirs` lines; paths are list
    /// indices from the top (`3.0.2` = item 2 of item 0 of item 3).
    func differences(from other: IMAPTree, path: String = "") -> [String] {
        if case .list(let ours) = self, case .list(let theirs) = other, ours.count == theirs.count {
            var result: [String] = []
            for index in ours.indices {
                let childPath = path.isEmpty ? String(index) : path + "." + String(index)
                result += ours[index].differences(from: theirs[index], path: childPath)
            }
            return result
        }
        return self == other ? [] : ["\(path): \(self) | \(other)"]
    }
}
