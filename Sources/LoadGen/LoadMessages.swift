//===----------------------------------------------------------------------===//
// Apus LoadGen: the messages APPEND sends, generated or read from an mbox file.
//===----------------------------------------------------------------------===//

/// Messages with CRLF line ends, ready to go out as APPEND literals.
struct LoadMessages: Sendable {
    let messages: [[UInt8]]

    /// `count` varied messages (sizes from about 600 bytes to 30 kB), the same for the same seed.
    static func generated(count: Int = 64, seed: UInt64) -> LoadMessages {
        var random = LoadRandom(seed: seed ^ 0x6D65_7373_6167_6573)
        let words = ["apus", "swift", "mailbox", "index", "report", "meeting", "budget", "server", "latency",
                     "release", "draft", "invoice", "travel", "weekly", "notes", "quarter", "review", "plan"]
        var messages: [[UInt8]] = []
        for number in 0..<count {
            var text = "From: Sender \(random.below(50)) <sender\(random.below(50))@example.org>\r\n"
            text += "To: user\(random.inclusive(200))@example.org\r\n"
            let subjectWords = (0..<(2 + random.below(5))).map { _ in words[random.below(words.count)] }
            text += "Subject: \(subjectWords.joined(separator: " ")) \(number)\r\n"
            text += "Date: Thu, \(1 + random.below(28)) Nov 2026 "
            text += "\(10 + random.below(10)):\(10 + random.below(49)):00 +0000\r\n"
            text += "Message-ID: <load.\(seed).\(number)@apus.example>\r\n"
            text += "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
            let lines = 8 + (random.below(4) == 0 ? random.below(400) : random.below(40))
            for _ in 0..<lines {
                text += (0..<(6 + random.below(8))).map { _ in words[random.below(words.count)] }.joined(separator: " ")
                text += "\r\n"
            }
            messages.append(Array(text.utf8))
        }
        return LoadMessages(messages: messages)
    }

    /// The messages of an mbox file: split at `From ` lines, `>From ` unquoted, LF made CRLF.
    static func mbox(path: String) throws(LoadOptionError) -> LoadMessages {
        guard let bytes = readWholeFile(path) else { throw LoadOptionError("cannot read --message-file \(path)") }
        var messages: [[UInt8]] = []
        var current: [UInt8] = []
        var started = false
        for rawLine in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            var line = rawLine
            if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
            if line.starts(with: Array("From ".utf8)) {
                if started && !current.isEmpty { messages.append(current) }
                current.removeAll(keepingCapacity: true)
                started = true
                continue
            }
            if line.starts(with: Array(">From ".utf8)) { line = line.dropFirst() }
            current.append(contentsOf: line)
            current.append(contentsOf: [0x0D, 0x0A])
        }
        if !current.isEmpty { messages.append(current) }
        guard !messages.isEmpty else { throw LoadOptionError("--message-file \(path) holds no messages") }
        return LoadMessages(messages: messages)
    }
}
