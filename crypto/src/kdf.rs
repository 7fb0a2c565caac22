//! IKEv2 key derivation: RFC 7296 §2.13 (prf+), §2.14 (IKE SA keys), §2.17 (CHILD_SA keys), §2.18 (IKE SA rekey),
//! §2.15 (PSK authentication). All outputs zeroize on drop.

use crate::{Encr, Integ, Prf};
use zeroize::Zeroizing;

/// SKEYSEED = prf(Ni | Nr, g^ir) (§2.14).
pub fn skeyseed(prf: Prf, ni: &[u8], nr: &[u8], g_ir: &[u8]) -> Zeroizing<Vec<u8>> {
    let _ = (prf, ni, nr, g_ir);
    todo!()
}

/// SKEYSEED for a rekeyed IKE SA = prf(SK_d (old), g^ir (new) | Ni | Nr) (§2.18), with the old SA's PRF.
pub fn skeyseed_rekey(old_prf: Prf, old_sk_d: &[u8], g_ir: &[u8], ni: &[u8], nr: &[u8]) -> Zeroizing<Vec<u8>> {
    let _ = (old_prf, old_sk_d, g_ir, ni, nr);
    todo!()
}

/// The seven IKE SA keys (§2.14). SK_e* include the GCM salt where the suite has one.
pub struct IkeSaKeys {
    pub sk_d: Zeroizing<Vec<u8>>,
    pub sk_ai: Zeroizing<Vec<u8>>,
    pub sk_ar: Zeroizing<Vec<u8>>,
    pub sk_ei: Zeroizing<Vec<u8>>,
    pub sk_er: Zeroizing<Vec<u8>>,
    pub sk_pi: Zeroizing<Vec<u8>>,
    pub sk_pr: Zeroizing<Vec<u8>>,
}

/// {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr).
/// `integ` is `None` for AEAD suites (SK_a* are then empty).
#[allow(clippy::too_many_arguments)]
pub fn ike_sa_keys(
    prf: Prf,
    skeyseed: &[u8],
    ni: &[u8],
    nr: &[u8],
    spi_i: u64,
    spi_r: u64,
    encr: Encr,
    integ: Option<Integ>,
) -> IkeSaKeys {
    let _ = (prf, skeyseed, ni, nr, spi_i, spi_r, encr, integ);
    todo!()
}

/// One direction's ESP keys.
pub struct KeyMaterial {
    /// Encryption key (GCM: key then 4-octet salt).
    pub encr_key: Zeroizing<Vec<u8>>,
    /// Integrity key; empty for AEAD suites.
    pub integ_key: Zeroizing<Vec<u8>>,
}

/// CHILD_SA keys (§2.17): KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr), taken in the order
/// initiator-to-responder encryption, integrity, then responder-to-initiator encryption, integrity.
pub struct ChildSaKeys {
    pub initiator_to_responder: KeyMaterial,
    pub responder_to_initiator: KeyMaterial,
}

pub fn child_sa_keys(
    prf: Prf,
    sk_d: &[u8],
    g_ir: Option<&[u8]>,
    ni: &[u8],
    nr: &[u8],
    encr: Encr,
    integ: Option<Integ>,
) -> ChildSaKeys {
    let _ = (prf, sk_d, g_ir, ni, nr, encr, integ);
    todo!()
}

/// AUTH for a shared key (§2.15): prf(prf(Shared Secret, "Key Pad for IKEv2"), signed_octets).
/// `signed_octets` = RealMessage | Nonce(peer) | prf(SK_p, ID') assembled by the caller.
pub fn psk_auth(prf: Prf, psk: &[u8], signed_octets: &[u8]) -> Zeroizing<Vec<u8>> {
    let _ = (prf, psk, signed_octets);
    todo!()
}
