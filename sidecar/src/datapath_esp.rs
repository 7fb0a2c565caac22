//! The ESP traffic of the [`Datapath`]: a client's datagram relayed into the active tunnel (`handle_forward`: the
//! relay's session and inner packet, fragmented to the suite's MTU, sealed), and what arrives on an inbound SA
//! (`handle_esp`: opened, fragmented replies reassembled, then BGP, the gateway or the client the relay finds).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use iotrelay_esp::EspError;
use iotrelay_esp::ipv4::{self, FRAGMENT_MASK, PROTO_UDP};
use iotrelay_relay::{DropReason, InnerDrop};

use super::{Datapath, ForwardId, NATT_PORT, Out, Sink, promote};

/// Whether `p` is an IPv4 UDP fragment addressed to `inside` (a fragmented reply to the relay).
fn udp_fragment_to(inside: Ipv4Addr, p: &[u8]) -> bool {
    ipv4::check_header(p).is_ok()
        && p[9] == PROTO_UDP
        && p[16..20] == inside.octets()
        && u16::from_be_bytes([p[6], p[7]]) & FRAGMENT_MASK != 0
}

impl Datapath {
    pub(super) fn handle_esp(&mut self, now: Duration, spi: u32, data: &mut [u8], sink: &mut dyn Sink) {
        let Some((ti, sa)) = self.inbound.get_mut(&spi) else {
            self.drops.unknown_spi += 1;
            return;
        };
        let ti = *ti;
        let inner = match sa.open(data) {
            Ok(inner) => inner,
            Err(e) => {
                self.count_esp_error(e);
                return;
            }
        };
        let t = &mut self.tunnels[ti];
        if t.next_outbound.as_ref().is_some_and(|n| n.2 == spi) {
            promote(t);
        }
        t.engine.note_inbound_traffic(now);
        // ESP never moves `esp_remote` (so its source port is not even looked at): an on-path attacker could race
        // a genuine packet from another port (the genuine one is then a replay); only authenticated IKE does.
        t.counters.packets_in += 1;
        t.counters.bytes_in += inner.len() as u64;
        if self.bgp_inbound(ti, now, inner) {
            return;
        }
        if udp_fragment_to(self.relay.inside_address(), inner) {
            // A fragmented reply from a device: held (bounded slots and time) until complete, then relayed whole.
            let mut whole = std::mem::take(&mut self.reassembled);
            match self.reassembly.push(now, inner) {
                Ok(Some(d)) => {
                    whole.clear();
                    whole.extend_from_slice(d);
                    self.deliver_inner(now, ti, &whole, sink);
                }
                Ok(None) => {}
                Err(_) => self.drops.malformed += 1,
            }
            self.reassembled = whole;
            return;
        }
        self.deliver_inner(now, ti, inner, sink);
    }

    /// A whole inner packet from tunnel `ti`: a forward's reply to its client, or (gateway mode) for the host.
    fn deliver_inner(&mut self, now: Duration, ti: usize, inner: &[u8], sink: &mut dyn Sink) {
        if self.gateway.is_some() && !self.relay.claims(inner) {
            // Gateway mode: everything that is not a forward's reply is for the host.
            self.gateway_inbound(ti, inner, sink);
            return;
        }
        match self.relay.on_inner_packet(now, inner) {
            Ok(d) => {
                if !sink.send(Out::Forward { forward: d.forward, client: d.client }, d.payload) {
                    self.relay.record_drop(d.forward, DropReason::QueueFull);
                }
            }
            // Not IPv4/UDP, or not from any forward's target: nothing to count it on.
            Err(InnerDrop { forward: None, .. }) => self.drops.malformed += 1,
            Err(InnerDrop { forward: Some(_), .. }) => {} // counted on the forward (noSession)
        }
    }

    fn count_esp_error(&mut self, e: EspError) {
        match e {
            EspError::Replay => self.drops.replay += 1,
            EspError::Integrity => self.drops.integrity += 1,
            EspError::UnknownSpi => self.drops.unknown_spi += 1,
            _ => self.drops.malformed += 1,
        }
    }

    /// A datagram from a client on forward `id`'s listen port.
    pub fn handle_forward(
        &mut self,
        now: Duration,
        id: ForwardId,
        client: SocketAddrV4,
        payload: &[u8],
        sink: &mut dyn Sink,
    ) {
        self.now = self.now.max(now);
        // The forward may have been removed by a reconfiguration after the datagram was queued.
        let Some(target) = self.relay.config(id).map(|c| c.target) else { return };
        let Some(ti) = self.active_outbound(now) else {
            // Checked before the relay builds anything: no session, and packetsIn counts only tunnelled datagrams.
            let why =
                if self.relay.source_allowed(id, client) { DropReason::NoTunnel } else { DropReason::SourceNotAllowed };
            self.relay.record_drop(id, why);
            return;
        };
        // Dynamic routing: only to targets inside a prefix AWS announces on an established session.
        if !self.bgp_route_to(*target.ip()) {
            let why =
                if self.relay.source_allowed(id, client) { DropReason::NoRoute } else { DropReason::SourceNotAllowed };
            self.relay.record_drop(id, why);
            return;
        }
        // The inner packet is built once, behind room for the ESP header and IV, and sealed where it lies.
        let Some(head) = self.tunnels[ti].outbound.as_ref().map(|(sa, _)| sa.headroom()) else { return };
        // Allow-list, session (bounded table), inner IPv4/UDP packet; every refusal is counted by the relay.
        let Ok(n) = self.relay.on_client_datagram(now, id, client, payload, &mut self.scratch[head..]) else {
            return;
        };
        let t = &mut self.tunnels[ti];
        let Some((sa, mtu)) = t.outbound.as_mut() else { return };
        let remote = t.esp_remote;
        let counters = &mut t.counters;
        let iv_rng = &mut t.iv_rng;
        let mut failed = false;
        let mut send = |sealed: Result<usize, EspError>, buf: &[u8], inner_len: usize| match sealed {
            Ok(len) => {
                if sink.send_for(id, Out::Outside { local_port: NATT_PORT, remote }, &buf[..len]) {
                    counters.packets_out += 1;
                    counters.bytes_out += inner_len as u64;
                } else {
                    failed = true;
                }
            }
            Err(_) => failed = true,
        };
        if n <= *mtu {
            let sealed = sa.seal_in_place(&mut self.scratch, n, iv_rng);
            send(sealed, &self.scratch, n);
        } else {
            // Fragments are sealed by copy into the second buffer (rare: only payloads above the tunnel MTU).
            let scratch2 = &mut self.scratch2;
            let inner = &self.scratch[head..head + n];
            let whole = ipv4::fragment(inner, *mtu, |frag| {
                let sealed = sa.seal(frag, iv_rng, scratch2);
                send(sealed, scratch2, frag.len());
            });
            if !whole {
                self.relay.record_drop(id, DropReason::TooBig);
                return;
            }
        }
        if failed {
            self.relay.record_drop(id, DropReason::QueueFull);
        }
    }
}
