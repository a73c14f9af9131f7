// IMAPProtocol: IMAPCommandParser, the second parsing layer: a complete frame into an IMAPCommand.

/// Parses complete frames (from ``IMAPCommandFramer``) into typed commands. Nothing throws: each entry
/// point returns an ``IMAPParseResult`` that keeps the tag for `tag BAD reason`. The common commands
/// (NOOP, FETCH, UID FETCH, STORE, a flat SEARCH, IDLE/DONE) parse without heap allocation.
public struct IMAPCommandParser: Sendable {
    public var limits: IMAPLimits

    public init(limits: IMAPLimits = IMAPLimits()) {
        self.limits = limits
    }

    // command = tag SP (command-any / command-auth / command-nonauth / command-select) CRLF
    /// Parses one complete command frame.
    public func parseCommand(_ frame: UnsafeRawBufferPointer) -> IMAPParseResult<IMAPTaggedCommand> {
        var parser = IMAPParser(frame, limits: limits)
        guard let tag = parser.tag() else { return .failure(tag: nil, reason: parser.failure ?? "Missing tag") }
        // Without the space after it, the first word was not a tag (a stray `DONE`, say): answer `* BAD`.
        guard parser.space() != nil else { return .failure(tag: nil, reason: parser.failure ?? "Missing tag") }
        guard let command = parser.commandBody(), parser.endOfLine() != nil else {
            return .failure(tag: tag, reason: parser.failure ?? "Invalid command")
        }
        return .success(IMAPTaggedCommand(tag: tag, command: command))
    }

    // append = "APPEND" SP mailbox 1*append-message    (RFC 3502)
    // append-message = SP [flag-list SP] [date-time SP] append-data;  append-data = literal / literal8
    /// Parses the frame of an `.appendMessage(isFirst: true)`: the command up to its first message literal.
    public func parseAppendStart(_ frame: UnsafeRawBufferPointer) -> IMAPParseResult<IMAPTaggedCommand> {
        parseCommand(frame)
    }

    /// Parses the frame of an `.appendMessage(isFirst: false)` or `.appendEnd`: what follows a message.
    public func parseAppendNext(_ frame: UnsafeRawBufferPointer) -> IMAPParseResult<IMAPAppendNext> {
        var parser = IMAPParser(frame, limits: limits)
        if parser.peek() == 0x0D {
            guard parser.endOfLine() != nil else { return .failure(tag: nil, reason: parser.failure ?? "Bad line") }
            return .success(.end)
        }
        guard parser.space() != nil, let message = parser.appendMessage(), parser.endOfLine() != nil else {
            return .failure(tag: nil, reason: parser.failure ?? "Invalid APPEND message")
        }
        return .success(.message(message))
    }

    // idle = "IDLE" CRLF "DONE"
    /// Whether the frame is IDLE's `DONE` line (any case). A command pipelined after it is a frame of its own.
    public func parseIdleDone(_ frame: UnsafeRawBufferPointer) -> IMAPParseResult<Void> {
        var parser = IMAPParser(frame, limits: limits)
        guard parser.skipKeyword("DONE"), parser.endOfLine() != nil else {
            return .failure(tag: nil, reason: "Expected DONE")
        }
        return .success(())
    }

    /// A line sent by the client during AUTHENTICATE (RFC 9051 6.2.2).
    public enum AuthenticationResponse: Equatable {
        /// Base64 data (possibly empty).
        case response(IMAPBytes)
        /// `*`: the client cancels the exchange.
        case cancel
    }

    // authenticate response line = base64 CRLF / "*" CRLF
    /// Parses a continuation line of AUTHENTICATE.
    public func parseAuthenticationResponse(_ frame: UnsafeRawBufferPointer) -> IMAPParseResult<AuthenticationResponse>
    {
        var parser = IMAPParser(frame, limits: limits)
        if parser.skip(UInt8(ascii: "*")) {
            guard parser.endOfLine() != nil else { return .failure(tag: nil, reason: "Invalid cancel line") }
            return .success(.cancel)
        }
        let start = parser.position
        while let byte = parser.peek(), IMAPByteClass.isBase64Char(byte) { parser.position += 1 }
        let data = parser.view(start, parser.position)
        guard parser.endOfLine() != nil else { return .failure(tag: nil, reason: "Invalid base64 in response") }
        return .success(.response(data))
    }
}

