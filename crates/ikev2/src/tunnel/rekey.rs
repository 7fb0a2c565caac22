//! CREATE_CHILD_SA: rekeying the CHILD_SA and the IKE SA, started by us (`start_*`, the answers in
//! `*_rekey_response`) or by the peer (`respond_create_child`, `respond_ike_rekey`). Collisions between the two
//! are resolved in `collision.rs`.

use super::*;

/// An error notify (type, notification data) answering a CREATE_CHILD_SA request instead of a new SA.
pub(super) type Refusal = (NotifyType, Vec<u8>);

fn refuse(ty: NotifyType) -> Refusal {
    (ty, Vec::new())
}

/// Our KE payload and g^ir, when the CHILD_SA uses PFS.
type PfsAnswer = (Option<Payload>, Option<Zeroizing<Vec<u8>>>);

/// Our side of the PFS key exchange of a CHILD_SA rekey the peer started: our KE payload and g^ir; a refusal
/// when its KE is missing or of another group (INVALID_KE_PAYLOAD naming ours) or invalid.
fn respond_pfs(
    group: Option<DhGroup>,
    ke: Option<(u16, Vec<u8>)>,
    rng: &mut dyn RandomSource,
) -> Result<PfsAnswer, Refusal> {
    let Some(g) = group else { return Ok((None, None)) };
    match ke {
        Some((id, data)) if id == g.id() => {
            let dh = g.generate(rng);
            let g_ir = dh.shared_secret(&data).map_err(|_| refuse(NotifyType::INVALID_SYNTAX))?;
            Ok((Some(Payload::Ke { group: g.id(), data: dh.public_value().to_vec() }), Some(g_ir)))
        }
        _ => Err((NotifyType::INVALID_KE_PAYLOAD, g.id().to_be_bytes().to_vec())),
    }
}

/// What the answer to our CHILD_SA rekey chose: (its SPI, suite, Nr, g^ir when PFS).
pub(super) type PeerChildChoice = (u32, EspSuite, Vec<u8>, Option<Zeroizing<Vec<u8>>>);

/// What the answer to our IKE SA rekey gives us.
pub(super) enum IkeRekeyAnswer {
    /// The new IKE SA (keys derived, not installed) and the peer's nonce.
    Accepted(IkeSa, Vec<u8>),
    /// The peer refused with an error notify: it created nothing.
    Refused,
    /// An answer we do not accept although the peer created a new IKE SA for it (a suite we did not offer, an
    /// unusable nonce or key exchange). `Some` when that SA's keys could be derived.
    Unacceptable(Option<IkeSa>),
}

impl Tunnel {
    /// The PRF of the current IKE SA (SHA-1, the smallest, before one is negotiated).
    pub(super) fn ike_prf(&self) -> Prf {
        self.ike.sa().map_or(Prf::HmacSha1, |s| s.suite.prf)
    }

    pub(super) fn respond_create_child(&mut self, now: Duration, req: Request, payloads: Vec<Payload>) {
        let proposals = payload_sa(&payloads).unwrap_or_default();
        let is_ike = proposals.first().is_some_and(|p| p.protocol == ProtocolId::IKE);
        let checked = self.peer_rekey_collides(is_ike).and_then(|collision| {
            let ni = payload_nonce(&payloads, self.ike_prf()).ok_or(refuse(NotifyType::INVALID_SYNTAX))?;
            Ok((collision, ni))
        });
        let answered = match checked {
            Ok((collision, ni)) if is_ike => {
                let ke = payload_ke(&payloads);
                self.respond_ike_rekey(now, req, proposals, ni, ke, collision);
                return;
            }
            Ok((collision, ni)) => self.respond_child_rekey(now, req, &payloads, &proposals, ni, collision),
            Err(refusal) => Err(refusal),
        };
        if let Err((ty, data)) = answered {
            self.send_response(req, vec![notify(ty, data)]);
        }
    }

