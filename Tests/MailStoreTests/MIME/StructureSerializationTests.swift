// StructureSerializationTests: the index blob round-trips and rejects damage without trapping.

import Testing

@testable import MailStore

@Suite("MessageStructure blob")
struct StructureSerializationTests {
    @Test("round trip over the whole corpus and a 10,000-deep message gives an equal structure")
    func roundTrip() throws {
        var messages = Corpus.names.map { Corpus.message($0) }
        messages.append(deeplyNestedMessage(depth: 10_000))
        for message in messages {
            let structure = MessageStructure(parsing: message)
            var blob: [UInt8] = []
            structure.serialize(into: &blob)
            let decoded = try #require(MessageStructure(serialized: blob))
            #expect(decoded == structure)
            #expect(blob.withUnsafeBytes { MessageStructure(serialized: $0) } == structure)
            #expect(decoded.debugIMAPDescription == structure.debugIMAPDescription)
        }
    }

    @Test("serialize appends to what the buffer already holds")
    func appends() throws {
        let structure = MessageStructure(parsing: Corpus.message("01-simple-plain"))
        var blob: [UInt8] = [1, 2, 3]
        structure.serialize(into: &blob)
        #expect(blob.prefix(3) == [1, 2, 3])
        #expect(MessageStructure(serialized: blob.dropFirst(3)) == structure)
    }

    @Test("every truncation of a blob reads as nil")
    func truncated() {
        let structure = MessageStructure(parsing: Corpus.message("03-rfc822-attachment"))
        var blob: [UInt8] = []
        structure.serialize(into: &blob)
        for length in 0..<blob.count {
            #expect(MessageStructure(serialized: blob[0..<length]) == nil, "length \(length)")
        }
    }

    @Test("trailing bytes, another version or a bad magic read as nil")
    func wrongFraming() {
        let structure = MessageStructure(parsing: Corpus.message("01-simple-plain"))
        var blob: [UInt8] = []
        structure.serialize(into: &blob)
        #expect(MessageStructure(serialized: blob + [0]) == nil)
        var version = blob
        version[3] = MessageStructure.serializationVersion &+ 1
        #expect(MessageStructure(serialized: version) == nil)
        var magic = blob
        magic[0] = UInt8(ascii: "X")
        #expect(MessageStructure(serialized: magic) == nil)
    }

    @Test("every single-byte corruption either reads as nil or as a structure that is safe to use")
    func corrupted() {
        let message = Corpus.message("02-nested-mixed-alternative-related")
        let structure = MessageStructure(parsing: message)
        var blob: [UInt8] = []
        structure.serialize(into: &blob)
        var rejected = 0
        for index in blob.indices {
            for flip: UInt8 in [0x01, 0x80, 0xFF] {
                var damaged = blob
                damaged[index] ^= flip
                guard let decoded = MessageStructure(serialized: damaged) else {
                    rejected += 1
                    continue
                }
                // Whatever survived validation must be usable without trapping.
                var rendered: [UInt8] = []
                decoded.writeIMAPDescription(into: &rendered)
                _ = message.withUnsafeBytes { decoded.content(of: MIMESection(part: [1, 2], text: .mime), in: $0) }
            }
        }
        #expect(rejected > blob.count)
    }
}
