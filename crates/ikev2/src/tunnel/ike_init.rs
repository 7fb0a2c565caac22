//! The initiator's side of IKE_SA_INIT and IKE_AUTH: starting an IKE SA, the COOKIE / INVALID_KE_PAYLOAD retries,
//! key derivation from the responder's answer, our AUTH and the check of the peer's (both sides use
//! [`Tunnel::auth_octets`]), and the first CHILD_SA from the IKE_AUTH response. The responder's side is
//! `half_open.rs`.

use super::*;

/// At most this many IKE_SA_INIT resends on COOKIE or INVALID_KE_PAYLOAD answers per attempt (a hostile or broken
/// responder cannot keep us in a loop): then the attempt fails and the reconnect backoff applies.
pub(super) const MAX_INIT_RETRIES: u8 = 4;

/// Whether we were the initiator of the IKE_SA_INIT that created this SA's keys. After an IKE rekey the roles
/// of the new SA follow the rekey exchange, but AUTH is only computed on SAs created by IKE_SA_INIT.
pub(super) fn sa_is_original_initiator<S>(sa: &IkeSa<S>) -> bool {
    sa.initiator
}

impl Tunnel {
    /// Starts (or restarts) the IKE SA as initiator.
    pub fn connect(&mut self, now: Duration) {
        self.closed = false;
        self.reconnect_at = None;
        if !self.ike.is_none() {
            return;
        }
        self.local_port = IKE_PORT;
        self.remote.set_port(IKE_PORT);
        let group = self.cfg.ike_proposals.first().and_then(|p| p.dh.first().copied()).unwrap_or(DhGroup::Modp2048);
        let spi_i = rand_u64(&mut self.rng);
        let dh = group.generate(&mut self.rng);
        let ni = nonce(&mut self.rng);
        let first_child_spi = rand_u32(&mut self.rng);
        self.send_init(now, InitOffer { spi_i, dh, ni, cookie: None, first_child_spi }, 0);
    }

    /// Sends our IKE_SA_INIT request for `offer` (`retries`: how many times it was resent on COOKIE or
    /// INVALID_KE_PAYLOAD so far); it becomes the exchange in flight.
    pub(super) fn send_init(&mut self, now: Duration, offer: InitOffer, retries: u8) {
        let local = SocketAddr::new(self.local.ip(), self.local_port);
        let mut payloads = Vec::new();
        if let Some(c) = &offer.cookie {
            payloads.push(notify(NotifyType::COOKIE, c.clone()));
        }
        payloads.push(ike_sa_payload(&self.cfg.ike_proposals, None));
        payloads.push(Payload::Ke { group: offer.dh.group().id(), data: offer.dh.public_value().to_vec() });
        payloads.push(Payload::Nonce(offer.ni.clone()));
        payloads.extend(nat_detection(self.cfg.force_encap, offer.spi_i, 0, local, self.remote, &mut self.rng));
        payloads.push(notify(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED, vec![]));
        let header = Header {
            spi_i: offer.spi_i,
            spi_r: 0,
            next_payload: PayloadType::NONE,
            version: 0x20,
            exchange: ExchangeType::IKE_SA_INIT,
            flags: flags::INITIATOR,
            message_id: 0,
            length: 0,
        };
        let bytes = Message { header, payloads }.emit();
        let sent = Pending::new(0, vec![bytes.clone()], now, now + self.cfg.retransmit.initial, ());
        self.ike = CurrentIke::Initiating(Box::new(InitExchange { offer, retries, sent }));
        self.transmits.push_back(Transmit { local_port: self.local_port, remote: self.remote, data: bytes });
    }

