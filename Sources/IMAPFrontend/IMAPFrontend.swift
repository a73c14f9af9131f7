// IMAPFrontend: imap4 pre-login, routing, pooled back-end connections and relay (issue 6).
//
// Files: FrontendServer (service entry, per-loop contexts), FrontendConfiguration, ClientSession
// (pre-login and the client half of the relay), BackendPool and BackendConnection (the hop),
// BackendRouter (route table and rendezvous hashing), ClientAddressLimits, SASL, ResponseLine.
