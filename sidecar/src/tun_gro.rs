//! The write side of the TUN device, pure (no device): [`TunOutbox`] queues the packets one pass of the owner loop
//! writes to the device in one preallocated buffer and hands them out at the end of the pass, one write each. With
//! the device's offloads (`IFF_VNET_HDR`) every write carries a `virtio_net_hdr`, and consecutive TCP segments of
//! one flow (the decrypted burst of one connection, the common case of a bulk transfer) are coalesced into one
//! super-packet that the kernel takes as a single GSO packet (GRO done in userspace), so a burst of 40 segments
//! costs one system call instead of 40. Where the device also takes UDP segmentation offload (USO), consecutive
//! UDP datagrams of one flow are coalesced the same way (`VIRTIO_NET_HDR_GSO_UDP_L4`): the kernel routes the
//! super-packet once and splits it into the datagrams again.
//!
//! A segment joins the previous one only when the kernel can split them again into exactly what was sent: same
//! addresses, ports, TTL, TOS, DF and TCP header apart from sequence number, checksum and PSH; the sequence number
//! continues the previous segment's; only ACK (and PSH, which ends the run) set; its own checksums verify; the
//! size equals the run's first segment (a shorter one ends the run); at most [`MAX_SEGMENTS`] and 64 KiB. A UDP
//! datagram joins when addresses, ports, TTL, TOS and flags are the same, it is not a fragment, its checksum is
//! set and verifies, and its payload is the run's first one's size (a shorter one ends the run). Anything else is
//! written as it came. The read side is `crate::tun_gso`'s.

use iotrelay_esp::ipv4::{FLAG_DF, IPV4_MAX_LEN, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_PSH};

use crate::tun_gso::{F_NEEDS_CSUM, GSO_TCPV4, GSO_UDP_L4, VNET_HDR_LEN, VnetHdr, fold, pseudo, set_ip_checksum, sum};

/// Most segments in one coalesced write.
pub const MAX_SEGMENTS: u16 = 64;
/// The buffer: a pass's writes (beyond it the outbox is written out and filled again).
pub const OUTBOX_BYTES: usize = 512 * 1024;
/// Most writes queued at once.
pub const MAX_WRITES: usize = 1024;

/// A run of coalesced TCP segments or UDP datagrams: the first one's headers, then every one's payload.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// `PROTO_TCP` or `PROTO_UDP`.
    proto: u8,
    ihl: usize,
    /// IPv4 + TCP (or UDP) header octets.
    hlen: usize,
    /// The first segment's payload size: every segment's but the last.
    seg: usize,
    /// TCP: the sequence number the next segment must have (unused for UDP).
    next_seq: u32,
    segments: u16,
    /// A PSH or a short segment ended it.
    closed: bool,
}

#[derive(Debug, Clone, Copy)]
struct Write {
    /// Octets `start..end` of the buffer, including the `virtio_net_hdr` room when the outbox has one.
    start: usize,
    end: usize,
    run: Option<Run>,
}

/// What a flush did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Writes the device took.
    pub writes: u64,
    /// Packets in them.
    pub packets: u64,
    /// Packets in writes it refused.
    pub failed: u64,
}

/// The packets waiting to be written to the device (see the module doc).
pub struct TunOutbox {
    vnet: bool,
    /// The device takes USO frames: UDP datagrams are coalesced too.
    uso: bool,
    buf: Box<[u8]>,
    used: usize,
    writes: Vec<Write>,
}

impl TunOutbox {
    /// An outbox for a device with (`vnet`) or without `virtio_net_hdr` framing; all its memory is taken here.
    pub fn new(vnet: bool) -> TunOutbox {
        TunOutbox {
            vnet,
            uso: false,
            buf: vec![0u8; OUTBOX_BYTES].into_boxed_slice(),
            used: 0,
            writes: Vec::with_capacity(MAX_WRITES),
        }
    }

    /// With UDP segmentation offload on the device (`TUN_F_USO4`): UDP datagrams of one flow are coalesced too.
    /// Only with `vnet`; a device without USO refuses such frames.
    pub fn with_uso(mut self, uso: bool) -> TunOutbox {
        self.uso = uso && self.vnet;
        self
    }

