//! Two speakers wired to each other through an in-memory byte pipe on a virtual clock: "us" (active, the
//! customer gateway) and "aws" (passive, AS 64512, announcing the VPC). Establishment, route exchange and
//! withdrawal, keepalives, hold-timer expiry, reconnect with capped, jittered exponential backoff.

mod common;
use common::*;
use iotrelay_bgp::wire::Message;
use iotrelay_bgp::{Announce, Config, ConfigError, ConnectMode, DownReason, Event, Output, Speaker, State};
use std::time::Duration;

struct Pipe {
    us: Speaker,
    aws: Speaker,
    now: Duration,
    connected: bool,
    /// Bytes from aws to us are lost (the tunnel died in that direction).
    cut_to_us: bool,
    /// Delivery chunk size.
    chunk: usize,
    /// When `us` asked for a TCP connection.
    connects: Vec<Duration>,
    /// Messages `us` sent, with the time.
    us_sent: Vec<(Duration, Vec<u8>)>,
    /// When bytes last reached `us`.
    us_last_rx: Duration,
    us_events: Vec<(Duration, Event)>,
    aws_events: Vec<(Duration, Event)>,
}

impl Pipe {
    fn new(us: Config, aws: Config) -> Pipe {
        let mut us = Speaker::new(us, 0x1234_5678).unwrap();
        let mut aws = Speaker::new(aws, 99).unwrap();
        us.start(T0);
        aws.start(T0);
        Pipe {
            us,
            aws,
            now: T0,
            connected: false,
            cut_to_us: false,
            chunk: 7,
            connects: vec![],
            us_sent: vec![],
            us_last_rx: T0,
            us_events: vec![],
            aws_events: vec![],
        }
    }

    fn pump(&mut self) {
        loop {
            let mut progress = false;
            while let Some(o) = self.us.poll_output() {
                progress = true;
                match o {
                    Output::Connect => {
                        self.connects.push(self.now);
                        if self.aws.connection_up(self.now) {
                            self.connected = true;
                            assert!(self.us.connection_up(self.now));
                        } else {
                            self.us.connection_down(self.now);
                        }
                    }
                    Output::Send(b) => {
                        self.us_sent.push((self.now, b.clone()));
                        if self.connected {
                            b.chunks(self.chunk).for_each(|c| self.aws.handle_bytes(self.now, c));
                        }
                    }
                    Output::Close => self.close(),
                }
            }
            while let Some(o) = self.aws.poll_output() {
                progress = true;
                match o {
                    Output::Connect => panic!("the passive side connected"),
                    Output::Send(b) if self.connected && !self.cut_to_us => {
                        self.us_last_rx = self.now;
                        b.chunks(self.chunk).for_each(|c| self.us.handle_bytes(self.now, c));
                    }
                    Output::Send(_) => {}
                    Output::Close => self.close(),
                }
            }
            if !progress {
                break;
            }
        }
        while let Some(e) = self.us.poll_event() {
            self.us_events.push((self.now, e));
        }
        while let Some(e) = self.aws.poll_event() {
            self.aws_events.push((self.now, e));
        }
    }

    fn close(&mut self) {
        if std::mem::take(&mut self.connected) {
            self.us.connection_down(self.now);
            self.aws.connection_down(self.now);
        }
    }

    /// Runs every timer due up to `until` (inclusive), delivering everything at once.
    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        loop {
            self.pump();
            let next = [self.us.poll_timeout(), self.aws.poll_timeout()].into_iter().flatten().min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    self.us.handle_timeout(self.now);
                    self.aws.handle_timeout(self.now);
                }
                _ => break,
            }
        }
        self.now = until;
    }

    fn both_established(&self) -> bool {
        self.us.state() == State::Established && self.aws.state() == State::Established
    }
}

