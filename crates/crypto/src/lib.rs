//! iotrelay-crypto: the IKEv2/ESP cryptographic suites iotrelay supports, behind one small API.
//!
//! Sans-IO: randomness comes in through [`RandomSource`]; nothing here reads a clock or the OS RNG.
//! Key material is held in [`zeroize::Zeroizing`] buffers or types that zeroize on drop, and no `Debug` or
//! `Display` impl prints it.
//!
//! Transform IDs and names: RFC 7296 §3.3.2, IANA "IKEv2 Transform Type N Transform IDs"; names in the
//! `strongswan_name()` methods are the ones `swanctl --list-sas` prints, so status can be compared with the peer.

use zeroize::Zeroizing;

pub mod kdf;
pub mod proposal;

/// Source of randomness, injected by the caller (the sidecar passes the OS RNG, tests a seeded generator).
pub trait RandomSource {
    fn fill_bytes(&mut self, dest: &mut [u8]);
}

/// Deterministic generator for tests and simulations (ChaCha20 keyed by a 64-bit seed). Not for production keys.
pub struct SeededRandom {
    inner: rand_chacha::ChaCha20Rng,
}

impl SeededRandom {
    pub fn new(seed: u64) -> Self {
        use rand_chacha::rand_core::SeedableRng;
        Self { inner: rand_chacha::ChaCha20Rng::seed_from_u64(seed) }
    }
}

impl RandomSource for SeededRandom {
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        use rand_chacha::rand_core::RngCore;
        self.inner.fill_bytes(dest)
    }
}

/// A userspace CSPRNG (ChaCha20, the construction of `rand`'s `StdRng`) keyed by a 256-bit seed that the caller
/// takes from the OS: for the ESP hot path, where CBC needs 16 unpredictable octets per packet and a `getrandom`
/// syscall per packet showed up in the relay's profile. One per tunnel, seeded from the relay's OS random source
/// when the tunnel is created (sans-IO: the seed comes in). Its state is cleared on drop.
pub struct ChaChaRandom {
    inner: rand_chacha::ChaCha20Rng,
}

impl ChaChaRandom {
    pub fn from_seed(seed: Zeroizing<[u8; 32]>) -> Self {
        use rand_chacha::rand_core::SeedableRng;
        Self { inner: rand_chacha::ChaCha20Rng::from_seed(*seed) }
    }

    /// Seeded with 32 octets from `source` (the OS generator in the sidecar).
    pub fn seeded_from(source: &mut dyn RandomSource) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        source.fill_bytes(&mut seed[..]);
        Self::from_seed(seed)
    }
}

impl RandomSource for ChaChaRandom {
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        use rand_chacha::rand_core::RngCore;
        self.inner.fill_bytes(dest)
    }
}

impl Drop for ChaChaRandom {
    fn drop(&mut self) {
        use rand_chacha::rand_core::SeedableRng;
        // Overwrite the key and buffered output with a fixed state; black_box keeps the store from being
        // optimised away as dead.
        self.inner = rand_chacha::ChaCha20Rng::from_seed([0u8; 32]);
        std::hint::black_box(&mut self.inner);
    }
}

