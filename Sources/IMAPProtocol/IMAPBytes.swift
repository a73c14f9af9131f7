// IMAPProtocol: IMAPBytes, the zero-copy view every parsed token is made of.

/// An unowned view of bytes inside the caller's read buffer (or inside static program text).
///
/// **Lifetime: a view is valid only until the caller advances, compacts or frees the buffer it points
/// into.** Parsed commands are made of these views so that parsing copies nothing; anything that must
/// outlive the read buffer (a tag held across a literal continuation, a mailbox name kept in session
/// state) must be copied out with ``copyBytes()`` or ``string``.
///
/// Two views are equal when their bytes are equal, wherever they live.
public struct IMAPBytes: Equatable, CustomStringConvertible {
    /// The first byte; `nil` only for an empty view.
    public let base: UnsafeRawPointer?
    /// How many bytes the view covers.
    public let count: Int

    /// A view of `count` bytes starting at `base`.
    @inlinable
    public init(base: UnsafeRawPointer?, count: Int) {
        self.base = base
        self.count = count
    }

    /// A view of the whole of `buffer`.
    @inlinable
    public init(_ buffer: UnsafeRawBufferPointer) {
        self.init(base: buffer.baseAddress, count: buffer.count)
    }

    /// A view of static program text; always valid.
    public init(_ text: StaticString) {
        precondition(text.hasPointerRepresentation, "IMAPBytes needs a StaticString with a pointer representation")
        self.init(base: UnsafeRawPointer(text.utf8Start), count: text.utf8CodeUnitCount)
    }

    /// The empty view.
    @inlinable
    public static var empty: IMAPBytes { IMAPBytes(base: nil, count: 0) }

    /// Whether the view covers no bytes.
    @inlinable
    public var isEmpty: Bool { count == 0 }

    /// The byte at `index` (0-based); the caller keeps `index` inside `0..<count`.
    @inlinable
    public subscript(index: Int) -> UInt8 {
        precondition(index >= 0 && index < count, "IMAPBytes index out of range")
        return base.unsafelyUnwrapped.load(fromByteOffset: index, as: UInt8.self)
    }

    /// The bytes as a raw buffer (valid as long as the view is).
    @inlinable
    public var buffer: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// A sub-view of `range` (relative offsets).
    @inlinable
    public func slice(_ range: Range<Int>) -> IMAPBytes {
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "IMAPBytes slice out of range")
        if range.isEmpty { return .empty }
        return IMAPBytes(base: base.unsafelyUnwrapped + range.lowerBound, count: range.count)
    }

    /// Copies the bytes out, for a caller that must keep them after the buffer moves.
    public func copyBytes() -> [UInt8] { Array(buffer) }

    /// The bytes decoded as UTF-8 (invalid sequences become U+FFFD); copies.
    public var string: String { String(decoding: buffer, as: UTF8.self) }

    public var description: String { string }

    @inlinable
    public static func == (lhs: IMAPBytes, rhs: IMAPBytes) -> Bool {
        guard lhs.count == rhs.count else { return false }
        if lhs.count == 0 || lhs.base == rhs.base { return true }
        return memoryEqual(lhs.base.unsafelyUnwrapped, rhs.base.unsafelyUnwrapped, lhs.count)
    }

    /// Whether the bytes equal `text` ignoring ASCII case (`text` is expected upper case).
    @inlinable
    public func equalsCaseInsensitive(_ text: StaticString) -> Bool {
        guard text.utf8CodeUnitCount == count else { return false }
        let other = text.utf8Start
        for index in 0..<count where IMAPByteClass.upper(self[index]) != other[index] {
            return false
        }
        return true
    }

    /// Whether the bytes equal `other` ignoring ASCII case.
    @inlinable
    public func equalsCaseInsensitive(_ other: IMAPBytes) -> Bool {
        guard other.count == count else { return false }
        for index in 0..<count where IMAPByteClass.upper(self[index]) != IMAPByteClass.upper(other[index]) {
            return false
        }
        return true
    }
}

/// Byte-wise comparison without Foundation or libc.
@usableFromInline
func memoryEqual(_ lhs: UnsafeRawPointer, _ rhs: UnsafeRawPointer, _ count: Int) -> Bool {
    var index = 0
    while index + 8 <= count {
        if lhs.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            != rhs.loadUnaligned(fromByteOffset: index, as: UInt64.self)
        {
            return false
        }
        index += 8
    }
    while index < count {
        if lhs.load(fromByteOffset: index, as: UInt8.self) != rhs.load(fromByteOffset: index, as: UInt8.self) {
            return false
        }
        index += 1
    }
    return true
}

/// Whether any of `count` bytes at `base` is NUL, 8 bytes at a time (a literal's check, on every
/// byte of every FETCH body a client reads whole).
func containsNUL(_ base: UnsafeRawPointer, _ count: Int) -> Bool {
    var index = 0
    while index + 8 <= count {
        if hasZeroByte(base.loadUnaligned(fromByteOffset: index, as: UInt64.self)) { return true }
        index += 8
    }
    while index < count {
        if base.load(fromByteOffset: index, as: UInt8.self) == 0 { return true }
        index += 1
    }
    return false
}

/// Whether any of the 8 bytes of `word` is zero (`word ^ 0x2222...` asks the same of `"`).
@inline(__always)
func hasZeroByte(_ word: UInt64) -> Bool {
    // Exactly the words with a zero byte keep a high bit here: the subtraction borrows through a
    // zero byte, and "& ~word" drops bytes that had their high bit set to begin with.
    (word &- 0x0101_0101_0101_0101) & ~word & 0x8080_8080_8080_8080 != 0
}
