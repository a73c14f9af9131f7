// IMAPBackend: a FETCH literal whose bytes are not the file's bytes (bare-LF line ends made CRLF,
// BINARY's transfer decoding), produced from the message file a chunk at a time.
//
// A literal announces its size before its bytes, so a transformed section is read twice: once to
// measure (nothing kept), once to send. Both passes run the same `advance`, so the size announced
// and the bytes sent cannot disagree. Memory is two chunk buffers, whatever the message's size, and
// the FETCH loop stops between chunks while the client is slow to read.

import Glibc
import IMAPProtocol
import MailStore

/// How a literal's bytes are made from the file's bytes.
enum LiteralTransform {
    /// Every LF not preceded by CR becomes CRLF (RFC 9051 requires CRLF on the wire; files written by
    /// other servers may have bare LF).
    case canonicalLineEnds
    /// A Content-Transfer-Encoding is undone (BINARY[part], RFC 3516).
    case decode(MIMETransferEncoding)
}

/// One literal's bytes, read from `source` (a range of the message file) and transformed, of which
/// the output bytes in `window` (the partial fetch, or everything) are emitted.
struct LiteralStream {
    /// Bytes read from the file per step.
    static let chunkSize = 16 * 1024

    private let file: FileHandle
    private let source: Range<Int>
    private let window: Range<Int>
    private var readOffset: Int
    /// Transformed bytes made so far (the position in the output of the next byte).
    private var produced = 0
    private var decoder: MIMETransferDecoder?
    /// The last byte of the previous chunk, for a CRLF split across chunks.
    private var previousByte: UInt8 = 0
    private var input: [UInt8]
    private var output: [UInt8]
    private(set) var isFinished = false

    init(file: FileHandle, source: Range<Int>, transform: LiteralTransform, window: Range<Int> = 0..<Int.max) {
        self.file = file
        self.source = source
        self.window = window
        readOffset = source.lowerBound
        if case .decode(let encoding) = transform { decoder = MIMETransferDecoder(encoding) }
        input = [UInt8](repeating: 0, count: min(LiteralStream.chunkSize, max(source.count, 1)))
        output = []
        output.reserveCapacity(input.count * 2)
        isFinished = window.isEmpty
    }

    /// The output size and whether it holds a NUL (which needs a `~{N}` literal8, RFC 3516): one
    /// pass over the file that keeps nothing.
    static func measure(file: FileHandle, source: Range<Int>, transform: LiteralTransform) -> (size: Int, hasNUL: Bool) {
        var stream = LiteralStream(file: file, source: source, transform: transform)
        var size = 0
        var hasNUL = false
        while !stream.isFinished {
            stream.advance { piece in
                size += piece.count
                if !hasNUL { hasNUL = piece.contains(0) }
            }
        }
        return (size, hasNUL)
    }

    /// Reads one chunk, transforms it, and passes the part inside the window to `emit`. A file that
    /// ends early (truncated by another program) ends the stream; the caller pads to the size it
    /// announced.
    mutating func advance(_ emit: (ArraySlice<UInt8>) -> Void) {
        guard !isFinished else { return }
        output.removeAll(keepingCapacity: true)
        let wanted = min(input.count, source.upperBound - readOffset)
        var got = 0
        if wanted > 0 {
            got = input.withUnsafeMutableBytes { buffer in
                var result: Int
                repeat {
                    result = pread(file.fd, buffer.baseAddress!, wanted, off_t(readOffset))
                } while result < 0 && errno == EINTR
                return max(result, 0)
            }
            readOffset += got
            input.withUnsafeBytes { transform(UnsafeRawBufferPointer(rebasing: $0[0..<got])) }
        }
        let atEnd = got == 0 || readOffset >= source.upperBound
        if atEnd { decoder?.finish(into: &output) }
        let start = produced
        produced += output.count
        let visibleStart = max(start, window.lowerBound)
        let visibleEnd = min(produced, window.upperBound)
        if visibleStart < visibleEnd { emit(output[(visibleStart - start)..<(visibleEnd - start)]) }
        if atEnd || produced >= window.upperBound { isFinished = true }
    }

    private mutating func transform(_ chunk: UnsafeRawBufferPointer) {
        if decoder != nil {
            decoder!.decode(chunk, into: &output)
            return
        }
        for byte in chunk {
            if byte == 0x0A && previousByte != 0x0D { output.append(0x0D) }
            output.append(byte)
            previousByte = byte
        }
    }
}
