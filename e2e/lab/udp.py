#!/usr/bin/env python3
"""UDP helpers for the lab (run inside the lab's namespaces).

  udp.py echo ADDR PORT [--log FILE]     the device: answer every datagram with b"echo:" + payload, forever;
                                         log "SRC_ADDR:SRC_PORT PAYLOAD" per datagram to FILE
  udp.py ask DST PORT PAYLOAD [TIMEOUT]  the IoT server: send PAYLOAD (up to 3 tries), exit 0 iff the echo returns
  udp.py stream DST PORT SECONDS RATE    send RATE datagrams/s for SECONDS, each numbered TAG + N; print a JSON
                                         line {"sent", "received", "lost", "late", "tag"}; exit 0 iff nothing
                                         was lost
  udp.py raw DST PORT HEX [COUNT]        send COUNT datagrams with payload bytes.fromhex(HEX) (garbage tests)
  udp.py flood DST PORT SECONDS SIZE     send SIZE-octet datagrams as fast as possible for SECONDS; print a JSON
                                         line {"sent", "pps"}
  (ask and flood send from $UDP_FROM when set; ask tries $UDP_TRIES times, default 3)
  udp.py spoof SRC SPORT DST DPORT HEX   send one datagram with a forged source (raw socket; e.g. from :4500 while
                                         charon holds that port)
  udp.py ike-init SRC DST KIND COUNT     send COUNT IKE_SA_INIT requests to DST:500 with a forged source SRC and a
                                         random source port and initiator SPI each (raw socket); KIND 3des offers
                                         only ENCR_3DES, KIND ok offers aes128-sha1-modp1024 (a random KE value)
  udp.py ike-flood SRC DST RATE SECONDS  as ike-init ok, paced: RATE requests/s for SECONDS (one raw socket); print a
                                         JSON line {"sent", "seconds"}
  udp.py pcap-esp FILE [N]               print the UDP payloads (hex) of the first N ESP-in-UDP packets in a pcap
"""
import json
import os
import struct
import socket
import sys
import time


def echo(addr, port, log):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, int(port)))
    out = open(log, "a", buffering=1) if log else None
    while True:
        data, peer = s.recvfrom(65535)
        if out:
            out.write("%s:%d %s\n" % (peer[0], peer[1], data[:200].decode("utf-8", "replace")))
        s.sendto(b"echo:" + data, peer)


