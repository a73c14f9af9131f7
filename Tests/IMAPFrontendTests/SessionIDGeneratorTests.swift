//===----------------------------------------------------------------------===//
// Apus IMAPFrontend tests: the session IDs given to the back end (x-session-id).
//===----------------------------------------------------------------------===//

import Testing
@testable import IMAPFrontend

@Suite("Session IDs")
struct SessionIDGeneratorTests {
    /// The back end's logs find a session by its ID: IDs from one front end loop never repeat.
    @Test func idsAreSixteenHexDigitsAndDoNotRepeat() {
        var generator = SessionIDGenerator()
        var seen = Set<String>()
        for _ in 0..<100_000 {
            let id = generator.next()
            #expect(id.utf8.count == 16)
            #expect(id.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) })
            seen.insert(id)
        }
        #expect(seen.count == 100_000)
    }

    /// The generator is SplitMix64: seed 0's first output is the algorithm's published first
    /// value (0xe220a8397b1dcdaf), so a broken mixing step cannot pass unnoticed.
    @Test func stepsAsSplitMix64() {
        var generator = SessionIDGenerator(seed: 0)
        #expect(generator.next() == "e220a8397b1dcdaf")
    }

    /// Each loop seeds its own generator from the system: two loops do not hand out the same IDs.
    @Test func generatorsSeededApartGiveDifferentIDs() {
        var first = SessionIDGenerator(), second = SessionIDGenerator()
        let a = (0..<16).map { _ in first.next() }, b = (0..<16).map { _ in second.next() }
        #expect(Set(a).isDisjoint(with: b))
    }
}
