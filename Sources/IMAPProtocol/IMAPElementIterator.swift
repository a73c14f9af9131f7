// IMAPProtocol: IMAPElementIterator, the allocation-free walk over a validated list kept as text.

/// Walks the space-separated elements of a validated list view, parsing each on demand. The element
/// parser is a non-capturing function, so iterating allocates nothing (unlike `AnyIterator`).
public struct IMAPElementIterator<Element>: IteratorProtocol {
    var parser: IMAPParser
    let parseElement: (inout IMAPParser) -> Element?

    init(_ text: IMAPBytes, _ parseElement: @escaping (inout IMAPParser) -> Element?) {
        // The text was validated under the caller's limits; walking it again needs no tighter ones.
        parser = IMAPParser(text, limits: IMAPLimits(maxNestingDepth: Int.max, maxSequenceSetRanges: Int.max))
        self.parseElement = parseElement
    }

    public mutating func next() -> Element? {
        guard !parser.isAtEnd, let element = parseElement(&parser) else { return nil }
        _ = parser.skip(0x20)
        return element
    }
}