extension IMAPParser {
    /// The command name and its arguments, dispatched on the name's length then a case-insensitive compare.
    mutating func commandBody() -> IMAPCommand? {
        guard let name = atom() else { return fail("Missing command name") }
        switch name.count {
        case 2 where name.equalsCaseInsensitive("ID"): return idCommand()
        case 3 where name.equalsCaseInsensitive("UID"): return uidCommand()
        case 4:
            if name.equalsCaseInsensitive("NOOP") { return .noop }
            if name.equalsCaseInsensitive("IDLE") { return .idle }
            if name.equalsCaseInsensitive("LIST") { return listCommand() }
            if name.equalsCaseInsensitive("LSUB") {
                guard space() != nil, let reference = mailbox(), space() != nil, let pattern = listMailbox() else {
                    return nil
                }
                return .lsub(reference: reference, pattern: pattern)
            }
            if name.equalsCaseInsensitive("COPY") { return copyOrMove(uid: false, isMove: false) }
            if name.equalsCaseInsensitive("MOVE") { return copyOrMove(uid: false, isMove: true) }
            if name.equalsCaseInsensitive("SORT") { return sortCommand(uid: false) }
        case 5:
            if name.equalsCaseInsensitive("FETCH") { return fetchCommand(uid: false) }
            if name.equalsCaseInsensitive("STORE") { return storeCommand(uid: false) }
            if name.equalsCaseInsensitive("LOGIN") {
                guard space() != nil, let user = astring(), space() != nil, let password = astring() else {
                    return nil
                }
                return .login(user: user, password: password)
            }
            if name.equalsCaseInsensitive("CHECK") { return .check }
            if name.equalsCaseInsensitive("CLOSE") { return .close }
        case 6:
            if name.equalsCaseInsensitive("SEARCH") { return searchCommand(uid: false) }
            if name.equalsCaseInsensitive("SELECT") { return selectCommand(examine: false) }
            if name.equalsCaseInsensitive("LOGOUT") { return .logout }
            if name.equalsCaseInsensitive("ENABLE") {
                guard space() != nil, let list = atomList() else { return nil }
                return .enable(list)
            }
            if name.equalsCaseInsensitive("CREATE") { return createCommand() }
            if name.equalsCaseInsensitive("DELETE") { return mailboxArgument(IMAPCommand.delete) }
            if name.equalsCaseInsensitive("RENAME") {
                guard space() != nil, let from = mailbox(), space() != nil, let to = mailbox() else { return nil }
                return .rename(from: from, to: to)
            }
            if name.equalsCaseInsensitive("STATUS") { return statusCommand() }
            if name.equalsCaseInsensitive("APPEND") { return appendCommand() }
            if name.equalsCaseInsensitive("THREAD") { return threadCommand(uid: false) }
        case 7:
            if name.equalsCaseInsensitive("EXAMINE") { return selectCommand(examine: true) }
            if name.equalsCaseInsensitive("EXPUNGE") { return .expunge }
        case 8:
            if name.equalsCaseInsensitive("STARTTLS") { return .startTLS }
            if name.equalsCaseInsensitive("UNSELECT") { return .unselect }
            if name.equalsCaseInsensitive("COMPRESS") {
                guard space() != nil, let mechanism = atom() else { return nil }
                return .compress(mechanism)
            }
            if name.equalsCaseInsensitive("GETQUOTA") {
                guard space() != nil, let root = astring() else { return nil }
                return .getQuota(root: root)
            }
        case 9:
            if name.equalsCaseInsensitive("SUBSCRIBE") { return mailboxArgument(IMAPCommand.subscribe) }
            if name.equalsCaseInsensitive("NAMESPACE") { return .namespace }
        case 10 where name.equalsCaseInsensitive("CAPABILITY"): return .capability
        case 11 where name.equalsCaseInsensitive("UNSUBSCRIBE"): return mailboxArgument(IMAPCommand.unsubscribe)
        case 12:
            if name.equalsCaseInsensitive("AUTHENTICATE") { return authenticateCommand() }
            if name.equalsCaseInsensitive("GETQUOTAROOT") { return mailboxArgument(IMAPCommand.getQuotaRoot) }
        case 14 where name.equalsCaseInsensitive("UNAUTHENTICATE"): return .unauthenticate
        default: break
        }
        return fail("Unknown command")
    }

