//===----------------------------------------------------------------------===//
// Apus Reactor: failed system calls as values.
//===----------------------------------------------------------------------===//

import Glibc

/// A failed system call: the errno and the name of the call, never a trap.
///
/// The shims return `-errno`; ``IOError/check(_:_:)`` turns that convention into this error.
/// `EBADF` and `EFAULT` are the exception: they mean we passed a descriptor or pointer we do not
/// own, a bug in Apus rather than a fault of the peer or the system, so they stop the process.
public struct IOError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The errno value (`ECONNRESET`, `EADDRINUSE`, …).
    public var errno: Int32
    /// The call that failed, as a reader of the log would want it (`"accept4"`, `"bind 127.0.0.1:143"`).
    public var call: String

    public init(errno: Int32, call: String) {
        self.errno = errno
        self.call = call
    }

    public var description: String {
        "\(call): \(String(cString: strerror(errno))) (errno \(errno))"
    }

    /// Returns the non-negative result of a shim, or throws for `-errno`.
    @inlinable
    public static func check<T: SignedInteger>(_ result: T, _ call: @autoclosure () -> String) throws(IOError) -> T {
        if result >= 0 { return result }
        let code = Int32(truncatingIfNeeded: 0 - result)
        precondition(code != EBADF && code != EFAULT, "\(call()) failed with errno \(code): a bug in Apus")
        throw IOError(errno: code, call: call())
    }
}

/// A monotonic clock reading in nanoseconds: timers and idle timeouts never jump with the wall clock.
public struct Deadline: Comparable, Hashable, Sendable {
    public var nanoseconds: UInt64

    public init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }

    /// The current reading of CLOCK_MONOTONIC.
    public static func now() -> Deadline {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Deadline(nanoseconds: UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec))
    }

    public static func < (a: Deadline, b: Deadline) -> Bool { a.nanoseconds < b.nanoseconds }

    /// This deadline moved later by `duration` (saturating: a huge timeout means "never").
    public func adding(_ duration: Duration) -> Deadline {
        let (seconds, attoseconds) = duration.components
        let nanos = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if seconds < 0 { return self }
        if nanos.overflow { return Deadline(nanoseconds: .max) }
        let total = UInt64(nanos.partialValue).addingReportingOverflow(UInt64(attoseconds / 1_000_000_000))
        let sum = nanoseconds.addingReportingOverflow(total.partialValue)
        return Deadline(nanoseconds: total.overflow || sum.overflow ? .max : sum.partialValue)
    }

    /// Milliseconds from `now` until this deadline, rounded up, 0 if past: epoll_wait's timeout.
    func milliseconds(after now: Deadline) -> Int32 {
        if nanoseconds <= now.nanoseconds { return 0 }
        let ms = (nanoseconds - now.nanoseconds + 999_999) / 1_000_000
        return ms > UInt64(Int32.max) ? Int32.max : Int32(ms)
    }
}
