// ReactorTests: splicing one connection's input into another's output (the relay's large literals).

import Glibc
import Testing

@testable import Reactor

/// Relays a socket pair's bytes to another connection: after the byte `S` it asks to splice the
/// next `count` bytes (and says `A` back), everything else it copies with `write`. It records how
/// many bytes took each way.
private final class SplicingRelay: ConnectionHandler {
    struct Counts: Sendable {
        var spliced = 0
        var copied = 0
        var refused = false
    }

    let target: Connection
    let count: Int
    let counts: Shared<Counts>
    let done: Countdown
    private var asked = false

    init(target: Connection, count: Int, counts: Shared<Counts>, done: Countdown) {
        self.target = target
        self.count = count
        self.counts = counts
        self.done = done
    }

    func connectionRead(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int {
        let spliced = connection.takeSplicedInputCount()
        counts.update { $0.spliced += spliced }
        if !asked {
            asked = true
            let accepted = connection.spliceInput(count: count, to: target)
            counts.update { $0.refused = !accepted }
            connection.write("A")
            return 1
        }
        counts.update { $0.copied += bytes.count }
        target.write(bytes)
        return bytes.count
    }

    func connectionClosed(_ connection: Connection, reason: CloseReason) {
        let spliced = connection.takeSplicedInputCount()
        counts.update { $0.spliced += spliced }
        done.signal()
    }
}

/// The target side: keeps the connection open, reads nothing.
private final class Sink: ConnectionHandler {
    func connectionRead(_ connection: Connection, _ bytes: UnsafeRawBufferPointer) -> Int { bytes.count }
}

/// Waits (bounded) for `events` on `descriptor`.
private func ready(_ descriptor: Int32, _ events: Int16, milliseconds: Int32 = 10_000) -> Int16 {
    var poller = pollfd(fd: descriptor, events: events, revents: 0)
    return poll(&poller, 1, milliseconds) > 0 ? poller.revents : 0
}

/// Writes `bytes` to `writer` while reading from `reader` until `expecting` bytes came (or the
/// reader closed, or 10 s passed with neither side moving); returns what was read. Past `limit`
/// bytes read, `atLimit` runs once and reading stops.
private func pump(_ bytes: [UInt8], into writer: Int32, from reader: Int32, expecting: Int,
                  stopReadingAfter limit: Int = .max, atLimit: () -> Void = {}) -> [UInt8] {
    var received: [UInt8] = []
    var offset = 0
    var chunk = [UInt8](repeating: 0, count: 65536)
    var readerOpen = true
    while offset < bytes.count || (readerOpen && received.count < min(expecting, limit)) {
        var pollers = [pollfd(fd: writer, events: offset < bytes.count ? Int16(POLLOUT) : 0, revents: 0),
                       pollfd(fd: reader, events: readerOpen && received.count < limit ? Int16(POLLIN) : 0, revents: 0)]
        guard poll(&pollers, 2, 10_000) > 0 else { break }
        if pollers[1].revents != 0 {
            let n = recv(reader, &chunk, chunk.count, Int32(MSG_DONTWAIT))
            if n > 0 { received += chunk[0..<n] } else if n == 0 { readerOpen = false }
            if received.count >= limit, readerOpen {
                readerOpen = false
                atLimit()
            }
        }
        if pollers[0].revents & Int16(POLLOUT) != 0 {
            let n = bytes[offset...].withUnsafeBytes {
                send(writer, $0.baseAddress, min($0.count, 65536), Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            }
            if n > 0 { offset += n }
        }
    }
    return received
}

@Suite("Splicing input to another connection")
struct SpliceTests {
    /// A loop with two socket pairs: the relay on one, the sink on the other, the relay already
    /// asked to splice `count` bytes. The test writes to `source` and reads from `target`.
    private final class Rig {
        let group: EventLoopGroup
        let counts = Shared(SplicingRelay.Counts())
        let done = Countdown(1)
        let source: Int32
        let target: Int32

        init(count: Int) throws {
            group = try EventLoopGroup(loopCount: 1, workerCount: 1)
            let sourcePair = socketPair()
            let targetPair = socketPair()
            let (counts, done) = (counts, done)
            group.loops[0].execute { loop in
                guard let out = loop.adopt(descriptor: targetPair.local, peer: SocketAddress(host: "target", port: 1),
                                           handler: Sink()) else { return }
                _ = loop.adopt(descriptor: sourcePair.local, peer: SocketAddress(host: "source", port: 1),
                               handler: SplicingRelay(target: out, count: count, counts: counts, done: done))
            }
            source = sourcePair.peer
            target = targetPair.peer
        }

        /// Sends `S` and waits for the relay's `A`: from then on its input is spliced.
        func askForSplice() -> Bool {
            _ = "S".withCString { send(source, $0, 1, Int32(MSG_NOSIGNAL)) }
            var ack: UInt8 = 0
            return ready(source, Int16(POLLIN)) != 0 && recv(source, &ack, 1, 0) == 1 && ack == UInt8(ascii: "A")
        }

        /// Closes the test's ends (the target's may be closed already) and stops the loop.
        func stop(targetClosed: Bool = false) {
            close(source)
            if !targetClosed { close(target) }
            group.shutdown(gracePeriod: .zero)
        }
    }

    @Test func splicedBytesArriveInOrderBetweenCopiedOnes() throws {
        let count = 4 << 20
        let rig = try Rig(count: count)
        defer { rig.stop() }
        #expect(rig.askForSplice())
        // Spliced, then copied: the trailer is read into the loop and written after the pipe's bytes.
        let payload = patternBytes(count: count, seed: 5) + Array("trailer".utf8)
        let received = pump(payload, into: rig.source, from: rig.target, expecting: payload.count)
        #expect(received.count == payload.count && received == payload)
        let counts = rig.counts.value
        #expect(counts.spliced == count && counts.copied == 7 && !counts.refused, "\(counts)")
    }

    /// The target goes away mid-splice: the splice ends, and every byte not yet moved reaches the
    /// source's handler through connectionRead; none is lost or counted twice.
    @Test func targetClosedMidSpliceHandsTheRestToTheHandler() throws {
        let count = 32 << 20
        let rig = try Rig(count: count)
        defer { rig.stop(targetClosed: true) }
        #expect(rig.askForSplice())
        // Read a little of the spliced stream, then close the target's end; the rest is still sent.
        let head = pump(patternBytes(count: count, seed: 9), into: rig.source, from: rig.target, expecting: count,
                        stopReadingAfter: 65536) { close(rig.target) }
        #expect(head.count >= 65536)
        shutdown(rig.source, Int32(SHUT_WR))
        #expect(rig.done.wait(timeout: .seconds(30)))
        let counts = rig.counts.value
        #expect(counts.spliced + counts.copied == count, "\(counts)")
        #expect(counts.spliced < count && counts.copied > 0, "\(counts)")
    }

    @Test func spliceIsRefusedIntoItselfAndForNoBytes() throws {
        let group = try EventLoopGroup(loopCount: 1, workerCount: 1)
        defer { group.shutdown(gracePeriod: .zero) }
        let refusals = Shared<[Bool]>([])
        let done = Countdown(1)
        group.loops[0].execute { loop in
            let pair = socketPair()
            defer { close(pair.peer) }
            guard let connection = loop.adopt(descriptor: pair.local, peer: SocketAddress(host: "a", port: 1),
                                              handler: Sink()) else { return }
            refusals.update {
                $0.append(connection.spliceInput(count: 10, to: connection))
                $0.append(connection.spliceInput(count: 0, to: connection))
            }
            connection.close(.immediately)
            done.signal()
        }
        #expect(done.wait())
        #expect(refusals.value == [false, false])
    }
}