    private mutating func mailboxArgument(_ make: (IMAPMailboxName) -> IMAPCommand) -> IMAPCommand? {
        guard space() != nil, let mailbox = mailbox() else { return nil }
        return make(mailbox)
    }

    // uid = "UID" SP (copy / move / fetch / search / store / uid-expunge / sort / thread)
    private mutating func uidCommand() -> IMAPCommand? {
        guard space() != nil, let name = atom() else { return nil }
        switch name.count {
        case 4 where name.equalsCaseInsensitive("COPY"): return copyOrMove(uid: true, isMove: false)
        case 4 where name.equalsCaseInsensitive("MOVE"): return copyOrMove(uid: true, isMove: true)
        case 4 where name.equalsCaseInsensitive("SORT"): return sortCommand(uid: true)
        case 5 where name.equalsCaseInsensitive("FETCH"): return fetchCommand(uid: true)
        case 5 where name.equalsCaseInsensitive("STORE"): return storeCommand(uid: true)
        case 6 where name.equalsCaseInsensitive("SEARCH"): return searchCommand(uid: true)
        case 6 where name.equalsCaseInsensitive("THREAD"): return threadCommand(uid: true)
        case 7 where name.equalsCaseInsensitive("EXPUNGE"):
            guard space() != nil, let set = sequenceSet() else { return nil }
            return .uidExpunge(set)
        default: return fail("Unknown UID command")
        }
    }

    // authenticate = "AUTHENTICATE" SP auth-type [SP initial-resp];  initial-resp = (base64 / "=")
    private mutating func authenticateCommand() -> IMAPCommand? {
        guard space() != nil, let mechanism = atom() else { return nil }
        guard skip(0x20) else { return .authenticate(mechanism: mechanism, initialResponse: nil) }
        if skip(UInt8(ascii: "=")) { return .authenticate(mechanism: mechanism, initialResponse: .empty) }
        guard let response = run(IMAPByteClass.isBase64Char, "Invalid initial response") else { return nil }
        return .authenticate(mechanism: mechanism, initialResponse: response)
    }

    // atom *(SP atom)  (ENABLE's capabilities)
    mutating func atomList() -> IMAPAtomList? {
        let start = position
        var count = 0
        repeat {
            guard atom() != nil else { return nil }
            count += 1
        } while skip(0x20)
        return IMAPAtomList(text: view(start, position), count: count)
    }

    // select = "SELECT" SP mailbox [select-params];  select-params = SP "(" select-param *(SP select-param) ")"
    // select-param = "CONDSTORE" / "QRESYNC" SP "(" uidvalidity SP mod-sequence-value [SP known-uids]
    //                [SP seq-match-data] ")";  seq-match-data = "(" known-sequence-set SP known-uid-set ")"
    private mutating func selectCommand(examine: Bool) -> IMAPCommand? {
        guard space() != nil, let mailbox = mailbox() else { return nil }
        var parameters = IMAPSelectParameters()
        if skip(0x20) {
            guard
                parenthesizedList(
                    allowEmpty: false,
                    { parser in
                        if parser.skipKeyword("CONDSTORE") {
                            parameters.condStore = true
                            return true
                        }
                        guard parser.skipKeyword("QRESYNC") else { return parser.fail("Unknown SELECT parameter") }
                        guard parser.space() != nil, let qresync = parser.qresyncParameters() else { return nil }
                        parameters.qresync = qresync
                        return true
                    }) != nil
            else { return nil }
        }
        return examine ? .examine(mailbox, parameters) : .select(mailbox, parameters)
    }

    private mutating func qresyncParameters() -> IMAPQResyncParameters? {
        guard skip(UInt8(ascii: "(")) else { return fail("Expected (") }
        guard let uidValidity = nzNumber(), space() != nil, let modSeq = modSequence() else { return nil }
        var result = IMAPQResyncParameters(uidValidity: uidValidity, modificationSequence: modSeq)
        if skip(0x20) {
            if peek() != UInt8(ascii: "(") {
                guard let known = sequenceSet() else { return nil }
                result.knownUIDs = known
                _ = skip(0x20)
            }
            if skip(UInt8(ascii: "(")) {
                guard let sequences = sequenceSet(), space() != nil, let uids = sequenceSet(),
                    skip(UInt8(ascii: ")"))
                else { return fail("Invalid QRESYNC match data") }
                result.knownSequenceSet = sequences
                result.knownUIDSet = uids
            }
        }
        guard skip(UInt8(ascii: ")")) else { return fail("Expected ) after QRESYNC parameters") }
        return result
    }

