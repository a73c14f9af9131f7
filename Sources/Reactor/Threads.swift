//===----------------------------------------------------------------------===//
// Apus Reactor: plain POSIX threads (no Foundation).
//===----------------------------------------------------------------------===//

import CShims
import Glibc

/// A started POSIX thread that can be joined.
struct JoinableThread: Sendable {
    private let thread: pthread_t

    private final class Box {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }

    /// Starts `body` on a new thread named `name` (visible in top and perf, at most 15 bytes).
    init(name: String, _ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(Box {
            cshim_set_thread_name(name)
            body()
        }).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { argument in
            let box = Unmanaged<Box>.fromOpaque(argument!).takeRetainedValue()
            box.body()
            return nil
        }, box)
        // Thread creation fails only when the process is out of threads or memory, where a
        // server cannot go on.
        precondition(result == 0, "pthread_create failed: \(result)")
        self.thread = thread
    }

    func join() {
        pthread_join(thread, nil)
    }
}