    /// The answer to our IKE_SA_INIT (unauthenticated): looked at only while ours, with that SPI, is in flight.
    pub(super) fn handle_init_response(&mut self, now: Duration, msg: Message, data: &[u8]) {
        let h = msg.header;
        let ours = matches!(&self.ike, CurrentIke::Initiating(ex) if ex.offer.spi_i == h.spi_i);
        if !ours || h.message_id != 0 {
            self.dropped(DropReason::UnexpectedExchange);
            return;
        }
        if self.init_retry_or_error(now, &msg.payloads) {
            return;
        }
        let CurrentIke::Initiating(ex) = &self.ike else { return };
        let init = InitPayloads::find(&msg.payloads);
        let Some((suite, InitPayloads { group, ke: ke_data, nonce: nr, .. })) =
            init.and_then(|i| Some((chosen_ike(&i.proposals)?, i)))
        else {
            self.fail(now, DownReason::InvalidSyntax, "malformed IKE_SA_INIT response".into());
            return;
        };
        let dh = &ex.offer.dh;
        if !suite.offered_in(&self.cfg.ike_proposals)
            || suite.dh.id() != group
            || dh.group() != suite.dh
            || !nonce_fits(&nr, suite.prf)
        {
            self.fail(
                now,
                DownReason::NoProposalChosen { by_peer: false },
                "peer chose a proposal we did not offer".into(),
            );
            return;
        }
        let Ok(shared) = dh.shared_secret(&ke_data) else {
            self.fail(now, DownReason::InvalidSyntax, "peer's KE value is invalid".into());
            return;
        };
        let (spi_i, spi_r) = (h.spi_i, h.spi_r);
        let Some(keys) = derive_ike(&suite, &ex.offer.ni, &nr, &shared, spi_i, spi_r, true) else {
            self.fail(now, DownReason::InvalidSyntax, "no keys for the peer's choice".into());
            return;
        };
        let CurrentIke::Initiating(ex) = std::mem::take(&mut self.ike) else { return };
        let peer_fragmentation = find_notify(&msg.payloads, NotifyType::IKEV2_FRAGMENTATION_SUPPORTED).is_some();
        // Forced encapsulation (or a detected NAT): continue on 4500.
        let nat = find_notify(&msg.payloads, NotifyType::NAT_DETECTION_DESTINATION_IP)
            .is_some_and(|n| n.data != nat_hash(spi_i, spi_r, SocketAddr::new(self.local.ip(), self.local_port)));
        let new = NewIkeSa { spi_i, spi_r, suite, keys };
        // One datagram: IKE_SA_INIT is never fragmented.
        let init = (ex.sent.datagrams.concat(), data.to_vec());
        let sa = IkeSa::authenticating(new, ex.offer, nr, init, peer_fragmentation, nat);
        self.ike = CurrentIke::Sa(Box::new(sa));
        self.last_recv = now;
        if self.cfg.force_encap || nat {
            self.local_port = NATT_PORT;
            self.remote.set_port(NATT_PORT);
        }
        self.send_auth(now);
    }

    /// The answer to our IKE_SA_INIT asks us to retry (COOKIE, INVALID_KE_PAYLOAD naming a group we offer: resent
    /// at most [`MAX_INIT_RETRIES`] times) or refuses (an error notify: the attempt fails). True when it was one of
    /// those and is handled.
    fn init_retry_or_error(&mut self, now: Duration, payloads: &[Payload]) -> bool {
        let CurrentIke::Initiating(ex) = &self.ike else { return true };
        let retry = [NotifyType::COOKIE, NotifyType::INVALID_KE_PAYLOAD]
            .into_iter()
            .find(|t| find_notify(payloads, *t).is_some());
        if let Some(ty) = retry
            && ex.retries >= MAX_INIT_RETRIES
        {
            self.fail(now, DownReason::PeerError { notify: ty.0 }, format!("peer keeps answering {ty}"));
            return true;
        }
        if let Some(c) = find_notify(payloads, NotifyType::COOKIE) {
            if ex.offer.cookie.as_deref() == Some(&c.data[..]) || c.data.is_empty() || c.data.len() > 64 {
                return true;
            }
            let CurrentIke::Initiating(ex) = std::mem::take(&mut self.ike) else { return true };
            let offer = InitOffer { cookie: Some(c.data.clone()), ..ex.offer };
            self.send_init(now, offer, ex.retries + 1);
            return true;
        }
        if let Some(n) = find_notify(payloads, NotifyType::INVALID_KE_PAYLOAD) {
            let wanted =
                if n.data.len() == 2 { DhGroup::from_id(u16::from_be_bytes([n.data[0], n.data[1]])) } else { None };
            let offered = |g: &DhGroup| self.cfg.ike_proposals.iter().any(|p| p.dh.contains(g));
            match wanted.filter(|g| offered(g) && *g != ex.offer.dh.group()) {
                Some(g) => {
                    let CurrentIke::Initiating(ex) = std::mem::take(&mut self.ike) else { return true };
                    let offer = InitOffer { dh: g.generate(&mut self.rng), ..ex.offer };
                    self.send_init(now, offer, ex.retries + 1);
                }
                None => self.fail(
                    now,
                    DownReason::NoProposalChosen { by_peer: true },
                    "peer asked for a DH group we do not offer (INVALID_KE_PAYLOAD)".into(),
                ),
            }
            return true;
        }
        if let Some(n) = first_error_notify(payloads) {
            let reason = match n.ty {
                NotifyType::NO_PROPOSAL_CHOSEN => DownReason::NoProposalChosen { by_peer: true },
                t => DownReason::PeerError { notify: t.0 },
            };
            self.fail(now, reason, format!("peer sent {}", n.ty));
            return true;
        }
        false
    }