/// Errors never carry key material or secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("integrity check failed")]
    IntegrityCheckFailed,
    #[error("invalid length: {0}")]
    InvalidLength(&'static str),
    #[error("invalid Diffie-Hellman public value: {0}")]
    InvalidPublicValue(&'static str),
    #[error("invalid key length for {0}")]
    InvalidKeyLength(&'static str),
}

/// Encryption transforms (IKE and ESP). RFC 7296 §3.3.2 transform type 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encr {
    /// ENCR_AES_CBC (12), key length 128 (RFC 3602).
    AesCbc128,
    /// ENCR_AES_CBC (12), key length 256.
    AesCbc256,
    /// ENCR_AES_GCM_16 (20), 128-bit key, 16-octet ICV (RFC 4106, RFC 5282).
    AesGcm16_128,
    /// ENCR_AES_GCM_16 (20), 256-bit key.
    AesGcm16_256,
}

impl Encr {
    pub const ALL: [Encr; 4] = [Encr::AesCbc128, Encr::AesCbc256, Encr::AesGcm16_128, Encr::AesGcm16_256];
    /// IANA transform ID.
    pub fn transform_id(self) -> u16 {
        match self {
            Encr::AesCbc128 | Encr::AesCbc256 => 12,
            Encr::AesGcm16_128 | Encr::AesGcm16_256 => 20,
        }
    }
    /// Value of the Key Length attribute (14), in bits.
    pub fn key_bits(self) -> u16 {
        match self {
            Encr::AesCbc128 | Encr::AesGcm16_128 => 128,
            Encr::AesCbc256 | Encr::AesGcm16_256 => 256,
        }
    }
    /// The transform for an ID and Key Length attribute; `None` if unsupported (or the attribute is missing).
    pub fn from_transform(id: u16, key_bits: Option<u16>) -> Option<Encr> {
        Encr::ALL.into_iter().find(|e| e.transform_id() == id && Some(e.key_bits()) == key_bits)
    }
    pub fn is_aead(self) -> bool {
        matches!(self, Encr::AesGcm16_128 | Encr::AesGcm16_256)
    }
    /// Octets of keying material taken from KEYMAT / prf+: the AES key, plus the 4-octet salt for GCM.
    pub fn key_material_len(self) -> usize {
        self.key_bits() as usize / 8 + if self.is_aead() { 4 } else { 0 }
    }
    /// Explicit IV octets carried in each packet: 16 for CBC, 8 for GCM.
    pub fn iv_len(self) -> usize {
        if self.is_aead() { 8 } else { 16 }
    }
    /// ICV octets produced by the cipher itself (AEAD only; CBC uses an [`Integ`] transform).
    pub fn icv_len(self) -> usize {
        if self.is_aead() { 16 } else { 0 }
    }
    /// Cipher block size: plaintext plus padding must be a multiple of it (CBC 16; GCM is a stream: 1).
    pub fn block_size(self) -> usize {
        if self.is_aead() { 1 } else { 16 }
    }
    /// strongSwan's name, e.g. `AES_CBC-128`, `AES_GCM_16-256`.
    pub fn strongswan_name(self) -> &'static str {
        match self {
            Encr::AesCbc128 => "AES_CBC-128",
            Encr::AesCbc256 => "AES_CBC-256",
            Encr::AesGcm16_128 => "AES_GCM_16-128",
            Encr::AesGcm16_256 => "AES_GCM_16-256",
        }
    }
}

/// Integrity transforms. RFC 7296 §3.3.2 transform type 3; RFC 4868 for SHA-2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Integ {
    HmacSha1_96,
    HmacSha256_128,
    HmacSha384_192,
    HmacSha512_256,
}

impl Integ {
    pub const ALL: [Integ; 4] =
        [Integ::HmacSha1_96, Integ::HmacSha256_128, Integ::HmacSha384_192, Integ::HmacSha512_256];
    pub fn transform_id(self) -> u16 {
        match self {
            Integ::HmacSha1_96 => 2,
            Integ::HmacSha256_128 => 12,
            Integ::HmacSha384_192 => 13,
            Integ::HmacSha512_256 => 14,
        }
    }
    pub fn from_transform(id: u16) -> Option<Integ> {
        Integ::ALL.into_iter().find(|i| i.transform_id() == id)
    }
    /// Key length in octets (the hash output length).
    pub fn key_len(self) -> usize {
        match self {
            Integ::HmacSha1_96 => 20,
            Integ::HmacSha256_128 => 32,
            Integ::HmacSha384_192 => 48,
            Integ::HmacSha512_256 => 64,
        }
    }
    /// Truncated ICV length in octets.
    pub fn icv_len(self) -> usize {
        match self {
            Integ::HmacSha1_96 => 12,
            Integ::HmacSha256_128 => 16,
            Integ::HmacSha384_192 => 24,
            Integ::HmacSha512_256 => 32,
        }
    }
    pub fn strongswan_name(self) -> &'static str {
        match self {
            Integ::HmacSha1_96 => "HMAC_SHA1_96",
            Integ::HmacSha256_128 => "HMAC_SHA2_256_128",
            Integ::HmacSha384_192 => "HMAC_SHA2_384_192",
            Integ::HmacSha512_256 => "HMAC_SHA2_512_256",
        }
    }
}

