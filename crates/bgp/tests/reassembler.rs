//! The stream reassembler: any chunking of a stream gives the same messages; a bad header is reported as soon
//! as its 19 octets are in; the buffer never holds more than one message.

use iotrelay_bgp::Reassembler;
use iotrelay_bgp::wire::{MAX_MESSAGE_LEN, Message, Notification, Open, RouteRefresh};
use std::net::Ipv4Addr;

fn stream() -> (Vec<u8>, Vec<Message>) {
    let msgs = vec![
        Message::Open(Open::new(65000, 30, Ipv4Addr::new(169, 254, 10, 2))),
        Message::Keepalive,
        Message::Keepalive,
        Message::RouteRefresh(RouteRefresh { afi: 1, subtype: 0, safi: 1 }),
        // The largest message there is: a NOTIFICATION of 4096 octets.
        Message::Notification(Notification { code: 6, subcode: 2, data: vec![0x41; MAX_MESSAGE_LEN - 21] }),
        Message::Keepalive,
    ];
    let bytes = msgs.iter().flat_map(Message::to_bytes).collect();
    (bytes, msgs)
}

#[test]
fn every_chunk_size_yields_the_same_messages() {
    let (bytes, msgs) = stream();
    for chunk in [1, 2, 3, 7, 18, 19, 20, 64, 1000, 4096, bytes.len()] {
        let mut r = Reassembler::new();
        let mut got = Vec::new();
        for mut piece in bytes.chunks(chunk) {
            while let Some(m) = r.next_message(&mut piece) {
                got.push(Message::parse(&m.unwrap()).unwrap());
                assert!(r.buffered() <= MAX_MESSAGE_LEN);
            }
            assert!(piece.is_empty(), "input left over");
            assert!(r.buffered() <= MAX_MESSAGE_LEN);
        }
        assert_eq!(got, msgs, "chunk size {chunk}");
        assert_eq!(r.buffered(), 0);
    }
}

#[test]
fn a_bad_header_is_reported_at_its_nineteenth_octet() {
    let mut bad = vec![0xff; 16];
    bad.extend_from_slice(&[0x10, 0x01, 4]); // length 4097
    bad.extend_from_slice(&[0; 100]);
    let mut r = Reassembler::new();
    let mut input = &bad[..18];
    assert!(r.next_message(&mut input).is_none());
    let mut input = &bad[18..];
    let e = r.next_message(&mut input).unwrap().unwrap_err();
    assert_eq!((e.code, e.subcode, e.data.as_slice()), (1, 2, &[0x10, 0x01][..]));
    // Only the header was taken from the input.
    assert_eq!(input.len(), 100);
    assert_eq!(r.buffered(), 19);
    r.reset();
    assert_eq!(r.buffered(), 0);
}
