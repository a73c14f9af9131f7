// MailStore: SEARCH over one mailbox (RFC 3501 section 6.4.4, RFC 9051 section 6.4.4, RFC 7162
// MODSEQ, RFC 5032 OLDER/YOUNGER, RFC 8514 SAVED*).
//
// Keys about flags, keywords, dates, sizes, UIDs and MODSEQ are answered from the index. Keys about
// the text (HEADER, FROM, TO, CC, BCC, SUBJECT, BODY, TEXT, SENT*) go to the configured
// `MessageContentSearcher`: first with the cached analyzer blob, and only if that cannot decide, with
// the mapped message file. Within AND and OR, index keys are tried first, so content is looked at
// only for messages the index could not rule out.

import Glibc

/// A search criterion. The back end maps the wire syntax onto it: message sequence sets and `$`
/// (RFC 5182) become `.uids`, since sequence numbers belong to a session's view.
public indirect enum SearchKey: Equatable, Sendable {
    case all
    case answered, deleted, draft, flagged, seen
    case unanswered, undeleted, undraft, unflagged, unseen
    /// \Recent for this session (passed to `search`); NEW is recent and unseen, OLD not recent.
    case recent, new, old
    case keyword(String)
    case unkeyword(String)
    /// INTERNALDATE compared by day (days since 1970-01-01, UTC): BEFORE, ON, SINCE.
    case before(Int64), on(Int64), since(Int64)
    /// SAVEDATE by day (RFC 8514): SAVEDBEFORE, SAVEDON, SAVEDSINCE.
    case savedBefore(Int64), savedOn(Int64), savedSince(Int64)
    /// OLDER n / YOUNGER n seconds (RFC 5032), against INTERNALDATE.
    case olderThan(Int64), youngerThan(Int64)
    /// RFC822.SIZE larger / smaller than n.
    case larger(Int64), smaller(Int64)
    /// UID sets (ranges of UIDs).
    case uids([ClosedRange<UInt32>])
    /// MODSEQ n (RFC 7162 section 3.1.5): messages with a MODSEQ at or above n.
    case modseq(UInt64)
    /// A key answered from the message's text.
    case content(ContentSearchKey)
    case not(SearchKey)
    case or(SearchKey, SearchKey)
    case and([SearchKey])

    /// HEADER, FROM, TO, CC and BCC: a search of the header fields of that name (SUBJECT is
    /// `.content(.subject)`: the envelope's subject).
    public static func header(_ field: String, _ value: String) -> SearchKey { .content(.header(field: field, value: value)) }

    /// The day number (days since 1970-01-01) of a calendar date, for the date keys.
    public static func day(year: Int, month: Int, day: Int) -> Int64 {
        // Days from civil (proleptic Gregorian), after H. Hinnant's algorithm.
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let m = Int64(month)
        let dayOfYear = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + Int64(day) - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// True when answering the key may need the message's text.
    var needsContent: Bool {
        switch self {
        case .content: return true
        case .not(let key): return key.needsContent
        case .or(let left, let right): return left.needsContent || right.needsContent
        case .and(let keys): return keys.contains { $0.needsContent }
        default: return false
        }
    }
}

/// The answer to a search.
public struct SearchResult: Equatable, Sendable {
    /// Matching UIDs, ascending.
    public var uids: [UInt32]
    /// The highest MODSEQ among the matches (for the `(MODSEQ n)` of RFC 7162 section 3.1.5), 0 when
    /// nothing matched.
    public var highestModseq: UInt64
}

extension Mailbox {
    /// Searches the mailbox. `recent` holds the UIDs that are \Recent for the asking session.
    /// Reads message files only for content keys the cached blobs cannot decide.
    public func search(_ key: SearchKey, recent: Set<UInt32> = []) -> SearchResult {
        // The searcher's type is opened here, once, so its prepared keys are of that type.
        if let searcher = configuration.contentSearcher { return search(key, recent: recent, searcher: searcher) }
        return search(key, recent: recent, searcher: Optional<UnpreparedContentSearcher>.none)
    }

    private func search<Searcher: MessageContentSearcher>(_ key: SearchKey, recent: Set<UInt32>,
                                                          searcher: Searcher?) -> SearchResult
    {
        let prepared = PreparedSearchKey(key, searcher: searcher)
        let now = currentTimeNanoseconds() / 1_000_000_000
        var result = SearchResult(uids: [], highestModseq: 0)
        var content = MessageContent(mailbox: self, searcher: searcher)
        for position in index.records.indices {
            content.move(to: position)
            if matches(prepared, position: position, recent: recent, now: now, content: &content) {
                let record = index.records[position]
                result.uids.append(record.uid)
                result.highestModseq = max(result.highestModseq, record.modseq)
            }
        }
        return result
    }

    private func matches<Searcher>(_ key: PreparedSearchKey<Searcher.PreparedKey>, position: Int,
                                   recent: Set<UInt32>, now: Int64, content: inout MessageContent<Searcher>) -> Bool
    {
        switch key {
        case .index(let indexKey): return matches(indexKey, position: position, recent: recent, now: now)
        case .content(let contentKey): return content.matches(contentKey)
        case .not(let inner):
            return !matches(inner, position: position, recent: recent, now: now, content: &content)
        case .or(let left, let right):
            return matches(left, position: position, recent: recent, now: now, content: &content)
                || matches(right, position: position, recent: recent, now: now, content: &content)
        case .and(let keys):
            for inner in keys where !matches(inner, position: position, recent: recent, now: now, content: &content) {
                return false
            }
            return true
        }
    }

    /// Whether the message at `position` matches a key without content keys.
    private func matches(_ key: SearchKey, position: Int, recent: Set<UInt32>, now: Int64) -> Bool {
        let record = index.records[position]
        let day = { (seconds: Int64) -> Int64 in seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400 }
        switch key {
        case .all: return true
        case .answered: return record.flags.contains(.answered)
        case .deleted: return record.flags.contains(.deleted)
        case .draft: return record.flags.contains(.draft)
        case .flagged: return record.flags.contains(.flagged)
        case .seen: return record.flags.contains(.seen)
        case .unanswered: return !record.flags.contains(.answered)
        case .undeleted: return !record.flags.contains(.deleted)
        case .undraft: return !record.flags.contains(.draft)
        case .unflagged: return !record.flags.contains(.flagged)
        case .unseen: return !record.flags.contains(.seen)
        case .recent: return recent.contains(record.uid)
        case .new: return recent.contains(record.uid) && !record.flags.contains(.seen)
        case .old: return !recent.contains(record.uid)
        case .keyword(let name):
            guard let bit = keywordTable.index(of: name) else { return false }
            return record.keywords.contains(bit)
        case .unkeyword(let name):
            guard let bit = keywordTable.index(of: name) else { return true }
            return !record.keywords.contains(bit)
        case .before(let limit): return day(record.internalDate) < limit
        case .on(let limit): return day(record.internalDate) == limit
        case .since(let limit): return day(record.internalDate) >= limit
        case .savedBefore(let limit): return day(record.saveDate) < limit
        case .savedOn(let limit): return day(record.saveDate) == limit
        case .savedSince(let limit): return day(record.saveDate) >= limit
        case .olderThan(let seconds): return record.internalDate <= now - seconds
        case .youngerThan(let seconds): return record.internalDate >= now - seconds
        case .larger(let size): return record.size > size
        case .smaller(let size): return record.size < size
        case .uids(let ranges): return ranges.contains { $0.contains(record.uid) }
        case .modseq(let value): return record.modseq >= value
        case .content:
            // PreparedSearchKey keeps content keys out of the keys it answers from the index.
            assertionFailure("a content key among the index keys")
            return false
        case .not(let inner): return !matches(inner, position: position, recent: recent, now: now)
        case .or(let left, let right):
            return matches(left, position: position, recent: recent, now: now)
                || matches(right, position: position, recent: recent, now: now)
        case .and(let keys): return keys.allSatisfy { matches($0, position: position, recent: recent, now: now) }
        }
    }
}

/// A search key made ready for one pass over the mailbox: the operands of AND and OR that the index
/// answers run first, so content is looked at only for messages the index could not rule out; and
/// each content key is prepared by the searcher once, not again for every message.
indirect enum PreparedSearchKey<PreparedContentKey> {
    /// A key with no content key in it.
    case index(SearchKey)
    case content(PreparedContentKey)
    case not(PreparedSearchKey)
    case or(PreparedSearchKey, PreparedSearchKey)
    case and([PreparedSearchKey])

    /// Without a searcher, content keys match nothing.
    init<Searcher: MessageContentSearcher>(_ key: SearchKey, searcher: Searcher?)
    where Searcher.PreparedKey == PreparedContentKey {
        let prepare = { (key: SearchKey) in PreparedSearchKey(key, searcher: searcher) }
        switch key {
        case _ where !key.needsContent:
            self = .index(key)
        case .content(let contentKey):
            self = searcher.map { .content($0.prepare(contentKey)) } ?? .index(.not(.all))
        case .not(let inner):
            self = .not(prepare(inner))
        case .or(let left, let right) where !right.needsContent:
            self = .or(prepare(right), prepare(left))
        case .or(let left, let right):
            self = .or(prepare(left), prepare(right))
        case .and(let keys):
            self = .and(keys.filter { !$0.needsContent }.map(prepare) + keys.filter(\.needsContent).map(prepare))
        default:
            self = .index(key)
        }
    }
}

/// The type of the searcher a store is configured without: no key of it is ever prepared.
struct UnpreparedContentSearcher: MessageContentSearcher {
    func prepare(_ key: ContentSearchKey) -> ContentSearchKey { key }
    func answer(_ key: ContentSearchKey, cached: UnsafeRawBufferPointer) -> Bool? { false }
    func matches(_ key: ContentSearchKey, message: UnsafeRawBufferPointer, cached: UnsafeRawBufferPointer) -> Bool {
        false
    }
}

/// The text of the message a search is looking at, for content keys: its cached blob is fetched at
/// most once and only when asked, through a read-ahead that serves the following messages too.
struct MessageContent<Searcher: MessageContentSearcher> {
    let mailbox: Mailbox
    /// Nil: content keys match nothing.
    let searcher: Searcher?
    private var position = 0
    private var blob: MessageCacheReadAhead.Blob?
    private var readAhead = MessageCacheReadAhead()

    init(mailbox: Mailbox, searcher: Searcher?) {
        self.mailbox = mailbox
        self.searcher = searcher
    }

    /// Looks at the message at `position` next.
    mutating func move(to position: Int) {
        self.position = position
        blob = nil
    }

    mutating func matches(_ key: Searcher.PreparedKey) -> Bool {
        guard let searcher else { return false }
        if blob == nil { blob = readAhead.locateBlob(at: position, of: mailbox) }
        let blob = blob!
        // Most keys are answered here, from the blob where it lies in the read-ahead window.
        if let answer = readAhead.withBytes(of: blob, { searcher.answer(key, cached: $0) }) { return answer }
        let uid = mailbox.index.records[position].uid
        return readAhead.withBytes(of: blob) { cached in
            (try? mailbox.withMessageBytes(of: uid) { searcher.matches(key, message: $0, cached: cached) }) ?? false
        }
    }
}
