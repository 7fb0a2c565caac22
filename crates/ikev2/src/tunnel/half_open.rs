//! The responder's half-open IKE SAs: IKE_SA_INIT answered, IKE_AUTH not yet verified.
//!
//! Each is a [`HalfOpen`]: an IKE SA whose only state is the handshake IKE_AUTH signs, so nothing else can sit in
//! the table, and a half-open SA cannot be put where the tunnel keeps its own SAs without [`HalfOpen::promote`].
//! They live in their own bounded table, never in the tunnel's current IKE SA: anyone can send an IKE_SA_INIT
//! with the AWS endpoint's source address, so what such a request creates must stay apart from what is
//! established or being established. An entry leaves the table in one of three ways: it expires
//! ([`HALF_OPEN_TIMEOUT`]), the IKE_AUTH on it fails (it alone is dropped), or the peer's AUTH verifies and it is
//! promoted to the current IKE SA (only then may it replace anything). Requests the responder cannot accept
//! (no acceptable proposal, wrong KE group, malformed) are answered statelessly and touch nothing.
//!
//! Load: above `Config::cookie_threshold` half-open SAs (counted across every tunnel sharing a
//! [`HalfOpenCount`]), or when the tunnel's budget of unauthenticated Diffie-Hellman work is spent, a new
//! IKE_SA_INIT must return a cookie first (`cookie.rs`). At `Config::half_open_limit` entries (per tunnel, i.e.
//! per source address, like strongSwan's `block_threshold`) new requests are dropped until one leaves.

use super::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How long a responder keeps a half-open IKE SA waiting for IKE_AUTH.
pub(super) const HALF_OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// The number of half-open responder IKE SAs across every tunnel holding a clone (the relay shares one, see
/// [`Tunnel::share_half_open`]), compared with `Config::cookie_threshold`. Each tunnel's table keeps it exact:
/// entries are counted when added and uncounted when they leave, including when the tunnel is dropped.
#[derive(Debug, Clone, Default)]
pub struct HalfOpenCount(Arc<AtomicUsize>);

impl HalfOpenCount {
    pub fn new() -> HalfOpenCount {
        HalfOpenCount::default()
    }
    /// Half-open IKE SAs right now.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
    fn add(&self, n: usize) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    fn sub(&self, n: usize) {
        // Never below zero, whatever the order of updates from several tables.
        let _ = self.0.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(n)));
    }
}

/// One tunnel's half-open responder IKE SAs, oldest first, each with its expiry.
pub(super) struct HalfOpenTable {
    entries: Vec<(HalfOpen, Duration)>,
    count: HalfOpenCount,
}

impl Drop for HalfOpenTable {
    fn drop(&mut self) {
        self.count.sub(self.entries.len());
    }
}

impl HalfOpenTable {
    pub(super) fn new() -> HalfOpenTable {
        HalfOpenTable { entries: Vec::new(), count: HalfOpenCount::new() }
    }
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
    /// Half-open SAs across every tunnel sharing this table's count.
    pub(super) fn relay_wide(&self) -> usize {
        self.count.get()
    }
    pub(super) fn share(&mut self, count: HalfOpenCount) {
        self.count.sub(self.entries.len());
        count.add(self.entries.len());
        self.count = count;
    }
    /// Adds `sa`, created `now` (it expires [`HALF_OPEN_TIMEOUT`] later).
    fn insert(&mut self, sa: HalfOpen, now: Duration) {
        self.entries.push((sa, now + HALF_OPEN_TIMEOUT));
        self.count.add(1);
    }
    pub(super) fn remove(&mut self, i: usize) -> HalfOpen {
        self.count.sub(1);
        self.entries.remove(i).0
    }
    pub(super) fn clear(&mut self) {
        self.count.sub(self.entries.len());
        self.entries.clear();
    }
    pub(super) fn get(&self, i: usize) -> Option<&HalfOpen> {
        self.entries.get(i).map(|(sa, _)| sa)
    }
    pub(super) fn get_mut(&mut self, i: usize) -> Option<&mut HalfOpen> {
        self.entries.get_mut(i).map(|(sa, _)| sa)
    }
    /// The entry an IKE_SA_INIT with this initiator SPI created.
    fn by_initiator(&self, spi_i: u64) -> Option<&HalfOpen> {
        self.entries.iter().map(|(sa, _)| sa).find(|s| s.spi_i == spi_i)
    }
    /// The entry for an encrypted message with these SPIs.
    pub(super) fn position(&self, spi_i: u64, spi_r: u64) -> Option<usize> {
        self.entries.iter().position(|(s, _)| s.spi_i == spi_i && s.spi_r == spi_r)
    }
    pub(super) fn expire(&mut self, now: Duration) {
        let before = self.entries.len();
        self.entries.retain(|(_, expires_at)| now < *expires_at);
        self.count.sub(before - self.entries.len());
    }
    pub(super) fn next_expiry(&self) -> Option<Duration> {
        self.entries.iter().map(|(_, expires_at)| *expires_at).min()
    }
}

