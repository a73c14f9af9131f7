// ParseBench: frames and parses a corpus of realistic client traffic (perf/bench/parse), printing
// commands per second on one core and heap allocations per 1,000 commands.

import CMallocCounter
import Glibc
import IMAPProtocol

// MARK: - Corpus

/// Builds client traffic shaped like the command mixes of common clients: a login and select, then
/// mostly header and flag fetches over ranges, flag stores, searches, IDLE/DONE and NOOP, and an
/// occasional APPEND. Deterministic, so every run parses the same bytes.
func makeCorpus(sessions: Int) -> [UInt8] {
    var text: [UInt8] = []
    var tagNumber = 0
    func command(_ line: String) {
        tagNumber += 1
        text.append(contentsOf: "A\(tagNumber) \(line)\r\n".utf8)
    }
    let headerFields =
        "BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID Priority X-Priority "
        + "References Newsgroups In-Reply-To Content-Type Reply-To)]"
    let message = String(repeating: "Subject: hello\r\nFrom: a@example.com\r\n\r\nBody text line.\r\n", count: 30)
    for session in 0..<sessions {
        let base = 1000 + session * 37
        switch session % 4 {
        case 0:  // Thunderbird
            command("CAPABILITY")
            command("LOGIN \"user\(session)@example.com\" \"secret\(session)\"")
            command("ID (\"name\" \"Thunderbird\" \"version\" \"115.3.1\")")
            command("ENABLE CONDSTORE")
            command("SELECT \"INBOX\" (CONDSTORE)")
            command("UID FETCH 1:* (FLAGS) (CHANGEDSINCE \(90_000 + session))")
            for block in 0..<4 {
                command(
                    "UID FETCH \(base + block * 50):\(base + block * 50 + 49) (UID RFC822.SIZE FLAGS \(headerFields))")
            }
            command("UID STORE \(base + 7) +FLAGS (\\Seen)")
            command("NOOP")
            command("IDLE")
            text.append(contentsOf: "DONE\r\n".utf8)
            command("UID FETCH \(base + 7) (UID RFC822.SIZE BODY.PEEK[])")
        case 1:  // Apple Mail
            command("LOGIN user\(session) secret")
            command("SELECT INBOX")
            command("UID FETCH 1:* (FLAGS) (CHANGEDSINCE \(70_000 + session))")
            command("UID SEARCH UID \(base):* NOT DELETED")
            command("UID FETCH \(base):\(base + 99) (BODYSTRUCTURE FLAGS RFC822.SIZE INTERNALDATE)")
            command("UID FETCH \(base + 3) (BODY.PEEK[1]<0.2048> BODY.PEEK[HEADER])")
            command("UID STORE \(base + 3) +FLAGS.SILENT (\\Seen)")
            command("NOOP")
            command("APPEND \"Sent Messages\" (\\Seen) {\(message.utf8.count)+}")
            text.removeLast(0)
            text.append(contentsOf: message.utf8)
            text.append(contentsOf: "\r\n".utf8)
            command("IDLE")
            text.append(contentsOf: "DONE\r\n".utf8)
        case 2:  // Outlook
            command("CAPABILITY")
            command("LOGIN user\(session) secret")
            command("SELECT INBOX")
            command("UID SEARCH UNSEEN")
            command("FETCH 1:60 (UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER])")
            command("UID FETCH \(base):\(base + 200) (UID FLAGS)")
            command("UID STORE \(base + 11) FLAGS (\\Seen \\Answered)")
            command("STORE 4 +FLAGS (\\Deleted)")
            command("NOOP")
            command("NOOP")
            command("UID FETCH \(base + 11) (BODY.PEEK[])")
        default:  // mobile
            command("LOGIN user\(session)@example.com secret")
            command("SELECT INBOX (CONDSTORE)")
            command("UID FETCH \(base):* (UID FLAGS) (CHANGEDSINCE \(50_000 + session))")
            command("SEARCH UNSEEN SINCE 1-Feb-2024")
            command("UID FETCH \(base):\(base + 24) (UID FLAGS ENVELOPE RFC822.SIZE)")
            command("UID STORE \(base + 2) +FLAGS (\\Flagged)")
            command("IDLE")
            text.append(contentsOf: "DONE\r\n".utf8)
            command("NOOP")
        }
        command("LOGOUT")
    }
    return text
}

