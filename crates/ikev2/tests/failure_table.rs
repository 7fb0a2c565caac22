//! Rows of the README's failure table proven at the engine level, through the public API only, on a virtual
//! clock: the reconnect backoff after a permanent failure (30 s doubling to 5 min, never a hot loop), an
//! INVALID_KE_PAYLOAD naming a group we do not offer (`NoProposalChosen`, no retry with it), and malformed
//! IKE_SA_INIT requests answered on the wire with INVALID_SYNTAX / UNSUPPORTED_CRITICAL_PAYLOAD (counted in
//! `invalid_messages`) without touching an established IKE SA.

use iotrelay_crypto::proposal::{EspProposal, IkeProposal};
use iotrelay_ikev2::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use zeroize::Zeroizing;

const A: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const IKE_SA_INIT: u8 = 34;
const NOTIFY: u8 = 41;
const FLAG_RESPONSE: u8 = 0x20;
const INVALID_SYNTAX: u16 = 7;
const UNSUPPORTED_CRITICAL_PAYLOAD: u16 = 1;

fn cfg(psk: &str, ike: &str, ip: Ipv4Addr, startup: StartupAction) -> Config {
    let mut c = Config::aws_defaults(Zeroizing::new(psk.as_bytes().to_vec()), Identity::Ipv4(ip));
    c.ike_proposals = vec![IkeProposal::parse(ike).unwrap()];
    c.esp_proposals = vec![EspProposal::parse("aes128-sha1").unwrap()];
    c.startup = startup;
    c
}

fn addr(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(ip), port)
}

/// Two tunnels on a lossless link; every datagram `a` sends is recorded with its virtual send time.
struct Net {
    now: Duration,
    a: Tunnel,
    b: Tunnel,
    a_sent: Vec<(Duration, Vec<u8>)>,
    a_down: Vec<DownReason>,
    b_established: usize,
}

impl Net {
    fn new(a: Config, b: Config) -> Net {
        let now = Duration::from_secs(1000);
        Net {
            now,
            a: Tunnel::new(a, addr(A, 500), addr(B, 500), now, &[1; 32]),
            b: Tunnel::new(b, addr(B, 500), addr(A, 500), now, &[2; 32]),
            a_sent: Vec::new(),
            a_down: Vec::new(),
            b_established: 0,
        }
    }

    fn events(&mut self) {
        while let Some(e) = self.a.poll_event() {
            if let Event::IkeSaDown { reason } = e {
                self.a_down.push(reason);
            }
        }
        while let Some(e) = self.b.poll_event() {
            if let Event::IkeSaEstablished { .. } = e {
                self.b_established += 1;
            }
        }
    }

    /// Delivers everything in flight, then moves the clock to the next timer, until `d` has passed.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let mut moved = false;
            while let Some(t) = self.a.poll_transmit() {
                self.a_sent.push((self.now, t.data.clone()));
                self.b.handle_datagram(self.now, t.remote.port(), addr(A, t.local_port), &t.data);
                moved = true;
            }
            while let Some(t) = self.b.poll_transmit() {
                self.a.handle_datagram(self.now, t.remote.port(), addr(B, t.local_port), &t.data);
                moved = true;
            }
            self.events();
            if moved {
                continue;
            }
            match [self.a.poll_timeout(), self.b.poll_timeout()].into_iter().flatten().min() {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.a.handle_timeout(self.now);
                    self.b.handle_timeout(self.now);
                }
                _ => {
                    self.now = end;
                    return;
                }
            }
        }
    }

    /// When `a` started a fresh IKE SA: its IKE_SA_INIT requests with a new initiator SPI.
    fn a_attempts(&self) -> Vec<Duration> {
        let mut spis: Vec<Vec<u8>> = Vec::new();
        let mut at = Vec::new();
        for (t, d) in &self.a_sent {
            if d.len() >= 28
                && d[18] == IKE_SA_INIT
                && d[19] & FLAG_RESPONSE == 0
                && !spis.iter().any(|s| s[..] == d[..8])
            {
                spis.push(d[..8].to_vec());
                at.push(*t);
            }
        }
        at
    }
}

