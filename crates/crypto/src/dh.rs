//! Ephemeral Diffie-Hellman for every group AWS accepts plus Curve25519. MODP exponentiation is constant-time
//! (crypto-bigint Montgomery form with a fixed exponent width); ECP 256 and 384 via AWS-LC (aws-lc-rs: about
//! four times faster than the RustCrypto curve crates, which made P-256 the larger part of an IKE responder's CPU
//! per SA; AWS-LC cleanses the key when it frees it), P-521 via RustCrypto; X25519 via x25519-dalek. The private
//! scalar always comes from the caller's [`RandomSource`] (deterministic in tests). Every received public value is
//! validated before use.

use crate::modp_params::*;
use crate::{CryptoError, DhGroup, RandomSource};
use crypto_bigint::modular::{BoxedMontyForm, BoxedMontyParams};
use crypto_bigint::{BoxedUint, Odd};
use zeroize::{Zeroize, Zeroizing};

enum Private {
    Modp {
        x: BoxedUint,
        exp_bits: u32,
    },
    /// ECDH P-256 or P-384 in AWS-LC.
    AwsLc(aws_lc_rs::agreement::PrivateKey),
    P521(p521::SecretKey),
    X25519(x25519_dalek::StaticSecret),
}

impl Drop for Private {
    fn drop(&mut self) {
        // The curve crates' secret keys and StaticSecret zeroize themselves on drop.
        if let Private::Modp { x, .. } = self {
            x.zeroize();
        }
    }
}

/// An ephemeral Diffie-Hellman private key with its public value. Zeroized on drop; `Debug` hides the secret.
pub struct DhSecret {
    group: DhGroup,
    public: Vec<u8>,
    private: Private,
}

impl std::fmt::Debug for DhSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhSecret").field("group", &self.group).finish_non_exhaustive()
    }
}

/// A MODP group's parameters, parsed and converted for Montgomery arithmetic once per process (see [`modp`]).
struct Modp {
    p: Odd<BoxedUint>,
    g: BoxedUint,
    q: Option<BoxedUint>,
    bits: u32,
    /// Montgomery parameters of `p` (computing them costs about as much as parsing the prime).
    params: BoxedMontyParams,
}

/// The group's parameters, parsed from the RFC hex constants the first time a group is used and kept for the
/// life of the process (a constant, like the hex it comes from; nothing secret): no parsing per key exchange.
/// Cached by the group's index in [`DhGroup::ALL`] (the slots of the other groups stay `None`).
fn modp(group: DhGroup) -> Option<&'static Modp> {
    static CACHE: [std::sync::OnceLock<Option<Modp>>; DhGroup::ALL.len()] =
        [const { std::sync::OnceLock::new() }; DhGroup::ALL.len()];
    let i = DhGroup::ALL.iter().position(|g| *g == group)?;
    CACHE[i].get_or_init(|| parse_modp(group)).as_ref()
}

fn parse_modp(group: DhGroup) -> Option<Modp> {
    let (p, g, q) = match group {
        DhGroup::Modp1024 => (G2_P, G2_G, None),
        DhGroup::Modp1536 => (G5_P, G5_G, None),
        DhGroup::Modp2048 => (G14_P, G14_G, None),
        DhGroup::Modp3072 => (G15_P, G15_G, None),
        DhGroup::Modp4096 => (G16_P, G16_G, None),
        DhGroup::Modp6144 => (G17_P, G17_G, None),
        DhGroup::Modp8192 => (G18_P, G18_G, None),
        DhGroup::Modp1024s160 => (G22_P, G22_G, Some(G22_Q)),
        DhGroup::Modp2048s224 => (G23_P, G23_G, Some(G23_Q)),
        DhGroup::Modp2048s256 => (G24_P, G24_G, Some(G24_Q)),
        _ => return None,
    };
    let bits = (group.public_len() * 8) as u32;
    let parse = |h: &str| {
        let bytes = hex::decode(if h.len() % 2 == 1 { format!("0{h}") } else { h.to_string() }).ok()?;
        BoxedUint::from_be_slice(&bytes, bits).ok()
    };
    let p = Odd::new(parse(p)?).into_option()?;
    let params = BoxedMontyParams::new(p.clone());
    Some(Modp { p, g: parse(g)?, q: q.and_then(parse), bits, params })
}

/// Exponent width: enough for twice the group's security level (as strongSwan and NIST SP 800-56A do), or the
/// subgroup order's width for the RFC 5114 groups.
fn exponent_bits(group: DhGroup, m: &Modp) -> u32 {
    if let Some(q) = &m.q {
        return q.bits();
    }
    match group {
        DhGroup::Modp1024 | DhGroup::Modp1536 => 256,
        DhGroup::Modp2048 | DhGroup::Modp3072 => 384,
        _ => 512,
    }
}

