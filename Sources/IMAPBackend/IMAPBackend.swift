// IMAPBackend: imap4be sessions and command handlers (issue 5).
