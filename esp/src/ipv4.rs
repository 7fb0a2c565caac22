//! Inner IPv4/UDP packets for the relay: build (with header and UDP checksums) and parse (checked).

use std::net::Ipv4Addr;

pub const IPV4_HEADER_LEN: usize = 20;
pub const UDP_HEADER_LEN: usize = 8;

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
    acc += 17 + udp.len() as u32;
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
    if out.len() < total || total > 65535 {
        return Err(Ipv4Error::BufferTooSmall);
    }
    let p = &mut out[..total];
    p[0] = 0x45;
    p[1] = 0;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6..8].copy_from_slice(&[0, 0]);
    p[8] = 64;
    p[9] = 17;
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
    if checksum(&p[..ihl]) != 0 {
        return Err(Ipv4Error::BadChecksum);
    }
    let frag = u16::from_be_bytes([p[6], p[7]]);
    if frag & 0x3fff != 0 {
        return Err(Ipv4Error::Fragment);
    }
    if p[9] != 17 {
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
        && fold(sum16(udp, sum16(&dst.octets(), sum16(&src.octets(), 17 + ulen as u32)))) != 0
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

/// Splits an IPv4 packet into fragments of at most `mtu` octets (RFC 791), calling `emit` for each. A packet that
/// fits is passed through unchanged. With DF set and too big: `Err(BufferTooSmall)` is not used; returns false.
pub fn fragment(packet: &[u8], mtu: usize, mut emit: impl FnMut(&[u8])) -> bool {
    if packet.len() <= mtu {
        emit(packet);
        return true;
    }
    if packet.len() < IPV4_HEADER_LEN || packet[6] & 0x40 != 0 {
        return false;
    }
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    if ihl < IPV4_HEADER_LEN || packet.len() < ihl {
        return false;
    }
    let data = &packet[ihl..];
    let chunk = (mtu.saturating_sub(ihl)) / 8 * 8;
    if chunk == 0 {
        return false;
    }
    let mut buf = [0u8; 1500];
    let mut off = 0;
    while off < data.len() {
        let n = chunk.min(data.len() - off);
        let last = off + n == data.len();
        let total = ihl + n;
        if total > buf.len() {
            return false;
        }
        buf[..ihl].copy_from_slice(&packet[..ihl]);
        buf[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        let fo = ((off / 8) as u16) | if last { 0 } else { 0x2000 };
        buf[6..8].copy_from_slice(&fo.to_be_bytes());
        buf[10..12].copy_from_slice(&[0, 0]);
        let c = checksum(&buf[..ihl]);
        buf[10..12].copy_from_slice(&c.to_be_bytes());
        buf[ihl..total].copy_from_slice(&data[off..off + n]);
        emit(&buf[..total]);
        off += n;
    }
    true
}
