//! The state of the tunnel's IKE SA and CHILD_SA, and their constructors. Each state carries only what exists in
//! it: [`CurrentIke`] is nothing, our IKE_SA_INIT in flight ([`InitExchange`]: the DH secret, nonce, cookie and
//! retries, no keys), or an [`IkeSa`], which always has its suite and keys; an [`IkeState`] holds IKE_SA_INIT's
//! octets and nonces ([`Handshake`]) only until our IKE_AUTH is answered, and times ([`Lifetime`]) once
//! established. A responder's SA between IKE_SA_INIT and the peer's verified IKE_AUTH is a [`HalfOpen`]
//! (`IkeSa<Handshake>`): its state is the handshake and nothing else, it lives only in the half-open table
//! (`half_open.rs`), and only [`HalfOpen::promote`] turns it into an established [`IkeSa`].
//! How the tunnel's current IKE SA changes is `lifecycle.rs`.

use super::*;

/// The negotiated keys of an IKE SA.
pub(super) struct IkeKeys {
    pub(super) sk_d: Zeroizing<Vec<u8>>,
    pub(super) sk_pi: Zeroizing<Vec<u8>>,
    pub(super) sk_pr: Zeroizing<Vec<u8>>,
    /// Protects what we send / what we receive.
    pub(super) out: SaCipher,
    pub(super) inn: SaCipher,
}

/// The tunnel's current IKE SA, or what stands for it while our IKE_SA_INIT is unanswered (no keys exist yet).
#[derive(Default)]
pub(super) enum CurrentIke {
    #[default]
    None,
    /// Initiator: our IKE_SA_INIT is in flight.
    Initiating(Box<InitExchange>),
    /// Keys derived: IKE_AUTH in flight, or established.
    Sa(Box<IkeSa>),
}

impl CurrentIke {
    pub(super) fn is_none(&self) -> bool {
        matches!(self, CurrentIke::None)
    }
    /// The IKE SA, once it has keys.
    pub(super) fn sa(&self) -> Option<&IkeSa> {
        match self {
            CurrentIke::Sa(sa) => Some(&**sa),
            _ => None,
        }
    }
    pub(super) fn sa_mut(&mut self) -> Option<&mut IkeSa> {
        match self {
            CurrentIke::Sa(sa) => Some(&mut **sa),
            _ => None,
        }
    }
    /// The IKE SA if it is established.
    pub(super) fn established(&self) -> Option<&IkeSa> {
        self.sa().filter(|s| s.is_established())
    }
    /// Takes the IKE SA (if any) out; whatever was there, nothing is left.
    pub(super) fn take_sa(&mut self) -> Option<IkeSa> {
        match std::mem::take(self) {
            CurrentIke::Sa(sa) => Some(*sa),
            _ => None,
        }
    }
    /// When the request in flight (our IKE_SA_INIT, or a request on the IKE SA) is due to be sent again.
    pub(super) fn retransmit_at(&self) -> Option<Duration> {
        match self {
            CurrentIke::None => None,
            CurrentIke::Initiating(ex) => Some(ex.sent.next_at),
            CurrentIke::Sa(sa) => sa.pending.as_ref().map(|p| p.next_at),
        }
    }
}

/// What our IKE_SA_INIT request offers (RFC 7296 §1.2): kept until the responder's answer, which gives the keys.
pub(super) struct InitOffer {
    pub(super) spi_i: u64,
    /// Our key exchange: replaced when the responder asks for another group (INVALID_KE_PAYLOAD).
    pub(super) dh: DhSecret,
    pub(super) ni: Vec<u8>,
    /// The responder's COOKIE we return (RFC 7296 §2.6).
    pub(super) cookie: Option<Vec<u8>>,
    /// SPI chosen for the first CHILD_SA (offered in IKE_AUTH).
    pub(super) first_child_spi: u32,
}

/// Initiator: our IKE_SA_INIT in flight.
pub(super) struct InitExchange {
    pub(super) offer: InitOffer,
    /// IKE_SA_INIT resent on COOKIE / INVALID_KE_PAYLOAD answers so far.
    pub(super) retries: u8,
    /// The request as sent (one datagram: IKE_SA_INIT is never fragmented), with its retransmission state.
    pub(super) sent: Pending<()>,
}

/// Where an IKE SA the tunnel may hold as its current one stands, with what exists only in that state. (A
/// responder's SA waiting for the peer's IKE_AUTH is not one: it is a [`HalfOpen`].)
pub(super) enum IkeState {
    /// Initiator: IKE_AUTH sent.
    AuthSent {
        handshake: Handshake,
        /// SPI chosen for the first CHILD_SA (offered in our IKE_AUTH).
        first_child_spi: u32,
    },
    Established(Lifetime),
}

