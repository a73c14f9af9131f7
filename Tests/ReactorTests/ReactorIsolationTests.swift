//===----------------------------------------------------------------------===//
// Apus Reactor tests: the socket suite in a process of its own.
//===----------------------------------------------------------------------===//

import Glibc
import Testing

enum ReactorIsolation {
    static let variable = "APUS_REACTOR_ISOLATED"
    /// True in the child process that runs ReactorSocketTests alone.
    static var isIsolatedRun: Bool { getenv(variable).map { String(cString: $0) == "1" } ?? false }
}

@Suite struct ReactorIsolationTests {
    /// Runs ReactorSocketTests in a child process (this test binary again, that suite only), so
    /// its descriptor accounting sees no sockets of suites running in parallel here.
    @Test(.enabled(if: !ReactorIsolation.isIsolatedRun))
    func socketSuitePassesInAProcessOfItsOwn() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let outputPath = directory.path + "/output"
        // The child holds the write end of this pipe: it reads as closed when the child is gone,
        // which gives a bounded wait without polling.
        var exitPipe: [Int32] = [0, 0]
        try #require(pipe(&exitPipe) == 0)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        posix_spawn_file_actions_adddup2(&actions, exitPipe[1], 3)
        posix_spawn_file_actions_addclose(&actions, exitPipe[0])
        let arguments = ["ApusPackageTests", "--testing-library", "swift-testing", "--filter", "ReactorSocketTests"]
        var environment = ["\(ReactorIsolation.variable)=1", "PATH=/usr/bin:/bin"]
        if let ci = getenv("CI") { environment.append("CI=" + String(cString: ci)) }
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        var envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid = pid_t()
        let spawned = posix_spawn(&pid, "/proc/self/exe", &actions, nil, &argv, &envp)
        close(exitPipe[1])
        defer { close(exitPipe[0]) }
        try #require(spawned == 0, "cannot start the test binary again: \(spawned)")

        var poller = pollfd(fd: exitPipe[0], events: Int16(POLLIN), revents: 0)
        let exited = poll(&poller, 1, 15 * 60 * 1000) > 0
        if !exited { kill(pid, SIGKILL) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        let output = readText(outputPath)
        #expect(exited, "the socket suite did not finish within 15 minutes")
        #expect(status == 0, "the socket suite failed in its own process:\n\(output.suffix(6000))")
        #expect(output.contains("Suite ReactorSocketTests passed"), "\(output.suffix(2000))")
    }

    func readText(_ path: String) -> String {
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else { return "" }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = read(descriptor, &chunk, chunk.count)
            if count <= 0 { break }
            bytes += chunk[0..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
