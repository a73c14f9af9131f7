//===----------------------------------------------------------------------===//
// Apus LoadGen: runs a load test start to end and gathers its report.
//===----------------------------------------------------------------------===//

import Glibc
import Reactor

/// The outcome of a run: totals, the per-second series and the first violations.
public struct LoadReport: Sendable {
    public var configuration: LoadConfiguration
    /// Seconds from the first session start to the stop.
    public var elapsed: Double
    public var totals: LoadTotals
    public var intervals: [LoadInterval]
    public var violationMessages: [String]
    public var failureMessages: [String]
    /// Interrupted by Ctrl-C (SIGINT) or SIGTERM.
    public var interrupted: Bool
    /// Largest memory of the watched process tree (kB), when watched.
    public var watchedMemoryPeakKB: Int?
    /// The generator's own peak resident memory (kB, VmHWM).
    public var generatorPeakKB: Int?

    /// Commands per second over the whole run (connects not counted).
    public var commandsPerSecond: Double { elapsed > 0 ? Double(totals.totalCommands) / elapsed : 0 }
}

/// Runs load tests. One call, one run; progress goes to `progress` once a second.
public enum LoadRunner {
    /// Runs `configuration` to its end (duration, command count, or SIGINT/SIGTERM) and returns the report.
    /// - Parameter progress: called on the calling thread with each second's merged figures.
    public static func run(_ configuration: LoadConfiguration,
                           progress: (LoadInterval) -> Void = { _ in }) throws(LoadOptionError) -> LoadReport {
        let messages: LoadMessages
        if let path = configuration.messageFile {
            messages = try LoadMessages.mbox(path: path)
        } else {
            messages = LoadMessages.generated(seed: configuration.seed)
        }
        var tlsContext: TLSContext?
        if configuration.security != .plain {
            do {
                tlsContext = try TLSContext.client(verify: configuration.verifyCertificate,
                                                   caFile: configuration.caFile)
            } catch {
                throw LoadOptionError("TLS client context: \(error)")
            }
        }
        let loopCount = configuration.loops > 0 ? configuration.loops : EventLoopGroup.coreCount
        // SIGINT and SIGTERM are taken synchronously by this thread (sigtimedwait), never by a
        // handler: the loop threads inherit the blocked mask.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGINT)
        sigaddset(&signals, SIGTERM)
        var previousMask = sigset_t()
        pthread_sigmask(SIG_BLOCK, &signals, &previousMask)
        defer { pthread_sigmask(SIG_SETMASK, &previousMask, nil) }

        let group: EventLoopGroup
        do {
            group = try EventLoopGroup(loopCount: loopCount, workerCount: 1, name: "load")
        } catch {
            throw LoadOptionError("cannot start event loops: \(error)")
        }
        let collector = LoadCollector(loopCount: loopCount, violationsKept: configuration.violationsPrinted)
        let start = LoadSession.now() &+ 10_000_000
        let end = configuration.duration.map { start &+ $0.nanoseconds }
        let plan = LoadPlan(configuration: configuration, collector: collector, messages: messages,
                            tlsContext: tlsContext, serverName: serverName(configuration.host), loopCount: loopCount,
                            start: start, end: end)
        for handle in group.loops {
            handle.execute { loop in LoopDriver(loop: loop, plan: plan).start() }
        }

        var intervals: [LoadInterval] = []
        var interrupted = false
        var watchedPeak: Int?
        var timeout = timespec(tv_sec: 0, tv_nsec: 50_000_000)
        var stopSeen: UInt64?
        while !collector.allFinished {
            let received = sigtimedwait(&signals, nil, &timeout)
            if received == SIGINT || received == SIGTERM {
                interrupted = true
                collector.requestStop()
            }
            let now = LoadSession.now()
            if let end, now >= end { collector.requestStop() }
            if collector.isStopping {
                // Loops stop within a tick; a wedged one must not hold the summary hostage.
                if stopSeen == nil { stopSeen = now }
                if let seen = stopSeen, now - seen > 5_000_000_000 { break }
            }
            // The second in which the loops stopped is reported below only if something completed in it.
            for var interval in collector.takeCompleteIntervals(includingPartial: false)
            where !collector.isStopping || interval.totalCompleted > 0 {
                if let pid = configuration.watchPID {
                    interval.watchedMemoryKB = processTreeMemoryKB(root: pid)
                    watchedPeak = max(watchedPeak ?? 0, interval.watchedMemoryKB ?? 0)
                }
                intervals.append(interval)
                progress(interval)
            }
        }
        let stoppedAt = LoadSession.now()
        group.shutdown(gracePeriod: .milliseconds(200))
        for interval in collector.takeCompleteIntervals(includingPartial: true) where interval.totalCompleted > 0 {
            intervals.append(interval)
        }
        let (totals, violations, failures) = collector.results
        let elapsed = Double(min(stoppedAt, end ?? stoppedAt) &- min(start, stoppedAt)) / 1e9
        return LoadReport(configuration: configuration, elapsed: elapsed, totals: totals, intervals: intervals,
                          violationMessages: violations, failureMessages: failures, interrupted: interrupted,
                          watchedMemoryPeakKB: watchedPeak, generatorPeakKB: statusField("VmHWM:", pid: getpid()))
    }

    /// The name to check a certificate against: a literal address is used as is.
    private static func serverName(_ host: String) -> String? {
        host == "127.0.0.1" || host == "::1" ? "localhost" : host
    }
}

/// A kB figure from /proc/PID/status (`VmHWM:`, `VmRSS:`).
func statusField(_ name: String, pid: Int32) -> Int? {
    guard let status = readWholeFile("/proc/\(pid)/status") else { return nil }
    let field = Array(name.utf8)
    for line in status.split(separator: 0x0A) where line.starts(with: field) {
        return Int(String(decoding: line.filter { $0 >= 0x30 && $0 <= 0x39 }, as: UTF8.self))
    }
    return nil
}

/// Memory (kB) of `root` and every process descending from it, from /proc: the proportional set
/// size (Pss, shared pages divided among their users) where smaps_rollup is readable, else VmRSS
/// (which counts shared libraries once per process and so overstates a many-process server).
func processTreeMemoryKB(root: Int32) -> Int? {
    guard let directory = opendir("/proc") else { return nil }
    defer { closedir(directory) }
    var parents: [Int32: Int32] = [:]
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        guard let pid = Int32(name), let stat = readWholeFile("/proc/\(pid)/stat") else { continue }
        // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
        guard let close = stat.lastIndex(of: UInt8(ascii: ")")) else { continue }
        let fields = stat[(close + 1)...].split(separator: 0x20)
        guard fields.count > 2, let parent = Int32(String(decoding: fields[1], as: UTF8.self)) else { continue }
        parents[pid] = parent
    }
    guard parents[root] != nil else { return nil }
    var total = 0
    for pid in parents.keys {
        var current = pid
        var depth = 0
        while current != root, let parent = parents[current], parent > 1, depth < 64 {
            current = parent
            depth += 1
        }
        guard current == root else { continue }
        let rollup = readWholeFile("/proc/\(pid)/smaps_rollup")
        guard let text = rollup ?? readWholeFile("/proc/\(pid)/status") else { continue }
        let field = Array((rollup != nil ? "Pss:" : "VmRSS:").utf8)
        for line in text.split(separator: 0x0A) where line.starts(with: field) {
            let digits = line.filter { $0 >= 0x30 && $0 <= 0x39 }
            total += Int(String(decoding: digits, as: UTF8.self)) ?? 0
        }
    }
    return total
}
