// MailStore: Maildir store, index, MIME structure, search (no sockets, no wire syntax).
