//! The SKF reassembler fed arbitrary fragments: never panics, stays within its bounds, and a completed message
//! is exactly the concatenation of the first copy of each fragment 1..=total it accepted.
#![no_main]

use iotrelay_ikev2::wire::PayloadType;
use iotrelay_ikev2::wire::fragment::{MAX_BYTES, MAX_FRAGMENTS, Reassembler};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    let mut r = Reassembler::new();
    // Model: fragments accepted for the message being collected.
    let mut model: Option<(u32, u16, BTreeMap<u16, Vec<u8>>)> = None;
    let mut rest = data;
    // Each record: message id (1 octet), number (1), total (1), next (1), length (1), plaintext.
    while rest.len() >= 5 {
        let (id, number, total, next, len) =
            (rest[0] as u32 % 4, rest[1] as u16, rest[2] as u16, PayloadType(rest[3]), rest[4] as usize * 8);
        rest = &rest[5..];
        let n = len.min(rest.len());
        let (plain, tail) = rest.split_at(n);
        rest = tail;
        match r.add(id, number, total, next, plain) {
            Ok(Some((first, joined))) => {
                assert!(joined.len() <= MAX_BYTES);
                assert!(total >= 1 && total <= MAX_FRAGMENTS);
                let (mid, mtotal, mut frags) = model.take().unwrap_or((id, total, BTreeMap::new()));
                if mid == id {
                    frags.entry(number).or_insert_with(|| plain.to_vec());
                    assert_eq!(mtotal, total);
                    let expect: Vec<u8> = frags.values().flatten().copied().collect();
                    assert_eq!(frags.len(), total as usize);
                    assert_eq!(joined, expect);
                }
                let _ = first;
            }
            Ok(None) => match &mut model {
                Some((mid, _, frags)) if *mid == id => {
                    frags.entry(number).or_insert_with(|| plain.to_vec());
                }
                Some((mid, _, _)) if id < *mid => {}
                _ => {
                    let mut f = BTreeMap::new();
                    f.insert(number, plain.to_vec());
                    model = Some((id, total, f));
                }
            },
            Err(_) => {
                if number >= 1 && number <= total && total <= MAX_FRAGMENTS {
                    // Inconsistent total or the byte bound: the reassembler may have reset.
                    model = None;
                    r = Reassembler::new();
                }
            }
        }
    }
});
