//===----------------------------------------------------------------------===//
// Apus LoadGen: the per-second progress line and the summary, as text.
//===----------------------------------------------------------------------===//

/// Text for people: one line per second while running, a table at the end.
enum LoadReportText {
    /// `  12s  41234 cmd/s  [noop 8000 fetch-flags 16000 ...]  sessions 50  errors 0  violations 0`
    static func progressLine(_ interval: LoadInterval) -> String {
        var line = pad(String(interval.second) + "s", 5) + "  " + pad(String(interval.totalCompleted), 8) + " cmd/s  ["
        var parts: [String] = []
        for kind in LoadCommandKind.allCases where interval.completed[kind.rawValue] > 0 {
            parts.append("\(kind.name) \(interval.completed[kind.rawValue])")
        }
        line += parts.joined(separator: " ") + "]  sessions \(interval.connected)  errors \(interval.errors)"
        line += "  violations \(interval.violations)"
        if interval.latency.count > 0 {
            line += "  p50 " + milliseconds(interval.latency.percentile(0.5))
            line += " p99 " + milliseconds(interval.latency.percentile(0.99)) + " ms"
        }
        if let memory = interval.watchedMemoryKB { line += "  server \(memory / 1024) MB" }
        return line
    }

    static func summary(_ report: LoadReport) -> String {
        let totals = report.totals
        let configuration = report.configuration
        var text = ""
        let label = configuration.label.isEmpty ? "" : " (\(configuration.label))"
        text += "apus load: \(configuration.mode.rawValue) against "
        text += "\(configuration.host):\(configuration.port)\(label), "
        text += "\(configuration.clients) clients, pipeline \(configuration.pipelineDepth), "
        text += fixed(report.elapsed, 1) + " s" + (report.interrupted ? " (interrupted)" : "") + "\n"
        text += pad("command", 14) + pad("count", 10) + pad("per s", 11) + pad("NO", 7) + pad("BAD", 7)
        for heading in ["p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"] { text += pad(heading, 10) }
        text += "\n"
        for kind in LoadCommandKind.allCases {
            let command = totals.commands[kind.rawValue]
            guard command.count > 0 else { continue }
            text += row(kind.name, command, elapsed: report.elapsed)
        }
        // Latency of every command but IDLE (held by the client) and connect.
        text += row("all commands", totals.allCommands, elapsed: report.elapsed)
        text += "sessions started \(totals.sessionsStarted); received \(totals.bytesReceived / 1024) KiB, "
        text += "sent \(totals.bytesSent / 1024) KiB\n"
        if totals.idleSeconds > 0 {
            let perMinute = Double(totals.idleBytesReceived) / totals.idleSeconds * 60
            text += "IDLE: " + fixed(totals.idleSeconds, 0) + " session-seconds, " + fixed(perMinute, 1)
            text += " bytes per session-minute from the server\n"
        }
        if let peak = report.watchedMemoryPeakKB {
            text += "server memory peak \(peak / 1024) MB (" + fixed(Double(peak) / Double(configuration.clients), 0)
            text += " kB per session)\n"
        }
        if let peak = report.generatorPeakKB { text += "generator memory peak \(peak / 1024) MB\n" }
        let raced = totals.allCommands.expungeIssued
        if raced > 0 {
            text += "NO [EXPUNGEISSUED]: \(raced) (commands that named a message another session had expunged;"
            text += " the +N of the NO column, not refusals)\n"
        }
        let failures = LoadFailureKind.allCases.filter { totals.failures[$0.rawValue] > 0 }
        if !failures.isEmpty {
            text += "failures: "
                + failures.map { "\($0.name) \(totals.failures[$0.rawValue])" }.joined(separator: ", ") + "\n"
            for message in report.failureMessages { text += "  " + message + "\n" }
        }
        text += "violations: \(totals.totalViolations)"
        let violated = LoadViolationKind.allCases.filter { totals.violations[$0.rawValue] > 0 }
        if !violated.isEmpty {
            text += " (" + violated.map { "\($0.name) \(totals.violations[$0.rawValue])" }.joined(separator: ", ") + ")"
        }
        text += "\n"
        for message in report.violationMessages { text += "  " + message + "\n" }
        return text
    }

    private static func row(_ name: String, _ command: LoadCommandTotals, elapsed: Double) -> String {
        let latency = command.latency
        var line = pad(name, 14) + pad(String(command.count), 10)
        line += pad(fixed(elapsed > 0 ? Double(command.count) / elapsed : 0, 1), 11)
        // A NO [EXPUNGEISSUED] (a race with another session's expunge) shows as "+N" beside the
        // NOs, so a row still adds up: count = OK + NO + that + BAD.
        let no = command.expungeIssued > 0 ? "\(command.no)+\(command.expungeIssued)" : String(command.no)
        line += pad(no, 7) + pad(String(command.bad), 7)
        for quantile in [0.5, 0.9, 0.99, 0.999] { line += pad(milliseconds(latency.percentile(quantile)), 10) }
        line += pad(milliseconds(latency.maximum), 10)
        return line + "\n"
    }

    static func milliseconds(_ nanoseconds: UInt64) -> String { fixed(Double(nanoseconds) / 1e6, 3) }

    static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
    }
}

/// `value` with `decimals` digits after the point (no Foundation formatting).
func fixed(_ value: Double, _ decimals: Int) -> String {
    guard value.isFinite else { return "0" }
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let negative = value < 0
    let scaled = (abs(value) * scale).rounded()
    guard scaled < 9e18 else { return String(value) }
    let whole = UInt64(scaled)
    let integer = whole / UInt64(scale)
    var text = (negative && whole > 0 ? "-" : "") + String(integer)
    if decimals > 0 {
        var fraction = String(whole % UInt64(scale))
        while fraction.count < decimals { fraction = "0" + fraction }
        text += "." + fraction
    }
    return text
}
