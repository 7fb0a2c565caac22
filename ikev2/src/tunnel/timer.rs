//! Time: retransmissions, reconnect backoff, rekey and DPD deadlines, expiry of retiring and half-open SAs.

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

impl Tunnel {
    pub(super) fn rekey_time(
        &self,
        now: Duration,
        lifetime: Duration,
        margin: Duration,
        rng: &mut dyn RandomSource,
    ) -> Duration {
        let base = lifetime.saturating_sub(margin);
        let fuzz_ms = self.cfg.rekey_fuzz.as_millis() as u64;
        let jitter = if fuzz_ms == 0 {
            0
        } else {
            let mut b = [0u8; 8];
            rng.fill_bytes(&mut b);
            u64::from_be_bytes(b) % fuzz_ms
        };
        now + base.saturating_sub(Duration::from_millis(jitter)).max(Duration::from_secs(1))
    }

    /// Call when `now >= poll_timeout()`.
    pub fn handle_timeout(&mut self, now: Duration, rng: &mut dyn RandomSource) {
        if let Some(at) = self.reconnect_at
            && now >= at
            && self.ike.is_none()
        {
            self.connect(now, rng);
            return;
        }
        // Retransmissions.
        let rt = self.cfg.retransmit;
        let dpd_timeout = self.cfg.dpd_timeout;
        // Retiring IKE SAs: forgotten once nothing is in flight on them and the peer had its time to delete them.
        self.retiring.retain(|r| r.sa.pending.is_some() || now < r.forget_at);
        let mut gave_up = Vec::new();
        for which in std::iter::once(Which::Current).chain((0..self.retiring.len()).map(Which::Retiring)) {
            let Some(sa) = self.sa_mut(which) else { continue };
            let established = sa.state == IkeState::Established;
            let Some(p) = sa.pending.as_mut() else { continue };
            if now < p.next_at {
                continue;
            }
            let out_of_time = established && now.saturating_sub(p.first_sent) >= dpd_timeout;
            if p.tries >= rt.max_tries || out_of_time {
                if let Which::Retiring(i) = which {
                    gave_up.push(i);
                    continue;
                }
                let closing = matches!(p.req, Req::DeleteIke);
                if closing {
                    self.ike = None;
                } else {
                    let msg =
                        if established { "peer did not answer (dead peer detection)" } else { "no response from peer" };
                    self.fail(now, DownReason::DeadPeer, msg.into());
                }
                return;
            }
            let exp = rt.multiplier.powi(p.tries as i32);
            let wait = Duration::from_secs_f64((rt.initial.as_secs_f64() * exp).min(rt.max_timeout.as_secs_f64()));
            p.tries += 1;
            p.next_at = now + wait;
            let datagrams = p.datagrams.clone();
            self.counters.retransmits += 1;
            for data in datagrams {
                self.transmits.push_back(Transmit { local_port: self.local_port, remote: self.remote, data });
            }
        }
        for i in gave_up.into_iter().rev() {
            self.retiring.remove(i);
        }
        // Half-open responder SAs expire (only they: the current SA is never half-open).
        self.half_open.expire(now);
        // Work that needs a free request window on an established SA.
        let Some(sa) = self.ike.as_ref() else { return };
        if sa.state != IkeState::Established || sa.pending.is_some() || self.closed {
            return;
        }
        if let Some(i) = self.old_inbound.iter().position(|o| now >= o.delete_at) {
            let spi = self.old_inbound[i].inbound_spi;
            // Push the deadline out so the entry is not picked again while its DELETE is in flight.
            self.old_inbound[i].delete_at = now + Duration::from_secs(3600);
            let del = Payload::Delete(Delete {
                protocol: ProtocolId::ESP,
                spi_size: 4,
                spis: vec![spi.to_be_bytes().to_vec()],
            });
            self.send_request(now, rng, ExchangeType::INFORMATIONAL, vec![del], Req::DeleteChild);
            // The old inbound SA is removed now: packets on it after this point are late by design.
            let o = self.old_inbound.remove(i);
            self.emit(Event::ChildSaDeleted { inbound_spi: o.inbound_spi, outbound_spi: o.outbound_spi });
            return;
        }
        if now >= sa.rekey_at {
            self.start_ike_rekey(now, rng);
            return;
        }
        if self.child.as_ref().is_some_and(|c| now >= c.rekey_at) {
            self.start_child_rekey(now, rng);
            return;
        }
        if now >= self.last_recv + self.cfg.dpd_interval {
            self.send_request(now, rng, ExchangeType::INFORMATIONAL, vec![], Req::Dpd);
        }
    }

    /// The sidecar saw a valid ESP packet on this tunnel's CHILD_SA: the peer is alive (saves a DPD).
    pub fn note_inbound_traffic(&mut self, now: Duration) {
        if now > self.last_recv {
            self.last_recv = now;
        }
    }

    /// The earliest time `handle_timeout` must be called.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let mut t: Option<Duration> = None;
        let mut consider = |d: Duration| t = Some(t.map_or(d, |x| x.min(d)));
        if let Some(r) = self.reconnect_at
            && self.ike.is_none()
        {
            consider(r);
        }
        if let Some(p) = self.ike.as_ref().and_then(|s| s.pending.as_ref()) {
            consider(p.next_at);
        }
        for r in &self.retiring {
            match &r.sa.pending {
                Some(p) => consider(p.next_at),
                None => consider(r.forget_at),
            }
        }
        if let Some(sa) = &self.ike
            && sa.state == IkeState::Established
            && sa.pending.is_none()
            && !self.closed
        {
            consider(sa.rekey_at);
            consider(self.last_recv + self.cfg.dpd_interval);
            if let Some(c) = &self.child {
                consider(c.rekey_at);
            }
            for o in &self.old_inbound {
                consider(o.delete_at);
            }
        }
        if let Some(at) = self.half_open.next_expiry() {
            consider(at);
        }
        t
    }
}
