// IMAPFrontend: SASL PLAIN and LOGIN as the front end receives them, and the base64 they travel in.

/// Base64 (RFC 4648 section 4) for SASL exchanges: strict decoding, padding required.
enum SASLBase64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    private static func value(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): return byte - UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): return byte - UInt8(ascii: "a") + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0") + 52
        case UInt8(ascii: "+"): return 62
        case UInt8(ascii: "/"): return 63
        default: return nil
        }
    }

    /// Decodes `text`; nil when it is not valid base64.
    static func decode(_ text: UnsafeRawBufferPointer) -> [UInt8]? {
        guard text.count % 4 == 0 else { return nil }
        var output: [UInt8] = []
        output.reserveCapacity(text.count / 4 * 3)
        var index = 0
        while index < text.count {
            let isLast = index + 4 == text.count
            var quantum: UInt32 = 0
            var padding = 0
            for offset in 0..<4 {
                let byte = text[index + offset]
                if byte == UInt8(ascii: "=") && isLast && offset >= 2 {
                    padding += 1
                    quantum <<= 6
                    continue
                }
                guard padding == 0, let sextet = value(byte) else { return nil }
                quantum = quantum << 6 | UInt32(sextet)
            }
            output.append(UInt8(truncatingIfNeeded: quantum >> 16))
            if padding < 2 { output.append(UInt8(truncatingIfNeeded: quantum >> 8)) }
            if padding < 1 { output.append(UInt8(truncatingIfNeeded: quantum)) }
            index += 4
        }
        return output
    }

    /// Encodes `bytes` with padding.
    static func encode(_ bytes: [UInt8]) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index < bytes.count {
            let count = min(3, bytes.count - index)
            var quantum = UInt32(bytes[index]) << 16
            if count > 1 { quantum |= UInt32(bytes[index + 1]) << 8 }
            if count > 2 { quantum |= UInt32(bytes[index + 2]) }
            output.append(alphabet[Int(quantum >> 18 & 63)])
            output.append(alphabet[Int(quantum >> 12 & 63)])
            output.append(count > 1 ? alphabet[Int(quantum >> 6 & 63)] : UInt8(ascii: "="))
            output.append(count > 2 ? alphabet[Int(quantum & 63)] : UInt8(ascii: "="))
            index += 3
        }
        return output
    }
}

/// A client's credentials, held only until they are sent on to the back end.
struct LoginCredentials {
    /// The authorization identity (RFC 4616), usually empty.
    var authorizationIdentity: [UInt8]
    /// The user name: what routing uses.
    var user: [UInt8]
    var password: [UInt8]

    // message = [authzid] UTF8NUL authcid UTF8NUL passwd    (RFC 4616 section 2)
    /// Splits a decoded SASL PLAIN message; nil when it is malformed or has an empty user.
    init?(plainMessage message: [UInt8]) {
        guard let first = message.firstIndex(of: 0) else { return nil }
        guard let second = message[(first + 1)...].firstIndex(of: 0) else { return nil }
        let user = Array(message[(first + 1)..<second])
        let password = Array(message[(second + 1)...])
        guard !user.isEmpty, !password.contains(0), user.count <= 255, password.count <= 255 else { return nil }
        self.init(authorizationIdentity: Array(message[..<first]), user: user, password: password)
    }

    init(authorizationIdentity: [UInt8] = [], user: [UInt8], password: [UInt8]) {
        self.authorizationIdentity = authorizationIdentity
        self.user = user
        self.password = password
    }

    /// The identity whose mailbox is opened: the authorization identity when given, else the user.
    var mailboxOwner: [UInt8] { authorizationIdentity.isEmpty ? user : authorizationIdentity }

    /// The base64 SASL PLAIN initial response carrying these credentials to the back end.
    var plainInitialResponse: [UInt8] {
        SASLBase64.encode(authorizationIdentity + [0] + user + [0] + password)
    }
}
