//! The pair harness shared by the engine pair tests: an initiator and a responder `Tunnel` over an in-memory
//! link on a virtual clock, with what each side's datapath would hold (from the events), loss, duplication and
//! cuts. Every engine invariant (`Tunnel::check_invariants`) is checked after every delivered datagram and every
//! timer.
#![allow(dead_code)]

use iotrelay_crypto::proposal::{EspProposal, IkeProposal};
use iotrelay_ikev2::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use zeroize::Zeroizing;

pub const A: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

/// What the datapath would hold: installed SAs per side, checked against each other.
#[derive(Default)]
pub struct Datapath {
    pub outbound: Option<(u32, Vec<u8>)>,
    pub inbound: Vec<(u32, Vec<u8>)>,
    pub established: usize,
    pub down: Vec<DownReason>,
    pub rekeys: usize,
}

pub struct Side {
    pub t: Tunnel,
    pub dp: Datapath,
    pub addr: Ipv4Addr,
}

pub struct Pair {
    pub now: Duration,
    pub a: Side,
    pub b: Side,
    /// Datagrams in flight: (to_b, local_port of the receiver, data).
    pub link: Vec<(bool, u16, Vec<u8>)>,
    /// Percentage of datagrams lost (seeded, deterministic).
    pub loss_pct: u64,
    pub delivered: usize,
    pub duplicate: bool,
    pub cut: bool,
    /// Datagrams sent as RFC 7383 fragments (first payload SKF), per direction: (a to b, b to a).
    pub fragments: (usize, usize),
    /// Drop the next SKF fragment with this number heading this way (to_b), once.
    pub drop_fragment: Option<(bool, u16)>,
}

pub fn cfg(psk: &str, ike: &str, esp: &str, ip: Ipv4Addr, startup: StartupAction) -> Config {
    let mut c = Config::aws_defaults(Zeroizing::new(psk.as_bytes().to_vec()), Identity::Ipv4(ip));
    c.ike_proposals = vec![IkeProposal::parse(ike).unwrap()];
    c.esp_proposals = vec![EspProposal::parse(esp).unwrap()];
    c.startup = startup;
    c
}

pub fn drain_events(side: &mut Side) {
    while let Some(e) = side.t.poll_event() {
        match e {
            Event::ChildSaInstalled(c) => {
                assert!(side.dp.outbound.is_none(), "a second CHILD_SA installed without a rekey");
                side.dp.outbound = Some((c.outbound_spi, c.outbound_keys.encr_key.to_vec()));
                side.dp.inbound.push((c.inbound_spi, c.inbound_keys.encr_key.to_vec()));
            }
            Event::ChildSaRekeyed { old_outbound_spi, new, .. } => {
                assert_eq!(
                    side.dp.outbound.as_ref().map(|o| o.0),
                    Some(old_outbound_spi),
                    "rekey replaced a different SA"
                );
                side.dp.outbound = Some((new.outbound_spi, new.outbound_keys.encr_key.to_vec()));
                side.dp.inbound.push((new.inbound_spi, new.inbound_keys.encr_key.to_vec()));
                side.dp.rekeys += 1;
            }
            Event::ChildSaDeleted { inbound_spi, outbound_spi } => {
                side.dp.inbound.retain(|i| i.0 != inbound_spi);
                if side.dp.outbound.as_ref().map(|o| o.0) == Some(outbound_spi) {
                    side.dp.outbound = None;
                }
            }
            Event::IkeSaEstablished { .. } => side.dp.established += 1,
            Event::IkeSaDown { reason } => side.dp.down.push(reason),
            Event::IkeSaRekeyed { .. } => {}
        }
    }
}

impl Pair {
    pub fn new(a: Config, b: Config) -> Pair {
        Pair::with_a_local(a, b, A)
    }

    /// `a` believes its address is `a_local`; `b` sees it as `A` (a NAT in between when they differ).
    pub fn with_a_local(a: Config, b: Config, a_local: Ipv4Addr) -> Pair {
        let now = Duration::from_secs(1000);
        let ta = Tunnel::new(
            a,
            SocketAddr::new(IpAddr::V4(a_local), 500),
            SocketAddr::new(IpAddr::V4(B), 500),
            now,
            &[1; 32],
        );
        let tb =
            Tunnel::new(b, SocketAddr::new(IpAddr::V4(B), 500), SocketAddr::new(IpAddr::V4(A), 500), now, &[2; 32]);
        Pair {
            now,
            a: Side { t: ta, dp: Datapath::default(), addr: A },
            b: Side { t: tb, dp: Datapath::default(), addr: B },
            link: Vec::new(),
            loss_pct: 0,
            delivered: 0,
            duplicate: false,
            cut: false,
            fragments: (0, 0),
            drop_fragment: None,
        }
    }