fn aws_config() -> Config {
    let mut c = Config::aws(64512, 65000, AWS);
    c.mode = ConnectMode::Passive;
    c.announce.prefixes = vec![p("100.64.0.0/16"), p("100.65.0.0/16")];
    c
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn established_over_a_byte_pipe_and_routes_exchanged_with_a_four_octet_asn() {
    let mut us = Config::aws(4_200_000_000, 64512, US);
    us.announce.prefixes.push(p("198.51.100.0/24"));
    let mut aws = aws_config();
    aws.peer_as = 4_200_000_000;
    let mut pipe = Pipe::new(us, aws);
    pipe.chunk = 1; // every message arrives one octet at a time
    pipe.run_for(secs(1));
    assert!(pipe.both_established());
    let r = pipe.us.routes().get(&p("100.64.0.0/16")).unwrap();
    assert_eq!((r.next_hop, r.as_path.as_slice()), (AWS, &[64512][..]));
    assert_eq!(pipe.us.routes().len(), 2);
    let back = pipe.aws.routes().get(&p("169.254.10.2/32")).unwrap();
    assert_eq!((back.next_hop, back.as_path.as_slice()), (US, &[4_200_000_000][..]));
    assert!(pipe.aws.routes().get(&p("198.51.100.0/24")).is_some());
    assert_eq!(pipe.us.hold_time(), Some(secs(30)));
    let established = pipe.us_events.iter().find_map(|(_, e)| match e {
        Event::Established { peer_as, peer_id, hold_time } => Some((*peer_as, *peer_id, *hold_time)),
        _ => None,
    });
    assert_eq!(established, Some((64512, AWS, 30)));
    assert!(
        pipe.us_events.iter().any(|(_, e)| matches!(e, Event::RoutesChanged { learned, .. } if learned.len() == 2))
    );
    assert_eq!(pipe.us.routes().lookup("100.64.1.10".parse().unwrap()).unwrap().prefix, p("100.64.0.0/16"));
    assert!(pipe.us.routes().lookup("100.66.0.1".parse().unwrap()).is_none());
}

#[test]
fn withdrawals_prepends_and_med_reach_the_peer() {
    let mut pipe = Pipe::new(config(), aws_config());
    pipe.run_for(secs(1));
    assert!(pipe.both_established());
    pipe.us_events.clear();
    pipe.aws.set_announce(pipe.now, Announce { prefixes: vec![p("100.64.0.0/16")], ..Announce::default() }).unwrap();
    pipe.pump();
    assert!(pipe.us.routes().get(&p("100.65.0.0/16")).is_none());
    assert_eq!(pipe.us.routes().len(), 1);
    assert_eq!(
        pipe.us_events.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
        vec![Event::RoutesChanged { learned: vec![], withdrawn: vec![p("100.65.0.0/16")] }]
    );
    // The standby tunnel: same prefix, prepended twice, with a MED.
    let standby = Announce { prefixes: vec![p("169.254.10.2/32")], prepend: 2, med: Some(50) };
    pipe.us.set_announce(pipe.now, standby).unwrap();
    pipe.pump();
    let r = pipe.aws.routes().get(&p("169.254.10.2/32")).unwrap();
    assert_eq!((r.as_path.as_slice(), r.med), (&[65000, 65000, 65000][..], Some(50)));
    // Back to active: plain path.
    pipe.us.set_announce(pipe.now, Announce { prefixes: vec![p("169.254.10.2/32")], ..Announce::default() }).unwrap();
    pipe.pump();
    assert_eq!(pipe.aws.routes().get(&p("169.254.10.2/32")).unwrap().as_path, vec![65000]);
    // Withdraw everything.
    pipe.us.set_announce(pipe.now, Announce::default()).unwrap();
    pipe.pump();
    assert!(pipe.aws.routes().is_empty());
    assert!(pipe.both_established());
}

#[test]
fn keepalives_every_third_of_the_hold_time_keep_the_session_up() {
    let mut pipe = Pipe::new(config(), aws_config());
    pipe.run_for(secs(1));
    let start = pipe.now;
    pipe.run_for(secs(600));
    assert!(pipe.both_established());
    let keepalives: Vec<Duration> =
        pipe.us_sent.iter().filter(|(t, b)| *t > start && b == &keepalive()).map(|(t, _)| *t).collect();
    assert_eq!(keepalives.len(), 60, "one every 10 s for 600 s");
    assert!(keepalives.windows(2).all(|w| w[1] - w[0] == secs(10)));
}

#[test]
fn hold_timer_expiry_sends_notification_4_then_reconnects_with_backoff() {
    let mut pipe = Pipe::new(config(), aws_config());
    pipe.run_for(secs(5));
    assert!(pipe.both_established());
    pipe.cut_to_us = true;
    pipe.run_for(secs(60));
    let last_rx = pipe.us_last_rx;
    // The Down event came exactly one hold time after the last octet from the peer.
    let (down_at, reason) = pipe
        .us_events
        .iter()
        .find_map(|(t, e)| match e {
            Event::Down { reason } => Some((*t, reason.clone())),
            _ => None,
        })
        .expect("no Down event");
    assert_eq!(reason, DownReason::HoldTimerExpired);
    assert_eq!(down_at, last_rx + secs(30));
    // What we sent at that moment: NOTIFICATION Hold Timer Expired, and the peer saw it.
    let n = pipe.us_sent.iter().rev().find(|(t, b)| *t == down_at && b[18] == 3).expect("no NOTIFICATION sent");
    assert_eq!(Message::parse(&n.1).unwrap(), Message::parse(&msg(3, &[4, 0])).unwrap());
    assert!(
        pipe.aws_events
            .iter()
            .any(|(_, e)| *e == Event::Down { reason: DownReason::NotificationReceived { code: 4, subcode: 0 } })
    );
    assert!(
        pipe.us_events
            .iter()
            .any(|(t, e)| *t == down_at && matches!(e, Event::RoutesChanged { withdrawn, .. } if withdrawn.len() == 2))
    );
    // The reconnect came after the first backoff (5 s times a factor in [0.75, 1]) and, with the direction still
    // cut, the next session also timed out (the OPEN never arrived) — only "us" ever connected.
    let retry = pipe.connects.iter().find(|&&t| t > down_at).copied().expect("no reconnect");
    assert!(retry - down_at >= Duration::from_millis(3750) && retry - down_at <= secs(5), "{:?}", retry - down_at);
    pipe.cut_to_us = false;
    pipe.run_for(secs(600));
    assert!(pipe.both_established());
    assert_eq!(pipe.us.routes().len(), 2);
}

#[test]
fn connect_retry_backs_off_exponentially_with_jitter_up_to_the_cap() {
    let mut pipe = Pipe::new(config(), aws_config());
    pipe.aws.stop(T0); // refuses connections
    pipe.run_for(secs(1800));
    assert!(pipe.aws_events.is_empty());
    let gaps: Vec<Duration> = pipe.connects.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() > 12, "{} attempts", pipe.connects.len());
    for (i, g) in gaps.iter().enumerate() {
        let base = secs(5).saturating_mul(1 << i.min(10)).min(secs(120));
        assert!(*g >= base.mul_f64(0.75) && *g <= base, "gap {i}: {g:?} for base {base:?}");
    }
    assert!(gaps.iter().any(|g| g.subsec_nanos() != 0), "no jitter: {gaps:?}");
    assert_eq!(pipe.us.counters().connect_attempts, pipe.connects.len() as u64);
    // The peer comes back: the next attempt succeeds.
    pipe.aws.start(pipe.now);
    pipe.run_for(secs(121));
    assert!(pipe.both_established());
    // A session that stayed up longer than the cap restarts the backoff at 5 s.
    pipe.run_for(secs(300));
    pipe.close();
    let closed = pipe.now;
    pipe.run_for(secs(10));
    let retry = pipe.connects.iter().find(|&&t| t > closed).copied().unwrap();
    assert!(retry - closed <= secs(5));
    assert!(pipe.both_established());
}