pub(crate) fn generate(group: DhGroup, rng: &mut dyn RandomSource) -> DhSecret {
    if let Some(m) = modp(group) {
        let exp_bits = exponent_bits(group, m);
        let mut bytes = Zeroizing::new(vec![0u8; (exp_bits as usize).div_ceil(8)]);
        let x = loop {
            rng.fill_bytes(&mut bytes);
            // Clear excess high bits, so x < 2^exp_bits (and x < q for the RFC 5114 groups, checked below).
            let excess = bytes.len() * 8 - exp_bits as usize;
            bytes[0] &= 0xffu8 >> excess;
            let x = BoxedUint::from_be_slice(&bytes, m.bits).expect("exponent fits the modulus width");
            let ok = match &m.q {
                Some(q) => x < *q && x > BoxedUint::one_with_precision(m.bits),
                None => x > BoxedUint::one_with_precision(m.bits),
            };
            if ok {
                break x;
            }
        };
        let y = BoxedMontyForm::new(m.g.clone(), m.params.clone()).pow_bounded_exp(&x, exp_bits).retrieve();
        return DhSecret { group, public: y.to_be_bytes().into_vec(), private: Private::Modp { x, exp_bits } };
    }
    macro_rules! ec {
        ($crate_:ident, $variant:ident, $len:expr) => {{
            let mut bytes = Zeroizing::new(vec![0u8; $len]);
            let sk = loop {
                rng.fill_bytes(&mut bytes);
                if $len == 66 {
                    // P-521 scalars have 521 bits.
                    bytes[0] &= 0x01;
                }
                if let Ok(sk) = $crate_::SecretKey::from_slice(&bytes) {
                    break sk;
                }
            };
            use $crate_::elliptic_curve::sec1::ToEncodedPoint;
            let point = sk.public_key().to_encoded_point(false);
            DhSecret { group, public: point.as_bytes()[1..].to_vec(), private: Private::$variant(sk) }
        }};
    }
    match group {
        DhGroup::Ecp256 => aws_lc(group, &aws_lc_rs::agreement::ECDH_P256, 32, rng),
        DhGroup::Ecp384 => aws_lc(group, &aws_lc_rs::agreement::ECDH_P384, 48, rng),
        DhGroup::Ecp521 => ec!(p521, P521, 66),
        _ => {
            let mut bytes = Zeroizing::new([0u8; 32]);
            rng.fill_bytes(&mut bytes[..]);
            let sk = x25519_dalek::StaticSecret::from(*bytes);
            let public = x25519_dalek::PublicKey::from(&sk).as_bytes().to_vec();
            DhSecret { group, public, private: Private::X25519(sk) }
        }
    }
}

/// An AWS-LC ECDH key from a scalar drawn from `rng` (a draw outside 1..n-1 is rejected and drawn again, as the
/// RustCrypto path does); the public value is X || Y (RFC 5903 §7: no SEC1 prefix).
fn aws_lc(
    group: DhGroup,
    alg: &'static aws_lc_rs::agreement::Algorithm,
    len: usize,
    rng: &mut dyn RandomSource,
) -> DhSecret {
    let mut bytes = Zeroizing::new(vec![0u8; len]);
    loop {
        rng.fill_bytes(&mut bytes);
        let Ok(sk) = aws_lc_rs::agreement::PrivateKey::from_private_key(alg, &bytes) else { continue };
        let Ok(public) = sk.compute_public_key() else { continue };
        // Uncompressed SEC1: 0x04 || X || Y.
        let public = public.as_ref()[1..].to_vec();
        return DhSecret { group, public, private: Private::AwsLc(sk) };
    }
}

