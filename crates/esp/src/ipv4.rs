//! Inner IPv4/UDP packets for the relay: build (with header and UDP checksums) and parse (checked); and the
//! IPv4 and TCP header constants (protocol numbers, fragment bits, TCP flags) every crate that reads inner packets
//! uses.

use std::net::Ipv4Addr;
use std::time::Duration;

pub const IPV4_HEADER_LEN: usize = 20;
pub const UDP_HEADER_LEN: usize = 8;
/// A TCP header without options.
pub const TCP_HEADER_LEN: usize = 20;
/// The largest IPv4 packet (the total length field's limit).
pub const IPV4_MAX_LEN: usize = 65535;

/// IPv4 protocol numbers (header octet 9), defined in `iotrelay-types` for the crates that do not use this one.
pub use iotrelay_types::ipv4::{PROTO_ICMP, PROTO_TCP, PROTO_UDP};

/// IPv4 header flags: Don't Fragment.
pub const FLAG_DF: u16 = 0x4000;
/// IPv4 header flags: More Fragments.
pub const FLAG_MF: u16 = 0x2000;
/// The fragment offset bits of the flags/offset field (octets 6-7).
pub const OFFSET_MASK: u16 = 0x1fff;
/// MF or a fragment offset: the packet is a fragment.
pub const FRAGMENT_MASK: u16 = FLAG_MF | OFFSET_MASK;

/// TCP header flags (octet 13).
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;
pub const TCP_CWR: u8 = 0x80;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Ipv4Error {
    #[error("truncated packet")]
    Truncated,
    #[error("not IPv4")]
    NotIpv4,
    #[error("bad header checksum")]
    BadChecksum,
    #[error("bad UDP checksum")]
    BadUdpChecksum,
    #[error("bad length field")]
    BadLength,
    #[error("not UDP")]
    NotUdp,
    #[error("a fragment (reassembly is not supported)")]
    Fragment,
    #[error("output buffer too small")]
    BufferTooSmall,
    /// `drops.tooBig`: larger than the MTU with Don't Fragment set, an MTU too small to fragment to, or a
    /// reassembled datagram larger than the reassembler's limit.
    #[error("packet too big")]
    TooBig,
}

fn sum16(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        acc += u32::from(*b) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The Internet checksum (RFC 1071) of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    fold(sum16(data, 0))
}

fn udp_checksum(src: Ipv4Addr, dst: Ipv4Addr, udp: &[u8]) -> u16 {
    let mut acc = sum16(&src.octets(), 0);
    acc = sum16(&dst.octets(), acc);
    acc += u32::from(PROTO_UDP) + udp.len() as u32;
    let c = fold(sum16(udp, acc));
    if c == 0 { 0xffff } else { c }
}

/// Writes an IPv4/UDP packet into `out`; returns its length. `id` is the IPv4 identification field.
pub fn build_udp(
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    payload: &[u8],
    id: u16,
    out: &mut [u8],
) -> Result<usize, Ipv4Error> {
    let total = IPV4_HEADER_LEN + UDP_HEADER_LEN + payload.len();
    if out.len() < total || total > IPV4_MAX_LEN {
        return Err(Ipv4Error::BufferTooSmall);
    }
    let p = &mut out[..total];
    p[0] = 0x45;
    p[1] = 0;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6..8].copy_from_slice(&[0, 0]);
    p[8] = 64;
    p[9] = PROTO_UDP;
    p[10..12].copy_from_slice(&[0, 0]);
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = checksum(&p[..IPV4_HEADER_LEN]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let udp = &mut p[IPV4_HEADER_LEN..];
    udp[0..2].copy_from_slice(&sport.to_be_bytes());
    udp[2..4].copy_from_slice(&dport.to_be_bytes());
    udp[4..6].copy_from_slice(&((UDP_HEADER_LEN + payload.len()) as u16).to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    udp[UDP_HEADER_LEN..].copy_from_slice(payload);
    let c = udp_checksum(src, dst, udp);
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    Ok(total)
}

/// Convenience for tests and docs: `build_udp` into a new Vec.
pub fn build_udp_vec(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; IPV4_HEADER_LEN + UDP_HEADER_LEN + payload.len()];
    let n = build_udp(src, sport, dst, dport, payload, 0, &mut v).unwrap_or(0);
    v.truncate(n);
    v
}

