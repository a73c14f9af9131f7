// IMAPProtocolTests: inputs the fuzzer found, kept so they stay fixed.

import Testing

@testable import IMAPProtocol

@Suite("Fuzz regressions")
struct FuzzRegressionTests {
    /// Base64 of each input found by perf/fuzz/run-fuzz.sh.
    static let inputs: [String] = [
        "YSU3IEFQUEVORCAxOTk2IDAyOjQ0OjI1oP7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+"
            + "/v7+/v7+/v7+/v7+/v4tMDcwMCIgezUrfQ0KaGVsbG8gezMrfQ0KYnllDQo="
    ]

    @Test("Each input frames the same whole and split at every index", arguments: inputs)
    func regression(_ encoded: String) {
        let input = decodeBase64(encoded)
        let limits = IMAPLimits(
            maxCommandLength: 2048, maxAppendLiteralSize: 4096, maxDiscardableLiteralSize: 1024,
            maxNestingDepth: 20, maxTagLength: 16, maxSequenceSetRanges: 50)
        let (independent, whole) = framingIsChunkingIndependent(input, limits: limits)
        #expect(independent)
        if !independent {
            Issue.record("drip \(runFraming(input, chunkSizes: [1], limits: limits)) vs \(whole)")
            for split in 1..<input.count {
                let events = runFraming(input, chunkSizes: [split, input.count], limits: limits)
                if events != whole {
                    Issue.record("split \(split): \(events) vs \(whole)")
                    break
                }
            }
        }
    }
}

/// A small base64 decoder for the fixtures (RFC 4648 alphabet, padding ignored).
func decodeBase64(_ text: String) -> [UInt8] {
    let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    var output: [UInt8] = []
    var bits: UInt32 = 0
    var count = 0
    for byte in text.utf8 where byte != UInt8(ascii: "=") {
        guard let value = alphabet.firstIndex(of: byte) else { continue }
        bits = (bits << 6) | UInt32(value)
        count += 6
        if count >= 8 {
            count -= 8
            output.append(UInt8(truncatingIfNeeded: bits >> UInt32(count)))
        }
    }
    return output
}
