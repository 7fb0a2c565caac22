//! What an unauthenticated IKE_SA_INIT may cost the responder: stateless cookies (RFC 7296 §2.6) with a rotating
//! secret, and a budget of Diffie-Hellman computations for requests nobody has authenticated yet.
//!
//! A cookie proves the initiator receives datagrams at its source address, so a sender spoofing the AWS endpoint's
//! address cannot return one. When cookies are demanded (see `half_open.rs`), a spoofed INIT costs one HMAC and
//! one small unprotected reply, and creates no state.

use super::nat_hash;
use iotrelay_crypto::{Prf, RandomSource};
use std::net::SocketAddr;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// A new cookie secret this often; cookies made with the previous one stay valid until the next rotation, so a
/// cookie is accepted for at least this long and at most twice as long.
pub(super) const COOKIE_ROTATION: Duration = Duration::from_secs(120);
/// Unauthenticated Diffie-Hellman work per tunnel: a burst of this many key exchanges...
pub(super) const DH_BUDGET_BURST: u32 = 8;
/// ...refilled at one per this interval. A legitimate peer needs one per IKE SA it starts; beyond the budget
/// every new IKE_SA_INIT must carry a valid cookie first.
pub(super) const DH_BUDGET_REFILL: Duration = Duration::from_millis(500);

/// The cookie secret (two generations) and its version, which is the cookie's first octet.
pub(super) struct CookieJar {
    secrets: [[u8; 32]; 2],
    version: u8,
    /// When the current secret was drawn; None before the first cookie.
    rotated_at: Option<Duration>,
    /// The other generation holds a secret that was current less than one rotation ago.
    previous_valid: bool,
}

impl Drop for CookieJar {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.secrets.zeroize();
    }
}

impl CookieJar {
    pub(super) fn new() -> CookieJar {
        CookieJar { secrets: [[0; 32]; 2], version: 0, rotated_at: None, previous_valid: false }
    }

    fn rotate_if_due(&mut self, now: Duration, rng: &mut dyn RandomSource) {
        match self.rotated_at {
            None => {
                rng.fill_bytes(&mut self.secrets[usize::from(self.version & 1)]);
                self.rotated_at = Some(now);
            }
            Some(at) if now >= at + COOKIE_ROTATION => {
                // One rotation late or more: the previous secret is too old to honour.
                self.previous_valid = now < at + 2 * COOKIE_ROTATION;
                self.version = self.version.wrapping_add(1);
                rng.fill_bytes(&mut self.secrets[usize::from(self.version & 1)]);
                self.rotated_at = Some(now);
            }
            Some(_) => {}
        }
    }

    /// Cookie = VersionIDofSecret | first 16 octets of HMAC-SHA256(secret, Ni | hash(SPIi, IPi, port)).
    fn compute(&self, version: u8, ni: &[u8], spi_i: u64, remote: SocketAddr) -> Vec<u8> {
        let mac = Prf::HmacSha256.compute(&self.secrets[usize::from(version & 1)], &[ni, &nat_hash(spi_i, 0, remote)]);
        let mut c = Vec::with_capacity(17);
        c.push(version);
        c.extend_from_slice(&mac[..16]);
        c
    }

    /// The cookie to send to an initiator with nonce `ni` and SPI `spi_i` at `remote`.
    pub(super) fn issue(
        &mut self,
        now: Duration,
        rng: &mut dyn RandomSource,
        ni: &[u8],
        spi_i: u64,
        remote: SocketAddr,
    ) -> Vec<u8> {
        self.rotate_if_due(now, rng);
        self.compute(self.version, ni, spi_i, remote)
    }

    /// True when `cookie` was issued by us to this initiator under the current or the previous secret.
    pub(super) fn verify(
        &mut self,
        now: Duration,
        rng: &mut dyn RandomSource,
        cookie: &[u8],
        ni: &[u8],
        spi_i: u64,
        remote: SocketAddr,
    ) -> bool {
        self.rotate_if_due(now, rng);
        let Some(&version) = cookie.first() else { return false };
        let known = version == self.version || (self.previous_valid && version == self.version.wrapping_sub(1));
        known && bool::from(self.compute(version, ni, spi_i, remote).ct_eq(cookie))
    }
}

