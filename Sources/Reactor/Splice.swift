//===----------------------------------------------------------------------===//
// Apus Reactor: moving input of one connection to another's output with splice(2).
//===----------------------------------------------------------------------===//

import CShims
import Glibc

/// A pipe that carries bytes from one socket to another inside the kernel: splice(2) moves them
/// socket to pipe and pipe to socket without copying them through user space (a relay's large
/// literals). Owned by the connection whose output it feeds, made when a splice into it starts
/// and closed once no splice runs and the pipe is empty: the kernel charges a pipe's whole size
/// to the user's pipe quota for as long as it exists, so idle sessions must not hold one (at the
/// default fs.pipe-user-pages-soft, 64 kept 1 MiB pipes would leave every later pipe tiny). That
/// costs four system calls per large literal, against two splices per mebibyte moved.
final class SplicePipe {
    let readEnd: Int32
    let writeEnd: Int32
    /// Bytes the pipe holds; the accounting never puts more in.
    let capacity: Int
    /// Asked of the kernel: a mebibyte moves in 2 system calls instead of 32 through the default
    /// 64 KiB pipe. Measured on a 50 MB FETCH through the front end (loaded machine, medians of
    /// 3 to 9 runs): 0.76 s of front-end CPU per GB copied through the buffer, 0.54 spliced
    /// through 64 KiB pipes, 0.56 through 256 KiB, 0.38 through 1 MiB. The pages are held only
    /// while bytes are in flight, but a client that stops reading mid-literal pins up to this
    /// much; the kernel's per-user pipe limit (fs.pipe-user-pages-soft) bounds the total for a
    /// service that does not run as root, and past it new pipes are small (see `capacity`).
    /// Pipes exist only while a splice runs or drains, so the limit counts those alone.
    static let preferredCapacity: Int32 = 1024 * 1024

    init?() {
        var ends: [Int32] = [0, 0]
        guard cshim_pipe(&ends) == 0 else { return nil }
        readEnd = ends[0]
        writeEnd = ends[1]
        // Refused (fs.pipe-max-size, or the user's pipe pages spent): the size the pipe has.
        let granted = cshim_pipe_set_size(writeEnd, SplicePipe.preferredCapacity)
        capacity = granted > 0 ? Int(granted) : 4096
    }

    deinit {
        Glibc.close(readEnd)
        Glibc.close(writeEnd)
    }
}

/// Bytes in a pipe queued as a connection's output (see ``Connection/spliceInput(count:to:)``).
struct PipeRegion {
    let pipe: SplicePipe
    var remaining: Int
}

extension Connection {
    /// Moves the next `count` bytes of input straight to `target`'s output, after what `target`
    /// has queued, with splice(2): they never reach user space or this connection's handler.
    ///
    /// For a relay that knows how long a stretch of bytes is (a literal's announced size) and
    /// needs none of them. Both connections must be plain (TLS needs the bytes in memory) and on
    /// this loop, and the handler must have consumed all input it was given. Returns false when
    /// that does not hold; the bytes then come through `connectionRead` as usual. If `target`
    /// closes first, the splice ends and the bytes not yet moved come through `connectionRead`;
    /// ``takeSplicedInputCount()`` says how many were moved.
    public func spliceInput(count: Int, to target: Connection) -> Bool {
        guard count > 0, state == .active, tls == nil, target.tls == nil, target !== self,
              target.loop === loop, target.acceptsOutput, target.pendingStartTLS == nil,
              spliceTarget == nil, pendingTransfer == nil else { return false }
        spliceTarget = target
        spliceRemaining = count
        target.incomingSplices += 1
        return true
    }

    /// Input bytes moved by splicing since the last call (the handler's own count of the stream,
    /// a framer in a literal, advances by them).
    public func takeSplicedInputCount() -> Int {
        let count = splicedInputCount
        splicedInputCount = 0
        return count
    }

    /// One splice from the socket into the target's pipe. True to go on reading (more to splice,
    /// or the splice ended and ordinary reads resume); false to stop for now.
    func spliceStep() -> Bool {
        guard let target = spliceTarget, target.acceptsOutput, target.loop === loop, target.tls == nil,
              inbound.readableBytes == 0, !redeliver, let pipe = target.pipeForSplicing() else {
            // The bytes not moved arrive through connectionRead from here on.
            endSplice()
            return true
        }
        let room = pipe.capacity - target.pipeQueued
        guard room > 0 else {
            target.waitingSpliceSource = self
            return false
        }
        let moved = cshim_splice(descriptor, pipe.writeEnd, min(room, spliceRemaining))
        if moved > 0 {
            lastInput = loop.now
            spliceRemaining -= moved
            splicedInputCount += moved
            options.counters?.read(moved)
            if spliceRemaining == 0 { endSplice() }
            target.queuePiped(pipe, moved)
            return true
        }
        if moved == 0 {
            endSplice()
            return true  // the ordinary read sees the end of stream
        }
        if moved == -Int(EAGAIN) {
            if target.pipeQueued > 0 {
                // The pipe's page slots are full before its byte count is (small socket buffers
                // fill a slot each): wait for the target to drain it. The socket may still hold
                // data, so `readable` stays set.
                target.waitingSpliceSource = self
            } else {
                readable = false
            }
            return false
        }
        finishClose(.ioError(IOError(errno: Int32(-moved), call: "splice")))
        return false
    }

    private func endSplice() {
        if let target = spliceTarget {
            if target.waitingSpliceSource === self { target.waitingSpliceSource = nil }
            target.incomingSplices -= 1
            target.closeIdlePipe()
        }
        spliceTarget = nil
        spliceRemaining = 0
    }

    /// Gives the pipe back once nothing splices into it and it is empty (see ``SplicePipe``).
    private func closeIdlePipe() {
        if incomingSplices == 0, pipeQueued == 0 { splicePipe = nil }
    }

    /// This connection's pipe for spliced output: the one in use, or a new one.
    func pipeForSplicing() -> SplicePipe? {
        if let splicePipe { return splicePipe }
        splicePipe = SplicePipe()
        return splicePipe
    }

    /// `count` bytes went into `pipe`: they are output, after everything queued before.
    func queuePiped(_ pipe: SplicePipe, _ count: Int) {
        pipeQueued += count
        if case .pipe(var region)? = tail.last, region.pipe === pipe {
            region.remaining += count
            tail[tail.count - 1] = .pipe(region)
        } else {
            tail.append(.pipe(PipeRegion(pipe: pipe, remaining: count)))
        }
        queued(count)
    }

    /// Pipe bytes were written to the socket: a source waiting for room may go on.
    func pipeDrained(_ count: Int) {
        pipeQueued -= count
        if pipeQueued == 0, let source = waitingSpliceSource {
            waitingSpliceSource = nil
            if source.state == .active { loop.markReady(source) }
        }
        closeIdlePipe()
    }

    /// Closing: a source waiting on our pipe must notice (its splice ends, its reads resume).
    func releaseSplicing() {
        if let source = waitingSpliceSource {
            waitingSpliceSource = nil
            if source.state == .active { loop.markReady(source) }
        }
        splicePipe = nil
        pipeQueued = 0
        endSplice()
    }
}