#[test]
fn the_learned_route_table_is_bounded_and_counts_what_it_dropped() {
    let mut us = config();
    us.max_learned_routes = 8;
    let mut aws = aws_config();
    aws.announce.prefixes = (0..20u8).map(|i| p(&format!("100.64.{i}.0/24"))).collect();
    let mut pipe = Pipe::new(us, aws);
    pipe.run_for(secs(1));
    assert!(pipe.both_established());
    assert_eq!(pipe.us.routes().len(), 8);
    assert_eq!(pipe.us.counters().routes_dropped_by_bound, 12);
    // A refresh re-sends all 20: the 8 held are replaced, the other 12 dropped again.
    assert!(pipe.us.request_refresh(pipe.now));
    pipe.pump();
    assert_eq!(pipe.us.routes().len(), 8);
    assert_eq!(pipe.us.counters().routes_dropped_by_bound, 24);
    pipe.aws.set_announce(pipe.now, Announce::default()).unwrap();
    pipe.pump();
    assert!(pipe.us.routes().is_empty());
}

#[test]
fn configuration_is_validated() {
    let mut c = config();
    c.announce.prefixes = (0..101u8).map(|i| p(&format!("10.0.{i}.0/24"))).collect();
    assert_eq!(Speaker::new(c.clone(), 1).unwrap_err(), ConfigError::TooManyPrefixes(101));
    c.announce.prefixes.truncate(100);
    let mut s = Speaker::new(c.clone(), 1).unwrap();
    let too_many =
        Announce { prefixes: (0..101u8).map(|i| p(&format!("10.1.{i}.0/24"))).collect(), ..Announce::default() };
    assert_eq!(s.set_announce(T0, too_many), Err(ConfigError::TooManyPrefixes(101)));
    assert_eq!(s.set_announce(T0, Announce { prepend: 11, ..Announce::default() }), Err(ConfigError::Prepend(11)));
    for (f, e) in [
        ((|c: &mut Config| c.peer_as = 65000) as fn(&mut Config), ConfigError::SameAs(65000)),
        (|c| c.hold_time = 2, ConfigError::HoldTime(2)),
        (|c| c.local_as = 23456, ConfigError::AsTrans),
        (|c| c.peer_as = 0, ConfigError::ZeroAs),
        (|c| c.router_id = "0.0.0.0".parse().unwrap(), ConfigError::RouterId),
        (|c| c.max_learned_routes = 0, ConfigError::MaxLearned),
    ] {
        let mut c = config();
        f(&mut c);
        assert_eq!(Speaker::new(c, 1).unwrap_err(), e);
    }
}

#[test]
fn hold_time_zero_means_no_keepalives_and_no_hold_timer() {
    let mut us = config();
    us.hold_time = 0;
    let mut pipe = Pipe::new(us, aws_config());
    pipe.run_for(secs(1));
    assert!(pipe.both_established());
    let sent = pipe.us_sent.len();
    pipe.cut_to_us = true;
    pipe.run_for(secs(3600));
    assert!(pipe.both_established());
    assert_eq!(pipe.us_sent.len(), sent);
    assert_eq!(pipe.us.poll_timeout(), None);
}