/// Why an IKE_SA_INIT request gets no new half-open SA (for tests of the load rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Admit,
    /// Answer with a COOKIE notify and keep nothing.
    DemandCookie,
    /// The tunnel's table is full: drop silently.
    Full,
}

fn unprotected_reply(h: Header, payloads: Vec<Payload>) -> Vec<u8> {
    Message {
        header: Header { spi_r: 0, flags: flags::RESPONSE, length: 0, next_payload: PayloadType::NONE, ..h },
        payloads,
    }
    .emit()
}

impl Tunnel {
    /// All half-open responder IKE SAs of every tunnel sharing `count` are counted together against
    /// `Config::cookie_threshold` (the relay passes one count to all its tunnels). Entries already in this tunnel's
    /// table move to the new count.
    pub fn share_half_open(&mut self, count: HalfOpenCount) {
        self.half_open.share(count);
    }

    /// Half-open responder IKE SAs of this tunnel.
    pub fn half_open(&self) -> usize {
        self.half_open.len()
    }

    fn admission(
        &mut self,
        now: Duration,
        msg: &Message,
        ni: &[u8],
        remote: SocketAddr,
    ) -> (Admission, Option<Vec<u8>>) {
        if self.half_open.len() >= self.cfg.half_open_limit {
            return (Admission::Full, None);
        }
        let loaded = self.half_open.relay_wide() >= self.cfg.cookie_threshold || !self.dh_budget.available(now);
        if !loaded {
            return (Admission::Admit, None);
        }
        let h = msg.header;
        let returned = find_notify(&msg.payloads, NotifyType::COOKIE).map(|n| n.data.as_slice());
        if returned.is_some_and(|c| self.cookies.verify(now, &mut self.rng, c, ni, h.spi_i, remote)) {
            return (Admission::Admit, None);
        }
        (Admission::DemandCookie, Some(self.cookies.issue(now, &mut self.rng, ni, h.spi_i, remote)))
    }

    /// Whether an IKE_SA_INIT request is a new one, to be looked at: not one with a responder SPI or a message ID
    /// (dropped), not a late copy of the request that created an SA we hold as responder (ignored), not a
    /// retransmission of a half-open SA's request (answered again from the table; another request reusing its SPI
    /// gets nothing).
    fn is_new_init_request(&mut self, h: &Header, data: &[u8], local_port: u16, remote: SocketAddr) -> bool {
        if h.spi_r != 0 || h.message_id != 0 {
            self.dropped(DropReason::UnexpectedExchange);
            return false;
        }
        let ours = |s: &IkeSa| !s.initiator && s.spi_i == h.spi_i;
        if self.ike.sa().is_some_and(ours) || self.retiring.iter().any(|r| ours(&r.sa)) {
            return false;
        }
        if let Some(sa) = self.half_open.by_initiator(h.spi_i) {
            if sa.state.init_request == data {
                let bytes = sa.state.init_response.clone();
                self.transmits.push_back(Transmit { local_port, remote, data: bytes });
            }
            return false;
        }
        true
    }