    /// Packets queued.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Queues one IPv4 packet; false when the outbox is full (flush, then push again) or the packet can never fit.
    pub fn push(&mut self, p: &[u8]) -> bool {
        if self.vnet && self.coalesce(p) {
            return true;
        }
        let room = if self.vnet { VNET_HDR_LEN } else { 0 };
        if self.writes.len() == MAX_WRITES || self.used + room + p.len() > self.buf.len() {
            return false;
        }
        let start = self.used;
        self.buf[start..start + room].fill(0);
        self.buf[start + room..start + room + p.len()].copy_from_slice(p);
        self.used += room + p.len();
        let run = if self.vnet { candidate(p, self.uso).map(|c| c.run(p)) } else { None };
        self.writes.push(Write { start, end: self.used, run });
        true
    }

    /// Appends `p` to the last write's run when it continues it (see the module doc).
    fn coalesce(&mut self, p: &[u8]) -> bool {
        let Some(w) = self.writes.last_mut() else { return false };
        let Some(r) = w.run.as_mut() else { return false };
        if r.closed || r.segments >= MAX_SEGMENTS {
            return false;
        }
        let Some(c) = candidate(p, self.uso) else { return false };
        let payload = p.len() - c.hlen;
        let head = &self.buf[w.start + VNET_HDR_LEN..];
        if c.proto != r.proto
            || c.ihl != r.ihl
            || c.hlen != r.hlen
            || payload > r.seg
            || (c.proto == PROTO_TCP && c.seq != r.next_seq)
            || w.end - w.start - VNET_HDR_LEN + payload > IPV4_MAX_LEN
            || self.used + payload > self.buf.len()
            || !same_flow(head, p, r.proto, r.ihl, r.hlen)
        {
            return false;
        }
        self.buf[self.used..self.used + payload].copy_from_slice(&p[c.hlen..]);
        self.used += payload;
        w.end = self.used;
        r.next_seq = r.next_seq.wrapping_add(payload as u32);
        r.segments += 1;
        if c.proto == PROTO_TCP && c.flags & TCP_PSH != 0 {
            self.buf[w.start + VNET_HDR_LEN + r.ihl + 13] |= TCP_PSH;
            r.closed = true;
        }
        if payload < r.seg {
            r.closed = true;
        }
        true
    }

    /// Hands every queued write to `write` in order (false: the device refused it) and empties the outbox.
    pub fn flush(&mut self, write: &mut dyn FnMut(&[u8]) -> bool) -> Flushed {
        let mut f = Flushed::default();
        for w in self.writes.drain(..) {
            let frame = &mut self.buf[w.start..w.end];
            let packets = match w.run {
                Some(r) if r.segments > 1 => {
                    finish_run(frame, &r);
                    u64::from(r.segments)
                }
                _ => 1,
            };
            if write(frame) {
                f.writes += 1;
                f.packets += packets;
            } else {
                f.failed += packets;
            }
        }
        self.used = 0;
        f
    }
}

/// Turns a run's buffer into one GSO frame: IPv4 length and checksum for the whole (and the UDP length), the TCP
/// or UDP checksum left partial (the pseudo-header's sum, the kernel finishes it per segment), and the
/// `virtio_net_hdr` saying so.
fn finish_run(frame: &mut [u8], r: &Run) {
    let (h, p) = frame.split_at_mut(VNET_HDR_LEN);
    let n = p.len();
    p[2..4].copy_from_slice(&(n as u16).to_be_bytes());
    set_ip_checksum(p, r.ihl);
    let (gso_type, csum_offset) = if r.proto == PROTO_UDP {
        p[r.ihl + 4..r.ihl + 6].copy_from_slice(&((n - r.ihl) as u16).to_be_bytes());
        (GSO_UDP_L4, 6)
    } else {
        (GSO_TCPV4, 16)
    };
    let seed = fold(pseudo(p, r.proto, n - r.ihl));
    let at = r.ihl + usize::from(csum_offset);
    p[at..at + 2].copy_from_slice(&seed.to_be_bytes());
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type,
        hdr_len: r.hlen as u16,
        gso_size: r.seg as u16,
        csum_start: r.ihl as u16,
        csum_offset,
    };
    h.copy_from_slice(&hdr.encode());
}

/// A TCP segment or UDP datagram that may start or join a run.
struct Candidate {
    proto: u8,
    ihl: usize,
    hlen: usize,
    seq: u32,
    flags: u8,
}