impl DhSecret {
    pub fn group(&self) -> DhGroup {
        self.group
    }
    /// The KE payload's key exchange data, exactly `group().public_len()` octets.
    pub fn public_value(&self) -> &[u8] {
        &self.public
    }
    /// g^ir. Validates the peer's value first (length; MODP: 1 < y < p-1 and, for groups 22-24, y^q = 1;
    /// ECP: a point on the curve, not the identity; Curve25519: a non-zero shared secret).
    /// ECP groups return the x coordinate (RFC 5903 §7); MODP groups the value padded to the prime's length.
    pub fn shared_secret(&self, peer_public: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if peer_public.len() != self.group.public_len() {
            return Err(CryptoError::InvalidPublicValue("wrong length"));
        }
        match &self.private {
            Private::Modp { x, exp_bits } => {
                let m = modp(self.group).ok_or(CryptoError::InvalidPublicValue("group"))?;
                let y = BoxedUint::from_be_slice(peer_public, m.bits)
                    .map_err(|_| CryptoError::InvalidPublicValue("encoding"))?;
                let one = BoxedUint::one_with_precision(m.bits);
                let p_minus_1 = m.p.as_ref().wrapping_sub(&one);
                if y <= one || y >= p_minus_1 {
                    return Err(CryptoError::InvalidPublicValue("out of range (must be 1 < y < p-1)"));
                }
                let ym = BoxedMontyForm::new(y, m.params.clone());
                if let Some(q) = &m.q
                    && ym.pow_bounded_exp(q, q.bits()).retrieve() != one
                {
                    return Err(CryptoError::InvalidPublicValue("not in the prime-order subgroup"));
                }
                // g^ir in Montgomery and in normal form: both cleared once the octets are out.
                let mut zm = ym.pow_bounded_exp(x, *exp_bits);
                let mut z = zm.retrieve();
                let out = Zeroizing::new(z.to_be_bytes().into_vec());
                zm.zeroize();
                z.zeroize();
                Ok(out)
            }
            Private::AwsLc(sk) => {
                let mut sec1 = Vec::with_capacity(peer_public.len() + 1);
                sec1.push(0x04);
                sec1.extend_from_slice(peer_public);
                // AWS-LC checks the point is on the curve (and not the identity) before agreeing.
                let peer = aws_lc_rs::agreement::UnparsedPublicKey::new(sk.algorithm(), &sec1);
                aws_lc_rs::agreement::agree(
                    sk,
                    peer,
                    CryptoError::InvalidPublicValue("not a point on the curve"),
                    |z| Ok(Zeroizing::new(z.to_vec())),
                )
            }
            Private::P521(sk) => ecdh_p521(sk, peer_public),
            Private::X25519(sk) => {
                let mut peer = [0u8; 32];
                peer.copy_from_slice(peer_public);
                let shared = sk.diffie_hellman(&x25519_dalek::PublicKey::from(peer));
                if !shared.was_contributory() {
                    return Err(CryptoError::InvalidPublicValue("low-order point"));
                }
                Ok(Zeroizing::new(shared.as_bytes().to_vec()))
            }
        }
    }
}

