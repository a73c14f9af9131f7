// IMAPProtocol: client-side command encoder (for the proxy and the load generator).

/// How the client may send literals (RFC 7888), from what the server advertises.
public enum IMAPLiteralStyle: Sendable, Equatable {
    /// `{N}`: wait for `+` before each literal's bytes (neither LITERAL+ nor LITERAL-).
    case synchronizing
    /// `{N+}` for every literal (LITERAL+).
    case nonSynchronizing
    /// `{N+}` up to 4096 bytes, `{N}` above (LITERAL-).
    case literalMinus

    /// Whether a literal of `size` bytes may be sent without waiting.
    public func isNonSynchronizing(size: UInt64) -> Bool {
        switch self {
        case .synchronizing: return false
        case .nonSynchronizing: return true
        case .literalMinus: return size <= 4096
        }
    }
}

extension IMAPOutputBuffer {
    /// Writes a command. Returns the offsets (in `bytes`) just after each synchronizing literal's
    /// announcement: the client sends up to each offset, waits for `+`, then goes on. Empty with LITERAL+.
    /// For APPEND only the announcement is written; the message bytes follow from the caller.
    @discardableResult
    public mutating func write(command tagged: IMAPTaggedCommand, literals: IMAPLiteralStyle) -> [Int] {
        var writer = CommandWriter(literals: literals)
        // Swapping rather than copying keeps the buffer uniquely referenced, so nothing is copied.
        swap(&writer.buffer, &self)
        writer.write(tagged)
        swap(&writer.buffer, &self)
        return writer.waits
    }
}

/// Writes the pieces of a command, choosing atom, quoted or literal form for each string.
private struct CommandWriter {
    var buffer = IMAPOutputBuffer(capacity: 0)
    let literals: IMAPLiteralStyle
    var waits: [Int] = []

    init(literals: IMAPLiteralStyle) { self.literals = literals }

    mutating func write(_ tagged: IMAPTaggedCommand) {
        buffer.write(bytes: tagged.tag)
        buffer.write(byte: 0x20)
        write(tagged.command)
        if case .append = tagged.command { return }  // the announcement ended the line already
        buffer.write("\r\n")
    }

    private mutating func space() { buffer.write(byte: 0x20) }

    // astring: atom when every byte is an ASTRING-CHAR, quoted when it may be, a literal otherwise.
    private mutating func astring(_ value: IMAPString) {
        let bytes = value.copyBytes()
        bytes.withUnsafeBytes { raw in
            if !raw.isEmpty && raw.allSatisfy(IMAPByteClass.isAStringChar) {
                buffer.write(bytes: IMAPBytes(raw))
            } else if IMAPOutputBuffer.canBeQuoted(raw) {
                buffer.write(string: raw)
            } else {
                literal(raw)
            }
        }
    }

    private mutating func string(_ value: IMAPString) {
        value.copyBytes().withUnsafeBytes { raw in
            if IMAPOutputBuffer.canBeQuoted(raw) { buffer.write(string: raw) } else { literal(raw) }
        }
    }

    private mutating func literal(_ raw: UnsafeRawBufferPointer) {
        buffer.write(byte: UInt8(ascii: "{"))
        buffer.write(number: raw.count)
        announce(size: UInt64(raw.count))
        buffer.bytes.append(contentsOf: raw)
    }

    private mutating func mailbox(_ name: IMAPMailboxName) { astring(name.raw) }

    private mutating func flags(_ list: IMAPFlagList) {
        buffer.write(byte: UInt8(ascii: "("))
        buffer.write(bytes: list.text)
        buffer.write(byte: UInt8(ascii: ")"))
    }

    private mutating func keyword(_ text: StaticString, _ set: IMAPSequenceSet) {
        buffer.write(text)
        buffer.write(bytes: set.text)
    }

