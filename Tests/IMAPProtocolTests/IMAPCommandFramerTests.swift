// IMAPProtocolTests: framing, drip-fed and split at every index, and its limits.

import Testing

@testable import IMAPProtocol

@Suite("Framing")
struct IMAPCommandFramerTests {
    /// Inputs a session meets, each checked whole, byte by byte and split at every index.
    static let scripts: [(String, [FramingEvent])] = [
        ("a1 NOOP\r\n", [.command("IMAPTaggedCommand(tag: a1, command: IMAPProtocol.IMAPCommand.noop)")]),
        (
            "a1 NOOP\r\na2 CHECK\r\n",
            [
                .command("IMAPTaggedCommand(tag: a1, command: IMAPProtocol.IMAPCommand.noop)"),
                .command("IMAPTaggedCommand(tag: a2, command: IMAPProtocol.IMAPCommand.check)"),
            ]
        ),
        // IDLE's DONE and a pipelined command in one packet: both seen.
        (
            "DONE\r\na3 NOOP\r\n",
            [
                .badCommand(tag: nil, reason: "Expected a space"),
                .command("IMAPTaggedCommand(tag: a3, command: IMAPProtocol.IMAPCommand.noop)"),
            ]
        ),
        // A synchronizing literal asks for a continuation once, then completes.
        (
            "a4 LOGIN {4}\r\nuser {4+}\r\npass\r\n",
            [
                .continuation,
                .command(
                    "IMAPTaggedCommand(tag: a4, command: IMAPProtocol.IMAPCommand.login(user: user, password: pass))"),
            ]
        ),
        // An APPEND streams its message, then ends with CRLF.
        (
            "a5 APPEND INBOX (\\Seen) {5+}\r\nhello\r\n",
            [
                .appendStart(
                    "IMAPTaggedCommand(tag: a5, command: IMAPProtocol.IMAPCommand.append(INBOX, "
                        + "IMAPProtocol.IMAPAppendMessage(flags: "
                        + "Optional(IMAPProtocol.IMAPFlagList(text: \\Seen, count: 1)), "
                        + "internalDate: nil, literal: IMAPProtocol.IMAPLiteralHeader(size: 5, isSynchronizing: false, "
                        + "isBinary: false))))"),
                .appendBytes(bytes("hello")),
                .appendNext("end"),
            ]
        ),
        // MULTIAPPEND with a mailbox given as a literal.
        (
            "a6 APPEND {3+}\r\nBox {2+}\r\nhi {3+}\r\nyou\r\n",
            [
                .appendStart(
                    "IMAPTaggedCommand(tag: a6, command: IMAPProtocol.IMAPCommand.append(Box, "
                        + "IMAPProtocol.IMAPAppendMessage(flags: nil, internalDate: nil, literal: "
                        + "IMAPProtocol.IMAPLiteralHeader(size: 2, isSynchronizing: false, isBinary: false))))"),
                .appendBytes(bytes("hi")),
                .appendNext(
                    "message(IMAPProtocol.IMAPAppendMessage(flags: nil, internalDate: nil, literal: "
                        + "IMAPProtocol.IMAPLiteralHeader(size: 3, isSynchronizing: false, isBinary: false)))"),
                .appendBytes(bytes("you")),
                .appendNext("end"),
            ]
        ),
        // A bare LF ends a frame that the parser then refuses; the next command still works.
        (
            "a7 NOOP\na8 NOOP\r\n",
            [
                .badCommand(tag: "a7", reason: "Line must end with CRLF"),
                .command("IMAPTaggedCommand(tag: a8, command: IMAPProtocol.IMAPCommand.noop)"),
            ]
        ),
        // A NUL byte and a bare CR are refused with the tag.
        ("a9 LOGIN \"a\u{0}b\" c\r\n", [.badCommand(tag: "a9", reason: "NUL in quoted string")]),
        ("b1 NOOP\rx\r\n", [.badCommand(tag: "b1", reason: "Bare CR in command")]),
    ]

    @Test(
        "Each script gives the same events whole, drip-fed and split at every index",
        arguments: scripts.indices)
    func script(index: Int) {
        let (input, expected) = IMAPCommandFramerTests.scripts[index]
        let (independent, events) = framingIsChunkingIndependent(bytes(input))
        #expect(independent)
        #expect(events == expected)
    }

    @Test("A line longer than the limit is refused with its tag, and the connection must close")
    func lineTooLong() {
        let limits = IMAPLimits(maxCommandLength: 64)
        let input = bytes("t1 LOGIN " + String(repeating: "x", count: 100) + "\r\n")
        let events = runFraming(input, chunkSizes: [10], limits: limits)
        #expect(events == [.frameError(tag: "t1", reason: .commandTooLong, recovery: .disconnect)])
    }

