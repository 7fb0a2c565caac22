//! Time: every deadline of a tunnel (reconnect backoff, retransmissions, rekeys, DPD, expiry of retiring and
//! half-open SAs) is a row of one table, `Tunnel::deadlines`, which both `poll_timeout` and `handle_timeout` read.

use super::*;

/// Slow retry after a failure that needs a configuration change (auth failed, no proposal): never a hot loop.
pub(super) const PERMANENT_RETRY_MIN: Duration = Duration::from_secs(30);
pub(super) const PERMANENT_RETRY_MAX: Duration = Duration::from_secs(300);
pub(super) const TRANSIENT_RETRY_MIN: Duration = Duration::from_secs(2);
pub(super) const TRANSIENT_RETRY_MAX: Duration = Duration::from_secs(60);

/// When to retry a refused rekey: after TEMPORARY_FAILURE (a collision) soon, with random jitter so two peers
/// that collided do not collide again; after a refusal, in 30 s.
pub(super) fn retry_delay(ty: NotifyType, rng: &mut dyn RandomSource) -> Duration {
    let mut b = [0u8; 2];
    rng.fill_bytes(&mut b);
    let jitter = Duration::from_millis(u64::from(u16::from_be_bytes(b)) % 4000);
    if ty == NotifyType::TEMPORARY_FAILURE { Duration::from_secs(1) + jitter } else { Duration::from_secs(30) + jitter }
}

/// What a deadline of [`Tunnel::deadlines`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timer {
    /// Start a new IKE SA (after a failure, with backoff); only while there is none.
    Reconnect,
    /// Forget a retiring IKE SA (by local SPI) that has nothing in flight.
    ForgetRetiring(u64),
    /// Resend the request in flight, or give it up: on the current IKE SA (`None`) or a retiring one (its local SPI).
    Retransmit(Option<u64>),
    /// Drop half-open responder SAs whose IKE_AUTH did not come.
    HalfOpenExpiry,
    /// DELETE the previous inbound CHILD_SA (by inbound SPI) after a rekey. This and the timers below need the
    /// request window of the established IKE SA; at most one of them fires per call.
    DeleteOldInbound(u32),
    IkeRekey,
    ChildRekey,
    /// Nothing heard from the peer for `dpd_interval`: an empty INFORMATIONAL.
    Dpd,
}

impl Tunnel {
    pub(super) fn rekey_time(&mut self, now: Duration, lifetime: Duration, margin: Duration) -> Duration {
        let base = lifetime.saturating_sub(margin);
        let fuzz_ms = self.cfg.rekey_fuzz.as_millis() as u64;
        let jitter = if fuzz_ms == 0 {
            0
        } else {
            let mut b = [0u8; 8];
            self.rng.fill_bytes(&mut b);
            u64::from_be_bytes(b) % fuzz_ms
        };
        now + base.saturating_sub(Duration::from_millis(jitter)).max(Duration::from_secs(1))
    }

    /// Call when `now >= poll_timeout()`: serves every due entry of `Tunnel::deadlines` in its order, and stops
    /// after an entry that replaced the IKE SA or put a request in the window.
    pub fn handle_timeout(&mut self, now: Duration) {
        let due: Vec<Timer> = self.deadlines().into_iter().filter(|(at, _)| now >= *at).map(|(_, t)| t).collect();
        for timer in due {
            if !self.fire(now, timer) {
                return;
            }
        }
    }

    /// The earliest time `handle_timeout` must be called: the first entry of `Tunnel::deadlines` (the one timer table).
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.deadlines().into_iter().map(|(at, _)| at).min()
    }

    /// Every deadline of the tunnel, in the order `handle_timeout` serves them: the one table that both
    /// `poll_timeout` and `handle_timeout` read, so a timer cannot be known to one and missed by the other.
    pub(super) fn deadlines(&self) -> Vec<(Duration, Timer)> {
        let mut t = Vec::new();
        if let Some(at) = self.reconnect_at
            && self.ike.is_none()
        {
            t.push((at, Timer::Reconnect));
        }
        // Retiring IKE SAs: forgotten once nothing is in flight on them and the peer had its time to delete them.
        for r in self.retiring.iter().filter(|r| r.sa.pending.is_none()) {
            t.push((r.forget_at, Timer::ForgetRetiring(r.sa.local_spi())));
        }
        if let Some(at) = self.ike.retransmit_at() {
            t.push((at, Timer::Retransmit(None)));
        }
        for r in &self.retiring {
            if let Some(p) = &r.sa.pending {
                t.push((p.next_at, Timer::Retransmit(Some(r.sa.local_spi()))));
            }
        }
        if let Some(at) = self.half_open.next_expiry() {
            t.push((at, Timer::HalfOpenExpiry));
        }
        // Work that needs a free request window on an established SA.
        if let Some(sa) = self.ike.sa()
            && let Some(lifetime) = sa.lifetime()
            && sa.pending.is_none()
            && !self.closed
        {
            for o in self.old_inbound.iter().filter(|o| !o.delete_sent) {
                t.push((o.delete_at, Timer::DeleteOldInbound(o.inbound_spi)));
            }
            t.push((lifetime.rekey_at, Timer::IkeRekey));
            if let Some(c) = &self.child {
                t.push((c.rekey_at, Timer::ChildRekey));
            }
            t.push((self.last_recv + self.cfg.dpd_interval, Timer::Dpd));
        }
        t
    }

    /// Serves one due timer. False when `handle_timeout` must stop: the IKE SA was replaced or given up, or a
    /// request now occupies the window (the entries after it in the table no longer hold).
    fn fire(&mut self, now: Duration, timer: Timer) -> bool {
        match timer {
            Timer::Reconnect => {
                self.connect(now);
                false
            }
            Timer::ForgetRetiring(spi) => {
                self.retiring.retain(|r| r.sa.pending.is_some() || r.sa.local_spi() != spi);
                true
            }
            Timer::Retransmit(spi) => self.retransmit(now, spi),
            Timer::HalfOpenExpiry => {
                self.half_open.expire(now);
                true
            }
            Timer::DeleteOldInbound(spi) => {
                let req = Req::DeleteChild { inbound_spi: spi };
                self.send_request(now, ExchangeType::INFORMATIONAL, vec![delete_esp(&[spi])], req);
                // The old inbound SA keeps accepting until the peer answers (window.rs): what the peer sent on it
                // before our DELETE reached it is still delivered.
                if let Some(o) = self.old_inbound.iter_mut().find(|o| o.inbound_spi == spi) {
                    o.delete_sent = true;
                }
                false
            }
            Timer::IkeRekey => {
                self.start_ike_rekey(now);
                false
            }
            Timer::ChildRekey => {
                self.start_child_rekey(now);
                false
            }
            Timer::Dpd => {
                self.send_request(now, ExchangeType::INFORMATIONAL, vec![], Req::Dpd);
                false
            }
        }
    }

    /// The sidecar saw a valid ESP packet on this tunnel's CHILD_SA: the peer is alive (saves a DPD).
    pub fn note_inbound_traffic(&mut self, now: Duration) {
        if now > self.last_recv {
            self.last_recv = now;
        }
    }
}
