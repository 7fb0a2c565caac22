//! The state of one IKE SA (keys, nonces, message IDs, the request in flight, fragments being reassembled) and of
//! the CHILD_SA, and the steps that establish them.

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IkeState {
    /// Initiator: IKE_SA_INIT sent.
    InitSent,
    /// Initiator: IKE_AUTH sent.
    AuthSent,
    /// Responder: IKE_SA_INIT answered, waiting for IKE_AUTH.
    RespInitDone,
    Established,
}

pub(super) struct IkeSa {
    /// We initiated this IKE SA (IKE_SA_INIT or the CREATE_CHILD_SA that rekeyed it).
    pub(super) initiator: bool,
    pub(super) spi_i: u64,
    pub(super) spi_r: u64,
    pub(super) state: IkeState,
    pub(super) suite: Option<IkeSuite>,
    pub(super) keys: Option<IkeKeys>,
    pub(super) dh: Option<DhSecret>,
    pub(super) ni: Vec<u8>,
    pub(super) nr: Vec<u8>,
    /// The IKE_SA_INIT request and response octets (signed by AUTH).
    pub(super) init_request: Vec<u8>,
    pub(super) init_response: Vec<u8>,
    pub(super) cookie: Option<Vec<u8>>,
    /// Initiator: SPI chosen for the first CHILD_SA.
    pub(super) first_child_spi: u32,
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
    pub(super) created_at: Duration,
    pub(super) established_at: Duration,
    pub(super) rekey_at: Duration,
    /// The peer sent INITIAL_CONTACT.
    pub(super) peer_initial_contact: bool,
    /// Initiator: IKE_SA_INIT resent on COOKIE / INVALID_KE_PAYLOAD answers so far.
    pub(super) init_retries: u8,
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

impl IkeSa {
    /// An SA with no keys, no nonces and nothing in flight.
    pub(super) fn blank(initiator: bool, spi_i: u64, state: IkeState, now: Duration) -> IkeSa {
        IkeSa {
            initiator,
            spi_i,
            spi_r: 0,
            state,
            suite: None,
            keys: None,
            dh: None,
            ni: Vec::new(),
            nr: Vec::new(),
            init_request: Vec::new(),
            init_response: Vec::new(),
            cookie: None,
            first_child_spi: 0,
            my_next_id: 0,
            peer_next_id: 0,
            pending: None,
            last_response: None,
            peer_fragmentation: false,
            frag_requests: Reassembler::new(),
            frag_responses: Reassembler::new(),
            created_at: now,
            established_at: now,
            rekey_at: now,
            peer_initial_contact: false,
            init_retries: 0,
            nat_detected: false,
        }
    }

    /// Initiator: our IKE_SA_INIT is about to go out with this key exchange, nonce, and SPI for the first CHILD_SA.
    pub(super) fn initiator(spi_i: u64, dh: DhSecret, ni: Vec<u8>, first_child_spi: u32, now: Duration) -> IkeSa {
        IkeSa { dh: Some(dh), ni, first_child_spi, ..IkeSa::blank(true, spi_i, IkeState::InitSent, now) }
    }

    /// Responder: the peer's IKE_SA_INIT answered (keys derived), its IKE_AUTH (message 1) awaited. `init`: the
    /// request and our response (AUTH signs them); `nonces`: (Ni, Nr).
    pub(super) fn half_open(
        new: NewIkeSa,
        nonces: (Vec<u8>, Vec<u8>),
        init: (Vec<u8>, Vec<u8>),
        peer_fragmentation: bool,
        nat_detected: bool,
        now: Duration,
    ) -> IkeSa {
        let ((ni, nr), (init_request, init_response)) = (nonces, init);
        IkeSa {
            spi_r: new.spi_r,
            suite: Some(new.suite),
            keys: Some(new.keys),
            ni,
            nr,
            init_request,
            init_response,
            peer_next_id: 1,
            peer_fragmentation,
            nat_detected,
            ..IkeSa::blank(false, new.spi_i, IkeState::RespInitDone, now)
        }
    }

    /// From a rekey exchange (keys derived; we initiated that exchange or not), established but not installed.
    /// What IKE_SA_INIT negotiated (fragmentation, NAT) carries over from `parent`, as strongSwan does.
    pub(super) fn rekeyed(
        initiator: bool,
        new: NewIkeSa,
        parent: Option<&IkeSa>,
        rekey_at: Duration,
        now: Duration,
    ) -> IkeSa {
        IkeSa {
            spi_r: new.spi_r,
            suite: Some(new.suite),
            keys: Some(new.keys),
            peer_fragmentation: parent.is_some_and(|s| s.peer_fragmentation),
            nat_detected: parent.is_some_and(|s| s.nat_detected),
            rekey_at,
            ..IkeSa::blank(initiator, new.spi_i, IkeState::Established, now)
        }
    }