/// Pseudorandom functions. RFC 7296 §3.3.2 transform type 2; RFC 4868.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Prf {
    HmacSha1,
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl Prf {
    pub const ALL: [Prf; 4] = [Prf::HmacSha1, Prf::HmacSha256, Prf::HmacSha384, Prf::HmacSha512];
    pub fn transform_id(self) -> u16 {
        match self {
            Prf::HmacSha1 => 2,
            Prf::HmacSha256 => 5,
            Prf::HmacSha384 => 6,
            Prf::HmacSha512 => 7,
        }
    }
    pub fn from_transform(id: u16) -> Option<Prf> {
        Prf::ALL.into_iter().find(|p| p.transform_id() == id)
    }
    /// Output length (and preferred key length) in octets.
    pub fn output_len(self) -> usize {
        match self {
            Prf::HmacSha1 => 20,
            Prf::HmacSha256 => 32,
            Prf::HmacSha384 => 48,
            Prf::HmacSha512 => 64,
        }
    }
    pub fn strongswan_name(self) -> &'static str {
        match self {
            Prf::HmacSha1 => "PRF_HMAC_SHA1",
            Prf::HmacSha256 => "PRF_HMAC_SHA2_256",
            Prf::HmacSha384 => "PRF_HMAC_SHA2_384",
            Prf::HmacSha512 => "PRF_HMAC_SHA2_512",
        }
    }
    /// prf(key, data[0] | data[1] | ...).
    pub fn compute(self, key: &[u8], data: &[&[u8]]) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(vec![0u8; self.output_len()]);
        hmac_into(self, key, data, &mut out);
        out
    }
    /// prf+ (RFC 7296 §2.13): `len` octets of T1 | T2 | ...
    ///
    /// `len` must not exceed `255 * self.output_len()` (the counter is one octet; §2.13). No IKEv2 caller comes
    /// near it (IKE SA keys take at most 384 octets, CHILD_SA keys 192, against a limit of 5100 for SHA-1), so
    /// this is a programming error, not a peer-controlled case: debug builds assert, release builds return the
    /// 255 blocks there are (never panicking on peer input).
    pub fn prf_plus(self, key: &[u8], seed: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
        let hlen = self.output_len();
        debug_assert!(len <= 255 * hlen, "prf+ asked for more than 255 blocks");
        let mut out = Zeroizing::new(Vec::with_capacity(len + hlen));
        let mut t = Zeroizing::new(vec![0u8; hlen]);
        let mut n: u8 = 1;
        while out.len() < len {
            let prev: &[u8] = if n == 1 { &[] } else { &t[..] };
            let mut next = Zeroizing::new(vec![0u8; hlen]);
            hmac_into(self, key, &[prev, seed, &[n]], &mut next);
            out.extend_from_slice(&next);
            t = next;
            if n == 255 {
                break;
            }
            n += 1;
        }
        out.truncate(len);
        out
    }
}

/// Diffie-Hellman groups (transform type 4): every group AWS accepts, plus Curve25519.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DhGroup {
    Modp1024,
    Modp1536,
    Modp2048,
    Modp3072,
    Modp4096,
    Modp6144,
    Modp8192,
    Ecp256,
    Ecp384,
    Ecp521,
    Modp1024s160,
    Modp2048s224,
    Modp2048s256,
    Curve25519,
}

