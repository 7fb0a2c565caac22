//! [`SaCipher`]: AES-CBC + HMAC or AES-GCM-16, keys expanded once, no heap allocation per packet.
//!
//! Libraries, chosen by measurement (`scripts/bench.sh`, 1400-octet packets, same run; see `crates/crypto/benches/`):
//! - AES-GCM: `aws-lc-rs` (AWS-LC, the BoringSSL-derived library AWS maintains; a FIPS-validated build exists).
//!   On the shared 2-core EPYC (2026-11-30, under load): seal 1530-1790 ns per packet against RustCrypto
//!   `aes-gcm`'s 4030-4310 and ring's 820-1250; open 950-2000 against 3710-4500 and 860-1100. ring is faster
//!   still but never clears its key schedule; AWS-LC's AEAD context lives in its own heap, which `OPENSSL_free`
//!   cleanses when the key is dropped, so keys are wiped as the project requires. The feature `rustcrypto-gcm`
//!   switches to RustCrypto `aes-gcm` (pure Rust, zeroized, 2.5x slower).
//! - HMAC: RustCrypto `hmac` + `sha1`/`sha2` (SHA-NI where the CPU has it): SHA-1 about 4x faster than ring's,
//!   SHA-256/384/512 within noise of ring's.
//! - AES-CBC: RustCrypto `aes` + `cbc` (ring has no CBC; aws-lc-rs's CBC measured 0.7x of its time, but CBC is a
//!   small part of the relay's CPU at 1400 octets: not switched yet). HMAC-SHA1: RustCrypto, 1.8x faster than
//!   aws-lc-rs's and 4.5x than ring's in the same run.

use crate::{CryptoError, Encr, Integ};
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, InnerIvInit, block_padding::NoPadding};
use aes_gcm::KeyInit;
#[cfg(feature = "rustcrypto-gcm")]
use aes_gcm::{AeadInPlace, Aes128Gcm, Aes256Gcm, Nonce, Tag};
use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// Expanded keys. The cbc crate's encryptor/decryptor own their block cipher, so each packet works on a copy of
/// the expanded AES key (a fixed-size stack copy, no allocation, no key expansion). With the `zeroize` feature
/// of aes (and aes-gcm), those expanded keys (the originals and the per-packet copies) are cleared on drop.
enum Engine {
    Cbc128(Box<aes::Aes128>),
    Cbc256(Box<aes::Aes256>),
    /// AES-GCM-16 with a 128- or 256-bit key (aws-lc-rs checks the key length against the algorithm).
    #[cfg(not(feature = "rustcrypto-gcm"))]
    Gcm(Box<aws_lc_rs::aead::LessSafeKey>),
    #[cfg(feature = "rustcrypto-gcm")]
    Gcm128(Box<Aes128Gcm>),
    #[cfg(feature = "rustcrypto-gcm")]
    Gcm256(Box<Aes256Gcm>),
}

#[cfg(not(feature = "rustcrypto-gcm"))]
fn aws_lc_gcm(encr: Encr, key: &[u8]) -> Result<Engine, CryptoError> {
    use aws_lc_rs::aead::{AES_128_GCM, AES_256_GCM, LessSafeKey, UnboundKey};
    let alg = if encr == Encr::AesGcm16_128 { &AES_128_GCM } else { &AES_256_GCM };
    let key = UnboundKey::new(alg, key).map_err(|_| CryptoError::InvalidKeyLength(encr.strongswan_name()))?;
    Ok(Engine::Gcm(Box::new(LessSafeKey::new(key))))
}

/// A keyed HMAC, cloned for each packet (a fixed-size copy, no allocation).
#[derive(Clone)]
enum MacKey {
    Sha1(Hmac<sha1::Sha1>),
    Sha256(Hmac<sha2::Sha256>),
    Sha384(Hmac<sha2::Sha384>),
    Sha512(Hmac<sha2::Sha512>),
}

