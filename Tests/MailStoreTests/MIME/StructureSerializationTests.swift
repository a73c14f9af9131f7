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

    @Test("the message's own header kept in the blob round-trips, and a version 1 blob (none) still reads")
    func keptHeader() throws {
        for name in Corpus.names {
            let message = Corpus.message(name)
            var structure = MessageStructure(parsing: message)
            message.withUnsafeBytes { structure.keepHeader(of: $0) }
            let header = structure.parts[0].headerRange
            let kept = !header.isEmpty && header.count <= MessageStructure.cachedHeaderLimit
            #expect((structure.cachedBytes(of: header).map(Array.init) == Array(message[header])) == kept, "\(name)")
            #expect(structure.cachedBytes(of: structure.parts[0].bodyRange) == nil || header == structure.parts[0].bodyRange)
            var blob: [UInt8] = []
            structure.serialize(into: &blob)
            let decoded = try #require(MessageStructure(serialized: blob))
            #expect(decoded == structure)
            #expect((decoded.cachedBytes(of: header).map(Array.init) == Array(message[header])) == kept, "\(name)")

            // The same structure as version 1 wrote it: no header section at the end.
            var plain = MessageStructure(parsing: message)
            var version1: [UInt8] = []
            plain.serialize(into: &version1)
            #expect(version1.last == 0, "a NIL header is one zero byte")
            version1.removeLast()
            version1[3] = 1
            let old = try #require(MessageStructure(serialized: version1))
            plain.cachedHeader = nil
            #expect(old == plain && old.cachedBytes(of: header) == nil)
        }
    }

    @Test("a kept header that is not the message's header length reads as nil")
    func keptHeaderOfTheWrongLength() throws {
        let message = Corpus.message("01-simple-plain")
        var structure = MessageStructure(parsing: message)
        message.withUnsafeBytes { structure.keepHeader(of: $0) }
        let header = try #require(structure.cachedHeader)
        structure.cachedHeader = MIMEText(offset: header.offset, count: header.count - 1)
        var shorter: [UInt8] = []
        structure.serialize(into: &shorter)
        #expect(MessageStructure(serialized: shorter) == nil)
    }

    @Test("a header over the limit is not kept")
    func largeHeaderNotKept() {
        let big = "X-Filler: " + String(repeating: "a", count: MessageStructure.cachedHeaderLimit) + "\r\n"
        let message = Array(("Subject: big\r\n" + big + "\r\nbody\r\n").utf8)
        var structure = MessageStructure(parsing: message)
        message.withUnsafeBytes { structure.keepHeader(of: $0) }
        #expect(structure.cachedHeader == nil)
    }

    @Test("the envelope's subject read in place equals the built structure's, and a truncated blob gives nil")
    func subjectInPlace() throws {
        for name in Corpus.names {
            var structure = MessageStructure(parsing: Corpus.message(name))
            Corpus.message(name).withUnsafeBytes { structure.keepHeader(of: $0) }
            var blob: [UInt8] = []
            structure.serialize(into: &blob)
            // nil: damaged; .some(nil): no subject.
            func subject(_ bytes: [UInt8]) -> [UInt8]?? {
                bytes.withUnsafeBytes { blob in
                    MessageStructure.envelopeSubject(inSerialized: blob).map { $0.map { Array($0) } }
                }
            }
            let inPlace = try #require(subject(blob), "\(name)")
            #expect(inPlace == structure.envelope.subject.map { Array(structure.bytes($0)) }, "\(name)")
            for length in stride(from: 0, to: blob.count, by: max(1, blob.count / 64)) {
                // Cut after the envelope the subject is whole; before it, the blob reads as damaged.
                if let read = subject(Array(blob[0..<length])) { #expect(read == inPlace, "\(name) cut at \(length)") }
            }
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