    private mutating func write(_ command: IMAPCommand) {
        switch command {
        case .capability: buffer.write("CAPABILITY")
        case .noop: buffer.write("NOOP")
        case .logout: buffer.write("LOGOUT")
        case .startTLS: buffer.write("STARTTLS")
        case .authenticate(let mechanism, let initialResponse):
            buffer.write("AUTHENTICATE ")
            buffer.write(bytes: mechanism)
            if let initialResponse {
                space()
                if initialResponse.isEmpty {
                    buffer.write(byte: UInt8(ascii: "="))
                } else {
                    buffer.write(bytes: initialResponse)
                }
            }
        case .login(let user, let password):
            buffer.write("LOGIN ")
            astring(user)
            space()
            astring(password)
        case .enable(let list):
            buffer.write("ENABLE ")
            buffer.write(bytes: list.text)
        case .select(let name, let parameters):
            buffer.write("SELECT ")
            selectArguments(name, parameters)
        case .examine(let name, let parameters):
            buffer.write("EXAMINE ")
            selectArguments(name, parameters)
        case .create(let name, let use):
            buffer.write("CREATE ")
            mailbox(name)
            if let use {
                buffer.write(" (USE ")
                flags(use)
                buffer.write(byte: UInt8(ascii: ")"))
            }
        case .delete(let name):
            buffer.write("DELETE ")
            mailbox(name)
        case .rename(let from, let to):
            buffer.write("RENAME ")
            mailbox(from)
            space()
            mailbox(to)
        case .subscribe(let name):
            buffer.write("SUBSCRIBE ")
            mailbox(name)
        case .unsubscribe(let name):
            buffer.write("UNSUBSCRIBE ")
            mailbox(name)
        case .list(let list):
            listArguments(list)
        case .lsub(let reference, let pattern):
            buffer.write("LSUB ")
            mailbox(reference)
            space()
            listPattern(pattern)
        case .namespace: buffer.write("NAMESPACE")
        case .status(let name, let attributes):
            buffer.write("STATUS ")
            mailbox(name)
            space()
            statusAttributes(attributes)
        case .append(let name, let message):
            buffer.write("APPEND ")
            mailbox(name)
            space()
            appendMessage(message)
        case .idle: buffer.write("IDLE")
        case .check: buffer.write("CHECK")
        case .close: buffer.write("CLOSE")
        case .unselect: buffer.write("UNSELECT")
        case .expunge: buffer.write("EXPUNGE")
        case .uidExpunge(let set): keyword("UID EXPUNGE ", set)
        case .search(let search, let uid):
            buffer.write(uid ? "UID SEARCH" : "SEARCH")
            if let options = search.returnOptions {
                buffer.write(" RETURN (")
                var first = true
                let names: [(IMAPSearchReturnOptions, StaticString)] = [
                    (.min, "MIN"), (.max, "MAX"), (.all, "ALL"), (.count, "COUNT"), (.save, "SAVE"),
                ]
                for (option, name) in names where options.contains(option) {
                    if !first { space() }
                    first = false
                    buffer.write(name)
                }
                buffer.write(byte: UInt8(ascii: ")"))
            }
            if let charset = search.program.charset {
                buffer.write(" CHARSET ")
                astring(charset)
            }
            space()
            buffer.write(bytes: search.program.text)
        case .fetch(let set, let attributes, let modifiers, let uid):
            keyword(uid ? "UID FETCH " : "FETCH ", set)
            space()
            fetchAttributes(attributes)
            if !modifiers.isEmpty {
                buffer.write(" (")
                if let changedSince = modifiers.changedSince {
                    buffer.write("CHANGEDSINCE ")
                    buffer.write(number: changedSince)
                    if modifiers.vanished { space() }
                }
                if modifiers.vanished { buffer.write("VANISHED") }
                buffer.write(byte: UInt8(ascii: ")"))
            }
        case .store(let set, let action, let unchangedSince, let uid):
            keyword(uid ? "UID STORE " : "STORE ", set)
            if let unchangedSince {
                buffer.write(" (UNCHANGEDSINCE ")
                buffer.write(number: unchangedSince)
                buffer.write(byte: UInt8(ascii: ")"))
            }
            switch action.kind {
            case .replace: buffer.write(" FLAGS")
            case .add: buffer.write(" +FLAGS")
            case .remove: buffer.write(" -FLAGS")
            }
            if action.silent { buffer.write(".SILENT") }
            space()
            flags(action.flags)
        case .copy(let set, let name, let uid):
            keyword(uid ? "UID COPY " : "COPY ", set)
            space()
            mailbox(name)
        case .move(let set, let name, let uid):
            keyword(uid ? "UID MOVE " : "MOVE ", set)
            space()
            mailbox(name)
        case .id(let parameters):
            buffer.write("ID ")
            guard let parameters else {
                buffer.write("NIL")
                return
            }
            buffer.write(byte: UInt8(ascii: "("))
            var first = true
            for (field, value) in parameters {
                if !first { space() }
                first = false
                string(field)
                space()
                if let value { string(value) } else { buffer.write("NIL") }
            }
            buffer.write(byte: UInt8(ascii: ")"))
        case .unauthenticate: buffer.write("UNAUTHENTICATE")
        case .compress(let mechanism):
            buffer.write("COMPRESS ")
            buffer.write(bytes: mechanism)
        case .getQuota(let root):
            buffer.write("GETQUOTA ")
            astring(root)
        case .getQuotaRoot(let name):
            buffer.write("GETQUOTAROOT ")
            mailbox(name)
        case .sort(let criteria, let program, let uid):
            buffer.write(uid ? "UID SORT (" : "SORT (")
            buffer.write(bytes: criteria.text)
            buffer.write(") ")
            searchCriteria(program)
        case .thread(let algorithm, let program, let uid):
            buffer.write(uid ? "UID THREAD " : "THREAD ")
            buffer.write(bytes: algorithm)
            space()
            searchCriteria(program)
        }
    }

    private mutating func searchCriteria(_ program: IMAPSearchProgram) {
        if let charset = program.charset { astring(charset) } else { buffer.write("UTF-8") }
        space()
        buffer.write(bytes: program.text)
    }

