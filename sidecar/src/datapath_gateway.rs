//! Gateway mode in the [`Datapath`]: inner packets read from the TUN device into the active tunnel (selectors,
//! MSS clamping, PMTU: ICMP "fragmentation needed" with DF, fragmentation before encryption without), and what
//! the tunnel delivers that is not a forward's reply out to the device (anti-spoofing on the source). The packet
//! rules themselves are `crate::gateway`'s.

use std::time::Duration;

use iotrelay_esp::ipv4::{Fragmenter, check_header};

use super::{Datapath, NATT_PORT, Out, Sink};
use crate::gateway::{
    GatewayConfig, GatewayCounters, GatewayDrop, addresses, clamp_mss, dont_fragment, frag_needed, in_selectors,
};

impl Datapath {
    /// Turns gateway mode on (`Some`) or off.
    pub fn set_gateway(&mut self, gateway: Option<GatewayConfig>) {
        self.gateway = gateway;
        self.generation += 1;
    }

    /// Whether gateway mode is on.
    pub fn gateway_on(&self) -> bool {
        self.gateway.is_some()
    }

    /// The gateway counters (zero when gateway mode is off).
    pub fn gateway_counters(&self) -> GatewayCounters {
        self.gw
    }

    /// Counts `n` gateway drops the owner loop saw at the device (frames it refused, writes it did not take).
    pub fn count_gateway_drops(&mut self, why: GatewayDrop, n: u64) {
        self.gw.drops[why as usize] += n;
    }

    /// The device's I/O counters, as the owner loop keeps them.
    pub fn set_tun_io(&mut self, io: crate::gateway::TunIo) {
        self.gw.device = io;
    }

    /// The inner MTU in force: `gateway.mtu` when set, never more than the active tunnel's suite allows; `None`
    /// when gateway mode is off or no tunnel has a CHILD_SA.
    pub fn gateway_mtu(&self) -> Option<u16> {
        let gw = self.gateway.as_ref()?;
        let (_, suite) = self.tunnels.iter().find_map(|t| t.outbound.as_ref())?;
        let suite = u16::try_from(*suite).unwrap_or(u16::MAX);
        Some(gw.mtu.map_or(suite, |m| m.min(suite)))
    }

    /// A packet the host wrote to the TUN device (`packet` is the buffer it was read into; it may be modified:
    /// MSS clamping). Sent on the active tunnel when it lies inside the negotiated selectors; every refusal is
    /// counted. AES-CBC IVs come from the tunnel's own generator: a packet never reads the OS random source.
    pub fn handle_tun(&mut self, now: Duration, packet: &mut [u8], sink: &mut dyn Sink) {
        self.now = self.now.max(now);
        let Some(gw) = self.gateway.as_ref() else { return };
        let (Some((src, dst)), Ok((_, total))) = (addresses(packet), check_header(packet)) else {
            self.gw.drop(GatewayDrop::NotIpv4);
            return;
        };
        let in_remote = self.gateway_remote(dst) && self.gateway_local(src);
        let configured = gw.mtu;
        let Some(ti) = self.active_outbound(now) else {
            self.gw.drop(GatewayDrop::NoTunnel);
            return;
        };
        let t = &mut self.tunnels[ti];
        let (local_ts, remote_ts) = &t.selectors;
        if !in_remote || !in_selectors(local_ts, src) || !in_selectors(remote_ts, dst) {
            self.gw.drop(GatewayDrop::OutsideSelectors);
            return;
        }
        let Some((sa, suite_mtu)) = t.outbound.as_mut() else { return };
        let mtu = configured.map_or(*suite_mtu, |m| usize::from(m).min(*suite_mtu));
        let mtu16 = u16::try_from(mtu).unwrap_or(u16::MAX);
        let packet = &mut packet[..total];
        if clamp_mss(packet, mtu16) {
            self.gw.mss_clamped += 1;
        }
        let remote = t.esp_remote;
        let (counters, iv_rng) = (&mut t.counters, &mut t.iv_rng);
        let scratch2 = &mut self.scratch2;
        let mut failed = false;
        let mut seal_one = |pkt: &[u8], sa: &mut iotrelay_esp::OutboundSa| match sa.seal(pkt, iv_rng, scratch2) {
            Ok(len) => {
                if sink.send(Out::Outside { local_port: NATT_PORT, remote }, &scratch2[..len]) {
                    counters.packets_out += 1;
                    counters.bytes_out += pkt.len() as u64;
                } else {
                    failed = true;
                }
            }
            Err(_) => failed = true,
        };
        if packet.len() <= mtu {
            seal_one(packet, sa);
        } else if dont_fragment(packet) {
            // RFC 1191: the sender learns the path MTU from us; the packet is not sent.
            self.gw.drop(GatewayDrop::TooBig);
            if let Some(n) = frag_needed(packet, mtu16, &mut self.scratch)
                && !sink.send(Out::Tun, &self.scratch[..n])
            {
                self.gw.drop(GatewayDrop::SendFailed);
            }
            return;
        } else {
            let Ok(mut frags) = Fragmenter::new(packet, mtu) else {
                self.gw.drop(GatewayDrop::TooBig);
                return;
            };
            self.gw.fragmented += 1;
            while let Ok(Some(n)) = frags.next_into(&mut self.scratch) {
                seal_one(&self.scratch[..n], sa);
            }
        }
        if failed {
            self.gw.drop(GatewayDrop::SendFailed);
        } else {
            self.gw.to_tunnel += 1;
        }
    }

    /// An inner packet from tunnel `ti` that no forward claims: to the TUN device if its source lies in the
    /// peer's selectors and `remoteSubnets` (else it is spoofed: dropped and counted) and its destination on this
    /// side (`GatewayConfig::local`; else dropped and counted as outside the selectors).
    pub(super) fn gateway_inbound(&mut self, ti: usize, inner: &[u8], sink: &mut dyn Sink) {
        if self.gateway.is_none() {
            return;
        }
        let (Some((src, dst)), Ok((_, total))) = (addresses(inner), check_header(inner)) else {
            self.gw.drop(GatewayDrop::Malformed);
            return;
        };
        let remote_ts = &self.tunnels[ti].selectors.1;
        if !in_selectors(remote_ts, src) || !self.gateway_remote(src) {
            self.gw.drop(GatewayDrop::SpoofedSource);
            return;
        }
        // Only to this side's networks (with BGP: what we announce), never on to whatever else the host reaches.
        if !self.gateway_local(dst) {
            self.gw.drop(GatewayDrop::OutsideSelectors);
            return;
        }
        // A SYN-ACK from the far side gets the same clamp as our SYNs (a copy: the ESP buffer is not ours).
        let mtu = self.gateway_mtu().unwrap_or(iotrelay_esp::AWS_MAX_INNER_MTU as u16);
        let buf = &mut self.scratch[..total];
        buf.copy_from_slice(&inner[..total]);
        if clamp_mss(buf, mtu) {
            self.gw.mss_clamped += 1;
        }
        if sink.send(Out::Tun, buf) {
            self.gw.to_device += 1;
        } else {
            self.gw.drop(GatewayDrop::SendFailed);
        }
    }
}