    /// An IKE_SA_INIT request (unauthenticated). Creates at most one half-open SA in the table, or answers
    /// statelessly; never touches the current IKE SA, the CHILD_SA or the peer's address.
    pub(super) fn handle_init_request(
        &mut self,
        now: Duration,
        msg: Message,
        data: &[u8],
        local_port: u16,
        remote: SocketAddr,
    ) {
        let h = msg.header;
        let reply = |t: &mut Tunnel, payloads: Vec<Payload>| {
            t.transmits.push_back(Transmit { local_port, remote, data: unprotected_reply(h, payloads) });
        };
        if !self.is_new_init_request(&h, data, local_port, remote) {
            return;
        }
        let init = InitPayloads::find(&msg.payloads).filter(|i| (MIN_NONCE..=MAX_NONCE).contains(&i.nonce.len()));
        let Some(InitPayloads { proposals, group, ke: ke_data, nonce: ni }) = init else {
            reply(self, vec![notify(NotifyType::INVALID_SYNTAX, vec![])]);
            return;
        };
        // Cookies first (RFC 7296 §2.6): under load nothing else is looked at until the initiator proves it
        // receives at its address.
        match self.admission(now, &msg, &ni, remote) {
            (Admission::Admit, _) => {}
            (Admission::DemandCookie, cookie) => {
                self.counters.cookies_sent += 1;
                reply(self, vec![notify(NotifyType::COOKIE, cookie.unwrap_or_default())]);
                return;
            }
            (Admission::Full, _) => {
                self.counters.half_open_refused += 1;
                return;
            }
        }
        let Some((number, suite)) = select_ike(&self.cfg.ike_proposals, &proposals, Some(group)) else {
            reply(self, vec![notify(NotifyType::NO_PROPOSAL_CHOSEN, vec![])]);
            self.note_refused(
                DownReason::NoProposalChosen { by_peer: false },
                "no proposal acceptable: peer's IKE proposals match none of ours",
            );
            return;
        };
        if suite.dh.id() != group {
            reply(self, vec![notify(NotifyType::INVALID_KE_PAYLOAD, suite.dh.id().to_be_bytes().to_vec())]);
            return;
        }
        if !nonce_fits(&ni, suite.prf) || ke_data.len() != suite.dh.public_len() {
            reply(self, vec![notify(NotifyType::INVALID_SYNTAX, vec![])]);
            return;
        }
        if !self.dh_budget.take(now) {
            // Only reached with a valid cookie: the sender receives at its address; still, no more work now.
            self.counters.half_open_refused += 1;
            return;
        }
        let dh = suite.dh.generate(&mut self.rng);
        let Ok(shared) = dh.shared_secret(&ke_data) else {
            reply(self, vec![notify(NotifyType::INVALID_SYNTAX, vec![])]);
            return;
        };
        let spi_r = rand_u64(&mut self.rng);
        let nr = nonce(&mut self.rng);
        let mut payloads = vec![suite_proposal_ike(&suite, number, None)];
        payloads.push(Payload::Ke { group: suite.dh.id(), data: dh.public_value().to_vec() });
        payloads.push(Payload::Nonce(nr.clone()));
        let local = SocketAddr::new(self.local.ip(), local_port);
        payloads.extend(nat_detection(self.cfg.force_encap, h.spi_i, spi_r, local, remote, &mut self.rng));
        // RFC 7383 §2.3: announce fragmentation only to a peer that announced it.
        let peer_fragmentation = find_notify(&msg.payloads, NotifyType::IKEV2_FRAGMENTATION_SUPPORTED).is_some();
        if peer_fragmentation {
            payloads.push(notify(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED, vec![]));
        }
        let header = Header { spi_r, flags: flags::RESPONSE, length: 0, next_payload: PayloadType::NONE, ..h };
        let response = Message { header, payloads }.emit();
        let Some(keys) = derive_ike(&suite, &ni, &nr, &shared, h.spi_i, spi_r, false) else { return };
        let nat_detected = find_notify(&msg.payloads, NotifyType::NAT_DETECTION_DESTINATION_IP)
            .is_some_and(|n| n.data != nat_hash(h.spi_i, 0, local));
        let new = NewIkeSa { spi_i: h.spi_i, spi_r, suite, keys };
        let init = (data.to_vec(), response.clone());
        self.half_open.insert(HalfOpen::new(new, (ni, nr), init, peer_fragmentation, nat_detected), now);
        self.transmits.push_back(Transmit { local_port, remote, data: response });
    }

    /// An encrypted request whose SPIs are those of half-open SA `i`: checked against its window and decrypted
    /// with its keys, then [`Tunnel::respond_auth`]. Keys from an unauthenticated IKE_SA_INIT prove nothing yet:
    /// only the AUTH inside may; until then nothing but the entry changes.
    pub(super) fn half_open_request(
        &mut self,
        now: Duration,
        i: usize,
        msg: Message,
        data: &[u8],
        local_port: u16,
        remote: SocketAddr,
    ) {
        let Some(sa) = self.half_open.get_mut(i) else { return };
        let window = sa.window(&msg);
        if !self.act_on_window(window, local_port, remote) {
            return;
        }
        let Some(sa) = self.half_open.get_mut(i) else { return };
        let decrypted = decrypt(sa, &msg, data);
        let Some(payloads) = self.whole_message(decrypted) else { return };
        self.respond_auth(now, i, Request { h: msg.header, local_port, remote }, payloads);
    }

