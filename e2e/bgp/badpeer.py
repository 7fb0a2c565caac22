#!/usr/bin/env python3
"""A broken BGP peer for the lab: listens on ADDR:179 in place of the AWS-side BGP daemon, takes the relay's OPEN,
answers with 19 octets that are not a BGP header (the marker is zero), and records what the relay sends back until
it closes. Every connection is one line in LOG: `conn N open=yes|no notification=CODE/SUBCODE closed=yes|no`.
Exits after CONNS connections (the relay reconnects after its backoff) or when TIMEOUT seconds have passed."""
import socket
import struct
import sys
import time


def read_messages(sock, deadline):
    """Yields (type, body) of every BGP message until EOF or the deadline."""
    buf = b""
    while time.time() < deadline:
        sock.settimeout(max(0.1, deadline - time.time()))
        try:
            chunk = sock.recv(4096)
        except socket.timeout:
            return
        except OSError:
            return
        if not chunk:
            yield ("eof", b"")
            return
        buf += chunk
        while len(buf) >= 19:
            length = struct.unpack("!H", buf[16:18])[0]
            if length < 19 or len(buf) < length:
                break
            yield (buf[18], buf[19:length])
            buf = buf[length:]


def main():
    addr, conns, timeout, log = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, 179))
    srv.listen(4)
    end = time.time() + timeout
    n = 0
    with open(log, "a", buffering=1) as out:
        out.write("listening\n")
        while n < conns and time.time() < end:
            srv.settimeout(max(0.1, end - time.time()))
            try:
                c, _ = srv.accept()
            except socket.timeout:
                break
            n += 1
            got_open, notif, closed = False, None, False
            for ty, body in read_messages(c, time.time() + 20):
                if ty == 1 and not got_open:
                    got_open = True
                    c.sendall(b"\x00" * 19)
                elif ty == 3 and len(body) >= 2:
                    notif = f"{body[0]}/{body[1]}"
                elif ty == "eof":
                    closed = True
            c.close()
            out.write(f"conn {n} open={'yes' if got_open else 'no'} notification={notif} "
                      f"closed={'yes' if closed else 'no'}\n")


if __name__ == "__main__":
    main()