    pub(super) fn local_spi(&self) -> u64 {
        if self.initiator { self.spi_i } else { self.spi_r }
    }
    pub(super) fn remote_spi(&self) -> u64 {
        if self.initiator { self.spi_r } else { self.spi_i }
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

impl Tunnel {
    /// Ends the current IKE SA (and CHILD_SA) with `reason`, and plans a reconnect when we are the initiator.
    pub(super) fn fail(&mut self, now: Duration, reason: DownReason, message: String) {
        let was_up = self.ike.as_ref().is_some_and(|s| s.state == IkeState::Established);
        self.ike = None;
        self.down(now, reason, message, was_up);
    }

    /// Closes the current IKE SA and `also` (IKE SAs the peer holds for us that we will not use) with a DELETE
    /// protected by each one's own keys, then ends the tunnel's SAs as [`Tunnel::fail`] does (reconnecting at
    /// once when it was up and `reason` is not permanent). Deleting an IKE SA deletes every CHILD_SA under it
    /// (RFC 7296 §1.4.1), so the peer keeps nothing of what we abandon, whichever SA it moved its CHILD_SAs to.
    /// The DELETEs stay tracked (retransmitted) as retiring SAs.
    pub(super) fn close_and_restart(&mut self, now: Duration, reason: DownReason, message: String, also: Vec<IkeSa>) {
        let current = self.ike.take();
        let was_up = current.as_ref().is_some_and(|s| s.state == IkeState::Established);
        let mut closing = also;
        closing.extend(current.filter(|s| s.state == IkeState::Established));
        for sa in closing.iter_mut().filter(|s| s.keys.is_some()) {
            sa.pending = None;
            self.send_delete_ike(now, sa);
        }
        self.down(now, reason, message, was_up);
        for sa in closing.into_iter().filter(|s| s.pending.is_some()) {
            self.retiring.push(Retiring { sa, forget_at: now + RETIRED_IKE_LINGER });
        }
    }

    /// The rest of [`Tunnel::fail`], once the IKE SA is gone: `was_up` says whether it was established.
    pub(super) fn down(&mut self, now: Duration, reason: DownReason, message: String, was_up: bool) {
        self.forget_rekeys();
        self.drop_child();
        self.local_port = IKE_PORT;
        self.remote.set_port(IKE_PORT);
        if reason == DownReason::DeadPeer && was_up {
            self.counters.dpd_misses += 1;
        }
        self.last_error = Some(message);
        self.last_down = Some(reason.clone());
        self.events.push_back(Event::IkeSaDown { reason: reason.clone() });
        if self.cfg.startup == StartupAction::Start && !self.closed {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            let (min, max) = if reason.is_permanent() {
                (PERMANENT_RETRY_MIN, PERMANENT_RETRY_MAX)
            } else if was_up {
                (Duration::ZERO, Duration::ZERO)
            } else {
                (TRANSIENT_RETRY_MIN, TRANSIENT_RETRY_MAX)
            };
            let shift = self.consecutive_failures.saturating_sub(1).min(8);
            let delay = (min * (1u32 << shift)).min(max);
            self.reconnect_at = Some(now + delay);
        }
    }

    /// Forgets retiring IKE SAs and unresolved rekey collisions (the IKE SA they belong to is gone).
    pub(super) fn forget_rekeys(&mut self) {
        self.retiring.clear();
        self.child_collision = None;
        self.ike_collision = None;
        self.recent_rekey = None;
    }

    pub(super) fn drop_child(&mut self) {
        if let Some(c) = self.child.take() {
            self.emit(Event::ChildSaDeleted { inbound_spi: c.inbound_spi, outbound_spi: c.outbound_spi });
        }
        for o in std::mem::take(&mut self.old_inbound) {
            self.emit(Event::ChildSaDeleted { inbound_spi: o.inbound_spi, outbound_spi: o.outbound_spi });
        }
    }

    /// IKE_AUTH completed on the current IKE SA (we were its initiator or responder): the SA is established and
    /// its first CHILD_SA installed (keys from SK_d and the IKE_SA_INIT nonces, no PFS; RFC 7296 §2.17).
    pub(super) fn establish_with_child(&mut self, now: Duration, first: FirstChild) {
        let Some(sa) = self.ike.as_ref() else { return };
        let (ni, nr, initiator) = (sa.ni.clone(), sa.nr.clone(), sa.initiator);
        self.establish_ike(now);
        let FirstChild { inbound_spi, outbound_spi, suite, local_ts, remote_ts } = first;
        let child =
            self.make_child(now, inbound_spi, outbound_spi, suite, None, &ni, &nr, initiator, local_ts, remote_ts);
        if let Some(c) = child {
            self.emit(Event::ChildSaInstalled(c));
        }
    }

    /// Builds the ChildSa for the datapath from negotiated parameters.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn make_child(
        &mut self,
        now: Duration,
        inbound_spi: u32,
        outbound_spi: u32,
        suite: EspSuite,
        g_ir: Option<&[u8]>,
        ni: &[u8],
        nr: &[u8],
        we_initiated: bool,
        local_ts: Vec<Ipv4Cidr>,
        remote_ts: Vec<Ipv4Cidr>,
    ) -> Option<ChildSa> {
        let sa = self.ike.as_ref()?;
        let ike_suite = sa.suite?;
        let keys = sa.keys.as_ref()?;
        let k = kdf::child_sa_keys(ike_suite.prf, &keys.sk_d, g_ir, ni, nr, suite.encr, suite.integ);
        let (outbound_keys, inbound_keys) = if we_initiated {
            (k.initiator_to_responder, k.responder_to_initiator)
        } else {
            (k.responder_to_initiator, k.initiator_to_responder)
        };
        let rekey_at = self.rekey_time(now, self.cfg.child_lifetime, self.cfg.child_rekey_margin);
        self.child = Some(Child {
            inbound_spi,
            outbound_spi,
            suite,
            established_at: now,
            rekey_at,
            local_ts: local_ts.clone(),
            remote_ts: remote_ts.clone(),
        });
        Some(ChildSa {
            inbound_spi,
            outbound_spi,
            encr: suite.encr,
            integ: suite.integ,
            inbound_keys,
            outbound_keys,
            proposal: suite.name(),
            local_ts,
            remote_ts,
            established_at: now,
            rekey_at,
        })
    }

    pub(super) fn establish_ike(&mut self, now: Duration) {
        let rekey_at = self.rekey_time(now, self.cfg.ike_lifetime, self.cfg.ike_rekey_margin);
        let Some(sa) = self.ike.as_mut() else { return };
        sa.state = IkeState::Established;
        sa.established_at = now;
        sa.rekey_at = rekey_at;
        sa.init_request = Vec::new();
        sa.init_response = Vec::new();
        let proposal = sa.suite.map(|s| s.name()).unwrap_or_default();
        let (local_spi, remote_spi) = (sa.local_spi(), sa.remote_spi());
        self.ever_established = true;
        self.consecutive_failures = 0;
        self.last_error = None;
        self.last_down = None;
        self.last_recv = now;
        self.events.push_back(Event::IkeSaEstablished { local_spi, remote_spi, proposal });
    }

    /// A new IKE SA from a rekey exchange (keys derived), not yet installed.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn rekeyed_sa(
        &mut self,
        now: Duration,
        initiator: bool,
        spi_i: u64,
        spi_r: u64,
        suite: IkeSuite,
        keys: IkeKeys,
    ) -> IkeSa {
        let rekey_at = self.rekey_time(now, self.cfg.ike_lifetime, self.cfg.ike_rekey_margin);
        IkeSa::rekeyed(initiator, NewIkeSa { spi_i, spi_r, suite, keys }, self.ike.as_ref(), rekey_at, now)
    }

    /// Makes `new` the current IKE SA (the CHILD_SA moves to it); the old one retires. The initiator of the
    /// surviving rekey deletes the old IKE SA; otherwise the peer does and we answer.
    pub(super) fn install_ike(&mut self, now: Duration, new: IkeSa) {
        let (local_spi, remote_spi, initiator) = (new.local_spi(), new.remote_spi(), new.initiator);
        let proposal = new.suite.map(|s| s.name()).unwrap_or_default();
        if let Some(mut old) = self.ike.replace(new) {
            old.pending = None;
            if initiator {
                self.send_delete_ike(now, &mut old);
            }
            self.retiring.push(Retiring { sa: old, forget_at: now + RETIRED_IKE_LINGER });
        }
        self.counters.ike_rekeys += 1;
        self.events.push_back(Event::IkeSaRekeyed { local_spi, remote_spi, proposal });
    }
}