#[test]
fn permanent_failures_back_off_30s_doubling_to_5min() {
    // A wrong PSK: AWS answers AUTHENTICATION_FAILED every time.
    let mut n = Net::new(
        cfg("our-psk-is-wrong", "aes128-sha1-modp2048", A, StartupAction::Start),
        cfg("the-real-psk-123", "aes128-sha1-modp2048", B, StartupAction::Add),
    );
    n.a.connect(n.now);
    n.run(Duration::from_secs(30 + 60 + 120 + 240 + 300 + 300 + 1));
    let at = n.a_attempts();
    let gaps: Vec<u64> = at.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
    assert_eq!(gaps, [30, 60, 120, 240, 300, 300], "attempts at {at:?}");
    assert_eq!(n.b_established, 0);
    assert!(n.a_down.iter().all(|r| *r == DownReason::AuthenticationFailed { by_peer: true }), "{:?}", n.a_down);
    let s = n.a.status();
    assert_eq!(s.last_error.as_deref(), Some("peer sent AUTHENTICATION_FAILED"));
    assert_eq!(s.last_down_reason, Some(DownReason::AuthenticationFailed { by_peer: true }));
}

#[test]
fn no_common_proposal_backs_off_like_any_permanent_failure() {
    let mut n = Net::new(
        cfg("psk-psk-psk-psk", "aes128-sha1-modp2048", A, StartupAction::Start),
        cfg("psk-psk-psk-psk", "aes256-sha512-ecp384", B, StartupAction::Add),
    );
    n.a.connect(n.now);
    n.run(Duration::from_secs(30 + 60 + 1));
    let at = n.a_attempts();
    assert_eq!(at.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect::<Vec<_>>(), [30, 60], "attempts at {at:?}");
    assert_eq!(n.a.status().last_down_reason, Some(DownReason::NoProposalChosen { by_peer: true }));
}

/// One payload of a parsed chain: (payload type, critical bit, body).
type RawPayload = (u8, bool, Vec<u8>);
/// What breaks a genuine message in one way.
type Breaker = fn(Vec<u8>) -> Vec<u8>;

/// The IKE header and payload chain of `msg`: (exchange, flags, payloads).
fn parse(msg: &[u8]) -> (u8, u8, Vec<RawPayload>) {
    assert!(msg.len() >= 28, "short IKE message");
    let mut next = msg[16];
    let mut off = 28;
    let mut out = Vec::new();
    while next != 0 {
        let len = usize::from(u16::from_be_bytes([msg[off + 2], msg[off + 3]]));
        out.push((next, msg[off + 1] & 0x80 != 0, msg[off + 4..off + len].to_vec()));
        next = msg[off];
        off += len;
    }
    (msg[18], msg[19], out)
}

/// The notify types in an unencrypted response.
fn notifies(msg: &[u8]) -> Vec<(u16, Vec<u8>)> {
    parse(msg)
        .2
        .into_iter()
        .filter(|p| p.0 == NOTIFY)
        .map(|(_, _, b)| {
            let spi = usize::from(b[1]);
            (u16::from_be_bytes([b[2], b[3]]), b[4 + spi..].to_vec())
        })
        .collect()
}

/// A genuine IKE_SA_INIT request from a fresh initiator, as bytes.
fn init_request() -> Vec<u8> {
    let now = Duration::from_secs(5);
    let mut t = Tunnel::new(
        cfg("psk-psk-psk-psk", "aes128-sha1-modp2048", A, StartupAction::Start),
        addr(A, 500),
        addr(B, 500),
        now,
        &[3; 32],
    );
    t.connect(now);
    t.poll_transmit().expect("an IKE_SA_INIT request").data
}

/// Rewrites the chain so that the last payload is followed by an unknown payload type 200 with the critical bit.
fn with_critical_unknown_payload(mut m: Vec<u8>) -> Vec<u8> {
    let mut at = 16; // where the "next payload" octet of the previous header lives
    let mut off = 28;
    while m[at] != 0 {
        at = off;
        off += usize::from(u16::from_be_bytes([m[off + 2], m[off + 3]]));
    }
    m[at] = 200;
    m.extend_from_slice(&[0, 0x80, 0, 4]);
    let len = m.len() as u32;
    m[24..28].copy_from_slice(&len.to_be_bytes());
    m
}

