#!/usr/bin/python3
"""Reads what monalpushd keeps on disk and checks it holds exactly what
the privacy policy names, decoding the store independently of the
daemon's code.

    privacy_check.py DBDIR LOGDIR [forbidden-string ...]

- every record of nodes.db (dumped with db5.3_dump) decodes into exactly
  the fields of DESIGN.md "Data" (version, app, type, token, secret,
  registering domain, registered, renewed, last_success, last_error),
  with no byte left over; keys are valid nodes;
- the database directory holds only Berkeley DB's own files;
- every log line is an operational line or one of the privacy events
  with exactly its fields;
- no forbidden string (secrets, message bodies, senders, key lines)
  occurs in any file under either directory.
Prints PASS:/FAIL: lines.
"""
import os
import re
import subprocess
import sys

failed = 0


def check(ok, what):
    global failed
    print(("PASS: " if ok else "FAIL: ") + what)
    if not ok:
        failed += 1


def dump(path):
    """key, value byte strings of a B-tree, from db_dump -p."""
    out = subprocess.run(["db5.3_dump", "-p", path], capture_output=True,
                         check=True).stdout.decode()
    lines = out.split("\n")
    body = lines[lines.index("HEADER=END") + 1:]
    items = []
    for line in body:
        if line == "DATA=END":
            break
        items.append(unescape(line[1:]))
    return list(zip(items[0::2], items[1::2]))


def unescape(s):
    b = bytearray()
    i = 0
    while i < len(s):
        if s[i] == "\\":
            if s[i + 1] == "\\":
                b.append(0x5c)
                i += 2
            else:
                b.append(int(s[i + 1:i + 3], 16))
                i += 3
        else:
            b.append(ord(s[i]))
            i += 1
    return bytes(b)


def decode(v):
    """The record layout, field by field; raises on any mismatch."""
    off = 0
    assert v[0] == 1, "layout version %d" % v[0]
    off = 1
    fields = {}

    def string(name, maxlen):
        nonlocal off
        n = v[off]
        assert 1 <= n <= maxlen, "%s length %d" % (name, n)
        fields[name] = v[off + 1:off + 1 + n]
        off += 1 + n

    string("app", 63)
    string("type", 7)
    string("token", 100)
    fields["secret"] = v[off:off + 32]
    off += 32
    string("domain", 255)
    for name in ("registered", "renewed", "last_success", "last_error"):
        fields[name] = int.from_bytes(v[off:off + 8], "big", signed=True)
        off += 8
    assert off == len(v), "%d bytes left over" % (len(v) - off)
    return fields


NODE = re.compile(rb"^[A-Za-z0-9-]{1,128}$")
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
JID = r"[^\s=]+"
HEX = r"[0-9a-f]{64,200}"
LINES = [
    re.compile(r"^%s (parent|xmppe|apnse|logd) (info|warning|debug): .*$"
               % STAMP),
    re.compile(r"^%s event (register|unregister) jid=%s node=[A-Za-z0-9-]+"
               r" token=%s$" % (STAMP, JID, HEX)),
    re.compile(r"^%s event push jid=%s node=[A-Za-z0-9-]+$" % (STAMP, JID)),
    re.compile(r"^%s event token-dead node=[A-Za-z0-9-]+ token=%s "
               r"status=\d+$" % (STAMP, HEX)),
    re.compile(r"^%s event sar-erase jid=%s$" % (STAMP, JID)),
]


def main():
    dbdir, logdir, forbidden = sys.argv[1], sys.argv[2], sys.argv[3:]
    now = int(subprocess.run(["date", "+%s"], capture_output=True)
              .stdout)

    records = dump(os.path.join(dbdir, "nodes.db"))
    check(len(records) > 0, "the store has records (%d)" % len(records))
    for k, v in records:
        try:
            f = decode(v)
        except (AssertionError, IndexError) as e:
            check(False, "record %r decodes into the policy's fields: %s"
                  % (k, e))
            continue
        ok = (NODE.match(k) is not None and f["type"] == b"apns" and
              0 < f["registered"] <= now and
              all(0 <= f[t] <= now for t in ("renewed", "last_success",
                                             "last_error")))
        check(ok, "record %s holds exactly the policy's fields"
              % k.decode(errors="replace"))
    tokens = dump(os.path.join(dbdir, "tokens.db"))
    check(len(tokens) == len(records),
          "the token index has one entry per record")

    ours = re.compile(r"^(nodes\.db|tokens\.db|__db\.\d+|log\.\d+|"
                      r"registry\.lock|DB_CONFIG)$")
    extra = [n for n in os.listdir(dbdir) if not ours.match(n)]
    check(not extra, "the database directory holds only the store (%s)"
          % " ".join(extra))

    nlines = 0
    for name in sorted(os.listdir(logdir)):
        with open(os.path.join(logdir, name), errors="replace") as fp:
            for line in fp:
                line = line.rstrip("\n")
                nlines += 1
                if not any(p.match(line) for p in LINES):
                    check(False, "log line of a known kind: %s" % line)
    check(nlines > 0, "%d log lines, each an operational line or a "
          "privacy event with exactly its fields" % nlines)

    for s in forbidden:
        hits = []
        for top in (dbdir, logdir):
            for root, _, files in os.walk(top):
                for n in files:
                    with open(os.path.join(root, n), "rb") as fp:
                        if s.encode() in fp.read():
                            hits.append(n)
        check(not hits, "%s... is nowhere on disk %s" % (s[:8], hits))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