    private mutating func selectArguments(_ name: IMAPMailboxName, _ parameters: IMAPSelectParameters) {
        mailbox(name)
        guard parameters.condStore || parameters.qresync != nil else { return }
        buffer.write(" (")
        if parameters.condStore {
            buffer.write("CONDSTORE")
            if parameters.qresync != nil { space() }
        }
        if let qresync = parameters.qresync {
            buffer.write("QRESYNC (")
            buffer.write(number: qresync.uidValidity)
            space()
            buffer.write(number: qresync.modificationSequence)
            if let known = qresync.knownUIDs { keyword(" ", known) }
            if let sequences = qresync.knownSequenceSet, let uids = qresync.knownUIDSet {
                keyword(" (", sequences)
                keyword(" ", uids)
                buffer.write(byte: UInt8(ascii: ")"))
            }
            buffer.write(byte: UInt8(ascii: ")"))
        }
        buffer.write(byte: UInt8(ascii: ")"))
    }

    private mutating func listPattern(_ pattern: IMAPString) {
        let bytes = pattern.copyBytes()
        if !bytes.isEmpty && bytes.allSatisfy(IMAPByteClass.isListChar) {
            buffer.write(contentsOf: bytes)
        } else {
            string(pattern)
        }
    }

    private mutating func listArguments(_ list: IMAPListCommand) {
        buffer.write("LIST ")
        if !list.selectOptions.isEmpty {
            buffer.write(byte: UInt8(ascii: "("))
            let names: [(IMAPListSelectOptions, StaticString)] = [
                (.subscribed, "SUBSCRIBED"), (.remote, "REMOTE"), (.recursiveMatch, "RECURSIVEMATCH"),
                (.specialUse, "SPECIAL-USE"),
            ]
            var first = true
            for (option, name) in names where list.selectOptions.contains(option) {
                if !first { space() }
                first = false
                buffer.write(name)
            }
            buffer.write(") ")
        }
        mailbox(list.reference)
        space()
        if list.patterns.isList { buffer.write(byte: UInt8(ascii: "(")) }
        var first = true
        for pattern in list.patterns {
            if !first { space() }
            first = false
            listPattern(pattern)
        }
        if list.patterns.isList { buffer.write(byte: UInt8(ascii: ")")) }
        guard !list.returnOptions.isEmpty else { return }
        buffer.write(" RETURN (")
        first = true
        let names: [(IMAPListReturnOptions, StaticString)] = [
            (.subscribed, "SUBSCRIBED"), (.children, "CHILDREN"), (.specialUse, "SPECIAL-USE"),
        ]
        for (option, name) in names where list.returnOptions.contains(option) {
            if !first { space() }
            first = false
            buffer.write(name)
        }
        if list.returnOptions.contains(.status) {
            if !first { space() }
            buffer.write("STATUS ")
            statusAttributes(list.statusAttributes)
        }
        buffer.write(byte: UInt8(ascii: ")"))
    }

    private mutating func statusAttributes(_ attributes: IMAPStatusAttributes) {
        buffer.write(byte: UInt8(ascii: "("))
        var first = true
        for (attribute, name) in IMAPStatusAttributes.names where attributes.contains(attribute) {
            if !first { space() }
            first = false
            buffer.write(name)
        }
        buffer.write(byte: UInt8(ascii: ")"))
    }

    private mutating func fetchAttributes(_ list: IMAPFetchAttributeList) {
        switch list.macro {
        case .all?: buffer.write("ALL")
        case .fast?: buffer.write("FAST")
        case .full?: buffer.write("FULL")
        case nil:
            buffer.write(byte: UInt8(ascii: "("))
            buffer.write(bytes: list.text)
            buffer.write(byte: UInt8(ascii: ")"))
        }
    }

    // append-message = [flag-list SP] [date-time SP] literal announcement CRLF
    mutating func appendMessage(_ message: IMAPAppendMessage) {
        if let list = message.flags {
            flags(list)
            space()
        }
        if let date = message.internalDate {
            buffer.write(dateTime: date)
            space()
        }
        if message.literal.isBinary { buffer.write(byte: UInt8(ascii: "~")) }
        buffer.write(byte: UInt8(ascii: "{"))
        buffer.write(number: message.literal.size)
        announce(size: message.literal.size)
    }

    /// Ends a literal's announcement in the allowed form, noting where a synchronizing one must wait.
    private mutating func announce(size: UInt64) {
        if literals.isNonSynchronizing(size: size) {
            buffer.write("+}\r\n")
        } else {
            buffer.write("}\r\n")
            waits.append(buffer.count)
        }
    }
}

extension IMAPOutputBuffer {
    /// Writes what follows an APPEND message's bytes: another message's announcement (MULTIAPPEND) or
    /// the CRLF that ends the command.
    public mutating func write(appendNext next: IMAPAppendNext, literals: IMAPLiteralStyle) {
        switch next {
        case .end:
            write("\r\n")
        case .message(let message):
            write(byte: 0x20)
            var writer = CommandWriter(literals: literals)
            swap(&writer.buffer, &self)
            writer.appendMessage(message)
            swap(&writer.buffer, &self)
        }
    }
}
