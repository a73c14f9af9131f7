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
            let structure = keptHeaderStructure(of: message)
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
            plain.serialize(into: &version1, version: 1)
            let old = try #require(MessageStructure(serialized: version1))
            plain.cachedHeader = nil
            #expect(old == plain && old.cachedBytes(of: header) == nil)
        }
    }

    @Test("a kept header that is not the message's header length reads as nil")
    func keptHeaderOfTheWrongLength() throws {
        var structure = keptHeaderStructure(of: Corpus.message("01-simple-plain"))
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
            let structure = keptHeaderStructure(of: Corpus.message(name))
            var blob: [UInt8] = []
            structure.serialize(into: &blob)
            let inPlace = try #require(inPlaceSubject(blob), "\(name)")
            #expect(inPlace == structure.envelope.subject.map { Array(structure.bytes($0)) }, "\(name)")
            for length in stride(from: 0, to: blob.count, by: max(1, blob.count / 64)) {
                // Cut after the envelope the subject is whole; before it, the blob reads as damaged.
                if let read = inPlaceSubject(Array(blob[0..<length])) { #expect(read == inPlace, "\(name) cut at \(length)") }
            }
        }
    }

    @Test("version 3 records where the parts end; versions 1 and 2 still read, in full and in place")
    func olderVersions() throws {
        for name in Corpus.names {
            let structure = keptHeaderStructure(of: Corpus.message(name))
            var current: [UInt8] = []
            structure.serialize(into: &current)
            #expect(current[3] == 3 && MessageStructure.serializationVersion == 3)
            let subject = structure.envelope.subject.map { Array(structure.bytes($0)) }
            for version: UInt8 in [1, 2, 3] {
                var blob: [UInt8] = []
                structure.serialize(into: &blob, version: version)
                #expect(blob[3] == version)
                var expected = structure
                if version == 1 { expected.cachedHeader = nil }
                #expect(MessageStructure(serialized: blob) == expected, "\(name) version \(version)")
                #expect(inPlaceSubject(blob) == .some(subject), "\(name) version \(version)")
            }
            // Version 3 is version 2 with the parts' length after the pool.
            var version2: [UInt8] = []
            structure.serialize(into: &version2, version: 2)
            let partsLengthAt = endOfPool(current)
            var reader = 0
            let partsLength = try #require(varint(current, at: partsLengthAt, advancing: &reader))
            #expect(Array(current[..<partsLengthAt].dropFirst(4)) == Array(version2[..<partsLengthAt].dropFirst(4)))
            #expect(Array(current[(partsLengthAt + reader)...]) == Array(version2[partsLengthAt...]))
            #expect(partsLength > 0 && partsLength < current.count - partsLengthAt)
        }
    }

    @Test("a version 3 blob whose parts length is off, or that is cut anywhere, is refused by both reads")
    func partsLengthDamaged() throws {
        for name in ["01-simple-plain", "03-rfc822-attachment"] {
            let structure = MessageStructure(parsing: Corpus.message(name))
            var blob: [UInt8] = []
            structure.serialize(into: &blob)
            let at = endOfPool(blob)
            var width = 0
            let partsLength = try #require(varint(blob, at: at, advancing: &width))
            for wrong in [0, 1, partsLength - 1, partsLength + 1, partsLength + 2, 127] where wrong != partsLength {
                var damaged = blob
                damaged.replaceSubrange(at..<at + width, with: leb128(wrong))
                #expect(MessageStructure(serialized: damaged) == nil, "\(name) parts length \(wrong)")
            }
            // Pointing past the end of the blob: the in-place read refuses it too.
            var past = blob
            past.replaceSubrange(at..<at + width, with: leb128(blob.count))
            #expect(MessageStructure(serialized: past) == nil)
            #expect(inPlaceSubject(past) == nil)
            for length in 0..<blob.count {
                #expect(MessageStructure(serialized: blob[0..<length]) == nil, "\(name) cut at \(length)")
            }
            // Any single damaged byte: the in-place read may answer or refuse, but never traps.
            for index in blob.indices {
                for flip: UInt8 in [0x01, 0x80, 0xFF] {
                    var damaged = blob
                    damaged[index] ^= flip
                    _ = inPlaceSubject(damaged)
                }
            }
        }
    }

    @Test("decoding blob after blob into one structure gives each what a fresh decode gives, damage in between")
    func reusedStructure() throws {
        // Largest first, so every later blob is decoded over the leftovers of a bigger one: more
        // parts, envelopes and addresses, a longer pool; with and without a header copy.
        var blobs: [[UInt8]] = []
        for (index, message) in (Corpus.names.map { Corpus.message($0) } + [deeplyNestedMessage(depth: 40)]).enumerated() {
            var blob: [UInt8] = []
            if index.isMultiple(of: 2) {
                keptHeaderStructure(of: message).serialize(into: &blob)
            } else {
                MessageStructure(parsing: message).serialize(into: &blob, version: 1)
            }
            blobs.append(blob)
        }
        blobs.sort { $0.count > $1.count }
        var reused = MessageStructure()
        for (index, blob) in blobs.enumerated() {
            let fresh = try #require(MessageStructure(serialized: blob))
            #expect(blob.withUnsafeBytes { reused.read(serialized: $0) })
            #expect(reused == fresh, "blob \(index)")
            #expect(reused.debugIMAPDescription == fresh.debugIMAPDescription, "blob \(index)")
            // Damaged blobs (cut short, trailing bytes) refused half-way; the next blob reads whole.
            if index.isMultiple(of: 3) {
                #expect(!blob.dropLast(blob.count / 3).withUnsafeBytes { reused.read(serialized: $0) })
                #expect(!(blob + [0]).withUnsafeBytes { reused.read(serialized: $0) })
            }
        }
        #expect(blobs.count > 10)

        // The arrays keep the room of the largest message decoded: a smaller one needs no new storage.
        let largest = try #require(MessageStructure(serialized: blobs[0]))
        #expect(blobs[0].withUnsafeBytes { reused.read(serialized: $0) })
        #expect(blobs[blobs.count - 1].withUnsafeBytes { reused.read(serialized: $0) })
        #expect(reused.pool.capacity >= largest.pool.count && reused.parts.capacity >= largest.parts.count)
    }

    /// The message's structure with its header kept, as the store's analyzer makes it.
    private func keptHeaderStructure(of message: [UInt8]) -> MessageStructure {
        var structure = MessageStructure(parsing: message)
        message.withUnsafeBytes { structure.keepHeader(of: $0) }
        return structure
    }

    /// The envelope subject read in place: nil when refused, `.some(nil)` when there is no subject.
    private func inPlaceSubject(_ blob: [UInt8]) -> [UInt8]?? {
        blob.withUnsafeBytes { MessageStructure.envelopeSubject(inSerialized: $0).map { $0.map { Array($0) } } }
    }

    /// Where the pool of a blob ends (just past magic, version, messageSize, bareLineFeeds and the pool).
    private func endOfPool(_ blob: [UInt8]) -> Int {
        var position = 4
        var width = 0
        for _ in 0..<2 {
            _ = varint(blob, at: position, advancing: &width)
            position += width
        }
        let poolCount = varint(blob, at: position, advancing: &width) ?? 0
        return position + width + poolCount
    }

    private func leb128(_ value: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        var remaining = value
        while remaining >= 0x80 {
            bytes.append(UInt8(remaining & 0x7F) | 0x80)
            remaining >>= 7
        }
        return bytes + [UInt8(remaining)]
    }

    /// The LEB128 varint at `position`, and how many bytes it takes.
    private func varint(_ blob: [UInt8], at position: Int, advancing width: inout Int) -> Int? {
        var value = 0
        var shift = 0
        for index in position..<blob.count {
            value |= Int(blob[index] & 0x7F) << shift
            shift += 7
            if blob[index] & 0x80 == 0 {
                width = index - position + 1
                return value
            }
        }
        return nil
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
