import Testing
@testable import LoadGen
