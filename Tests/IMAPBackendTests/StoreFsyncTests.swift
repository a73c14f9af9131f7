// IMAPBackendTests: the back end opens its store with the configured fsync policy ([store] fsync).

import MailStore
import Telemetry
import Testing
import TestSupport
@testable import IMAPBackend

@Suite struct StoreFsyncTests {
    @Test(arguments: [FsyncPolicy?.none, .optimized, .always])
    func theStoreFsyncsAsConfigured(policy: FsyncPolicy?) throws {
        let accounts = try TestAccounts()
        var configuration = accounts.configuration()
        if let policy { configuration.storeFsync = policy }
        let server = try BackendServer(configuration: configuration,
                                       logger: Logger(sink: LogSink(minimumLevel: .error), service: "imap4be"),
                                       metrics: MetricsRegistry())
        // Unset, it is Dovecot's default: optimized.
        #expect(server.store.configuration.fsyncPolicy == policy ?? .optimized)
    }
}
