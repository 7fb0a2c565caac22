//! The current IKE SA comes and goes: established (with its first CHILD_SA) after IKE_AUTH, replaced by a rekey
//! (the old one retiring), or ended by a failure, a DELETE or a close (then a reconnect is planned).

use super::*;

impl Tunnel {
    /// Ends the current IKE SA (and CHILD_SA) with `reason`, and plans a reconnect when we are the initiator.
    pub(super) fn fail(&mut self, now: Duration, reason: DownReason, message: String) {
        let was_up = self.ike.established().is_some();
        self.ike = CurrentIke::None;
        self.down(now, reason, message, was_up);
    }

    /// Closes the current IKE SA and `also` (IKE SAs the peer holds for us that we will not use) with a DELETE
    /// protected by each one's own keys, then ends the tunnel's SAs as [`Tunnel::fail`] does (reconnecting at
    /// once when it was up and `reason` is not permanent). Deleting an IKE SA deletes every CHILD_SA under it
    /// (RFC 7296 §1.4.1), so the peer keeps nothing of what we abandon, whichever SA it moved its CHILD_SAs to.
    /// The DELETEs stay tracked (retransmitted) as retiring SAs.
    pub(super) fn close_and_restart(&mut self, now: Duration, reason: DownReason, message: String, also: Vec<IkeSa>) {
        let current = self.ike.take_sa();
        let was_up = current.as_ref().is_some_and(|s| s.is_established());
        let mut closing = also;
        closing.extend(current.filter(|s| s.is_established()));
        for sa in closing.iter_mut() {
            sa.pending = None;
            self.send_delete_ike(now, sa);
        }
        self.down(now, reason, message, was_up);
        for sa in closing.into_iter().filter(|s| s.pending.is_some()) {
            self.retiring.push(Retiring::new(sa, now));
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

    /// Our IKE_AUTH is answered (we are the initiator of the current IKE SA): the SA is established and its first
    /// CHILD_SA installed (see [`Tunnel::established`]).
    pub(super) fn establish_with_child(&mut self, now: Duration, first: FirstChild) {
        let lifetime = self.ike_lifetime(now);
        let Some(handshake) = self.ike.sa_mut().and_then(|sa| sa.establish(lifetime)) else { return };
        self.established(now, handshake, first);
    }

    /// The times of an IKE SA established `now`.
    pub(super) fn ike_lifetime(&mut self, now: Duration) -> Lifetime {
        let rekey_at = self.rekey_time(now, self.cfg.ike_lifetime, self.cfg.ike_rekey_margin);
        Lifetime { established_at: now, rekey_at }
    }

    /// IKE_AUTH completed on the current IKE SA, now established (we were its initiator or responder): reported,
    /// and its first CHILD_SA installed (keys from SK_d and the IKE_SA_INIT nonces in `handshake`, no PFS; RFC
    /// 7296 §2.17).
    pub(super) fn established(&mut self, now: Duration, handshake: Handshake, first: FirstChild) {
        let Some(sa) = self.ike.established() else { return };
        let (initiator, proposal) = (sa.initiator, sa.suite.name());
        let (local_spi, remote_spi) = (sa.local_spi(), sa.remote_spi());
        self.ever_established = true;
        self.consecutive_failures = 0;
        self.last_error = None;
        self.last_down = None;
        self.last_recv = now;
        self.events.push_back(Event::IkeSaEstablished { local_spi, remote_spi, proposal });
        let Handshake { ni, nr, .. } = handshake;
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
        let sa = self.ike.sa()?;
        let (ike_suite, keys) = (sa.suite, &sa.keys);
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
        let lifetime = self.ike_lifetime(now);
        IkeSa::rekeyed(initiator, NewIkeSa { spi_i, spi_r, suite, keys }, self.ike.sa(), lifetime)
    }

    /// Makes `new` the current IKE SA (the CHILD_SA moves to it); the old one retires. The initiator of the
    /// surviving rekey deletes the old IKE SA; otherwise the peer does and we answer.
    pub(super) fn install_ike(&mut self, now: Duration, new: IkeSa) {
        let (local_spi, remote_spi, initiator) = (new.local_spi(), new.remote_spi(), new.initiator);
        let proposal = new.suite.name();
        if let Some(mut old) = std::mem::replace(&mut self.ike, CurrentIke::Sa(Box::new(new))).take_sa() {
            old.pending = None;
            if initiator {
                self.send_delete_ike(now, &mut old);
            }
            self.retiring.push(Retiring::new(old, now));
        }
        self.counters.ike_rekeys += 1;
        self.events.push_back(Event::IkeSaRekeyed { local_spi, remote_spi, proposal });
    }
}