    /// Answers `req` on half-open SA `i` (see [`Tunnel::respond_on`]).
    fn respond_half_open(&mut self, i: usize, req: Request, payloads: Vec<Payload>) {
        let fragment_size = self.cfg.fragment_size;
        let Some(sa) = self.half_open.get_mut(i) else { return };
        let datagrams = sa.answer(req, &payloads, fragment_size, &mut self.rng);
        self.send_answer(req, datagrams);
    }

    /// The peer's IKE_AUTH on half-open SA `i` (decrypted with its keys). Nothing outside the entry changes
    /// unless the peer's AUTH verifies; then the entry is promoted and replaces whatever IKE SA and CHILD_SA the
    /// tunnel had (the authenticated peer started over).
    fn respond_auth(&mut self, now: Duration, i: usize, req: Request, payloads: Vec<Payload>) {
        if req.h.exchange != ExchangeType::IKE_AUTH {
            self.dropped(DropReason::UnexpectedExchange);
            return;
        }
        match self.half_open_auth(i, &payloads) {
            None => return,
            Some(Err((ty, reason, message))) => {
                self.respond_half_open(i, req, vec![notify(ty, vec![])]);
                self.half_open.remove(i);
                self.note_refused(reason, message);
                return;
            }
            // The peer is authenticated from here on.
            Some(Ok(())) => {}
        }
        let Some(sa) = self.half_open.get(i) else { return };
        let proposals = payload_sa(&payloads).unwrap_or_default();
        let (tsi, tsr) =
            (payload_ts(&payloads, true).unwrap_or_default(), payload_ts(&payloads, false).unwrap_or_default());
        let chosen = select_esp(&self.cfg.esp_proposals, &proposals, false);
        let tsi_n = narrow(&tsi, &self.cfg.remote_ts);
        let tsr_n = narrow(&tsr, &self.cfg.local_ts);
        let idr = identity_payload(&self.cfg.local_id);
        let our_auth = self.auth_octets(sa, &sa.state, true, &idr);
        let mut resp = vec![Payload::IdR(idr), Payload::Auth { method: AuthMethod::SHARED_KEY_MIC, data: our_auth }];
        let child_error = match (&chosen, tsi_n.is_empty() || tsr_n.is_empty()) {
            (None, _) => Some(NotifyType::NO_PROPOSAL_CHOSEN),
            (_, true) => Some(NotifyType::TS_UNACCEPTABLE),
            _ => None,
        };
        if let Some(err) = child_error {
            resp.push(notify(err, vec![]));
            self.respond_half_open(i, req, resp);
            // The peer is authenticated: it started over, and whatever the tunnel had goes. The SA itself ends
            // with the failure (a responder's IKE SA is established only with its first CHILD_SA).
            self.half_open.remove(i);
            self.start_over(req.local_port, req.remote);
            let what = if err == NotifyType::NO_PROPOSAL_CHOSEN {
                "ESP proposals match none of ours"
            } else {
                "traffic selectors do not overlap ours"
            };
            self.fail(now, reason_for(err, false), format!("CHILD_SA refused: peer's {what}"));
            return;
        }
        let Some((number, outbound_spi, suite)) = chosen else { return };
        let inbound_spi = rand_u32(&mut self.rng);
        resp.push(suite_proposal_esp(&suite, number, inbound_spi));
        resp.push(Payload::TsI(tsi_n.clone()));
        resp.push(Payload::TsR(tsr_n.clone()));
        self.respond_half_open(i, req, resp);
        let (sa, handshake) = self.half_open.remove(i).promote(self.ike_lifetime(now));
        self.start_over(req.local_port, req.remote);
        self.ike = CurrentIke::Sa(Box::new(sa));
        let (local_ts, remote_ts) = (ts_to_prefixes(&tsr_n), ts_to_prefixes(&tsi_n));
        self.established(now, handshake, FirstChild { inbound_spi, outbound_spi, suite, local_ts, remote_ts });
    }

