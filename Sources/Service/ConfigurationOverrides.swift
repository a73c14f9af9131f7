//===----------------------------------------------------------------------===//
// Apus Service: `-o section.key=value`, configuration keys set on the command line.
//===----------------------------------------------------------------------===//

/// One `-o section.key=value` (or `-o key=value` for `[global]`): it replaces that key in that
/// section after the file is read, and is then validated exactly like a line of the file.
public struct ConfigurationOverride: Equatable, Sendable, CustomStringConvertible {
    /// The section it sets the key in (`global` when the option names none).
    public var section: String
    public var key: String
    public var value: String
    /// The option as typed, for error messages and for handing on to a daemon.
    public var text: String
    /// Relative paths in the value are relative to the directory the command ran in (a daemon
    /// moves to `/` before it reads its configuration, so this is captured when the option is parsed).
    public var baseDirectory: String

    /// How errors name it: `-o imap4be.listen=127.0.0.1`.
    public var description: String { "-o " + text }

    ///     override = [section "."] key "=" value
    ///     section  = name
    ///     key      = name          ; name as in the file: 1*(a-z / 0-9 / "_")
    ///     value    = *CHAR         ; the rest, trimmed as a file line's value is
    public static func parse(_ text: String, baseDirectory: String) throws(ConfigurationError)
        -> ConfigurationOverride
    {
        func mistake(_ message: String) -> ConfigurationError {
            ConfigurationError(file: "-o " + text, line: 0, message: message)
        }
        guard let equals = text.firstIndex(of: "=") else {
            throw mistake("expected section.key=value")
        }
        let name = text[..<equals].trimmedASCIIWhitespace
        let value = text[text.index(after: equals)...].trimmedASCIIWhitespace
        let parts = name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count <= 2 else { throw mistake("expected section.key=value") }
        let section = parts.count == 2 ? parts[0] : "global"
        let key = parts[parts.count - 1]
        guard ConfigurationFile.isName(section) else { throw mistake("bad section name '\(section)'") }
        guard ConfigurationFile.isName(key) else { throw mistake("bad key name '\(key)'") }
        return ConfigurationOverride(
            section: section, key: key, value: value, text: text, baseDirectory: baseDirectory)
    }
}

extension ConfigurationFile {
    /// The file with `overrides` applied in order: each replaces its key in its section (adding
    /// the section when the file has none), so a later `-o` for the same key wins.
    func applying(_ overrides: [ConfigurationOverride]) -> ConfigurationFile {
        var file = self
        for override in overrides {
            let entry = ConfigurationEntry(key: override.key, value: override.value, line: 0, override: override)
            guard let index = file.sections.firstIndex(where: { $0.name == override.section }) else {
                file.sections.append((override.section, 0, [entry]))
                continue
            }
            file.sections[index].entries.removeAll { $0.key == override.key }
            file.sections[index].entries.append(entry)
        }
        return file
    }
}
