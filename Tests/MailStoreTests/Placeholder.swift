import Testing
@testable import MailStore
