//===----------------------------------------------------------------------===//
// Apus Reactor: the loop a key (a user name) is pinned to, the same in every process.
//===----------------------------------------------------------------------===//

/// 64-bit FNV-1a over bytes: stable across processes, runs and builds, unlike `Hasher`, whose seed
/// changes per process. Anything two processes must agree on is hashed with it.
public struct FNV1a {
    /// The hash of the bytes added so far.
    public var value: UInt64 { state }
    @usableFromInline var state: UInt64 = 0xcbf2_9ce4_8422_2325

    public init() {}

    /// Adds `bytes` to the hash.
    @inlinable
    public mutating func add<Bytes: Sequence>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        var hash = state
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        state = hash
    }

    /// Adds one byte (a separator between two keys, say).
    @inlinable
    public mutating func add(byte: UInt8) { state = (state ^ UInt64(byte)) &* 0x100_0000_01b3 }
}

/// The event loop a user's back-end sessions live on (DESIGN.md, Threads and ownership).
///
/// One function for both processes: the back end moves a session here after login, and the front
/// end computes the same index to pick a pooled hop connection that already sits on it (so the
/// back end's move, with its two `epoll_ctl`s and cross-thread hand-off, is skipped). Changing the
/// function changes where every user lives; front end and back end must then be upgraded together.
public enum HomeLoop {
    /// The loop index, in `0..<loopCount`, of the user with name `user` (the SASL authentication
    /// identity's bytes as the client sent them); 0 when `loopCount` is below 1.
    @inlinable
    public static func index<Bytes: Sequence>(ofUser user: Bytes, loopCount: Int) -> Int where Bytes.Element == UInt8 {
        guard loopCount > 1 else { return 0 }
        var hash = FNV1a()
        hash.add(user)
        return Int(hash.value % UInt64(loopCount))
    }
}