// MARK: - Driver

/// Whether a command is one of those that must parse without allocating.
func isCommon(_ command: IMAPCommand) -> Bool {
    switch command {
    case .noop, .fetch, .store, .idle: return true
    case .search(let search, _): return search.returnOptions == nil
    default: return false
    }
}

struct Outcome {
    var commands = 0
    var commonCommands = 0
    var commonAllocations: UInt64 = 0
    var otherAllocations: UInt64 = 0
    var failures = 0
}

/// Frames and parses the whole corpus as one connection's input, read in 16 KiB pieces. With
/// `countAllocations`, the allocations of each command's parse are attributed to common or other.
func run(_ corpus: [UInt8], countAllocations: Bool) -> Outcome {
    var outcome = Outcome()
    var framer = IMAPCommandFramer()
    let parser = IMAPCommandParser()
    var idling = false
    corpus.withUnsafeBytes { all in
        var start = 0
        var available = min(all.count, 16 * 1024)
        while start < all.count {
            let buffer = UnsafeRawBufferPointer(rebasing: all[start..<available])
            let before = countAllocations ? cmalloc_counter_allocations() : 0
            var common = false
            switch framer.scan(buffer) {
            case .needMoreBytes, .needContinuation:
                available = min(all.count, available + 16 * 1024)
                continue
            case .complete(let length):
                let frame = UnsafeRawBufferPointer(rebasing: buffer[0..<length])
                if idling {
                    if case .failure = parser.parseIdleDone(frame) { outcome.failures += 1 }
                    idling = false
                    common = true
                } else {
                    switch parser.parseCommand(frame) {
                    case .success(let tagged):
                        common = isCommon(tagged.command)
                        if case .idle = tagged.command { idling = true }
                    case .failure:
                        outcome.failures += 1
                    }
                }
                outcome.commands += 1
                start += length
            case .appendMessage(let length, _, _):
                let frame = UnsafeRawBufferPointer(rebasing: buffer[0..<length])
                if case .failure = parser.parseAppendStart(frame) { outcome.failures += 1 }
                outcome.commands += 1
                start += length
            case .appendEnd(let length):
                start += length
            case .appendBytes(let count), .discard(let count):
                start += count
            case .bad:
                outcome.failures += 1
                return
            }
            if countAllocations {
                let spent = cmalloc_counter_allocations() - before
                // PARSEBENCH_DEBUG=1 shows the first common commands that allocated, to find a regression.
                if common && spent > 0 && getenv("PARSEBENCH_DEBUG") != nil && outcome.commonAllocations < 20 {
                    print("allocated \(spent):", String(decoding: buffer.prefix(100), as: UTF8.self))
                }
                if common {
                    outcome.commonCommands += 1
                    outcome.commonAllocations += spent
                } else {
                    outcome.otherAllocations += spent
                }
            }
        }
    }
    return outcome
}

func now() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