impl DhGroup {
    pub const ALL: [DhGroup; 14] = [
        DhGroup::Modp1024,
        DhGroup::Modp1536,
        DhGroup::Modp2048,
        DhGroup::Modp3072,
        DhGroup::Modp4096,
        DhGroup::Modp6144,
        DhGroup::Modp8192,
        DhGroup::Ecp256,
        DhGroup::Ecp384,
        DhGroup::Ecp521,
        DhGroup::Modp1024s160,
        DhGroup::Modp2048s224,
        DhGroup::Modp2048s256,
        DhGroup::Curve25519,
    ];
    /// IANA group number.
    pub fn id(self) -> u16 {
        match self {
            DhGroup::Modp1024 => 2,
            DhGroup::Modp1536 => 5,
            DhGroup::Modp2048 => 14,
            DhGroup::Modp3072 => 15,
            DhGroup::Modp4096 => 16,
            DhGroup::Modp6144 => 17,
            DhGroup::Modp8192 => 18,
            DhGroup::Ecp256 => 19,
            DhGroup::Ecp384 => 20,
            DhGroup::Ecp521 => 21,
            DhGroup::Modp1024s160 => 22,
            DhGroup::Modp2048s224 => 23,
            DhGroup::Modp2048s256 => 24,
            DhGroup::Curve25519 => 31,
        }
    }
    pub fn from_id(id: u16) -> Option<DhGroup> {
        DhGroup::ALL.into_iter().find(|g| g.id() == id)
    }
    /// Length of the KE payload's key exchange data (RFC 7296 §3.4, RFC 5903 §7, RFC 8031).
    pub fn public_len(self) -> usize {
        match self {
            DhGroup::Modp1024 | DhGroup::Modp1024s160 => 128,
            DhGroup::Modp1536 => 192,
            DhGroup::Modp2048 | DhGroup::Modp2048s224 | DhGroup::Modp2048s256 => 256,
            DhGroup::Modp3072 => 384,
            DhGroup::Modp4096 => 512,
            DhGroup::Modp6144 => 768,
            DhGroup::Modp8192 => 1024,
            DhGroup::Ecp256 => 64,
            DhGroup::Ecp384 => 96,
            DhGroup::Ecp521 => 132,
            DhGroup::Curve25519 => 32,
        }
    }
    /// strongSwan's name: `MODP_1024`, `ECP_256`, `CURVE_25519`, `MODP_2048_256` ...
    pub fn strongswan_name(self) -> &'static str {
        match self {
            DhGroup::Modp1024 => "MODP_1024",
            DhGroup::Modp1536 => "MODP_1536",
            DhGroup::Modp2048 => "MODP_2048",
            DhGroup::Modp3072 => "MODP_3072",
            DhGroup::Modp4096 => "MODP_4096",
            DhGroup::Modp6144 => "MODP_6144",
            DhGroup::Modp8192 => "MODP_8192",
            DhGroup::Ecp256 => "ECP_256",
            DhGroup::Ecp384 => "ECP_384",
            DhGroup::Ecp521 => "ECP_521",
            DhGroup::Modp1024s160 => "MODP_1024_160",
            DhGroup::Modp2048s224 => "MODP_2048_224",
            DhGroup::Modp2048s256 => "MODP_2048_256",
            DhGroup::Curve25519 => "CURVE_25519",
        }
    }
    /// A fresh ephemeral key pair, from the injected randomness.
    pub fn generate(self, rng: &mut dyn RandomSource) -> DhSecret {
        dh::generate(self, rng)
    }
}

mod cipher;
mod dh;
mod modp_params;
pub use cipher::SaCipher;
pub use dh::DhSecret;

/// HMAC of the concatenation of `data` into `out` (which has the hash's output length).
fn hmac_into(prf: Prf, key: &[u8], data: &[&[u8]], out: &mut [u8]) {
    use hmac::{Mac, SimpleHmac};
    macro_rules! run {
        ($h:ty) => {{
            // SimpleHmac accepts keys of any length (HMAC hashes long keys), so this cannot fail.
            let mut mac = <SimpleHmac<$h> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
            for d in data {
                mac.update(d);
            }
            out.copy_from_slice(&mac.finalize().into_bytes());
        }};
    }
    match prf {
        Prf::HmacSha1 => run!(sha1::Sha1),
        Prf::HmacSha256 => run!(sha2::Sha256),
        Prf::HmacSha384 => run!(sha2::Sha384),
        Prf::HmacSha512 => run!(sha2::Sha512),
    }
}

#[cfg(test)]
mod chacha_tests {
    use super::*;

    #[test]
    fn chacha_random_follows_its_seed() {
        let draw = |seed: u8| {
            let mut r = ChaChaRandom::from_seed(Zeroizing::new([seed; 32]));
            let mut a = [0u8; 16];
            let mut b = [0u8; 16];
            r.fill_bytes(&mut a);
            r.fill_bytes(&mut b);
            assert_ne!(a, b, "successive IVs differ");
            a
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
        let mut s = SeededRandom::new(5);
        let (mut x, mut y) = (ChaChaRandom::seeded_from(&mut s), ChaChaRandom::seeded_from(&mut s));
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        x.fill_bytes(&mut a);
        y.fill_bytes(&mut b);
        assert_ne!(a, b, "each tunnel gets a seed of its own");
    }
}
