// IMAPFrontend tests: a self-signed certificate per test, in its own temporary directory.

import Glibc
import Reactor

/// A fresh certificate and key under a new temporary directory; `remove()` deletes both.
struct TestCertificates {
    let directory: String
    var certificatePath: String { directory + "/cert.pem" }
    var keyPath: String { directory + "/key.pem" }
    let serverHolder: TLSContextHolder

    init() throws {
        var template = Array("/tmp/apus-fe-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw TestFailure("mkdtemp failed")
        }
        directory = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        try SelfSignedCertificate.make(certificatePath: directory + "/cert.pem", keyPath: directory + "/key.pem")
        serverHolder = TLSContextHolder(
            try TLSContext.server(
                certificateChain: directory + "/cert.pem",
                privateKey: directory + "/key.pem"))
    }

    func clientContext() throws -> TLSContext { try TLSContext.client(verify: true, caFile: certificatePath) }

    func remove() {
        unlink(certificatePath)
        unlink(keyPath)
        rmdir(directory)
    }
}
