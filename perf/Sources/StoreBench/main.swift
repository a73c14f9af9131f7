// StoreBench: MailStore's benchmark (perf/bench/store runs it in release).
//
//   append_fsync_1       appends per second, each durable before the next (one writer)
//   append_fsync_50      appends per second with 50 appends in flight, made durable by group commit
//   open_N               opening an N-message mailbox (index load), ms, N = 10,000 and 100,000
//   flags_N              reading the flags of all N messages from the open mailbox, ms
//   search_text_N        SEARCH TEXT over N messages (reads every file), ms
//
// Usage: StoreBench <scratch directory> [appends]   (appends: stop after the append figures)

import Glibc
import MailStore
import Synchronization

func now() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

func message(_ number: Int) -> [UInt8] {
    var text = "From: sender\(number % 97)@example.org\r\nTo: you@example.org\r\nSubject: report \(number)\r\n\r\n"
    for line in 0..<20 { text += "line \(line) of message \(number) with some ordinary words in it\r\n" }
    if number % 1000 == 7 { text += "the needle word zanzibar appears here\r\n" }
    return Array(text.utf8)
}

/// A plain case-insensitive substring matcher standing in for the MIME layer's decoded-text one.
struct SubstringSearcher: MessageContentSearcher {
    func answer(_ key: ContentSearchKey, cached: [UInt8]) -> Bool? { nil }
    func matches(_ key: ContentSearchKey, message: UnsafeRawBufferPointer) -> Bool {
        guard case .text(let needle) = key else { return false }
        let pattern = Array(needle.lowercased().utf8)
        guard message.count >= pattern.count, let first = pattern.first else { return pattern.isEmpty }
        var index = 0
        while index <= message.count - pattern.count {
            if message[index] | 0x20 == first {
                var matched = true
                for offset in 1..<pattern.count where message[index + offset] | 0x20 != pattern[offset] {
                    matched = false
                    break
                }
                if matched { return true }
            }
            index += 1
        }
        return false
    }
}

/// A worker thread that runs group-commit rounds and hands completions back to the owner.
final class CommitWorker: @unchecked Sendable {
    let batcher = DurabilityBatcher()
    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()
    private var completions: [CommitCompletion] = []
    private var work = 0
    private var stopped = false

    init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&condition, nil)
        var thread = pthread_t()
        let box = Unmanaged.passRetained(self).toOpaque()
        pthread_create(&thread, nil, { raw in
            let worker = Unmanaged<CommitWorker>.fromOpaque(raw!).takeRetainedValue()
            worker.loop()
            return nil
        }, box)
        pthread_detach(thread)
    }

    func submit(_ commit: PendingCommit) {
        batcher.enqueue(commit)
        pthread_mutex_lock(&mutex)
        work += 1
        pthread_cond_broadcast(&condition)
        pthread_mutex_unlock(&mutex)
    }

    /// Waits for at least one completion and returns all there are.
    func takeCompletions() -> [CommitCompletion] {
        pthread_mutex_lock(&mutex)
        while completions.isEmpty { pthread_cond_wait(&condition, &mutex) }
        let taken = completions
        completions.removeAll()
        pthread_mutex_unlock(&mutex)
        return taken
    }

    func stop() {
        pthread_mutex_lock(&mutex)
        stopped = true
        pthread_cond_broadcast(&condition)
        pthread_mutex_unlock(&mutex)
    }

    private func loop() {
        while true {
            pthread_mutex_lock(&mutex)
            while work == 0 && !stopped { pthread_cond_wait(&condition, &mutex) }
            if stopped {
                pthread_mutex_unlock(&mutex)
                return
            }
            work = 0
            pthread_mutex_unlock(&mutex)
            let done = batcher.runPending()
            pthread_mutex_lock(&mutex)
            completions += done
            pthread_cond_broadcast(&condition)
            pthread_mutex_unlock(&mutex)
        }
    }
}

/// Appends `total` messages keeping `writers` appends in flight; returns appends per second.
func appendRate(_ mailbox: Mailbox, writers: Int, total: Int) throws -> Double {
    let worker = CommitWorker()
    defer { worker.stop() }
    var started = 0
    var finished = 0
    var inFlight = 0
    let begin = now()
    while finished < total {
        while inFlight < writers && started < total {
            let writer = try mailbox.beginAppend()
            try message(started).withUnsafeBytes { try writer.write($0) }
            let commit = try mailbox.prepareAppend([AppendRequest(message: try writer.finish())])
            worker.submit(commit)
            started += 1
            inFlight += 1
        }
        for completion in worker.takeCompletions() {
            mailbox.complete(completion.commit, error: completion.error)
            if let error = completion.error { throw error }
            finished += 1
            inFlight -= 1
        }
    }
    return Double(total) / (now() - begin)
}