macro_rules! ecdh_fn {
    ($name:ident, $crate_:ident) => {
        fn $name(sk: &$crate_::SecretKey, peer: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
            let mut sec1 = Vec::with_capacity(peer.len() + 1);
            sec1.push(0x04);
            sec1.extend_from_slice(peer);
            // from_sec1_bytes checks the point is on the curve and not the identity.
            let pk = $crate_::PublicKey::from_sec1_bytes(&sec1)
                .map_err(|_| CryptoError::InvalidPublicValue("not a point on the curve"))?;
            let shared = $crate_::ecdh::diffie_hellman(sk.to_nonzero_scalar(), pk.as_affine());
            Ok(Zeroizing::new(shared.raw_secret_bytes().to_vec()))
        }
    };
}
ecdh_fn!(ecdh_p521, p521);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SeededRandom;

    fn be(v: &BoxedUint, len: usize) -> Vec<u8> {
        let bytes = v.to_be_bytes();
        bytes[bytes.len() - len..].to_vec()
    }

    /// The exact boundary values for every MODP group: 0, 1, p-1, p (and p+1 where it fits) are rejected; 2 and
    /// p-2 are in range (accepted for groups 2-18, where every value in range is allowed).
    #[test]
    fn modp_boundaries_for_every_group() {
        let mut rng = SeededRandom::new(3);
        for group in DhGroup::ALL {
            let Some(m) = modp(group) else { continue };
            let n = group.public_len();
            let one = BoxedUint::one_with_precision(m.bits);
            let p = m.p.as_ref().clone();
            let a = group.generate(&mut rng);
            for (name, v) in [
                ("0", BoxedUint::zero_with_precision(m.bits)),
                ("1", one.clone()),
                ("p-1", p.wrapping_sub(&one)),
                ("p", p.clone()),
            ] {
                let r = a.shared_secret(&be(&v, n));
                assert_eq!(
                    r,
                    Err(CryptoError::InvalidPublicValue("out of range (must be 1 < y < p-1)")),
                    "{group:?} {name}"
                );
            }
            let p_plus_1 = p.wrapping_add(&one);
            if p_plus_1 > p {
                assert!(a.shared_secret(&be(&p_plus_1, n)).is_err(), "{group:?} p+1");
            }
            let two = one.wrapping_add(&one);
            let p_minus_2 = p.wrapping_sub(&two);
            if m.q.is_none() {
                assert!(a.shared_secret(&be(&two, n)).is_ok(), "{group:?} 2");
                assert!(a.shared_secret(&be(&p_minus_2, n)).is_ok(), "{group:?} p-2");
            } else {
                // p-1 has order 2, so p-2 = -2 is (for these primes) outside the q-subgroup: rejected.
                assert_eq!(
                    a.shared_secret(&be(&p_minus_2, n)),
                    Err(CryptoError::InvalidPublicValue("not in the prime-order subgroup")),
                    "{group:?} p-2"
                );
                // The generator is in the subgroup.
                assert!(a.shared_secret(&be(&m.g, n)).is_ok(), "{group:?} g");
            }
        }
    }

    /// Every MODP group is in the parameter cache (a group missing there would fall through to X25519 in
    /// `generate`), and the cache hands out the same parsed parameters each time.
    #[test]
    fn every_modp_group_is_parsed_once() {
        for group in DhGroup::ALL {
            let is_modp = group.strongswan_name().starts_with("MODP");
            assert_eq!(modp(group).is_some(), is_modp, "{group:?}");
            if let Some(m) = modp(group) {
                assert!(std::ptr::eq(m, modp(group).unwrap()), "{group:?} parsed twice");
                assert_eq!(m.params.modulus(), &m.p, "{group:?}");
            }
        }
    }

    #[test]
    fn modp_private_exponent_width() {
        let mut rng = SeededRandom::new(4);
        for group in DhGroup::ALL {
            let Some(m) = modp(group) else { continue };
            let s = group.generate(&mut rng);
            let Private::Modp { x, exp_bits } = &s.private else { panic!("{group:?}: not a MODP key") };
            assert!(x.bits() <= *exp_bits && x.bits() > exp_bits - 16, "{group:?}: {} bits", x.bits());
            assert!(*exp_bits >= 160, "{group:?}");
            if let Some(q) = &m.q {
                assert!(x < q, "{group:?}: x < q");
            }
        }
    }

    /// The RNG's next octets, fixed: the scalar a key is generated from.
    struct Fixed(Vec<u8>);
    impl RandomSource for Fixed {
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            dest.copy_from_slice(&self.0[..dest.len()]);
        }
    }

    /// P-256 and P-384 (AWS-LC) against an independent implementation (RustCrypto): from the same scalars, the
    /// same public values (X || Y) and the same shared secret (the x coordinate), both ways; a point off the
    /// curve, the wrong length and all zeros are refused.
    #[test]
    fn ecp_matches_rustcrypto() {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let mut rng = SeededRandom::new(7);
        for _ in 0..8 {
            let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
            rng.fill_bytes(&mut a);
            rng.fill_bytes(&mut b);
            let (Ok(ka), Ok(kb)) = (p256::SecretKey::from_slice(&a), p256::SecretKey::from_slice(&b)) else { continue };
            let ours = generate(DhGroup::Ecp256, &mut Fixed(a.to_vec()));
            assert_eq!(ours.public_value(), &ka.public_key().to_encoded_point(false).as_bytes()[1..]);
            let theirs = kb.public_key().to_encoded_point(false);
            let z = p256::ecdh::diffie_hellman(ka.to_nonzero_scalar(), kb.public_key().as_affine());
            assert_eq!(
                ours.shared_secret(&theirs.as_bytes()[1..]).unwrap().as_slice(),
                z.raw_secret_bytes().as_slice()
            );
        }
        let mut c = [0u8; 48];
        rng.fill_bytes(&mut c);
        let kc = p384::SecretKey::from_slice(&c).unwrap();
        let ours = generate(DhGroup::Ecp384, &mut Fixed(c.to_vec()));
        assert_eq!(ours.public_value(), &kc.public_key().to_encoded_point(false).as_bytes()[1..]);
        let peer = generate(DhGroup::Ecp384, &mut rng);
        let z1 = ours.shared_secret(peer.public_value()).unwrap();
        let z2 = peer.shared_secret(ours.public_value()).unwrap();
        assert_eq!(z1, z2);
        assert_eq!(z1.len(), 48);

        let a = generate(DhGroup::Ecp256, &mut rng);
        let mut off = a.public_value().to_vec();
        off[63] ^= 1;
        assert!(a.shared_secret(&off).is_err(), "a point off the curve");
        assert!(a.shared_secret(&[0u8; 64]).is_err(), "zeros");
        assert!(a.shared_secret(&off[..63]).is_err(), "short");
    }
}