/// A parsed inner IPv4/UDP packet.
#[derive(Debug, PartialEq, Eq)]
pub struct Udp4<'a> {
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
    pub payload: &'a [u8],
}

/// Parses and checks an IPv4 packet carrying UDP (header checksum, lengths, UDP checksum when non-zero).
pub fn parse_udp(p: &[u8]) -> Result<Udp4<'_>, Ipv4Error> {
    let (ihl, total) = check_header(p)?;
    let frag = u16::from_be_bytes([p[6], p[7]]);
    if frag & FRAGMENT_MASK != 0 {
        return Err(Ipv4Error::Fragment);
    }
    if p[9] != PROTO_UDP {
        return Err(Ipv4Error::NotUdp);
    }
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    let udp = &p[ihl..total];
    if udp.len() < UDP_HEADER_LEN {
        return Err(Ipv4Error::Truncated);
    }
    let ulen = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if ulen < UDP_HEADER_LEN || ulen > udp.len() {
        return Err(Ipv4Error::BadLength);
    }
    let udp = &udp[..ulen];
    if u16::from_be_bytes([udp[6], udp[7]]) != 0
        && fold(sum16(udp, sum16(&dst.octets(), sum16(&src.octets(), u32::from(PROTO_UDP) + ulen as u32)))) != 0
    {
        return Err(Ipv4Error::BadUdpChecksum);
    }
    Ok(Udp4 {
        src,
        sport: u16::from_be_bytes([udp[0], udp[1]]),
        dst,
        dport: u16::from_be_bytes([udp[2], udp[3]]),
        payload: &udp[UDP_HEADER_LEN..],
    })
}

/// The destination address and port of an unfragmented IPv4/UDP packet, its lengths checked but no checksum
/// verified: a cheap look that decides where a packet goes. Whoever takes the packet parses it with
/// [`parse_udp`] (or hands it to a stack that verifies), so each checksum is computed once on the path.
pub fn peek_udp_dst(p: &[u8]) -> Option<(Ipv4Addr, u16)> {
    let (ihl, total) = header_lengths(p).ok()?;
    if p[9] != PROTO_UDP || total < ihl + UDP_HEADER_LEN || u16::from_be_bytes([p[6], p[7]]) & FRAGMENT_MASK != 0 {
        return None;
    }
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    Some((dst, u16::from_be_bytes([p[ihl + 2], p[ihl + 3]])))
}

/// Checks the IPv4 header of `p` (version, IHL, total length, header checksum); returns (IHL octets, total length).
pub fn check_header(p: &[u8]) -> Result<(usize, usize), Ipv4Error> {
    let (ihl, total) = header_lengths(p)?;
    if checksum(&p[..ihl]) != 0 {
        return Err(Ipv4Error::BadChecksum);
    }
    Ok((ihl, total))
}

