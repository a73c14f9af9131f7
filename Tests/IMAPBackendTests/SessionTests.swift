// IMAPBackendTests: the session state machine without sockets: every command in every state,
// including the error answers.

import IMAPProtocol
import MailStore
import Reactor
import Telemetry
import Testing
@testable import IMAPBackend

@Suite struct SessionTests {
    @Test func greetingAndCapabilitiesDifferBeforeAndAfterLogin() throws {
        let accounts = try TestAccounts()
        let driver = try SessionDriver(accounts: accounts)
        _ = driver.take()
        let before = driver.send("a CAPABILITY\r\n")
        #expect(before.contains("* CAPABILITY IMAP4rev1 IMAP4rev2"))
        #expect(before.contains("AUTH=PLAIN"))
        #expect(!before.contains("IDLE MOVE") && !before.contains("UIDPLUS"))
        #expect(before.hasSuffix("a OK CAPABILITY completed\r\n"))
        let login = driver.login()
        #expect(login.contains("l1 OK [CAPABILITY IMAP4rev1"))
        #expect(login.contains("UIDPLUS"))
        #expect(login.contains("APPENDLIMIT="))
        #expect(!login.contains("UNAUTHENTICATE"), "UNAUTHENTICATE only for trusted proxies")
    }

    @Test func greetingNamesCapabilities() throws {
        let accounts = try TestAccounts()
        let driver = try SessionDriver(accounts: accounts)
        let greeting = driver.take()
        #expect(greeting.hasPrefix("* OK [CAPABILITY IMAP4rev1 IMAP4rev2"))
    }

    @Test func loginFailureIsDelayedAndCounted() throws {
        let accounts = try TestAccounts()
        let driver = try SessionDriver(accounts: accounts)
        _ = driver.take()
        let first = driver.send("a LOGIN alice wrong\r\n")
        // The answer waits on a timer: nothing yet.
        #expect(first == "")
        #expect(driver.transport.timers.count == 1)
        driver.transport.fireTimers()
        #expect(driver.take() == "a NO [AUTHENTICATIONFAILED] Authentication failed\r\n")
        #expect(driver.context.metrics.loginFailures.current == 1)
        // Commands sent meanwhile wait for the answer (input is paused).
        #expect(driver.session.state == .notAuthenticated)
        #expect(driver.send("b LOGIN nobody x\r\n") == "")
        driver.transport.fireTimers()
        #expect(driver.take().contains("b NO [AUTHENTICATIONFAILED]"))
        #expect(driver.login().contains("l1 OK"))
    }

    @Test func commandsOutsideTheirStateAreBad() throws {
        let accounts = try TestAccounts()
        let driver = try SessionDriver(accounts: accounts)
        _ = driver.take()
        for command in ["SELECT INBOX", "FETCH 1 FLAGS", "LIST \"\" *", "STATUS INBOX (MESSAGES)", "IDLE",
                        "EXPUNGE", "CLOSE", "ENABLE IMAP4rev2", "CREATE x", "NAMESPACE"] {
            #expect(driver.send("x \(command)\r\n") == "x BAD Command not valid in this state\r\n", "\(command)")
            _ = driver.send("n NOOP\r\n")  // a good command resets the bad-command count
        }
        driver.login()
        for command in ["FETCH 1 FLAGS", "STORE 1 +FLAGS (\\Seen)", "SEARCH ALL", "EXPUNGE", "CLOSE", "UNSELECT",
                        "COPY 1 INBOX", "MOVE 1 INBOX", "CHECK", "LOGIN a b", "AUTHENTICATE PLAIN", "STARTTLS"] {
            #expect(driver.send("x \(command)\r\n") == "x BAD Command not valid in this state\r\n", "\(command)")
            _ = driver.send("n NOOP\r\n")
        }
        #expect(driver.send("x FOO\r\n").hasPrefix("x BAD"))
        #expect(driver.send("garbage\r\n").hasPrefix("* BAD"))
    }

    @Test func tooManyBadCommandsDisconnect() throws {
        let accounts = try TestAccounts()
        let driver = try SessionDriver(accounts: accounts)
        _ = driver.take()
        var answer = ""
        for _ in 0..<10 { answer = driver.send("x FOO\r\n") }
        #expect(answer.contains("* BYE"))
        #expect(driver.transport.closed)
    }

    @Test func authenticatePlainAndLoginMechanisms() throws {
        let accounts = try TestAccounts()
        let plain = try SessionDriver(accounts: accounts)
        _ = plain.take()
        let token = Base64.encode(Array("\0alice\0secret".utf8))
        #expect(plain.send("a AUTHENTICATE PLAIN \(token)\r\n").contains("a OK [CAPABILITY"))
        let exchange = try SessionDriver(accounts: accounts)
        _ = exchange.take()
        #expect(exchange.send("a AUTHENTICATE PLAIN\r\n") == "+ \r\n")
        #expect(exchange.send("\(Base64.encode(Array("\0bob\0hunter2".utf8)))\r\n").contains("a OK"))
        let login = try SessionDriver(accounts: accounts)
        _ = login.take()
        #expect(login.send("a AUTHENTICATE LOGIN\r\n") == "+ VXNlcm5hbWU6\r\n")
        #expect(login.send("\(Base64.encode(Array("alice".utf8)))\r\n") == "+ UGFzc3dvcmQ6\r\n")
        #expect(login.send("\(Base64.encode(Array("secret".utf8)))\r\n").contains("a OK"))
        let cancelled = try SessionDriver(accounts: accounts)
        _ = cancelled.take()
        _ = cancelled.send("a AUTHENTICATE PLAIN\r\n")
        #expect(cancelled.send("*\r\n") == "a BAD Authentication cancelled\r\n")
        #expect(cancelled.send("b AUTHENTICATE CRAM-MD5\r\n").hasPrefix("b NO"))
        #expect(cancelled.send("c AUTHENTICATE PLAIN !!!\r\n").hasPrefix("c BAD"))
        // authzid different from authcid is refused (no proxy authorization).
        let other = Base64.encode(Array("bob\0alice\0secret".utf8))
        #expect(cancelled.send("d AUTHENTICATE PLAIN \(other)\r\n").hasPrefix("d NO [AUTHENTICATIONFAILED]"))
    }