    /// Whether the peer's rekey request collides with ours in flight (RFC 7296 §2.8.1/§2.8.2): the same kind of
    /// rekey from both sides is answered as usual and resolved by the nonces when ours completes. A CHILD_SA rekey
    /// and an IKE SA rekey at once, or a second collision before the first is resolved, wait (§2.25).
    fn peer_rekey_collides(&self, is_ike: bool) -> Result<bool, Refusal> {
        let in_flight = self.ike.sa().and_then(|s| s.pending.as_ref()).and_then(|p| match p.req {
            Req::RekeyChild { .. } => Some(false),
            Req::RekeyIke { .. } => Some(true),
            _ => None,
        });
        let unresolved = self.child_collision.is_some() || self.ike_collision.is_some();
        match in_flight {
            Some(ours_is_ike) if ours_is_ike == is_ike && !unresolved => Ok(true),
            Some(_) => Err(refuse(NotifyType::TEMPORARY_FAILURE)),
            None => Ok(false),
        }
    }

    /// The CHILD_SA that the peer's rekey request names (REKEY_SA): our current one (`None`), or the one our last
    /// rekey replaced when the peer's rekey crossed ours, which completed first: a late collision, answered as usual
    /// and resolved at once by the nonces (§2.8.1); our last rekey is returned for that.
    fn child_rekey_target(&mut self, payloads: &[Payload], collision: bool) -> Result<Option<RecentRekey>, Refusal> {
        // A second CHILD_SA would break AWS's one-SA-pair rule.
        let rekey = find_notify(payloads, NotifyType::REKEY_SA).ok_or(refuse(NotifyType::NO_ADDITIONAL_SAS))?;
        let child = self.child.as_ref().ok_or(refuse(NotifyType::CHILD_SA_NOT_FOUND))?;
        let named = spi_bytes(&rekey.spi);
        if named == Some(child.outbound_spi) || named == Some(child.inbound_spi) {
            return Ok(None);
        }
        let names = |o: &OldInbound| Some(o.outbound_spi) == named || Some(o.inbound_spi) == named;
        let replaced = self.old_inbound.iter().find(|o| names(o)).map(|o| o.inbound_spi);
        match (replaced, self.recent_rekey.as_ref()) {
            (Some(r), Some(rec)) if rec.replaced_inbound_spi == r && !collision => Ok(self.recent_rekey.take()),
            // An SA being deleted: the peer retries on the new one if it still wants to (§2.25).
            (Some(_), _) => Err(refuse(NotifyType::TEMPORARY_FAILURE)),
            (None, _) => Err(refuse(NotifyType::CHILD_SA_NOT_FOUND)),
        }
    }

