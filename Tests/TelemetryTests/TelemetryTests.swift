//===----------------------------------------------------------------------===//
// Apus Telemetry tests.
//===----------------------------------------------------------------------===//

import Glibc
import Synchronization
import Testing
@testable import Telemetry

@Suite struct TelemetryTests {
    @Test func prometheusTextHasHelpTypeLabelsAndCumulativeBuckets() {
        let registry = MetricsRegistry()
        registry.counter("apus_commands_total", help: "Commands run.", labels: [("command", "FETCH")]).increment(by: 3)
        let sameCounter = registry.counter("apus_commands_total", help: "Commands run.", labels: [("command", "FETCH")])
        sameCounter.increment()
        registry.gauge("apus_sessions", help: "Open sessions.").set(7)
        let latency = registry.histogram("apus_command_seconds", help: "Latency.", labels: [("command", "NOOP")])
        latency.observe(nanoseconds: 40_000)
        latency.observe(nanoseconds: 2_000_000)
        latency.observe(nanoseconds: 20_000_000_000)
        let text = registry.prometheusText()
        #expect(text.contains("# TYPE apus_commands_total counter\n"))
        #expect(text.contains("apus_commands_total{command=\"FETCH\"} 4\n"), "one series per name and labels")
        #expect(text.contains("apus_sessions 7\n"))
        #expect(text.contains("apus_command_seconds_bucket{command=\"NOOP\",le=\"0.00005\"} 1\n"))
        #expect(text.contains("apus_command_seconds_bucket{command=\"NOOP\",le=\"0.0025\"} 2\n"))
        #expect(text.contains("apus_command_seconds_bucket{command=\"NOOP\",le=\"+Inf\"} 3\n"))
        #expect(text.contains("apus_command_seconds_count{command=\"NOOP\"} 3\n"))
        #expect(text.contains("apus_command_seconds_sum{command=\"NOOP\"} 20.00204\n"))
    }

    @Test func sampledMetricsAreReadAtEachScrapeAndSharedHistogramsExposed() {
        let registry = MetricsRegistry()
        let kept = Mutex<(count: UInt64, level: Int64)>((0, 0))
        registry.counter("apus_pool_created_total", help: "Opened.", labels: [("backend", "a")]) {
            kept.withLock { $0.count }
        }
        registry.gauge("apus_pool_connections", help: "Now.", labels: [("state", "idle")]) { kept.withLock { $0.level } }
        let shared = Histogram()
        registry.histogram("apus_store_fsync_seconds", help: "fsyncs.", exposing: shared)
        #expect(registry.prometheusText().contains("apus_pool_created_total{backend=\"a\"} 0\n"))
        kept.withLock { $0 = (5, 3) }
        shared.observe(nanoseconds: 1_000_000)
        let text = registry.prometheusText()
        #expect(text.contains("# TYPE apus_pool_created_total counter\n"))
        #expect(text.contains("apus_pool_created_total{backend=\"a\"} 5\n"))
        #expect(text.contains("# TYPE apus_pool_connections gauge\n"))
        #expect(text.contains("apus_pool_connections{state=\"idle\"} 3\n"))
        #expect(text.contains("# TYPE apus_store_fsync_seconds histogram\n"))
        #expect(text.contains("apus_store_fsync_seconds_count 1\n"))
    }

    @Test func logLinesCarryContextAndCannotBeSplitByControlCharacters() throws {
        var template = Array("/tmp/apus-log-XXXXXX".utf8CString)
        let descriptor = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        close(descriptor)
        let path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        defer { unlink(path) }
        let sink = try LogSink(path: path, minimumLevel: .info)
        let logger = Logger(sink: sink, service: "imap4be").with("session", "s1").with("client", "127.0.0.1:9")
        logger.debug("not written")
        logger.info("login user=alice\r\n* OK forged")
        logger.warning("user name with space", )
        let text = try #require(readAll(path))
        let lines = text.split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines[0].contains(" info imap4be session=s1 client=127.0.0.1:9 login user=alice??* OK forged"))
        #expect(lines[1].contains(" warning imap4be "))
        #expect(Logger.quoted("a b") == "\"a b\"")
    }

    func readAll(_ path: String) -> String? {
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(descriptor, &chunk, chunk.count)
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
