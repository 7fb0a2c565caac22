//! UDP 500/4500 framing (RFC 3948 §2.2) and the readers' early classification of every received datagram: which
//! ingress lane it waits in, or why it is dropped before it costs the owner task anything. Pure functions of the
//! datagram and a [`Known`] snapshot; depends only on std, `iotrelay_esp` and `iotrelay_relay` (the fuzz target
//! `sidecar_demux` includes this file as it is).

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};

use iotrelay_esp::Demux;
use iotrelay_relay::Ipv4Cidr;

/// The 4-octet non-ESP marker in front of IKE messages on port 4500.
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// A NAT-T keepalive: a single 0xFF octet (RFC 3948 §2.3).
pub const NATT_KEEPALIVE: [u8; 1] = [0xff];

/// IKE_SA_INIT's exchange type (RFC 7296 §3.1).
const IKE_SA_INIT: u8 = 34;

/// Writes `marker || ike` into `out` and returns the length (None if `out` is too small).
pub fn frame_ike(ike: &[u8], out: &mut [u8]) -> Option<usize> {
    let n = ike.len() + 4;
    let dst = out.get_mut(..n)?;
    dst[..4].copy_from_slice(&NON_ESP_MARKER);
    dst[4..].copy_from_slice(ike);
    Some(n)
}

/// Ingress lanes, served in this order (strict priority, see `ingress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// ESP on a CHILD_SA we installed, IKE on an IKE SA we hold: what keeps established tunnels up.
    Established = 0,
    /// Client datagrams on a forward's listen port, from an allowed source.
    Forward = 1,
    /// Everything else from a peer's address: IKE_SA_INIT, IKE or ESP with SPIs we do not hold, runts.
    Handshake = 2,
}

impl Lane {
    pub const ALL: [Lane; 3] = [Lane::Established, Lane::Forward, Lane::Handshake];
    pub fn name(self) -> &'static str {
        match self {
            Lane::Established => "established",
            Lane::Forward => "forward",
            Lane::Handshake => "handshake",
        }
    }
}

/// Why a reader dropped a datagram before queueing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyDrop {
    /// On 500/4500 from an address that is no tunnel's peer (the engine would drop it anyway).
    NotPeer,
    /// A NAT-T keepalive: keeps NAT state on the way, nothing to do here.
    Keepalive,
    /// On a forward port from outside `allowedSources` (counted as the forward's `sourceNotAllowed`).
    SourceNotAllowed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Queue(Lane),
    Drop(EarlyDrop),
}

/// What the owner task publishes for the readers: the peers' addresses, the inbound ESP SPIs it holds and the
/// local SPIs of its IKE SAs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    pub peers: Vec<Ipv4Addr>,
    pub esp_spis: HashSet<u32>,
    pub ike_spis: HashSet<u64>,
}

/// A datagram on UDP 500 (`natt` false: bare IKE) or 4500 (`natt` true: keepalive, marker + IKE, or ESP).
pub fn classify_outside(known: &Known, from: SocketAddr, datagram: &[u8], natt: bool) -> Verdict {
    let SocketAddr::V4(a) = from else { return Verdict::Drop(EarlyDrop::NotPeer) };
    if !known.peers.contains(a.ip()) {
        return Verdict::Drop(EarlyDrop::NotPeer);
    }
    let ike = if natt {
        match iotrelay_esp::classify(datagram) {
            Demux::Keepalive => return Verdict::Drop(EarlyDrop::Keepalive),
            Demux::Esp { spi } if known.esp_spis.contains(&spi) => return Verdict::Queue(Lane::Established),
            Demux::Esp { .. } | Demux::Malformed => return Verdict::Queue(Lane::Handshake),
            Demux::Ike(m) => m,
        }
    } else {
        datagram
    };
    Verdict::Queue(if established_ike(known, ike) { Lane::Established } else { Lane::Handshake })
}