/// The version, IHL and total length of `p` checked against its length, no checksum: (IHL octets, total length).
fn header_lengths(p: &[u8]) -> Result<(usize, usize), Ipv4Error> {
    if p.len() < IPV4_HEADER_LEN {
        return Err(Ipv4Error::Truncated);
    }
    if p[0] >> 4 != 4 {
        return Err(Ipv4Error::NotIpv4);
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    if ihl < IPV4_HEADER_LEN || total < ihl || total > p.len() {
        return Err(Ipv4Error::BadLength);
    }
    Ok((ihl, total))
}

/// Splits an inner IPv4 packet into fragments of at most `mtu` octets BEFORE encryption (RFC 791 §3.2; AWS
/// wants inner fragmentation, never ESP fragmentation). Zero-allocation, pull style:
///
/// ```
/// use iotrelay_esp::ipv4::{self, Fragmenter};
/// let big = ipv4::build_udp_vec([100, 127, 0, 1].into(), 1, [100, 64, 1, 10].into(), 2, &[7u8; 3000]);
/// let mut frags = Fragmenter::new(&big, 1400).unwrap(); // Err(TooBig) if DF is set
/// let mut buf = [0u8; 1400];
/// let mut n_frags = 0;
/// while let Some(n) = frags.next_into(&mut buf).unwrap() {
///     assert!(n <= 1400); // seal &buf[..n] with OutboundSa::seal
///     n_frags += 1;
/// }
/// assert_eq!(n_frags, 3);
/// ```
///
/// A packet that already fits yields itself once (copied; check `len() <= mtu` first to seal it in place).
/// Fragment data is a multiple of 8 octets except in the last fragment; offsets and MF are relative to the
/// packet's own (a fragment can be fragmented again). Options are copied into every fragment (we build
/// option-less packets; RFC 791 would copy only options with the copied flag).
#[derive(Debug, Clone)]
pub struct Fragmenter<'a> {
    packet: &'a [u8],
    ihl: usize,
    /// Next data offset (octets, relative to this packet's data).
    off: usize,
    chunk: usize,
    base_units: u16,
    more_after: bool,
    done: bool,
}

impl<'a> Fragmenter<'a> {
    /// Checks the header; `Err(TooBig)` if the packet is larger than `mtu` and has DF set, or `mtu` leaves less
    /// than 8 data octets per fragment.
    pub fn new(packet: &'a [u8], mtu: usize) -> Result<Self, Ipv4Error> {
        let (ihl, total) = check_header(packet)?;
        let packet = &packet[..total];
        let frag = u16::from_be_bytes([packet[6], packet[7]]);
        let whole = total <= mtu;
        if !whole && frag & FLAG_DF != 0 {
            return Err(Ipv4Error::TooBig);
        }
        let chunk = if whole { total - ihl } else { mtu.saturating_sub(ihl) / 8 * 8 };
        if chunk == 0 && !whole {
            return Err(Ipv4Error::TooBig);
        }
        Ok(Fragmenter {
            packet,
            ihl,
            off: 0,
            chunk,
            base_units: frag & OFFSET_MASK,
            more_after: frag & FLAG_MF != 0,
            done: false,
        })
    }

    /// Whether the packet fits the MTU as it is (then the only "fragment" is the packet itself).
    pub fn is_whole(&self) -> bool {
        self.chunk == self.packet.len() - self.ihl
    }

