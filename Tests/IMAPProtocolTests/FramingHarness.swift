// IMAPProtocolTests: a fake connection that drives the framer and parser over chunked input.

@testable import IMAPProtocol

/// What the session saw, in order, with every view copied out so it can be compared afterwards.
enum FramingEvent: Equatable, CustomStringConvertible {
    case command(String)
    case badCommand(tag: String?, reason: String)
    case continuation
    case appendStart(String)
    case appendNext(String)
    case appendBytes([UInt8])
    case discarded(Int)
    case frameError(tag: String?, reason: IMAPFrameError.Reason, recovery: IMAPFrameError.Recovery)

    var description: String {
        switch self {
        case .command(let text): return "command \(text)"
        case .badCommand(let tag, let reason): return "BAD \(tag ?? "*") \(reason)"
        case .continuation: return "+"
        case .appendStart(let text): return "append-start \(text)"
        case .appendNext(let text): return "append-next \(text)"
        case .appendBytes(let bytes): return "append-bytes \(bytes.count)"
        case .discarded(let count): return "discard \(count)"
        case .frameError(let tag, let reason, let recovery): return "frame-error \(tag ?? "*") \(reason) \(recovery)"
        }
    }
}

/// Feeds `input` in pieces of the given sizes (the last piece repeats) and records the events.
/// The read buffer starts at a non-zero offset inside a larger allocation, so nothing silently
/// assumes a view begins at index 0.
func runFraming(_ input: [UInt8], chunkSizes: [Int], limits: IMAPLimits = IMAPLimits()) -> [FramingEvent] {
    var framer = IMAPCommandFramer(limits: limits)
    let parser = IMAPCommandParser(limits: limits)
    var events: [FramingEvent] = []
    var pending: [UInt8] = Array(repeating: 0xEE, count: 7)  // a prefix that is never part of the input
    let prefix = 7
    var fed = 0
    var chunkIndex = 0
    var disconnected = false

    func record(_ event: FramingEvent) {
        switch (events.last, event) {
        case (.appendBytes(let old)?, .appendBytes(let new)):
            events[events.count - 1] = .appendBytes(old + new)
        case (.discarded(let old)?, .discarded(let new)):
            events[events.count - 1] = .discarded(old + new)
        default:
            events.append(event)
        }
    }

    while !disconnected {
        // Feed the next piece.
        if fed < input.count {
            let size = max(1, chunkSizes[min(chunkIndex, chunkSizes.count - 1)])
            chunkIndex += 1
            let end = min(input.count, fed + size)
            pending.append(contentsOf: input[fed..<end])
            fed = end
        }
        // Process until the framer wants more.
        var wantsMore = false
        while !wantsMore && !disconnected {
            var consumed = 0
            pending.withUnsafeBytes { whole in
                let buffer = UnsafeRawBufferPointer(rebasing: whole[prefix...])
                switch framer.scan(buffer) {
                case .needMoreBytes:
                    wantsMore = true
                case .needContinuation:
                    // A real session sends "+ Ready" and reads on; bytes already here are framed at once.
                    record(.continuation)
                case .complete(let length):
                    let frame = UnsafeRawBufferPointer(rebasing: buffer[0..<length])
                    switch parser.parseCommand(frame) {
                    case .success(let command): record(.command(describe(command)))
                    case .failure(let tag, let reason): record(.badCommand(tag: tag?.string, reason: "\(reason)"))
                    }
                    consumed = length
                case .appendMessage(let length, _, let isFirst):
                    let frame = UnsafeRawBufferPointer(rebasing: buffer[0..<length])
                    if isFirst {
                        switch parser.parseAppendStart(frame) {
                        case .success(let command): record(.appendStart(describe(command)))
                        case .failure(let tag, let reason):
                            record(.badCommand(tag: tag?.string, reason: "\(reason)"))
                            framer.rejectAppendMessage()
                        }
                    } else {
                        switch parser.parseAppendNext(frame) {
                        case .success(let next): record(.appendNext("\(next)"))
                        case .failure(_, let reason):
                            record(.badCommand(tag: nil, reason: "\(reason)"))
                            framer.rejectAppendMessage()
                        }
                    }
                    consumed = length
                case .appendEnd(let length):
                    let frame = UnsafeRawBufferPointer(rebasing: buffer[0..<length])
                    switch parser.parseAppendNext(frame) {
                    case .success(let next): record(.appendNext("\(next)"))
                    case .failure(_, let reason): record(.badCommand(tag: nil, reason: "\(reason)"))
                    }
                    consumed = length
                case .appendBytes(let count):
                    record(.appendBytes(Array(buffer[0..<count])))
                    consumed = count
                case .discard(let count):
                    record(.discarded(count))
                    consumed = count
                case .bad(let error):
                    record(.frameError(tag: error.tag?.string, reason: error.reason, recovery: error.recovery))
                    switch error.recovery {
                    case .skip(let bytes): consumed = bytes
                    case .disconnect: disconnected = true
                    }
                }
            }
            pending.removeSubrange(prefix..<(prefix + consumed))
        }
        if fed >= input.count && wantsMore { break }
    }
    return events
}

/// A copy-out description of a parsed value: views print as their text.
func describe<T>(_ value: T) -> String { String(describing: value) }

/// Bytes of a string, with `\r\n` written explicitly by callers.
func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

/// The events for `input` fed whole, byte by byte, and split at every index must all be the same.
func framingIsChunkingIndependent(_ input: [UInt8], limits: IMAPLimits = IMAPLimits()) -> (Bool, [FramingEvent]) {
    let whole = runFraming(input, chunkSizes: [max(1, input.count)], limits: limits)
    if runFraming(input, chunkSizes: [1], limits: limits) != whole { return (false, whole) }
    for split in 1..<max(1, input.count) {
        if runFraming(input, chunkSizes: [split, input.count], limits: limits) != whole { return (false, whole) }
    }
    return (true, whole)
}
