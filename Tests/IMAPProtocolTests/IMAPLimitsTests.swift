// IMAPProtocolTests: the limits' defaults and the bad-command counter.

import Testing

@testable import IMAPProtocol

@Suite("Limits")
struct IMAPLimitsTests {
    @Test("Documented defaults")
    func defaults() {
        let limits = IMAPLimits()
        #expect(limits.maxCommandLength == 64 * 1024)
        #expect(limits.maxAppendLiteralSize == 64 * 1024 * 1024)
        #expect(limits.maxNestingDepth == 100)
        #expect(limits.maxTagLength == 64)
        #expect(limits.maxSequenceSetRanges == 10_000)
        #expect(limits.maxBadCommands == 10)
        #expect(limits.nonSynchronizingLiterals == .literalPlus)
    }

    @Test("Bad commands in a row reach the limit; a good one resets the count")
    func badCommandCounter() {
        var counter = IMAPBadCommandCounter(limits: IMAPLimits(maxBadCommands: 3))
        var verdicts: [Bool] = []
        verdicts.append(counter.recordBadCommand())
        verdicts.append(counter.recordBadCommand())
        counter.recordGoodCommand()
        verdicts.append(counter.recordBadCommand())
        verdicts.append(counter.recordBadCommand())
        verdicts.append(counter.recordBadCommand())
        #expect(verdicts == [false, false, false, false, true])
        #expect(counter.consecutive == 3)
    }

    @Test("The nesting limit applies at exactly its depth")
    func nestingBoundary() {
        let limits = IMAPLimits(maxNestingDepth: 3)
        withParsedCommand("a SEARCH ((ALL))\r\n", limits: limits) { #expect($0.isSuccess) }
        withParsedCommand("a SEARCH (((ALL)))\r\n", limits: limits) { #expect($0.isSuccess) }
        withParsedCommand("a SEARCH ((((ALL))))\r\n", limits: limits) { #expect(!$0.isSuccess) }
    }

    @Test("The sequence-set limit applies at exactly its size")
    func rangeBoundary() {
        let limits = IMAPLimits(maxSequenceSetRanges: 3)
        withParsedCommand("a FETCH 1,2,3 FLAGS\r\n", limits: limits) { #expect($0.isSuccess) }
        withParsedCommand("a FETCH 1,2,3,4 FLAGS\r\n", limits: limits) { #expect(!$0.isSuccess) }
    }

    @Test("The tag limit applies at exactly its length")
    func tagBoundary() {
        let limits = IMAPLimits(maxTagLength: 4)
        withParsedCommand("abcd NOOP\r\n", limits: limits) { #expect($0.isSuccess) }
        withParsedCommand("abcde NOOP\r\n", limits: limits) { #expect(!$0.isSuccess) }
    }

    @Test("The command length limit applies at exactly its size, including inline literals")
    func commandLengthBoundary() {
        let line = "a LOGIN {5+}\r\nuser1 pw\r\n"  // 24 bytes
        let exact = runFraming(bytes(line), chunkSizes: [3], limits: IMAPLimits(maxCommandLength: 24))
        #expect(exact.count == 1)
        if case .command = exact.first {} else { Issue.record("\(exact)") }
        let over = runFraming(bytes(line), chunkSizes: [3], limits: IMAPLimits(maxCommandLength: 23))
        guard case .frameError(_, let reason, _)? = over.first else {
            Issue.record("\(over)")
            return
        }
        #expect(reason == .commandTooLong || reason == .literalTooLarge)
    }
}

/// Session state moves between reactor threads when a user is routed to its home loop: the framing and
/// parsing state must be Sendable (checked at compile time).
private func requireSendable<T: Sendable>(_: T.Type) {}
private let sessionStateIsSendable: Void = {
    requireSendable(IMAPCommandFramer.self)
    requireSendable(IMAPCommandParser.self)
    requireSendable(IMAPResponseFramer.self)
    requireSendable(IMAPResponseParser.self)
    requireSendable(IMAPBadCommandCounter.self)
    requireSendable(IMAPOutputBuffer.self)
    requireSendable(IMAPCapabilitySet.self)
    requireSendable(IMAPResponse.self)
}()
