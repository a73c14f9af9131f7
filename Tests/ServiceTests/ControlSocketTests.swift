// Service tests: the control socket's file (made owner-only, never replacing what is not a
// stale socket, removed at exit only while still its own).

import Glibc
import Testing
import TestSupport

@testable import Service

private func fileType(_ path: String) -> mode_t? {
    var status = stat()
    guard lstat(path, &status) == 0 else { return nil }
    return status.st_mode & S_IFMT
}

@Suite("Control socket")
struct ControlSocketTests {
    @Test func answersOwnerOnlyAndLeavesAReplacementAtExit() throws {
        let directory = TemporaryDirectory(prefix: "apus-control")
        defer { directory.remove() }
        let path = directory.path + "/imap4be.sock"
        let server = try ControlServer(path: path) { request in "you said \(request)" }
        var status = stat()
        #expect(stat(path, &status) == 0 && status.st_mode & 0o777 == 0o600)
        #expect(ControlServer.request("status", path: path) == "you said status")
        // A new instance's socket took the path: this one's exit must not remove it.
        #expect(unlink(path) == 0)
        let replacement = try ControlServer(path: path) { _ in "new" }
        server.remove()
        #expect(ControlServer.request("status", path: path) == "new")
        replacement.remove()
        #expect(fileType(path) == nil)
    }

    @Test func aFileAtThePathIsLeftAndRefused() throws {
        let directory = TemporaryDirectory(prefix: "apus-control")
        defer { directory.remove() }
        let path = directory.path + "/imap4be.sock"
        writeFile(path, "not a socket\n")
        #expect {
            _ = try ControlServer(path: path) { _ in "" }
        } throws: { error in
            "\(error)".contains("cannot bind control socket \(path): a file that is not a socket is there")
        }
        #expect(readFile(path) == "not a socket\n")
    }
}
