import Testing
@testable import IMAPBackend
