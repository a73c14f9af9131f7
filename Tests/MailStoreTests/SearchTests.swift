// MailStoreTests: SEARCH from the index, and content keys through the searcher hook.

import Glibc
import Synchronization
import Testing
@testable import MailStore

/// Matches content keys by plain substring over the raw bytes, counting how often it reads a file.
final class SubstringSearcher: MessageContentSearcher {
    let fileReads = Atomic<Int>(0)

    func prepare(_ key: ContentSearchKey) -> ContentSearchKey { key }

    func answer(_ key: ContentSearchKey, cached: UnsafeRawBufferPointer) -> Bool? {
        // The cached blob holds the first line (see FirstLineAnalyzer): enough for FROM.
        if case .header(let field, let value) = key, field == "From" {
            return contains(Array(cached)[...], value)
        }
        return nil
    }

    func matches(_ key: ContentSearchKey, message: UnsafeRawBufferPointer, cached: UnsafeRawBufferPointer) -> Bool {
        fileReads.add(1, ordering: .relaxed)
        let bytes = Array(message)[...]
        switch key {
        case .header(_, let value), .body(let value), .text(let value), .subject(let value): return contains(bytes, value)
        case .sentDate: return false
        }
    }

    private func contains(_ haystack: ArraySlice<UInt8>, _ needle: String) -> Bool {
        let pattern = Array(needle.utf8)
        guard !pattern.isEmpty, haystack.count >= pattern.count else { return pattern.isEmpty }
        for start in haystack.startIndex...(haystack.endIndex - pattern.count)
        where haystack[start..<(start + pattern.count)].elementsEqual(pattern) {
            return true
        }
        return false
    }
}

@Suite struct SearchTests {
    func makeMailbox(_ temporary: TemporaryDirectory, searcher: SubstringSearcher) throws -> Mailbox {
        let store = try temporary.openStore(StoreConfiguration(analyzer: FirstLineAnalyzer(), contentSearcher: searcher))
        let inbox = try store.openUser(UserName("u")).mailbox(.inbox)
        let day = SearchKey.day(year: 2024, month: 3, day: 1) * 86_400
        try appendMessage(sampleMessage("alpha"), to: inbox, flags: [.seen], internalDate: day + 3600)
        try appendMessage(sampleMessage("beta", bodyLines: 200), to: inbox, flags: [.flagged], keywords: ["Work"],
                          internalDate: day + 86_400 + 10)
        try appendMessage(sampleMessage("gamma"), to: inbox, flags: [.deleted, .seen], internalDate: day - 1)
        return inbox
    }

    @Test func indexKeys() throws {
        let temporary = TemporaryDirectory()
        let inbox = try makeMailbox(temporary, searcher: SubstringSearcher())
        let march1 = SearchKey.day(year: 2024, month: 3, day: 1)
        #expect(march1 == 19_783)
        let cases: [(SearchKey, [UInt32])] = [
            (.all, [1, 2, 3]), (.seen, [1, 3]), (.unseen, [2]), (.flagged, [2]), (.unflagged, [1, 3]),
            (.deleted, [3]), (.undeleted, [1, 2]), (.answered, []), (.unanswered, [1, 2, 3]), (.draft, []),
            (.undraft, [1, 2, 3]),
            (.keyword("work"), [2]), (.unkeyword("Work"), [1, 3]), (.keyword("Nope"), []), (.unkeyword("Nope"), [1, 2, 3]),
            (.on(march1), [1]), (.before(march1), [3]), (.since(march1), [1, 2]), (.since(march1 + 1), [2]),
            (.larger(Int64(sampleMessage("alpha").count)), [2]), (.smaller(Int64(sampleMessage("beta", bodyLines: 200).count)), [1, 3]),
            (.uids([2...2, 3...9]), [2, 3]), (.modseq(inbox.message(at: 1).modseq), [2, 3]),
            (.not(.seen), [2]), (.or(.flagged, .deleted), [2, 3]), (.and([.seen, .undeleted]), [1]),
            (.recent, [2]), (.new, [2]), (.old, [1, 3]),
            (.olderThan(3600), [1, 2, 3]), (.youngerThan(3600), []),
            (.savedSince(SearchKey.day(year: 2025, month: 1, day: 1)), [1, 2, 3]), (.savedBefore(march1), []),
        ]
        for (key, expected) in cases {
            #expect(inbox.search(key, recent: [2]).uids == expected, "\(key)")
        }
        let result = inbox.search(.or(.seen, .flagged))
        #expect(result.highestModseq == (0..<3).map { inbox.message(at: $0).modseq }.max())
        #expect(inbox.search(.answered).highestModseq == 0)
    }

