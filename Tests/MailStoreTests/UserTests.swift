// MailStoreTests: passwd-file users and password schemes.

import CShims
import Glibc
import Synchronization
import Testing
@testable import MailStore

@Suite struct PasswordTests {
    let password = Array("correct horse".utf8)
    let wrong = Array("correct horsE".utf8)

    @Test(arguments: PasswordScheme.allCases)
    func newHashesVerifyAndRejectWrongPasswords(_ scheme: PasswordScheme) throws {
        let hashed = try #require(scheme.hash(password))
        #expect(hashed.hasPrefix("{\(scheme.rawValue)}"))
        #expect(PasswordVerifier.verify(password, against: hashed))
        #expect(!PasswordVerifier.verify(wrong, against: hashed))
        // Fresh salt each time.
        #expect(scheme.hash(password) != hashed)
    }

    @Test func pbkdf2FormatIsTheDocumentedOne() throws {
        let hashed = try #require(PasswordScheme.pbkdf2SHA512.hash(password))
        let parts = hashed.dropFirst("{PBKDF2-SHA512}".count).split(separator: "$")
        #expect(parts.count == 4)
        #expect(parts[0] == "pbkdf2-sha512")
        #expect(parts[1] == "\(PasswordScheme.pbkdf2Iterations)")
        #expect(Base64.decode(parts[2])?.count == 16)
        #expect(Base64.decode(parts[3])?.count == 64)
    }

    /// Hashes made by other tools (doveadm pw, Python's hashlib/crypt) for "correct horse".
    @Test(arguments: [
        "{PLAIN}correct horse",
        "{CLEARTEXT}correct horse",
        "{SHA256-CRYPT}$5$rounds=5000$saltsalt$myjXcpMpE2Ofk7fj9hqyNYSn6lmWG4Mqnjx.KIRRr4/",
        "{SHA512}" + Base64.encode(PasswordVerifier.digest("SHA512", Array("correct horse".utf8))!),
        "{SHA256.HEX}" + Hex.encode(PasswordVerifier.digest("SHA256", Array("correct horse".utf8))!),
        "{SSHA512}" + Base64.encode(PasswordVerifier.digest("SHA512", Array("correct horse".utf8) + [1, 2, 3, 4])!
            + [1, 2, 3, 4]),
        "{SSHA256}" + Base64.encode(PasswordVerifier.digest("SHA256", Array("correct horse".utf8) + [9, 9])! + [9, 9]),
    ])
    func readsTheCommonDovecotSchemes(_ stored: String) {
        #expect(PasswordVerifier.verify(Array("correct horse".utf8), against: stored))
        #expect(!PasswordVerifier.verify(Array("wrong".utf8), against: stored))
    }

    @Test func cryptSchemesMadeByLibcryptVerify() throws {
        for prefix in ["$6$", "$5$", "$2b$", "$y$"] {
            var setting = [CChar](repeating: 0, count: 128)
            #expect(cshim_crypt_gensalt(prefix, 0, &setting, setting.count) > 0)
            let hashed = try #require(PasswordVerifier.crypt(password, setting: PasswordVerifier.string(fromNulTerminated: setting)))
            let scheme = prefix == "$6$" ? "SHA512-CRYPT" : prefix == "$5$" ? "SHA256-CRYPT" : prefix == "$2b$" ? "BLF-CRYPT" : "CRYPT"
            #expect(PasswordVerifier.verify(password, against: "{\(scheme)}" + hashed))
            #expect(PasswordVerifier.verify(password, against: hashed))  // no scheme: CRYPT
            #expect(!PasswordVerifier.verify(wrong, against: "{\(scheme)}" + hashed))
        }
    }

    @Test(arguments: ["{UNKNOWN}x", "{PBKDF2-SHA512}$pbkdf2-sha512$0$AA==$AA==", "{PBKDF2-SHA512}garbage", "{SHA512}!!",
                      "{SSHA512}c2hvcnQ=", "{SHA512-CRYPT}", "", String(repeating: "x", count: 5000)])
    func malformedStoredHashesNeverMatch(_ stored: String) {
        #expect(!PasswordVerifier.verify(Array("x".utf8), against: stored))
        #expect(!PasswordVerifier.verify([], against: stored))
    }