    /// Whether the peer's IKE_AUTH request on half-open SA `i` authenticates it (IDi and AUTH present, AUTH
    /// matches our PSK, IDi the configured remote identity): Ok, or the error notify, reason and status message to
    /// refuse it with. None when the SA has no keys (nothing can be answered).
    fn half_open_auth(
        &self,
        i: usize,
        payloads: &[Payload],
    ) -> Option<Result<(), (NotifyType, DownReason, &'static str)>> {
        let idi = payloads.iter().find_map(|p| if let Payload::IdI(i) = p { Some(i.clone()) } else { None });
        let auth = payloads
            .iter()
            .find_map(|p| if let Payload::Auth { method, data } = p { Some((*method, data.clone())) } else { None });
        let (Some(idi), Some((method, auth))) = (idi, auth) else {
            let message = "IKE_AUTH request without IDi or AUTH";
            return Some(Err((NotifyType::INVALID_SYNTAX, DownReason::InvalidSyntax, message)));
        };
        let sa = self.half_open.get(i)?;
        let (auth_ok, id_ok) = self.verify_peer_auth((sa, &sa.state), &idi, method, &auth);
        if auth_ok && id_ok {
            return Some(Ok(()));
        }
        let message = if id_ok {
            "authentication of the peer failed: peer's AUTH does not match our pre-shared key"
        } else {
            "authentication of the peer failed: peer's identity is not the configured remote identity"
        };
        Some(Err((NotifyType::AUTHENTICATION_FAILED, DownReason::AuthenticationFailed { by_peer: false }, message)))
    }

    /// The peer authenticated on a half-open SA: it started over. One IKE SA per tunnel: whatever the tunnel had
    /// (our own handshake, or an established SA the peer has forgotten) and its CHILD_SA are gone, and the
    /// caller puts the promoted SA in its place (or fails). The peer's address is followed, as after any
    /// authenticated message.
    fn start_over(&mut self, local_port: u16, remote: SocketAddr) {
        self.drop_child();
        self.forget_rekeys();
        self.ike = CurrentIke::None;
        self.reconnect_at = None;
        self.local_port = local_port;
        self.remote = remote;
    }

    /// Something unauthenticated was refused (a proposal, a failed AUTH on a half-open SA). While the tunnel has
    /// no IKE SA at all, that is what status reports (e.g. `NoProposalChosen` for a misconfigured peer); an
    /// established or authenticating SA, the reconnect timer and the counters of failures are never touched.
    fn note_refused(&mut self, reason: DownReason, message: &str) {
        if !self.ike.is_none() {
            self.dropped(DropReason::RefusedHandshake);
            return;
        }
        self.last_error = Some(message.to_string());
        self.last_down = Some(reason.clone());
        self.events.push_back(Event::IkeSaDown { reason });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A half-open SA with keys from a fixed secret (the table looks only at its SPIs and age).
    fn entry(spi_i: u64) -> HalfOpen {
        let (encr, integ, prf, dh) = (Encr::AesCbc128, Some(Integ::HmacSha1_96), Prf::HmacSha1, DhGroup::Modp2048);
        let suite = IkeSuite { encr, integ, prf, dh };
        let keys = keys_from(&suite, &[1; 20], &[2; 32], &[3; 32], spi_i, 9, false).expect("keys");
        let new = NewIkeSa { spi_i, spi_r: 9, suite, keys };
        HalfOpen::new(new, (vec![2; 32], vec![3; 32]), (vec![], vec![]), false, false)
    }

    #[test]
    fn the_shared_count_follows_every_table_and_survives_drops() {
        let shared = HalfOpenCount::new();
        let now = Duration::from_secs(5);
        let mut a = HalfOpenTable::new();
        a.insert(entry(1), now);
        a.share(shared.clone());
        let mut b = HalfOpenTable::new();
        b.share(shared.clone());
        b.insert(entry(2), now);
        b.insert(entry(3), now + Duration::from_secs(10));
        assert_eq!(shared.get(), 3);
        b.remove(0);
        assert_eq!(shared.get(), 2);
        b.expire(now + HALF_OPEN_TIMEOUT);
        assert_eq!((shared.get(), b.len(), a.len()), (2, 1, 1));
        a.expire(now + HALF_OPEN_TIMEOUT);
        assert_eq!((shared.get(), a.len()), (1, 0));
        drop(b);
        assert_eq!(shared.get(), 0);
        a.clear();
        assert_eq!(shared.get(), 0);
    }
}
