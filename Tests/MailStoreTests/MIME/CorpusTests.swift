// CorpusTests: ENVELOPE and BODYSTRUCTURE of the awkward-message corpus against Dovecot's answers.

import Testing

@testable import MailStore

@Suite("MIME corpus against Dovecot")
struct CorpusTests {
    @Test("every corpus message matches Dovecot's ENVELOPE and BODYSTRUCTURE, or a documented difference",
          arguments: Corpus.names)
    func matchesDovecot(name: String) throws {
        let message = Corpus.message(name)
        let structure = MessageStructure(parsing: message)
        let answer = Corpus.dovecotAnswer(name)
        try #require(!answer.isEmpty, "no captured answer for \(name)")
        if answer.starts(with: Array("NO ".utf8)) {
            // Dovecot refused the message (the empty one): nothing to compare.
            #expect(!structure.parts.isEmpty)
            return
        }
        let theirs = try #require(IMAPTree.parse(answer), "unparsable capture for \(name)")
        var oursText: [UInt8] = []
        structure.writeIMAPDescription(into: &oursText)
        let ours = try #require(IMAPTree.parse(oursText), "unparsable rendering for \(name)")
        let found = ours.differences(from: theirs)
        let documented = DocumentedDifference.all.filter { $0.message == name }.map(\.difference)
        #expect(found == documented, "\(name)")
    }
}

extension CorpusTests {
    @Test("bare-LF sizes: canonicalBodySize is Dovecot's CRLF size")
    func bareLineFeedSizes() {
        let structure = MessageStructure(parsing: Corpus.message("07-lf-only"))
        let children = structure.children(of: 0)
        #expect(children.map { structure.parts[$0].bodySize } == [18, 28])
        #expect(children.map { structure.parts[$0].canonicalBodySize } == [20, 29])
        #expect(children.map { structure.parts[$0].bodyLines } == [2, 1])
        let message = Corpus.message("07-lf-only")
        #expect(structure.canonicalMessageSize == message.count + message.filter { $0 == 10 }.count)
        let crlf = MessageStructure(parsing: Corpus.message("01-simple-plain"))
        #expect(crlf.canonicalMessageSize == crlf.messageSize)
    }
}

/// Where Apus deliberately answers differently from Dovecot 2.3, and why. Each entry must occur
/// exactly (the test fails on any other difference, and on an entry that no longer occurs).
struct DocumentedDifference {
    let message: String
    /// `path: apus | dovecot`, paths as in ``IMAPTree/differences(from:path:)``.
    let difference: String
    let reason: String

    static let all: [DocumentedDifference] = [
        DocumentedDifference(
            message: "05-rfc2231-filename",
            difference: #"3.2.2.1: "us-ascii'en'This%20is%20even%20more%20%2A%2A%2Afun%2A%2A%2A%20isn%27t%20it!" | "#
                + #""us-ascii'en'This%20is%20even%20more%20%2A%2A%2Afun%2A%2A%2A%20isn't it!""#,
            reason: "A plain section joined to RFC 2231 extended ones is percent-encoded, so the joined value "
                + "stays a valid ext-value (RFC 2231 section 7); Dovecot appends it raw, blanks and quotes included."),
        DocumentedDifference(
            message: "07-lf-only", difference: "3.0.6: 18 | 20",
            reason: "Sizes count the bytes in the file; Dovecot counts bare LF as CRLF because it converts on "
                + "output. MIMEPart.canonicalBodySize gives Dovecot's figure (asserted in bareLineFeedSizes)."),
        DocumentedDifference(message: "07-lf-only", difference: "3.1.6: 28 | 29", reason: "As above."),
        DocumentedDifference(
            message: "14-boundary-prefix-in-body", difference: "3.0.6: 135 | 36",
            reason: "A delimiter line is `--boundary`, optionally `--`, then only blanks (RFC 2046 section 5.1.1); "
                + "Dovecot takes any line starting with `--boundary`, so `--abcdef ...` ends its part early."),
        DocumentedDifference(message: "14-boundary-prefix-in-body", difference: "3.1.6: 6 | 0", reason: "As above."),
        DocumentedDifference(
            message: "20-folded-and-defaults",
            difference: "1.1: \"Folded\tsubject with  tabs and trailing blanks   \" | "
                + "\"Folded subject with tabs and trailing blanks\"",
            reason: "ENVELOPE subject is the raw header value, only unfolded (RFC 3501 7.4.2); Dovecot also turns "
                + "tabs into spaces, squeezes runs of blanks and trims the end."),
        DocumentedDifference(
            message: "22-odd-addresses",
            difference: #"1.6: (("Last, First" NIL "last.first" "example.org") ("Just Phrase" NIL "MISSING_MAILBOX" "#
                + #""MISSING_DOMAIN")) | (("Last, First" NIL "last.first" "example.org") (NIL NIL "MISSING_MAILBOX" "#
                + #""MISSING_DOMAIN") (NIL NIL "MISSING_MAILBOX" "MISSING_DOMAIN") ("Just Phrase" NIL "#
                + #""MISSING_MAILBOX" "MISSING_DOMAIN"))"#,
            reason: "Empty list elements (`a,,,b`) are skipped, as RFC 5322 obs-addr-list intends; Dovecot makes "
                + "an all-missing address of each."),
        DocumentedDifference(
            message: "26-bad-content-type",
            difference: #"3: ("text" "plain" ("charset" "us-ascii") NIL NIL "x-uuencode" 18 2 NIL NIL NIL NIL) | "#
                + #"("" "" NIL NIL NIL "x-uuencode" 18 NIL NIL NIL NIL)"#,
            reason: "A Content-Type without a subtype is invalid, so the RFC 2045 section 5.2 default "
                + "text/plain; charset=us-ascii applies; Dovecot sends empty type and subtype."),
        DocumentedDifference(
            message: "27-rfc822-base64", difference: "3.0.6: 72 | 74",
            reason: "The line break before a delimiter belongs to the delimiter (RFC 2046 5.1.1) even when the "
                + "part's text never reached an empty line; Dovecot keeps it in a header that runs into the "
                + "delimiter. (Apus also leaves an encoded message/rfc822 unparsed; both show an empty inside.)"),
        DocumentedDifference(message: "27-rfc822-base64", difference: "3.0.9: 0 | 1", reason: "As above."),
    ]
}
