//===----------------------------------------------------------------------===//
// Apus Reactor: ByteBuffer, a growable byte buffer with zero-copy slices.
//===----------------------------------------------------------------------===//

import Glibc

/// A contiguous, growable run of bytes with a reader and a writer index, whose slices share
/// storage instead of copying it.
///
/// ```
/// +-------------------+------------------+------------------+
/// | discardable bytes |  readable bytes  |  writable bytes  |
/// +-------------------+------------------+------------------+
/// 0      <=      readerIndex   <=   writerIndex    <=    capacity
/// ```
///
/// Naming follows swift-nio's `ByteBuffer`:
/// - `get…(at:)` and `set…(at:)` are random access and move no index (`get` returns `nil` out of range);
/// - `read…` and `write…` are sequential and move the reader or writer index;
/// - `peek…` reads at the reader index without consuming;
/// - `readSlice`, `getSlice` share storage with this buffer (zero-copy); writing to either
///   copies the storage first (copy-on-write), so a slice never changes under its holder;
/// - `withUnsafe…` hands out the raw bytes for the duration of a closure.
///
/// An empty buffer holds no storage at all, so an idle connection's buffers cost nothing.
public struct ByteBuffer: Sendable {
    /// Sendable because its bytes are only written while the storage is uniquely referenced
    /// (copy-on-write); shared storage is read-only.
    @usableFromInline
    final class Storage: @unchecked Sendable {
        @usableFromInline let bytes: UnsafeMutableRawPointer
        @usableFromInline let capacity: Int

        @usableFromInline
        init(capacity: Int) {
            self.capacity = capacity
            self.bytes = .allocate(byteCount: capacity, alignment: 16)
        }

        deinit { bytes.deallocate() }
    }

    @usableFromInline var storage: Storage?
    /// Where this buffer's view starts inside `storage` (non-zero for slices).
    @usableFromInline var base: Int
    @usableFromInline var _readerIndex: Int
    @usableFromInline var _writerIndex: Int

    /// An empty buffer that allocates on its first write.
    @inlinable
    public init() {
        storage = nil
        base = 0
        _readerIndex = 0
        _writerIndex = 0
    }

    /// An empty buffer with room for `capacity` bytes.
    public init(capacity: Int) {
        self.init()
        if capacity > 0 { storage = Storage(capacity: capacity) }
    }

    /// A buffer holding a copy of `bytes`.
    public init(bytes: some Sequence<UInt8>) {
        self.init()
        writeBytes(bytes)
    }

    /// The index of the next byte to read, relative to the start of this buffer.
    @inlinable public var readerIndex: Int { _readerIndex }
    /// The index of the next byte to write, relative to the start of this buffer.
    @inlinable public var writerIndex: Int { _writerIndex }
    /// How many bytes this buffer can hold before it must grow.
    @inlinable public var capacity: Int { (storage?.capacity ?? 0) - base }
    /// Bytes between the reader and the writer index.
    @inlinable public var readableBytes: Int { _writerIndex - _readerIndex }
    /// Bytes that can be written without growing.
    @inlinable public var writableBytes: Int { capacity - _writerIndex }
    @inlinable public var isEmpty: Bool { _writerIndex == _readerIndex }

    // MARK: - Capacity

    /// Makes room for at least `minimumWritableBytes` more bytes, growing by powers of two and
    /// copying the storage first if it is shared with a slice.
    @inlinable
    public mutating func reserveCapacity(minimumWritableBytes: Int) {
        // Checked without binding the storage, which would retain it on every write.
        if isKnownUniquelyReferenced(&storage), writableBytes >= minimumWritableBytes { return }
        growOrCopy(minimumWritableBytes: minimumWritableBytes)
    }

    @usableFromInline
    mutating func growOrCopy(minimumWritableBytes: Int) {
        let needed = _writerIndex - _readerIndex + minimumWritableBytes
        var newCapacity = max(64, capacity)
        while newCapacity < needed { newCapacity *= 2 }
        // Compacting on growth keeps the buffer from creeping when a reader consumes slowly.
        let fresh = Storage(capacity: newCapacity)
        if let storage, _writerIndex > _readerIndex {
            fresh.bytes.copyMemory(from: storage.bytes + base + _readerIndex, byteCount: _writerIndex - _readerIndex)
        }
        _writerIndex -= _readerIndex
        _readerIndex = 0
        base = 0
        storage = fresh
    }