    /// The peer's CHILD_SA rekey: answered with a new SA that replaces the current one (whose inbound half stays
    /// until the peer deletes it), or after a collision is resolved against ours by the nonces.
    #[allow(clippy::too_many_arguments)]
    fn respond_child_rekey(
        &mut self,
        now: Duration,
        req: Request,
        payloads: &[Payload],
        proposals: &[wire::Proposal],
        ni: Vec<u8>,
        collision: bool,
    ) -> Result<(), Refusal> {
        let late = self.child_rekey_target(payloads, collision)?;
        let (number, outbound_spi, suite) =
            select_esp(&self.cfg.esp_proposals, proposals, true).ok_or(refuse(NotifyType::NO_PROPOSAL_CHOSEN))?;
        let (dh_pub, g_ir) = respond_pfs(suite.dh, payload_ke(payloads), &mut self.rng)?;
        let Some(child) = self.child.as_ref() else { return Ok(()) };
        let (local_ts, remote_ts) = (child.local_ts.clone(), child.remote_ts.clone());
        let (old_in, old_out) = (child.inbound_spi, child.outbound_spi);
        let inbound_spi = rand_u32(&mut self.rng);
        let nr = nonce(&mut self.rng);
        if collision {
            self.child_collision = Some(ChildCollision {
                peer_ni: ni.clone(),
                our_nr: nr.clone(),
                inbound_spi,
                outbound_spi,
                old_inbound_spi: old_in,
                deleted_by_peer: false,
            });
        }
        let mut resp = vec![suite_proposal_esp(&suite, number, inbound_spi), Payload::Nonce(nr.clone())];
        resp.extend(dh_pub);
        resp.push(Payload::TsI(ts_payload(&remote_ts)));
        resp.push(Payload::TsR(ts_payload(&local_ts)));
        self.send_response(req, resp);
        let grace = self.cfg.old_inbound_grace;
        if let Some(rec) = &late {
            self.counters.rekey_collisions += 1;
            if !first_exchange_is_redundant(&rec.ni, &rec.nr, &ni, &nr) {
                // The peer's new SA holds the lowest nonce: the peer closes it. It never carries our traffic; it
                // is remembered only to answer that DELETE (or to delete it ourselves if the peer does not).
                self.old_inbound.push(OldInbound::new(inbound_spi, outbound_spi, now + grace * 2));
                return Ok(());
            }
            // Ours (the current SA) is redundant: we close it now, the peer's replaces it below, and the peer,
            // whose rekey survives, deletes the SA both replaced.
            if let Some(o) = self.old_inbound.iter_mut().find(|o| o.inbound_spi == rec.replaced_inbound_spi) {
                o.delete_at = o.delete_at.max(now + grace * 2);
            }
        }
        if let Some(new) = self.make_child(
            now,
            inbound_spi,
            outbound_spi,
            suite,
            g_ir.as_deref().map(|v| &v[..]),
            &ni,
            &nr,
            false,
            local_ts,
            remote_ts,
        ) {
            // The initiator of the rekey deletes the old SA; we keep its inbound half until then (or the grace).
            // After a late collision the old SA is our redundant one, and ours to delete at once.
            let delete_at = if late.is_some() { now } else { now + grace * 2 };
            if late.is_none() {
                self.counters.child_rekeys += 1;
            }
            self.old_inbound.push(OldInbound::new(old_in, old_out, delete_at));
            self.emit(Event::ChildSaRekeyed { old_inbound_spi: old_in, old_outbound_spi: old_out, new });
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn respond_ike_rekey(
        &mut self,
        now: Duration,
        req: Request,
        proposals: Vec<wire::Proposal>,
        ni: Vec<u8>,
        ke: Option<(u16, Vec<u8>)>,
        collision: bool,
    ) {
        let Some((group, ke_data)) = ke else {
            self.send_response(req, vec![notify(NotifyType::INVALID_SYNTAX, vec![])]);
            return;
        };
        let Some((number, suite)) = select_ike(&self.cfg.ike_proposals, &proposals, Some(group)) else {
            self.send_response(req, vec![notify(NotifyType::NO_PROPOSAL_CHOSEN, vec![])]);
            return;
        };
        let peer_spi = proposals
            .iter()
            .find(|p| p.number == number)
            .and_then(|p| <[u8; 8]>::try_from(&p.spi[..]).ok())
            .map(u64::from_be_bytes);
        let Some(peer_spi) = peer_spi.filter(|s| *s != 0 && nonce_fits(&ni, suite.prf)) else {
            self.send_response(req, vec![notify(NotifyType::INVALID_SYNTAX, vec![])]);
            return;
        };
        if suite.dh.id() != group {
            self.send_response(req, vec![notify(NotifyType::INVALID_KE_PAYLOAD, suite.dh.id().to_be_bytes().to_vec())]);
            return;
        }
        let dh = suite.dh.generate(&mut self.rng);
        let Ok(g_ir) = dh.shared_secret(&ke_data) else {
            self.send_response(req, vec![notify(NotifyType::INVALID_SYNTAX, vec![])]);
            return;
        };
        let Some(old) = self.ike.sa() else { return };
        let (old_suite, old_keys) = (old.suite, &old.keys);
        let our_spi = rand_u64(&mut self.rng);
        let nr = nonce(&mut self.rng);
        let skeyseed = kdf::skeyseed_rekey(old_suite.prf, &old_keys.sk_d, &g_ir, &ni, &nr);
        let Some(keys) = keys_from(&suite, &skeyseed, &ni, &nr, peer_spi, our_spi, false) else { return };
        let resp = vec![
            suite_proposal_ike(&suite, number, Some(our_spi)),
            Payload::Nonce(nr.clone()),
            Payload::Ke { group: suite.dh.id(), data: dh.public_value().to_vec() },
        ];
        self.send_response(req, resp);
        let new = self.rekeyed_sa(now, false, peer_spi, our_spi, suite, keys);
        if collision {
            // Ours is in flight on the old IKE SA: which new SA survives is known when it completes.
            self.ike_collision = Some(IkeCollision { sa: new, peer_ni: ni, our_nr: nr, deleted_by_peer: false });
        } else {
            self.install_ike(now, new);
        }
    }

    pub(super) fn child_rekey_response(
        &mut self,
        now: Duration,
        payloads: Vec<Payload>,
        dh: Option<DhSecret>,
        ni: Vec<u8>,
        new_in_spi: u32,
    ) {
        let collision = self.child_collision.take();
        let Some((outbound_spi, suite, nr, g_ir)) = self.child_from_response(&payloads, dh.as_ref()) else {
            self.child_rekey_not_used(now, &payloads, collision);
            return;
        };
        let Some(child) = self.child.as_ref() else { return };
        if let Some(c) = &collision
            && !c.deleted_by_peer
            && first_exchange_is_redundant(&ni, &nr, &c.peer_ni, &c.our_nr)
        {
            // Our new SA holds the lowest nonce: it is redundant and ours to close (§2.8.1). The peer's stays; the
            // peer, whose rekey survived, deletes the replaced SA.
            self.counters.rekey_collisions += 1;
            let del = delete_esp(&[new_in_spi]);
            self.send_request(
                now,
                ExchangeType::INFORMATIONAL,
                vec![del],
                Req::DeleteChild { inbound_spi: new_in_spi },
            );
            return;
        }
        // Ours survives. Without a collision `child` is the SA we rekeyed; with one, it is the peer's redundant SA.
        let (old_in, old_out) = (child.inbound_spi, child.outbound_spi);
        let (local_ts, remote_ts) = (child.local_ts.clone(), child.remote_ts.clone());
        let g_ir = g_ir.as_deref().map(|v| &v[..]);
        let new = self.make_child(now, new_in_spi, outbound_spi, suite, g_ir, &ni, &nr, true, local_ts, remote_ts);
        let Some(new) = new else { return };
        let peer_deleted = collision.as_ref().is_some_and(|c| c.deleted_by_peer);
        self.retire_rekeyed_child(now, old_in, old_out, collision, &ni, &nr);
        self.emit(Event::ChildSaRekeyed { old_inbound_spi: old_in, old_outbound_spi: old_out, new });
        if peer_deleted {
            self.emit(Event::ChildSaDeleted { inbound_spi: old_in, outbound_spi: old_out });
        }
    }

    /// The answer to our CHILD_SA rekey is not used: the peer refused it (keep the current CHILD_SA and retry, or
    /// after a collision keep the peer's), or it created an SA we will not use.
    fn child_rekey_not_used(&mut self, now: Duration, payloads: &[Payload], collision: Option<ChildCollision>) {
        let refusal = first_error_notify(payloads).map(|n| n.ty);
        match collision {
            // A refusal (TEMPORARY_FAILURE after a collision, or another error notify) created nothing.
            // With a collision the peer's rekey (already our CHILD_SA) stands; without one, keep the current
            // CHILD_SA and try again shortly.
            Some(c) if refusal.is_some() && !c.deleted_by_peer => self.counters.rekey_collisions += 1,
            None if refusal.is_some() => {
                let delay = refusal.map_or(Duration::from_secs(30), |ty| retry_delay(ty, &mut self.rng));
                if let Some(c) = self.child.as_mut() {
                    c.rekey_at = now + delay;
                }
            }
            // The peer created a CHILD_SA for ours that we will not use (not what we offered, or unusable),
            // and may already send on it (RFC 7296 lets the responder use a new SA at once); or, after a
            // collision, it closed its own SA and nothing usable is left. Deleting only that CHILD_SA would
            // leave the two ends disagreeing on which SA carries traffic: close the IKE SA (every CHILD_SA
            // under it goes with it, on both ends) and start over.
            _ => {
                let message = match (refusal, self.last_error.take()) {
                    (None, Some(e)) => e,
                    _ => "peer deleted the CHILD_SA of a rekey collision".into(),
                };
                let reason = if refusal.is_some() { DownReason::DeletedByPeer } else { DownReason::InvalidSyntax };
                self.close_and_restart(now, reason, message, Vec::new());
            }
        }
    }

    /// After our CHILD_SA rekey completed: the SA it replaced keeps its inbound half for the grace time (then we
    /// delete it); after a collision we delete the SA both rekeys replaced and keep the peer's redundant one until
    /// the peer closes it.
    fn retire_rekeyed_child(
        &mut self,
        now: Duration,
        old_in: u32,
        old_out: u32,
        collision: Option<ChildCollision>,
        ni: &[u8],
        nr: &[u8],
    ) {
        let grace = self.cfg.old_inbound_grace;
        match collision {
            None => {
                self.counters.child_rekeys += 1;
                self.old_inbound.push(OldInbound::new(old_in, old_out, now + grace));
                self.recent_rekey =
                    Some(RecentRekey { ni: ni.to_vec(), nr: nr.to_vec(), replaced_inbound_spi: old_in });
            }
            Some(c) => {
                self.counters.rekey_collisions += 1;
                // We initiated the surviving rekey, so we delete the SA both rekeys replaced.
                if let Some(o) = self.old_inbound.iter_mut().find(|o| o.inbound_spi == c.old_inbound_spi) {
                    o.delete_at = o.delete_at.min(now + grace);
                }
                if !c.deleted_by_peer {
                    // The peer closes its redundant SA; we keep its inbound half until then.
                    self.old_inbound.push(OldInbound::new(old_in, old_out, now + grace * 2));
                }
            }
        }
    }

    /// The peer's choice from the answer to our CHILD_SA rekey: (its SPI, suite, Nr, g^ir); None (with
    /// `last_error` set) when it refused or the answer is unusable.
    pub(super) fn child_from_response(
        &mut self,
        payloads: &[Payload],
        dh: Option<&DhSecret>,
    ) -> Option<PeerChildChoice> {
        if let Some(n) = first_error_notify(payloads) {
            self.last_error = Some(format!("CHILD_SA rekey: peer sent {}", n.ty));
            return None;
        }
        let chosen = payload_sa(payloads).as_deref().and_then(chosen_esp);
        let (Some((outbound_spi, suite)), Some(nr)) = (chosen, payload_nonce(payloads, self.ike_prf())) else {
            self.last_error = Some("CHILD_SA rekey: malformed response".into());
            return None;
        };
        // What the peer chose must be what we offered: a proposal of ours with this cipher and integrity, and with
        // PFS exactly the group of our KE (no PFS in the answer to a PFS offer is a downgrade).
        let ours = dh.map(|d| d.group());
        if suite.dh != ours || !suite.offered_in(&self.cfg.esp_proposals) {
            self.last_error = Some(format!("CHILD_SA rekey: peer chose {}, which we did not offer", suite.name()));
            return None;
        }
        let g_ir = match (dh, suite.dh, payload_ke(payloads)) {
            (Some(d), Some(g), Some((grp, data))) if d.group() == g && grp == g.id() => d.shared_secret(&data).ok(),
            (None, None, _) => return Some((outbound_spi, suite, nr, None)),
            _ => None,
        };
        if g_ir.is_none() {
            self.last_error = Some("CHILD_SA rekey: the peer's key exchange is unusable".into());
            return None;
        }
        Some((outbound_spi, suite, nr, g_ir))
    }

    pub(super) fn ike_rekey_response(
        &mut self,
        now: Duration,
        payloads: Vec<Payload>,
        dh: DhSecret,
        ni: Vec<u8>,
        new_spi: u64,
    ) {
        let collision = self.ike_collision.take();
        let (mut ours, nr) = match self.rekeyed_ike_from_response(now, &payloads, dh, &ni, new_spi) {
            IkeRekeyAnswer::Accepted(sa, nr) => (sa, nr),
            IkeRekeyAnswer::Refused => {
                match collision {
                    // The peer refused ours; its own rekey (already answered) stands unless it deleted it.
                    Some(c) if !c.deleted_by_peer => {
                        self.counters.rekey_collisions += 1;
                        self.install_ike(now, c.sa)
                    }
                    _ => {
                        let delay = first_error_notify(&payloads)
                            .map_or(Duration::from_secs(30), |n| retry_delay(n.ty, &mut self.rng));
                        if let Some(l) = self.ike.sa_mut().and_then(|s| s.lifetime_mut()) {
                            l.rekey_at = now + delay;
                        }
                    }
                }
                return;
            }
            IkeRekeyAnswer::Unacceptable(created) => {
                // The peer created a new IKE SA for our request and moved the CHILD_SA to it (RFC 7296 §2.8); we
                // will not use it. Close it (a DELETE with its own keys, when they could be derived), every other
                // IKE SA we share, and start over: nothing of the refused exchange stays on either side.
                let mut abandoned: Vec<IkeSa> = created.into_iter().collect();
                abandoned.extend(collision.filter(|c| !c.deleted_by_peer).map(|c| c.sa));
                let message = self.last_error.take().unwrap_or_default();
                self.close_and_restart(now, DownReason::InvalidSyntax, message, abandoned);
                return;
            }
        };
        let Some(c) = collision else {
            self.install_ike(now, ours);
            return;
        };
        self.counters.rekey_collisions += 1;
        if !c.deleted_by_peer && first_exchange_is_redundant(&ni, &nr, &c.peer_ni, &c.our_nr) {
            // Ours holds the lowest nonce: the peer's IKE SA survives (the CHILD_SA moves to it, and the peer
            // deletes the old one); we close ours (§2.8.2).
            self.install_ike(now, c.sa);
            self.send_delete_ike(now, &mut ours);
            self.retiring.push(Retiring::new(ours, now));
        } else {
            // Ours survives: we delete the old IKE SA; the peer closes its redundant one and we answer.
            self.install_ike(now, ours);
            if !c.deleted_by_peer {
                self.retiring.push(Retiring::new(c.sa, now));
            }
        }
    }

    /// What the answer to our IKE rekey gives us (`last_error` set unless accepted).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn rekeyed_ike_from_response(
        &mut self,
        now: Duration,
        payloads: &[Payload],
        dh: DhSecret,
        ni: &[u8],
        new_spi: u64,
    ) -> IkeRekeyAnswer {
        if let Some(n) = first_error_notify(payloads) {
            self.last_error = Some(format!("IKE SA rekey: peer sent {}", n.ty));
            return IkeRekeyAnswer::Refused;
        }
        let props = payload_sa(payloads).unwrap_or_default();
        let suite = chosen_ike(&props);
        let peer_spi = props
            .first()
            .and_then(|p| <[u8; 8]>::try_from(&p.spi[..]).ok())
            .map(u64::from_be_bytes)
            .filter(|s| *s != 0);
        let ke = payload_ke(payloads).filter(|(grp, _)| *grp == dh.group().id());
        let nr = payloads.iter().find_map(|p| if let Payload::Nonce(n) = p { Some(n.clone()) } else { None });
        // The keys of the SA the peer created, whenever they can be derived (even for a choice we refuse: a
        // DELETE protected with them closes it).
        let Some((old_prf, old_sk_d)) = self.ike.sa().map(|o| (o.suite.prf, o.keys.sk_d.clone())) else {
            return IkeRekeyAnswer::Refused;
        };
        let keys = match (suite, peer_spi, nr.as_ref(), ke.as_ref()) {
            (Some(suite), Some(peer_spi), Some(nr), Some((_, data))) if (1..=MAX_NONCE).contains(&nr.len()) => {
                dh.shared_secret(data).ok().and_then(|g_ir| {
                    let skeyseed = kdf::skeyseed_rekey(old_prf, &old_sk_d, &g_ir, ni, nr);
                    keys_from(&suite, &skeyseed, ni, nr, new_spi, peer_spi, true)
                })
            }
            _ => None,
        };
        let (Some(suite), Some(peer_spi), Some(nr)) = (suite, peer_spi, nr) else {
            self.last_error = Some("IKE SA rekey: malformed response".into());
            return IkeRekeyAnswer::Unacceptable(None);
        };
        let created = keys.map(|k| self.rekeyed_sa(now, true, new_spi, peer_spi, suite, k));
        // The suite must be one we offered, with the group of our KE, and the nonce must suit its PRF too.
        if !suite.offered_in(&self.cfg.ike_proposals)
            || suite.dh != dh.group()
            || !nonce_fits(&nr, suite.prf)
            || !nonce_fits(&nr, old_prf)
        {
            self.last_error = Some(format!("IKE SA rekey: peer chose {}, which we did not offer", suite.name()));
            return IkeRekeyAnswer::Unacceptable(created);
        }
        match created {
            Some(sa) => IkeRekeyAnswer::Accepted(sa, nr),
            None => {
                self.last_error = Some("IKE SA rekey: the peer's key exchange is unusable".into());
                IkeRekeyAnswer::Unacceptable(None)
            }
        }
    }

    pub(super) fn start_child_rekey(&mut self, now: Duration) {
        let Some(child) = self.child.as_ref() else { return };
        let old_in = child.inbound_spi;
        let (local_ts, remote_ts) = (child.local_ts.clone(), child.remote_ts.clone());
        let group = child.suite.dh.or_else(|| self.cfg.esp_proposals.iter().find_map(|p| p.dh.first().copied()));
        let new_in_spi = rand_u32(&mut self.rng);
        let ni = nonce(&mut self.rng);
        let dh = group.map(|g| g.generate(&mut self.rng));
        let mut payloads = vec![Payload::Notify(Notify {
            protocol: ProtocolId::ESP,
            spi: old_in.to_be_bytes().to_vec(),
            ty: NotifyType::REKEY_SA,
            data: vec![],
        })];
        payloads.push(esp_sa_payload(&self.cfg.esp_proposals, new_in_spi, dh.is_some()));
        payloads.push(Payload::Nonce(ni.clone()));
        if let Some(d) = &dh {
            payloads.push(Payload::Ke { group: d.group().id(), data: d.public_value().to_vec() });
        }
        payloads.push(Payload::TsI(ts_payload(&local_ts)));
        payloads.push(Payload::TsR(ts_payload(&remote_ts)));
        self.send_request(now, ExchangeType::CREATE_CHILD_SA, payloads, Req::RekeyChild { dh, ni, new_in_spi });
    }

    pub(super) fn start_ike_rekey(&mut self, now: Duration) {
        let Some(sa) = self.ike.sa() else { return };
        let group = sa.suite.dh;
        let new_spi = rand_u64(&mut self.rng);
        let ni = nonce(&mut self.rng);
        let dh = group.generate(&mut self.rng);
        let payloads = vec![
            ike_sa_payload(&self.cfg.ike_proposals, Some(new_spi)),
            Payload::Nonce(ni.clone()),
            Payload::Ke { group: dh.group().id(), data: dh.public_value().to_vec() },
        ];
        self.send_request(now, ExchangeType::CREATE_CHILD_SA, payloads, Req::RekeyIke { dh, ni, new_spi });
    }
}