    /// Writes the next fragment to the start of `out`; `Ok(None)` when all were written. `Err(BufferTooSmall)`
    /// if `out` cannot hold it (nothing is consumed then).
    pub fn next_into(&mut self, out: &mut [u8]) -> Result<Option<usize>, Ipv4Error> {
        let data = &self.packet[self.ihl..];
        if self.done {
            return Ok(None);
        }
        if self.is_whole() {
            let n = self.packet.len();
            out.get_mut(..n).ok_or(Ipv4Error::BufferTooSmall)?.copy_from_slice(self.packet);
            self.done = true;
            return Ok(Some(n));
        }
        let n = self.chunk.min(data.len() - self.off);
        let last = self.off + n == data.len();
        let total = self.ihl + n;
        let units = self.base_units.wrapping_add((self.off / 8) as u16);
        if out.len() < total || units > OFFSET_MASK {
            return Err(if out.len() < total { Ipv4Error::BufferTooSmall } else { Ipv4Error::TooBig });
        }
        let ihl = self.ihl;
        out[..ihl].copy_from_slice(&self.packet[..ihl]);
        out[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        let keep_df = u16::from_be_bytes([out[6], out[7]]) & FLAG_DF;
        let mf = if last && !self.more_after { 0 } else { FLAG_MF };
        out[6..8].copy_from_slice(&(keep_df | mf | units).to_be_bytes());
        out[10..12].copy_from_slice(&[0, 0]);
        let c = checksum(&out[..ihl]);
        out[10..12].copy_from_slice(&c.to_be_bytes());
        out[ihl..total].copy_from_slice(&data[self.off..self.off + n]);
        self.off += n;
        self.done = last;
        Ok(Some(total))
    }
}

/// Splits `packet` into fragments of at most `mtu` octets (at most 1500: larger MTUs use 1500-octet fragments)
/// and calls `emit` for each; a packet that fits is passed through unchanged (no copy). Returns false (nothing
/// emitted) for DF set and too big, an unusable MTU or a bad header. [`Fragmenter`] gives the typed error
/// ([`Ipv4Error::TooBig`] → `drops.tooBig`) and lets the caller choose the buffer.
pub fn fragment(packet: &[u8], mtu: usize, mut emit: impl FnMut(&[u8])) -> bool {
    if packet.len() <= mtu {
        emit(packet);
        return true;
    }
    let mut buf = [0u8; 1500];
    let Ok(mut f) = Fragmenter::new(packet, mtu.min(buf.len())) else { return false };
    while let Ok(Some(n)) = f.next_into(&mut buf) {
        emit(&buf[..n]);
    }
    true
}

/// Reassembles inbound IPv4 fragments (RFC 791 §3.2, RFC 815-style bitmap of 8-octet units), with bounded
/// memory and time: at most `slots` datagrams in progress, each at most `max_len` octets of payload, all
/// buffers allocated by [`Reassembler::new`]; a datagram not completed within `timeout` of its first fragment is
/// dropped. When every slot is busy, the oldest datagram is dropped for the new one. Time is whatever monotonic
/// `now` the caller passes.
///
/// ```
/// use iotrelay_esp::ipv4::{self, Fragmenter, Reassembler};
/// use std::time::Duration;
/// let pkt = ipv4::build_udp_vec([100, 64, 1, 10].into(), 7000, [100, 127, 0, 1].into(), 7000, &[1u8; 2000]);
/// let mut frags = Vec::new();
/// let mut f = Fragmenter::new(&pkt, 1000).unwrap();
/// let mut buf = [0u8; 1000];
/// while let Some(n) = f.next_into(&mut buf).unwrap() { frags.push(buf[..n].to_vec()); }
/// let mut r = Reassembler::default();
/// let now = Duration::from_secs(1);
/// assert_eq!(r.push(now, &frags[2]).unwrap(), None);
/// assert_eq!(r.push(now, &frags[0]).unwrap(), None);
/// assert_eq!(r.push(now, &frags[1]).unwrap(), Some(&pkt[..]));
/// ```
#[derive(Debug)]
pub struct Reassembler {
    slots: Vec<Slot>,
    max_len: usize,
    timeout: Duration,
    dropped: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FragKey {
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    id: u16,
}

#[derive(Debug)]
struct Slot {
    key: Option<FragKey>,
    started: Duration,
    /// 60 octets of room for the header, then the payload.
    buf: Vec<u8>,
    /// One bit per 8-octet unit of payload received.
    have: Vec<u64>,
    header_len: usize,
    total: Option<usize>,
}

const MAX_HEADER: usize = 60;

impl Default for Reassembler {
    /// 16 datagrams of up to 65515 payload octets (1 MiB), 30 s (Linux's `ipfrag_time`).
    fn default() -> Self {
        Reassembler::new(16, IPV4_MAX_LEN - IPV4_HEADER_LEN, Duration::from_secs(30))
    }
}

impl Reassembler {
    pub fn new(slots: usize, max_len: usize, timeout: Duration) -> Self {
        let max_len = max_len.min(IPV4_MAX_LEN - IPV4_HEADER_LEN);
        let units = max_len.div_ceil(8);
        let slots = (0..slots.max(1))
            .map(|_| Slot {
                key: None,
                started: Duration::ZERO,
                buf: vec![0; MAX_HEADER + units * 8],
                have: vec![0; units.div_ceil(64)],
                header_len: 0,
                total: None,
            })
            .collect();
        Reassembler { slots, max_len, timeout, dropped: 0 }
    }

    /// Incomplete datagrams dropped so far (timed out, evicted, inconsistent).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Datagrams in progress.
    pub fn pending(&self) -> usize {
        self.slots.iter().filter(|s| s.key.is_some()).count()
    }

