#!/usr/bin/env python3
"""Scan what a run left behind (logs, status, events, metrics) for the pre-shared keys and the derived keys.

  secrets.py --psk PSK [--psk PSK ...] --keys-from CHARON_LOG [...] FILE_OR_DIR [...]

The derived keys (SK_d/ai/ar/ei/er/pi/pr and every CHILD_SA's ESP keys) are read from strongSwan logs written
with `ike = 4` and `chd = 4` (the AWS side of the lab logs them: LAB_AWS_LOG_KEYS=1); both ends of a tunnel hold
the same keys, so they are exactly what the relay must never print. Each secret is looked for as raw bytes, hex
(lower/upper, with or without separators), base64 and Rust's Debug list of numbers. Prints where a secret was
found by its name (never its value); exits 1 on any hit, and also when no derived key could be read (a scan
for nothing proves nothing).
"""
import base64
import os
import re
import sys

# "Sk_ei secret => 16 bytes @ 0x...", "encryption initiator key => 16 bytes @ 0x...", then hex-dump lines
# "   0: 0A 1B ...". strongSwan's filelog puts a time and thread prefix before each line.
HEAD = re.compile(r"((?:Sk_\w+ secret)|(?:(?:encryption|integrity) (?:initiator|responder) key)) => (\d+) bytes @")
DUMP = re.compile(r"\s+(\d+): ((?:[0-9A-F]{2} ){1,16})")


def keys_from(path):
    keys = []
    name, want, buf = None, 0, b""
    with open(path, errors="replace") as f:
        for line in f:
            m = HEAD.search(line)
            if m:
                name, want, buf = m.group(1), int(m.group(2)), b""
                continue
            if name is None:
                continue
            d = DUMP.search(line)
            if not d:
                name = None
                continue
            buf += bytes.fromhex(d.group(2))
            if len(buf) >= want:
                if want >= 8:
                    keys.append(("%s (%d bytes, %s)" % (name, want, os.path.basename(path)), buf[:want]))
                name = None
    return keys


def forms(secret):
    h = secret.hex()
    out = [secret, h.encode(), h.upper().encode()]
    for sep in (" ", ":", "-"):
        out.append(sep.join(h[i:i + 2] for i in range(0, len(h), 2)).encode())
        out.append(out[-1].upper())
    out.append(base64.b64encode(secret).rstrip(b"="))
    out.append(", ".join(str(b) for b in secret[:8]).encode())  # Debug of a Vec<u8> / [u8; N]
    return out


def files(paths):
    for p in paths:
        if os.path.isdir(p):
            for root, _, names in os.walk(p):
                for n in names:
                    yield os.path.join(root, n)
        elif os.path.exists(p):
            yield p


def main(argv):
    psks, logs, targets = [], [], []
    i = 0
    while i < len(argv):
        if argv[i] == "--psk":
            psks.append(argv[i + 1].encode())
            i += 2
        elif argv[i] == "--keys-from":
            logs.append(argv[i + 1])
            i += 2
        else:
            targets.append(argv[i])
            i += 1
    secrets = [("pre-shared key #%d" % (n + 1), p) for n, p in enumerate(psks)]
    derived = [k for log in logs for k in keys_from(log)]
    if not derived:
        print("no derived keys found in %s (log with ike = 4, chd = 4)" % (" ".join(logs) or "-"))
        return 1
    secrets += derived
    scanned, hits = 0, []
    for path in files(targets):
        if os.path.abspath(path) in {os.path.abspath(l) for l in logs}:
            continue
        try:
            data = open(path, "rb").read()
        except OSError:
            continue
        scanned += 1
        for name, s in secrets:
            if any(f in data for f in forms(s)):
                hits.append("%s: %s" % (path, name))
    print("scanned %d files for %d pre-shared and %d derived keys: %d found" % (scanned, len(psks), len(derived), len(hits)))
    for h in hits:
        print("FOUND " + h)
    return 1 if hits or scanned == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
