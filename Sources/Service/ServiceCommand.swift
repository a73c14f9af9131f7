//===----------------------------------------------------------------------===//
// Apus Service: the `apus` subcommands other than `load`.
//===----------------------------------------------------------------------===//

/// Entry point for `apus run|start|stop|restart|status|reload|user …` (issue 7 builds these out).
public enum ServiceCommand {
    /// Runs the subcommand in `arguments` (without the program name); returns the exit status.
    public static func run(_ arguments: [String]) -> Int32 {
        printError("apus: unknown command '\(arguments.first ?? "")'\n" + usage)
        return 2
    }

    public static let usage = """
        usage: apus run                          both services in the foreground (first run makes a certificate and data directory)
               apus start|stop|restart|reload|status [imap4|imap4be]
               apus load [options]               load generator (apus load --help)
        """
}

func printError(_ text: String) {
    var line = text
    if !line.hasSuffix("\n") { line += "\n" }
    line.withUTF8 { bytes in _ = writeAll(2, bytes) }
}

@discardableResult
func writeAll(_ descriptor: Int32, _ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
    var offset = 0
    while offset < bytes.count {
        let written = Glibc.write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
        if written < 0, errno == EINTR { continue }
        if written <= 0 { return false }
        offset += written
    }
    return true
}

import Glibc
