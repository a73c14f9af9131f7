// IMAPBackend: the CAPABILITY lists, rendered once per server for each session state.

import Glibc
import IMAPProtocol
import Reactor
import Telemetry

/// The capability lists a session shows, pre-rendered (RFC 9051 6.1.1, 7.2.2). Before login a plain
/// connection offers STARTTLS and, when configured, LOGINDISABLED instead of AUTH=; after login the
/// list names the extensions. UNAUTHENTICATE appears only to trusted proxies (RFC 8437 section 8).
struct BackendCapabilities: Sendable {
    /// Indexed by `[trusted ? 1 : 0]`.
    let plainBeforeLogin: [IMAPCapabilitySet]
    let tlsBeforeLogin: [IMAPCapabilitySet]
    let afterLogin: [IMAPCapabilitySet]

    init(configuration: BackendConfiguration) {
        let appendLimit = configuration.limits.maxAppendLiteralSize
        let common = ["IMAP4rev1", "IMAP4rev2", "SASL-IR", "LITERAL+", "ENABLE", "ID", "IDLE"]
        let auth = ["AUTH=PLAIN", "AUTH=LOGIN"]
        let extensions = [
            "NAMESPACE", "UNSELECT", "UIDPLUS", "MOVE", "CHILDREN", "SPECIAL-USE", "CREATE-SPECIAL-USE",
            "LIST-EXTENDED", "LIST-STATUS", "ESEARCH", "BINARY", "MULTIAPPEND", "APPENDLIMIT=\(appendLimit)",
            "STATUS=SIZE", "SAVEDATE",
        ]
        func both(_ names: [String]) -> [IMAPCapabilitySet] {
            [IMAPCapabilitySet(names), IMAPCapabilitySet(names + ["UNAUTHENTICATE"])]
        }
        var plain = common
        if configuration.tls != nil { plain.append("STARTTLS") }
        plain += configuration.loginDisabledOnPlain && configuration.tls != nil ? ["LOGINDISABLED"] : auth
        plainBeforeLogin = [IMAPCapabilitySet(plain), IMAPCapabilitySet(plain)]
        tlsBeforeLogin = [IMAPCapabilitySet(common + auth), IMAPCapabilitySet(common + auth)]
        afterLogin = both(common + extensions)
    }
}