    // create = "CREATE" SP mailbox [create-params];  create-params = SP "(" create-param *(SP create-param) ")"
    // create-param = "USE" SP "(" [use-attr *(SP use-attr)] ")"   (RFC 6154)
    private mutating func createCommand() -> IMAPCommand? {
        guard space() != nil, let mailbox = mailbox() else { return nil }
        guard skip(0x20) else { return .create(mailbox, specialUse: nil) }
        var use: IMAPFlagList?
        guard
            parenthesizedList(
                allowEmpty: false,
                { parser in
                    guard parser.skipKeyword("USE"), parser.space() != nil, let list = parser.flagList() else {
                        return parser.fail("Unknown CREATE parameter")
                    }
                    use = list
                    return true
                }) != nil
        else { return nil }
        return .create(mailbox, specialUse: use)
    }

    // list = "LIST" [SP list-select-opts] SP mailbox SP mbox-or-pat [SP list-return-opts]
    // list-select-opts = "(" [list-select-option *(SP list-select-option)] ")"
    // mbox-or-pat = list-mailbox / patterns;  patterns = "(" list-mailbox *(SP list-mailbox) ")"
    // list-return-opts = "RETURN" SP "(" [return-option *(SP return-option)] ")"
    private mutating func listCommand() -> IMAPCommand? {
        guard space() != nil else { return nil }
        var selectOptions: IMAPListSelectOptions = []
        if peek() == UInt8(ascii: "(") {
            guard
                parenthesizedList(
                    allowEmpty: true,
                    { parser in
                        if parser.skipKeyword("SUBSCRIBED") {
                            selectOptions.insert(.subscribed)
                        } else if parser.skipKeyword("REMOTE") {
                            selectOptions.insert(.remote)
                        } else if parser.skipKeyword("RECURSIVEMATCH") {
                            selectOptions.insert(.recursiveMatch)
                        } else if parser.skipKeyword("SPECIAL-USE") {
                            selectOptions.insert(.specialUse)
                        } else {
                            return parser.fail("Unknown LIST selection option")
                        }
                        return true
                    }) != nil, space() != nil
            else { return nil }
        }
        guard let reference = mailbox(), space() != nil else { return nil }
        let patterns: IMAPPatternList
        if peek() == UInt8(ascii: "(") {
            guard let list = parenthesizedList(allowEmpty: false, { $0.listMailbox().map { _ in true } }) else {
                return nil
            }
            patterns = IMAPPatternList(text: list.text, count: list.count, isList: true)
        } else {
            let start = position
            guard listMailbox() != nil else { return nil }
            patterns = IMAPPatternList(text: view(start, position), count: 1, isList: false)
        }
        var command = IMAPListCommand(selectOptions: selectOptions, reference: reference, patterns: patterns)
        if skip(0x20) {
            guard skipKeyword("RETURN"), space() != nil else { return fail("Expected RETURN") }
            guard
                parenthesizedList(
                    allowEmpty: true,
                    { parser in
                        if parser.skipKeyword("SUBSCRIBED") {
                            command.returnOptions.insert(.subscribed)
                        } else if parser.skipKeyword("CHILDREN") {
                            command.returnOptions.insert(.children)
                        } else if parser.skipKeyword("SPECIAL-USE") {
                            command.returnOptions.insert(.specialUse)
                        } else if parser.skipKeyword("STATUS") {
                            guard parser.space() != nil, let attributes = parser.statusAttributes() else { return nil }
                            command.returnOptions.insert(.status)
                            command.statusAttributes = attributes
                        } else {
                            return parser.fail("Unknown LIST return option")
                        }
                        return true
                    }) != nil
            else { return nil }
        }
        return .list(command)
    }

    // status = "STATUS" SP mailbox SP "(" status-att *(SP status-att) ")"
    private mutating func statusCommand() -> IMAPCommand? {
        guard space() != nil, let mailbox = mailbox(), space() != nil, let attributes = statusAttributes() else {
            return nil
        }
        return .status(mailbox, attributes)
    }