    /// Moves the readable bytes to the front, reclaiming the discardable space without allocating
    /// (unless the storage is shared, in which case it is copied).
    public mutating func discardReadBytes() {
        guard _readerIndex > 0 else { return }
        guard let storage, isKnownUniquelyReferenced(&self.storage) else {
            growOrCopy(minimumWritableBytes: 0)
            return
        }
        let count = _writerIndex - _readerIndex
        if count > 0 { (storage.bytes + base).copyMemory(from: storage.bytes + base + _readerIndex, byteCount: count) }
        _readerIndex = 0
        _writerIndex = count
    }

    /// Empties the buffer, keeping its storage for reuse when this buffer is its only holder.
    @inlinable
    public mutating func clear() {
        _readerIndex = 0
        _writerIndex = 0
        if !isKnownUniquelyReferenced(&storage) { storage = nil; base = 0 }
    }

    // MARK: - Indices

    /// Consumes `count` readable bytes.
    @inlinable
    public mutating func moveReaderIndex(forwardBy count: Int) {
        precondition(count >= 0 && count <= readableBytes, "moveReaderIndex beyond the readable bytes")
        _readerIndex += count
        if _readerIndex == _writerIndex, isKnownUniquelyReferenced(&storage) {
            _readerIndex = 0
            _writerIndex = 0
        }
    }

    /// Marks `count` bytes written directly into the writable space (after `withUnsafeMutableWritableBytes`).
    @inlinable
    public mutating func moveWriterIndex(forwardBy count: Int) {
        precondition(count >= 0 && count <= writableBytes, "moveWriterIndex beyond the writable bytes")
        _writerIndex += count
    }

    // MARK: - Sequential writes

    /// Appends `bytes`, growing as needed. Returns the number of bytes written.
    @inlinable
    @discardableResult
    public mutating func writeBytes(_ bytes: UnsafeRawBufferPointer) -> Int {
        let count = bytes.count
        guard count > 0 else { return 0 }
        reserveCapacity(minimumWritableBytes: count)
        (storage!.bytes + base + _writerIndex).copyMemory(from: bytes.baseAddress!, byteCount: count)
        _writerIndex += count
        return count
    }

    /// Appends a sequence of bytes.
    @inlinable
    @discardableResult
    public mutating func writeBytes(_ bytes: some Sequence<UInt8>) -> Int {
        if let written = bytes.withContiguousStorageIfAvailable({ writeBytes(UnsafeRawBufferPointer($0)) }) {
            return written
        }
        var count = 0
        for byte in bytes {
            writeInteger(byte)
            count += 1
        }
        return count
    }

    /// Appends the UTF-8 bytes of `string`.
    @inlinable
    @discardableResult
    public mutating func writeString(_ string: String) -> Int {
        var string = string
        return string.withUTF8 { writeBytes(UnsafeRawBufferPointer($0)) }
    }

    /// Appends the readable bytes of another buffer.
    @inlinable
    @discardableResult
    public mutating func writeBuffer(_ other: ByteBuffer) -> Int {
        other.withUnsafeReadableBytes { writeBytes($0) }
    }

    /// Appends one byte.
    @inlinable
    public mutating func writeInteger(_ byte: UInt8) {
        reserveCapacity(minimumWritableBytes: 1)
        (storage!.bytes + base + _writerIndex).storeBytes(of: byte, as: UInt8.self)
        _writerIndex += 1
    }

    // MARK: - Sequential reads

    /// Consumes and returns the next byte, or nil when none is readable.
    @inlinable
    public mutating func readInteger() -> UInt8? {
        guard let byte = getInteger(at: _readerIndex) else { return nil }
        _readerIndex += 1
        return byte
    }

    /// Consumes `length` bytes and returns them as a slice sharing this buffer's storage.
    @inlinable
    public mutating func readSlice(length: Int) -> ByteBuffer? {
        guard let slice = getSlice(at: _readerIndex, length: length) else { return nil }
        _readerIndex += length
        return slice
    }

