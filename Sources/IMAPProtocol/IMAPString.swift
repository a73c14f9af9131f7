// IMAPProtocol: IMAPString, a string argument as it sat on the wire (atom, quoted or literal).

/// A string argument (atom, quoted string or literal), viewed in place. A quoted string keeps its
/// backslash escapes in `raw` (nothing is copied); the unescaped content comes from ``copyBytes()``,
/// ``string`` or ``forEachByte(_:)``. Equality compares unescaped content.
///
/// Valid only until the caller advances its read buffer (see ``IMAPBytes``).
public struct IMAPString: Equatable, CustomStringConvertible {
    /// The bytes between the quotes (escapes still in place), of the literal, or of the atom.
    public var raw: IMAPBytes
    /// Whether `raw` contains backslash escapes to remove.
    public var hasEscapes: Bool

    public init(raw: IMAPBytes, hasEscapes: Bool = false) {
        self.raw = raw
        self.hasEscapes = hasEscapes
    }

    /// A string of static text (for tests, fixtures and encoders).
    public init(_ text: StaticString) { self.init(raw: IMAPBytes(text)) }

    /// The unescaped bytes when there were no escapes (the common case), without copying.
    public var unescapedView: IMAPBytes? { hasEscapes ? nil : raw }

    /// Calls `body` with each unescaped byte.
    @inlinable
    public func forEachByte(_ body: (UInt8) -> Void) {
        var index = 0
        while index < raw.count {
            var byte = raw[index]
            if hasEscapes && byte == UInt8(ascii: "\\") && index + 1 < raw.count {
                index += 1
                byte = raw[index]
            }
            body(byte)
            index += 1
        }
    }

    /// The unescaped length.
    public var count: Int {
        guard hasEscapes else { return raw.count }
        var count = 0
        forEachByte { _ in count += 1 }
        return count
    }

    /// Copies the unescaped bytes out.
    public func copyBytes() -> [UInt8] {
        guard hasEscapes else { return raw.copyBytes() }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(raw.count)
        forEachByte { bytes.append($0) }
        return bytes
    }

    /// The unescaped content decoded as UTF-8; copies.
    public var string: String {
        guard hasEscapes else { return raw.string }
        return String(decoding: copyBytes(), as: UTF8.self)
    }

    public var description: String { string }

    public static func == (lhs: IMAPString, rhs: IMAPString) -> Bool {
        if !lhs.hasEscapes && !rhs.hasEscapes { return lhs.raw == rhs.raw }
        return lhs.copyBytes() == rhs.copyBytes()
    }

    /// Whether the unescaped content equals `text` ignoring ASCII case.
    public func equalsCaseInsensitive(_ text: StaticString) -> Bool {
        if !hasEscapes { return raw.equalsCaseInsensitive(text) }
        return copyBytes().withUnsafeBytes { IMAPBytes($0).equalsCaseInsensitive(text) }
    }
}
