#!/usr/bin/env python3
"""Turn `swanctl --list-sas --raw` (stdin) into JSON (stdout): one object per IKE SA.

The raw format is vici's message dump: `name {`, `}`, `key=value`, `key [ item item ]`, one `list-sa event {...}`
per IKE SA. Values here never contain spaces (addresses, SPIs, algorithm names)."""
import json
import re
import sys

TOKEN = re.compile(r"\{|\}|\[|\]|[^\s={}\[\]]+=[^\s{}\[\]]*|[^\s={}\[\]]+")


def parse(tokens, i):
    """Parse a section body starting at tokens[i]; return (dict, index after the closing brace)."""
    out = {}
    while i < len(tokens):
        t = tokens[i]
        if t == "}":
            return out, i + 1
        if "=" in t:
            k, v = t.split("=", 1)
            out[k] = v
            i += 1
        elif i + 1 < len(tokens) and tokens[i + 1] == "{":
            sub, i = parse(tokens, i + 2)
            out[t] = sub
        elif i + 1 < len(tokens) and tokens[i + 1] == "[":
            items = []
            i += 2
            while i < len(tokens) and tokens[i] != "]":
                items.append(tokens[i])
                i += 1
            out[t] = items
            i += 1
        else:
            i += 1
    return out, i


def alg(sa, ike):
    """The negotiated suite in the status format, e.g. AES_CBC-128/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024."""
    parts = []
    if sa.get("encr-alg"):
        parts.append(sa["encr-alg"] + ("-" + sa["encr-keysize"] if sa.get("encr-keysize") else ""))
    for k in ("integ-alg", "prf-alg") if ike else ("integ-alg",):
        if sa.get(k):
            parts.append(sa[k])
    if sa.get("dh-group"):
        parts.append(sa["dh-group"])
    return "/".join(parts)


def main():
    text = sys.stdin.read()
    tokens = TOKEN.findall(text.replace("list-sa event", "list-sa-event"))
    sas = []
    i = 0
    while i < len(tokens):
        if tokens[i] == "list-sa-event" and i + 1 < len(tokens) and tokens[i + 1] == "{":
            body, i = parse(tokens, i + 2)
            for name, ike in body.items():
                if not isinstance(ike, dict):
                    continue
                initiator = ike.get("initiator") == "yes"
                ispi, rspi = ike.get("initiator-spi", ""), ike.get("responder-spi", "")
                children = []
                for child in (ike.get("child-sas") or {}).values():
                    if not isinstance(child, dict):
                        continue
                    children.append({
                        "name": child.get("name", ""),
                        "state": child.get("state", ""),
                        "installed": child.get("state") == "INSTALLED",
                        "spi_in": child.get("spi-in", ""),
                        "spi_out": child.get("spi-out", ""),
                        "encap": child.get("encap") == "yes",
                        "local_ts": child.get("local-ts", []),
                        "remote_ts": child.get("remote-ts", []),
                        "bytes_in": int(child.get("bytes-in", 0) or 0),
                        "bytes_out": int(child.get("bytes-out", 0) or 0),
                        "proposal": alg(child, False),
                    })
                sas.append({
                    "name": name,
                    "state": ike.get("state", ""),
                    "initiator": initiator,
                    "local": ike.get("local-host", ""),
                    "remote": ike.get("remote-host", ""),
                    "remote_port": ike.get("remote-port", ""),
                    "nat_remote": ike.get("nat-remote") == "yes",
                    "initiator_spi": ispi,
                    "responder_spi": rspi,
                    "ike_spi_local": ispi if initiator else rspi,
                    "ike_spi_remote": rspi if initiator else ispi,
                    "proposal": alg(ike, True),
                    "children": children,
                })
        else:
            i += 1
    json.dump(sas, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
