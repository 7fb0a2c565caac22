//! Helpers shared by the known-answer tests.
#![allow(dead_code)] // each test file takes what it needs

use iotrelay_crypto::RandomSource;

/// Hex (spaces and newlines ignored) to bytes.
pub fn h(s: &str) -> Vec<u8> {
    hex::decode(s.replace([' ', '\n'], "")).unwrap()
}

/// Hands out fixed bytes (a published private key), for deterministic key generation.
pub struct Fixed(pub Vec<u8>);
impl RandomSource for Fixed {
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.copy_from_slice(&self.0[..dest.len()]);
    }
}