    @Test func contentKeysReadFilesOnlyWhenTheyMust() throws {
        let temporary = TemporaryDirectory()
        let searcher = SubstringSearcher()
        let inbox = try makeMailbox(temporary, searcher: searcher)
        #expect(inbox.search(.content(.body("line 150 of beta"))).uids == [2])
        #expect(searcher.fileReads.load(ordering: .relaxed) == 3)
        // The index rules out messages before any file is read.
        #expect(inbox.search(.and([.content(.text("message")), .flagged])).uids == [2])
        #expect(searcher.fileReads.load(ordering: .relaxed) == 4)
        // FROM is answered from the cached blob: no file at all.
        #expect(inbox.search(.header("From", "a@example.org")).uids == [1, 2, 3])
        #expect(inbox.search(.not(.header("From", "zzz"))).uids == [1, 2, 3])
        #expect(searcher.fileReads.load(ordering: .relaxed) == 4)
    }

    /// Subjects the SUBJECT key must decode, unfold and fold case on, whichever path answers it.
    static let subjectMessages: [String] = [
        "From: a@example.org\r\nSubject: Quarterly REPORT due\r\n\r\nbody\r\n",
        "From: a@example.org\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe_zum_?= =?ISO-8859-1?B?UmVw9nJ0?=\r\n\r\nbody\r\n",
        "From: a@example.org\r\nSubject: the weekly\r\n report for\r\n\tmarch\r\n\r\nbody\r\n",
        "From: a@example.org\r\nTo: report@example.org\r\n\r\nno subject, report in the body\r\n",
        "From: a@example.org\r\nSubject: \r\n\r\nan empty subject\r\n",
        "From: a@example.org\r\nsubject: Ünïcode ÄRGER\r\n\r\nbody\r\n",
    ]

    /// (needle, UIDs with it in their subject)
    static let subjectCases: [(String, [UInt32])] = [
        ("report", [1, 3]), ("REPORT DUE", [1]), ("grüße zum repört", [2]), ("GRÜSSE", []), ("ZUM RE", [2]),
        ("weekly report for\tmarch", [3]), ("weekly\r\n", []), ("ärger", [6]), ("", [1, 2, 3, 5, 6]),
        ("example.org", []), ("=?UTF-8", []),
    ]

    func subjectMailbox(_ temporary: TemporaryDirectory, analyzer: (any MessageAnalyzer)?) throws -> Mailbox {
        let configuration = StoreConfiguration(analyzer: analyzer, contentSearcher: MIMEContentSearcher())
        let inbox = try temporary.openStore(configuration).openUser(UserName("u")).mailbox(.inbox)
        for text in Self.subjectMessages { try appendMessage(Array(text.utf8), to: inbox) }
        return inbox
    }

