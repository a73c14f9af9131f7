// ReactorTests: the worker pool's lanes have their own threads, so a compute job runs while every
// storage worker is blocked, and shutdown still finishes what each lane has queued.

import Glibc
import Synchronization
import Testing
@testable import Reactor

@Suite struct WorkerPoolTests {
    @Test func computeJobsRunWhileStorageWorkersAreBlocked() {
        let pool = WorkerPool(threadCount: 2, computeThreadCount: 1, name: "lanetest")
        let release = CountingSemaphore()
        let blocked = Atomic<Int>(0)
        let storageDone = Atomic<Int>(0)
        // Two to hold both storage workers, one more queued behind them.
        for _ in 0..<3 {
            pool.submit(on: .storage) {
                blocked.wrappingAdd(1, ordering: .sequentiallyConsistent)
                release.wait()
                storageDone.wrappingAdd(1, ordering: .sequentiallyConsistent)
            }
        }
        // The compute job writes a byte to a pipe; the test waits for it with a deadline.
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        defer { close(ends[0]); close(ends[1]) }
        let writeEnd = ends[1]
        pool.submit(on: .compute) {
            var byte: UInt8 = 1
            _ = write(writeEnd, &byte, 1)
        }
        var ready = pollfd(fd: ends[0], events: Int16(POLLIN), revents: 0)
        #expect(poll(&ready, 1, 10_000) == 1, "the compute job queued behind the blocked storage lane")
        #expect(storageDone.load(ordering: .sequentiallyConsistent) == 0, "the storage workers were still held")
        for _ in 0..<3 { release.signal() }
        pool.shutdown()
        #expect(storageDone.load(ordering: .sequentiallyConsistent) == 3, "shutdown ran the queued storage job")
        #expect(blocked.load(ordering: .sequentiallyConsistent) == 3)
    }
}
