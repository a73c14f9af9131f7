// IMAPProtocol: framing, command and response parsers, encoders and limits (pure Swift, no sockets,
// no Foundation). This file is the module's map; each type lives in its own file.
//
// Server side, per connection (the reactor owns the read buffer; views die when it advances):
//
//     var framer = IMAPCommandFramer(limits: limits)
//     let parser = IMAPCommandParser(limits: limits)
//     switch framer.scan(readable) {                  // UnsafeRawBufferPointer over unconsumed bytes
//     case .complete(let n):                          // parser.parseCommand(frame) -> tag + IMAPCommand
//                                                     // (or parseIdleDone / parseAuthenticationResponse
//                                                     // when the session waits for those lines); consume n
//     case .needContinuation:                         // send "+ Ready", read more
//     case .needMoreBytes:                            // read more
//     case .appendMessage(let n, let literal, let isFirst):
//                                                     // parseAppendStart / parseAppendNext; consume n;
//                                                     // send "+" if synchronizing and accepted, or
//                                                     // framer.rejectAppendMessage()
//     case .appendBytes(let n):                       // message bytes: write bytes 0..<n out, consume n
//     case .appendEnd(let n):                         // parseAppendNext (must be .end); consume n
//     case .discard(let n):                           // rest of a refused command: consume n
//     case .bad(let error):                           // tag BAD error.text; skip or disconnect
//     }
//
// Responses are written into an IMAPOutputBuffer (writeTagged, writeUntagged, beginFetch/write(fetchItem:)/
// endFetch, write(response:)); CAPABILITY lists are rendered once in IMAPCapabilitySet.
//
// Client side (proxy, load generator): IMAPOutputBuffer.write(command:literals:); IMAPResponseFramer to
// follow response boundaries only (the proxy relay); IMAPResponseParser, built on it, to get typed
// responses with FETCH body literals above a threshold streamed.