    @Test func subjectIsAnsweredFromTheCachedEnvelopeWithoutReadingMessages() throws {
        let cachedDirectory = TemporaryDirectory()
        let cached = try subjectMailbox(cachedDirectory, analyzer: MIMEMessageAnalyzer())
        // No analyzer: no blob, so the searcher reads and parses each message file.
        let fileDirectory = TemporaryDirectory()
        let fromFiles = try subjectMailbox(fileDirectory, analyzer: nil)
        for (needle, expected) in Self.subjectCases {
            #expect(cached.search(.content(.subject(needle))).uids == expected, "\(needle)")
            #expect(fromFiles.search(.content(.subject(needle))).uids == expected, "\(needle)")
        }
        // Behind the store's back, every message file now says something else: the cached
        // answers stand, so SUBJECT read none of them (HEADER, which must read, sees the change).
        let cur = cachedDirectory.path + "/data/users/u/cur"
        for name in fileNames(in: cur) { writeFile(cur + "/" + name, Array("Subject: replaced\r\n\r\nx\r\n".utf8)) }
        for (needle, expected) in Self.subjectCases {
            #expect(cached.search(.content(.subject(needle))).uids == expected, "\(needle)")
        }
        #expect(cached.search(.header("Subject", "replaced")).uids == [1, 2, 3, 4, 5, 6])
    }

    @Test func eachContentKeyOfOneSearchKeepsItsOwnNeedle() throws {
        let cachedDirectory = TemporaryDirectory()
        let fileDirectory = TemporaryDirectory()
        let mailboxes = [try subjectMailbox(cachedDirectory, analyzer: MIMEMessageAnalyzer()),
                         try subjectMailbox(fileDirectory, analyzer: nil)]
        let cases: [(SearchKey, [UInt32])] = [
            (.and([.content(.subject("report")), .not(.content(.subject("due")))]), [3]),
            (.or(.content(.subject("ärger")), .content(.subject("zum re"))), [2, 6]),
            (.or(.content(.subject("weekly")), .uids([5...5])), [3, 5]),
            (.and([.content(.subject("report")), .header("To", "report@"), .uids([1...4])]), []),
            (.or(.header("To", "report@"), .content(.subject("due"))), [1, 4]),
        ]
        for inbox in mailboxes {
            for (key, expected) in cases {
                #expect(inbox.search(key).uids == expected, "\(key)")
            }
        }
    }

    @Test(arguments: ["remove", "garbage"])
    func subjectIsAnsweredFromTheMessagesWhenTheCacheIsGone(_ damage: String) throws {
        let temporary = TemporaryDirectory()
        do { _ = try subjectMailbox(temporary, analyzer: MIMEMessageAnalyzer()) }
        let cacheFile = temporary.path + "/data/users/u/" + MessageCache.fileName
        if damage == "remove" {
            #expect(unlink(cacheFile) == 0)
        } else {
            let size = try #require(readFile(cacheFile)).count
            writeFile(cacheFile, [UInt8](repeating: 0x5A, count: size))
        }
        let configuration = StoreConfiguration(analyzer: MIMEMessageAnalyzer(), contentSearcher: MIMEContentSearcher())
        let reopened = try temporary.openStore(configuration).openUser(UserName("u")).mailbox(.inbox)
        for (needle, expected) in Self.subjectCases {
            #expect(reopened.search(.content(.subject(needle))).uids == expected, "\(needle)")
        }
    }

    /// The subject mailbox, reopened after one byte of the blob of cache record `record` was
    /// flipped, and every message's blob as cached before the damage.
    private func mailboxWithDamagedBlob(_ temporary: TemporaryDirectory, record: Int) throws
        -> (inbox: Mailbox, expected: [[UInt8]])
    {
        var expected: [[UInt8]] = []
        do {
            let inbox = try subjectMailbox(temporary, analyzer: MIMEMessageAnalyzer())
            expected = try inbox.uids.map { try inbox.cachedAnalysis(of: $0) }
        }
        let cacheFile = temporary.path + "/data/users/u/" + MessageCache.fileName
        var cache = try #require(readFile(cacheFile))
        let recordStart = expected[0..<record].reduce(0) { $0 + MessageCache.headerSize + $1.count }
        cache[recordStart + MessageCache.headerSize] ^= 0xFF
        writeFile(cacheFile, cache)
        let configuration = StoreConfiguration(analyzer: MIMEMessageAnalyzer(), contentSearcher: MIMEContentSearcher())
        return (try temporary.openStore(configuration).openUser(UserName("u")).mailbox(.inbox), expected)
    }

