import Testing
@testable import IMAPProtocol