    /// Consumes `length` bytes and returns a copy of them.
    public mutating func readBytes(length: Int) -> [UInt8]? {
        guard let bytes = getBytes(at: _readerIndex, length: length) else { return nil }
        _readerIndex += length
        return bytes
    }

    // MARK: - Peek and random access

    /// The next readable byte, not consumed.
    @inlinable
    public func peekInteger() -> UInt8? { getInteger(at: _readerIndex) }

    /// The byte at `index` if it lies within the readable bytes.
    @inlinable
    public func getInteger(at index: Int) -> UInt8? {
        guard index >= _readerIndex, index < _writerIndex, let storage else { return nil }
        return (storage.bytes + base + index).load(as: UInt8.self)
    }

    /// A slice of `length` bytes at `index`, sharing storage (no copy), if they are readable.
    @inlinable
    public func getSlice(at index: Int, length: Int) -> ByteBuffer? {
        guard length >= 0, index >= _readerIndex, index <= _writerIndex - length else { return nil }
        var slice = ByteBuffer()
        guard length > 0 else { return slice }
        slice.storage = storage
        slice.base = base + index
        slice._writerIndex = length
        return slice
    }

    /// A copy of `length` bytes at `index`, if they are readable.
    public func getBytes(at index: Int, length: Int) -> [UInt8]? {
        guard let slice = getSlice(at: index, length: length) else { return nil }
        return slice.withUnsafeReadableBytes { Array($0) }
    }

    /// Overwrites bytes at `index`, which must lie within the written bytes. Returns false
    /// (changing nothing) when they do not.
    @discardableResult
    public mutating func setBytes(_ bytes: UnsafeRawBufferPointer, at index: Int) -> Bool {
        guard index >= 0, bytes.count <= _writerIndex - index else { return false }
        guard bytes.count > 0 else { return true }
        if !isKnownUniquelyReferenced(&storage) {
            let (reader, writer) = (_readerIndex, _writerIndex)
            _readerIndex = 0
            growOrCopy(minimumWritableBytes: 0)
            (_readerIndex, _writerIndex) = (reader, writer)
        }
        (storage!.bytes + base + index).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        return true
    }

    // MARK: - Unsafe access

    /// Calls `body` with the readable bytes (valid only inside the closure).
    @inlinable
    public func withUnsafeReadableBytes<T, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> T) throws(E) -> T {
        guard let storage else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        return try body(UnsafeRawBufferPointer(start: storage.bytes + base + _readerIndex, count: readableBytes))
    }

    /// Makes at least `minimumWritableBytes` of room and calls `body` with the writable bytes;
    /// `body` returns how many it wrote, which moves the writer index.
    @inlinable
    @discardableResult
    public mutating func withUnsafeMutableWritableBytes<E: Error>(
        minimumWritableBytes: Int, _ body: (UnsafeMutableRawBufferPointer) throws(E) -> Int
    ) throws(E) -> Int {
        reserveCapacity(minimumWritableBytes: minimumWritableBytes)
        let written = try body(UnsafeMutableRawBufferPointer(start: storage!.bytes + base + _writerIndex, count: writableBytes))
        moveWriterIndex(forwardBy: written)
        return written
    }
}

extension ByteBuffer: Equatable {
    /// Two buffers are equal when their readable bytes are.
    public static func == (a: ByteBuffer, b: ByteBuffer) -> Bool {
        a.withUnsafeReadableBytes { x in
            b.withUnsafeReadableBytes { y in
                x.count == y.count && (x.count == 0 || memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0)
            }
        }
    }
}

extension ByteBuffer: CustomStringConvertible {
    /// The readable bytes, printable ASCII as is and the rest escaped (for logs and test failures).
    public var description: String {
        withUnsafeReadableBytes { bytes in
            var text = ""
            for byte in bytes.prefix(512) {
                switch byte {
                case 0x0D: text += "\\r"
                case 0x0A: text += "\\n"
                case 0x20...0x7E: text.unicodeScalars.append(Unicode.Scalar(byte))
                default: text += "\\x" + String(byte, radix: 16)
                }
            }
            return bytes.count > 512 ? text + "…(\(bytes.count) bytes)" : text
        }
    }
}
