//! Gateway mode's packet rules, pure (no device, no sockets): which inner packets may enter the tunnel (inside the
//! negotiated traffic selectors and `remoteSubnets`), which may leave it into the TUN device (anti-spoofing), TCP
//! MSS clamping, and the ICMP "fragmentation needed" answer for a too-big packet with DF. The TUN device and its
//! routes are `crate::tun`'s; the wiring to the ESP SAs is `crate::datapath`'s.

use std::net::Ipv4Addr;

use iotrelay_api::Ipv4Cidr;
use iotrelay_esp::ipv4::{
    self, FLAG_DF, FRAGMENT_MASK, IPV4_HEADER_LEN, OFFSET_MASK, PROTO_ICMP, PROTO_TCP, TCP_HEADER_LEN, TCP_SYN,
};

const ICMP_DEST_UNREACHABLE: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
/// IPv4 (20) + TCP (20) headers: MSS = MTU - 40.
const TCP_IP_HEADERS: u16 = (IPV4_HEADER_LEN + TCP_HEADER_LEN) as u16;
/// The TTL of the ICMP errors we generate.
const ICMP_TTL: u8 = 64;

/// Why gateway mode dropped a packet. Every reason is a counter (`iotrelay_gateway_drops_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayDrop {
    /// From the device: not an IPv4 packet with a valid header (e.g. IPv6 the host sent to the device).
    NotIpv4,
    /// From the device: no tunnel has a CHILD_SA.
    NoTunnel,
    /// From the device: source or destination outside the negotiated traffic selectors, `remoteSubnets` or this
    /// side's networks (`GatewayConfig::local`); from the tunnel: destination outside this side's networks.
    OutsideSelectors,
    /// From the device: larger than the MTU with DF set (answered with ICMP "fragmentation needed").
    TooBig,
    /// From the tunnel: source outside the peer's traffic selectors or `remoteSubnets` (anti-spoofing).
    SpoofedSource,
    /// From the tunnel: not a valid IPv4 packet.
    Malformed,
    /// Encrypting or queueing for the tunnel failed, or the device did not take the packet.
    SendFailed,
}

impl GatewayDrop {
    pub const ALL: [GatewayDrop; 7] = [
        GatewayDrop::NotIpv4,
        GatewayDrop::NoTunnel,
        GatewayDrop::OutsideSelectors,
        GatewayDrop::TooBig,
        GatewayDrop::SpoofedSource,
        GatewayDrop::Malformed,
        GatewayDrop::SendFailed,
    ];
    /// The metric label.
    pub fn name(self) -> &'static str {
        match self {
            GatewayDrop::NotIpv4 => "notIpv4",
            GatewayDrop::NoTunnel => "noTunnel",
            GatewayDrop::OutsideSelectors => "outsideSelectors",
            GatewayDrop::TooBig => "tooBig",
            GatewayDrop::SpoofedSource => "spoofedSource",
            GatewayDrop::Malformed => "malformed",
            GatewayDrop::SendFailed => "sendFailed",
        }
    }
}

/// Gateway counters: packets each way and drops by reason ([`GatewayDrop::ALL`] order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatewayCounters {
    /// Packets read from the device and sent into the tunnel (after fragmentation: one per original packet).
    pub to_tunnel: u64,
    /// Packets from the tunnel written to the device.
    pub to_device: u64,
    /// Packets fragmented before encryption (no DF, larger than the MTU).
    pub fragmented: u64,
    /// TCP SYNs whose MSS option was lowered.
    pub mss_clamped: u64,
    /// With BGP: learned prefixes routed through the device now (gauge).
    pub bgp_routes: u64,
    /// With BGP: learned prefixes not routed now: beyond the bound or covering a tunnel peer's address (gauge).
    pub bgp_routes_refused: u64,
    /// Route changes the device could not make (netlink errors).
    pub route_errors: u64,
    pub drops: [u64; GatewayDrop::ALL.len()],
    /// The device's system calls and offload mode (the owner loop's, through `Datapath::set_tun_io`).
    pub device: TunIo,
}

/// The TUN device's I/O, for `/metrics` (written by the owner loop only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunIo {
    /// The device was opened with `IFF_VNET_HDR` and TSO (TCP super-packets in both directions).
    pub offload: bool,
    /// The kernel also accepted UDP segmentation offload (USO).
    pub uso: bool,
    /// Read system calls that returned a frame.
    pub reads: u64,
    /// Packets those reads held (more than `reads` when the host handed super-packets).
    pub packets_read: u64,
    /// Write system calls the device took.
    pub writes: u64,
    /// Packets those writes held (more than `writes` when segments were coalesced).
    pub packets_written: u64,
}

impl GatewayCounters {
    pub fn drop(&mut self, why: GatewayDrop) {
        self.drops[why as usize] += 1;
    }
    pub fn drops_of(&self, why: GatewayDrop) -> u64 {
        self.drops[why as usize]
    }
}

