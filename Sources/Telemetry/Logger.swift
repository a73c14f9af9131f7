//===----------------------------------------------------------------------===//
// Apus Telemetry: one log line per event.
//===----------------------------------------------------------------------===//

import Glibc
import Synchronization

/// How much a log line matters. Lines below a sink's minimum are not even formatted.
public enum LogLevel: Int, Comparable, Sendable, CaseIterable, CustomStringConvertible {
    case debug, info, notice, warning, error

    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }

    public var description: String {
        switch self {
        case .debug: "debug"
        case .info: "info"
        case .notice: "notice"
        case .warning: "warning"
        case .error: "error"
        }
    }

    /// Parses a configured level name ("info", "warning", …).
    public init?(name: String) {
        guard let level = LogLevel.allCases.first(where: { $0.description == name.lowercased() }) else { return nil }
        self = level
    }
}

/// Where log lines go: standard error (foreground) or a file opened for appending (daemon),
/// which ``reopen()`` swaps for a fresh one after rotation (SIGHUP).
///
/// Each line is written with a single write(2) on an O_APPEND descriptor, so lines from
/// different threads never interleave.
public final class LogSink: Sendable {
    private let descriptor: Atomic<Int32>
    private let path: String?
    private let minimum: Atomic<Int>

    /// A sink writing to standard error.
    public init(minimumLevel: LogLevel = .info) {
        descriptor = Atomic(2)
        path = nil
        minimum = Atomic(minimumLevel.rawValue)
    }

    /// A sink appending to the file at `path` (created 0640 if missing).
    public init(path: String, minimumLevel: LogLevel = .info) throws(LogSinkError) {
        let descriptor = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard descriptor >= 0 else { throw LogSinkError(path: path, errno: errno) }
        self.descriptor = Atomic(descriptor)
        self.path = path
        minimum = Atomic(minimumLevel.rawValue)
    }

    deinit {
        let current = descriptor.load(ordering: .relaxed)
        if current > 2 { close(current) }
    }

    /// The least important level written.
    public var minimumLevel: LogLevel {
        get { LogLevel(rawValue: minimum.load(ordering: .relaxed)) ?? .info }
        set { minimum.store(newValue.rawValue, ordering: .relaxed) }
    }

    /// Re-opens the log file (after logrotate moved it). Standard error is left alone.
    public func reopen() throws(LogSinkError) {
        guard let path else { return }
        let fresh = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard fresh >= 0 else { throw LogSinkError(path: path, errno: errno) }
        let old = descriptor.exchange(fresh, ordering: .acquiringAndReleasing)
        if old > 2 { close(old) }
    }

    func accepts(_ level: LogLevel) -> Bool { level.rawValue >= minimum.load(ordering: .relaxed) }

    func write(_ line: [UInt8]) {
        line.withUnsafeBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = Glibc.write(descriptor.load(ordering: .relaxed), bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0, errno == EINTR { continue }
                if written <= 0 { return } // a log that cannot be written must not stop the server
                offset += written
            }
        }
    }
}

/// A log file that could not be opened.
public struct LogSinkError: Error, CustomStringConvertible, Sendable {
    public var path: String
    public var errno: Int32
    public var description: String { "cannot open log file \(path): \(String(cString: strerror(errno)))" }
}

/// Writes log lines with a fixed context (service, session id, client address):
///
/// `2026-11-26T21:20:00.123Z info imap4be session=9f3a client=127.0.0.1:5544 login user=alice`
///
/// Never pass a password or a credential to a logger.
public struct Logger: Sendable {
    public let sink: LogSink
    /// `key=value` pairs put on every line, already rendered.
    public private(set) var context: String

    public init(sink: LogSink, service: String) {
        self.sink = sink
        context = service
    }

    /// This logger with one more `key=value` on every line (values with spaces are quoted).
    public func with(_ key: String, _ value: String) -> Logger {
        var copy = self
        copy.context += " " + key + "=" + Logger.quoted(value)
        return copy
    }

    /// True when a line at `level` would be written: check it before building costly text.
    public func enabled(_ level: LogLevel) -> Bool { sink.accepts(level) }

    /// Writes one line at `level`; `message` is only built when the level is enabled.
    public func log(_ level: LogLevel, _ message: @autoclosure () -> String) {
        guard sink.accepts(level) else { return }
        var line = Array(Logger.timestamp().utf8)
        line.append(0x20)
        line += level.description.utf8
        line.append(0x20)
        line += context.utf8
        line.append(0x20)
        for byte in message().utf8 {
            // One event, one line: a control character cannot forge or break lines.
            line.append(byte < 0x20 || byte == 0x7F ? UInt8(ascii: "?") : byte)
        }
        line.append(0x0A)
        sink.write(line)
    }

    public func debug(_ message: @autoclosure () -> String) { log(.debug, message()) }
    public func info(_ message: @autoclosure () -> String) { log(.info, message()) }
    public func notice(_ message: @autoclosure () -> String) { log(.notice, message()) }
    public func warning(_ message: @autoclosure () -> String) { log(.warning, message()) }
    public func error(_ message: @autoclosure () -> String) { log(.error, message()) }

    static func quoted(_ value: String) -> String {
        if !value.isEmpty, !value.utf8.contains(where: { $0 <= 0x20 || $0 == UInt8(ascii: "\"") || $0 == 0x7F }) { return value }
        var text = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": text += "\\\""
            case "\\": text += "\\\\"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F: text += "?"
            default: text.unicodeScalars.append(scalar)
            }
        }
        return text + "\""
    }

    /// UTC time with milliseconds, RFC 3339.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var parts = tm()
        var seconds = now.tv_sec
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(now.tv_nsec / 1_000_000), 3))Z"
    }
}
