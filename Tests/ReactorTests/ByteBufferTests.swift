//===----------------------------------------------------------------------===//
// Apus Reactor tests: ByteBuffer.
//===----------------------------------------------------------------------===//

import Testing
@testable import Reactor

@Suite struct ByteBufferTests {
    /// Every test runs on a slice at a non-zero offset too, so nothing assumes index 0.
    static func buffers() -> [ByteBuffer] {
        var big = ByteBuffer()
        big.writeBytes(Array(repeating: UInt8(ascii: "z"), count: 1024))
        var slice = big.getSlice(at: 256, length: 512)!
        slice.moveReaderIndex(forwardBy: slice.readableBytes)
        return [ByteBuffer(), slice]
    }

    @Test(arguments: buffers())
    func writeThenReadReturnsTheSameBytesInOrder(start: ByteBuffer) {
        var buffer = start
        buffer.writeString("a1 NOOP\r\n")
        buffer.writeBytes([0, 255])
        #expect(buffer.readableBytes == 11)
        #expect(buffer.readBytes(length: 9) == Array("a1 NOOP\r\n".utf8))
        #expect(buffer.readInteger() == 0)
        #expect(buffer.peekInteger() == 255)
        #expect(buffer.readInteger() == 255)
        #expect(buffer.readInteger() == nil)
        #expect(buffer.readBytes(length: 1) == nil)
    }

    @Test(arguments: buffers())
    func getSliceSharesStorageUntilEitherSideWrites(start: ByteBuffer) {
        var buffer = start
        buffer.writeString("hello world")
        let slice = buffer.getSlice(at: buffer.readerIndex + 6, length: 5)!
        let shared = slice.withUnsafeReadableBytes { s in buffer.withUnsafeReadableBytes { b in s.baseAddress == b.baseAddress! + 6 } }
        #expect(shared, "a slice is a view into the same bytes, not a copy")
        #expect(slice == ByteBuffer(bytes: Array("world".utf8)))
        _ = [UInt8(ascii: "W")].withUnsafeBytes { buffer.setBytes($0, at: buffer.readerIndex + 6) }
        #expect(slice == ByteBuffer(bytes: Array("world".utf8)), "writing to the parent must not change the slice")
        #expect(buffer.getBytes(at: buffer.readerIndex + 6, length: 5) == Array("World".utf8))
    }

    @Test(arguments: buffers())
    func outOfRangeAccessReturnsNilRatherThanTrapping(start: ByteBuffer) {
        var buffer = start
        buffer.writeString("abc")
        #expect(buffer.getSlice(at: buffer.readerIndex + 2, length: 2) == nil)
        #expect(buffer.getSlice(at: buffer.readerIndex - 1, length: 1) == nil)
        #expect(buffer.getInteger(at: buffer.writerIndex) == nil)
        #expect(buffer.getSlice(at: buffer.readerIndex, length: -1) == nil)
        let stored = [UInt8]("xy".utf8).withUnsafeBytes { buffer.setBytes($0, at: buffer.writerIndex - 1) }
        #expect(!stored)
    }

    @Test func discardReadBytesReclaimsSpaceWithoutLosingUnreadBytes() {
        var buffer = ByteBuffer(capacity: 64)
        buffer.writeBytes(Array(0..<64))
        _ = buffer.readBytes(length: 60)
        let capacity = buffer.capacity
        buffer.discardReadBytes()
        #expect(buffer.readerIndex == 0)
        #expect(buffer.capacity == capacity, "compaction in place, no new storage")
        #expect(buffer.readBytes(length: 4) == [60, 61, 62, 63])
    }

    @Test func growingKeepsContentAndWritableBytesIsHonoured() {
        var buffer = ByteBuffer()
        #expect(buffer.capacity == 0, "an empty buffer allocates nothing")
        for round in 0..<1000 { buffer.writeInteger(UInt8(truncatingIfNeeded: round)) }
        #expect(buffer.readableBytes == 1000)
        #expect(buffer.getInteger(at: 999) == UInt8(truncatingIfNeeded: 999))
        let written = buffer.withUnsafeMutableWritableBytes(minimumWritableBytes: 5000) { raw in
            #expect(raw.count >= 5000)
            raw[0] = 7
            return 1
        }
        #expect(written == 1)
        #expect(buffer.getInteger(at: 1000) == 7)
    }

    @Test func readSliceConsumesAndSliceIndicesStartAtZero() {
        var buffer = ByteBuffer(bytes: Array("tag FETCH 1:* FLAGS\r\n".utf8))
        var tag = buffer.readSlice(length: 3)!
        #expect(tag.readerIndex == 0 && tag.readableBytes == 3)
        #expect(tag.readBytes(length: 3) == Array("tag".utf8))
        #expect(buffer.readerIndex == 3)
        #expect(buffer.readSlice(length: 100) == nil)
        #expect(buffer.readerIndex == 3, "a failed read consumes nothing")
    }

    @Test func clearKeepsUniqueStorageButDropsSharedStorage() {
        var buffer = ByteBuffer(bytes: Array(repeating: 1, count: 100))
        let capacity = buffer.capacity
        buffer.clear()
        #expect(buffer.capacity == capacity && buffer.isEmpty)
        buffer.writeBytes([1, 2, 3])
        let slice = buffer.getSlice(at: 0, length: 3)!
        buffer.clear()
        buffer.writeBytes([9, 9, 9])
        #expect(slice.getBytes(at: 0, length: 3) == [1, 2, 3], "clearing must not hand a slice's bytes to new writes")
    }
}

@Suite struct TimerHeapTests {
    @Test func popsInDeadlineOrderAndTiesInSchedulingOrder() {
        var heap = TimerHeap()
        let deadlines: [UInt64] = [50, 10, 40, 10, 30, 20, 60, 0]
        for (index, deadline) in deadlines.enumerated() {
            heap.insert(Deadline(nanoseconds: deadline), .connection(slot: UInt32(index), generation: 0))
        }
        var order: [UInt32] = []
        while case .connection(let slot, _)? = heap.popDue(now: Deadline(nanoseconds: 100)) { order.append(slot) }
        #expect(order == [7, 1, 3, 5, 4, 2, 0, 6])
    }

    @Test func nothingIsDueBeforeItsDeadline() {
        var heap = TimerHeap()
        heap.insert(Deadline(nanoseconds: 1000), .connection(slot: 1, generation: 0))
        #expect(heap.popDue(now: Deadline(nanoseconds: 999)) == nil)
        #expect(heap.nextDeadline == Deadline(nanoseconds: 1000))
        #expect(heap.popDue(now: Deadline(nanoseconds: 1000)) != nil)
        #expect(heap.count == 0)
    }

    @Test func deadlineArithmeticSaturatesInsteadOfOverflowing() {
        let start = Deadline(nanoseconds: .max - 10)
        #expect(start.adding(.seconds(1)) == Deadline(nanoseconds: .max))
        #expect(Deadline(nanoseconds: 0).adding(.milliseconds(1500)) == Deadline(nanoseconds: 1_500_000_000))
        #expect(Deadline(nanoseconds: 5_000_000).milliseconds(after: Deadline(nanoseconds: 4_000_001)) == 1)
        #expect(Deadline(nanoseconds: 1).milliseconds(after: Deadline(nanoseconds: 2)) == 0)
    }
}
