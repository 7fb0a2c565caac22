//! Rekey collisions (RFC 7296 §2.8.1 for CHILD_SAs, §2.8.2 for IKE SAs) and the IKE SAs that linger after a rekey:
//! the state of a collision until our own exchange completes, the nonce rule that decides which new SA survives,
//! and the messages that arrive on a retiring or colliding IKE SA.

use super::*;

/// How long a replaced (or redundant) IKE SA is kept to answer the peer's DELETE on it.
pub(super) const RETIRED_IKE_LINGER: Duration = Duration::from_secs(60);

/// A CHILD_SA rekey collision (RFC 7296 §2.8.1): the peer's rekey request arrived while ours was in flight. We
/// answered it (its SA is our current CHILD_SA); which of the two new SAs survives is known when our own
/// exchange completes.
pub(super) struct ChildCollision {
    /// Nonces of the peer's exchange.
    pub(super) peer_ni: Vec<u8>,
    pub(super) our_nr: Vec<u8>,
    /// SPIs of the SA the peer's exchange created.
    pub(super) inbound_spi: u32,
    pub(super) outbound_spi: u32,
    /// Inbound SPI of the SA both exchanges replace.
    pub(super) old_inbound_spi: u32,
    /// The peer already deleted its SA (it resolved the collision first, in favour of ours).
    pub(super) deleted_by_peer: bool,
}

/// Our last completed CHILD_SA rekey, while the SA it replaced still exists: a peer rekey of that SA which crossed
/// ours is a collision we answer and resolve at once (we hold all four nonces).
pub(super) struct RecentRekey {
    pub(super) ni: Vec<u8>,
    pub(super) nr: Vec<u8>,
    pub(super) replaced_inbound_spi: u32,
}

/// An IKE SA rekey collision (RFC 7296 §2.8.2): the IKE SA the peer's exchange created, held until ours completes.
pub(super) struct IkeCollision {
    pub(super) sa: IkeSa,
    pub(super) peer_ni: Vec<u8>,
    pub(super) our_nr: Vec<u8>,
    pub(super) deleted_by_peer: bool,
}

/// RFC 7296 §2.8.1: of two colliding rekeys, the SA created with the lowest of the four nonces is redundant and
/// is closed by the endpoint that created it. Nonces compare octet by octet; a nonce that is a prefix of another is
/// the lower one (exactly the order of byte slices). True when the first exchange's SA is the redundant one.
pub(super) fn first_exchange_is_redundant(first_i: &[u8], first_r: &[u8], second_i: &[u8], second_r: &[u8]) -> bool {
    first_i.min(first_r) < second_i.min(second_r)
}

impl Tunnel {
    /// A message on a retiring IKE SA: the answer to our DELETE on it, or the peer's DELETE (or a late request).
    pub(super) fn handle_retiring(&mut self, i: usize, req: Request, payloads: Vec<Payload>) {
        if req.h.is_response() {
            // The answer to our DELETE of this IKE SA: it is gone on both sides.
            self.retiring.remove(i);
            return;
        }
        // A DELETE is answered with nothing. A rekey of this SA crossed ours, which completed first: the peer
        // waits (§2.25); with a collision on its side it keeps our new SA.
        let answer = if req.h.exchange == ExchangeType::CREATE_CHILD_SA {
            vec![notify(NotifyType::TEMPORARY_FAILURE, vec![])]
        } else {
            vec![]
        };
        self.respond_on(Which::Retiring(i), req, answer);
        if deletes_ike(&payloads) {
            self.retiring.remove(i);
        }
    }

    /// A message on the IKE SA the peer's colliding rekey created, before our own rekey completed. A DELETE means
    /// the peer resolved the collision first and closes its SA; anything else waits (the peer retransmits, and by
    /// then the SA is either current or gone).
    pub(super) fn handle_collision_sa(&mut self, req: Request, payloads: Vec<Payload>) {
        if req.h.is_response() || !deletes_ike(&payloads) {
            return;
        }
        let Some(c) = self.ike_collision.as_mut() else { return };
        c.deleted_by_peer = true;
        self.respond_on(Which::Collision, req, vec![]);
    }
}