/// Gateway settings the datapath needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// `gateway.mtu`; `None`: the negotiated suite's.
    pub mtu: Option<u16>,
    /// `remoteSubnets`: what the tunnel carries to and from the other side.
    pub remote_subnets: Vec<Ipv4Cidr>,
    /// What it carries on this side (`ValidatedSpec::gateway_local`: with BGP the announced prefixes, else
    /// `insideAddress/32` and `gateway.localSubnets`): the host's sources, the tunnel's destinations. `None`: any.
    pub local: Option<Vec<Ipv4Cidr>>,
}

/// Whether `ip` lies in one of the traffic selectors.
pub fn in_selectors(ts: &[Ipv4Cidr], ip: Ipv4Addr) -> bool {
    ts.iter().any(|p| p.contains(ip))
}

/// Traffic selectors as text for logs: `100.127.0.0/16,100.126.0.0/24`.
pub fn selectors_text(ts: &[Ipv4Cidr]) -> String {
    ts.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(",")
}

/// Source and destination of an IPv4 packet whose header checks out.
pub fn addresses(p: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    ipv4::check_header(p).ok()?;
    Some((Ipv4Addr::new(p[12], p[13], p[14], p[15]), Ipv4Addr::new(p[16], p[17], p[18], p[19])))
}

fn flags_offset(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[6], p[7]])
}

/// Whether the packet (header already checked) has DF set.
pub fn dont_fragment(p: &[u8]) -> bool {
    flags_offset(p) & FLAG_DF != 0
}

