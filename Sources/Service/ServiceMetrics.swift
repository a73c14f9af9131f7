//===----------------------------------------------------------------------===//
// Apus Service: metrics the services keep elsewhere (reactor, pools, store), exposed on /metrics.
//===----------------------------------------------------------------------===//

import IMAPFrontend
import MailStore
import Reactor
import Telemetry

/// Registers, per service, the counts other components already keep: read when `/metrics` is
/// scraped, so the hot paths update nothing twice.
enum ServiceMetrics {
    /// TLS handshakes of the service's client connections (implicit TLS and STARTTLS), by result.
    static func exposeTLSHandshakes(_ counters: ConnectionCounters, prefix: String, in registry: MetricsRegistry) {
        let help = "TLS handshakes with clients, by result (failed: error, timeout or peer gone)"
        registry.counter("\(prefix)_tls_handshakes_total", help: help, labels: [("result", "completed")]) {
            counters.tlsHandshakesCompleted
        }
        registry.counter("\(prefix)_tls_handshakes_total", help: help, labels: [("result", "failed")]) {
            counters.tlsHandshakesFailed
        }
    }

    /// The front end's client traffic: bytes read from and written to mail clients.
    static func exposeClientBytes(_ counters: ConnectionCounters, prefix: String, in registry: MetricsRegistry) {
        registry.counter("\(prefix)_bytes_in_total", help: "Bytes read from clients") { counters.bytesRead }
        registry.counter("\(prefix)_bytes_out_total", help: "Bytes written to clients") { counters.bytesWritten }
    }

    /// The front end's pool per back end: idle, busy and down now; created, reused and closed so far.
    static func exposePools(
        _ backends: [String], status: @escaping @Sendable () -> [BackendPoolStatus], in registry: MetricsRegistry
    ) {
        for backend in backends {
            let labels = [("backend", backend)]
            @Sendable func row() -> BackendPoolStatus? { status().first { $0.name == backend } }
            let levelHelp = "Pooled back-end connections now, by state"
            registry.gauge(
                "apus_imap4_pool_connections", help: levelHelp, labels: labels + [("state", "idle")]
            ) { Int64(row()?.idle ?? 0) }
            registry.gauge(
                "apus_imap4_pool_connections", help: levelHelp, labels: labels + [("state", "busy")]
            ) { Int64(row()?.busy ?? 0) }
            registry.gauge("apus_imap4_pool_down", help: "1 while the back end is marked down", labels: labels) {
                row()?.down == true ? 1 : 0
            }
            registry.counter(
                "apus_imap4_pool_created_total", help: "Back-end connections opened", labels: labels
            ) { UInt64(row()?.created ?? 0) }
            registry.counter(
                "apus_imap4_pool_reused_total", help: "Logins served by a connection that served an earlier session",
                labels: labels
            ) { UInt64(row()?.reused ?? 0) }
            registry.counter(
                "apus_imap4_pool_closed_total", help: "Back-end connections closed", labels: labels
            ) { UInt64(row()?.closed ?? 0) }
        }
    }

    /// The store's fsyncs (their count is the histogram's `_count`).
    static func exposeStoreSyncs(in registry: MetricsRegistry) {
        registry.histogram(
            "apus_imap4be_store_fsync_seconds", help: "Store fsyncs (files and directories) and their latency",
            exposing: StoreSyncStatistics.fsyncLatency)
    }
}
