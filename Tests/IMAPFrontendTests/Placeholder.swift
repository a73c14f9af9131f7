import Testing
@testable import IMAPFrontend