impl MacKey {
    fn new(integ: Integ, key: &[u8]) -> Result<MacKey, CryptoError> {
        if key.len() != integ.key_len() {
            return Err(CryptoError::InvalidKeyLength(integ.strongswan_name()));
        }
        let bad = |_| CryptoError::InvalidKeyLength(integ.strongswan_name());
        Ok(match integ {
            Integ::HmacSha1_96 => MacKey::Sha1(<Hmac<_> as Mac>::new_from_slice(key).map_err(bad)?),
            Integ::HmacSha256_128 => MacKey::Sha256(<Hmac<_> as Mac>::new_from_slice(key).map_err(bad)?),
            Integ::HmacSha384_192 => MacKey::Sha384(<Hmac<_> as Mac>::new_from_slice(key).map_err(bad)?),
            Integ::HmacSha512_256 => MacKey::Sha512(<Hmac<_> as Mac>::new_from_slice(key).map_err(bad)?),
        })
    }

    /// Full HMAC over aad | iv | data, truncated into `out`.
    fn compute(&self, aad: &[u8], iv: &[u8], data: &[u8], out: &mut [u8]) {
        macro_rules! run {
            ($m:expr) => {{
                let mut m = $m.clone();
                m.update(aad);
                m.update(iv);
                m.update(data);
                let full = m.finalize().into_bytes();
                out.copy_from_slice(&full[..out.len()]);
            }};
        }
        match self {
            MacKey::Sha1(m) => run!(m),
            MacKey::Sha256(m) => run!(m),
            MacKey::Sha384(m) => run!(m),
            MacKey::Sha512(m) => run!(m),
        }
    }
}

#[cfg(not(feature = "rustcrypto-gcm"))]
fn gcm_engine(encr: Encr, key: &[u8]) -> Result<Engine, CryptoError> {
    aws_lc_gcm(encr, key)
}

#[cfg(feature = "rustcrypto-gcm")]
fn gcm_engine(encr: Encr, key: &[u8]) -> Result<Engine, CryptoError> {
    let bad = |_| CryptoError::InvalidKeyLength(encr.strongswan_name());
    Ok(if encr == Encr::AesGcm16_128 {
        Engine::Gcm128(Box::new(Aes128Gcm::new_from_slice(key).map_err(bad)?))
    } else {
        Engine::Gcm256(Box::new(Aes256Gcm::new_from_slice(key).map_err(bad)?))
    })
}

/// An SA's cipher state (IKE SK payload or ESP), keys expanded once. AEAD (GCM) or CBC + HMAC.
///
/// The callers do their own padding (IKE and ESP pad differently); this only encrypts and authenticates:
/// - CBC: `data` (a multiple of 16 octets) is encrypted in place with `iv` (16 octets);
///   ICV = truncated HMAC(integ_key, aad | iv | ciphertext).
/// - GCM: nonce = salt (last 4 octets of the key material) | `iv` (8 octets); additional data = `aad`;
///   ICV = the 16-octet tag.
///
/// ESP: aad = SPI | sequence number (RFC 4303 §2, RFC 4106 §5). IKE: aad = the message from the IKE header up to
/// and including the SK payload's generic header (RFC 5282 §5, RFC 7296 §3.14).
///
/// No heap allocation per packet: [`SaCipher::seal_in_place`] and [`SaCipher::open_in_place`] work on the
/// caller's buffers and fixed-size stack state.
pub struct SaCipher {
    encr: Encr,
    integ: Option<Integ>,
    engine: Engine,
    salt: [u8; 4],
    mac: Option<MacKey>,
}

impl std::fmt::Debug for SaCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaCipher").field("encr", &self.encr).field("integ", &self.integ).finish_non_exhaustive()
    }
}

impl Drop for SaCipher {
    fn drop(&mut self) {
        self.salt.zeroize();
    }
}

