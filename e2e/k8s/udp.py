#!/usr/bin/env python3
"""UDP helpers for the e2e (run inside the lab namespaces).

  udp.py echo ADDR PORT [PORT...]   the device: answers every datagram with b"echo:" + payload (runs forever)
  udp.py ask DST PORT PAYLOAD [TIMEOUT]  the IoT server: send PAYLOAD, exit 0 iff b"echo:"+PAYLOAD comes back
"""
import selectors
import socket
import sys


def echo(addr, ports):
    sel = selectors.DefaultSelector()
    for p in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((addr, int(p)))
        sel.register(s, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            data, peer = key.fileobj.recvfrom(65535)
            key.fileobj.sendto(b"echo:" + data, peer)


def ask(dst, port, payload, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(float(timeout) / 3)
    want = b"echo:" + payload.encode()
    for _ in range(3):  # a first packet may be spent while a session is set up
        s.sendto(payload.encode(), (dst, int(port)))
        try:
            while True:
                data, _ = s.recvfrom(65535)
                if data == want:
                    return 0
        except socket.timeout:
            continue
    return 1


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "echo":
        echo(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) >= 5 and sys.argv[1] == "ask":
        sys.exit(ask(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] if len(sys.argv) > 5 else "6"))
    else:
        sys.exit(__doc__)
