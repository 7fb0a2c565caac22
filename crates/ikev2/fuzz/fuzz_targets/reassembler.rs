//! The SKF reassembler fed arbitrary fragments, checked step by step against a plain reference model of
//! RFC 7383 §2.6 as `wire::fragment` documents it: never panics, stays within its bounds, and every answer
//! (ignored, error, complete message) is the model's.
#![no_main]

use iotrelay_ikev2::wire::PayloadType;
use iotrelay_ikev2::wire::fragment::{MAX_BYTES, MAX_FRAGMENTS, Reassembler};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

/// The message being collected: id, total, fragments so far, delivered.
type Collecting = (u32, u16, BTreeMap<u16, Vec<u8>>, bool);

#[derive(Default)]
struct Model {
    current: Option<Collecting>,
    first: Option<PayloadType>,
}

/// What the reassembler must answer: `Err(())`, `Ok(None)` or `Ok(Some(..))`.
type Expect = Result<Option<(PayloadType, Vec<u8>)>, ()>;

impl Model {
    fn add(&mut self, id: u32, number: u16, total: u16, next: PayloadType, plain: &[u8]) -> Expect {
        if number == 0 || total == 0 || number > total || total > MAX_FRAGMENTS {
            return Err(());
        }
        match &self.current {
            Some((cid, _, _, _)) if id < *cid => return Ok(None),
            Some((cid, _, _, true)) if id == *cid => return Ok(None),
            Some((cid, ctotal, _, false)) if id == *cid && total < *ctotal => return Ok(None),
            Some((cid, ctotal, _, false)) if id == *cid && total == *ctotal => {}
            _ => {
                self.current = Some((id, total, BTreeMap::new(), false));
                self.first = None;
            }
        }
        let (_, _, frags, done) = self.current.as_mut().expect("set above");
        if frags.contains_key(&number) {
            return Ok(None);
        }
        let bytes: usize = frags.values().map(Vec::len).sum();
        if bytes + plain.len() > MAX_BYTES {
            self.current = None;
            return Err(());
        }
        frags.insert(number, plain.to_vec());
        if number == 1 {
            self.first = Some(next);
        }
        if frags.len() == total as usize {
            let joined = frags.values().flatten().copied().collect();
            frags.clear();
            *done = true;
            return Ok(Some((self.first.unwrap_or(PayloadType::NONE), joined)));
        }
        Ok(None)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut r = Reassembler::new();
    let mut model = Model::default();
    let mut rest = data;
    // Each record: message id (1 octet, mod 4), number (1), total (1), next (1), length/8 (1), plaintext.
    while rest.len() >= 5 {
        let (id, number, total, next) = (u32::from(rest[0] % 4), u16::from(rest[1]), u16::from(rest[2]), rest[3]);
        let len = usize::from(rest[4]) * 8;
        rest = &rest[5..];
        let (plain, tail) = rest.split_at(len.min(rest.len()));
        rest = tail;
        let got = r.add(id, number, total, PayloadType(next), plain).map_err(|_| ());
        let want = model.add(id, number, total, PayloadType(next), plain);
        assert_eq!(got, want, "fragment {number}/{total} of message {id}");
    }
});
