//! The request window (RFC 7296 §2.3, size 1): the request in flight with its retransmissions, and the cache of
//! our last response so a retransmitted request gets the same answer.

use super::*;

/// A request from the peer as it arrived: its header (exchange, message ID, SPIs) and the path it came on,
/// which its answer takes (the peer's address and port, and our port, 500 or 4500).
#[derive(Debug, Clone, Copy)]
pub(super) struct Request {
    pub(super) h: Header,
    pub(super) local_port: u16,
    pub(super) remote: SocketAddr,
}

pub(super) enum Req {
    Init,
    Auth,
    Dpd,
    DeleteIke,
    /// A DELETE of the CHILD_SA whose inbound half has this SPI (kept until the answer).
    DeleteChild {
        inbound_spi: u32,
    },
    RekeyChild {
        dh: Option<DhSecret>,
        ni: Vec<u8>,
        new_in_spi: u32,
    },
    RekeyIke {
        dh: DhSecret,
        ni: Vec<u8>,
        new_spi: u64,
    },
}

pub(super) struct Pending {
    pub(super) id: u32,
    /// The request as sent: one datagram, or its RFC 7383 fragments.
    pub(super) datagrams: Vec<Vec<u8>>,
    pub(super) first_sent: Duration,
    pub(super) tries: u32,
    pub(super) next_at: Duration,
    pub(super) req: Req,
}

impl Pending {
    /// A request just sent for the first time; the first retransmission is due at `next_at`.
    pub(super) fn new(id: u32, datagrams: Vec<Vec<u8>>, now: Duration, next_at: Duration, req: Req) -> Pending {
        Pending { id, datagrams, first_sent: now, tries: 1, next_at, req }
    }
}

impl Tunnel {
    /// Queues a request on the current IKE SA (window size 1: the caller checks nothing is pending).
    pub(super) fn send_request(&mut self, now: Duration, exchange: ExchangeType, payloads: Vec<Payload>, req: Req) {
        let initial = self.cfg.retransmit.initial;
        let Some(sa) = self.ike.sa_mut() else { return };
        let id = sa.my_next_id;
        let datagrams = encrypt_all(sa, exchange, false, id, &payloads, self.cfg.fragment_size, &mut self.rng);
        sa.my_next_id += 1;
        for d in &datagrams {
            self.transmits.push_back(Transmit { local_port: self.local_port, remote: self.remote, data: d.clone() });
        }
        sa.pending = Some(Pending::new(id, datagrams, now, now + initial, req));
    }

    /// Answers `req` on the current IKE SA (see [`Tunnel::respond_on`]).
    pub(super) fn send_response(&mut self, req: Request, payloads: Vec<Payload>) {
        self.respond_on(Which::Current, req, payloads);
    }

    /// Answers `req` on the IKE SA `which`, by the path it came on, and caches the answer for retransmissions of
    /// the request.
    pub(super) fn respond_on(&mut self, which: Which, req: Request, payloads: Vec<Payload>) {
        let fragment_size = self.cfg.fragment_size;
        let Some((sa, rng)) = self.sa_and_rng(which) else { return };
        let datagrams = encrypt_all(sa, req.h.exchange, true, req.h.message_id, &payloads, fragment_size, rng);
        sa.peer_next_id = req.h.message_id.wrapping_add(1);
        sa.last_response = Some((req.h.message_id, datagrams.clone()));
        for data in datagrams {
            self.transmits.push_back(Transmit { local_port: req.local_port, remote: req.remote, data });
        }
    }

    pub(super) fn handle_response(&mut self, now: Duration, h: Header, payloads: Vec<Payload>) {
        let _ = h;
        let Some(sa) = self.ike.sa_mut() else { return };
        let Some(pending) = sa.pending.take() else { return };
        match pending.req {
            Req::Init => {}
            Req::Auth => self.auth_response(now, payloads),
            Req::Dpd => {}
            Req::DeleteIke => {
                self.ike = CurrentIke::None;
            }
            // The peer has processed our DELETE: it sends nothing more on the old SA, whose inbound half goes now.
            // (Until then the peer may still send on it: strongSwan, as the responder of our rekey, switches its
            // outbound to the new SA only when our DELETE arrives.)
            Req::DeleteChild { inbound_spi } => self.forget_old_inbound(inbound_spi),
            Req::RekeyChild { dh, ni, new_in_spi } => self.child_rekey_response(now, payloads, dh, ni, new_in_spi),
            Req::RekeyIke { dh, ni, new_spi } => self.ike_rekey_response(now, payloads, dh, ni, new_spi),
        }
    }

    /// The retransmission timer of the request in flight on the current IKE SA (`None`) or on the retiring one
    /// with this local SPI: resend it (timeout `initial * multiplier^n`, capped), or give the exchange up after
    /// `max_tries` sends (or `dpd_timeout` on an established SA). Giving up ends the current IKE SA (false: the
    /// caller stops) or forgets the retiring one.
    pub(super) fn retransmit(&mut self, now: Duration, retiring_spi: Option<u64>) -> bool {
        let rt = self.cfg.retransmit;
        let dpd_timeout = self.cfg.dpd_timeout;
        let which = match retiring_spi {
            None => Which::Current,
            Some(spi) => match self.retiring.iter().position(|r| r.sa.local_spi() == spi) {
                Some(i) => Which::Retiring(i),
                None => return true,
            },
        };
        let in_flight = match which {
            Which::Current => self.ike.pending_mut(),
            _ => self.sa_mut(which).and_then(|sa| {
                let established = sa.is_established();
                sa.pending.as_mut().map(|p| (established, p))
            }),
        };
        let Some((established, p)) = in_flight else { return true };
        if now < p.next_at {
            return true;
        }
        let out_of_time = established && now.saturating_sub(p.first_sent) >= dpd_timeout;
        if p.tries >= rt.max_tries || out_of_time {
            if let Which::Retiring(i) = which {
                self.retiring.remove(i);
                return true;
            }
            if matches!(p.req, Req::DeleteIke) {
                self.ike = CurrentIke::None;
            } else {
                let msg =
                    if established { "peer did not answer (dead peer detection)" } else { "no response from peer" };
                self.fail(now, DownReason::DeadPeer, msg.into());
            }
            return false;
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
        true
    }

    /// Whether a message on `which` is the next in its direction (RFC 7296 §2.3): a request with the message ID
    /// we expect, or the response to our request in flight. A retransmitted request is answered from the cache
    /// here, before anything is decrypted. False when the message was answered or dropped.
    pub(super) fn in_window(&mut self, which: Which, msg: &Message, local_port: u16, remote: SocketAddr) -> bool {
        let h = msg.header;
        let Some(sa) = self.sa_mut(which) else { return false };
        if h.is_response() {
            if sa.pending.as_ref().map(|p| p.id) != Some(h.message_id) {
                self.dropped(DropReason::UnexpectedMessageId);
                return false;
            }
            return true;
        }
        if let Some((id, datagrams)) = &sa.last_response
            && *id == h.message_id
        {
            // A fragmented request is answered again only on its first fragment (RFC 7383 §2.6.1).
            let later_fragment = matches!(msg.payloads.last(), Some(Payload::Skf { number, .. }) if *number != 1);
            if !later_fragment {
                for d in datagrams.clone() {
                    self.transmits.push_back(Transmit { local_port, remote, data: d });
                }
            }
            return false;
        }
        if h.message_id != sa.peer_next_id {
            self.dropped(DropReason::UnexpectedMessageId);
            return false;
        }
        true
    }
}