    @Test("A 60 KiB atom passes under the default 64 KiB limit and fails under a smaller one")
    func sixtyKiBAtom() {
        let atom = String(repeating: "a", count: 60 * 1024)
        let input = bytes("t1 SELECT " + atom + "\r\n")
        let events = runFraming(input, chunkSizes: [4096])
        #expect(events.count == 1)
        if case .command(let text) = events.first {
            #expect(text.contains("select"))
        } else {
            Issue.record("\(events)")
        }
        let small = runFraming(input, chunkSizes: [4096], limits: IMAPLimits(maxCommandLength: 32 * 1024))
        #expect(small == [.frameError(tag: "t1", reason: .commandTooLong, recovery: .disconnect)])
    }

    @Test("A 2^64 literal size is an error, not a trap: sync skips the line, non-sync disconnects")
    func hugeLiteralSize() {
        let sync = runFraming(bytes("t1 LOGIN {18446744073709551616}\r\nt2 NOOP\r\n"), chunkSizes: [100])
        #expect(sync.first == .frameError(tag: "t1", reason: .literalTooLarge, recovery: .skip(bytes: 33)))
        #expect(sync.last == .command("IMAPTaggedCommand(tag: t2, command: IMAPProtocol.IMAPCommand.noop)"))
        let nonSync = runFraming(bytes("t1 LOGIN {18446744073709551616+}\r\n"), chunkSizes: [100])
        #expect(nonSync == [.frameError(tag: "t1", reason: .literalTooLarge, recovery: .disconnect)])
        let maxValue = runFraming(bytes("t1 APPEND INBOX {18446744073709551615+}\r\n"), chunkSizes: [100])
        #expect(maxValue == [.frameError(tag: "t1", reason: .literalTooLarge, recovery: .disconnect)])
    }