/// RFC 1624 incremental checksum update: `sum` covered `old`, now covers `new` in its place.
fn update_checksum(sum: u16, old: u16, new: u16) -> u16 {
    let mut s = u32::from(!sum) + u32::from(!old) + u32::from(new);
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Lowers the MSS option of a TCP SYN (or SYN-ACK) in `p` (a whole, checked IPv4 packet) to at most `mtu - 40`,
/// fixing the TCP checksum. Returns whether it changed anything. Fragments and other packets are left alone.
pub fn clamp_mss(p: &mut [u8], mtu: u16) -> bool {
    let Ok((ihl, total)) = ipv4::check_header(p) else { return false };
    if p[9] != PROTO_TCP || flags_offset(p) & FRAGMENT_MASK != 0 {
        return false;
    }
    let tcp = &mut p[ihl..total];
    if tcp.len() < 20 || tcp[13] & TCP_SYN == 0 {
        return false;
    }
    let data_off = usize::from(tcp[12] >> 4) * 4;
    if data_off < 20 || data_off > tcp.len() {
        return false;
    }
    let max = mtu.saturating_sub(TCP_IP_HEADERS);
    let mut i = 20;
    while i < data_off {
        match tcp[i] {
            0 => return false, // end of options
            1 => i += 1,       // no-op
            kind => {
                let Some(&len) = tcp.get(i + 1) else { return false };
                let len = usize::from(len);
                if len < 2 || i + len > data_off {
                    return false;
                }
                if kind == 2 && len == 4 {
                    let mss = u16::from_be_bytes([tcp[i + 2], tcp[i + 3]]);
                    if mss <= max {
                        return false;
                    }
                    let sum = u16::from_be_bytes([tcp[16], tcp[17]]);
                    tcp[i + 2..i + 4].copy_from_slice(&max.to_be_bytes());
                    let sum = update_checksum(sum, mss, max);
                    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
                    return true;
                }
                i += len;
            }
        }
    }
    false
}

/// Writes into `out` the ICMP "fragmentation needed" (type 3 code 4, RFC 1191) answering `p`, which is larger
/// than `mtu` with DF set: from `p`'s destination (the host takes it as coming from the path, and our own
/// address would be a martian source on the device) to `p`'s source, carrying `p`'s header and its first 8 data
/// octets. `None` for packets that must never get an ICMP error (ICMP errors, non-first fragments) and for a
/// short `out`.
pub fn frag_needed(p: &[u8], mtu: u16, out: &mut [u8]) -> Option<usize> {
    let (ihl, total) = ipv4::check_header(p).ok()?;
    if flags_offset(p) & OFFSET_MASK != 0 {
        return None;
    }
    if p[9] == PROTO_ICMP && p.get(ihl).is_some_and(|t| ![0u8, 8, 13, 15, 17].contains(t)) {
        return None; // an ICMP error (or unknown type): RFC 1122 §3.2.2, never answer it
    }
    let quoted = &p[..total.min(ihl + 8)];
    let n = IPV4_HEADER_LEN + 8 + quoted.len();
    let out = out.get_mut(..n)?;
    out[0] = 0x45;
    out[1] = 0;
    out[2..4].copy_from_slice(&(n as u16).to_be_bytes());
    out[4..6].copy_from_slice(&[0, 0]);
    out[6..8].copy_from_slice(&[0, 0]);
    out[8] = ICMP_TTL;
    out[9] = PROTO_ICMP;
    out[10..12].copy_from_slice(&[0, 0]);
    out[12..16].copy_from_slice(&p[16..20]);
    out[16..20].copy_from_slice(&p[12..16]);
    let c = ipv4::checksum(&out[..IPV4_HEADER_LEN]);
    out[10..12].copy_from_slice(&c.to_be_bytes());
    let icmp = &mut out[IPV4_HEADER_LEN..];
    icmp[0] = ICMP_DEST_UNREACHABLE;
    icmp[1] = ICMP_FRAG_NEEDED;
    icmp[2..6].copy_from_slice(&[0, 0, 0, 0]);
    icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
    icmp[8..].copy_from_slice(quoted);
    let c = ipv4::checksum(icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP SYN 100.127.0.1:40000 -> 100.64.1.10:22 with an MSS option, checksums set; DF set.
    pub(crate) fn syn(mss: u16) -> Vec<u8> {
        let mut p = vec![0u8; 20 + 24];
        p[0] = 0x45;
        let n = p.len() as u16;
        p[2..4].copy_from_slice(&n.to_be_bytes());
        p[6..8].copy_from_slice(&FLAG_DF.to_be_bytes());
        p[8] = 64;
        p[9] = PROTO_TCP;
        p[12..16].copy_from_slice(&[100, 127, 0, 1]);
        p[16..20].copy_from_slice(&[100, 64, 1, 10]);
        let c = ipv4::checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        let t = &mut p[20..];
        t[0..2].copy_from_slice(&40000u16.to_be_bytes());
        t[2..4].copy_from_slice(&22u16.to_be_bytes());
        t[12] = 6 << 4;
        t[13] = TCP_SYN;
        t[14..16].copy_from_slice(&64240u16.to_be_bytes());
        t[20..24].copy_from_slice(&[2, 4, (mss >> 8) as u8, mss as u8]);
        let sum = tcp_checksum(&p);
        p[36..38].copy_from_slice(&sum.to_be_bytes());
        p
    }

    fn tcp_checksum(p: &[u8]) -> u16 {
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&p[12..20]);
        pseudo.extend_from_slice(&[0, PROTO_TCP]);
        pseudo.extend_from_slice(&((p.len() - 20) as u16).to_be_bytes());
        let mut t = p[20..].to_vec();
        t[16..18].copy_from_slice(&[0, 0]);
        pseudo.extend_from_slice(&t);
        ipv4::checksum(&pseudo)
    }

    #[test]
    fn mss_is_clamped_with_a_correct_checksum() {
        let mut p = syn(1460);
        assert!(clamp_mss(&mut p, 1400));
        assert_eq!(u16::from_be_bytes([p[42], p[43]]), 1360);
        assert_eq!(u16::from_be_bytes([p[36], p[37]]), tcp_checksum(&p), "checksum recomputed from scratch");
        // Already small enough, or not a SYN: untouched.
        let mut small = syn(1200);
        assert!(!clamp_mss(&mut small, 1400));
        assert_eq!(small, syn(1200));
        let mut ack = syn(1460);
        ack[33] = 0x10;
        assert!(!clamp_mss(&mut ack, 1400));
    }

    #[test]
    fn frag_needed_quotes_the_packet_and_swaps_addresses() {
        let p = syn(1460);
        let mut out = [0u8; 128];
        let n = frag_needed(&p, 1400, &mut out).unwrap();
        let o = &out[..n];
        assert_eq!(n, 20 + 8 + 28);
        assert_eq!(ipv4::check_header(o).unwrap(), (20, n));
        assert_eq!(addresses(o), Some(("100.64.1.10".parse().unwrap(), "100.127.0.1".parse().unwrap())));
        assert_eq!((o[20], o[21]), (3, 4));
        assert_eq!(u16::from_be_bytes([o[26], o[27]]), 1400);
        assert_eq!(ipv4::checksum(&o[20..]), 0, "ICMP checksum");
        assert_eq!(&o[28..], &p[..28]);
        // Never for an ICMP error.
        let mut err = o.to_vec();
        err[6..8].copy_from_slice(&FLAG_DF.to_be_bytes());
        err[10..12].copy_from_slice(&[0, 0]);
        let c = ipv4::checksum(&err[..20]);
        err[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(frag_needed(&err, 576, &mut out), None);
    }

    #[test]
    fn selectors_contain() {
        let ts = ["100.64.0.0/16".parse().unwrap()];
        assert!(in_selectors(&ts, "100.64.255.1".parse().unwrap()));
        assert!(!in_selectors(&ts, "100.65.0.1".parse().unwrap()));
        assert!(in_selectors(&[Ipv4Cidr::ANY], Ipv4Addr::BROADCAST));
    }
}