impl SaCipher {
    /// `encr_key` is `encr.key_material_len()` octets (GCM: key then 4-octet salt); `integ` must be `None` for
    /// GCM and `Some` for CBC, with `integ_key` of `integ.key_len()` octets (empty for GCM).
    pub fn new(encr: Encr, integ: Option<Integ>, encr_key: &[u8], integ_key: &[u8]) -> Result<Self, CryptoError> {
        if encr_key.len() != encr.key_material_len() {
            return Err(CryptoError::InvalidKeyLength(encr.strongswan_name()));
        }
        let key_len = encr.key_bits() as usize / 8;
        let mut salt = [0u8; 4];
        let engine = match encr {
            Encr::AesCbc128 => Engine::Cbc128(Box::new(
                aes::Aes128::new_from_slice(encr_key).map_err(|_| CryptoError::InvalidKeyLength("AES_CBC-128"))?,
            )),
            Encr::AesCbc256 => Engine::Cbc256(Box::new(
                aes::Aes256::new_from_slice(encr_key).map_err(|_| CryptoError::InvalidKeyLength("AES_CBC-256"))?,
            )),
            Encr::AesGcm16_128 | Encr::AesGcm16_256 => {
                salt.copy_from_slice(&encr_key[key_len..]);
                gcm_engine(encr, &encr_key[..key_len])?
            }
        };
        let mac = match (encr.is_aead(), integ) {
            (true, None) => {
                if !integ_key.is_empty() {
                    return Err(CryptoError::InvalidKeyLength("AEAD suites take no integrity key"));
                }
                None
            }
            (false, Some(i)) => Some(MacKey::new(i, integ_key)?),
            (true, Some(_)) => return Err(CryptoError::InvalidKeyLength("AEAD suites take no integrity transform")),
            (false, None) => return Err(CryptoError::InvalidKeyLength("AES-CBC needs an integrity transform")),
        };
        Ok(SaCipher { encr, integ, engine, salt, mac })
    }
    pub fn encr(&self) -> Encr {
        self.encr
    }
    pub fn integ(&self) -> Option<Integ> {
        self.integ
    }
    pub fn iv_len(&self) -> usize {
        self.encr.iv_len()
    }
    /// ICV octets appended to each packet/message.
    pub fn icv_len(&self) -> usize {
        match self.integ {
            Some(i) => i.icv_len(),
            None => self.encr.icv_len(),
        }
    }
    pub fn block_size(&self) -> usize {
        self.encr.block_size()
    }

    fn check_lengths(&self, iv: &[u8], data: &[u8], icv: &[u8]) -> Result<(), CryptoError> {
        if iv.len() != self.iv_len() {
            return Err(CryptoError::InvalidLength("IV"));
        }
        if icv.len() != self.icv_len() {
            return Err(CryptoError::InvalidLength("ICV"));
        }
        if !self.encr.is_aead() && !data.len().is_multiple_of(16) {
            return Err(CryptoError::InvalidLength("CBC data is not a multiple of the block size"));
        }
        Ok(())
    }

