// ReactorTests: HomeLoop gives a fixed user a fixed loop for a given loop count, in every process and
// build: the front end picks hop connections by it and the back end moves sessions by it, so a
// change here must be deliberate (these values are FNV-1a's, worked out independently).

import Testing
@testable import Reactor

@Suite struct HomeLoopTests {
    @Test func aUserHasTheSameHomeLoopInEveryProcess() {
        #expect(HomeLoop.index(ofUser: "alice".utf8, loopCount: 2) == 1)
        #expect(HomeLoop.index(ofUser: "bob".utf8, loopCount: 2) == 0)
        #expect(HomeLoop.index(ofUser: "alice".utf8, loopCount: 3) == 2)
        #expect(HomeLoop.index(ofUser: "user3".utf8, loopCount: 4) == 3)
        #expect(HomeLoop.index(ofUser: "carol".utf8, loopCount: 7) == 6)
        // Bytes as the client sent them: an array and a string's UTF-8 agree.
        #expect(HomeLoop.index(ofUser: Array("dave".utf8), loopCount: 4) == HomeLoop.index(ofUser: "dave".utf8, loopCount: 4))
    }

    @Test func oneLoopOrNoneIsLoopZero() {
        #expect(HomeLoop.index(ofUser: "alice".utf8, loopCount: 1) == 0)
        #expect(HomeLoop.index(ofUser: "alice".utf8, loopCount: 0) == 0)
    }

    @Test func fnv1aMatchesThePublishedFunction() {
        var hash = FNV1a()
        #expect(hash.value == 0xcbf2_9ce4_8422_2325)  // the offset basis: nothing added yet
        hash.add("alice".utf8)
        #expect(hash.value == 0x508b_2abb_65a0_3907)
        var split = FNV1a()
        split.add("ali".utf8)
        split.add(byte: UInt8(ascii: "c"))
        split.add("e".utf8)
        #expect(split.value == hash.value)
    }
}
