// IMAPBackend: which commands are valid in which state, and how each may meet untagged updates.

import Glibc
import IMAPProtocol
import Reactor
import Telemetry

/// The session states of RFC 9051 section 3.
enum SessionState: Sendable {
    case notAuthenticated, authenticated, selected, logout
}

/// One row of the command table.
struct CommandRule: Sendable {
    /// Metric and log name.
    let name: String
    /// The command's place in `BackendMetrics.commandNames`: its counters are found by index, not by
    /// hashing the name on every command.
    let metricIndex: Int
    let notAuthenticated: Bool
    let authenticated: Bool
    let selected: Bool
    /// Whether EXPUNGE responses may be sent when the command ends. RFC 3501 7.4.1 and RFC 9051 7.5.1
    /// forbid it after FETCH, STORE and SEARCH (not their UID forms): the client may still be using
    /// sequence numbers it sent, so those commands get only FETCH FLAGS updates.
    let allowsExpunge: Bool

    func isValid(in state: SessionState) -> Bool {
        switch state {
        case .notAuthenticated: return notAuthenticated
        case .authenticated: return authenticated
        case .selected: return selected
        case .logout: return false
        }
    }
}

/// The command table (RFC 9051 section 6, plus the extensions offered).
enum CommandTable {
    private static let any = (true, true, true)
    private static let nonAuth = (true, false, false)
    private static let auth = (false, true, true)
    private static let selectedOnly = (false, false, true)

    private static func rule(_ name: String, _ states: (Bool, Bool, Bool), expunge: Bool = true) -> CommandRule {
        CommandRule(name: name, metricIndex: BackendMetrics.commandNames.firstIndex(of: name)
                        ?? BackendMetrics.commandNames.count - 1,
                    notAuthenticated: states.0, authenticated: states.1, selected: states.2, allowsExpunge: expunge)
    }

    static let capability = rule("CAPABILITY", any)
    static let noop = rule("NOOP", any)
    static let logout = rule("LOGOUT", any)
    static let id = rule("ID", any)
    static let startTLS = rule("STARTTLS", nonAuth)
    static let authenticate = rule("AUTHENTICATE", nonAuth)
    static let login = rule("LOGIN", nonAuth)
    /// RFC 5161 section 3.1: ENABLE only in the authenticated state.
    static let enable = rule("ENABLE", (false, true, false))
    static let unauthenticate = rule("UNAUTHENTICATE", auth)
    static let select = rule("SELECT", auth)
    static let examine = rule("EXAMINE", auth)
    static let create = rule("CREATE", auth)
    static let delete = rule("DELETE", auth)
    static let rename = rule("RENAME", auth)
    static let subscribe = rule("SUBSCRIBE", auth)
    static let unsubscribe = rule("UNSUBSCRIBE", auth)
    static let list = rule("LIST", auth)
    static let lsub = rule("LSUB", auth)
    static let namespace = rule("NAMESPACE", auth)
    static let status = rule("STATUS", auth)
    static let append = rule("APPEND", auth)
    static let idle = rule("IDLE", auth)
    static let check = rule("CHECK", selectedOnly)
    static let close = rule("CLOSE", selectedOnly)
    static let unselect = rule("UNSELECT", selectedOnly)
    static let expunge = rule("EXPUNGE", selectedOnly)
    static let search = rule("SEARCH", selectedOnly, expunge: false)
    static let uidSearch = rule("SEARCH", selectedOnly)
    static let fetch = rule("FETCH", selectedOnly, expunge: false)
    static let uidFetch = rule("FETCH", selectedOnly)
    static let store = rule("STORE", selectedOnly, expunge: false)
    static let uidStore = rule("STORE", selectedOnly)
    static let copy = rule("COPY", selectedOnly)
    static let move = rule("MOVE", selectedOnly)
    static let other = rule("OTHER", auth)

    /// The rule for a parsed command.
    static func rule(for command: IMAPCommand) -> CommandRule {
        switch command {
        case .capability: return capability
        case .noop: return noop
        case .logout: return logout
        case .startTLS: return startTLS
        case .authenticate: return authenticate
        case .login: return login
        case .enable: return enable
        case .select: return select
        case .examine: return examine
        case .create: return create
        case .delete: return delete
        case .rename: return rename
        case .subscribe: return subscribe
        case .unsubscribe: return unsubscribe
        case .list: return list
        case .lsub: return lsub
        case .namespace: return namespace
        case .status: return status
        case .append: return append
        case .idle: return idle
        case .check: return check
        case .close: return close
        case .unselect: return unselect
        case .expunge, .uidExpunge: return expunge
        case .search(_, let uid): return uid ? uidSearch : search
        case .fetch(_, _, _, let uid): return uid ? uidFetch : fetch
        case .store(_, _, _, let uid): return uid ? uidStore : store
        case .copy: return copy
        case .move: return move
        case .id: return id
        case .unauthenticate: return unauthenticate
        case .compress, .getQuota, .getQuotaRoot, .sort, .thread: return other
        }
    }
}