    @Test("withCachedAnalysis hands over each message's own blob, and rebuilds a damaged one")
    func cachedAnalysisInPlaceMatchesTheCopy() throws {
        let temporary = TemporaryDirectory()
        let (inbox, expected) = try mailboxWithDamagedBlob(temporary, record: 0)
        for (position, uid) in inbox.uids.enumerated() {
            #expect(try inbox.withCachedAnalysis(of: uid) { Array($0) } == expected[position], "\(position)")
        }
        #expect(throws: StoreError.self) { try inbox.withCachedAnalysis(of: 999_999) { $0.count } }
    }

    @Test(arguments: [1, 150, 600, 1 << 20])
    func readAheadServesEachMessagesOwnBlobAndRebuildsADamagedOne(_ windowLimit: Int) throws {
        let temporary = TemporaryDirectory()
        // The fourth record damaged: it alone is analysed again from its message.
        let (inbox, expected) = try mailboxWithDamagedBlob(temporary, record: 3)
        let damaged = inbox.index.records[3]
        #expect(inbox.cache.withBlob(offset: damaged.cacheOffset, length: damaged.cacheLength, uid: damaged.uid,
                                     verified: false, { Array($0) }) == nil)
        // Whole records are read in place in the window; only the damaged one is analysed
        // again (and cached anew, so from then on it too reads in place).
        var inPlace = MessageCacheReadAhead(windowLimit: windowLimit)
        for position in 0..<inbox.count {
            let blob = inPlace.locateBlob(at: position, of: inbox)
            if case .inWindow = blob { #expect(position != 3) } else { #expect(position == 3) }
            #expect(inPlace.withBytes(of: blob) { Array($0) } == expected[position], "\(position)")
        }
        var readAhead = MessageCacheReadAhead(windowLimit: windowLimit)
        func blob(at position: Int) -> [UInt8] {
            let located = readAhead.locateBlob(at: position, of: inbox)
            return readAhead.withBytes(of: located) { Array($0) }
        }
        for position in 0..<inbox.count {
            #expect(blob(at: position) == expected[position], "\(position)")
        }
        // Backwards too (each record outside the window read so far).
        for position in (0..<inbox.count).reversed() {
            #expect(blob(at: position) == expected[position], "\(position)")
        }
        for (needle, uids) in Self.subjectCases {
            #expect(inbox.search(.content(.subject(needle))).uids == uids, "\(needle)")
        }
    }

    @Test func contentKeysMatchNothingWithoutASearcher() throws {
        let temporary = TemporaryDirectory()
        let store = try temporary.openStore()
        let inbox = try store.openUser(UserName("u")).mailbox(.inbox)
        try appendMessage(sampleMessage("a"), to: inbox)
        #expect(inbox.search(.content(.text("a"))).uids.isEmpty)
        #expect(inbox.search(.not(.content(.text("a")))).uids == [1])
    }
}

/// A cache record's checksum is summed on its first read in an open mailbox; later SEARCHes check
/// only its header.
@Suite struct CacheRecordCheckedOnceTests {
    let configuration = StoreConfiguration(analyzer: MIMEMessageAnalyzer(), contentSearcher: MIMEContentSearcher())

    /// The subject mailbox of ``SearchTests``, closed and opened again: no cache record checked yet.
    func reopenedSubjectMailbox(_ temporary: TemporaryDirectory) throws -> Mailbox {
        do { _ = try SearchTests().subjectMailbox(temporary, analyzer: MIMEMessageAnalyzer()) }
        return try temporary.openStore(configuration).openUser(UserName("u")).mailbox(.inbox)
    }

    /// Rewrites `old` as `new` (of the same length) in apus-cache from byte `start` on, behind the
    /// store's back, so that the record holding it no longer matches its checksum.
    func rewriteCache(_ temporary: TemporaryDirectory, _ old: String, to new: String, from start: Int = 0) throws {
        let cacheFile = temporary.path + "/data/users/u/" + MessageCache.fileName
        var cache = try #require(readFile(cacheFile))
        let (old, new) = (Array(old.utf8), Array(new.utf8))
        var rewritten = 0
        for offset in start..<(cache.count - old.count + 1) where cache[offset..<offset + old.count].elementsEqual(old) {
            cache.replaceSubrange(offset..<offset + old.count, with: new)
            rewritten += 1
        }
        #expect(rewritten > 0)
        writeFile(cacheFile, cache)
    }

