#!/usr/bin/env python3
"""Capture Dovecot's ENVELOPE and BODYSTRUCTURE for every message of the MIME corpus.

Usage (with the peer rig's Dovecot running, see /work/shared/peers/README.md):
    python3 capture-dovecot.py [--host 127.0.0.1] [--port 10143] [--user user1] [--password pass]

For each Corpus/NAME.eml it APPENDs the file's exact bytes to a fresh mailbox, FETCHes
(ENVELOPE BODYSTRUCTURE) and writes Corpus/NAME.dovecot: the FETCH data as Dovecot sent it on the
wire (literals kept as {N} followed by CRLF and their bytes), or a line "NO <text>" when Dovecot
refused the APPEND. It then FETCHes BODY.PEEK[spec]<partial> for each spec in SECTIONS and writes
Corpus/NAME.sections: per spec a line "SPEC LENGTH" followed by LENGTH bytes and a newline, or
"SPEC NIL". Last it FETCHes BINARY.PEEK[part] and BINARY.SIZE[part] (RFC 3516) for each part in
BINARY_PARTS and writes Corpus/NAME.binary: "PART LENGTH SIZE" then LENGTH bytes and a newline, or
"PART NO" when Dovecot refused (unknown transfer encoding). Finally it runs each SEARCH in
SEARCHES over the whole mailbox and writes Corpus/search.dovecot: per search a line
"KEY<TAB>NEEDLE<TAB>names of the matching messages". The files are data captured from a real peer; do not edit them by hand.
"""
import argparse
import imaplib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "Corpus")
MAILBOX = "apus-mime-corpus"
SECTIONS = [
    "", "HEADER", "TEXT", "1", "1.MIME", "2", "2.MIME", "3", "1.1", "1.2", "2.1", "1.2.2", "2.2",
    "1.HEADER", "1.TEXT", "2.HEADER", "2.TEXT", "2.1.MIME", "HEADER.FIELDS (FROM SUBJECT)",
    "HEADER.FIELDS.NOT (FROM SUBJECT DATE)", "2.HEADER.FIELDS (subject to)", "1.2.2.MIME",
    "TEXT<5.10>", "<0.20>", "1<100000.5>", "HEADER<0.0>",
]


def wire_form(fetch_data):
    """Rebuild the wire bytes of one FETCH response from imaplib's pieces."""
    out = b""
    for piece in fetch_data:
        if isinstance(piece, tuple):
            out += piece[0] + b"\r\n" + piece[1]
        else:
            out += piece
    return out

SEARCHES = [
    ("BODY", "everything must go"), ("BODY", "CAFÉ CRÈME BRÛLÉE"), ("BODY", "ship it"), ("BODY", "Hello"),
    ("BODY", "grüße aus köln"), ("BODY", "Subject: Meeting notes"), ("BODY", "second body"),
    ("BODY", "innermost body"), ("BODY", "latin-1 name"), ("BODY", "line two"), ("BODY", "hidden body"),
    ("BODY", "soft-broken here and continues"), ("BODY", "Fwd: Meeting"), ("TEXT", "Fwd: Meeting"),
    ("TEXT", "und Grüße"), ("TEXT", "nowhere"), ("SUBJECT", "hello world und grüße"), ("FROM", "andré"),
    ("SUBJECT", "GRÜßE"), ("SUBJECT", "grüsse"), ("HEADER Message-ID", ""), ("HEADER X-Long", "xxxxxxxxxx"),
    ("TO", "undisclosed"), ("CC", "carl"), ("BODY", "PDF-1.4"), ("BODY", "Spring sale — everything"),
]
BINARY_PARTS = ["1", "2", "3", "1.1", "1.2", "1.2.1", "1.2.2", "2.1", "2.2"]


