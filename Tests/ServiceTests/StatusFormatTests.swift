//===----------------------------------------------------------------------===//
// Apus Service tests: status JSON, the status table, and the operations endpoint's answers.
//===----------------------------------------------------------------------===//

import Telemetry
import Testing

@testable import Service

@Suite("Service status formats")
struct StatusFormatTests {
    @Test func jsonRoundTrips() {
        let value = JSONValue.object([
            ("service", .string("imap4")), ("pid", .int(42)), ("ok", .bool(true)), ("none", .null),
            ("text", .string("quote \" backslash \\ newline \n tab \t bell \u{7} é")),
            ("list", .array([.int(-3), .number(0.5), .array([])])), ("empty", .object([])),
        ])
        #expect(JSONValue.parse(value.text) == value)
        #expect(value.text.contains("\\u0007"))
        #expect(JSONValue.parse(" {\"a\" : [1, 2 ,3] } ")?["a"]?.arrayValue?.count == 3)
        #expect(JSONValue.parse("\"\\u00e9\"")?.stringValue == "é")
    }

    @Test(arguments: ["", "{", "[1,]", "{\"a\":}", "nul", "[1] 2", "\"open", "{'a':1}", "\"tab\there\""])
    func badJSONIsRefused(text: String) {
        #expect(JSONValue.parse(text) == nil)
    }

    @Test func deepJSONIsRefusedNotRecursedForever() {
        #expect(JSONValue.parse(String(repeating: "[", count: 10_000)) == nil)
        #expect(JSONValue.parse(String(repeating: "[", count: 60) + String(repeating: "]", count: 60)) != nil)
    }

    @Test func tableHasOneRowPerServiceAndPoolLines() {
        let running = JSONValue.object([
            ("service", .string("imap4")), ("state", .string("Running")), ("pid", .int(4242)),
            (
                "listeners",
                .array([
                    .object([("address", .string("0.0.0.0:143")), ("tls", .bool(false))]),
                    .object([("address", .string("0.0.0.0:993")), ("tls", .bool(true))]),
                ])
            ),
            ("admin", .string("127.0.0.1:9000")), ("uptime_seconds", .int(3725)), ("sessions", .int(7)),
            (
                "pools",
                .array([
                    .object([
                        ("backend", .string("local")), ("idle", .int(2)), ("busy", .int(1)),
                        ("down", .bool(false)),
                    ])
                ])
            ),
        ])
        let stopped = JSONValue.object([("service", .string("imap4be")), ("state", .string("Stopped"))])
        let lines = ServiceControl.table([running, stopped]).split(separator: "\n").map(String.init)
        #expect(lines.count == 4)
        #expect(lines[0].hasPrefix("SERVICE  STATE    PID   UPTIME  SESSIONS  LISTENERS"))
        #expect(
            lines[1] == "imap4    Running  4242  1h02m   7         0.0.0.0:143, 0.0.0.0:993 (TLS); admin 127.0.0.1:9000"
        )
        #expect(lines[2] == "  pool local: 2 idle, 1 busy, up")
        #expect(lines[3].hasPrefix("imap4be  Stopped  -"))
    }

    @Test(arguments: [(0, "0s"), (59, "59s"), (61, "1m01s"), (3600, "1h00m"), (90061, "1d1h")])
    func uptimes(seconds: Int, text: String) {
        #expect(ServiceControl.formatUptime(seconds) == text)
    }

    @Test func durationsReadAsWritten() {
        #expect(ServiceControl.text(.seconds(30)) == "30s")
        #expect(ServiceControl.text(.milliseconds(250)) == "250ms")
        #expect(ServiceControl.text(.zero) == "0s")
    }

    @Test func adminEndpointAnswers() {
        let metrics = MetricsRegistry()
        metrics.gauge("apus_sessions", help: "Open client sessions.").set(3)
        let status = { JSONValue.object([("state", .string("Running"))]) }
        func answer(_ head: String) -> String {
            String(decoding: AdminEndpoint.respond(to: head, metrics: metrics, status: status), as: UTF8.self)
        }
        let metricsAnswer = answer("GET /metrics HTTP/1.1\r\nHost: x")
        #expect(metricsAnswer.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(metricsAnswer.contains("Content-Type: text/plain; version=0.0.4"))
        #expect(
            metricsAnswer.hasSuffix(
                "\r\n\r\n# HELP apus_sessions Open client sessions.\n# TYPE apus_sessions gauge\napus_sessions 3\n"))
        let statusAnswer = answer("GET /status?pretty HTTP/1.0")
        #expect(statusAnswer.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(statusAnswer.hasSuffix("\r\n\r\n{\"state\":\"Running\"}\n"))
        #expect(statusAnswer.contains("Content-Length: 20\r\n"))
        #expect(answer("HEAD /status HTTP/1.1").hasSuffix("Connection: close\r\n\r\n"))
        #expect(answer("GET /secret HTTP/1.1").hasPrefix("HTTP/1.1 404 "))
        #expect(answer("POST /metrics HTTP/1.1").hasPrefix("HTTP/1.1 405 "))
        #expect(answer("hello").hasPrefix("HTTP/1.1 400 "))
        #expect(answer("GET /metrics SPDY/3").hasPrefix("HTTP/1.1 400 "))
    }
}