def ask(dst, port, payload, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if os.environ.get("UDP_FROM"):  # send from another address of this namespace
        s.bind((os.environ["UDP_FROM"], 0))
    s.settimeout(float(timeout) / 3)
    want = b"echo:" + payload.encode()
    for _ in range(int(os.environ.get("UDP_TRIES", "3"))):  # a first packet may be spent setting up a session
        s.sendto(payload.encode(), (dst, int(port)))
        try:
            while True:
                data, _ = s.recvfrom(65535)
                if data == want:
                    return 0
        except socket.timeout:
            continue
    return 1


def stream(dst, port, seconds, rate):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    n = int(float(seconds) * float(rate))
    interval = 1.0 / float(rate)
    got = set()
    late = 0
    start = time.monotonic()
    tag = "s%d-" % int(start * 1000)

    def drain():
        while True:
            try:
                data, _ = s.recvfrom(65535)
            except BlockingIOError:
                return
            text = data.decode("utf-8", "replace")
            if text.startswith("echo:" + tag):
                got.add(int(text[len("echo:" + tag):]))

    for i in range(n):
        s.sendto((tag + str(i)).encode(), (dst, int(port)))
        deadline = start + (i + 1) * interval
        while time.monotonic() < deadline:
            drain()
            time.sleep(min(0.002, max(0.0, deadline - time.monotonic())))
    end = time.monotonic() + 3  # replies in flight
    while time.monotonic() < end and len(got) < n:
        drain()
        time.sleep(0.01)
    lost = sorted(set(range(n)) - got)
    print(json.dumps({"sent": n, "received": len(got), "lost": len(lost), "first_lost": lost[:20], "late": late,
                      "tag": tag}))
    return 0 if not lost else 1


def flood(dst, port, seconds, size):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if os.environ.get("UDP_FROM"):
        s.bind((os.environ["UDP_FROM"], 0))
    s.setblocking(False)
    payload = b"F" * int(size)
    dst = (dst, int(port))
    sent = 0
    start = time.monotonic()
    end = start + float(seconds)
    while time.monotonic() < end:
        for _ in range(256):
            try:
                s.sendto(payload, dst)
                sent += 1
            except (BlockingIOError, OSError):
                pass
    print(json.dumps({"sent": sent, "pps": int(sent / (time.monotonic() - start))}))
    return 0


def raw(dst, port, hexdata, count):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(int(count)):
        s.sendto(bytes.fromhex(hexdata), (dst, int(port)))
    return 0


def spoof(src, sport, dst, dport, hexdata):
    payload = bytes.fromhex(hexdata)
    udp = struct.pack("!HHHH", int(sport), int(dport), 8 + len(payload), 0) + payload  # checksum 0: none (IPv4)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.sendto(ip + udp, (dst, 0))
    return 0


def ike_init(kind):
    """An IKE_SA_INIT request (RFC 7296 §3) with a random initiator SPI, KE value and nonce."""
    def transform(ty, tid, keylen=None, last=False):
        attr = struct.pack("!HH", 0x800E, keylen) if keylen else b""
        return struct.pack("!BBHBBH", 0 if last else 3, 0, 8 + len(attr), ty, 0, tid) + attr
    encr = transform(1, 3) if kind == "3des" else transform(1, 12, 128)  # ENCR_3DES / ENCR_AES_CBC-128
    ts = encr + transform(2, 2) + transform(3, 2) + transform(4, 2, last=True)  # HMAC-SHA1 PRF/INTEG, MODP-1024
    prop = struct.pack("!BBHBBBB", 0, 0, 8 + len(ts), 1, 1, 0, 4) + ts
    sa = struct.pack("!BBH", 34, 0, 4 + len(prop)) + prop
    ke_data = b"\x7f" + os.urandom(127)  # 1 < y < p for the MODP-1024 prime
    ke = struct.pack("!BBHHH", 40, 0, 8 + len(ke_data), 2, 0) + ke_data
    nonce = struct.pack("!BBH", 0, 0, 36) + os.urandom(32)
    body = sa + ke + nonce
    header = os.urandom(8) + bytes(8) + struct.pack("!BBBBII", 33, 0x20, 34, 0x08, 0, 28 + len(body))
    return header + body


def ike_flood(src, dst, rate, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    n = int(float(rate) * float(seconds))
    interval = 1.0 / float(rate)
    start = time.monotonic()
    for i in range(n):
        payload = ike_init("ok")
        sport = 1024 + struct.unpack("!H", os.urandom(2))[0] % 60000
        udp = struct.pack("!HHHH", sport, 500, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
        s.sendto(ip + udp, (dst, 0))
        wait = start + (i + 1) * interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
    print(json.dumps({"sent": n, "seconds": round(time.monotonic() - start, 2)}))
    return 0


def ike_inits(src, dst, kind, count):
    for _ in range(int(count)):
        spoof(src, 1024 + struct.unpack("!H", os.urandom(2))[0] % 60000, dst, 500, ike_init(kind).hex())
    return 0


def pcap_esp(path, n):
    data = open(path, "rb").read()
    if len(data) < 24:
        return 1
    le = data[:4] == b"\xd4\xc3\xb2\xa1"
    e = "<" if le else ">"
    linktype = struct.unpack(e + "I", data[20:24])[0]
    off, found = 24, 0
    while off + 16 <= len(data) and found < int(n):
        incl = struct.unpack(e + "I", data[off + 8:off + 12])[0]
        pkt = data[off + 16:off + 16 + incl]
        off += 16 + incl
        l2 = {1: 14, 113: 16, 276: 20}.get(linktype, 0)
        ip = pkt[l2:]
        if len(ip) < 28 or ip[9] != 17:
            continue
        ihl = (ip[0] & 15) * 4
        udp = ip[ihl:]
        payload = udp[8:]
        if len(payload) > 8 and payload[:4] != b"\0\0\0\0" and payload != b"\xff":
            print(payload.hex())
            found += 1
    return 0 if found else 1


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) >= 3 and a[0] == "echo":
        echo(a[1], a[2], a[4] if len(a) >= 5 and a[3] == "--log" else None)
    elif len(a) >= 4 and a[0] == "ask":
        sys.exit(ask(a[1], a[2], a[3], a[4] if len(a) > 4 else "6"))
    elif len(a) == 5 and a[0] == "stream":
        sys.exit(stream(a[1], a[2], a[3], a[4]))
    elif len(a) == 5 and a[0] == "flood":
        sys.exit(flood(a[1], a[2], a[3], a[4]))
    elif len(a) >= 4 and a[0] == "raw":
        sys.exit(raw(a[1], a[2], a[3], a[4] if len(a) > 4 else 1))
    elif len(a) == 6 and a[0] == "spoof":
        sys.exit(spoof(*a[1:]))
    elif len(a) == 5 and a[0] == "ike-init":
        sys.exit(ike_inits(*a[1:]))
    elif len(a) == 5 and a[0] == "ike-flood":
        sys.exit(ike_flood(*a[1:]))
    elif len(a) >= 2 and a[0] == "pcap-esp":
        sys.exit(pcap_esp(a[1], a[2] if len(a) > 2 else 1))
    else:
        sys.exit(__doc__)