    @Test func loginDisabledUntilTLS() throws {
        let accounts = try TestAccounts()
        let certificate = accounts.directory.path
        try SelfSignedCertificate.make(certificatePath: certificate + "/c.pem", keyPath: certificate + "/k.pem")
        let tls = TLSContextHolder(try TLSContext.server(certificateChain: certificate + "/c.pem",
                                                         privateKey: certificate + "/k.pem"))
        let driver = try SessionDriver(accounts: accounts,
                                       configuration: accounts.configuration(tls: tls, loginDisabledOnPlain: true))
        let greeting = driver.take()
        #expect(greeting.contains("STARTTLS") && greeting.contains("LOGINDISABLED") && !greeting.contains("AUTH=PLAIN"))
        #expect(driver.login().hasPrefix("l1 NO [PRIVACYREQUIRED]"))
        #expect(driver.send("a AUTHENTICATE PLAIN\r\n").hasPrefix("a NO [PRIVACYREQUIRED]"))
        // STARTTLS; anything pipelined after it in the same read is dropped.
        let answer = driver.send("s STARTTLS\r\nx LOGIN alice secret\r\n")
        #expect(answer == "s OK Begin TLS negotiation now\r\n")
        #expect(driver.transport.startedTLS)
        let after = driver.send("c CAPABILITY\r\n")
        #expect(!after.contains("STARTTLS") && !after.contains("LOGINDISABLED") && after.contains("AUTH=PLAIN"))
        #expect(driver.send("s2 STARTTLS\r\n").hasPrefix("s2 BAD"))
        #expect(driver.login().hasPrefix("l1 OK"))
    }

    @Test func startTLSWithoutCertificateIsRefused() throws {
        let accounts = try TestAccounts()
        let driver = try SessionDriver(accounts: accounts)
        _ = driver.take()
        #expect(driver.send("s STARTTLS\r\n") == "s BAD STARTTLS not available\r\n")
    }