/// What IKE_AUTH needs from IKE_SA_INIT: each side's AUTH signs its IKE_SA_INIT message and the other's nonce
/// (RFC 7296 §2.15), and the first CHILD_SA's keys use both nonces (§2.17). Dropped once IKE_AUTH is done.
pub(super) struct Handshake {
    pub(super) ni: Vec<u8>,
    pub(super) nr: Vec<u8>,
    /// The IKE_SA_INIT request and response octets.
    pub(super) init_request: Vec<u8>,
    pub(super) init_response: Vec<u8>,
}

/// The times of an established IKE SA.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lifetime {
    pub(super) established_at: Duration,
    pub(super) rekey_at: Duration,
}

/// An IKE SA with keys: from the answer to IKE_SA_INIT (either side) or from a rekey exchange. `S` is its state:
/// an [`IkeState`] for the SAs the tunnel holds as current, retiring or colliding, a [`Handshake`] for a
/// [`HalfOpen`] one. What protects and orders messages (SPIs, keys, message IDs, fragments) is the same for both.
pub(super) struct IkeSa<S = IkeState> {
    /// We initiated this IKE SA (IKE_SA_INIT or the CREATE_CHILD_SA that rekeyed it).
    pub(super) initiator: bool,
    pub(super) spi_i: u64,
    pub(super) spi_r: u64,
    pub(super) state: S,
    pub(super) suite: IkeSuite,
    pub(super) keys: IkeKeys,
    pub(super) my_next_id: u32,
    pub(super) peer_next_id: u32,
    pub(super) pending: Option<Pending>,
    /// The last response we sent (its datagrams), by message ID, for retransmitted requests.
    pub(super) last_response: Option<(u32, Vec<Vec<u8>>)>,
    /// The peer announced IKEV2_FRAGMENTATION_SUPPORTED (RFC 7383): large messages go out as SKF fragments.
    pub(super) peer_fragmentation: bool,
    /// Fragments of the peer's requests and of its responses being reassembled (message IDs are per direction).
    pub(super) frag_requests: Reassembler,
    pub(super) frag_responses: Reassembler,
    /// A NAT rewrites our address: the peer's NAT_DETECTION_DESTINATION_IP does not hash our address and port
    /// (RFC 7296 §2.23). Learned in IKE_SA_INIT; a rekeyed SA keeps it.
    pub(super) nat_detected: bool,
}

/// The first CHILD_SA of an IKE SA, as IKE_AUTH negotiated it.
pub(super) struct FirstChild {
    pub(super) inbound_spi: u32,
    pub(super) outbound_spi: u32,
    pub(super) suite: EspSuite,
    pub(super) local_ts: Vec<Ipv4Cidr>,
    pub(super) remote_ts: Vec<Ipv4Cidr>,
}

/// What a key exchange settled for a new IKE SA: its SPIs, suite and keys.
pub(super) struct NewIkeSa {
    pub(super) spi_i: u64,
    pub(super) spi_r: u64,
    pub(super) suite: IkeSuite,
    pub(super) keys: IkeKeys,
}

/// A responder's half-open IKE SA: the peer's IKE_SA_INIT answered (keys derived), its IKE_AUTH (message 1)
/// awaited. It has no other state than what IKE_AUTH needs from IKE_SA_INIT.
pub(super) type HalfOpen = IkeSa<Handshake>;

impl<S> IkeSa<S> {
    /// An SA with these keys, in `state`, with nothing in flight.
    fn keyed(initiator: bool, new: NewIkeSa, state: S) -> IkeSa<S> {
        IkeSa {
            initiator,
            spi_i: new.spi_i,
            spi_r: new.spi_r,
            state,
            suite: new.suite,
            keys: new.keys,
            my_next_id: 0,
            peer_next_id: 0,
            pending: None,
            last_response: None,
            peer_fragmentation: false,
            frag_requests: Reassembler::new(),
            frag_responses: Reassembler::new(),
            nat_detected: false,
        }
    }

    pub(super) fn local_spi(&self) -> u64 {
        if self.initiator { self.spi_i } else { self.spi_r }
    }
    pub(super) fn remote_spi(&self) -> u64 {
        if self.initiator { self.spi_r } else { self.spi_i }
    }
}

impl IkeSa {
    /// Initiator: the responder answered our IKE_SA_INIT `offer` (keys derived, `init`: our request and its
    /// response, `nr` its nonce); our IKE_AUTH (message 1) goes out next.
    pub(super) fn authenticating(
        new: NewIkeSa,
        offer: InitOffer,
        nr: Vec<u8>,
        init: (Vec<u8>, Vec<u8>),
        peer_fragmentation: bool,
        nat_detected: bool,
    ) -> IkeSa {
        let (init_request, init_response) = init;
        let handshake = Handshake { ni: offer.ni, nr, init_request, init_response };
        let state = IkeState::AuthSent { handshake, first_child_spi: offer.first_child_spi };
        IkeSa { my_next_id: 1, peer_fragmentation, nat_detected, ..IkeSa::keyed(true, new, state) }
    }