/// An IKE message (header: SPIi 0..8, SPIr 8..16, exchange type at 18) on one of our IKE SAs, not an INIT.
fn established_ike(known: &Known, ike: &[u8]) -> bool {
    let (Some(i), Some(r), Some(&exchange)) = (ike.get(0..8), ike.get(8..16), ike.get(18)) else { return false };
    let spi = |b: &[u8]| b.try_into().map(u64::from_be_bytes).unwrap_or(0);
    let (i, r) = (spi(i), spi(r));
    exchange != IKE_SA_INIT && ((i != 0 && known.ike_spis.contains(&i)) || (r != 0 && known.ike_spis.contains(&r)))
}

/// A client datagram on a forward's listen port: allow-listed sources only (IPv4; the relay is IPv4 only).
pub fn classify_forward(allowed: &[Ipv4Cidr], from: SocketAddr) -> Verdict {
    match from {
        SocketAddr::V4(a) if allowed.iter().any(|c| c.contains(*a.ip())) => Verdict::Queue(Lane::Forward),
        _ => Verdict::Drop(EarlyDrop::SourceNotAllowed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_round_trips() {
        let msg = [7u8; 40];
        let mut buf = [0xaau8; 64];
        let n = frame_ike(&msg, &mut buf).unwrap();
        assert_eq!(n, 44);
        assert_eq!(iotrelay_esp::classify(&buf[..n]), iotrelay_esp::Demux::Ike(&msg[..]));
        assert_eq!(frame_ike(&msg, &mut [0u8; 43]), None);
    }

    fn ike(spi_i: u64, spi_r: u64, exchange: u8) -> Vec<u8> {
        let mut m = spi_i.to_be_bytes().to_vec();
        m.extend_from_slice(&spi_r.to_be_bytes());
        m.extend_from_slice(&[46, 0x20, exchange, 0x08, 0, 0, 0, 1, 0, 0, 0, 28]);
        m
    }

    #[test]
    fn lanes_by_what_we_hold() {
        let peer: SocketAddr = "192.0.2.2:4500".parse().unwrap();
        let known = Known {
            peers: vec![Ipv4Addr::new(192, 0, 2, 2)],
            esp_spis: [0xc0ff_ee01].into(),
            ike_spis: [0x1111].into(),
        };
        let q = |l| Verdict::Queue(l);
        assert_eq!(classify_outside(&known, peer, &[0xc0, 0xff, 0xee, 0x01, 0, 0, 0, 1], true), q(Lane::Established));
        assert_eq!(classify_outside(&known, peer, &[0xc0, 0xff, 0xee, 0x02, 0, 0, 0, 1], true), q(Lane::Handshake));
        assert_eq!(classify_outside(&known, peer, &[0xff], true), Verdict::Drop(EarlyDrop::Keepalive));
        assert_eq!(classify_outside(&known, peer, &[1, 2], true), q(Lane::Handshake));
        let mut natt = NON_ESP_MARKER.to_vec();
        natt.extend_from_slice(&ike(0x1111, 0x2222, 37));
        assert_eq!(classify_outside(&known, peer, &natt, true), q(Lane::Established));
        assert_eq!(classify_outside(&known, peer, &ike(0x3333, 0x1111, 36), false), q(Lane::Established));
        // An INIT never rides the established lane, whatever SPI it claims.
        assert_eq!(classify_outside(&known, peer, &ike(0x1111, 0, IKE_SA_INIT), false), q(Lane::Handshake));
        assert_eq!(classify_outside(&known, peer, &ike(0x4444, 0, IKE_SA_INIT), false), q(Lane::Handshake));
        let stranger: SocketAddr = "198.51.100.9:4500".parse().unwrap();
        assert_eq!(
            classify_outside(&known, stranger, &ike(0x1111, 0x2222, 37), false),
            Verdict::Drop(EarlyDrop::NotPeer)
        );
        let allowed: Vec<Ipv4Cidr> = vec!["203.0.113.0/28".parse().unwrap()];
        assert_eq!(classify_forward(&allowed, "203.0.113.5:1".parse().unwrap()), q(Lane::Forward));
        assert_eq!(
            classify_forward(&allowed, "203.0.113.16:1".parse().unwrap()),
            Verdict::Drop(EarlyDrop::SourceNotAllowed)
        );
    }
}
