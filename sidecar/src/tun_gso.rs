//! The read side of the TUN device's offloads, pure (no device): the `virtio_net_hdr` the kernel puts before every
//! packet of a device opened with `IFF_VNET_HDR`, and the segmentation of what follows it. With `TUNSETOFFLOAD`
//! (`TUN_F_CSUM|TUN_F_TSO4`, `TUN_F_USO4` where the kernel has it) the host stack hands the device TCP and UDP
//! "super-packets" of up to 64 KiB with one IPv4/TCP (or UDP) header and a segment size, and packets whose
//! transport checksum is left for us to finish; [`segment`] turns each into the MTU-sized IPv4 packets the host
//! would have sent without offloads (IP length, ID and checksum; TCP sequence number, flags and checksum; UDP
//! length and checksum), built one after the other in a caller's buffer: no allocation.
//!
//! Everything is length-checked: a frame that does not parse is refused ([`OffloadError`]), never a panic. The
//! write side (coalescing) is `crate::tun_gro`'s; the device is `crate::tun`'s.

use iotrelay_esp::ipv4::{FRAGMENT_MASK, IPV4_MAX_LEN, PROTO_TCP, PROTO_UDP, TCP_CWR, TCP_FIN, TCP_PSH};

/// Octets of `struct virtio_net_hdr` (the device keeps the kernel's default `TUNSETVNETHDRSZ`).
pub const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the transport checksum is to be finished from `csum_start`.
pub const F_NEEDS_CSUM: u8 = 1;
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP_L4` (USO).
pub const GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN`, or-ed into the type.
pub const GSO_ECN: u8 = 0x80;

