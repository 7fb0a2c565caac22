//! [`SaCipher`]: AES-CBC + HMAC or AES-GCM-16, keys expanded once, no heap allocation per packet.

use crate::{CryptoError, Encr, Integ};
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
use aes_gcm::KeyInit;
use aes_gcm::{AeadInPlace, Aes128Gcm, Aes256Gcm, Nonce, Tag};
use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

enum Engine {
    // The key is kept (zeroized on drop) and the CBC mode state is set up per call from it: the cbc crate's
    // encryptor/decryptor own their block cipher, and AES key expansion (AES-NI) costs less than the HMAC.
    Cbc128([u8; 16]),
    Cbc256([u8; 32]),
    Gcm128(Box<Aes128Gcm>),
    Gcm256(Box<Aes256Gcm>),
}

impl Drop for Engine {
    fn drop(&mut self) {
        match self {
            Engine::Cbc128(k) => k.zeroize(),
            Engine::Cbc256(k) => k.zeroize(),
            // aes-gcm's `zeroize` feature clears the expanded keys on drop.
            Engine::Gcm128(_) | Engine::Gcm256(_) => {}
        }
    }
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

/// An SA's cipher state; see the crate docs for the exact construction.
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
            Encr::AesCbc128 => {
                Engine::Cbc128(encr_key.try_into().map_err(|_| CryptoError::InvalidKeyLength("AES_CBC-128"))?)
            }
            Encr::AesCbc256 => {
                Engine::Cbc256(encr_key.try_into().map_err(|_| CryptoError::InvalidKeyLength("AES_CBC-256"))?)
            }
            Encr::AesGcm16_128 => {
                salt.copy_from_slice(&encr_key[key_len..]);
                Engine::Gcm128(Box::new(
                    Aes128Gcm::new_from_slice(&encr_key[..key_len])
                        .map_err(|_| CryptoError::InvalidKeyLength("AES_GCM_16-128"))?,
                ))
            }
            Encr::AesGcm16_256 => {
                salt.copy_from_slice(&encr_key[key_len..]);
                Engine::Gcm256(Box::new(
                    Aes256Gcm::new_from_slice(&encr_key[..key_len])
                        .map_err(|_| CryptoError::InvalidKeyLength("AES_GCM_16-256"))?,
                ))
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
                cbc::Encryptor::<$aes>::new_from_slices($key, iv)
                    .map_err(|_| CryptoError::InvalidLength("IV"))?
                    .encrypt_padded_mut::<NoPadding>(data, len)
                    .map_err(|_| CryptoError::InvalidLength("CBC data"))?;
            }};
        }
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
            Engine::Gcm128(c) => gcm!(c),
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
                cbc::Decryptor::<$aes>::new_from_slices($key, iv)
                    .map_err(|_| CryptoError::InvalidLength("IV"))?
                    .decrypt_padded_mut::<NoPadding>(data)
                    .map_err(|_| CryptoError::InvalidLength("CBC data"))?;
            }};
        }
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
            Engine::Gcm128(c) => gcm!(c),
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
