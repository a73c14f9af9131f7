// TransferDecodingTests: base64 and quoted-printable decoders fed in any split, BINARY and
// BINARY.SIZE against Dovecot's answers.

import Testing

@testable import MailStore

/// Decodes `input` in one piece and returns the bytes.
func decodeWhole(_ input: [UInt8], _ encoding: MIMETransferEncoding) -> [UInt8] {
    var decoder = MIMETransferDecoder(encoding)
    var output: [UInt8] = []
    input.withUnsafeBytes { decoder.decode($0, into: &output) }
    decoder.finish(into: &output)
    return output
}

/// Decodes `input` fed as two chunks split at `split`.
func decodeSplit(_ input: [UInt8], at split: Int, _ encoding: MIMETransferEncoding) -> [UInt8] {
    var decoder = MIMETransferDecoder(encoding)
    var output: [UInt8] = []
    input[0..<split].withUnsafeBytes { decoder.decode($0, into: &output) }
    input[split...].withUnsafeBytes { decoder.decode($0, into: &output) }
    decoder.finish(into: &output)
    return output
}

@Suite("Transfer decoding")
struct TransferDecodingTests {
    static let base64Cases: [(String, String)] = [
        ("SGVsbG8gV29ybGQ=", "Hello World"),
        ("SGVsbG8g\r\nV29y\r\nbGQh", "Hello World!"),
        ("SGVs bG8g*\tV29y!bGQ=", "Hello World"),  // junk and blanks ignored
        ("SGk=SGk=", "HiHi"),  // concatenated blocks
        ("SGVsbG8", "Hello"),  // unfinished quantum: the whole bytes it holds
        ("S", ""),
        ("", ""),
        ("====", ""),
    ]

    @Test("base64: known vectors, tolerant of junk, padding and truncation")
    func base64Vectors() {
        for (input, expected) in Self.base64Cases {
            #expect(String(decoding: decodeWhole(Array(input.utf8), .base64), as: UTF8.self) == expected, "\(input)")
        }
        let all = (0..<256).map { UInt8($0) }
        // The 256 byte values, in 76-character lines as RFC 2045 writes them.
        let encoded = Array((["AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4",
            "OTo7PD0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub3Bx",
            "cnN0dXZ3eHl6e3x9fn+AgYKDhIWGh4iJiouMjY6PkJGSk5SVlpeYmZqbnJ2en6ChoqOkpaanqKmq",
            "q6ytrq+wsbKztLW2t7i5uru8vb6/wMHCw8TFxsfIycrLzM3Oz9DR0tPU1dbX2Nna29zd3t/g4eLj",
            "5OXm5+jp6uvs7e7v8PHy8/T19vf4+fr7/P3+/w=="].joined(separator: "\r\n")).utf8)
        #expect(decodeWhole(encoded, .base64) == all)
    }

    static let quotedPrintableCases: [(String, String)] = [
        ("Caf=E9", "Caf\u{E9}"),
        ("soft=\r\nbreak", "softbreak"),
        ("soft=\nbreak", "softbreak"),
        ("soft=  \r\nbreak with padding", "softbreak with padding"),
        ("=3D=3d", "=="),
        ("bad =ZZ and =4", "bad =ZZ and =4"),
        ("bad =\tx", "bad =\tx"),
        ("trailing   \r\nblanks\t\r\n", "trailing\r\nblanks\r\n"),
        ("inner  blanks stay", "inner  blanks stay"),
        ("end blanks  ", "end blanks"),
        ("=", "="),
        ("a=\r", "a"),
    ]