/// A token bucket of Diffie-Hellman computations for unauthenticated IKE_SA_INIT requests.
pub(super) struct DhBudget {
    tokens: u32,
    refilled_at: Duration,
}

impl DhBudget {
    pub(super) fn new(now: Duration) -> DhBudget {
        DhBudget { tokens: DH_BUDGET_BURST, refilled_at: now }
    }

    fn refill(&mut self, now: Duration) {
        let elapsed = now.saturating_sub(self.refilled_at);
        let earned = (elapsed.as_millis() / DH_BUDGET_REFILL.as_millis()).min(u128::from(DH_BUDGET_BURST)) as u32;
        if earned > 0 {
            self.tokens = (self.tokens + earned).min(DH_BUDGET_BURST);
            self.refilled_at =
                if self.tokens == DH_BUDGET_BURST { now } else { self.refilled_at + DH_BUDGET_REFILL * earned };
        }
    }

    /// True while a computation is available (nothing is taken).
    pub(super) fn available(&mut self, now: Duration) -> bool {
        self.refill(now);
        self.tokens > 0
    }

    /// Takes one computation if there is one.
    pub(super) fn take(&mut self, now: Duration) -> bool {
        self.refill(now);
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iotrelay_crypto::SeededRandom;
    use std::net::{IpAddr, Ipv4Addr};

    const PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)), 500);

    #[test]
    fn cookies_bind_the_initiator_and_expire_after_two_rotations() {
        let mut rng = SeededRandom::new(1);
        let mut jar = CookieJar::new();
        let t0 = Duration::from_secs(10);
        let c = jar.issue(t0, &mut rng, b"nonce-nonce-nonce", 42, PEER);
        assert!(jar.verify(t0, &mut rng, &c, b"nonce-nonce-nonce", 42, PEER));
        // Bound to the nonce, the SPI and the address (a different port is a different initiator).
        assert!(!jar.verify(t0, &mut rng, &c, b"nonce-nonce-nonceX", 42, PEER));
        assert!(!jar.verify(t0, &mut rng, &c, b"nonce-nonce-nonce", 43, PEER));
        let other = SocketAddr::new(PEER.ip(), 4500);
        assert!(!jar.verify(t0, &mut rng, &c, b"nonce-nonce-nonce", 42, other));
        assert!(!jar.verify(t0, &mut rng, &[], b"nonce-nonce-nonce", 42, PEER));
        // Still valid one rotation later (previous secret), not two.
        let t1 = t0 + COOKIE_ROTATION;
        assert!(jar.verify(t1, &mut rng, &c, b"nonce-nonce-nonce", 42, PEER));
        let c1 = jar.issue(t1, &mut rng, b"nonce-nonce-nonce", 42, PEER);
        assert_ne!(c, c1, "a new secret makes new cookies");
        assert!(!jar.verify(t1 + COOKIE_ROTATION, &mut rng, &c, b"nonce-nonce-nonce", 42, PEER));
        assert!(jar.verify(t1 + COOKIE_ROTATION, &mut rng, &c1, b"nonce-nonce-nonce", 42, PEER));
        // After a long quiet period both old generations are gone.
        assert!(!jar.verify(t1 + 10 * COOKIE_ROTATION, &mut rng, &c1, b"nonce-nonce-nonce", 42, PEER));
    }

    #[test]
    fn dh_budget_allows_a_burst_then_the_refill_rate() {
        let t0 = Duration::from_secs(100);
        let mut b = DhBudget::new(t0);
        for _ in 0..DH_BUDGET_BURST {
            assert!(b.take(t0));
        }
        assert!(!b.take(t0) && !b.available(t0));
        assert!(!b.take(t0 + DH_BUDGET_REFILL / 2));
        assert!(b.take(t0 + DH_BUDGET_REFILL));
        assert!(!b.take(t0 + DH_BUDGET_REFILL));
        // Ten seconds at the refill rate: 20 earned, capped at the burst.
        let later = t0 + Duration::from_secs(10);
        let n = (0..100).take_while(|_| b.take(later)).count();
        assert_eq!(n as u32, DH_BUDGET_BURST);
    }
}