    @Test("A refused non-synchronizing literal is skipped so the next command is seen")
    func skipNonSynchronizingLiteral() {
        let limits = IMAPLimits(maxCommandLength: 64)
        let input = bytes("t1 LOGIN {100+}\r\n" + String(repeating: "z", count: 100) + " x\r\nt2 NOOP\r\n")
        let (independent, events) = framingIsChunkingIndependent(input, limits: limits)
        #expect(independent)
        #expect(
            events == [
                .frameError(tag: "t1", reason: .literalTooLarge, recovery: .skip(bytes: 17)),
                .discarded(104),
                .command("IMAPTaggedCommand(tag: t2, command: IMAPProtocol.IMAPCommand.noop)"),
            ])
    }

    @Test("APPENDLIMIT: a larger APPEND literal is refused; a synchronizing one costs only its line")
    func appendLimit() {
        let limits = IMAPLimits(maxAppendLiteralSize: 10)
        let events = runFraming(bytes("t1 APPEND INBOX {11}\r\nt2 NOOP\r\n"), chunkSizes: [5], limits: limits)
        #expect(
            events == [
                .frameError(tag: "t1", reason: .literalTooLarge, recovery: .skip(bytes: 22)),
                .command("IMAPTaggedCommand(tag: t2, command: IMAPProtocol.IMAPCommand.noop)"),
            ])
    }

    @Test("LITERAL-: {N+} above 4096 is refused; without LITERAL+ any {N+} is")
    func literalMinus() {
        let minus = IMAPLimits(nonSynchronizingLiterals: .literalMinus)
        let ok = runFraming(bytes("t1 LOGIN {4+}\r\nuser pass\r\n"), chunkSizes: [100], limits: minus)
        #expect(ok.count == 1)
        let refused = runFraming(bytes("t1 APPEND INBOX {4097+}\r\n"), chunkSizes: [100], limits: minus)
        #expect(
            refused == [.frameError(tag: "t1", reason: .nonSynchronizingLiteralRefused, recovery: .skip(bytes: 25))])
        let none = IMAPLimits(nonSynchronizingLiterals: .none)
        let noPlus = runFraming(bytes("t1 LOGIN {4+}\r\nuser pass\r\nt2 NOOP\r\n"), chunkSizes: [100], limits: none)
        #expect(
            noPlus.first == .frameError(tag: "t1", reason: .nonSynchronizingLiteralRefused, recovery: .skip(bytes: 15)))
        #expect(noPlus.last == .command("IMAPTaggedCommand(tag: t2, command: IMAPProtocol.IMAPCommand.noop)"))
    }

    @Test("An APPEND of 100 MB passes through in slices no larger than the reads")
    func largeAppendStreams() {
        let size = 100 * 1024 * 1024
        var framer = IMAPCommandFramer(limits: IMAPLimits(maxAppendLiteralSize: UInt64(size)))
        let header = bytes("a APPEND INBOX {\(size)+}\r\n")
        let start = header.withUnsafeBytes { framer.scan($0) }
        guard case .appendMessage(let length, let literal, true) = start else {
            Issue.record("unexpected \(start)")
            return
        }
        #expect(length == header.count)
        #expect(literal.size == UInt64(size))
        let chunk = [UInt8](repeating: 0x41, count: 64 * 1024)
        var received = 0
        while received < size {
            let result = chunk.withUnsafeBytes { framer.scan($0) }
            guard case .appendBytes(let count) = result else {
                Issue.record("unexpected \(result)")
                return
            }
            #expect(count <= chunk.count)
            received += count
        }
        #expect(received == size)
        let end = bytes("\r\n").withUnsafeBytes { framer.scan($0) }
        guard case .appendEnd(2) = end else {
            Issue.record("unexpected \(end)")
            return
        }
        #expect(framer.isIdle)
    }

    @Test("A rejected synchronizing APPEND ends the command; the next one is framed")
    func rejectedSynchronizingAppend() {
        var framer = IMAPCommandFramer()
        let input = bytes("a APPEND nosuch {5}\r\n")
        let start = input.withUnsafeBytes { framer.scan($0) }
        guard case .appendMessage(_, let literal, true) = start else {
            Issue.record("unexpected \(start)")
            return
        }
        #expect(literal.isSynchronizing)
        framer.rejectAppendMessage()
        let next = bytes("b NOOP\r\n").withUnsafeBytes { framer.scan($0) }
        guard case .complete(8) = next else {
            Issue.record("unexpected \(next)")
            return
        }
    }

    @Test("A refused non-synchronizing APPEND is discarded through its last message, even an empty one")
    func rejectedNonSynchronizingAppend() {
        for input in ["a APPEND nosuch {0+}\r\n\r\nb NOOP\r\n", "a APPEND nosuch {3+}\r\nabc {2+}\r\nde\r\nb NOOP\r\n"]
        {
            var framer = IMAPCommandFramer()
            var pending = bytes(input)
            var results: [String] = []
            while !pending.isEmpty {
                let (text, consumed): (String, Int) = pending.withUnsafeBytes { buffer in
                    switch framer.scan(buffer) {
                    case .appendMessage(let length, _, true):
                        framer.rejectAppendMessage()
                        return ("append", length)
                    case .discard(let count): return ("discard \(count)", count)
                    case .complete(let length): return ("complete", length)
                    default: return ("other", 0)
                    }
                }
                results.append(text)
                guard consumed > 0 else { break }
                pending.removeFirst(consumed)
            }
            #expect(results.first == "append")
            #expect(results.last == "complete")
            #expect(!results.contains("discard 0") && !results.contains("other"))
        }
    }

    @Test("Bounded memory for an unterminated line: the framer never asks for more than the limit")
    func unterminatedLine() {
        let limits = IMAPLimits(maxCommandLength: 1024)
        var framer = IMAPCommandFramer(limits: limits)
        let junk = [UInt8](repeating: 0x61, count: 1025)
        let result = junk.withUnsafeBytes { framer.scan($0) }
        guard case .bad(let error) = result else {
            Issue.record("unexpected \(result)")
            return
        }
        #expect(error.reason == .commandTooLong)
        #expect(error.recovery == .disconnect)
    }

    @Test("IDLE's DONE and a command in the same read: DONE ends IDLE and the command is framed next")
    func doneThenCommand() {
        var framer = IMAPCommandFramer()
        let parser = IMAPCommandParser()
        let idle = bytes("a1 IDLE\r\n")
        idle.withUnsafeBytes { buffer in
            guard case .complete(let length) = framer.scan(buffer),
                case .success(let tagged) = parser.parseCommand(UnsafeRawBufferPointer(rebasing: buffer[0..<length]))
            else {
                Issue.record("IDLE did not parse")
                return
            }
            #expect(tagged.command == .idle)
        }
        var packet = bytes("DONE\r\na2 UID FETCH 1:* FLAGS\r\n")
        var seen: [String] = []
        while !packet.isEmpty {
            let consumed: Int = packet.withUnsafeBytes { buffer in
                guard case .complete(let length) = framer.scan(buffer) else { return 0 }
                let frame = UnsafeRawBufferPointer(rebasing: buffer[0..<length])
                if seen.isEmpty {
                    if case .success = parser.parseIdleDone(frame) { seen.append("DONE") }
                } else if case .success(let tagged) = parser.parseCommand(frame) {
                    seen.append(tagged.tag.string)
                }
                return length
            }
            guard consumed > 0 else { break }
            packet.removeFirst(consumed)
        }
        #expect(seen == ["DONE", "a2"])
    }
}
