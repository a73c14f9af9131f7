//===----------------------------------------------------------------------===//
// Apus LoadGen: the report as JSON (`--json FILE`), written by hand (no Foundation).
//===----------------------------------------------------------------------===//

import Telemetry
import Glibc

/// ```json
/// {"mode":"stress","host":"127.0.0.1","port":10143,"clients":50,"elapsed_s":30.0,
///  "commands_per_s":1612.3,"commands":{"noop":{"count":..,"p50_ms":..}}, "seconds":[...], ...}
/// ```
enum LoadReportJSON {
    static func render(_ report: LoadReport) -> String {
        let configuration = report.configuration
        let totals = report.totals
        var json = "{\n"
        json += "  \"label\": \(quoted(configuration.label)),\n"
        json += "  \"mode\": \(quoted(configuration.mode.rawValue)),\n"
        json += "  \"host\": \(quoted(configuration.host)),\n  \"port\": \(configuration.port),\n"
        json += "  \"security\": \(quoted(configuration.security.rawValue)),\n"
        json += "  \"clients\": \(configuration.clients),\n  \"pipeline\": \(configuration.pipelineDepth),\n"
        json += "  \"seed\": \(configuration.seed),\n"
        json += "  \"mix\": {" + LoadCommandKind.mixable.filter { configuration.mix.weight(of: $0) > 0 }
            .map { "\(quoted($0.name)): \(configuration.mix.weight(of: $0))" }.joined(separator: ", ") + "},\n"
        json += "  \"elapsed_s\": \(fixed(report.elapsed, 3)),\n"
        json += "  \"interrupted\": \(report.interrupted),\n"
        json += "  \"commands_total\": \(totals.totalCommands),\n"
        json += "  \"commands_per_s\": \(fixed(report.commandsPerSecond, 1)),\n"
        json += "  \"sessions_started\": \(totals.sessionsStarted),\n"
        json += "  \"bytes_received\": \(totals.bytesReceived),\n  \"bytes_sent\": \(totals.bytesSent),\n"
        json += "  \"idle_session_seconds\": \(fixed(totals.idleSeconds, 1)),\n"
        json += "  \"idle_bytes_received\": \(totals.idleBytesReceived),\n"
        if let peak = report.watchedMemoryPeakKB { json += "  \"watched_memory_peak_kb\": \(peak),\n" }
        if let peak = report.generatorPeakKB { json += "  \"generator_memory_peak_kb\": \(peak),\n" }
        var commands: [String] = []
        for kind in LoadCommandKind.allCases where totals.commands[kind.rawValue].count > 0 {
            let command = totals.commands[kind.rawValue]
            commands.append("    \(quoted(kind.name)): " + commandObject(command, elapsed: report.elapsed))
        }
        // Every command counted; latency of all but IDLE (held by the client) and connect.
        commands.append("    \"all\": " + commandObject(totals.allCommands, elapsed: report.elapsed))
        json += "  \"commands\": {\n" + commands.joined(separator: ",\n") + "\n  },\n"
        json += "  \"failures\": {" + LoadFailureKind.allCases
            .map { "\(quoted($0.name)): \(totals.failures[$0.rawValue])" }
            .joined(separator: ", ") + "},\n"
        json += "  \"violations_total\": \(totals.totalViolations),\n"
        json += "  \"violations\": {" + LoadViolationKind.allCases
            .map { "\(quoted($0.name)): \(totals.violations[$0.rawValue])" }.joined(separator: ", ") + "},\n"
        json += "  \"violation_messages\": [" + report.violationMessages.map(quoted).joined(separator: ", ") + "],\n"
        json += "  \"failure_messages\": [" + report.failureMessages.map(quoted).joined(separator: ", ") + "],\n"
        let seconds = report.intervals.map { interval in
            var line = "    {\"second\": \(interval.second), \"commands\": \(interval.totalCompleted), "
            line += "\"errors\": \(interval.errors), \"violations\": \(interval.violations), "
            line += "\"sessions\": \(interval.connected), "
            line += "\"p50_ms\": \(LoadReportText.milliseconds(interval.latency.percentile(0.5))), "
            line += "\"p99_ms\": \(LoadReportText.milliseconds(interval.latency.percentile(0.99))), "
            line += "\"by_command\": {" + LoadCommandKind.allCases.filter { interval.completed[$0.rawValue] > 0 }
                .map { "\(quoted($0.name)): \(interval.completed[$0.rawValue])" }.joined(separator: ", ") + "}"
            if let memory = interval.watchedMemoryKB { line += ", \"watched_memory_kb\": \(memory)" }
            return line + "}"
        }
        json += "  \"seconds\": [\n" + seconds.joined(separator: ",\n") + "\n  ]\n}\n"
        return json
    }

    private static func commandObject(_ command: LoadCommandTotals, elapsed: Double) -> String {
        let latency = command.latency
        var object = "{\"count\": \(command.count), \"ok\": \(command.ok), "
        object += "\"no\": \(command.no), \"expunge_issued\": \(command.expungeIssued), \"bad\": \(command.bad), "
        object += "\"per_s\": \(fixed(elapsed > 0 ? Double(command.count) / elapsed : 0, 1)), "
        object += "\"mean_ms\": \(fixed(latency.mean / 1e6, 3)), "
        object += "\"p50_ms\": \(LoadReportText.milliseconds(latency.percentile(0.5))), "
        object += "\"p90_ms\": \(LoadReportText.milliseconds(latency.percentile(0.9))), "
        object += "\"p99_ms\": \(LoadReportText.milliseconds(latency.percentile(0.99))), "
        object += "\"p999_ms\": \(LoadReportText.milliseconds(latency.percentile(0.999))), "
        object += "\"max_ms\": \(LoadReportText.milliseconds(latency.maximum))}"
        return object
    }

    /// A JSON string literal (shared with the services' JSON).
    static func quoted(_ text: String) -> String { JSONText.quoted(text) }
}

/// Writes `text` to `path` (replacing it); nil on success, else the reason.
func writeFile(_ path: String, _ text: String) -> String? {
    let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard descriptor >= 0 else { return String(cString: strerror(errno)) }
    defer { close(descriptor) }
    var bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let written = bytes.withUnsafeMutableBytes { write(descriptor, $0.baseAddress! + offset, $0.count - offset) }
        if written < 0 {
            if errno == EINTR { continue }
            return String(cString: strerror(errno))
        }
        offset += written
    }
    return nil
}

/// A line on standard error.
func printError(_ text: String) {
    // Glibc's `stderr` is a shared mutable global (not concurrency-safe): write(2) to fd 2 instead.
    var line = text + "\n"
    line.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
}
