//===----------------------------------------------------------------------===//
// Apus Telemetry: counters, gauges and latency histograms, rendered as Prometheus text.
//===----------------------------------------------------------------------===//

import Synchronization

/// A count that only goes up (commands, bytes, login failures).
public final class Counter: Sendable {
    private let value = Atomic<UInt64>(0)
    public init() {}
    public func increment(by amount: UInt64 = 1) { value.wrappingAdd(amount, ordering: .relaxed) }
    public var current: UInt64 { value.load(ordering: .relaxed) }
}

/// A level that goes up and down (sessions, idle pool connections).
public final class Gauge: Sendable {
    private let value = Atomic<Int64>(0)
    public init() {}
    public func add(_ amount: Int64) { value.wrappingAdd(amount, ordering: .relaxed) }
    public func set(_ amount: Int64) { value.store(amount, ordering: .relaxed) }
    public var current: Int64 { value.load(ordering: .relaxed) }
}

/// A latency histogram with fixed bucket bounds in seconds (Prometheus `le` buckets).
public final class Histogram: Sendable {
    /// Upper bounds in nanoseconds, ascending; a last implicit bucket is +Inf.
    public let bounds: [UInt64]
    private struct State {
        var counts: [UInt64]
        var sumNanoseconds: UInt64 = 0
        var count: UInt64 = 0
    }
    private let state: Mutex<State>

    /// Default bounds from 50 µs to 10 s, fit for IMAP command latency.
    public static let latencyBounds: [UInt64] = [
        50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000, 25_000_000, 50_000_000,
        100_000_000, 250_000_000, 500_000_000, 1_000_000_000, 2_500_000_000, 10_000_000_000,
    ]

    public init(boundsInNanoseconds: [UInt64] = Histogram.latencyBounds) {
        bounds = boundsInNanoseconds.sorted()
        state = Mutex(State(counts: Array(repeating: 0, count: bounds.count + 1)))
    }

    /// Records one observation.
    public func observe(nanoseconds: UInt64) {
        var bucket = bounds.count
        for (index, bound) in bounds.enumerated() where nanoseconds <= bound {
            bucket = index
            break
        }
        state.withLock {
            $0.counts[bucket] &+= 1
            $0.sumNanoseconds &+= nanoseconds
            $0.count &+= 1
        }
    }

    /// Cumulative counts per bound (+Inf last), the sum in nanoseconds and the count.
    public func snapshot() -> (cumulative: [UInt64], sumNanoseconds: UInt64, count: UInt64) {
        state.withLock { state in
            var running: UInt64 = 0
            let cumulative = state.counts.map { count -> UInt64 in
                running &+= count
                return running
            }
            return (cumulative, state.sumNanoseconds, state.count)
        }
    }
}

/// The metrics of one service, by name and labels, rendered as Prometheus text format 0.0.4.
///
/// Look a metric up once (at start-up or per back end) and keep the returned object: lookups
/// take a lock, updates do not.
public final class MetricsRegistry: Sendable {
    private enum Metric {
        case counter(Counter)
        case gauge(Gauge)
        case histogram(Histogram)
        /// Read when scraped: a count another component keeps anyway (pool sizes, the reactor's
        /// byte counts), so the hot path does not update two counters.
        case sampled(@Sendable () -> Int64)
    }

    private struct Family {
        var help: String
        var type: String
        var series: [(labels: String, metric: Metric)]
    }

    private let families = Mutex<[(name: String, family: Family)]>([])

    public init() {}

    public func counter(_ name: String, help: String, labels: [(String, String)] = []) -> Counter {
        metric(name, help: help, type: "counter", labels: labels, make: { .counter(Counter()) }) {
            if case .counter(let counter) = $0 { counter } else { nil }
        }
    }

    public func gauge(_ name: String, help: String, labels: [(String, String)] = []) -> Gauge {
        metric(name, help: help, type: "gauge", labels: labels, make: { .gauge(Gauge()) }) {
            if case .gauge(let gauge) = $0 { gauge } else { nil }
        }
    }

    public func histogram(_ name: String, help: String, labels: [(String, String)] = []) -> Histogram {
        metric(name, help: help, type: "histogram", labels: labels, make: { .histogram(Histogram()) }) {
            if case .histogram(let histogram) = $0 { histogram } else { nil }
        }
    }

