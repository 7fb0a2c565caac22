//! The tunnel's own randomness: SPIs, nonces, Diffie-Hellman secrets, cookie secrets, padding and IVs of IKE
//! messages, rekey jitter. One generator per [`Tunnel`], seeded through its constructor; nothing else in the
//! engine draws random octets, and no engine method takes a random source.
//!
//! The generator is ChaCha20 (crypto's [`ChaChaRandom`], `rand`'s `StdRng` construction) with *fast key erasure*:
//! after every request the key is replaced by 32 octets of the generator's own output and the old state is
//! overwritten, so the state held at any moment does not reveal what it produced before (the DH secrets and nonces
//! of past SAs stay forward-secret if the process memory is read later). [`EngineRandom::reseed`] mixes fresh
//! octets from the caller into the key (XOR with the generator's output, so a poor reseed never weakens it); the
//! sidecar does that with OS randomness before every timer pass, so a state that leaked once does not predict
//! later keys either. The state is overwritten on drop ([`ChaChaRandom`]'s `Drop`).

use iotrelay_crypto::{ChaChaRandom, RandomSource};
use zeroize::Zeroizing;

/// ChaCha20 with fast key erasure, owned by one [`super::Tunnel`].
pub(super) struct EngineRandom {
    inner: ChaChaRandom,
}

impl EngineRandom {
    pub(super) fn from_seed(seed: &[u8; 32]) -> Self {
        EngineRandom { inner: ChaChaRandom::from_seed(Zeroizing::new(*seed)) }
    }

    /// New key = the generator's next 32 octets XOR `fresh`.
    pub(super) fn reseed(&mut self, fresh: &[u8; 32]) {
        self.rekey(Some(fresh));
    }

    /// Replaces the key (and drops the buffered output, whose old state `ChaChaRandom` overwrites on drop).
    fn rekey(&mut self, fresh: Option<&[u8; 32]>) {
        let mut key = Zeroizing::new([0u8; 32]);
        self.inner.fill_bytes(&mut key[..]);
        if let Some(fresh) = fresh {
            key.iter_mut().zip(fresh).for_each(|(k, f)| *k ^= f);
        }
        self.inner = ChaChaRandom::from_seed(key);
    }
}

impl RandomSource for EngineRandom {
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.inner.fill_bytes(dest);
        self.rekey(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(r: &mut dyn RandomSource) -> [u8; 32] {
        let mut b = [0u8; 32];
        r.fill_bytes(&mut b);
        b
    }

    #[test]
    fn same_seed_same_output_and_reseed_changes_it() {
        let (mut a, mut b) = (EngineRandom::from_seed(&[7; 32]), EngineRandom::from_seed(&[7; 32]));
        assert_eq!(draw(&mut a), draw(&mut b));
        assert_ne!(draw(&mut EngineRandom::from_seed(&[8; 32])), draw(&mut EngineRandom::from_seed(&[7; 32])));
        a.reseed(&[1; 32]);
        b.reseed(&[1; 32]);
        assert_eq!(draw(&mut a), draw(&mut b), "a reseed is deterministic too");
        a.reseed(&[2; 32]);
        b.reseed(&[3; 32]);
        assert_ne!(draw(&mut a), draw(&mut b), "the fresh octets reach the key");
    }

    /// Fast key erasure: after a request the generator no longer continues the plain ChaCha20 stream of its key,
    /// from which a state read later would recompute every earlier output.
    #[test]
    fn the_key_is_replaced_after_every_request() {
        let mut erasing = EngineRandom::from_seed(&[9; 32]);
        let mut plain = ChaChaRandom::from_seed(Zeroizing::new([9; 32]));
        assert_eq!(draw(&mut erasing), draw(&mut plain), "the first request is the key's stream");
        // What a plain stream produces next: the new key, then what follows.
        let (key, next) = (draw(&mut plain), draw(&mut plain));
        let second = draw(&mut erasing);
        assert_ne!(second, key);
        assert_ne!(second, next);
        assert_eq!(second, draw(&mut ChaChaRandom::from_seed(Zeroizing::new(key))), "the key came from the stream");
    }
}
