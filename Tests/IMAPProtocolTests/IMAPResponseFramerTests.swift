// IMAPProtocolTests: response framing as the proxy uses it, whole, drip-fed and split at every index.

import Testing
@testable import IMAPProtocol

/// Frames `input` in pieces (the last size repeats) and describes the frames, merging stream bytes.
func frameResponses(_ input: [UInt8], chunkSizes: [Int], threshold: Int) -> [String] {
    var framer = IMAPResponseFramer(streamingThreshold: threshold)
    var pending: [UInt8] = []
    var frames: [String] = []
    var fed = 0
    var chunkIndex = 0
    var streamed = 0
    func flushStream() {
        if streamed > 0 { frames.append("bytes \(streamed)") }
        streamed = 0
    }
    while true {
        if fed < input.count {
            let size = max(1, chunkSizes[min(chunkIndex, chunkSizes.count - 1)])
            chunkIndex += 1
            let end = min(input.count, fed + size)
            pending.append(contentsOf: input[fed..<end])
            fed = end
        }
        var wantsMore = false
        while !wantsMore {
            let (frame, consumed): (String?, Int) = pending.withUnsafeBytes { buffer in
                switch framer.scan(buffer) {
                case .needMoreBytes: return (nil, 0)
                case .tooLarge: return ("too large", 0)
                case .streamBytes(let count): return ("", count)
                case .complete(let length, let continues):
                    return ("complete \(String(decoding: buffer[0..<length], as: UTF8.self)) \(continues)", length)
                case .streamStart(let length, let size, let continues):
                    return ("start \(String(decoding: buffer[0..<length], as: UTF8.self)) \(size) \(continues)", length)
                }
            }
            switch frame {
            case nil: wantsMore = true
            case ""?: streamed += consumed
            case let text?:
                flushStream()
                frames.append(text)
                if text == "too large" { return frames }
            }
            pending.removeFirst(consumed)
        }
        if fed >= input.count { return frames }
    }
}

@Suite("Response framing")
struct IMAPResponseFramerTests {
    static let traffic = bytes(
        "* 3 EXISTS\r\n* 1 FETCH (UID 9 BODY[] {12}\r\nhello\r\nworld FLAGS (\\Seen))\r\n"
            + "* LIST () \"/\" {3}\r\na b\r\na1 OK FETCH done\r\n")

    @Test("Small literals stay inside their response; larger ones stream; chunking changes nothing")
    func boundaries() {
        let whole = frameResponses(IMAPResponseFramerTests.traffic, chunkSizes: [1000], threshold: 4)
        #expect(whole == [
            "complete * 3 EXISTS\r\n false",
            "start * 1 FETCH (UID 9 BODY[] {12}\r\n 12 false",
            "bytes 12",
            "complete  FLAGS (\\Seen))\r\n true",
            "complete * LIST () \"/\" {3}\r\na b\r\n false",
            "complete a1 OK FETCH done\r\n false",
        ])
        #expect(frameResponses(IMAPResponseFramerTests.traffic, chunkSizes: [1], threshold: 4) == whole)
        for split in 1..<IMAPResponseFramerTests.traffic.count {
            let chunked = frameResponses(
                IMAPResponseFramerTests.traffic, chunkSizes: [split, 1000], threshold: 4)
            if chunked != whole {
                Issue.record("split at \(split): \(chunked)")
                break
            }
        }
    }

    @Test("A response longer than the limit is refused, not buffered")
    func tooLarge() {
        var framer = IMAPResponseFramer(limits: IMAPLimits(maxCommandLength: 16))
        let long = bytes("* OK " + String(repeating: "x", count: 20))
        let result = long.withUnsafeBytes { framer.scan($0) }
        #expect(result == .tooLarge)
    }
}