    /// Drops datagrams whose first fragment arrived `timeout` or more before `now`.
    pub fn expire(&mut self, now: Duration) {
        for s in &mut self.slots {
            if s.key.is_some() && now.saturating_sub(s.started) >= self.timeout {
                s.key = None;
                self.dropped += 1;
            }
        }
    }

    /// Takes one inbound IPv4 packet (header checked). Not a fragment: `Ok(Some(packet))` as it is. A fragment:
    /// `Ok(None)` until the datagram is complete, then `Ok(Some(datagram))` (header from the first fragment, total
    /// length and checksum fixed, MF and offset cleared), valid until the next call.
    pub fn push<'a>(&'a mut self, now: Duration, packet: &'a [u8]) -> Result<Option<&'a [u8]>, Ipv4Error> {
        let (ihl, total) = check_header(packet)?;
        let packet = &packet[..total];
        let frag = u16::from_be_bytes([packet[6], packet[7]]);
        let more = frag & FLAG_MF != 0;
        let off = usize::from(frag & OFFSET_MASK) * 8;
        if !more && off == 0 {
            return Ok(Some(packet));
        }
        let data = &packet[ihl..];
        if data.is_empty() || (more && !data.len().is_multiple_of(8)) {
            return Err(Ipv4Error::BadLength);
        }
        let end = off + data.len();
        if end > self.max_len {
            return Err(Ipv4Error::TooBig);
        }
        self.expire(now);
        let key = FragKey {
            src: [packet[12], packet[13], packet[14], packet[15]],
            dst: [packet[16], packet[17], packet[18], packet[19]],
            proto: packet[9],
            id: u16::from_be_bytes([packet[4], packet[5]]),
        };
        let idx = match self.slots.iter().position(|s| s.key == Some(key)) {
            Some(i) => i,
            None => {
                let i = match self.slots.iter().position(|s| s.key.is_none()) {
                    Some(i) => i,
                    None => {
                        self.dropped += 1;
                        (0..self.slots.len()).min_by_key(|&i| self.slots[i].started).unwrap_or(0)
                    }
                };
                let s = &mut self.slots[i];
                s.key = Some(key);
                s.started = now;
                s.have.iter_mut().for_each(|w| *w = 0);
                s.header_len = 0;
                s.total = None;
                i
            }
        };
        let s = &mut self.slots[idx];
        // A last fragment fixes the length; anything contradicting it drops the datagram.
        let conflict = match (s.total, more) {
            (Some(t), false) => t != end,
            (Some(t), true) => end > t,
            (None, _) => false,
        };
        if conflict {
            s.key = None;
            self.dropped += 1;
            return Err(Ipv4Error::BadLength);
        }
        if !more {
            s.total = Some(end);
        }
        s.buf[MAX_HEADER + off..MAX_HEADER + end].copy_from_slice(data);
        for u in off / 8..end.div_ceil(8) {
            s.have[u / 64] |= 1 << (u % 64);
        }
        if off == 0 {
            s.buf[MAX_HEADER - ihl..MAX_HEADER].copy_from_slice(&packet[..ihl]);
            s.header_len = ihl;
        }
        let Some(t) = s.total else { return Ok(None) };
        let units = t.div_ceil(8);
        let complete = s.header_len != 0
            && (0..units / 64).all(|w| s.have[w] == u64::MAX)
            && (units % 64 == 0 || s.have[units / 64] & ((1u64 << (units % 64)) - 1) == (1u64 << (units % 64)) - 1);
        if !complete {
            return Ok(None);
        }
        s.key = None;
        let h = s.header_len;
        let start = MAX_HEADER - h;
        let len = h + t;
        if len > 65535 {
            return Err(Ipv4Error::TooBig);
        }
        let out = &mut s.buf[start..MAX_HEADER + t];
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        let keep_df = u16::from_be_bytes([out[6], out[7]]) & FLAG_DF;
        out[6..8].copy_from_slice(&keep_df.to_be_bytes());
        out[10..12].copy_from_slice(&[0, 0]);
        let c = checksum(&out[..h]);
        out[10..12].copy_from_slice(&c.to_be_bytes());
        Ok(Some(&*out))
    }
}