let corpus = makeCorpus(sessions: 4000)
let counted = run(corpus, countAllocations: true)
guard counted.failures == 0 else {
    print("parse: the corpus did not parse cleanly (\(counted.failures) failures)")
    exit(1)
}
var best = 0.0
var rounds = 0
let deadline = now() + 3
while now() < deadline || rounds < 5 {
    let started = now()
    let outcome = run(corpus, countAllocations: false)
    let rate = Double(outcome.commands) / (now() - started)
    best = max(best, rate)
    rounds += 1
}
// Encoding and iterating must not allocate either once the output buffer is warm: count both.
func encodingAllocations() -> (perResponse: Double, perIteration: Double) {
    let flags: [[UInt8]] = [Array("\\Seen".utf8), Array("$Forwarded".utf8)]
    let address = IMAPAddress(
        name: Array("Terry Gray".utf8), mailbox: Array("gray".utf8), host: Array("example.com".utf8))
    let envelope = IMAPEnvelope(
        date: Array("Wed, 17 Jul 1996 02:23:25 -0700".utf8), subject: Array("Hello".utf8),
        from: [address], sender: [address], replyTo: [address], to: [address], messageID: Array("<x@y>".utf8))
    let part = IMAPBodyPart(
        type: Array("TEXT".utf8), subtype: Array("PLAIN".utf8),
        parameters: [IMAPBodyParameter(name: Array("CHARSET".utf8), value: Array("UTF-8".utf8))],
        encoding: Array("7BIT".utf8), size: 1234, kind: .text(lines: 40))
    let responses: [IMAPResponse] = [
        .untagged(.fetch(12, [.uid(4827), .flags(flags), .modificationSequence(77)])),
        .untagged(
            .fetch(
                13,
                [
                    .uid(4828), .rfc822Size(1234), .envelope(envelope),
                    .bodyStructure(
                        .multipart(
                            parts: [.singlePart(part), .singlePart(part)], subtype: Array("MIXED".utf8),
                            parameters: [], extensionData: nil), extensible: true),
                ])),
        .tagged(
            tag: Array("A12".utf8),
            IMAPStatusResponse(.ok, code: .highestModificationSequence(77), text: Array("done".utf8))),
    ]
    var output = IMAPOutputBuffer(capacity: 64 * 1024)
    let tag = IMAPBytes("A12")
    for response in responses { output.write(response: response) }  // warm up
    output.clear()
    let before = cmalloc_counter_allocations()
    for _ in 0..<1000 {
        for response in responses { output.write(response: response) }
        output.writeTagged(tag: tag, .ok, text: "FETCH completed")
        output.writeUntagged(number: 23, "EXISTS")
        output.clear()
    }
    let perResponse = Double(cmalloc_counter_allocations() - before) / 5.0
    let line: [UInt8] = Array(
        "A1 UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (From Subject)] BINARY[1.2]<0.10>)\r\n".utf8)
    var seen = 0
    var iterationAllocations: UInt64 = 0
    line.withUnsafeBytes { frame in
        guard case .success(let tagged) = IMAPCommandParser().parseCommand(frame),
            case .fetch(let set, let attributes, _, _) = tagged.command
        else { return }
        // Round 0 warms up (the runtime instantiates generic metadata once); rounds 1...1000 are counted.
        var before: UInt64 = 0
        for round in 0...1000 {
            if round == 1 { before = cmalloc_counter_allocations() }
            for range in set { seen &+= Int(range.resolved(largest: 10).upperBound) }
            for attribute in attributes {
                if case .bodySection(let section, _, _) = attribute, case .headerFields(let names)? = section.text {
                    for name in names { seen &+= name.count }
                }
                if case .binary(let part, _, _) = attribute { for number in part { seen &+= Int(number) } }
            }
        }
        iterationAllocations = cmalloc_counter_allocations() - before
    }
    precondition(seen > 0, "the iteration check saw nothing")
    return (perResponse, Double(iterationAllocations))
}

let encoding = encodingAllocations()
print("encode: allocations per 1,000 responses with a warm buffer: \(Int(encoding.perResponse.rounded()))")
print(
    "iterate: allocations per 1,000 walks of a FETCH's ranges, attributes and header names: "
        + "\(Int(encoding.perIteration.rounded()))")
let commonPerThousand = Double(counted.commonAllocations) * 1000 / Double(max(1, counted.commonCommands))
let otherCommands = counted.commands - counted.commonCommands
let otherPerThousand = Double(counted.otherAllocations) * 1000 / Double(max(1, otherCommands))
print(
    "corpus: \(corpus.count) bytes, \(counted.commands) commands (\(counted.commonCommands) common), \(rounds) rounds")
print("allocations per 1,000 other commands (LOGIN, SELECT, ID, APPEND, ...): \(Int(otherPerThousand.rounded()))")
let figure = best >= 1e6 ? "\((best / 1e5).rounded() / 10)M" : "\(Int(best))"
let commonAllocations = Int(commonPerThousand.rounded())
print("parse: \(figure) commands/s (allocations per 1,000 common commands: \(commonAllocations); goal 5M/s)")