impl Candidate {
    fn run(&self, p: &[u8]) -> Run {
        let seg = p.len() - self.hlen;
        Run {
            proto: self.proto,
            ihl: self.ihl,
            hlen: self.hlen,
            seg,
            next_seq: self.seq.wrapping_add(seg as u32),
            segments: 1,
            closed: self.proto == PROTO_TCP && self.flags & TCP_PSH != 0,
        }
    }
}

/// `p` as a run member: a whole IPv4 TCP packet with DF, not a fragment, length as its header says, only ACK (and
/// PSH) set, some payload, checksums that verify; with `uso`, also a whole UDP datagram (see [`udp_candidate`]).
fn candidate(p: &[u8], uso: bool) -> Option<Candidate> {
    let first = *p.first()?;
    let ihl = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || ihl < 20 || p.len() < ihl || usize::from(u16::from_be_bytes([p[2], p[3]])) != p.len() {
        return None;
    }
    if uso && p[9] == PROTO_UDP {
        return udp_candidate(p, ihl);
    }
    if p.len() < ihl + 20 || p[9] != PROTO_TCP || u16::from_be_bytes([p[6], p[7]]) != FLAG_DF {
        return None;
    }
    let t = &p[ihl..];
    let doff = usize::from(t[12] >> 4) * 4;
    let flags = t[13];
    if doff < 20 || ihl + doff >= p.len() || flags & !TCP_PSH != TCP_ACK || t[12] & 0x0f != 0 {
        return None;
    }
    if fold(sum(0, &p[..ihl])) != 0xffff || fold(sum(pseudo(p, PROTO_TCP, p.len() - ihl), t)) != 0xffff {
        return None;
    }
    Some(Candidate {
        proto: PROTO_TCP,
        ihl,
        hlen: ihl + doff,
        seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
        flags,
    })
}

/// A UDP datagram as a run member: not a fragment (DF or not), UDP length as the IPv4 length says, some payload,
/// IPv4 and UDP checksums that verify (a datagram without a UDP checksum would come out of the split with one).
fn udp_candidate(p: &[u8], ihl: usize) -> Option<Candidate> {
    if p.len() <= ihl + 8 || u16::from_be_bytes([p[6], p[7]]) & !FLAG_DF != 0 {
        return None;
    }
    let u = &p[ihl..];
    if usize::from(u16::from_be_bytes([u[4], u[5]])) != u.len() || u[6..8] == [0, 0] {
        return None;
    }
    if fold(sum(0, &p[..ihl])) != 0xffff || fold(sum(pseudo(p, PROTO_UDP, u.len()), u)) != 0xffff {
        return None;
    }
    Some(Candidate { proto: PROTO_UDP, ihl, hlen: ihl + 8, seq: 0, flags: 0 })
}