    pub fn collect(&mut self) {
        const SKF: u8 = 53;
        while let Some(t) = self.a.t.poll_transmit() {
            assert_eq!(t.remote.ip(), IpAddr::V4(B));
            self.fragments.0 += usize::from(t.data.get(16) == Some(&SKF));
            self.link.push((true, t.remote.port(), t.data));
        }
        while let Some(t) = self.b.t.poll_transmit() {
            assert_eq!(t.remote.ip(), IpAddr::V4(A));
            self.fragments.1 += usize::from(t.data.get(16) == Some(&SKF));
            self.link.push((false, t.remote.port(), t.data));
        }
        drain_events(&mut self.a);
        drain_events(&mut self.b);
    }

    /// Delivers everything in flight (in order), then advances time to the next timer; `steps` rounds.
    pub fn run(&mut self, until: Duration) {
        let end = self.now + until;
        loop {
            self.collect();
            if !self.link.is_empty() {
                let batch: Vec<_> = std::mem::take(&mut self.link);
                for (to_b, port, data) in batch {
                    self.delivered += 1;
                    let roll = (self.delivered as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17) % 100;
                    if self.cut || roll < self.loss_pct {
                        continue;
                    }
                    let number = data.get(32..34).map(|b| u16::from_be_bytes([b[0], b[1]]));
                    if data.get(16) == Some(&53)
                        && self.drop_fragment.is_some_and(|d| (d.0, Some(d.1)) == (to_b, number))
                    {
                        self.drop_fragment = None;
                        continue;
                    }
                    let copies = if self.duplicate { 2 } else { 1 };
                    for _ in 0..copies {
                        let (dst, src) = if to_b { (&mut self.b, A) } else { (&mut self.a, B) };
                        dst.t.handle_datagram(self.now, port, SocketAddr::new(IpAddr::V4(src), port), &data);
                        let _ = dst.addr;
                    }
                    self.collect();
                    self.check_invariant();
                }
                continue;
            }
            let next = [self.a.t.poll_timeout(), self.b.t.poll_timeout()].into_iter().flatten().min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.a.t.handle_timeout(self.now);
                    self.b.t.handle_timeout(self.now);
                    self.collect();
                    self.check_invariant();
                }
                _ => {
                    self.now = end;
                    return;
                }
            }
        }
    }

    pub fn check_invariant(&self) {
        for (name, side) in [("a", &self.a), ("b", &self.b)] {
            if let Err(e) = side.t.check_invariants() {
                panic!("side {name}: {e}");
            }
            let installed = usize::from(side.dp.outbound.is_some());
            assert_eq!(side.t.outbound_child_sas(), installed, "side {name}: engine and datapath disagree");
        }
    }

    pub fn connect(&mut self) {
        let now = self.now;
        self.a.t.connect(now);
    }

    /// Both sides have one CHILD_SA and their keys match crosswise.
    pub fn assert_matching_child(&self) {
        let (ao, bo) =
            (self.a.dp.outbound.as_ref().expect("a outbound"), self.b.dp.outbound.as_ref().expect("b outbound"));
        let b_in = self.b.dp.inbound.iter().find(|i| i.0 == ao.0).expect("b has an inbound SA for a's outbound SPI");
        let a_in = self.a.dp.inbound.iter().find(|i| i.0 == bo.0).expect("a has an inbound SA for b's outbound SPI");
        assert_eq!(ao.1, b_in.1, "a->b keys differ");
        assert_eq!(bo.1, a_in.1, "b->a keys differ");
        let (sa, sb) = (self.a.t.status(), self.b.t.status());
        assert_eq!(sa.state, TunnelState::Established);
        assert_eq!(sb.state, TunnelState::Established);
        assert_eq!(sa.ike_local_spi(), sb.ike_remote_spi());
        assert_eq!(sa.child_outbound_spi(), sb.child_inbound_spi());
    }
}

pub fn established_pair(ike: &str, esp: &str) -> Pair {
    let mut p = Pair::new(
        cfg("secret-psk_1", ike, esp, A, StartupAction::Start),
        cfg("secret-psk_1", ike, esp, B, StartupAction::Add),
    );
    p.connect();
    p.run(Duration::from_secs(5));
    p
}
