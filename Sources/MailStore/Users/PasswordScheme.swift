// MailStore: password schemes of Dovecot's passwd-files, verified and made with libcrypt and OpenSSL
// (through CShims).
//
//     {SHA512-CRYPT}$6$salt$hash       {SHA256-CRYPT}$5$…   {BLF-CRYPT}$2b$…   {CRYPT}/{MD5-CRYPT}…
//     {PBKDF2-SHA512}$pbkdf2-sha512$<iterations>$<base64 salt>$<base64 hash>   (Apus's own format)
//     {PBKDF2}$1$<salt>$<rounds>$<hex hash>                                    (Dovecot's, SHA-1)
//     {SHA512} {SSHA512} {SHA256} {SSHA256} {SHA} {SSHA}: base64 (or .HEX) of digest(pw [+ salt]) [+ salt]
//     {PLAIN} {CLEAR} {CLEARTEXT}

import CShims

/// A scheme Apus can make new hashes with.
public enum PasswordScheme: String, Sendable, CaseIterable {
    case sha512Crypt = "SHA512-CRYPT"
    case pbkdf2SHA512 = "PBKDF2-SHA512"

    /// Iterations of new PBKDF2-SHA512 hashes.
    public static let pbkdf2Iterations = 100_000

    /// Hashes `password` with a fresh random salt; the result is `{SCHEME}…` as stored in the
    /// passwd-file. Nil when the system's crypto refused (no entropy, NUL in a crypt password).
    public func hash(_ password: [UInt8]) -> String? {
        switch self {
        case .sha512Crypt:
            var setting = [CChar](repeating: 0, count: 128)
            guard cshim_crypt_gensalt("$6$", 0, &setting, setting.count) > 0,
                let hashed = PasswordVerifier.crypt(password, setting: PasswordVerifier.string(fromNulTerminated: setting))
            else { return nil }
            return "{SHA512-CRYPT}" + hashed
        case .pbkdf2SHA512:
            var salt = [UInt8](repeating: 0, count: 16)
            guard cshim_random_bytes(&salt, salt.count) == 0,
                let derived = PasswordVerifier.pbkdf2("SHA512", password, salt: salt,
                                                      iterations: PasswordScheme.pbkdf2Iterations, length: 64)
            else { return nil }
            return "{PBKDF2-SHA512}$pbkdf2-sha512$\(PasswordScheme.pbkdf2Iterations)$\(Base64.encode(salt))$"
                + Base64.encode(derived)
        }
    }
}

/// Checks a password against a stored `{SCHEME}hash`. Synchronous and CPU-heavy for the crypt and
/// PBKDF2 schemes: the back end runs it on a worker thread. Comparisons take constant time.
public enum PasswordVerifier {
    /// Longest stored hash considered (a longer one is refused, not parsed).
    static let maximumStoredLength = 1024

    /// True when `password` matches `stored`. A stored value without `{SCHEME}` is taken as
    /// {CRYPT}, as Dovecot does. Unknown schemes never match.
    public static func verify(_ password: [UInt8], against stored: String) -> Bool {
        guard stored.utf8.count <= maximumStoredLength else { return false }
        var scheme = "CRYPT"
        var value = Substring(stored)
        if stored.hasPrefix("{"), let close = stored.firstIndex(of: "}") {
            scheme = stored[stored.index(after: stored.startIndex)..<close].uppercased()
            value = stored[stored.index(after: close)...]
        }
        var encoding = "B64"
        if let dot = scheme.lastIndex(of: "."), ["HEX", "B64", "BASE64"].contains(String(scheme[scheme.index(after: dot)...])) {
            encoding = String(scheme[scheme.index(after: dot)...])
            scheme = String(scheme[..<dot])
        }
        switch scheme {
        case "SHA512-CRYPT", "SHA256-CRYPT", "BLF-CRYPT", "CRYPT", "MD5-CRYPT", "DES-CRYPT":
            guard let hashed = crypt(password, setting: String(value)) else { return false }
            return equal(Array(hashed.utf8), Array(value.utf8))
        case "PBKDF2-SHA512":
            return verifyPBKDF2SHA512(password, value)
        case "PBKDF2":
            return verifyDovecotPBKDF2(password, value)
        case "PLAIN", "CLEAR", "CLEARTEXT":
            return equal(password, Array(value.utf8))
        case "SHA512", "SSHA512", "SHA256", "SSHA256", "SHA", "SHA1", "SSHA":
            let digest = scheme.hasSuffix("512") ? "SHA512" : scheme.hasSuffix("256") ? "SHA256" : "SHA1"
            let decoded = encoding == "HEX" ? Hex.decode(value) : Base64.decode(value)
            guard let decoded else { return false }
            let length = digest == "SHA512" ? 64 : digest == "SHA256" ? 32 : 20
            let salted = scheme.hasPrefix("SS")
            guard salted ? decoded.count >= length : decoded.count == length else { return false }
            let salt = Array(decoded[length...])
            guard let computed = Self.digest(digest, password + salt) else { return false }
            return equal(computed, Array(decoded[..<length]))
        default:
            return false
        }
    }

    /// `$pbkdf2-sha512$<iterations>$<base64 salt>$<base64 hash>`
    private static func verifyPBKDF2SHA512(_ password: [UInt8], _ value: Substring) -> Bool {
        let parts = value.split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count == 5, parts[1] == "pbkdf2-sha512", let iterations = Int(parts[2]),
            iterations > 0, iterations <= 10_000_000, let salt = Base64.decode(parts[3]),
            let expected = Base64.decode(parts[4]), !expected.isEmpty, expected.count <= 64,
            let derived = pbkdf2("SHA512", password, salt: salt, iterations: iterations, length: expected.count)
        else { return false }
        return equal(derived, expected)
    }

    /// Dovecot's `$1$<salt>$<rounds>$<hex hash>` (PBKDF2-HMAC-SHA1, 20 bytes).
    private static func verifyDovecotPBKDF2(_ password: [UInt8], _ value: Substring) -> Bool {
        let parts = value.split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count == 5, parts[1] == "1", let rounds = Int(parts[3]), rounds > 0, rounds <= 10_000_000,
            let expected = Hex.decode(parts[4]), !expected.isEmpty, expected.count <= 64,
            let derived = pbkdf2("SHA1", password, salt: Array(parts[2].utf8), iterations: rounds,
                                 length: expected.count)
        else { return false }
        return equal(derived, expected)
    }

    static func crypt(_ password: [UInt8], setting: String) -> String? {
        guard !password.contains(0) else { return nil }
        var output = [CChar](repeating: 0, count: 512)
        let phrase = password.map { CChar(bitPattern: $0) } + [0]
        guard cshim_crypt(phrase, setting, &output, output.count) > 0 else { return nil }
        let result = string(fromNulTerminated: output)
        // libcrypt signals failure with a hash starting with '*'.
        return result.hasPrefix("*") ? nil : result
    }

    static func string(fromNulTerminated buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func pbkdf2(_ digest: String, _ password: [UInt8], salt: [UInt8], iterations: Int, length: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: length)
        let status = cshim_pbkdf2_hmac(digest, password, password.count, salt, salt.count, UInt32(iterations), &out, length)
        return status == 0 ? out : nil
    }

    static func digest(_ name: String, _ data: [UInt8]) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: 64)
        let length = cshim_digest(name, data, data.count, &out)
        return length > 0 ? Array(out[..<Int(length)]) : nil
    }

    static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        return cshim_constant_time_compare(a, b, a.count) == 0
    }
}
