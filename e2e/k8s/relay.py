#!/usr/bin/env python3
"""Prints an IotRelay (JSON, for kubectl apply -f -) for the k8s e2e topology (see lab.sh), with edits.

usage: relay.py NAME NAMESPACE [PATH=JSON ...]
  PATH is dotted, list indexes are numbers: spec.forwards.0.listenPort=7001, spec.tunnels=[] ;
  PATH=-- deletes the field; an index one past the end appends. JSON values that fail to parse are taken as strings.
"""
import json
import sys


def base(name, namespace):
    return {
        "apiVersion": "iotrelay.dev/v1alpha1",
        "kind": "IotRelay",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "insideAddress": "100.127.0.1",
            "remoteSubnets": ["100.64.0.0/16"],
            "localAddress": "198.51.100.1",
            "tunnels": [
                {"name": "tunnel1", "peerAddress": "198.51.100.2",
                 "preSharedKeySecretRef": {"name": "aws-vpn", "key": "tunnel1"}},
                {"name": "tunnel2", "peerAddress": "198.51.100.3",
                 "preSharedKeySecretRef": {"name": "aws-vpn", "key": "tunnel2"}},
            ],
            # Short DPD so a dead peer is noticed within the test's patience.
            "ike": {"proposals": ["aes128-sha1-modp1024"], "dpdInterval": "2s", "dpdTimeout": "6s",
                    "startupAction": "Start"},
            "esp": {"proposals": ["aes128-sha1-modp1024"]},
            "forwards": [
                {"name": "admin", "protocol": "UDP", "listenPort": 7000,
                 "allowedSources": ["203.0.113.10/32"],
                 "target": {"address": "100.64.1.10", "port": 7000}, "idleTimeout": "60s"},
            ],
        },
    }


def edit(obj, path, value):
    keys = path.split(".")
    cur = obj
    for k in keys[:-1]:
        cur = cur[int(k)] if isinstance(cur, list) else cur.setdefault(k, {})
    last = keys[-1]
    if isinstance(cur, list):
        if value is DELETE:
            del cur[int(last)]
        elif int(last) == len(cur):
            cur.append(value)
        else:
            cur[int(last)] = value
    elif value is DELETE:
        cur.pop(last, None)
    else:
        cur[last] = value


DELETE = object()

if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    obj = base(sys.argv[1], sys.argv[2])
    for arg in sys.argv[3:]:
        path, _, raw = arg.partition("=")
        if raw == "--":
            value = DELETE
        else:
            try:
                value = json.loads(raw)
            except ValueError:
                value = raw
        edit(obj, path, value)
    json.dump(obj, sys.stdout, indent=1)
    print()