/// Whether `p` belongs to the run whose headers start `head`: IPv4 header equal but for length, ID and checksum;
/// TCP header equal but for sequence number, flags' PSH, window and checksum; UDP ports equal.
fn same_flow(head: &[u8], p: &[u8], proto: u8, ihl: usize, hlen: usize) -> bool {
    let (a, b) = (&head[..hlen], &p[..hlen]);
    let ip =
        a[0..2] == b[0..2] && a[6..10] == b[6..10] && a[12..ihl] == b[12..ihl] && a[ihl..ihl + 4] == b[ihl..ihl + 4];
    ip && (proto == PROTO_UDP
        || (a[ihl + 8..ihl + 13] == b[ihl + 8..ihl + 13] && a[ihl + 18..hlen] == b[ihl + 18..hlen]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tun_gso::tests::{checksums_ok, ipv4_header, tcp};
    use crate::tun_gso::{VnetHdr, segment};
    use iotrelay_esp::ipv4::TCP_SYN;

    fn seg(seq: u32, flags: u8, n: usize) -> Vec<u8> {
        tcp(seq, flags, &(0..n).map(|i| (seq as usize + i) as u8).collect::<Vec<_>>())
    }

    fn flush_all(o: &mut TunOutbox) -> (Flushed, Vec<Vec<u8>>) {
        let mut out = Vec::new();
        let f = o.flush(&mut |w| {
            out.push(w.to_vec());
            true
        });
        (f, out)
    }

    /// Segments the kernel takes back apart: a run of 1000-octet ACKs ending with a shorter PSH becomes one GSO
    /// frame, and splitting it as the kernel does (our own read side) gives back exactly the segments sent (the
    /// window of the first). What does not continue the run (a gap, another flow, a SYN) is written on its own.
    #[test]
    fn a_burst_of_one_flow_is_one_write_that_splits_back() {
        let mut o = TunOutbox::new(true);
        let sent: Vec<Vec<u8>> = (0..5)
            .map(|i| {
                seg(100 + 1000 * i, if i == 4 { TCP_ACK | TCP_PSH } else { TCP_ACK }, if i == 4 { 300 } else { 1000 })
            })
            .collect();
        for s in &sent {
            assert!(o.push(s));
        }
        // Closed by the PSH: the next in-order segment starts a new write.
        assert!(o.push(&seg(4400, TCP_ACK, 1000)));
        // Out of order, a SYN: on their own.
        assert!(o.push(&seg(9000, TCP_ACK, 1000)));
        assert!(o.push(&seg(10000, TCP_SYN, 0)));
        let (f, out) = flush_all(&mut o);
        assert_eq!(f, Flushed { writes: 4, packets: 8, failed: 0 });
        let (h, at) = VnetHdr::parse(&out[0]).unwrap();
        assert_eq!((h.gso_type, h.gso_size, h.hdr_len, h.csum_start, h.csum_offset), (GSO_TCPV4, 1000, 52, 20, 16));
        assert_eq!(out[0].len(), 10 + 52 + 4300);
        let mut frame = out[0][at..].to_vec();
        let mut scratch = [0u8; 2048];
        let mut back = Vec::new();
        segment(&h, &mut frame, &mut scratch, &mut |s| back.push(s.to_vec())).unwrap();
        assert_eq!(back.len(), 5);
        for (i, (b, s)) in back.iter().zip(&sent).enumerate() {
            assert!(checksums_ok(b));
            // The IP ID (and so the header checksum) differs: the kernel numbers the segments from the first's.
            assert_eq!((&b[..4], &b[6..10], &b[12..]), (&s[..4], &s[6..10], &s[12..]), "segment {i}");
        }
        for w in &out[1..] {
            assert_eq!(VnetHdr::parse(w).unwrap().0, VnetHdr::default(), "written as it came");
        }
        assert_eq!(out[3][10..], seg(10000, TCP_SYN, 0)[..]);
    }

    fn fix_checksum(p: &mut [u8]) {
        p[36..38].copy_from_slice(&[0, 0]);
        let c = !fold(sum(pseudo(p, PROTO_TCP, p.len() - 20), &p[20..]));
        p[36..38].copy_from_slice(&c.to_be_bytes());
        assert!(checksums_ok(p));
    }

    #[test]
    fn only_true_continuations_join() {
        let base = seg(0, TCP_ACK, 1000);
        let mut bad_sum = seg(1000, TCP_ACK, 1000);
        bad_sum[60] ^= 1;
        let mut other_port = seg(1000, TCP_ACK, 1000);
        other_port[21] ^= 1;
        fix_checksum(&mut other_port);
        let mut other_ack = seg(1000, TCP_ACK, 1000);
        other_ack[28] ^= 1;
        fix_checksum(&mut other_ack);
        for (what, next) in [
            ("bad checksum", bad_sum),
            ("other port", other_port),
            ("other ack", other_ack),
            ("larger", seg(1000, TCP_ACK, 1001)),
            ("FIN", seg(1000, 0x11, 1000)),
        ] {
            let mut o = TunOutbox::new(true);
            assert!(o.push(&base) && o.push(&next));
            let (f, _) = flush_all(&mut o);
            assert_eq!(f.writes, 2, "{what} must not join");
        }
        // Without offloads every packet is its own write, with no header.
        let mut o = TunOutbox::new(false);
        assert!(o.push(&base) && o.push(&seg(1000, TCP_ACK, 1000)));
        let (f, out) = flush_all(&mut o);
        assert_eq!(f.writes, 2);
        assert_eq!(out[0], base);
    }

    /// An IPv4/UDP datagram 100.127.0.1:`sport` -> 100.64.1.10:9000 with `n` octets of payload, IP ID `id`, DF,
    /// checksums set.
    fn udp(id: u16, sport: u16, n: usize) -> Vec<u8> {
        let mut p = vec![0u8; 28 + n];
        ipv4_header(&mut p, id, PROTO_UDP);
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&9000u16.to_be_bytes());
        p[24..26].copy_from_slice(&((8 + n) as u16).to_be_bytes());
        for (i, b) in p[28..].iter_mut().enumerate() {
            *b = (i as u16 ^ id) as u8;
        }
        let c = !fold(sum(pseudo(&p, PROTO_UDP, 8 + n), &p[20..]));
        p[26..28].copy_from_slice(&c.to_be_bytes());
        p
    }

    /// With USO, datagrams of one flow become one GSO_UDP_L4 frame (a shorter one ends the run) that splits back
    /// into exactly the datagrams sent but for the IP ID (the kernel numbers them from the first's); another flow,
    /// a larger datagram, a fragment, a datagram without a checksum or a bad one is written on its own; without
    /// USO nothing UDP joins.
    #[test]
    fn with_uso_a_burst_of_one_udp_flow_is_one_write_that_splits_back() {
        let mut o = TunOutbox::new(true).with_uso(true);
        let sent: Vec<Vec<u8>> = (0..4).map(|i| udp(7 + i as u16 * 3, 5000, if i == 3 { 100 } else { 1400 })).collect();
        for d in &sent {
            assert!(o.push(d));
        }
        assert!(o.push(&udp(50, 5000, 1400)), "after the short one: a new write");
        assert!(o.push(&udp(51, 5001, 1400)), "another flow");
        assert!(o.push(&udp(52, 5001, 1401)), "larger than the run's");
        let mut frag = udp(53, 5001, 1400);
        frag[6] = 0x20; // MF
        set_ip_checksum(&mut frag, 20);
        let mut no_sum = udp(54, 5001, 1400);
        no_sum[26..28].copy_from_slice(&[0, 0]);
        let mut bad_sum = udp(55, 5001, 1400);
        bad_sum[40] ^= 1;
        for d in [&frag, &no_sum, &bad_sum] {
            assert!(o.push(d));
        }
        let (f, out) = flush_all(&mut o);
        assert_eq!(f, Flushed { writes: 7, packets: 10, failed: 0 });
        let (h, at) = VnetHdr::parse(&out[0]).unwrap();
        assert_eq!((h.gso_type, h.gso_size, h.hdr_len, h.csum_start, h.csum_offset), (GSO_UDP_L4, 1400, 28, 20, 6));
        assert_eq!(out[0].len(), 10 + 28 + 3 * 1400 + 100);
        let mut frame = out[0][at..].to_vec();
        let mut scratch = [0u8; 2048];
        let mut back = Vec::new();
        segment(&h, &mut frame, &mut scratch, &mut |s| back.push(s.to_vec())).unwrap();
        assert_eq!(back.len(), 4);
        for (i, (b, d)) in back.iter().zip(&sent).enumerate() {
            assert!(checksums_ok(b), "datagram {i}");
            assert_eq!((&b[..4], &b[6..10], &b[12..]), (&d[..4], &d[6..10], &d[12..]), "datagram {i}");
        }
        for w in &out[2..] {
            assert_eq!(VnetHdr::parse(w).unwrap().0, VnetHdr::default(), "written as it came");
        }
        assert_eq!(out[6][10..], bad_sum[..]);

        let mut o = TunOutbox::new(true);
        assert!(o.push(&sent[0]) && o.push(&sent[1]));
        assert_eq!(flush_all(&mut o).0.writes, 2, "no USO: each datagram on its own");
        assert!(!TunOutbox::new(false).with_uso(true).uso, "USO frames need the vnet header");
    }

    /// A full outbox refuses (the caller flushes and pushes again); what the device refuses is counted.
    #[test]
    fn full_outbox_refuses_and_failed_writes_count() {
        let mut o = TunOutbox::new(false);
        let p = seg(0, TCP_SYN, 0);
        let mut n = 0;
        while o.push(&p) {
            n += 1;
        }
        assert_eq!(n, MAX_WRITES);
        let f = o.flush(&mut |_| false);
        assert_eq!(f, Flushed { writes: 0, packets: 0, failed: MAX_WRITES as u64 });
        assert!(o.is_empty() && o.push(&p));
    }
}