/// The first payload claims to run past the end of the message.
fn with_overlong_payload(mut m: Vec<u8>) -> Vec<u8> {
    let len = u16::from_be_bytes([m[30], m[31]]) + 100;
    m[30..32].copy_from_slice(&len.to_be_bytes());
    m
}

/// Hands `msg` to `t` from the peer's address and returns what it answered.
fn answer(t: &mut Tunnel, now: Duration, msg: &[u8]) -> Vec<Vec<u8>> {
    t.handle_datagram(now, 500, addr(A, 500), msg);
    std::iter::from_fn(|| t.poll_transmit()).map(|t| t.data).collect()
}

#[test]
fn malformed_ike_sa_init_requests_are_answered_with_the_error() {
    // RFC 7296 §3.10.1: UNSUPPORTED_CRITICAL_PAYLOAD's notification data is the one-octet type of the payload
    // (200, see `with_critical_unknown_payload`); INVALID_SYNTAX has none.
    let cases: [(&str, Breaker, u16, &[u8]); 2] = [
        ("unknown critical payload", with_critical_unknown_payload, UNSUPPORTED_CRITICAL_PAYLOAD, &[200]),
        ("overlong payload", with_overlong_payload, INVALID_SYNTAX, &[]),
    ];
    for (what, break_it, want, want_data) in cases {
        let now = Duration::from_secs(5);
        let mut b = Tunnel::new(
            cfg("psk-psk-psk-psk", "aes128-sha1-modp2048", B, StartupAction::Add),
            addr(B, 500),
            addr(A, 500),
            now,
            &[4; 32],
        );
        let good = init_request();
        let bad = break_it(good.clone());
        let out = answer(&mut b, now, &bad);
        assert_eq!(out.len(), 1, "{what}: one answer");
        let (exchange, flags, _) = parse(&out[0]);
        assert_eq!((exchange, flags & FLAG_RESPONSE), (IKE_SA_INIT, FLAG_RESPONSE), "{what}: an IKE_SA_INIT response");
        assert_eq!(out[0][..8], bad[..8], "{what}: for the request's SPI");
        let n = notifies(&out[0]);
        assert_eq!(n.first().map(|n| n.0), Some(want), "{what}: notifies {n:?}");
        assert_eq!(n[0].1, want_data, "{what}: notification data");
        assert_eq!(b.status().counters.invalid_messages, 1, "{what}: counted");
        assert_eq!(b.status().state, TunnelState::Connecting, "{what}: no IKE SA");
        // The unmodified request still gets a real answer (the test's surgery is what broke it).
        let out = answer(&mut b, now, &good);
        assert!(notifies(&out[0]).iter().all(|n| n.0 != want), "{what}: the intact request got the same error");
    }
}

#[test]
fn malformed_requests_leave_an_established_ike_sa_alone() {
    let mut n = Net::new(
        cfg("psk-psk-psk-psk", "aes128-sha1-modp2048", A, StartupAction::Start),
        cfg("psk-psk-psk-psk", "aes128-sha1-modp2048", B, StartupAction::Add),
    );
    n.a.connect(n.now);
    n.run(Duration::from_secs(5));
    let before = n.b.status();
    assert_eq!(before.state, TunnelState::Established);
    for bad in [with_critical_unknown_payload(init_request()), with_overlong_payload(init_request())] {
        let now = n.now;
        let out = answer(&mut n.b, now, &bad);
        assert_eq!(out.len(), 1);
    }
    let after = n.b.status();
    assert_eq!(after.state, TunnelState::Established);
    assert_eq!(
        (after.ike_local_spi(), after.child_inbound_spi()),
        (before.ike_local_spi(), before.child_inbound_spi())
    );
    n.run(Duration::from_secs(60));
    assert!(n.a_down.is_empty(), "{:?}", n.a_down);
}

