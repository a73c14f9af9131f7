// IMAPDescriptionSink: where the ENVELOPE and BODYSTRUCTURE writer puts its bytes.

/// A small scratch buffer in front of an output array. ENVELOPE and BODYSTRUCTURE are a hundred
/// or so small pieces per message (parentheses, spaces, NILs, short strings); appended to an
/// array one by one, each paid a uniqueness and capacity check and a generic copy. Here a piece
/// is a bounds check and a store, and the array takes the bytes a scratch-full at a time.
struct IMAPDescriptionSink: ByteAppending {
    /// Bytes of scratch a writer sets aside (on the stack): a typical message's ENVELOPE fits.
    static let scratchSize = 1024

    private var target: [UInt8]
    private let scratch: UnsafeMutableBufferPointer<UInt8>
    private var count = 0

    /// A sink that appends to `target` (moved in: pass an array no one else holds, or the first
    /// flush copies it) through `scratch`.
    init(appendingTo target: consuming [UInt8], scratch: UnsafeMutableBufferPointer<UInt8>) {
        self.target = target
        self.scratch = scratch
    }

    /// The target with every byte written.
    consuming func finish() -> [UInt8] {
        flush()
        return target
    }

    @inline(__always)
    mutating func append(_ byte: UInt8) {
        if count == scratch.count { flush() }
        scratch[count] = byte
        count &+= 1
    }

    /// Appends fixed text (NIL, punctuation) from its static bytes.
    @inline(__always)
    mutating func append(_ text: StaticString) {
        append(UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    mutating func append(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard let source = bytes.baseAddress else { return }
        if bytes.count > scratch.count - count {
            flush()
            if bytes.count > scratch.count {
                target.append(contentsOf: bytes)
                return
            }
        }
        (scratch.baseAddress! + count).update(from: source, count: bytes.count)
        count &+= bytes.count
    }

    private mutating func flush() {
        guard count > 0 else { return }
        target.append(contentsOf: UnsafeBufferPointer(rebasing: scratch[0..<count]))
        count = 0
    }
}