def fetch_binary(imap, number, part):
    """One "PART LENGTH SIZE" record (or "PART NO") for BINARY.PEEK[part] and BINARY.SIZE[part]."""
    try:
        typ, data = imap.fetch(number, "(BINARY.PEEK[" + part + "] BINARY.SIZE[" + part + "])")
    except imaplib.IMAP4.error:
        typ, data = "NO", []
    if typ != "OK":
        return part.encode() + b" NO\n"
    body = b""
    rest = b""
    for piece in data:
        if isinstance(piece, tuple):
            body = piece[1]
        else:
            rest += piece
    size = rest.split(b"BINARY.SIZE[" + part.encode() + b"] ")[1].split(b")")[0]
    return part.encode() + b" " + str(len(body)).encode() + b" " + size + b"\n" + body + b"\n"


def fetch_section(imap, number, spec):
    """One "SPEC LENGTH" record (or "SPEC NIL") for BODY.PEEK[spec]."""
    section, _, partial = spec.partition("<")
    item = "BODY.PEEK[" + section + "]" + ("<" + partial if partial else "")
    typ, data = imap.fetch(number, "(" + item + ")")
    assert typ == "OK", data
    for piece in data:
        if isinstance(piece, tuple):
            return spec.encode() + b" " + str(len(piece[1])).encode() + b"\n" + piece[1] + b"\n"
    text = b"".join(p for p in data if isinstance(p, bytes))
    if text.rstrip(b")").endswith(b"NIL"):
        return spec.encode() + b" NIL\n"
    if text.rstrip(b")").endswith(b'""'):
        return spec.encode() + b" 0\n\n"
    raise AssertionError(f"unexpected answer to {item}: {data!r}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=10143)
    parser.add_argument("--user", default="user1")
    parser.add_argument("--password", default="pass")
    args = parser.parse_args()

    imap = imaplib.IMAP4(args.host, args.port)
    imap.login(args.user, args.password)
    imap.delete(MAILBOX)
    typ, data = imap.create(MAILBOX)
    assert typ == "OK", data
    names = sorted(n for n in os.listdir(CORPUS) if n.endswith(".eml"))
    for name in names:
        with open(os.path.join(CORPUS, name), "rb") as f:
            message = f.read()
        target = os.path.join(CORPUS, name[:-4] + ".dovecot")
        try:
            typ, data = imap.append(MAILBOX, None, None, message)
        except imaplib.IMAP4.error as error:
            typ, data = "NO", [str(error).encode()]
        if typ != "OK":
            with open(target, "wb") as f:
                f.write(b"NO " + b" ".join(d for d in data if d) + b"\n")
            print(f"{name}: APPEND refused: {data}")
            continue
        imap.select(MAILBOX)
        typ, data = imap.search(None, "ALL")
        last = data[0].split()[-1]
        typ, data = imap.fetch(last, "(ENVELOPE BODYSTRUCTURE)")
        assert typ == "OK", data
        wire = wire_form(data)
        # Strip the message number: keep "(ENVELOPE ... BODYSTRUCTURE ...)".
        wire = wire[wire.index(b"("):]
        with open(target, "wb") as f:
            f.write(wire + b"\n")
        print(f"{name}: {len(wire)} bytes")
        with open(os.path.join(CORPUS, name[:-4] + ".sections"), "wb") as f:
            for spec in SECTIONS:
                f.write(fetch_section(imap, last, spec))
        with open(os.path.join(CORPUS, name[:-4] + ".binary"), "wb") as f:
            for part in BINARY_PARTS:
                f.write(fetch_binary(imap, last, part))
    appended = [n[:-4] for n in names if not open(os.path.join(CORPUS, n[:-4] + ".dovecot"), "rb").read().startswith(b"NO ")]
    with open(os.path.join(CORPUS, "search.dovecot"), "wb") as f:
        for key, needle in SEARCHES:
            imap.literal = needle.encode()
            typ, data = imap.search("UTF-8", *key.split(" "))
            assert typ == "OK", data
            found = [appended[int(n) - 1] for n in data[0].split()]
            f.write(key.encode() + b"\t" + needle.encode() + b"\t" + " ".join(found).encode() + b"\n")
    imap.logout()


if __name__ == "__main__":
    sys.exit(main())