    fn nonce(&self, iv: &[u8]) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[..4].copy_from_slice(&self.salt);
        n[4..].copy_from_slice(iv);
        n
    }

    /// Encrypts `data` in place and writes the ICV (`icv.len() == self.icv_len()`).
    pub fn seal_in_place(&self, aad: &[u8], iv: &[u8], data: &mut [u8], icv: &mut [u8]) -> Result<(), CryptoError> {
        self.check_lengths(iv, data, icv)?;
        let len = data.len();
        macro_rules! cbc {
            ($aes:ty, $key:expr) => {{
                cbc::Encryptor::<$aes>::inner_iv_slice_init(<$aes>::clone($key), iv)
                    .map_err(|_| CryptoError::InvalidLength("IV"))?
                    .encrypt_padded_mut::<NoPadding>(data, len)
                    .map_err(|_| CryptoError::InvalidLength("CBC data"))?;
            }};
        }
        #[cfg(feature = "rustcrypto-gcm")]
        macro_rules! gcm {
            ($c:expr) => {{
                let nonce = self.nonce(iv);
                let tag = $c
                    .encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, data)
                    .map_err(|_| CryptoError::InvalidLength("GCM message too long"))?;
                icv.copy_from_slice(&tag);
            }};
        }
        match &self.engine {
            Engine::Cbc128(k) => cbc!(aes::Aes128, k),
            Engine::Cbc256(k) => cbc!(aes::Aes256, k),
            #[cfg(not(feature = "rustcrypto-gcm"))]
            Engine::Gcm(k) => {
                let nonce = aws_lc_rs::aead::Nonce::assume_unique_for_key(self.nonce(iv));
                let tag = k
                    .seal_in_place_separate_tag(nonce, aws_lc_rs::aead::Aad::from(aad), data)
                    .map_err(|_| CryptoError::InvalidLength("GCM message too long"))?;
                icv.copy_from_slice(tag.as_ref());
            }
            #[cfg(feature = "rustcrypto-gcm")]
            Engine::Gcm128(c) => gcm!(c),
            #[cfg(feature = "rustcrypto-gcm")]
            Engine::Gcm256(c) => gcm!(c),
        }
        if let Some(mac) = &self.mac {
            mac.compute(aad, iv, data, icv);
        }
        Ok(())
    }

    /// Checks the ICV (constant time; for CBC before decrypting) and decrypts `data` in place.
    /// On failure `data` is left unspecified and `CryptoError::IntegrityCheckFailed` is returned.
    pub fn open_in_place(&self, aad: &[u8], iv: &[u8], data: &mut [u8], icv: &[u8]) -> Result<(), CryptoError> {
        self.check_lengths(iv, data, icv)?;
        if let Some(mac) = &self.mac {
            let mut expect = [0u8; 32];
            let expect = &mut expect[..icv.len()];
            mac.compute(aad, iv, data, expect);
            if !bool::from(expect.ct_eq(icv)) {
                return Err(CryptoError::IntegrityCheckFailed);
            }
        }
        macro_rules! cbc {
            ($aes:ty, $key:expr) => {{
                cbc::Decryptor::<$aes>::inner_iv_slice_init(<$aes>::clone($key), iv)
                    .map_err(|_| CryptoError::InvalidLength("IV"))?
                    .decrypt_padded_mut::<NoPadding>(data)
                    .map_err(|_| CryptoError::InvalidLength("CBC data"))?;
            }};
        }
        #[cfg(feature = "rustcrypto-gcm")]
        macro_rules! gcm {
            ($c:expr) => {{
                let nonce = self.nonce(iv);
                $c.decrypt_in_place_detached(Nonce::from_slice(&nonce), aad, data, Tag::from_slice(icv))
                    .map_err(|_| CryptoError::IntegrityCheckFailed)?;
            }};
        }
        match &self.engine {
            Engine::Cbc128(k) => cbc!(aes::Aes128, k),
            Engine::Cbc256(k) => cbc!(aes::Aes256, k),
            #[cfg(not(feature = "rustcrypto-gcm"))]
            Engine::Gcm(k) => {
                // AWS-LC compares the tag in constant time.
                let nonce = aws_lc_rs::aead::Nonce::assume_unique_for_key(self.nonce(iv));
                k.open_in_place_separate_tag(nonce, aws_lc_rs::aead::Aad::from(aad), icv, data)
                    .map_err(|_| CryptoError::IntegrityCheckFailed)?;
            }
            #[cfg(feature = "rustcrypto-gcm")]
            Engine::Gcm128(c) => gcm!(c),
            #[cfg(feature = "rustcrypto-gcm")]
            Engine::Gcm256(c) => gcm!(c),
        }
        Ok(())
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<SaCipher>();
}
