//! ESP decapsulation and the anti-replay window.
//!
//! Oracles: (1) `ReplayWindow::check` equals a model (a set of accepted numbers and the top) for any sequence of
//! 32-bit numbers and window size, so a replayed or out-of-window number is never accepted twice and a fresh one
//! in the window never refused; (2) genuine ESP packets delivered in any order, repeated, or mutated: an unmodified
//! packet is accepted exactly once (its first delivery) with its own plaintext, a mutated one never, and arbitrary
//! bytes never panic.
#![no_main]

use std::collections::BTreeSet;

use iotrelay_crypto::{Encr, Integ, SaCipher, SeededRandom};
use iotrelay_esp::{InboundSa, OutboundSa, ReplayWindow};
use libfuzzer_sys::fuzz_target;

fn replay_model(data: &[u8]) {
    let Some((&s, rest)) = data.split_first() else { return };
    let mut w = ReplayWindow::new(64 * (u32::from(s % 8) + 1));
    let size = w.size();
    let mut accepted = BTreeSet::new();
    let mut top = 0u32;
    for c in rest.chunks_exact(4) {
        let raw = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        // Mostly near the top (where the window's edge cases are), sometimes anywhere.
        let seq = if raw & 0x8000_0000 != 0 { top.wrapping_add(raw % 200).wrapping_sub(100) } else { raw };
        let expect = seq != 0 && !accepted.contains(&seq) && (seq > top || top - seq < size);
        assert_eq!(w.check(seq), expect, "seq {seq} top {top} size {size}");
        if expect {
            w.update(seq);
            accepted.insert(seq);
            top = top.max(seq);
        }
    }
}

fn decap(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let (encr, integ) = match mode % 3 {
        0 => (Encr::AesGcm16_128, None),
        1 => (Encr::AesCbc128, Some(Integ::HmacSha1_96)),
        _ => (Encr::AesCbc256, Some(Integ::HmacSha256_128)),
    };
    let ek = vec![0x11u8; encr.key_material_len()];
    let ik = vec![0x22u8; integ.map_or(0, |i| i.key_len())];
    let (Ok(c_out), Ok(c_in)) = (SaCipher::new(encr, integ, &ek, &ik), SaCipher::new(encr, integ, &ek, &ik)) else {
        return;
    };
    let mut out = OutboundSa::new(0x1000_0001, c_out);
    let mut inb = InboundSa::new(0x1000_0001, c_in, 64);
    let mut rng = SeededRandom::new(u64::from(mode));
    let mut packets = Vec::new();
    let mut inners = Vec::new();
    for k in 0..32u8 {
        let inner = vec![k; 20 + usize::from(k)];
        let mut buf = vec![0u8; 256];
        let Ok(n) = out.seal(&inner, &mut rng, &mut buf) else { return };
        buf.truncate(n);
        packets.push(buf);
        inners.push(inner);
    }
    let mut delivered = [false; 32];
    let mut ops = rest.chunks_exact(3);
    for op in &mut ops {
        let i = usize::from(op[0] % 32);
        let mut p = packets[i].clone();
        let mutate = op[1] & 1 == 1;
        if mutate {
            let at = usize::from(op[2]) % p.len();
            p[at] ^= (op[1] | 1).rotate_left(1) | 1;
        }
        let r = inb.open(&mut p).map(|x| x.to_vec());
        if mutate {
            assert!(r.is_err(), "a mutated packet was accepted");
        } else if delivered[i] {
            assert!(r.is_err(), "packet {i} accepted twice");
        } else {
            assert_eq!(r.as_deref().ok(), Some(&inners[i][..]), "genuine packet {i} refused or altered");
            delivered[i] = true;
        }
    }
    let mut raw = ops.remainder().to_vec();
    let _ = inb.open(&mut raw);
    let mut raw = rest.to_vec();
    let _ = inb.open(&mut raw);
}

fuzz_target!(|data: &[u8]| {
    replay_model(data);
    decap(data);
});
