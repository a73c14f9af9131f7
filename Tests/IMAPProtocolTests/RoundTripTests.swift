// IMAPProtocolTests: encode then parse gives the same value, for commands and responses.

import Testing

@testable import IMAPProtocol

/// Frames and parses `input` (a single command or APPEND start) and hands the command to `body`.
func withFramedCommand(_ input: [UInt8], _ body: (IMAPCommand?) -> Void) {
    var framer = IMAPCommandFramer()
    let parser = IMAPCommandParser()
    input.withUnsafeBytes { buffer in
        while true {
            switch framer.scan(buffer) {
            case .needContinuation: continue
            case .complete(let length), .appendMessage(let length, _, true):
                let frame = UnsafeRawBufferPointer(rebasing: buffer[0..<length])
                #expect(length == buffer.count)
                if case .success(let tagged) = parser.parseCommand(frame) { body(tagged.command) } else { body(nil) }
            default:
                body(nil)
            }
            return
        }
    }
}

@Suite("Round trips")
struct RoundTripTests {
    @Test(
        "Every command fixture encodes and parses back to the same value, with either literal style",
        arguments: commandFixtures, [IMAPLiteralStyle.nonSynchronizing, .synchronizing, .literalMinus])
    func commandRoundTrip(_ fixture: CommandFixture, style: IMAPLiteralStyle) {
        var expected = fixture.expected()
        if case .append(let name, var message) = expected {
            // The client's literal style, not the fixture's, decides how APPEND announces its message.
            message.literal.isSynchronizing = !style.isNonSynchronizing(size: message.literal.size)
            expected = .append(name, message)
        }
        var output = IMAPOutputBuffer()
        let waits = output.write(command: IMAPTaggedCommand(tag: IMAPBytes("T1"), command: expected), literals: style)
        if style == .nonSynchronizing { #expect(waits.isEmpty) }
        withFramedCommand(output.bytes) { parsed in
            #expect(parsed == expected, "wire: \(String(decoding: output.bytes, as: UTF8.self).replacingCRLF)")
        }
    }

    @Test("LITERAL-: literals up to 4096 bytes go non-synchronizing, larger ones wait for the server")
    func literalMinus() {
        let small = [UInt8](repeating: 0x0A, count: 4096)
        let large = [UInt8](repeating: 0x0A, count: 4097)
        small.withUnsafeBytes { smallRaw in
            large.withUnsafeBytes { largeRaw in
                let command = IMAPCommand.login(
                    user: IMAPString(raw: IMAPBytes(smallRaw)), password: IMAPString(raw: IMAPBytes(largeRaw)))
                var output = IMAPOutputBuffer()
                let waits = output.write(
                    command: IMAPTaggedCommand(tag: IMAPBytes("a"), command: command), literals: .literalMinus)
                let prefix = bytes("a LOGIN {4096+}\r\n")
                #expect(Array(output.bytes.prefix(prefix.count)) == prefix)
                let second = prefix.count + 4096
                #expect(Array(output.bytes[second..<(second + 9)]) == bytes(" {4097}\r\n"))
                #expect(waits == [second + 9])
            }
        }
    }

    @Test("A password with CR LF goes as a literal, and a synchronizing one says where to wait")
    func literalForControlCharacters() {
        let password = bytes("a\r\nb")
        password.withUnsafeBytes { raw in
            let command = IMAPCommand.login(user: IMAPString("u"), password: IMAPString(raw: IMAPBytes(raw)))
            var output = IMAPOutputBuffer()
            let waits = output.write(
                command: IMAPTaggedCommand(tag: IMAPBytes("a"), command: command), literals: .synchronizing)
            #expect(String(decoding: output.bytes, as: UTF8.self) == "a LOGIN u {4}\r\na\r\nb\r\n")
            #expect(waits == [15])
            withFramedCommand(output.bytes) { #expect($0 == command) }
        }
    }
}