/// `struct virtio_net_hdr` (legacy layout, the host's byte order, as TUN uses on a little-endian host and by
/// default everywhere).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Splits a frame read from the device into its header and packet; `None` when it is too short.
    pub fn parse(frame: &[u8]) -> Option<(VnetHdr, usize)> {
        let h = frame.get(..VNET_HDR_LEN)?;
        let u = |i: usize| u16::from_ne_bytes([h[i], h[i + 1]]);
        Some((
            VnetHdr { flags: h[0], gso_type: h[1], hdr_len: u(2), gso_size: u(4), csum_start: u(6), csum_offset: u(8) },
            VNET_HDR_LEN,
        ))
    }

    /// The header's wire form.
    pub fn encode(&self) -> [u8; VNET_HDR_LEN] {
        let mut o = [0u8; VNET_HDR_LEN];
        o[0] = self.flags;
        o[1] = self.gso_type;
        o[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        o[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        o[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        o[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        o
    }
}

/// Why a frame from the device was refused (counted as `notIpv4` by the datapath: not an IPv4 packet we can send).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffloadError {
    /// Shorter than its headers say, or a checksum position outside the packet.
    Truncated,
    /// A GSO frame that is not IPv4 TCP/UDP (e.g. TCPv6: the device is IPv4-only), or an IPv4 fragment.
    Unsupported,
    /// A GSO frame with segment size 0, or segments that do not fit an IPv4 packet or the caller's buffer.
    BadSegmentSize,
}

/// One's-complement sum of `data` as big-endian 16-bit words (odd length: a zero octet appended), added to `acc`.
/// 32-bit words summed into 64 bits fold to the same 16-bit sum (2^16 is 1 modulo 0xffff).
pub fn sum(mut acc: u64, data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut pad = [0u8; 4];
    pad[..rest.len()].copy_from_slice(rest);
    acc + u64::from(u32::from_be_bytes(pad))
}

/// Folds a sum to 16 bits (not complemented).
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The IPv4 pseudo-header's sum for `proto` and a transport length of `len` (`p` is the IPv4 packet).
pub fn pseudo(p: &[u8], proto: u8, len: usize) -> u64 {
    sum(u64::from(proto) + len as u64, &p[12..20])
}

/// Recomputes the IPv4 header checksum of `p` (`ihl` octets of header, checked by the caller).
pub fn set_ip_checksum(p: &mut [u8], ihl: usize) {
    p[10..12].copy_from_slice(&[0, 0]);
    let c = !fold(sum(0, &p[..ihl]));
    p[10..12].copy_from_slice(&c.to_be_bytes());
}

/// The IPv4 header length of `p` if it is an IPv4 packet whose header fits; fragments are refused.
fn ipv4_ihl(p: &[u8]) -> Result<usize, OffloadError> {
    let first = *p.first().ok_or(OffloadError::Truncated)?;
    if first >> 4 != 4 {
        return Err(OffloadError::Unsupported);
    }
    let ihl = usize::from(first & 0x0f) * 4;
    if ihl < 20 || p.len() < ihl {
        return Err(OffloadError::Truncated);
    }
    if u16::from_be_bytes([p[6], p[7]]) & FRAGMENT_MASK != 0 {
        return Err(OffloadError::Unsupported);
    }
    Ok(ihl)
}

/// Finishes a checksum the host left to the device: the sum from `csum_start` to the end (the field holds the
/// pseudo-header's sum) stored at `csum_start + csum_offset`. A UDP checksum that comes out 0 is sent as 0xffff.
fn finish_checksum(hdr: &VnetHdr, p: &mut [u8]) -> Result<(), OffloadError> {
    let start = usize::from(hdr.csum_start);
    let at = start + usize::from(hdr.csum_offset);
    if start > p.len() || at + 2 > p.len() {
        return Err(OffloadError::Truncated);
    }
    let mut c = !fold(sum(0, &p[start..]));
    if c == 0 && p.get(9) == Some(&PROTO_UDP) {
        c = 0xffff;
    }
    p[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// The packets a frame's packet `p` (after the header `hdr`) stands for, each handed to `emit` as a whole IPv4
/// packet: `p` itself (its checksum finished if the host left it), or its segments built one at a time in
/// `scratch` (which must hold the headers and one segment). Returns how many packets were emitted.
pub fn segment(
    hdr: &VnetHdr,
    p: &mut [u8],
    scratch: &mut [u8],
    emit: &mut dyn FnMut(&mut [u8]),
) -> Result<usize, OffloadError> {
    let gso = hdr.gso_type & !GSO_ECN;
    if gso == GSO_NONE {
        if hdr.flags & F_NEEDS_CSUM != 0 {
            finish_checksum(hdr, p)?;
        }
        emit(p);
        return Ok(1);
    }
    let ihl = ipv4_ihl(p)?;
    let (proto, l4_len) = match gso {
        GSO_TCPV4 => {
            let doff = p.get(ihl + 12).map(|b| usize::from(b >> 4) * 4).ok_or(OffloadError::Truncated)?;
            if doff < 20 || ihl + doff > p.len() {
                return Err(OffloadError::Truncated);
            }
            (PROTO_TCP, doff)
        }
        GSO_UDP_L4 if p.len() >= ihl + 8 => (PROTO_UDP, 8),
        GSO_UDP_L4 => return Err(OffloadError::Truncated),
        _ => return Err(OffloadError::Unsupported),
    };
    if p[9] != proto {
        return Err(OffloadError::Unsupported);
    }
    let hlen = ihl + l4_len;
    let mss = usize::from(hdr.gso_size);
    if mss == 0 || hlen + mss > IPV4_MAX_LEN || hlen + mss.min(p.len() - hlen) > scratch.len() {
        return Err(OffloadError::BadSegmentSize);
    }
    let (head, payload) = p.split_at(hlen);
    if payload.is_empty() {
        // Nothing to split: the headers alone, checksums as for one segment.
        let n = build(head, &[], ihl, proto, 0, 0, true, scratch);
        emit(&mut scratch[..n]);
        return Ok(1);
    }
    let count = payload.len().div_ceil(mss);
    for (i, chunk) in payload.chunks(mss).enumerate() {
        let n = build(head, chunk, ihl, proto, i, i * mss, i + 1 == count, scratch);
        emit(&mut scratch[..n]);
    }
    Ok(count)
}

/// Builds segment `i` (payload `chunk`, `offset` octets into the super-packet's payload) into `out` from the
/// super-packet's headers `head`; returns its length.
#[allow(clippy::too_many_arguments)]
fn build(
    head: &[u8],
    chunk: &[u8],
    ihl: usize,
    proto: u8,
    i: usize,
    offset: usize,
    last: bool,
    out: &mut [u8],
) -> usize {
    let hlen = head.len();
    let n = hlen + chunk.len();
    out[..hlen].copy_from_slice(head);
    out[hlen..n].copy_from_slice(chunk);
    let p = &mut out[..n];
    p[2..4].copy_from_slice(&(n as u16).to_be_bytes());
    let id = u16::from_be_bytes([p[4], p[5]]).wrapping_add(i as u16);
    p[4..6].copy_from_slice(&id.to_be_bytes());
    set_ip_checksum(p, ihl);
    let l4 = n - ihl;
    let at = if proto == PROTO_TCP {
        let t = &mut p[ihl..];
        let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]).wrapping_add(offset as u32);
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        if !last {
            t[13] &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            t[13] &= !TCP_CWR;
        }
        ihl + 16
    } else {
        p[ihl + 4..ihl + 6].copy_from_slice(&(l4 as u16).to_be_bytes());
        ihl + 6
    };
    p[at..at + 2].copy_from_slice(&[0, 0]);
    let mut c = !fold(sum(pseudo(p, proto, l4), &p[ihl..]));
    if c == 0 && proto == PROTO_UDP {
        c = 0xffff;
    }
    p[at..at + 2].copy_from_slice(&c.to_be_bytes());
    n
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use iotrelay_esp::ipv4::TCP_ACK;

    /// A 20-octet IPv4 header (DF, TTL 64, 100.127.0.1 -> 100.64.1.10) for a packet of `p.len()` octets, with
    /// its checksum: the test packets' common part.
    pub(crate) fn ipv4_header(p: &mut [u8], id: u16, proto: u8) {
        p[0] = 0x45;
        let n = p.len() as u16;
        p[2..4].copy_from_slice(&n.to_be_bytes());
        p[4..6].copy_from_slice(&id.to_be_bytes());
        p[6] = 0x40;
        p[8] = 64;
        p[9] = proto;
        p[12..16].copy_from_slice(&[100, 127, 0, 1]);
        p[16..20].copy_from_slice(&[100, 64, 1, 10]);
        set_ip_checksum(p, 20);
    }

    /// An IPv4/TCP packet 100.127.0.1:40000 -> 100.64.1.10:22 with `payload`, sequence `seq`, flags `flags`, a
    /// 12-octet timestamp option, DF, ID 0x1000, checksums set.
    pub(crate) fn tcp(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let h = 20 + 32;
        let mut p = vec![0u8; h + payload.len()];
        ipv4_header(&mut p, 0x1000, PROTO_TCP);
        let t = &mut p[20..];
        t[0..2].copy_from_slice(&40000u16.to_be_bytes());
        t[2..4].copy_from_slice(&22u16.to_be_bytes());
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t[8..12].copy_from_slice(&7u32.to_be_bytes());
        t[12] = 8 << 4;
        t[13] = flags;
        t[14..16].copy_from_slice(&502u16.to_be_bytes());
        t[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        t[32..].copy_from_slice(payload);
        let c = !fold(sum(pseudo(&p, PROTO_TCP, p.len() - 20), &p[20..]));
        p[36..38].copy_from_slice(&c.to_be_bytes());
        p
    }

    /// Whether the IPv4 header and transport checksums of `p` verify.
    pub(crate) fn checksums_ok(p: &[u8]) -> bool {
        let ihl = usize::from(p[0] & 0xf) * 4;
        fold(sum(0, &p[..ihl])) == 0xffff && fold(sum(pseudo(p, p[9], p.len() - ihl), &p[ihl..])) == 0xffff
    }

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// A TSO super-packet (3000 octets, segment size 1000 + a 500 tail) becomes exactly the packets the host would
    /// have sent: consecutive sequence numbers and IDs, PSH/FIN only on the last, CWR only on the first, lengths
    /// and both checksums right, and the payload reassembles to the original.
    #[test]
    fn tso_frame_is_split_like_the_host_would() {
        let data = payload(3500);
        // The host's super-packet: one header, the whole payload, the checksum left partial (ignored by us).
        let mut sp = tcp(1_000_000, TCP_ACK | TCP_PSH | TCP_FIN | TCP_CWR, &data);
        sp[36..38].copy_from_slice(&[0xde, 0xad]);
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 52,
            gso_size: 1000,
            csum_start: 20,
            csum_offset: 16,
        };
        let mut scratch = [0u8; 2048];
        let mut got: Vec<Vec<u8>> = Vec::new();
        let n = segment(&hdr, &mut sp, &mut scratch, &mut |s| got.push(s.to_vec())).unwrap();
        assert_eq!(n, 4);
        assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), [1052, 1052, 1052, 552]);
        let mut joined = Vec::new();
        for (i, s) in got.iter().enumerate() {
            assert!(checksums_ok(s), "segment {i} checksums");
            assert_eq!(usize::from(u16::from_be_bytes([s[2], s[3]])), s.len(), "IP total length {i}");
            assert_eq!(u16::from_be_bytes([s[4], s[5]]), 0x1000 + i as u16, "IP ID {i}");
            assert_eq!(u32::from_be_bytes([s[24], s[25], s[26], s[27]]), 1_000_000 + 1000 * i as u32, "seq {i}");
            let flags = s[33];
            assert_eq!(flags & (TCP_PSH | TCP_FIN) != 0, i == 3, "PSH/FIN only on the last ({i}: {flags:#x})");
            assert_eq!(flags & TCP_CWR != 0, i == 0, "CWR only on the first ({i})");
            assert_eq!(&s[20..24], &sp[20..24], "ports");
            assert_eq!(&s[40..52], &sp[40..52], "options kept");
            joined.extend_from_slice(&s[52..]);
        }
        assert_eq!(joined, data);
    }

    /// A USO super-packet: UDP length and checksum per datagram.
    #[test]
    fn uso_frame_is_split_into_datagrams() {
        let data = payload(2500);
        let mut p = tcp(0, 0, &[]);
        p.truncate(28);
        p[0] = 0x45;
        p[9] = PROTO_UDP;
        p[20..24].copy_from_slice(&[0x9c, 0x40, 0x1b, 0x58]);
        p.extend_from_slice(&data);
        let hdr = VnetHdr { flags: F_NEEDS_CSUM, gso_type: GSO_UDP_L4, gso_size: 1200, ..VnetHdr::default() };
        let mut scratch = [0u8; 1500];
        let mut got: Vec<Vec<u8>> = Vec::new();
        assert_eq!(segment(&hdr, &mut p, &mut scratch, &mut |s| got.push(s.to_vec())), Ok(3));
        for s in &got {
            assert!(checksums_ok(s));
            assert_eq!(usize::from(u16::from_be_bytes([s[24], s[25]])), s.len() - 20, "UDP length");
        }
        assert_eq!(got.iter().flat_map(|s| s[28..].to_vec()).collect::<Vec<_>>(), data);
    }

    /// No GSO, checksum left partial: finished in place (the host's pseudo-header sum is in the field).
    #[test]
    fn partial_checksum_is_finished() {
        let good = tcp(5, TCP_ACK | TCP_PSH, &payload(300));
        let mut p = good.clone();
        let seed = fold(pseudo(&p, PROTO_TCP, p.len() - 20));
        p[36..38].copy_from_slice(&seed.to_be_bytes());
        assert!(!checksums_ok(&p));
        let hdr = VnetHdr { flags: F_NEEDS_CSUM, csum_start: 20, csum_offset: 16, ..VnetHdr::default() };
        let mut scratch = [0u8; 0];
        let mut got = Vec::new();
        segment(&hdr, &mut p, &mut scratch, &mut |s| got.push(s.to_vec())).unwrap();
        assert_eq!(got, [good]);
    }

    #[test]
    fn bad_frames_are_refused() {
        let mut scratch = [0u8; 2048];
        let mut emit = |_: &mut [u8]| panic!("nothing may be emitted");
        let tso = VnetHdr { gso_type: GSO_TCPV4, gso_size: 1000, ..VnetHdr::default() };
        let mut sp = tcp(1, TCP_ACK, &payload(3000));
        let zero = VnetHdr { gso_size: 0, ..tso };
        assert_eq!(segment(&zero, &mut sp, &mut scratch, &mut emit), Err(OffloadError::BadSegmentSize));
        let big = VnetHdr { gso_size: 4000, ..tso };
        assert_eq!(segment(&big, &mut sp, &mut scratch, &mut emit), Err(OffloadError::BadSegmentSize));
        let v6 = VnetHdr { gso_type: 4, ..tso };
        assert_eq!(segment(&v6, &mut sp, &mut scratch, &mut emit), Err(OffloadError::Unsupported));
        assert_eq!(segment(&tso, &mut sp[..30], &mut scratch, &mut emit), Err(OffloadError::Truncated));
        let csum = VnetHdr { flags: F_NEEDS_CSUM, csum_start: 60, csum_offset: 16, ..VnetHdr::default() };
        assert_eq!(segment(&csum, &mut sp[..70], &mut scratch, &mut emit), Err(OffloadError::Truncated));
        assert_eq!(VnetHdr::parse(&[0; 9]), None);
        let h = VnetHdr { flags: 1, gso_type: 1, hdr_len: 52, gso_size: 1400, csum_start: 20, csum_offset: 16 };
        assert_eq!(VnetHdr::parse(&h.encode()), Some((h, VNET_HDR_LEN)));
    }
}