#[test]
fn invalid_ke_naming_a_group_we_do_not_offer_is_no_proposal_chosen() {
    let now = Duration::from_secs(5);
    let mut a = Tunnel::new(
        cfg("psk-psk-psk-psk", "aes128-sha1-modp2048", A, StartupAction::Start),
        addr(A, 500),
        addr(B, 500),
        now,
        &[5; 32],
    );
    a.connect(now);
    let req = a.poll_transmit().expect("IKE_SA_INIT").data;
    // The peer's answer: INVALID_KE_PAYLOAD asking for ECP-256 (group 19), which we do not offer.
    let mut resp = Vec::new();
    resp.extend_from_slice(&req[..8]); // SPIi
    resp.extend_from_slice(&[0; 8]); // SPIr
    resp.extend_from_slice(&[NOTIFY, 0x20, IKE_SA_INIT, FLAG_RESPONSE, 0, 0, 0, 0, 0, 0, 0, 38]);
    resp.extend_from_slice(&[0, 0, 0, 10, 0, 0, 0, 17, 0, 19]);
    a.handle_datagram(now, 500, addr(B, 500), &resp);
    let mut down = Vec::new();
    while let Some(e) = a.poll_event() {
        if let Event::IkeSaDown { reason } = e {
            down.push(reason);
        }
    }
    assert_eq!(down, [DownReason::NoProposalChosen { by_peer: true }]);
    assert_eq!(
        a.status().last_error.as_deref(),
        Some("peer asked for a DH group we do not offer (INVALID_KE_PAYLOAD)")
    );
    // No second IKE_SA_INIT with the unoffered group: nothing is sent until the 30 s backoff.
    assert!(a.poll_transmit().is_none());
    assert!(a.poll_timeout().is_some_and(|t| t >= now + Duration::from_secs(30)), "{:?}", a.poll_timeout());
}

/// Compiles only for types that zeroize their memory when dropped (the zeroize crate's marker).
fn zeroized_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}

#[test]
fn key_material_is_zeroized_on_drop_and_never_printed() {
    let psk = "psk-that-must-not-leak";
    let c = cfg(psk, "aes128-sha1-modp2048", A, StartupAction::Start);
    zeroized_on_drop(&c.psk);
    let now = Duration::from_secs(1000);
    let mut a = Tunnel::new(c, addr(A, 500), addr(B, 500), now, &[6; 32]);
    let mut b =
        Tunnel::new(cfg(psk, "aes128-sha1-modp2048", B, StartupAction::Add), addr(B, 500), addr(A, 500), now, &[7; 32]);
    a.connect(now);
    let mut child = None;
    for _ in 0..10 {
        while let Some(t) = a.poll_transmit() {
            b.handle_datagram(now, t.remote.port(), addr(A, t.local_port), &t.data);
        }
        while let Some(t) = b.poll_transmit() {
            a.handle_datagram(now, t.remote.port(), addr(B, t.local_port), &t.data);
        }
    }
    while let Some(e) = a.poll_event() {
        if let Event::ChildSaInstalled(c) = e {
            child = Some(c);
        }
    }
    let child = child.expect("a CHILD_SA");
    // Every key buffer the engine hands to the datapath is wiped when the datapath drops it.
    for k in [&child.inbound_keys, &child.outbound_keys] {
        zeroized_on_drop(&k.encr_key);
        zeroized_on_drop(&k.integ_key);
        assert!(!k.encr_key.is_empty() && !k.integ_key.is_empty());
    }
    // ... and none of it, nor the PSK, shows in Debug output, status or events.
    let printed = format!("{child:?} {:?} {:?}", a.status(), b.status());
    for k in [&child.inbound_keys, &child.outbound_keys] {
        for key in [&k.encr_key, &k.integ_key] {
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            assert!(!printed.contains(&hex), "a key in {printed}");
            assert!(!printed.contains(&format!("{:?}", &key[..8]).trim_end_matches(']').to_string()), "{printed}");
        }
    }
    assert!(!printed.contains(psk), "the PSK in {printed}");
}