    func cacheSize(_ temporary: TemporaryDirectory) throws -> Int {
        try #require(readFile(temporary.path + "/data/users/u/" + MessageCache.fileName)).count
    }

    func expectSubjectAnswers(_ inbox: Mailbox, without gone: Set<UInt32> = []) {
        for (needle, expected) in SearchTests.subjectCases {
            #expect(inbox.search(.content(.subject(needle))).uids == expected.filter { !gone.contains($0) }, "\(needle)")
        }
    }

    @Test func answersStayRightAcrossSearchesAndTheFirstCheckIsTrusted() throws {
        let temporary = TemporaryDirectory()
        do {
            let inbox = try reopenedSubjectMailbox(temporary)
            expectSubjectAnswers(inbox)
            expectSubjectAnswers(inbox)
            // apus-cache is this process's own and only ever appended to, so a record that checked
            // out once stays whole; only a test changes one behind the store's back, and doing so
            // shows that later SEARCHes trust the first check rather than sum the record again.
            try rewriteCache(temporary, "weekly", to: "yearly")
            #expect(inbox.search(.content(.subject("yearly"))).uids == [3])
        }
        // Opened again, the changed record is checked on its first read, refused, and analysed anew.
        let reopened = try temporary.openStore(configuration).openUser(UserName("u")).mailbox(.inbox)
        #expect(reopened.search(.content(.subject("yearly"))).uids == [])
        expectSubjectAnswers(reopened)
    }

    @Test func aDamagedRecordIsReplacedByOneKnownWhole() throws {
        let temporary = TemporaryDirectory()
        let inbox = try reopenedSubjectMailbox(temporary)
        try rewriteCache(temporary, "weekly", to: "yearly")
        let end = try cacheSize(temporary)
        expectSubjectAnswers(inbox)
        #expect(inbox.search(.content(.subject("yearly"))).uids == [])
        // The replacement (appended by this process, after `end`) is the record now trusted unchecked.
        try rewriteCache(temporary, "weekly", to: "yearly", from: end)
        #expect(inbox.search(.content(.subject("yearly"))).uids == [3])
    }

    @Test func anExpungeMovesWhatIsKnownWithTheRecords() throws {
        let temporary = TemporaryDirectory()
        let inbox = try reopenedSubjectMailbox(temporary)
        try rewriteCache(temporary, "weekly", to: "yearly")
        // Only UIDs 1 and 2 have their content looked at: their records are checked, UID 3's not.
        #expect(inbox.search(.and([.uids([1...2]), .content(.subject("report"))])).uids == [1])
        let stored = try inbox.prepareStore(uids: [1], change: .add, flags: [.deleted])
        try inbox.commitNow(try #require(stored.commit))
        try inbox.commitNow(try #require(inbox.prepareExpunge()))
        // UID 3's record now sits where UID 2's did, and is still checked on its first read.
        #expect(inbox.search(.content(.subject("yearly"))).uids == [])
        expectSubjectAnswers(inbox, without: [1])
    }

    @Test func answersStayRightAfterTheCacheIsReset() throws {
        let temporary = TemporaryDirectory()
        do { expectSubjectAnswers(try reopenedSubjectMailbox(temporary)) }
        // Without its index the mailbox is rebuilt from the files and apus-cache emptied.
        Directory.removeFileForTest(temporary.path + "/data/users/u/" + MessageIndex.fileName)
        let rebuilt = try temporary.openStore(configuration).openUser(UserName("u")).mailbox(.inbox)
        expectSubjectAnswers(rebuilt)
        expectSubjectAnswers(rebuilt)
        #expect(rebuilt.index.records.allSatisfy { $0.cacheVerified })
    }
}