    // status-att = "MESSAGES" / "UIDNEXT" / "UIDVALIDITY" / "UNSEEN" / "DELETED" / "SIZE" / "RECENT" /
    //              "HIGHESTMODSEQ" / "APPENDLIMIT"
    mutating func statusAttributes() -> IMAPStatusAttributes? {
        var attributes: IMAPStatusAttributes = []
        guard
            parenthesizedList(
                allowEmpty: false,
                { parser in
                    for (attribute, name) in IMAPStatusAttributes.names where parser.skipKeyword(name) {
                        attributes.insert(attribute)
                        return true
                    }
                    return parser.fail("Unknown STATUS attribute")
                }) != nil
        else { return nil }
        return attributes
    }

    private mutating func appendCommand() -> IMAPCommand? {
        guard space() != nil, let mailbox = mailbox(), space() != nil, let message = appendMessage() else {
            return nil
        }
        return .append(mailbox, message)
    }

    // append-message = [flag-list SP] [date-time SP] literal-announcement (the CRLF after it ends the frame)
    mutating func appendMessage() -> IMAPAppendMessage? {
        var message = IMAPAppendMessage(literal: IMAPLiteralHeader(size: 0, isSynchronizing: true, isBinary: false))
        if peek() == UInt8(ascii: "(") {
            guard let flags = flagList(), space() != nil else { return nil }
            message.flags = flags
        }
        if peek() == UInt8(ascii: "\"") {
            guard let date = dateTime(), space() != nil else { return nil }
            message.internalDate = date
        }
        message.literal.isBinary = skip(UInt8(ascii: "~"))
        guard skip(UInt8(ascii: "{")), let size = number64() else { return fail("Expected the message literal") }
        message.literal.size = size
        message.literal.isSynchronizing = !skip(UInt8(ascii: "+"))
        guard skip(UInt8(ascii: "}")) else { return fail("Malformed literal") }
        return message
    }

    // search = "SEARCH" [search-return-opts] SP search-program
    // search-program = ["CHARSET" SP charset SP] search-key *(SP search-key)
    private mutating func searchCommand(uid: Bool) -> IMAPCommand? {
        guard space() != nil else { return nil }
        var returnOptions: IMAPSearchReturnOptions?
        if skipKeyword("RETURN") {
            guard space() != nil, let options = searchReturnOptions(), space() != nil else { return nil }
            returnOptions = options
        }
        var charset: IMAPString?
        if skipKeyword("CHARSET") {
            guard space() != nil, let name = self.charset(), space() != nil else { return nil }
            charset = name
        }
        guard let program = searchKeys(charset: charset) else { return nil }
        return .search(IMAPSearchCommand(returnOptions: returnOptions, program: program), uid: uid)
    }

    // fetch = "FETCH" SP sequence-set SP ("ALL" / "FULL" / "FAST" / fetch-att /
    //         "(" fetch-att *(SP fetch-att) ")") [fetch-modifiers]
    private mutating func fetchCommand(uid: Bool) -> IMAPCommand? {
        guard space() != nil, let set = sequenceSet(), space() != nil, let attributes = fetchAttributeList() else {
            return nil
        }
        var modifiers = IMAPFetchModifiers()
        if skip(0x20) {
            guard let parsed = fetchModifiers() else { return nil }
            modifiers = parsed
        }
        if modifiers.vanished && (!uid || modifiers.changedSince == nil) {
            return fail("VANISHED needs UID FETCH and CHANGEDSINCE")
        }
        return .fetch(set, attributes, modifiers, uid: uid)
    }