    @Test("quoted-printable: RFC 2045 6.7 rules and its robustness advice")
    func quotedPrintableVectors() {
        for (input, expected) in Self.quotedPrintableCases {
            let decoded = decodeWhole(Array(input.utf8), .quotedPrintable)
            let expectedBytes = expected.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) }
            #expect(decoded == expectedBytes, "\(input)")
        }
    }

    @Test("every split point of every vector gives the same bytes as one piece")
    func everySplit() {
        let inputs = Self.base64Cases.map { (Array($0.0.utf8), MIMETransferEncoding.base64) }
            + Self.quotedPrintableCases.map { (Array($0.0.utf8), MIMETransferEncoding.quotedPrintable) }
            + [(Array(Corpus.message("15-quoted-printable")), .quotedPrintable),
               (Array(Corpus.message("02-nested-mixed-alternative-related")), .base64)]
        for (input, encoding) in inputs {
            let whole = decodeWhole(input, encoding)
            for split in 0...input.count {
                #expect(decodeSplit(input, at: split, encoding) == whole, "split \(split)")
            }
        }
    }

    @Test("byte-by-byte feeding gives the same bytes as one piece")
    func byteByByte() {
        let input = Corpus.message("15-quoted-printable")
        var decoder = MIMETransferDecoder(.quotedPrintable)
        var output: [UInt8] = []
        for index in input.indices { input[index...index].withUnsafeBytes { decoder.decode($0, into: &output) } }
        decoder.finish(into: &output)
        #expect(output == decodeWhole(input, .quotedPrintable))
    }

    @Test("encoding names: case-insensitive, identity for 7bit/8bit/binary/none, unknown otherwise")
    func encodingNames() {
        #expect(MIMETransferEncoding(name: Array("BASE64".utf8)) == .base64)
        #expect(MIMETransferEncoding(name: Array("Quoted-Printable".utf8)) == .quotedPrintable)
        #expect(MIMETransferEncoding(name: Array("8bit".utf8)) == .identity)
        #expect(MIMETransferEncoding(name: [UInt8]?.none) == .identity)
        #expect(MIMETransferEncoding(name: Array("x-uuencode".utf8)) == .unknown)
    }

    /// Messages whose BINARY answers differ from Dovecot's by design (see CorpusTests for 07, 14, 27).
    static let differentByDesign: [String: Set<String>] = [
        // BINARY of a multipart: Apus sends its bytes as they are (a multipart has no transfer
        // encoding of its own); Dovecot rewrites the parts inside to binary, headers included.
        "02-nested-mixed-alternative-related": ["1", "1.2"],
        // Dovecot refuses invalid quoted-printable (`=ZZ`) with NO [PARSE]; Apus decodes it
        // leniently as RFC 2045 section 6.7 advises (keeping `=ZZ`).
        "15-quoted-printable": ["1"],
        "14-boundary-prefix-in-body": ["1", "2", "1.1", "2.1"],
        "27-rfc822-base64": ["1", "1.1", "1.2", "1.2.1", "1.2.2", "2.1"],
    ]

    @Test("BINARY and BINARY.SIZE match Dovecot's answers for every corpus message", arguments: Corpus.names)
    func binaryMatchesDovecot(name: String) {
        let message = Corpus.message(name)
        let structure = MessageStructure(parsing: message)
        let data = Corpus.read(Corpus.directory + "/" + name + ".binary")
        let bareLineFeeds = message.indices.contains { message[$0] == 10 && ($0 == 0 || message[$0 - 1] != 13) }
        var position = 0
        while position < data.count, let lineEnd = data[position...].firstIndex(of: 10) {
            let fields = String(decoding: data[position..<lineEnd], as: UTF8.self).split(separator: " ")
            let part = fields[0].split(separator: ".").map { Int($0)! }
            let ours = message.withUnsafeBytes { structure.decodedBody(ofPart: part, in: $0) }
            let oursSize = message.withUnsafeBytes { structure.decodedBodySize(ofPart: part, in: $0) }
            let skip = Self.differentByDesign[name]?.contains(String(fields[0])) == true || bareLineFeeds
            if fields[1] == "NO" {
                position = lineEnd + 1
                if !skip { #expect(ours == nil, "\(name) BINARY[\(fields[0])]") }
                continue
            }
            let length = Int(fields[1])!
            let answer = Array(data[(lineEnd + 1)..<(lineEnd + 1 + length)])
            position = lineEnd + 1 + length + 1
            guard !skip else { continue }
            // Dovecot answers a part that does not exist with an empty string; Apus with nil.
            #expect((ours ?? []) == answer, "\(name) BINARY[\(fields[0])]")
            #expect((oursSize ?? 0) == Int(fields[2])!, "\(name) BINARY.SIZE[\(fields[0])]")
        }
    }

    @Test("BINARY of an unknown transfer encoding is nil (NO [UNKNOWN-CTE]); partials clip the decoded bytes")
    func binaryEdges() {
        let unknown = Corpus.message("26-bad-content-type")
        let structure = MessageStructure(parsing: unknown)
        #expect(unknown.withUnsafeBytes { structure.decodedBody(ofPart: [1], in: $0) } == nil)
        #expect(unknown.withUnsafeBytes { structure.decodedBodySize(ofPart: [1], in: $0) } == nil)
        let qp = Corpus.message("15-quoted-printable")
        let qpStructure = MessageStructure(parsing: qp)
        let slice = qp.withUnsafeBytes {
            qpStructure.decodedBody(ofPart: [1], partial: MIMEPartial(origin: 3, length: 6), in: $0)
        }
        #expect(slice == [0xE9, 0x20, 0x63, 0x72, 0xE8, 0x6D])
    }
}
