//===----------------------------------------------------------------------===//
// Apus Service: `apus user add|passwd|del|list`, the users file the back end authenticates against.
//===----------------------------------------------------------------------===//

import Glibc
import MailStore

/// `apus user add NAME`, `apus user passwd NAME`, `apus user del NAME`, `apus user list`, with
/// `--config`/`-o` as everywhere. They edit the back end's `users_file` (``PasswordFile``: locked,
/// atomic, SHA512-CRYPT); a running back end sees the change at its next login, since it re-reads
/// the file when it changes and its credential cache is keyed by the stored hash.
enum UserCommand {
    static let usage = """
        usage: apus user add NAME [--password-stdin]      add a user (password prompted on a terminal)
               apus user passwd NAME [--password-stdin]   change a user's password
               apus user del NAME                         remove a user (their mail is kept)
               apus user list                             the users, one a line
        """

    /// The longest password accepted (a line longer than this on standard input is a mistake).
    static let maximumPasswordLength = 1024

    static func run(_ options: ServiceCommand.Options) -> Int32 {
        guard let action = options.words.first else {
            printError(usage)
            return 2
        }
        let names = Array(options.words.dropFirst())
        let expectsName = action != "list"
        guard ["add", "passwd", "del", "list"].contains(action), names.count == (expectsName ? 1 : 0) else {
            printError("apus user: " + (names.count > 1 ? "one user name at a time" : "unknown use") + "\n" + usage)
            return 2
        }
        if options.passwordFromStandardInput, action != "add", action != "passwd" {
            printError("apus user \(action): --password-stdin belongs to add and passwd")
            return 2
        }
        guard options.resolvedConfigurationPath() != nil else {
            printError(
                "apus user: no configuration found (\(ApusConfiguration.defaultPath), ./\(FirstRun.directoryName)/"
                    + "\(FirstRun.configurationName)); run `apus run` here once, or give --config FILE")
            return 1
        }
        guard let configuration = options.loadConfiguration() else { return 1 }
        let usersFile = configuration.imap4be.usersFile
        let file = PasswordFile(path: usersFile)
        func failed(_ error: StoreError, _ name: String? = nil) -> Int32 {
            printError("apus user \(action): " + (name.map { "'\($0)': " } ?? "") + "\(error) (\(usersFile))")
            return 1
        }
        do throws(StoreError) {
            if action == "list" {
                for name in try file.userNames() { print(name) }
                return 0
            }
            let name = names[0]
            _ = try UserName(name)
            if action == "del" {
                try file.removeUser(name)
                print("apus: removed user '\(name)' from \(usersFile) (their mail under \(configuration.imap4be.dataDirectory) is kept)")
                return 0
            }
            // Say "exists" or "no such user" before asking for a password, not after.
            let exists = try file.entry(for: name) != nil
            if action == "add", exists { throw StoreError.userExists }
            if action == "passwd", !exists { throw StoreError.noSuchUser }
            if action == "add", let problem = Daemon.makeDirectory(directoryOf(usersFile)) {
                printError("apus user add: cannot make the directory of \(usersFile): \(problem)")
                return 1
            }
            let password: [UInt8]
            switch readPassword(for: name, fromStandardInput: options.passwordFromStandardInput) {
            case .success(let read): password = read
            case .failure(let problem):
                printError("apus user \(action): \(problem)")
                return 1
            }
            try file.setPassword(user: name, password: password, change: action == "add" ? .add : .change)
            print(action == "add" ? "apus: added user '\(name)' to \(usersFile)" : "apus: changed the password of '\(name)'")
            return 0
        } catch {
            return failed(error, names.first)
        }
    }

