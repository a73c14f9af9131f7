// Apus IMAPFrontend: the session IDs the front end gives the back end (`x-session-id`).

/// Session IDs: 16 hex digits, unique across a front end's sessions so one session's lines can be
/// found in the back end's logs. They are not secrets, so one loop's generator is seeded once from
/// the system's random source and then stepped (SplitMix64), rather than asking the kernel
/// (getrandom(2)) for every session accepted.
struct SessionIDGenerator {
    private var state: UInt64

    init(seed: UInt64 = UInt64.random(in: .min ... .max)) {
        state = seed
    }

    /// The next ID. SplitMix64 visits every 64-bit value once per period, so IDs from one
    /// generator never repeat; two loops' generators start at unrelated random points.
    mutating func next() -> String {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        mixed ^= mixed >> 31
        let hex = String(mixed, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
