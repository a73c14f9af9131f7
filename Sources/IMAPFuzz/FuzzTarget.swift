// IMAPFuzz: the libFuzzer entry point over framing, the command parser and the response parser.

import IMAPProtocol

/// Feeds `input` to a framer and parser in pieces of `firstChunk` bytes then the rest, and returns a
/// digest of what was seen, so two chunkings can be compared.
func frameAndParse(_ input: UnsafeRawBufferPointer, firstChunk: Int, limits: IMAPLimits) -> [Int] {
    var framer = IMAPCommandFramer(limits: limits)
    let parser = IMAPCommandParser(limits: limits)
    var digest: [Int] = []
    var pending: [UInt8] = []
    var fed = 0
    while true {
        let end = fed == 0 ? min(firstChunk, input.count) : input.count
        pending.append(contentsOf: input[fed..<end])
        fed = end
        var wantsMore = false
        var closed = false
        while !wantsMore && !closed {
            var consumed = 0
            pending.withUnsafeBytes { buffer in
                switch framer.scan(buffer) {
                case .needMoreBytes:
                    wantsMore = true
                case .needContinuation:
                    digest.append(-1)
                case .complete(let length), .appendEnd(let length):
                    let frame = UnsafeRawBufferPointer(rebasing: buffer[0..<length])
                    switch parser.parseCommand(frame) {
                    case .success(let tagged): digest.append(tagged.tag.count &* 31 &+ length)
                    case .failure(let tag, _): digest.append(-(tag?.count ?? 0) - 10)
                    }
                    consumed = length
                case .appendMessage(let length, let literal, _):
                    let frame = UnsafeRawBufferPointer(rebasing: buffer[0..<length])
                    if case .failure = parser.parseAppendStart(frame) { framer.rejectAppendMessage() }
                    digest.append(Int(truncatingIfNeeded: literal.size))
                    consumed = length
                case .appendBytes(let count), .discard(let count):
                    consumed = count
                case .bad(let error):
                    digest.append(-1000 - (error.tag?.count ?? 0))
                    switch error.recovery {
                    case .skip(let bytes): consumed = bytes
                    case .disconnect: closed = true
                    }
                }
            }
            pending.removeFirst(consumed)
        }
        if closed || fed >= input.count { return digest }
    }
}

/// Runs the client-side response parser over the same bytes; only crashes and hangs matter here.
func parseAsResponses(_ input: UnsafeRawBufferPointer) {
    var parser = IMAPResponseParser(limits: IMAPLimits(maxCommandLength: 4096), streamingThreshold: 64)
    var offset = 0
    while offset < input.count {
        let (event, consumed) = parser.parse(UnsafeRawBufferPointer(rebasing: input[offset...]))
        switch event {
        case .needMoreBytes, .error: return
        default: offset += consumed
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    // Small limits so the fuzzer reaches every limit quickly.
    let limits = IMAPLimits(
        maxCommandLength: 2048, maxAppendLiteralSize: 4096, maxDiscardableLiteralSize: 1024,
        maxNestingDepth: 20, maxTagLength: 16, maxSequenceSetRanges: 50)
    let whole = frameAndParse(input, firstChunk: size, limits: limits)
    // The result must not depend on how the bytes arrive: split at a point the input chooses.
    let split = size > 0 ? Int(input[0]) % max(1, size) : 0
    let chunked = frameAndParse(input, firstChunk: max(1, split), limits: limits)
    if whole != chunked { fatalError("framing depends on chunking: \(whole) vs \(chunked)") }
    parseAsResponses(input)
    return 0
}
