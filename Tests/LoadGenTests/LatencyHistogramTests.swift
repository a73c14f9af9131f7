//===----------------------------------------------------------------------===//
// Apus LoadGen tests: histogram percentiles against exact ones, and option parsing.
//===----------------------------------------------------------------------===//

import Testing
@testable import LoadGen

@Suite struct LatencyHistogramTests {
    /// Exact nearest-rank percentile of a sorted sample.
    func exact(_ sorted: [UInt64], _ quantile: Double) -> UInt64 {
        let rank = max(1, Int((quantile * Double(sorted.count)).rounded(.up)))
        return sorted[min(rank, sorted.count) - 1]
    }

    @Test func percentilesWithinBucketError() {
        var random = LoadRandom(seed: 42)
        var histogram = LatencyHistogram()
        var sample: [UInt64] = []
        // Latencies spread over six decades (100 ns to 100 ms), heavier at the low end.
        for _ in 0..<200_000 {
            let decade = random.below(6)
            var scale: UInt64 = 100
            for _ in 0..<decade { scale *= 10 }
            let value = scale + UInt64(random.below(Int(scale * 9)))
            sample.append(value)
            histogram.record(value)
        }
        sample.sort()
        for quantile in [0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 0.9999] {
            let truth = exact(sample, quantile)
            let estimate = histogram.percentile(quantile)
            let error = estimate > truth ? estimate - truth : truth - estimate
            // Half a bucket: 1/64 of the value (buckets are 1/32 of their lower bound wide).
            #expect(error <= truth / 64 + 1, "p\(quantile * 100): exact \(truth), histogram \(estimate)")
        }
        #expect(histogram.percentile(1) == sample.last)
        #expect(histogram.maximum == sample.last)
        #expect(histogram.minimum == sample.first)
        #expect(histogram.count == UInt64(sample.count))
    }

    @Test func smallValuesAreExact() {
        var histogram = LatencyHistogram()
        for value in UInt64(0)..<32 { histogram.record(value) }
        #expect(histogram.percentile(0.5) == 15)
        #expect(histogram.percentile(1.0 / 32) == 0)
    }

    @Test func mergeEqualsRecordingEverything() {
        var a = LatencyHistogram(), b = LatencyHistogram(), both = LatencyHistogram()
        for value in stride(from: UInt64(1), to: 1_000_000, by: 997) {
            if value % 2 == 0 { a.record(value) } else { b.record(value) }
            both.record(value)
        }
        a.merge(b)
        #expect(a == both)
        #expect(LatencyHistogram().percentile(0.5) == 0)
    }

    @Test func allCommandsCountsIdleButLeavesItsHoldOutOfTheLatency() {
        var totals = LoadTotals()
        // 98 NOOPs of 1 ms and 2 IDLEs held 200 ms: with IDLE's hold, p99 would be 200 ms.
        for _ in 0..<98 { totals.commands[LoadCommandKind.noop.rawValue].ok += 1 }
        for _ in 0..<98 { totals.commands[LoadCommandKind.noop.rawValue].latency.record(1_000_000) }
        totals.commands[LoadCommandKind.idle.rawValue].ok = 2
        for _ in 0..<2 { totals.commands[LoadCommandKind.idle.rawValue].latency.record(200_000_000) }
        totals.commands[LoadCommandKind.connect.rawValue].ok = 5
        let all = totals.allCommands
        #expect(all.count == 100)
        #expect(all.latency.percentile(0.99) < 2_000_000)
        #expect(all.latency.maximum < 2_000_000)
    }

    @Test func everyValueMapsIntoItsBucket() {
        for value in [UInt64(0), 31, 32, 33, 63, 64, 1000, 123_456_789, UInt64.max] {
            let index = LatencyHistogram.bucketIndex(value)
            let (lower, width) = LatencyHistogram.bucketRange(index)
            #expect(index < LatencyHistogram.bucketCount)
            #expect(value >= lower && value - lower < width)
        }
    }
}

@Suite struct LoadConfigurationTests {
    @Test func parsesAFullCommandLine() throws {
        let configuration = try LoadConfiguration.parse([
            "--host", "127.0.0.1", "--port", "10143", "--tls", "--insecure", "--users", "user%d:5-9",
            "--password", "secret", "--clients", "50", "--duration", "2m", "--seed", "7", "--ramp-up", "500ms",
            "--pipeline", "8", "--source-address", "127.0.0.2", "--source-address", "127.0.0.3",
            "--mix", "noop=3,fetch-flags=1", "--mode", "churn", "--rate", "25", "--json", "/tmp/x.json",
        ])
        #expect(configuration.port == 10143)
        #expect(configuration.security == .tls && !configuration.verifyCertificate)
        #expect(configuration.users == .template("user%d", 5...9))
        #expect(configuration.credentials(forSession: 6) == ("user6", "secret"))
        #expect(configuration.credentials(forSession: 5).user == "user5")
        #expect(configuration.duration == .seconds(120))
        #expect(configuration.rampUp == .milliseconds(500))
        #expect(configuration.pipelineDepth == 8)
        #expect(configuration.sourceAddresses == ["127.0.0.2", "127.0.0.3"])
        #expect(configuration.mix.weight(of: .noop) == 3 && configuration.mix.weight(of: .store) == 0)
        #expect(configuration.mode == .churn && configuration.rate == 25)
    }

    @Test func badInputIsAnErrorNotATrap() {
        for arguments in [["--port", "70000"], ["--clients"], ["--mix", "frobnicate=2"], ["--mix", "noop=0"],
                          ["--duration", "soon"], ["--mode", "chaos"], ["--users", "user%d:9-1"], ["--bogus"]] {
            #expect(throws: LoadOptionError.self, "\(arguments)") { try LoadConfiguration.parse(arguments) }
        }
    }

    @Test func mixDrawsInProportion() throws {
        let mix = try LoadCommandMix(parsing: "noop=1,store=3")
        var counts: [LoadCommandKind: Int] = [:]
        for draw in 0..<mix.total { counts[mix.pick(draw), default: 0] += 1 }
        #expect(counts == [.noop: 1, .store: 3])
    }
}
