//===----------------------------------------------------------------------===//
// Apus IMAPFrontend tests: what a client is told when its login succeeded (PostLoginAnswer).
//===----------------------------------------------------------------------===//

import Testing
@testable import IMAPFrontend

@Suite("Post-login answer")
struct PostLoginAnswerTests {
    private func answer(_ cache: inout PostLoginAnswerCache, untagged: String, tagged: String) -> PostLoginAnswer {
        Array(tagged.utf8).withUnsafeBytes { cache.answer(untagged: Array(untagged.utf8), taggedText: $0) }
    }

    /// Clients never see UNAUTHENTICATE advertised (they get BAD for it through the front end),
    /// whether the back end lists it in a CAPABILITY line or in the tagged OK's code; the front end
    /// still learns that the back end offers it.
    @Test func unauthenticateIsHiddenFromTheClientButRemembered() {
        var cache = PostLoginAnswerCache()
        let fromCode = answer(&cache, untagged: "", tagged: "OK [CAPABILITY IMAP4rev1 UNAUTHENTICATE IDLE] Logged in\r\n")
        #expect(fromCode.backendOffersUnauthenticate)
        #expect(String(decoding: fromCode.taggedText, as: UTF8.self) == "OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n")
        #expect(String(decoding: fromCode.capabilityLine, as: UTF8.self) == "* CAPABILITY IMAP4rev1 IDLE\r\n")

        let fromLine = answer(&cache, untagged: "* CAPABILITY IMAP4rev2 unauthenticate MOVE\r\n", tagged: "OK Logged in\r\n")
        #expect(fromLine.backendOffersUnauthenticate)
        #expect(String(decoding: fromLine.untagged, as: UTF8.self) == "* CAPABILITY IMAP4rev2 MOVE\r\n")
        #expect(String(decoding: fromLine.capabilityLine, as: UTF8.self) == "* CAPABILITY IMAP4rev2 MOVE\r\n")
    }

    /// The rewrite is kept for the next login, but a back end whose answer changes (restarted with
    /// other capabilities, say) is never described by its old answer.
    @Test func aChangedAnswerIsWorkedOutAgain() {
        var cache = PostLoginAnswerCache()
        let first = answer(&cache, untagged: "", tagged: "OK [CAPABILITY IMAP4rev1 UNAUTHENTICATE] Logged in\r\n")
        let again = answer(&cache, untagged: "", tagged: "OK [CAPABILITY IMAP4rev1 UNAUTHENTICATE] Logged in\r\n")
        #expect(again.taggedText == first.taggedText && again.backendOffersUnauthenticate)
        let changed = answer(&cache, untagged: "", tagged: "OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n")
        #expect(!changed.backendOffersUnauthenticate)
        #expect(String(decoding: changed.capabilityLine, as: UTF8.self) == "* CAPABILITY IMAP4rev1 IDLE\r\n")
        let sameLengthOtherBytes = answer(&cache, untagged: "", tagged: "OK [CAPABILITY IMAP4rev1 MOVE] Logged in\r\n")
        #expect(String(decoding: sameLengthOtherBytes.capabilityLine, as: UTF8.self) == "* CAPABILITY IMAP4rev1 MOVE\r\n")
        let withLine = answer(&cache, untagged: "* CAPABILITY IMAP4rev2\r\n", tagged: "OK [CAPABILITY IMAP4rev1 MOVE] Logged in\r\n")
        #expect(String(decoding: withLine.untagged, as: UTF8.self) == "* CAPABILITY IMAP4rev2\r\n")
    }
}