    /// Why no password could be read, in words.
    struct PasswordInputError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// One line from standard input (`--password-stdin`), or typed twice at a no-echo prompt
    /// when standard input is a terminal.
    static func readPassword(for name: String, fromStandardInput: Bool) -> Result<[UInt8], PasswordInputError> {
        if fromStandardInput {
            return readLine(from: 0).flatMap(nonEmpty)
        }
        guard isatty(0) == 1 else {
            return .failure(PasswordInputError("standard input is not a terminal: pipe the password with --password-stdin"))
        }
        let first = TerminalPrompt.read("Password for \(name): ").flatMap(nonEmpty)
        guard case .success(let password) = first else { return first }
        let second = TerminalPrompt.read("Retype the password: ")
        guard case .success(let again) = second else { return second }
        return again == password ? .success(password) : .failure(PasswordInputError("the passwords differ"))
    }

    private static func nonEmpty(_ password: [UInt8]) -> Result<[UInt8], PasswordInputError> {
        password.isEmpty ? .failure(PasswordInputError("the password is empty")) : .success(password)
    }

    /// Bytes up to the first newline (CR LF or LF), at most `maximumPasswordLength`.
    static func readLine(from descriptor: Int32) -> Result<[UInt8], PasswordInputError> {
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while true {
            let count = read(descriptor, &byte, 1)
            if count < 0, errno == EINTR { continue }
            if count < 0 {
                return .failure(PasswordInputError("cannot read standard input: \(String(cString: strerror(errno)))"))
            }
            if count == 0 || byte == UInt8(ascii: "\n") { break }
            line.append(byte)
            if line.count > maximumPasswordLength + 1 {
                return .failure(PasswordInputError("password longer than \(maximumPasswordLength) bytes"))
            }
        }
        if line.last == UInt8(ascii: "\r") { line.removeLast() }
        return line.count > maximumPasswordLength
            ? .failure(PasswordInputError("password longer than \(maximumPasswordLength) bytes")) : .success(line)
    }
}

/// A password typed at the terminal on standard input without echo.
///
/// The terminal goes into non-canonical mode without echo and without signal keys, so this code
/// sees Ctrl-C (cancel) and Backspace itself and always restores the settings: a Ctrl-C that
/// killed the process mid-prompt would leave the user's shell without echo.
enum TerminalPrompt {
    static func read(_ prompt: String) -> Result<[UInt8], UserCommand.PasswordInputError> {
        var saved = termios()
        guard tcgetattr(0, &saved) == 0 else {
            return .failure(.init("cannot set up the terminal: \(String(cString: strerror(errno)))"))
        }
        var quiet = saved
        quiet.c_lflag &= ~tcflag_t(ECHO | ICANON | ISIG)
        withUnsafeMutableBytes(of: &quiet.c_cc) { characters in
            characters[Int(VMIN)] = 1
            characters[Int(VTIME)] = 0
        }
        guard tcsetattr(0, TCSAFLUSH, &quiet) == 0 else {
            return .failure(.init("cannot set up the terminal: \(String(cString: strerror(errno)))"))
        }
        defer {
            _ = tcsetattr(0, TCSAFLUSH, &saved)
            printError("")  // the Enter the user typed was not echoed
        }
        writeText(prompt)
        var password: [UInt8] = []
        var byte: UInt8 = 0
        while true {
            let count = Glibc.read(0, &byte, 1)
            if count < 0, errno == EINTR { continue }
            guard count == 1 else { return .failure(.init("no password typed")) }
            switch byte {
            case UInt8(ascii: "\r"), UInt8(ascii: "\n"):
                return .success(password)
            case 0x03:  // Ctrl-C
                return .failure(.init("cancelled"))
            case 0x04 where password.isEmpty:  // Ctrl-D on an empty line
                return .failure(.init("cancelled"))
            case 0x7F, 0x08:  // Backspace
                if !password.isEmpty { password.removeLast() }
            case 0x15:  // Ctrl-U: start over
                password.removeAll()
            default:
                password.append(byte)
                if password.count > UserCommand.maximumPasswordLength {
                    return .failure(.init("password longer than \(UserCommand.maximumPasswordLength) bytes"))
                }
            }
        }
    }

    /// The prompt goes to standard error, so standard output stays clean for scripts.
    private static func writeText(_ text: String) {
        var copy = text
        copy.withUTF8 { bytes in _ = writeAll(2, bytes) }
    }
}
