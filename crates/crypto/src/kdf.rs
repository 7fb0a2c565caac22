//! IKEv2 key derivation: RFC 7296 §2.13 (prf+), §2.14 (IKE SA keys), §2.17 (CHILD_SA keys), §2.18 (IKE SA rekey),
//! §2.15 (PSK authentication). All outputs zeroize on drop.

use crate::{Encr, Integ, Prf};
use zeroize::Zeroizing;

/// SKEYSEED = prf(Ni | Nr, g^ir) (§2.14).
pub fn skeyseed(prf: Prf, ni: &[u8], nr: &[u8], g_ir: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut key = Zeroizing::new(Vec::with_capacity(ni.len() + nr.len()));
    key.extend_from_slice(ni);
    key.extend_from_slice(nr);
    prf.compute(&key, &[g_ir])
}

/// SKEYSEED for a rekeyed IKE SA = prf(SK_d (old), g^ir (new) | Ni | Nr) (§2.18), with the old SA's PRF.
pub fn skeyseed_rekey(old_prf: Prf, old_sk_d: &[u8], g_ir: &[u8], ni: &[u8], nr: &[u8]) -> Zeroizing<Vec<u8>> {
    old_prf.compute(old_sk_d, &[g_ir, ni, nr])
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
    let mut seed = Vec::with_capacity(ni.len() + nr.len() + 16);
    seed.extend_from_slice(ni);
    seed.extend_from_slice(nr);
    seed.extend_from_slice(&spi_i.to_be_bytes());
    seed.extend_from_slice(&spi_r.to_be_bytes());
    let p = prf.output_len();
    let a = integ.map_or(0, |i| i.key_len());
    let e = encr.key_material_len();
    let keymat = prf.prf_plus(skeyseed, &seed, p + 2 * a + 2 * e + 2 * p);
    let mut rest: &[u8] = &keymat;
    let mut take = |n: usize| {
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Zeroizing::new(head.to_vec())
    };
    IkeSaKeys {
        sk_d: take(p),
        sk_ai: take(a),
        sk_ar: take(a),
        sk_ei: take(e),
        sk_er: take(e),
        sk_pi: take(p),
        sk_pr: take(p),
    }
}

/// One direction's ESP keys. `Debug` does not print them.
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
    let mut seed = Zeroizing::new(Vec::new());
    if let Some(g) = g_ir {
        seed.extend_from_slice(g);
    }
    seed.extend_from_slice(ni);
    seed.extend_from_slice(nr);
    let e = encr.key_material_len();
    let a = integ.map_or(0, |i| i.key_len());
    let keymat = prf.prf_plus(sk_d, &seed, 2 * (e + a));
    let part = |from: usize, len: usize| Zeroizing::new(keymat[from..from + len].to_vec());
    ChildSaKeys {
        initiator_to_responder: KeyMaterial { encr_key: part(0, e), integ_key: part(e, a) },
        responder_to_initiator: KeyMaterial { encr_key: part(e + a, e), integ_key: part(2 * e + a, a) },
    }
}

/// AUTH for a shared key (§2.15): prf(prf(Shared Secret, "Key Pad for IKEv2"), signed_octets).
/// `signed_octets` = RealMessage | Nonce(peer) | prf(SK_p, ID') assembled by the caller.
pub fn psk_auth(prf: Prf, psk: &[u8], signed_octets: &[u8]) -> Zeroizing<Vec<u8>> {
    let pad = prf.compute(psk, &[b"Key Pad for IKEv2"]);
    prf.compute(&pad, &[signed_octets])
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyMaterial(<redacted>)")
    }
}
