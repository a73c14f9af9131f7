// IMAPFrontend: imap4 pre-login, routing, pooled back-end connections and relay (issue 6).
