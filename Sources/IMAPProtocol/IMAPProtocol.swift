// IMAPProtocol: framing, parsers and encoders (pure Swift, no sockets, no Foundation).