    @Test func passwordsWithNULNeverMatchCryptHashes() throws {
        let hashed = try #require(PasswordScheme.sha512Crypt.hash(Array("ab".utf8)))
        #expect(!PasswordVerifier.verify([UInt8(ascii: "a"), 0, UInt8(ascii: "b")], against: hashed))
    }
}

@Suite struct PasswordFileTests {
    @Test func readsDovecotLinesAndRereadsWhenTheFileChanges() throws {
        let temporary = TemporaryDirectory()
        let path = temporary.path + "/users"
        writeFile(path, Array("""
            # comment
            alice:{PLAIN}one:1000:1000::/home/alice::userdb_quota_rule=*:storage=1G
            bob:{PLAIN}two
            broken
            
            """.utf8))
        let users = PasswordFile(path: path)
        #expect(users.verify(user: "alice", password: Array("one".utf8)))
        #expect(!users.verify(user: "alice", password: Array("two".utf8)))
        #expect(users.verify(user: "bob", password: Array("two".utf8)))
        #expect(!users.verify(user: "carol", password: Array("".utf8)))
        #expect(try users.entry(for: "alice")?.otherFields.last == "userdb_quota_rule=*:storage=1G")
        #expect(users.entryIfUnchanged(for: "alice")?.password == "{PLAIN}one")
        writeFile(path, Array(("alice:{PLAIN}changed-and-longer\nlong:{PLAIN}" + String(repeating: "x", count: 5000)
            + "\n").utf8))
        // Without reading, a changed file is no answer (the event loop's check never reads it).
        #expect(users.entryIfUnchanged(for: "alice") == nil)
        #expect(users.verify(user: "alice", password: Array("changed-and-longer".utf8)))
        #expect(!users.verify(user: "bob", password: Array("two".utf8)))
        #expect(users.entryIfUnchanged(for: "alice")?.password == "{PLAIN}changed-and-longer")
        #expect(users.entryIfUnchanged(for: "bob") == nil)
        // Lines over PasswordFile.maximumLineLength are skipped.
        #expect(try users.entry(for: "long") == nil)
    }

    @Test func setPasswordAddsAndReplacesKeepingOtherFields() throws {
        let temporary = TemporaryDirectory()
        let path = temporary.path + "/users"
        writeFile(path, Array("alice:{PLAIN}one:1000:1000::/home/alice::\n".utf8))
        let users = PasswordFile(path: path)
        try users.setPassword(user: "carol", password: Array("new".utf8))
        try users.setPassword(user: "alice", password: Array("rotated".utf8), scheme: .pbkdf2SHA512)
        let reread = PasswordFile(path: path)
        #expect(reread.verify(user: "carol", password: Array("new".utf8)))
        #expect(reread.verify(user: "alice", password: Array("rotated".utf8)))
        #expect(try reread.entry(for: "carol")?.password.hasPrefix("{SHA512-CRYPT}$6$") == true)
        #expect(try reread.entry(for: "alice")?.otherFields == ["1000", "1000", "", "/home/alice", "", ""])
        #expect(throws: StoreError.invalidUserName) { try users.setPassword(user: "a:b", password: []) }
    }

    @Test func addChangeAndRemoveRefuseWhatDoesNotFit() throws {
        let temporary = TemporaryDirectory()
        let users = PasswordFile(path: temporary.path + "/users")
        try users.setPassword(user: "alice", password: Array("one".utf8), change: .add)
        #expect(throws: StoreError.userExists) { try users.setPassword(user: "alice", password: [1], change: .add) }
        #expect(throws: StoreError.noSuchUser) { try users.setPassword(user: "bob", password: [1], change: .change) }
        #expect(throws: StoreError.emptyPassword) { try users.setPassword(user: "bob", password: []) }
        try users.setPassword(user: "bob", password: Array("two".utf8), change: .add)
        try users.setPassword(user: "alice", password: Array("three".utf8), change: .change)
        #expect(try users.userNames() == ["alice", "bob"])
        #expect(users.verify(user: "alice", password: Array("three".utf8)))
        try users.removeUser("alice")
        #expect(throws: StoreError.noSuchUser) { try users.removeUser("alice") }
        #expect(try users.userNames() == ["bob"])
        #expect(!PasswordFile(path: users.path).verify(user: "alice", password: Array("three".utf8)))
    }

