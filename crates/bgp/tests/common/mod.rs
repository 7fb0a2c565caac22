//! Helpers shared by the speaker tests: a scripted AWS peer (AS 64512, 169.254.10.1) in front of one speaker
//! (AS 65000, 169.254.10.2), message builders, and output draining.
#![allow(dead_code)]

use iotrelay_bgp::wire::{AsPathSegment, Message, Notification, Open, PathAttributes, Update};
use iotrelay_bgp::{Config, Ipv4Cidr, Output, Speaker, State};
use std::net::Ipv4Addr;
use std::time::Duration;

pub const AWS: Ipv4Addr = Ipv4Addr::new(169, 254, 10, 1);
pub const US: Ipv4Addr = Ipv4Addr::new(169, 254, 10, 2);
pub const T0: Duration = Duration::from_secs(100);

pub fn p(s: &str) -> Ipv4Cidr {
    s.parse().unwrap()
}

pub fn config() -> Config {
    Config::aws(65000, 64512, US)
}

/// A message header for hand-built bodies.
pub fn msg(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![0xff; 16];
    v.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    v.push(ty);
    v.extend_from_slice(body);
    v
}

pub fn aws_open() -> Vec<u8> {
    Message::Open(Open::new(64512, 30, AWS)).to_bytes()
}

pub fn keepalive() -> Vec<u8> {
    Message::Keepalive.to_bytes()
}

/// An UPDATE body: withdrawn routes, raw attributes, NLRI.
pub fn update_body(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut b = (withdrawn.len() as u16).to_be_bytes().to_vec();
    b.extend_from_slice(withdrawn);
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(nlri);
    b
}

/// ORIGIN IGP, AS_PATH [64512], NEXT_HOP 169.254.10.1, raw.
pub fn good_attrs() -> Vec<u8> {
    let mut a = vec![0x40, 1, 1, 0];
    a.extend_from_slice(&[0x40, 2, 6, 2, 1, 0, 0, 0xfc, 0x00]);
    a.extend_from_slice(&[0x40, 3, 4, 169, 254, 10, 1]);
    a
}

/// AWS announcing `prefixes` with AS_PATH [64512] and next hop 169.254.10.1.
pub fn aws_update(prefixes: &[Ipv4Cidr]) -> Vec<u8> {
    let attributes = PathAttributes {
        origin: Some(0),
        as_path: Some(vec![AsPathSegment::sequence(vec![64512])]),
        next_hop: Some(AWS),
        ..PathAttributes::default()
    };
    Message::Update(Update { nlri: prefixes.to_vec(), attributes, ..Update::default() }).to_bytes()
}

pub fn drain(s: &mut Speaker) -> Vec<Output> {
    std::iter::from_fn(|| s.poll_output()).collect()
}

/// An active speaker that connected and sent its OPEN (OpenSent).
pub fn open_sent(cfg: Config) -> Speaker {
    let mut s = Speaker::new(cfg, 7).unwrap();
    s.start(T0);
    s.handle_timeout(T0);
    assert_eq!(drain(&mut s), vec![Output::Connect]);
    assert!(s.connection_up(T0));
    drain(&mut s);
    assert_eq!(s.state(), State::OpenSent);
    s
}

/// A speaker Established with the scripted AWS peer, which announced 100.64.0.0/16.
pub fn established(cfg: Config) -> Speaker {
    let mut s = open_sent(cfg);
    s.handle_bytes(T0, &aws_open());
    assert_eq!(s.state(), State::OpenConfirm);
    s.handle_bytes(T0, &keepalive());
    assert_eq!(s.state(), State::Established);
    s.handle_bytes(T0, &aws_update(&[p("100.64.0.0/16")]));
    assert!(s.routes().get(&p("100.64.0.0/16")).is_some());
    drain(&mut s);
    while s.poll_event().is_some() {}
    s
}

/// The outputs end with exactly one NOTIFICATION then Close, the speaker is Idle with no learned routes; returns
/// the NOTIFICATION.
pub fn expect_notification(s: &mut Speaker) -> Notification {
    let out = drain(s);
    let n = match out.as_slice() {
        [.., Output::Send(bytes), Output::Close] => match Message::parse(bytes) {
            Ok(Message::Notification(n)) => n,
            other => panic!("last message sent is not a NOTIFICATION: {other:?}"),
        },
        other => panic!("no NOTIFICATION then Close: {other:?}"),
    };
    assert_eq!(s.state(), State::Idle);
    assert!(s.routes().is_empty());
    n
}