    /// From a rekey exchange (keys derived; we initiated that exchange or not), established but not installed.
    /// What IKE_SA_INIT negotiated (fragmentation, NAT) carries over from `parent`, as strongSwan does.
    pub(super) fn rekeyed(initiator: bool, new: NewIkeSa, parent: Option<&IkeSa>, lifetime: Lifetime) -> IkeSa {
        IkeSa {
            peer_fragmentation: parent.is_some_and(|s| s.peer_fragmentation),
            nat_detected: parent.is_some_and(|s| s.nat_detected),
            ..IkeSa::keyed(initiator, new, IkeState::Established(lifetime))
        }
    }

    /// Our IKE_AUTH is answered: the SA is established with `lifetime`. Returns what IKE_SA_INIT left for IKE_AUTH
    /// (the nonces for the first CHILD_SA's keys); None, and no change, when the SA was already established.
    pub(super) fn establish(&mut self, lifetime: Lifetime) -> Option<Handshake> {
        match std::mem::replace(&mut self.state, IkeState::Established(lifetime)) {
            IkeState::AuthSent { handshake, .. } => Some(handshake),
            IkeState::Established(before) => {
                self.state = IkeState::Established(before);
                None
            }
        }
    }

    /// The SA's times, once established.
    pub(super) fn lifetime(&self) -> Option<&Lifetime> {
        match &self.state {
            IkeState::Established(l) => Some(l),
            _ => None,
        }
    }
    pub(super) fn lifetime_mut(&mut self) -> Option<&mut Lifetime> {
        match &mut self.state {
            IkeState::Established(l) => Some(l),
            _ => None,
        }
    }

    pub(super) fn is_established(&self) -> bool {
        self.lifetime().is_some()
    }
}

impl HalfOpen {
    /// Responder: the peer's IKE_SA_INIT answered with these keys. `init`: the request and our response (AUTH
    /// signs them); `nonces`: (Ni, Nr).
    pub(super) fn new(
        new: NewIkeSa,
        nonces: (Vec<u8>, Vec<u8>),
        init: (Vec<u8>, Vec<u8>),
        peer_fragmentation: bool,
        nat_detected: bool,
    ) -> HalfOpen {
        let ((ni, nr), (init_request, init_response)) = (nonces, init);
        let handshake = Handshake { ni, nr, init_request, init_response };
        IkeSa { peer_next_id: 1, peer_fragmentation, nat_detected, ..IkeSa::keyed(false, new, handshake) }
    }

    /// The peer's AUTH verified and IKE_AUTH answered: the SA is established with `lifetime`, and the handshake
    /// (the nonces for the first CHILD_SA's keys) is handed back.
    pub(super) fn promote(self, lifetime: Lifetime) -> (IkeSa, Handshake) {
        // Every field but the state moves across by name (a struct update cannot change the state's type).
        let sa = IkeSa {
            initiator: self.initiator,
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            state: IkeState::Established(lifetime),
            suite: self.suite,
            keys: self.keys,
            my_next_id: self.my_next_id,
            peer_next_id: self.peer_next_id,
            pending: self.pending,
            last_response: self.last_response,
            peer_fragmentation: self.peer_fragmentation,
            frag_requests: self.frag_requests,
            frag_responses: self.frag_responses,
            nat_detected: self.nat_detected,
        };
        (sa, self.state)
    }
}

pub(super) struct Child {
    pub(super) inbound_spi: u32,
    pub(super) outbound_spi: u32,
    pub(super) suite: EspSuite,
    pub(super) established_at: Duration,
    pub(super) rekey_at: Duration,
    pub(super) local_ts: Vec<Ipv4Cidr>,
    pub(super) remote_ts: Vec<Ipv4Cidr>,
}

pub(super) struct OldInbound {
    pub(super) inbound_spi: u32,
    pub(super) outbound_spi: u32,
    pub(super) delete_at: Duration,
    /// Our DELETE for it is in flight: it still accepts inbound packets until the peer answers.
    pub(super) delete_sent: bool,
}

impl OldInbound {
    pub(super) fn new(inbound_spi: u32, outbound_spi: u32, delete_at: Duration) -> Self {
        OldInbound { inbound_spi, outbound_spi, delete_at, delete_sent: false }
    }
}

/// An IKE SA that no longer carries anything: replaced by a rekey, or the redundant result of a rekey collision.
/// Kept to send or answer its DELETE, then forgotten.
pub(super) struct Retiring {
    pub(super) sa: IkeSa,
    pub(super) forget_at: Duration,
}

impl Retiring {
    /// `sa` retires `now`: forgotten [`RETIRED_IKE_LINGER`] later unless a request on it is still in flight.
    pub(super) fn new(sa: IkeSa, now: Duration) -> Retiring {
        Retiring { sa, forget_at: now + RETIRED_IKE_LINGER }
    }
}