    /// A name becomes a directory under the data directory: nothing that could leave it is accepted.
    @Test(arguments: ["", "..", "../etc", "a/b", ".hidden", "-rf", "a b", "a\nb", "a:b", "#x", "é",
                      String(repeating: "a", count: UserName.maximumLength + 1)])
    func namesThatCouldEscapeTheDataDirectoryAreRefused(name: String) throws {
        let temporary = TemporaryDirectory()
        let users = PasswordFile(path: temporary.path + "/users")
        #expect(throws: StoreError.invalidUserName) { try users.setPassword(user: name, password: [1]) }
        #expect(access(temporary.path + "/users", F_OK) != 0)
    }

    @Test func rewritesKeepCommentsAndLinesApusSkips() throws {
        let temporary = TemporaryDirectory()
        let path = temporary.path + "/users"
        let original = "# users of example.com\nalice:{PLAIN}one::\n\nbroken\nbob:{PLAIN}two\n"
        writeFile(path, Array(original.utf8))
        let users = PasswordFile(path: path)
        try users.setPassword(user: "carol", password: Array("three".utf8))
        try users.removeUser("bob")
        let text = String(decoding: readFile(path) ?? [], as: UTF8.self)
        #expect(text.hasPrefix("# users of example.com\nalice:{PLAIN}one::\n\nbroken\ncarol:{SHA512-CRYPT}$6$"))
        #expect(text.hasSuffix("\n") && !text.contains("bob"))
        #expect(try users.userNames() == ["alice", "carol"])
    }

    @Test func rewritesKeepTheFilesOwnerAndMode() throws {
        let temporary = TemporaryDirectory()
        let path = temporary.path + "/users"
        writeFile(path, Array("alice:{PLAIN}one\n".utf8))
        #expect(chmod(path, 0o640) == 0)
        #expect(chown(path, 65534, 65534) == 0 || geteuid() != 0)
        var before = stat()
        stat(path, &before)
        try PasswordFile(path: path).setPassword(user: "bob", password: Array("two".utf8))
        var after = stat()
        stat(path, &after)
        #expect(after.st_ino != before.st_ino, "replaced by rename, not rewritten in place")
        #expect(after.st_mode & 0o7777 == 0o640)
        #expect(after.st_uid == before.st_uid && after.st_gid == before.st_gid)
    }

    /// Two writers (two instances, as two `apus user add` processes would be) adding users at the
    /// same time: the lock file serialises their read-modify-write, so no addition is lost.
    @Test func concurrentWritersLoseNoUser() throws {
        let temporary = TemporaryDirectory()
        let path = temporary.path + "/users"
        let failures = Mutex(0)
        let perWriter = 40
        var threads: [pthread_t] = []
        for writer in 0..<2 {
            let work: @Sendable () -> Void = {
                let users = PasswordFile(path: path)
                for number in 0..<perWriter {
                    do throws(StoreError) {
                        try users.setPassword(user: "w\(writer)u\(number)", password: [1])
                    } catch {
                        failures.withLock { $0 += 1 }
                    }
                }
            }
            threads.append(try #require(startThread(work)))
        }
        for thread in threads { pthread_join(thread, nil) }
        #expect(failures.withLock { $0 } == 0)
        #expect(Set(try PasswordFile(path: path).userNames()).count == 2 * perWriter)
    }
}

/// Runs `body` on a new thread; join it with pthread_join.
private func startThread(_ body: @escaping @Sendable () -> Void) -> pthread_t? {
    final class Box: @unchecked Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    var thread = pthread_t()
    let context = Unmanaged.passRetained(Box(body)).toOpaque()
    let result = pthread_create(&thread, nil, { context in
        let box = Unmanaged<AnyObject>.fromOpaque(context!).takeRetainedValue() as! Box
        box.body()
        return nil
    }, context)
    return result == 0 ? thread : nil
}
