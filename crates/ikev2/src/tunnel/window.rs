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

/// What a request on an IKE SA with keys was, so its answer can be acted on. (Our IKE_SA_INIT is not one: it is
/// in flight only before the SA has keys, on [`InitExchange`], whose offer says what its answer continues.)
pub(super) enum Req {
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

/// A request in flight, with its retransmission state. `R` says what the answer continues: a [`Req`] on an IKE
/// SA, nothing for our IKE_SA_INIT (its [`InitExchange`] holds the offer).
pub(super) struct Pending<R = Req> {
    pub(super) id: u32,
    /// The request as sent: one datagram, or its RFC 7383 fragments.
    pub(super) datagrams: Vec<Vec<u8>>,
    pub(super) first_sent: Duration,
    pub(super) tries: u32,
    pub(super) next_at: Duration,
    pub(super) req: R,
}

impl<R> Pending<R> {
    /// A request just sent for the first time; the first retransmission is due at `next_at`.
    pub(super) fn new(id: u32, datagrams: Vec<Vec<u8>>, now: Duration, next_at: Duration, req: R) -> Pending<R> {
        Pending { id, datagrams, first_sent: now, tries: 1, next_at, req }
    }

    /// The retransmission timer fired at `now`: wait, resend (timeout `initial * multiplier^n`, capped), or give
    /// up after `max_tries` sends or, when `dpd_timeout` is given (an established SA), after that long.
    fn on_timer(&mut self, now: Duration, rt: &RetransmitConfig, dpd_timeout: Option<Duration>) -> Retry {
        if now < self.next_at {
            return Retry::Wait;
        }
        let out_of_time = dpd_timeout.is_some_and(|t| now.saturating_sub(self.first_sent) >= t);
        if self.tries >= rt.max_tries || out_of_time {
            return Retry::GiveUp;
        }
        let exp = rt.multiplier.powi(self.tries as i32);
        let wait = Duration::from_secs_f64((rt.initial.as_secs_f64() * exp).min(rt.max_timeout.as_secs_f64()));
        self.tries += 1;
        self.next_at = now + wait;
        Retry::Resend(self.datagrams.clone())
    }
}

/// What the retransmission timer of a request in flight says.
enum Retry {
    Wait,
    Resend(Vec<Vec<u8>>),
    GiveUp,
}

impl IkeSa {
    /// The retransmission timer of the request in flight on this SA (None: nothing is), and whether the SA is
    /// established.
    fn on_timer(&mut self, now: Duration, rt: &RetransmitConfig, dpd_timeout: Duration) -> Option<(Retry, bool)> {
        let established = self.is_established();
        let retry = self.pending.as_mut()?.on_timer(now, rt, established.then_some(dpd_timeout));
        Some((retry, established))
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
        let datagrams = sa.answer(req, &payloads, fragment_size, rng);
        self.send_answer(req, datagrams);
    }

    /// Sends the datagrams of our answer to `req` by the path it came on.
    pub(super) fn send_answer(&mut self, req: Request, datagrams: Vec<Vec<u8>>) {
        for data in datagrams {
            self.transmits.push_back(Transmit { local_port: req.local_port, remote: req.remote, data });
        }
    }

    /// The answer to the request in flight on the current IKE SA (authenticated, in its window).
    pub(super) fn handle_response(&mut self, now: Duration, payloads: Vec<Payload>) {
        let Some(sa) = self.ike.sa_mut() else { return };
        let Some(pending) = sa.pending.take() else { return };
        match pending.req {
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
        let timer = match which {
            Which::Current => match &mut self.ike {
                CurrentIke::None => None,
                CurrentIke::Initiating(ex) => Some((ex.sent.on_timer(now, &rt, None), false)),
                CurrentIke::Sa(sa) => sa.on_timer(now, &rt, dpd_timeout),
            },
            _ => self.sa_mut(which).and_then(|sa| sa.on_timer(now, &rt, dpd_timeout)),
        };
        let Some((retry, established)) = timer else { return true };
        match retry {
            Retry::Wait => true,
            Retry::Resend(datagrams) => {
                self.counters.retransmits += 1;
                for data in datagrams {
                    self.transmits.push_back(Transmit { local_port: self.local_port, remote: self.remote, data });
                }
                true
            }
            Retry::GiveUp => {
                if let Which::Retiring(i) = which {
                    self.retiring.remove(i);
                    return true;
                }
                let deleting =
                    self.ike.sa().and_then(|s| s.pending.as_ref()).is_some_and(|p| matches!(p.req, Req::DeleteIke));
                if deleting {
                    self.ike = CurrentIke::None;
                } else {
                    let msg =
                        if established { "peer did not answer (dead peer detection)" } else { "no response from peer" };
                    self.fail(now, DownReason::DeadPeer, msg.into());
                }
                false
            }
        }
    }

    /// Whether a message on `which` is the next in its direction (see [`IkeSa::window`]); a retransmitted
    /// request is answered from the cache here, before anything is decrypted. False when the message was answered
    /// or dropped.
    pub(super) fn in_window(&mut self, which: Which, msg: &Message, local_port: u16, remote: SocketAddr) -> bool {
        let Some(sa) = self.sa_mut(which) else { return false };
        let window = sa.window(msg);
        self.act_on_window(window, local_port, remote)
    }

    /// Acts on where a message stands in its SA's window: true to go on with it.
    pub(super) fn act_on_window(&mut self, window: Window, local_port: u16, remote: SocketAddr) -> bool {
        match window {
            Window::Next => true,
            Window::Again(datagrams) => {
                for data in datagrams {
                    self.transmits.push_back(Transmit { local_port, remote, data });
                }
                false
            }
            Window::Unexpected => {
                self.dropped(DropReason::UnexpectedMessageId);
                false
            }
        }
    }
}

/// Where a message stands in its IKE SA's window (RFC 7296 §2.3).
pub(super) enum Window {
    /// A request with the message ID we expect, or the response to our request in flight.
    Next,
    /// A retransmission of the request we last answered: our answer to send again (nothing for a later fragment
    /// of a fragmented request, which is answered again only on its first, RFC 7383 §2.6.1).
    Again(Vec<Vec<u8>>),
    Unexpected,
}

impl<S> IkeSa<S> {
    /// Where `msg` stands in this SA's window.
    pub(super) fn window(&self, msg: &Message) -> Window {
        let h = msg.header;
        if h.is_response() {
            if self.pending.as_ref().map(|p| p.id) != Some(h.message_id) {
                return Window::Unexpected;
            }
            return Window::Next;
        }
        if let Some((id, datagrams)) = &self.last_response
            && *id == h.message_id
        {
            let later_fragment = matches!(msg.payloads.last(), Some(Payload::Skf { number, .. }) if *number != 1);
            return Window::Again(if later_fragment { Vec::new() } else { datagrams.clone() });
        }
        if h.message_id != self.peer_next_id {
            return Window::Unexpected;
        }
        Window::Next
    }

    /// Seals our answer to `req` (the datagrams to send) and caches it for retransmissions of the request.
    pub(super) fn answer(
        &mut self,
        req: Request,
        payloads: &[Payload],
        fragment_size: usize,
        rng: &mut dyn RandomSource,
    ) -> Vec<Vec<u8>> {
        let datagrams = encrypt_all(self, req.h.exchange, true, req.h.message_id, payloads, fragment_size, rng);
        self.peer_next_id = req.h.message_id.wrapping_add(1);
        self.last_response = Some((req.h.message_id, datagrams.clone()));
        datagrams
    }
}