    /// The AUTH value (PSK) of our side (`ours`) or of the peer, with identification `id`, on `sa` whose
    /// IKE_SA_INIT left `hs`.
    pub(super) fn auth_octets<S>(&self, sa: &IkeSa<S>, hs: &Handshake, ours: bool, id: &Identification) -> Vec<u8> {
        let (keys, suite) = (&sa.keys, sa.suite);
        // The initiator signs its IKE_SA_INIT request, Nr and prf(SK_pi, IDi'); the responder its response, Ni
        // and prf(SK_pr, IDr') (RFC 7296 §2.15).
        let signer_is_initiator = ours == sa_is_original_initiator(sa);
        let (msg, nonce, skp) = if signer_is_initiator {
            (&hs.init_request, &hs.nr, &keys.sk_pi)
        } else {
            (&hs.init_response, &hs.ni, &keys.sk_pr)
        };
        let maced = suite.prf.compute(skp, &[&id_body(id)]);
        let mut octets = msg.clone();
        octets.extend_from_slice(nonce);
        octets.extend_from_slice(&maced);
        kdf::psk_auth(suite.prf, &self.cfg.psk, &octets).to_vec()
    }

    /// Checks the peer's AUTH (PSK, constant-time compare) on `sa` (whose IKE_SA_INIT left `hs`) and, if
    /// configured, its identity. Returns (AUTH matches, identity acceptable).
    pub(super) fn verify_peer_auth<S>(
        &self,
        (sa, hs): (&IkeSa<S>, &Handshake),
        id: &Identification,
        method: AuthMethod,
        auth: &[u8],
    ) -> (bool, bool) {
        use subtle::ConstantTimeEq;
        let expected = self.auth_octets(sa, hs, false, id);
        let id_ok = self.cfg.remote_id.as_ref().is_none_or(|r| id_matches(r, id));
        let auth_ok =
            method == AuthMethod::SHARED_KEY_MIC && expected.len() == auth.len() && bool::from(expected.ct_eq(auth));
        (auth_ok, id_ok)
    }

    pub(super) fn send_auth(&mut self, now: Duration) {
        let idi = identity_payload(&self.cfg.local_id);
        let Some(sa) = self.ike.sa() else { return };
        let IkeState::AuthSent { handshake, first_child_spi: spi } = &sa.state else { return };
        let (auth, spi) = (self.auth_octets(sa, handshake, true, &idi), *spi);
        let mut payloads = vec![Payload::IdI(idi)];
        if self.cfg.initial_contact && !self.ever_established {
            payloads.push(notify(NotifyType::INITIAL_CONTACT, vec![]));
        }
        if let Some(r) = &self.cfg.remote_id {
            payloads.push(Payload::IdR(identity_payload(r)));
        }
        payloads.push(Payload::Auth { method: AuthMethod::SHARED_KEY_MIC, data: auth });
        payloads.push(esp_sa_payload(&self.cfg.esp_proposals, spi, false));
        payloads.push(Payload::TsI(ts_payload(&self.local_ts())));
        payloads.push(Payload::TsR(ts_payload(&self.cfg.remote_ts)));
        self.send_request(now, ExchangeType::IKE_AUTH, payloads, Req::Auth);
    }

    pub(super) fn auth_response(&mut self, now: Duration, payloads: Vec<Payload>) {
        if let Some(n) = first_error_notify(&payloads) {
            let ty = n.ty;
            self.fail(now, reason_for(ty, true), format!("peer sent {ty}"));
            return;
        }
        let idr = payloads.iter().find_map(|p| if let Payload::IdR(i) = p { Some(i.clone()) } else { None });
        let auth = payloads
            .iter()
            .find_map(|p| if let Payload::Auth { method, data } = p { Some((*method, data.clone())) } else { None });
        let (Some(idr), Some((method, auth))) = (idr, auth) else {
            self.fail(now, DownReason::InvalidSyntax, "IKE_AUTH response without IDr or AUTH".into());
            return;
        };
        let Some(sa) = self.ike.sa() else { return };
        let IkeState::AuthSent { handshake, first_child_spi } = &sa.state else { return };
        let (ok, id_ok) = self.verify_peer_auth((sa, handshake), &idr, method, &auth);
        if !(ok && id_ok) {
            self.fail(
                now,
                DownReason::AuthenticationFailed { by_peer: false },
                "authentication of the peer failed: its AUTH does not match our pre-shared key".into(),
            );
            return;
        }
        let chosen = payload_sa(&payloads).as_deref().and_then(chosen_esp);
        // The first CHILD_SA has no PFS group (its keys come from the IKE SA's key exchange).
        let acceptable = |s: &EspSuite| EspSuite { dh: None, ..*s }.offered_in(&self.cfg.esp_proposals);
        let Some((outbound_spi, suite)) = chosen.filter(|(_, s)| acceptable(s)) else {
            self.fail(
                now,
                DownReason::NoProposalChosen { by_peer: false },
                "peer chose an ESP proposal we did not offer".into(),
            );
            return;
        };
        let tsi = payload_ts(&payloads, true).unwrap_or_default();
        let tsr = payload_ts(&payloads, false).unwrap_or_default();
        let inbound_spi = *first_child_spi;
        let suite = EspSuite { dh: None, ..suite };
        let (local_ts, remote_ts) = (ts_to_prefixes(&tsi), ts_to_prefixes(&tsr));
        self.establish_with_child(now, FirstChild { inbound_spi, outbound_spi, suite, local_ts, remote_ts });
    }
}
