// IMAPProtocol: IMAPOutputBuffer, where every encoder writes.

/// Bytes ready for the socket. Encoders append to it; the reactor writes `bytes` and then calls
/// ``clear()``, which keeps the capacity, so a warm buffer encodes without allocating.
public struct IMAPOutputBuffer: Sendable {
    /// The encoded bytes, in wire order.
    public var bytes: [UInt8]

    /// An empty buffer with room for `capacity` bytes.
    public init(capacity: Int = 4096) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// Forgets the contents and keeps the storage.
    public mutating func clear() { bytes.removeAll(keepingCapacity: true) }

    /// How many bytes are waiting.
    public var count: Int { bytes.count }

    /// Appends one byte.
    @inlinable
    public mutating func write(byte: UInt8) { bytes.append(byte) }

    /// Appends static text.
    @inlinable
    public mutating func write(_ text: StaticString) {
        bytes.append(contentsOf: UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// Appends the bytes of a view.
    @inlinable
    public mutating func write(bytes view: IMAPBytes) {
        if view.count > 0 { bytes.append(contentsOf: view.buffer) }
    }

    /// Appends raw bytes.
    @inlinable
    public mutating func write<Bytes: Sequence>(contentsOf other: Bytes) where Bytes.Element == UInt8 {
        bytes.append(contentsOf: other)
    }

    /// Appends the decimal form of `value` without building a String.
    public mutating func write(number value: UInt64) {
        if value < 10 {
            bytes.append(UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: value))
            return
        }
        var digits: (UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0)  // room for 20 digits
        var length = 0
        withUnsafeMutableBytes(of: &digits) { scratch in
            var rest = value
            while rest > 0 {
                scratch[19 - length] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: rest % 10)
                rest /= 10
                length += 1
            }
            bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: scratch[(20 - length)..<20]))
        }
    }

    /// Appends the decimal form of a non-negative `value`.
    @inlinable
    public mutating func write(number value: Int) { write(number: UInt64(clamping: value)) }

    /// Appends the decimal form of `value`.
    @inlinable
    public mutating func write(number value: UInt32) { write(number: UInt64(value)) }

    // string = quoted / literal;  literal = "{" number64 "}" CRLF *CHAR8
    /// Appends `value` as an IMAP string: quoted when every byte may be quoted, a literal otherwise
    /// (CR, LF, NUL or a line longer than is comfortable).
    public mutating func write(string value: UnsafeRawBufferPointer) {
        if IMAPOutputBuffer.canBeQuoted(value) {
            bytes.append(UInt8(ascii: "\""))
            for byte in value {
                if IMAPByteClass.isQuotedSpecial(byte) { bytes.append(UInt8(ascii: "\\")) }
                bytes.append(byte)
            }
            bytes.append(UInt8(ascii: "\""))
        } else {
            write(byte: UInt8(ascii: "{"))
            write(number: value.count)
            write("}\r\n")
            bytes.append(contentsOf: value)
        }
    }

    /// Appends `value` as an IMAP string (quoted or literal).
    public mutating func write(string value: IMAPBytes) { write(string: value.buffer) }

    /// Appends `value` as an IMAP string (quoted or literal).
    public mutating func write(string value: [UInt8]) { value.withUnsafeBytes { write(string: $0) } }

    // astring = 1*ASTRING-CHAR / string
    /// Appends `value` as an atom when it is one, otherwise as a string.
    public mutating func write(astring value: IMAPBytes) {
        var isAtom = value.count > 0
        for index in 0..<value.count where !IMAPByteClass.isAStringChar(value[index]) {
            isAtom = false
            break
        }
        if isAtom { write(bytes: value) } else { write(string: value) }
    }

    // nstring = string / nil
    /// Appends `value` as a string, or `NIL` when absent.
    public mutating func write(nstring value: [UInt8]?) {
        if let value { write(string: value) } else { write("NIL") }
    }

    /// Quoting is used for short strings without CR, LF or NUL (RFC 3501 section 4.3: a quoted string
    /// cannot carry them); long strings go as literals so no line grows without bound.
    static func canBeQuoted(_ value: UnsafeRawBufferPointer) -> Bool {
        if value.count > 1024 { return false }
        for byte in value where byte == 0 || byte == 0x0D || byte == 0x0A {
            return false
        }
        return true
    }
}