/// Writes `count` messages straight into a mailbox folder's cur/ (as another Maildir server would
/// have), then opens and closes it once so the UID list and a clean index exist.
func populate(_ user: UserMaildir, _ name: MailboxName, root: String, count: Int) throws {
    try user.createMailbox(name)
    let cur = root + "/" + name.folderName + "/cur/"
    for number in 0..<count {
        let bytes = message(number)
        let flags = number % 3 == 0 ? "S" : number % 7 == 0 ? "FS" : ""
        let path = cur + "\(1_700_000_000 + number).M\(number)P1.bench,S=\(bytes.count),W=\(bytes.count):2,\(flags)"
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }
    let mailbox = try user.mailbox(name)
    precondition(mailbox.count == count)
    try mailbox.close()
}

let arguments = CommandLine.arguments
let scratch = arguments.count > 1 ? arguments[1] : "/tmp/apus-store-bench"
let store = try MailStore(dataDirectory: scratch,
                          configuration: StoreConfiguration(contentSearcher: SubstringSearcher()))
let user = try store.openUser(try UserName("bench"))

// Appends with fsync.
// Interleaved rounds (the disk is shared and noisy): medians of three each.
var onesRates: [Double] = []
var fiftyRates: [Double] = []
for round in 0..<3 {
    try user.createMailbox(try MailboxName("Append1-\(round)"))
    onesRates.append(try appendRate(try user.mailbox(try MailboxName("Append1-\(round)")), writers: 1, total: 300))
    try user.createMailbox(try MailboxName("Append50-\(round)"))
    fiftyRates.append(try appendRate(try user.mailbox(try MailboxName("Append50-\(round)")), writers: 50, total: 2000))
}
let rateOne = median(onesRates)
let rateFifty = median(fiftyRates)
print("append_fsync_1        \(Int(rateOne)) appends/s")
print("append_fsync_50       \(Int(rateFifty)) appends/s (\(String(format1: rateFifty / rateOne))x one writer)")

if arguments.count > 2 && arguments[2] == "appends" { exit(0) }

var results: [Int: (open: Double, flags: Double, search: Double)] = [:]
for count in [10_000, 100_000] {
    let name = try MailboxName("Big\(count)")
    try populate(user, name, root: scratch + "/users/bench", count: count)
    var openTimes: [Double] = []
    var flagTimes: [Double] = []
    var searchTime = 0.0
    for round in 0..<5 {
        let begin = now()
        let mailbox = try user.mailbox(name)
        openTimes.append((now() - begin) * 1000)
        // FETCH 1:* FLAGS in miniature: every message's flags and keywords, ten times over.
        let flagsBegin = now()
        var seen = 0
        for _ in 0..<10 {
            for position in 0..<mailbox.count {
                let info = mailbox.flags(at: position)
                if info.flags.contains(.seen) || !info.keywords.isEmpty { seen += 1 }
            }
        }
        flagTimes.append((now() - flagsBegin) * 100)
        precondition(seen > 0)
        if round == 0 {
            let searchBegin = now()
            let found = mailbox.search(.content(.text("ZANZIBAR")))
            searchTime = (now() - searchBegin) * 1000
            precondition(found.uids.count == count / 1000)
        }
        try mailbox.close()
    }
    results[count] = (median(openTimes), median(flagTimes), searchTime)
    print("open_\(count)".padding(22) + "\(String(format1: median(openTimes))) ms "
          + "(\(String(format1: median(openTimes) * 1e6 / Double(count))) ns per message)")
    print("flags_\(count)".padding(22) + "\(String(format2: median(flagTimes))) ms "
          + "(\(String(format1: median(flagTimes) * 1e6 / Double(count))) ns per message)")
    print("search_text_\(count)".padding(22) + "\(String(format1: searchTime)) ms")
}
let small = results[10_000]!
let large = results[100_000]!
print("growth 10k->100k      open x\(String(format1: large.open / small.open)), flags x\(String(format1: large.flags / small.flags)), "
      + "search x\(String(format1: large.search / small.search)) (message count x10)")
print("store: \(Int(rateFifty)) appends/s durable with 50 writers (\(Int(rateOne))/s with 1 writer: group commit "
      + "x\(String(format1: rateFifty / rateOne)); open 100k-message mailbox \(String(format1: large.open)) ms)")

extension String {
    init(format1 value: Double) {
        let scaled = (value * 10).rounded() / 10
        self = "\(scaled)"
    }

    init(format2 value: Double) {
        let scaled = (value * 100).rounded() / 100
        self = "\(scaled)"
    }

    func padding(_ width: Int) -> String {
        self + String(repeating: " ", count: max(1, width - count))
    }
}
