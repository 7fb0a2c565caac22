#!/usr/bin/env python3
"""Writes the seed corpus (corpus/<target>/) from the golden strongSwan messages in ../tests/golden.

Replay one input with events printed: FUZZ_DEBUG=1 <target-dir>/x86_64-unknown-linux-gnu/release/responder_datagrams FILE
"""
import glob, hashlib, os

here = os.path.dirname(os.path.abspath(__file__))
golden = sorted(glob.glob(os.path.join(here, "..", "tests", "golden", "*.hex")))


def put(target, data):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


msgs = {os.path.basename(p)[:-4]: bytes.fromhex("".join(open(p).read().split())) for p in golden}
for name, m in msgs.items():
    put("parse_message", m)
    # parse_payloads: first payload type, then the chain after the IKE header.
    put("parse_payloads", bytes([m[16]]) + m[28:])
    if "ike_sa_init-request" in name:
        # responder_datagrams, raw mode (even first octet): [ctl, len_hi, len_lo, datagram]
        put("responder_datagrams", bytes([0, 0, len(m) >> 8, len(m) & 255]) + m)
        # spoofed_peer: an RNG seed, then records [ctl, len_hi, len_lo, datagram] against an established
        # tunnel; ctl bit 2 picks the end (0: responder, 4: initiator), bits 0-1/3 the ports, bits 4-7 the time step.
        put("spoofed_peer", bytes([2, 0, len(m) >> 8, len(m) & 255]) + m + bytes([40, 0, 0]))
        flood = b"".join(bytes([ctl, len(m) >> 8, len(m) & 255]) + m for ctl in (0, 4, 1, 5, 0x10, 0x14) * 4)
        put("spoofed_peer", bytes([6]) + flood)
        # The same request with its SPIr set, an IKE_AUTH exchange type and a garbage SK payload appended.
        auth = bytearray(m)
        auth[8:16] = bytes(range(1, 9))
        auth[18] = 35
        put("spoofed_peer", bytes([10, 1, len(auth) >> 8, len(auth) & 255]) + bytes(auth))
# spoofed_peer with SPIs from the wire (len_hi bit 7; bit 6: the last message the target sent instead of the
# established IKE SA): forged encrypted messages with a garbage SK payload, to either end, on 4500.
def forged(exchange, flags, message_id, body=bytes(range(80))):
    sk = bytes([0, 0, (len(body) + 4) >> 8, (len(body) + 4) & 255]) + body
    total = 28 + len(sk)
    return bytes(16) + bytes([46, 0x20, exchange, flags]) + message_id.to_bytes(4, "big") + total.to_bytes(4, "big") + sk


def wire_record(ctl, m, last=False):
    return bytes([ctl, 0x80 | (0x40 if last else 0) | (len(m) >> 8), len(m) & 255]) + m


for exchange in (34, 35, 36, 37):
    # ctl 3: to the responder on 4500 from 4500; ctl 7: the same to the initiator; 0x0b, 0x0f: from another port.
    put("spoofed_peer", bytes([2]) + b"".join(
        wire_record(ctl, forged(exchange, flags, mid))
        for ctl, flags in ((3, 0x08), (7, 0x00), (0x0b, 0x20), (0x0f, 0x28)) for mid in (0, 1, 2)))
init = msgs.get("aes128-sha1-modp1024-1-ike_sa_init-request")
if init:
    # A spoofed IKE_SA_INIT makes a half-open SA; then a garbage IKE_AUTH with its SPIs (as seen on the wire).
    put("spoofed_peer", bytes([2, 0, len(init) >> 8, len(init) & 255]) + init
        + wire_record(1, forged(35, 0x08, 1), last=True) + wire_record(3, forged(35, 0x08, 1), last=True))
# responder_datagrams, relay mode (odd first octet): a clean exchange, then a flipped octet, a truncation, a
# duplicate, a drop, and long idle steps (DPD, rekeys).
put("responder_datagrams", bytes([1]))
put("responder_datagrams", bytes([1, 0, 0, 0, 1, 128, 7, 0, 0, 0]))
put("responder_datagrams", bytes([3, 0, 0, 0, 2, 200, 0]))
put("responder_datagrams", bytes([5, 3, 0, 0, 0, 0, 0, 4, 0, 0]))
put("responder_datagrams", bytes([7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 255, 255]))
# relay mode through CHILD and IKE rekeys: idle steps of 200 s, datagrams untouched.
put("responder_datagrams", bytes([9] + [0, 0, 0, 20] * 40))
put("responder_datagrams", bytes([9] + [0, 0, 0, 30] * 60))
put("responder_datagrams", bytes([11] + [20] * 60))
# reassembler: [id, number, total, next, len/8, plaintext]
put("reassembler", bytes([1, 1, 2, 35, 1]) + b"A" * 8 + bytes([1, 2, 2, 0, 1]) + b"B" * 8)
put("reassembler", bytes([1, 2, 3, 0, 0, 1, 1, 3, 35, 2]) + b"x" * 16 + bytes([1, 3, 3, 0, 0, 1, 1, 3, 35, 0]))
put("reassembler", bytes([2, 1, 1, 33, 4]) + b"y" * 32 + bytes([1, 1, 2, 33, 0, 3, 1, 2, 0, 0]))