    /// RFC 6154 section 3: CREATE-SPECIAL-USE stores the use with the folder; LIST shows it (in every
    /// form, and alone with the SPECIAL-USE selection option); it survives a restart and a RENAME.
    @Test func createWithSpecialUseIsListedAndPersists() throws {
        let accounts = try TestAccounts()
        do {
            let driver = try SessionDriver(accounts: accounts)
            driver.login()
            #expect(driver.send("a CREATE Old (USE (\\archive))\r\n") == "a OK CREATE completed\r\n")
            #expect(driver.send("a CREATE Bin (USE (\\Trash \\Junk))\r\n") == "a OK CREATE completed\r\n")
            #expect(driver.send("b LIST \"\" Old\r\n").contains("* LIST (\\HasNoChildren \\Archive) \"/\" \"Old\""))
            let special = driver.send("c LIST (SPECIAL-USE) \"\" *\r\n")
            #expect(special.contains("\\Archive) \"/\" \"Old\""))
            #expect(special.contains("(\\HasNoChildren \\Trash \\Junk) \"/\" \"Bin\""))
            #expect(!special.contains("INBOX"))
            let returned = driver.send("d LIST \"\" \"%\" RETURN (SPECIAL-USE)\r\n")
            #expect(returned.contains("\\Archive) \"/\" \"Old\"") && returned.contains("\"INBOX\""))
            #expect(driver.send("e RENAME Old Older\r\n") == "e OK RENAME completed\r\n")
            _ = driver.send("z LOGOUT\r\n")
        }
        // A new store over the same data directory (the old one is gone with the driver).
        accounts.reopenStore()
        let driver = try SessionDriver(accounts: accounts)
        driver.login()
        let list = driver.send("f LIST \"\" *\r\n")
        #expect(list.contains("* LIST (\\HasNoChildren \\Archive) \"/\" \"Older\""))
        #expect(list.contains("(\\HasNoChildren \\Trash \\Junk) \"/\" \"Bin\""))
        #expect(driver.send("g DELETE Bin\r\n") == "g OK DELETE completed\r\n")
        #expect(driver.send("h CREATE Bin\r\n") == "h OK CREATE completed\r\n")
        #expect(driver.send("i LIST \"\" Bin\r\n").contains("* LIST (\\HasNoChildren) \"/\" \"Bin\""),
                "a deleted folder's use goes with it")
    }

    @Test func mailboxCommands() throws {
        let accounts = try TestAccounts()
        let driver = try SessionDriver(accounts: accounts)
        driver.login()
        #expect(driver.send("a CREATE Work/Projects\r\n") == "a OK CREATE completed\r\n")
        #expect(driver.send("a CREATE Work/Projects\r\n").hasPrefix("a NO [ALREADYEXISTS]"))
        #expect(driver.send("a CREATE \"a/../b\"\r\n").hasPrefix("a NO"))
        #expect(driver.send("b CREATE x (USE (\\Important))\r\n").hasPrefix("b NO [USEATTR]"))
        #expect(driver.send("b CREATE x (USE (\\All))\r\n").hasPrefix("b NO [USEATTR]"), "virtual mailboxes only")
        #expect(driver.send("b CREATE x (USE (\\Archive \\Flagged))\r\n").hasPrefix("b NO [USEATTR]"))
        #expect(!driver.send("b1 LIST \"\" x\r\n").contains("* LIST"), "a refused CREATE makes nothing")
        let list = driver.send("c LIST \"\" *\r\n")
        #expect(list.contains("* LIST (\\HasNoChildren) \"/\" \"INBOX\""))
        #expect(list.contains("* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\""))
        #expect(list.contains("\"Work/Projects\""))
        #expect(list.contains("\\Noselect \\HasChildren) \"/\" \"Work\""))
        let percent = driver.send("c LIST \"\" %\r\n")
        #expect(!percent.contains("Work/Projects"))
        #expect(driver.send("c LIST \"\" \"\"\r\n") == "* LIST (\\Noselect) \"/\" \"\"\r\nc OK LIST completed\r\n")
        let special = driver.send("c LIST (SPECIAL-USE) \"\" *\r\n")
        #expect(special.contains("\\Trash") && !special.contains("INBOX"))
        let status = driver.send("c LIST \"\" INBOX RETURN (STATUS (MESSAGES UIDNEXT))\r\n")
        #expect(status.contains("* STATUS \"INBOX\" (MESSAGES 0 UIDNEXT 1)"))
        #expect(driver.send("d RENAME Work/Projects Archive2\r\n") == "d OK RENAME completed\r\n")
        #expect(driver.send("d RENAME nothere x\r\n").hasPrefix("d NO"))
        #expect(driver.send("e DELETE Archive2\r\n") == "e OK DELETE completed\r\n")
        #expect(driver.send("e DELETE Archive2\r\n").hasPrefix("e NO [NONEXISTENT]"))
        #expect(driver.send("e DELETE INBOX\r\n").hasPrefix("e NO"))
        #expect(driver.send("f SUBSCRIBE Junk\r\n") == "f OK SUBSCRIBE completed\r\n")
        let lsub = driver.send("g LSUB \"\" *\r\n")
        #expect(lsub.contains("* LSUB () \"/\" \"Junk\""))
        #expect(driver.send("f UNSUBSCRIBE Junk\r\n") == "f OK UNSUBSCRIBE completed\r\n")
        #expect(!driver.send("g LSUB \"\" *\r\n").contains("Junk"))
        let subscribed = driver.send("h LIST (SUBSCRIBED) \"\" *\r\n")
        #expect(subscribed.contains("\\Subscribed") && !subscribed.contains("\"INBOX\""))
        #expect(driver.send("i STATUS nothere (MESSAGES)\r\n").hasPrefix("i NO [NONEXISTENT]"))
        #expect(driver.send("i STATUS INBOX (MESSAGES UNSEEN SIZE APPENDLIMIT)\r\n")
            .contains("* STATUS \"INBOX\" (MESSAGES 0 UNSEEN 0 SIZE 0 APPENDLIMIT 67108864)"))
        #expect(driver.send("j NAMESPACE\r\n") == "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\nj OK NAMESPACE completed\r\n")
    }

    static let message = "From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: Hello there\r\n"
        + "Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nMessage-ID: <1@example.org>\r\n\r\nBody line one\r\nsecond\r\n"

    func appendMessage(_ driver: SessionDriver, _ text: String = SessionTests.message, flags: String = "",
                       mailbox: String = "INBOX") -> String
    {
        let start = driver.send("ap APPEND \(mailbox) \(flags){\(text.utf8.count)}\r\n")
        guard start == "+ Ready for literal data\r\n" else { return start }
        return driver.send(text + "\r\n")
    }

    /// A multipart with an attached message (two envelopes, many addresses), a one-part message and
    /// a two-part alternative: each smaller than the one before in parts, addresses or strings.
    static let differentlyShapedMessages = [
        "From: Ann <ann@example.org>\r\nTo: bo@x.org, cy@y.org, \"Di\" <di@z.org>\r\nCc: ed@w.org\r\n"
            + "Subject: Quarterly figures and the minutes of the meeting\r\nMIME-Version: 1.0\r\n"
            + "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nSee below.\r\n"
            + "--b1\r\nContent-Type: message/rfc822\r\n\r\nFrom: Fay <fay@v.org>\r\nTo: gus@u.org, hal@t.org\r\n"
            + "Subject: Inner\r\n\r\nInner body\r\n--b1\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\n"
            + "Content-Disposition: attachment; filename=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + "QUJD\r\n--b1--\r\n",
        "From: Ida <ida@s.org>\r\nSubject: Hi\r\n\r\nShort.\r\n",
        "From: Jo <jo@r.org>\r\nTo: kim@q.org\r\nSubject: Two ways\r\nMIME-Version: 1.0\r\n"
            + "Content-Type: multipart/alternative; boundary=b2\r\n\r\n--b2\r\nContent-Type: text/plain\r\n\r\nplain\r\n"
            + "--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>html</p>\r\n--b2--\r\n",
    ]

    @Test("ENVELOPE and BODYSTRUCTURE of differently shaped messages in one FETCH are each message's own")
    func fetchStructuresOfSeveralMessages() throws {
        let accounts = try TestAccounts()
        let driver = try SessionDriver(accounts: accounts)
        driver.login()
        for text in SessionTests.differentlyShapedMessages {
            #expect(appendMessage(driver, text).hasPrefix("ap OK"))
        }
        driver.send("s SELECT INBOX\r\n")
        // Each message alone, by a session that has fetched nothing before.
        let alone = (1...3).map { number in
            let fresh = SessionDriver(sibling: driver)
            fresh.login()
            fresh.send("s EXAMINE INBOX\r\n")
            return fresh.send("f FETCH \(number) (ENVELOPE BODYSTRUCTURE)\r\n").lines[0]
        }
        #expect(alone[0].contains("\"Inner\"") && alone[0].contains("\"pdf\""))
        #expect(alone[1].contains("BODYSTRUCTURE (\"text\" \"plain\"") && !alone[1].contains("Inner"))
        #expect(alone[2].contains("\"alternative\"") && !alone[2].contains("\"pdf\""))
        // Twice: the second FETCH starts from the structure the first one ended with.
        for _ in 0..<2 {
            let together = driver.send("f FETCH 1:3 (ENVELOPE BODYSTRUCTURE)\r\n").lines
            #expect(Array(together.prefix(3)) == alone)
            #expect(together.last == "f OK FETCH completed")
        }
    }

    @Test func appendSelectFetch() throws {
        let accounts = try TestAccounts()
        let driver = try SessionDriver(accounts: accounts)
        driver.login()
        let appended = appendMessage(driver, flags: "(\\Flagged $Work) ")
        #expect(appended.hasPrefix("ap OK [APPENDUID "))
        #expect(appended.hasSuffix(" 1] APPEND completed\r\n"))
        #expect(appendMessage(driver, mailbox: "Nowhere").hasPrefix("ap NO [TRYCREATE]"))
        // After a refused synchronizing APPEND the session is in step again.
        #expect(driver.send("n NOOP\r\n") == "n OK NOOP completed\r\n")
        let select = driver.send("s SELECT INBOX\r\n")
        #expect(select.contains("* 1 EXISTS"))
        #expect(select.contains("* 1 RECENT"))
        #expect(select.contains("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)"))
        #expect(select.contains("[UIDVALIDITY "))
        #expect(select.contains("* OK [UIDNEXT 2]"))
        #expect(select.contains("* OK [UNSEEN 1]"))
        #expect(select.hasSuffix("s OK [READ-WRITE] SELECT completed\r\n"))
        let fetch = driver.send("f FETCH 1 (FLAGS RFC822.SIZE UID ENVELOPE BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n")
        #expect(fetch.contains("FLAGS (\\Flagged \\Recent $Work)"))
        #expect(fetch.contains("RFC822.SIZE \(SessionTests.message.utf8.count)"))
        #expect(fetch.contains("UID 1"))
        #expect(fetch.contains("ENVELOPE (\"Mon, 7 Feb 1994 21:52:25 -0800\" \"Hello there\""))
        #expect(fetch.contains("BODY[HEADER.FIELDS (SUBJECT)] {24}\r\nSubject: Hello there\r\n\r\n"))
        #expect(fetch.hasSuffix("f OK FETCH completed\r\n"))
        let body = driver.send("f UID FETCH 1 (BODY[])\r\n")
        #expect(body.contains("BODY[] {\(SessionTests.message.utf8.count)}\r\n\(SessionTests.message)"))
        #expect(body.contains("FLAGS (\\Flagged \\Seen \\Recent $Work)"), "non-PEEK BODY sets \\Seen")
        let partial = driver.send("f FETCH 1 (BODY.PEEK[TEXT]<5.4> BODY.PEEK[1] BODYSTRUCTURE INTERNALDATE)\r\n")
        #expect(partial.contains("BODY[TEXT]<5> {4}\r\nline"))
        #expect(partial.contains("BODY[1] {23}\r\nBody line one\r\nsecond\r\n"))
        #expect(partial.contains("BODYSTRUCTURE (\"text\" \"plain\""))
        #expect(partial.contains("INTERNALDATE \""))
        let missing = driver.send("f FETCH 1 (BODY.PEEK[3])\r\n")
        #expect(missing.contains("BODY[3] {0}") || missing.contains("BODY[3] \"\""))
        #expect(driver.send("f FETCH 2 FLAGS\r\n") == "f BAD Message sequence number out of range\r\n")
        #expect(driver.send("f UID FETCH 99 FLAGS\r\n") == "f OK FETCH completed\r\n")
        let binary = driver.send("f FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1])\r\n")
        #expect(binary.contains("BINARY[1] {23}") && binary.contains("BINARY.SIZE[1] 23"))
        let rfc822 = driver.send("f FETCH 1 (RFC822.HEADER FLAGS)\r\n")
        #expect(rfc822.contains("RFC822.HEADER {"))
    }

    @Test func multiappendAndLiteralPlus() throws {
        let accounts = try TestAccounts()
        let driver = try SessionDriver(accounts: accounts)
        driver.login()
        let one = "Subject: one\r\n\r\n1\r\n"
        let two = "Subject: two\r\n\r\n2\r\n"
        let answer = driver.send("m APPEND INBOX {\(one.utf8.count)+}\r\n\(one) (\\Seen) {\(two.utf8.count)+}\r\n\(two)\r\n")
        #expect(answer.hasPrefix("m OK [APPENDUID "))
        #expect(answer.contains(" 1:2] APPEND completed"))
        let empty = driver.send("e APPEND INBOX {0+}\r\n\r\n")
        #expect(empty.hasPrefix("e OK [APPENDUID "), "a 0-byte literal is a message too")
        let select = driver.send("s EXAMINE INBOX\r\n")
        #expect(select.contains("* 3 EXISTS"))
        #expect(select.contains("s OK [READ-ONLY]"))
        #expect(driver.send("x STORE 1 +FLAGS (\\Seen)\r\n").hasPrefix("x NO [READ-ONLY]"))
        #expect(driver.send("x EXPUNGE\r\n").hasPrefix("x NO [READ-ONLY]"))
        let fetch = driver.send("f FETCH 1:* (FLAGS BODY[])\r\n")
        #expect(!fetch.contains("\\Seen \\Recent") && fetch.contains("* 2 FETCH (FLAGS (\\Seen)"),
                "EXAMINE never sets \\Seen")
    }

    @Test func storeSearchExpungeCopyMove() throws {
        let accounts = try TestAccounts()
        let driver = try SessionDriver(accounts: accounts)
        driver.login()
        for index in 1...4 { _ = appendMessage(driver, "Subject: m\(index)\r\nFrom: x\(index)@example.org\r\n\r\nbody \(index)\r\n") }
        _ = driver.send("s SELECT INBOX\r\n")
        #expect(driver.send("a STORE 2 +FLAGS (\\Deleted)\r\n")
            == "* 2 FETCH (FLAGS (\\Deleted \\Recent))\r\na OK STORE completed\r\n")
        #expect(driver.send("a STORE 1 +FLAGS.SILENT (\\Seen)\r\n") == "a OK STORE completed\r\n")
        #expect(driver.send("a UID STORE 3 FLAGS (\\Answered Custom)\r\n")
            == "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft Custom)\r\n"
            + "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft Custom \\*)] Limited\r\n"
            + "* 3 FETCH (FLAGS (\\Answered \\Recent Custom) UID 3)\r\na OK STORE completed\r\n")
        #expect(driver.send("a STORE 1 +FLAGS (\\Recent)\r\n").hasPrefix("a BAD"))
        #expect(driver.send("a STORE 9 +FLAGS (\\Seen)\r\n").hasPrefix("a BAD"))
        #expect(driver.send("b SEARCH DELETED\r\n") == "* SEARCH 2\r\nb OK SEARCH completed\r\n")
        #expect(driver.send("b SEARCH UNSEEN NOT DELETED\r\n") == "* SEARCH 3 4\r\nb OK SEARCH completed\r\n")
        #expect(driver.send("b UID SEARCH KEYWORD Custom\r\n") == "* SEARCH 3\r\nb OK SEARCH completed\r\n")
        #expect(driver.send("b SEARCH SUBJECT m4\r\n") == "* SEARCH 4\r\nb OK SEARCH completed\r\n")
        #expect(driver.send("b SEARCH FROM x2@example.org\r\n") == "* SEARCH 2\r\nb OK SEARCH completed\r\n")
        #expect(driver.send("b SEARCH BODY \"body 3\"\r\n") == "* SEARCH 3\r\nb OK SEARCH completed\r\n")
        #expect(driver.send("b SEARCH OR 1 4\r\n") == "* SEARCH 1 4\r\nb OK SEARCH completed\r\n")
        #expect(driver.send("b SEARCH RETURN (MIN MAX COUNT) ALL\r\n")
            == "* ESEARCH (TAG \"b\") MIN 1 MAX 4 COUNT 4\r\nb OK SEARCH completed\r\n")
        #expect(driver.send("b SEARCH CHARSET KOI8-R ALL\r\n").hasPrefix("b NO [BADCHARSET"))
        #expect(driver.send("c COPY 1:2 Trash\r\n").hasPrefix("c OK [COPYUID "))
        #expect(driver.send("c COPY 1 Nowhere\r\n").hasPrefix("c NO [TRYCREATE]"))
        #expect(driver.send("d EXPUNGE\r\n") == "* 2 EXPUNGE\r\nd OK EXPUNGE completed\r\n")
        let move = driver.send("e UID MOVE 4 Archive\r\n")
        #expect(move.hasPrefix("* OK [COPYUID "))
        #expect(move.hasSuffix("* 3 EXPUNGE\r\ne OK MOVE completed\r\n"))
        #expect(driver.send("f STATUS Trash (MESSAGES)\r\n").contains("(MESSAGES 2)"))
        #expect(driver.send("g STORE 1 +FLAGS (\\Deleted)\r\n") == "* 1 FETCH (FLAGS (\\Deleted \\Seen \\Recent))\r\ng OK STORE completed\r\n")
        #expect(driver.send("h UID EXPUNGE 3\r\n") == "h OK EXPUNGE completed\r\n", "UID 3 is not \\Deleted")
        #expect(driver.send("i CLOSE\r\n") == "i OK CLOSE completed\r\n", "CLOSE expunges silently")
        #expect(driver.send("j STATUS INBOX (MESSAGES)\r\n").contains("(MESSAGES 1)"))
        _ = driver.send("k SELECT INBOX\r\n")
        #expect(driver.send("l UNSELECT\r\n") == "l OK UNSELECT completed\r\n")
        #expect(driver.send("m FETCH 1 FLAGS\r\n").hasPrefix("m BAD"))
    }

    /// Two sessions of one user with INBOX selected, after the first appended `messages`.
    func twoSessionsOnInbox(holding messages: [String]) throws -> (SessionDriver, SessionDriver) {
        let first = try SessionDriver(accounts: try TestAccounts())
        first.login()
        for message in messages { _ = appendMessage(first, message) }
        _ = first.send("s SELECT INBOX\r\n")
        let second = SessionDriver(sibling: first)
        _ = second.take()
        second.login()
        _ = second.send("s SELECT INBOX\r\n")
        return (first, second)
    }

    /// The first of two sessions on an INBOX of two messages, after the second expunged message 1:
    /// the first still numbers it (it has not been told yet).
    func firstSessionAfterTheOtherExpungedMessageOne() throws -> SessionDriver {
        let (first, second) = try twoSessionsOnInbox(holding: ["Subject: a\r\n\r\nx\r\n", "Subject: b\r\n\r\ny\r\n"])
        _ = second.send("st STORE 1 +FLAGS.SILENT (\\Deleted)\r\n")
        _ = second.send("x EXPUNGE\r\n")
        return first
    }

    /// A client learns a mailbox's keywords from FLAGS (RFC 9051 7.3.5) and may reject a FETCH FLAGS
    /// naming one it was never told of (imaptest counts it as an error): a keyword made by this
    /// session's STORE or APPEND, or by another session, is announced before it first appears.
    @Test func newKeywordsAreAnnouncedWithFlagsBeforeFetchShowsThem() throws {
        let (first, second) = try twoSessionsOnInbox(holding: ["Subject: a\r\n\r\nx\r\n"])
        let system = "\\Answered \\Flagged \\Deleted \\Seen \\Draft"
        #expect(first.send("a STORE 1 +FLAGS ($Label1)\r\n")
            == "* FLAGS (\(system) $Label1)\r\n* OK [PERMANENTFLAGS (\(system) $Label1 \\*)] Limited\r\n"
            + "* 1 FETCH (FLAGS (\\Recent $Label1))\r\na OK STORE completed\r\n")
        #expect(first.send("b STORE 1 +FLAGS ($Label1)\r\n") == "* 1 FETCH (FLAGS (\\Recent $Label1))\r\nb OK STORE completed\r\n",
                "a keyword is announced once")
        // A removal only names keywords: one never set is on no message, and defining it would spend
        // one of the mailbox's 26 keyword letters.
        #expect(first.send("r STORE 1 -FLAGS ($NotJunk)\r\n") == "* 1 FETCH (FLAGS (\\Recent $Label1))\r\nr OK STORE completed\r\n")
        #expect(second.send("n NOOP\r\n")
            == "* FLAGS (\(system) $Label1)\r\n* OK [PERMANENTFLAGS (\(system) $Label1 \\*)] Limited\r\n"
            + "* 1 FETCH (FLAGS ($Label1))\r\nn OK NOOP completed\r\n")
        #expect(second.send("i IDLE\r\n") == "+ idling\r\n")
        #expect(appendMessage(first, "Subject: b\r\n\r\nx\r\n", flags: "($Label2) ")
            .hasPrefix("* FLAGS (\(system) $Label1 $Label2)\r\n"))
        #expect(second.take().hasPrefix("* FLAGS (\(system) $Label1 $Label2)\r\n"))
        #expect(second.send("DONE\r\n") .hasSuffix("i OK IDLE terminated\r\n"))
        // EXAMINE's PERMANENTFLAGS () does not change with new keywords: FLAGS alone is sent again.
        let reader = SessionDriver(sibling: first)
        _ = reader.take()
        reader.login()
        _ = reader.send("e EXAMINE INBOX\r\n")
        _ = first.send("c STORE 1 +FLAGS ($Label3)\r\n")
        #expect(reader.send("n NOOP\r\n").hasPrefix("* FLAGS (\(system) $Label1 $Label2 $Label3)\r\n* 1 FETCH"))
    }

    @Test func twoSessionsSeeEachOthersChangesInNoopAndIdle() throws {
        let accounts = try TestAccounts()
        let first = try SessionDriver(accounts: accounts)
        first.login()
        _ = first.send("s SELECT INBOX\r\n")
        let second = SessionDriver(sibling: first)
        _ = second.take()
        second.login()
        _ = second.send("s SELECT INBOX\r\n")
        #expect(first.send("i IDLE\r\n") == "+ idling\r\n")
        _ = appendMessage(second, "Subject: new\r\n\r\nx\r\n")
        #expect(first.take() == "* 1 EXISTS\r\n* 1 RECENT\r\n", "the first session to see a message gets \\Recent")
        _ = second.send("st STORE 1 +FLAGS (\\Flagged)\r\n")
        #expect(first.take() == "* 1 FETCH (FLAGS (\\Flagged \\Recent))\r\n")
        #expect(first.send("DONE\r\nn NOOP\r\n") == "i OK IDLE terminated\r\nn OK NOOP completed\r\n")
        _ = second.send("st STORE 1 +FLAGS (\\Deleted)\r\n")
        _ = second.send("x EXPUNGE\r\n")
        // The flag change of a message expunged since is not announced; the EXPUNGE is.
        #expect(first.send("n NOOP\r\n") == "* 1 EXPUNGE\r\nn OK NOOP completed\r\n")
    }

    @Test func expungeIsNotSentDuringFetchStoreSearch() throws {
        let (first, second) = try twoSessionsOnInbox(holding: ["Subject: a\r\n\r\nx\r\n", "Subject: b\r\n\r\nx\r\n"])
        _ = second.send("st STORE 1 +FLAGS.SILENT (\\Deleted)\r\n")
        _ = second.send("x EXPUNGE\r\n")
        let fetch = first.send("f FETCH 1:2 FLAGS\r\n")
        #expect(!fetch.contains(" EXPUNGE\r\n"))
        #expect(!first.send("f SEARCH ALL\r\n").contains(" EXPUNGE\r\n"))
        #expect(first.send("n NOOP\r\n").contains("* 1 EXPUNGE"))
        #expect(first.send("f FETCH 1 UID\r\n").contains("* 1 FETCH (UID 2)"))
    }

    /// Until it may announce another session's EXPUNGE, a session still numbers the message: a
    /// SEARCH that cannot match it says EXPUNGEISSUED (RFC 5530), as imaptest expects of a result
    /// that lacks a number the client still has.
    @Test func searchSaysExpungeIssuedWhileTheViewHoldsAMessageExpungedElsewhere() throws {
        let (first, second) = try twoSessionsOnInbox(holding: ["Subject: a\r\n\r\nx\r\n", "Subject: b\r\n\r\ny\r\n"])
        #expect(first.send("s SEARCH 1:2\r\n") == "* SEARCH 1 2\r\ns OK SEARCH completed\r\n")
        _ = second.send("st STORE 1 +FLAGS.SILENT (\\Deleted)\r\n")
        _ = second.send("x EXPUNGE\r\n")
        #expect(first.send("s SEARCH 1:2\r\n") == "* SEARCH 2\r\ns OK [EXPUNGEISSUED] SEARCH completed\r\n")
        #expect(first.send("n NOOP\r\n") == "* 1 EXPUNGE\r\nn OK NOOP completed\r\n")
        #expect(first.send("s SEARCH 1\r\n") == "* SEARCH 1\r\ns OK SEARCH completed\r\n")
    }

    /// A STORE naming a message another session expunged (its EXPUNGE not sent yet) sets the
    /// others' flags and answers NO [EXPUNGEISSUED] (RFC 2180 4.2.3), so a client checking that
    /// every message it named came back with FLAGS knows why one did not; .SILENT answers OK
    /// (RFC 2180 4.2.1).
    @Test func storeOnAMessageExpungedElsewhereSaysSo() throws {
        let first = try firstSessionAfterTheOtherExpungedMessageOne()
        #expect(first.send("a STORE 1:2 +FLAGS (\\Seen)\r\n")
            == "* 2 FETCH (FLAGS (\\Seen \\Recent))\r\na NO [EXPUNGEISSUED] Some of the messages have been deleted\r\n")
        #expect(first.send("b STORE 1:2 +FLAGS.SILENT (\\Flagged)\r\n") == "b OK STORE completed\r\n")
        #expect(first.send("c FETCH 2 FLAGS\r\n") == "* 2 FETCH (FLAGS (\\Flagged \\Seen \\Recent))\r\nc OK FETCH completed\r\n")
    }

    /// A FETCH by number that cannot return a message another session expunged (its EXPUNGE not
    /// sent yet) says so with OK [EXPUNGEISSUED] (RFC 5530); a UID FETCH ignores the UID and sends
    /// the EXPUNGE.
    @Test func fetchSaysExpungeIssuedForAMessageExpungedElsewhere() throws {
        let first = try firstSessionAfterTheOtherExpungedMessageOne()
        #expect(first.send("f FETCH 1:2 FLAGS\r\n") == "* 2 FETCH (FLAGS (\\Recent))\r\nf OK [EXPUNGEISSUED] FETCH completed\r\n")
        #expect(first.send("g FETCH 2 FLAGS\r\n") == "* 2 FETCH (FLAGS (\\Recent))\r\ng OK FETCH completed\r\n")
        let byUID = first.send("u UID FETCH 1:2 FLAGS\r\n")
        #expect(byUID.contains("* 1 EXPUNGE\r\n") && byUID.hasSuffix("u OK FETCH completed\r\n"), "\(byUID)")
    }

    /// An APPEND refused for naming more keywords than the mailbox can hold adds none, so the other
    /// sessions are not sent FLAGS again for nothing.
    @Test func aRefusedAppendAnnouncesNoKeywords() throws {
        let (first, second) = try twoSessionsOnInbox(holding: ["Subject: a\r\n\r\nx\r\n"])
        let tooMany = "(" + (1...27).map { "$k\($0)" }.joined(separator: " ") + ") "
        #expect(appendMessage(first, "Subject: b\r\n\r\nx\r\n", flags: tooMany).contains("ap NO"))
        #expect(second.send("n NOOP\r\n") == "n OK NOOP completed\r\n")
        #expect(first.send("m NOOP\r\n") == "m OK NOOP completed\r\n")
    }

    /// A conditional STORE that meets both a message expunged elsewhere and one changed since
    /// UNCHANGEDSINCE answers NO with MODIFIED (RFC 7162 3.1.3, example 11): the client must learn
    /// which messages to try again.
    @Test func conditionalStoreKeepsModifiedWhenAMessageWasExpungedElsewhere() throws {
        let first = try firstSessionAfterTheOtherExpungedMessageOne()
        let answer = first.send("a STORE 1:2 (UNCHANGEDSINCE 1) +FLAGS (\\Seen)\r\n")
        #expect(answer.hasSuffix("a NO [MODIFIED 2] Some of the messages have been deleted\r\n"), "\(answer)")
    }

    /// A UID command ignores UIDs that no longer exist (RFC 3501 6.4.8) and may announce the
    /// EXPUNGE at once: UID STORE and UID SEARCH answer OK without EXPUNGEISSUED, the EXPUNGE sent.
    @Test func uidCommandsOnAMessageExpungedElsewhereAnswerOKWithTheExpunge() throws {
        let first = try firstSessionAfterTheOtherExpungedMessageOne()
        let store = first.send("a UID STORE 1:2 +FLAGS (\\Seen)\r\n")
        #expect(store.contains("* 2 FETCH (FLAGS (\\Seen \\Recent) UID 2)\r\n"))
        #expect(store.contains("* 1 EXPUNGE\r\n") && store.hasSuffix("a OK STORE completed\r\n"), "\(store)")
        let third = try firstSessionAfterTheOtherExpungedMessageOne()
        let search = third.send("s UID SEARCH ALL\r\n")
        #expect(search.hasSuffix("s OK SEARCH completed\r\n") && !search.contains("EXPUNGEISSUED"), "\(search)")
    }

    /// A message whose file is gone when its body is read (expunged while a long FETCH waited on a
    /// slow client) answers NIL, not an empty string a client would take for the body.
    @Test func bodyOfAMessageWhoseFileVanishedIsNil() throws {
        let (first, _) = try twoSessionsOnInbox(holding: ["Subject: a\r\n\r\nx\r\n"])
        let cur = first.accounts.dataDirectory + "/users/alice/cur"
        let names = try fileNames(in: cur)
        #expect(names.count == 1)
        for name in names { #expect(unlink(cur + "/" + name) == 0) }
        #expect(first.send("f FETCH 1 (BODY.PEEK[TEXT])\r\n") == "* 1 FETCH (BODY[TEXT] NIL)\r\nf OK FETCH completed\r\n")
    }

    /// The names in a directory, dot files left out.
    func fileNames(in path: String) throws -> [String] {
        let directory = try #require(opendir(path))
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if !name.hasPrefix(".") { names.append(name) }
        }
        return names
    }

    /// A message delivered by another Maildir writer (its structure not analysed yet) whose file
    /// is gone when FETCH reads it: NIL is no envelope or body structure, so the emptiest valid
    /// ones keep a client's parser going.
    @Test func envelopeOfAMessageWhoseFileVanishedIsStillAnEnvelope() throws {
        let (first, _) = try twoSessionsOnInbox(holding: [])
        let new = first.accounts.dataDirectory + "/users/alice/new/1700000000.M1P1.elsewhere"
        let text = "Subject: dropped in\r\n\r\nbody\r\n"
        let file = try #require(fopen(new, "w"))
        fputs(text, file)
        fclose(file)
        let noop = first.send("n NOOP\r\n")
        #expect(noop.contains("* 1 EXISTS"), "\(noop)")
        let cur = first.accounts.dataDirectory + "/users/alice/cur"
        for name in try fileNames(in: cur) { #expect(unlink(cur + "/" + name) == 0) }
        unlink(new)
        #expect(first.send("g FETCH 1 (ENVELOPE BODYSTRUCTURE)\r\n")
            == "* 1 FETCH (ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODYSTRUCTURE (\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 0 0))\r\ng OK FETCH completed\r\n")
    }

    @Test func enableIMAP4rev2ChangesResponses() throws {
        let accounts = try TestAccounts()
        let driver = try SessionDriver(accounts: accounts)
        driver.login()
        #expect(driver.send("e ENABLE IMAP4rev2\r\n") == "* ENABLED IMAP4rev2\r\ne OK ENABLE completed\r\n")
        _ = appendMessage(driver)
        let select = driver.send("s SELECT INBOX\r\n")
        #expect(!select.contains("RECENT"))
        #expect(select.contains("* LIST () \"/\" \"INBOX\""))
        #expect(driver.send("a SEARCH ALL\r\n") == "* ESEARCH (TAG \"a\") ALL 1\r\na OK SEARCH completed\r\n")
        #expect(!driver.send("f FETCH 1 FLAGS\r\n").contains("\\Recent"))
        #expect(driver.send("e ENABLE IMAP4rev2\r\n").hasPrefix("e BAD"), "not valid in the selected state")
    }

    @Test func idleNeedsDoneAndSendsKeepalives() throws {
        let accounts = try TestAccounts()
        let driver = try SessionDriver(accounts: accounts)
        driver.login()
        #expect(driver.send("i IDLE\r\n") == "+ idling\r\n")
        driver.transport.fireTimers()
        #expect(driver.take() == "* OK Still here\r\n")
        #expect(driver.send("NOOP\r\n") == "i BAD Expected DONE\r\n")
        #expect(driver.send("j IDLE\r\n") == "+ idling\r\n")
        #expect(driver.send("done\r\n") == "j OK IDLE terminated\r\n")
    }

    /// A trusted proxy (the front end) ended the client's TLS itself: its plain connection to the
    /// back end counts as secured, so logins relayed over it are not refused for want of TLS.
    @Test func trustedProxyConnectionsAreSecuredForLogin() throws {
        let accounts = try TestAccounts()
        let certificate = accounts.directory.path
        try SelfSignedCertificate.make(certificatePath: certificate + "/c.pem", keyPath: certificate + "/k.pem")
        let tls = TLSContextHolder(try TLSContext.server(certificateChain: certificate + "/c.pem",
                                                         privateKey: certificate + "/k.pem"))
        let proxied = try SessionDriver(accounts: accounts, configuration: accounts.configuration(
            tls: tls, loginDisabledOnPlain: true, trustedProxies: [TrustedNetwork("192.0.2.0/24")!]))
        let greeting = proxied.take()
        #expect(!greeting.contains("LOGINDISABLED") && greeting.contains("AUTH=PLAIN"))
        #expect(proxied.login().hasPrefix("l1 OK"))
        let stranger = try SessionDriver(accounts: accounts, configuration: accounts.configuration(
            tls: tls, loginDisabledOnPlain: true, trustedProxies: [TrustedNetwork("198.51.100.0/24")!]))
        #expect(stranger.take().contains("LOGINDISABLED"))
        #expect(stranger.login().hasPrefix("l1 NO [PRIVACYREQUIRED]"))
    }

    /// A plain client's ID answer names the server and nothing more; a trusted proxy's also says
    /// which event loop the connection is on and how many there are (the front end picks pooled
    /// connections by it).
    @Test func idReturnsServerAndUnauthenticateOnlyForTrustedProxies() throws {
        let accounts = try TestAccounts()
        let driver = try SessionDriver(accounts: accounts)
        _ = driver.take()
        #expect(driver.send("i ID NIL\r\n") == "* ID (\"name\" \"Apus\" \"version\" \"1\")\r\ni OK ID completed\r\n")
        #expect(!driver.send("j ID (\"x-originating-ip\" \"198.51.100.9\")\r\n").contains("x-apus"))
        driver.login()
        #expect(driver.send("u UNAUTHENTICATE\r\n") == "u BAD Command not supported\r\n")
        let proxied = try SessionDriver(
            accounts: accounts,
            configuration: accounts.configuration(trustedProxies: [TrustedNetwork("192.0.2.0/24")!]))
        _ = proxied.take()
        let idAnswer = proxied.send("i ID (\"x-originating-ip\" \"198.51.100.9\" \"x-session-id\" \"fe-1\")\r\n")
        #expect(idAnswer == "* ID (\"name\" \"Apus\" \"version\" \"1\" \"x-apus-loop\" \"0\" \"x-apus-loops\" \"1\")\r\n"
                + "i OK ID completed\r\n")
        #expect(proxied.session.clientAddress == "198.51.100.9")
        #expect(proxied.login().contains("UNAUTHENTICATE"))
        _ = proxied.send("e ENABLE IMAP4rev2\r\n")
        _ = proxied.send("s SELECT INBOX\r\n")
        #expect(proxied.send("u UNAUTHENTICATE\r\n") == "u OK UNAUTHENTICATE completed\r\n")
        #expect(proxied.session.state == .notAuthenticated)
        #expect(!proxied.session.isRev2)
        #expect(proxied.session.clientAddress == "192.0.2.7")
        #expect(proxied.send("f FETCH 1 FLAGS\r\n").hasPrefix("f BAD"))
        #expect(proxied.login("bob", "hunter2").contains("l1 OK"))
        #expect(proxied.session.userName == "bob")
    }

    @Test func logoutSaysByeAndCloses() throws {
        let accounts = try TestAccounts()
        let driver = try SessionDriver(accounts: accounts)
        _ = driver.take()
        #expect(driver.send("z LOGOUT\r\nq NOOP\r\n") == "* BYE Logging out\r\nz OK LOGOUT completed\r\n")
        #expect(driver.transport.closed)
    }

    @Test func perUserConnectionLimit() throws {
        let accounts = try TestAccounts()
        var configuration = accounts.configuration()
        configuration.maxConnectionsPerUser = 1
        let first = try SessionDriver(accounts: accounts, configuration: configuration)
        first.login()
        let second = SessionDriver(sibling: first)
        _ = second.take()
        #expect(second.login().hasPrefix("l1 NO [LIMIT]"))
        first.session.connectionClosed()
        #expect(second.login().hasPrefix("l1 OK"))
    }

    @Test func authCacheSkipsTheHashOnReconnect() throws {
        let accounts = try TestAccounts()
        let driver = try SessionDriver(accounts: accounts)
        let authenticator = driver.context.authenticator
        #expect(authenticator.verify(user: "alice", password: Array("secret".utf8)))
        #expect(authenticator.cacheHitCount == 0)
        #expect(authenticator.verify(user: "alice", password: Array("secret".utf8)))
        #expect(authenticator.cacheHitCount == 1)
        // The loop's check: the cache alone, never a hash.
        #expect(authenticator.verifyFromCache(user: "alice", password: Array("secret".utf8)))
        #expect(!authenticator.verifyFromCache(user: "alice", password: Array("wrong".utf8)))
        #expect(!authenticator.verifyFromCache(user: "bob", password: Array("hunter2".utf8)))
        #expect(authenticator.cacheHitCount == 2)
        // A wrong password drops the user's entry.
        #expect(!authenticator.verify(user: "alice", password: Array("wrong".utf8)))
        #expect(!authenticator.verifyFromCache(user: "alice", password: Array("secret".utf8)))
        #expect(authenticator.verify(user: "alice", password: Array("secret".utf8)))
        // A changed password invalidates the cached entry, before and after the file is read again.
        try PasswordFile(path: accounts.usersFile).setPassword(user: "alice", password: Array("new".utf8))
        #expect(!authenticator.verifyFromCache(user: "alice", password: Array("secret".utf8)))
        #expect(!authenticator.verify(user: "alice", password: Array("secret".utf8)))
        #expect(!authenticator.verifyFromCache(user: "alice", password: Array("secret".utf8)))
        #expect(authenticator.verify(user: "alice", password: Array("new".utf8)))
        #expect(authenticator.verifyFromCache(user: "alice", password: Array("new".utf8)))
    }

    @Test func aLoginTheCacheAnswersRunsNoWorkerJob() throws {
        let accounts = try TestAccounts()
        let first = try SessionDriver(accounts: accounts)
        let authenticator = first.context.authenticator
        #expect(first.login().contains("l1 OK"))
        #expect(first.transport.blockingLanes == [.compute])  // the first login hashes on a worker
        // Reconnects with the same credentials: LOGIN, and AUTHENTICATE PLAIN with its pipelined
        // command, are answered at once on the loop, through the cache.
        let second = SessionDriver(sibling: first)
        _ = second.take()
        #expect(second.login().hasPrefix("l1 OK [CAPABILITY"))
        #expect(second.transport.blockingLanes.isEmpty)
        #expect(authenticator.cacheHitCount == 1)
        let third = SessionDriver(sibling: first)
        _ = third.take()
        let plain = Base64.encode(Array("\0alice\0secret".utf8))
        let answer = third.send("a AUTHENTICATE PLAIN \(plain)\r\nn NOOP\r\n")
        #expect(answer.lines.map { $0.prefix(4) } == ["a OK", "n OK"])
        #expect(third.session.userName == "alice")
        #expect(third.transport.blockingLanes.isEmpty)
        #expect(authenticator.cacheHitCount == 2)
        // A changed password: the old one is no hit, goes to a worker and fails after the delay.
        try PasswordFile(path: accounts.usersFile).setPassword(user: "alice", password: Array("new".utf8))
        let fourth = SessionDriver(sibling: first)
        _ = fourth.take()
        #expect(fourth.login() == "")
        #expect(fourth.transport.blockingLanes == [.compute])
        #expect(fourth.transport.timers.count == 1)
        fourth.transport.fireTimers()
        #expect(fourth.take().hasPrefix("l1 NO [AUTHENTICATIONFAILED]"))
        // The new password: hashed once on a worker, then answered from the cache.
        let fifth = SessionDriver(sibling: first)
        _ = fifth.take()
        #expect(fifth.login("alice", "new").hasPrefix("l1 OK"))
        #expect(fifth.transport.blockingLanes == [.compute])
        let sixth = SessionDriver(sibling: first)
        _ = sixth.take()
        #expect(sixth.login("alice", "new").hasPrefix("l1 OK"))
        #expect(sixth.transport.blockingLanes.isEmpty)
        #expect(authenticator.cacheHitCount == 3)
    }

    @Test func idleTimeoutsArePreAndPostLogin() throws {
        let accounts = try TestAccounts()
        let driver = try SessionDriver(accounts: accounts)
        #expect(driver.transport.idleTimeout == .seconds(60))
        driver.login()
        #expect(driver.transport.idleTimeout == .seconds(1800))
        driver.session.timedOut()
        #expect(driver.take().hasPrefix("* BYE"))
        #expect(driver.transport.closed)
    }

    @Test func bareLineFeedMessagesAreServedAsCRLF() throws {
        let accounts = try TestAccounts()
        let driver = try SessionDriver(accounts: accounts)
        driver.login()
        // A message another server wrote with LF line ends, delivered into new/.
        let text = "Subject: lf\nFrom: a@b\n\nline1\nline2\n"
        let path = accounts.dataDirectory + "/users/alice/new/1.lf:2,"
        let file = fopen(path, "w")!
        fputs(text, file)
        fclose(file)
        let select = driver.send("s SELECT INBOX\r\n")
        _ = select
        _ = driver.send("n NOOP\r\n")
        let fetch = driver.send("f FETCH 1 (RFC822.SIZE BODY.PEEK[] BODY.PEEK[TEXT])\r\n")
        let canonical = text.replacingOccurrences(of: "\n", with: "\r\n")
        #expect(fetch.contains("RFC822.SIZE \(canonical.utf8.count)"))
        #expect(fetch.contains("BODY[] {\(canonical.utf8.count)}\r\n\(canonical)"))
        #expect(fetch.contains("BODY[TEXT] {14}\r\nline1\r\nline2\r\n"))
    }
}

import Glibc
import TestSupport

extension String {
    func replacingOccurrences(of target: String, with replacement: String) -> String {
        split(separator: Character(target), omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