    // store = "STORE" SP sequence-set [store-modifiers] SP store-att-flags
    // store-modifiers = SP "(" "UNCHANGEDSINCE" SP mod-sequence-valzer ")"
    // store-att-flags = (["+" / "-"] "FLAGS" [".SILENT"]) SP (flag-list / (flag *(SP flag)))
    private mutating func storeCommand(uid: Bool) -> IMAPCommand? {
        guard space() != nil, let set = sequenceSet(), space() != nil else { return nil }
        var unchangedSince: UInt64?
        if peek() == UInt8(ascii: "(") {
            guard
                parenthesizedList(
                    allowEmpty: false,
                    { parser in
                        guard parser.skipKeyword("UNCHANGEDSINCE"), parser.space() != nil,
                            let value = parser.modSequence()
                        else { return parser.fail("Unknown STORE modifier") }
                        unchangedSince = value
                        return true
                    }) != nil, space() != nil
            else { return nil }
        }
        let kind: IMAPStoreAction.Kind
        if skip(UInt8(ascii: "+")) {
            kind = .add
        } else if skip(UInt8(ascii: "-")) {
            kind = .remove
        } else {
            kind = .replace
        }
        let silent: Bool
        if skipKeyword("FLAGS") {
            silent = false
        } else if skipKeyword("FLAGS.SILENT") {
            silent = true
        } else {
            return fail("Expected FLAGS")
        }
        guard space() != nil else { return nil }
        let flags: IMAPFlagList
        if peek() == UInt8(ascii: "(") {
            guard let list = flagList() else { return nil }
            flags = list
        } else {
            let start = position
            var count = 0
            repeat {
                guard flag() != nil else { return nil }
                count += 1
            } while skip(0x20)
            flags = IMAPFlagList(validatedText: view(start, position), count: count)
        }
        return .store(
            set, IMAPStoreAction(kind: kind, silent: silent, flags: flags), unchangedSince: unchangedSince,
            uid: uid)
    }

    // copy = "COPY" SP sequence-set SP mailbox;  move = "MOVE" SP sequence-set SP mailbox
    private mutating func copyOrMove(uid: Bool, isMove: Bool) -> IMAPCommand? {
        guard space() != nil, let set = sequenceSet(), space() != nil, let mailbox = mailbox() else { return nil }
        return isMove ? .move(set, mailbox, uid: uid) : .copy(set, mailbox, uid: uid)
    }

    // id = "ID" SP id-params-list
    private mutating func idCommand() -> IMAPCommand? {
        guard space() != nil else { return nil }
        if skipKeyword("NIL") { return .id(nil) }
        guard let parameters = idParameterList() else { return nil }
        return .id(parameters)
    }

    // id-params-list = "(" *(string SP nstring) ")" / nil    (RFC 2971 section 4; NIL is the caller's)
    /// The pairs of a parenthesized ID list, as a view; shared by the command and the server's answer.
    mutating func idParameterList() -> IMAPIDParameters? {
        guard
            let list = parenthesizedList(
                allowEmpty: true,
                { parser in
                    guard parser.string() != nil, parser.space() != nil, parser.nstring() != nil else { return nil }
                    return true
                })
        else { return nil }
        return IMAPIDParameters(text: list.text, count: list.count)
    }

    // sort = ["UID" SP] "SORT" SP sort-criteria SP search-criteria
    // sort-criteria = "(" sort-criterion *(SP sort-criterion) ")";  search-criteria = charset 1*(SP search-key)
    private mutating func sortCommand(uid: Bool) -> IMAPCommand? {
        guard space() != nil, let list = parenthesizedList(allowEmpty: false, { $0.sortCriterion().map { _ in true } }),
            space() != nil, let program = searchCriteria()
        else { return nil }
        return .sort(IMAPSortCriteria(text: list.text, count: list.count), program, uid: uid)
    }

    // sort-criterion = ["REVERSE" SP] sort-key
    // sort-key = "ARRIVAL" / "CC" / "DATE" / "FROM" / "SIZE" / "SUBJECT" / "TO" / "DISPLAYFROM" / "DISPLAYTO"
    mutating func sortCriterion() -> (reverse: Bool, key: IMAPSortCriteria.Key)? {
        var reverse = false
        if skipKeyword("REVERSE") {
            guard space() != nil else { return nil }
            reverse = true
        }
        for (key, name) in IMAPSortCriteria.Key.names where skipKeyword(name) {
            return (reverse, key)
        }
        return fail("Unknown sort key")
    }

    // thread = ["UID" SP] "THREAD" SP thread-alg SP search-criteria;  thread-alg = atom
    private mutating func threadCommand(uid: Bool) -> IMAPCommand? {
        guard space() != nil, let algorithm = atom(), space() != nil, let program = searchCriteria() else {
            return nil
        }
        return .thread(algorithm: algorithm, program, uid: uid)
    }

    // search-criteria = charset 1*(SP search-key)
    private mutating func searchCriteria() -> IMAPSearchProgram? {
        guard let charset = charset(), space() != nil else { return nil }
        return searchKeys(charset: charset)
    }
}