    /// A counter whose value `read` returns when the metrics are scraped (it must only go up).
    public func counter(
        _ name: String, help: String, labels: [(String, String)] = [], reading read: @escaping @Sendable () -> UInt64
    ) {
        sample(name, help: help, type: "counter", labels: labels) { Int64(clamping: read()) }
    }

    /// A gauge whose value `read` returns when the metrics are scraped.
    public func gauge(
        _ name: String, help: String, labels: [(String, String)] = [], reading read: @escaping @Sendable () -> Int64
    ) {
        sample(name, help: help, type: "gauge", labels: labels, read)
    }

    /// Exposes `histogram`, kept by another component, under `name`.
    public func histogram(_ name: String, help: String, labels: [(String, String)] = [], exposing histogram: Histogram) {
        _ = metric(name, help: help, type: "histogram", labels: labels, make: { .histogram(histogram) }) {
            if case .histogram(let existing) = $0 { existing } else { nil }
        }
    }

    private func sample(
        _ name: String, help: String, type: String, labels: [(String, String)], _ read: @escaping @Sendable () -> Int64
    ) {
        _ = metric(name, help: help, type: type, labels: labels, make: { .sampled(read) }) {
            if case .sampled(let reader) = $0 { reader } else { nil }
        }
    }

    private func metric<T>(_ name: String, help: String, type: String, labels: [(String, String)],
                           make: () -> Metric, extract: (Metric) -> T?) -> T {
        let rendered = Self.render(labels)
        return families.withLock { families in
            if let index = families.firstIndex(where: { $0.name == name }) {
                if let existing = families[index].family.series.first(where: { $0.labels == rendered }),
                   let metric = extract(existing.metric) {
                    return metric
                }
                let metric = make()
                families[index].family.series.append((rendered, metric))
                return extract(metric)!
            }
            let metric = make()
            families.append((name, Family(help: help, type: type, series: [(rendered, metric)])))
            return extract(metric)!
        }
    }

    private static func render(_ labels: [(String, String)]) -> String {
        guard !labels.isEmpty else { return "" }
        return "{" + labels.map { key, value in
            var escaped = ""
            for character in value {
                switch character {
                case "\\": escaped += "\\\\"
                case "\"": escaped += "\\\""
                case "\n": escaped += "\\n"
                default: escaped.append(character)
                }
            }
            return "\(key)=\"\(escaped)\""
        }.joined(separator: ",") + "}"
    }

    /// All metrics in Prometheus text exposition format.
    public func prometheusText() -> String {
        var text = ""
        let snapshot = families.withLock { $0 }
        for (name, family) in snapshot {
            text += "# HELP \(name) \(family.help)\n# TYPE \(name) \(family.type)\n"
            for (labels, metric) in family.series {
                switch metric {
                case .counter(let counter): text += "\(name)\(labels) \(counter.current)\n"
                case .gauge(let gauge): text += "\(name)\(labels) \(gauge.current)\n"
                case .sampled(let read): text += "\(name)\(labels) \(read())\n"
                case .histogram(let histogram):
                    let (cumulative, sum, count) = histogram.snapshot()
                    let inner = labels.isEmpty ? "" : String(labels.dropFirst().dropLast()) + ","
                    for (index, bound) in histogram.bounds.enumerated() {
                        text += "\(name)_bucket{\(inner)le=\"\(Self.seconds(bound))\"} \(cumulative[index])\n"
                    }
                    text += "\(name)_bucket{\(inner)le=\"+Inf\"} \(cumulative.last ?? 0)\n"
                    text += "\(name)_sum\(labels) \(Self.seconds(sum))\n\(name)_count\(labels) \(count)\n"
                }
            }
        }
        return text
    }

    /// Nanoseconds as decimal seconds without Foundation ("0.00025").
    static func seconds(_ nanoseconds: UInt64) -> String {
        let whole = nanoseconds / 1_000_000_000
        var fraction = String(nanoseconds % 1_000_000_000)
        fraction = String(repeating: "0", count: 9 - fraction.count) + fraction
        while fraction.hasSuffix("0") { fraction.removeLast() }
        return fraction.isEmpty ? "\(whole)" : "\(whole).\(fraction)"
    }
}
