//! Requests on the established IKE SA: dispatch by exchange, INFORMATIONAL (DPD, DELETE of the IKE SA or of
//! CHILD_SAs) and our own DELETE of an IKE SA that is not the current one.

use super::*;

impl Tunnel {
    /// The old inbound SA with this SPI is gone (the peer answered our DELETE of it).
    pub(super) fn forget_old_inbound(&mut self, inbound_spi: u32) {
        if let Some(i) = self.old_inbound.iter().position(|o| o.inbound_spi == inbound_spi) {
            let o = self.old_inbound.remove(i);
            self.emit(Event::ChildSaDeleted { inbound_spi: o.inbound_spi, outbound_spi: o.outbound_spi });
        }
    }

    pub(super) fn handle_request(&mut self, now: Duration, req: Request, payloads: Vec<Payload>) {
        let Some(established) = self.ike.sa().map(|s| s.is_established()) else { return };
        // Requests only on an established SA: before the peer's AUTH verified, nothing it asks for (a DELETE
        // included) is acted on. (The responder's IKE_AUTH is handled on the half-open table.)
        match (req.h.exchange, established) {
            (ExchangeType::CREATE_CHILD_SA, true) => self.respond_create_child(now, req, payloads),
            (ExchangeType::INFORMATIONAL, true) => self.respond_informational(now, req, payloads),
            _ => {
                self.dropped(DropReason::UnexpectedExchange);
            }
        }
    }

    /// Sends DELETE for `sa`, an IKE SA that is not the current one, as a tracked (retransmitted) request on it.
    pub(super) fn send_delete_ike(&mut self, now: Duration, sa: &mut IkeSa) {
        let id = sa.my_next_id;
        let bytes = encrypt(sa, ExchangeType::INFORMATIONAL, false, id, &[delete_ike()], &mut self.rng);
        sa.my_next_id += 1;
        sa.pending =
            Some(Pending::new(id, vec![bytes.clone()], now, now + self.cfg.retransmit.initial, Req::DeleteIke));
        self.transmits.push_back(Transmit { local_port: self.local_port, remote: self.remote, data: bytes });
    }

    pub(super) fn respond_informational(&mut self, now: Duration, req: Request, payloads: Vec<Payload>) {
        let mut resp = Vec::new();
        let mut delete_ike = false;
        let mut lost_child = false;
        for p in &payloads {
            if let Payload::Delete(d) = p {
                if d.protocol == ProtocolId::IKE {
                    delete_ike = true;
                } else if d.protocol == ProtocolId::ESP {
                    let mut ours = Vec::new();
                    for spi in d.spis.iter().filter_map(|s| spi_bytes(s)) {
                        if let Some(i) = self.old_inbound.iter().position(|o| o.outbound_spi == spi) {
                            let o = self.old_inbound.remove(i);
                            ours.push(o.inbound_spi.to_be_bytes().to_vec());
                            self.emit(Event::ChildSaDeleted {
                                inbound_spi: o.inbound_spi,
                                outbound_spi: o.outbound_spi,
                            });
                        } else if let Some(c) = self.child_collision.as_mut().filter(|c| c.outbound_spi == spi) {
                            // The peer resolved our rekey collision first and closes its redundant SA (our current
                            // one until our own rekey completes and replaces it).
                            c.deleted_by_peer = true;
                            ours.push(c.inbound_spi.to_be_bytes().to_vec());
                        } else if self.child.as_ref().is_some_and(|c| c.outbound_spi == spi) {
                            let c = self.child.as_ref().map(|c| c.inbound_spi).unwrap_or_default();
                            ours.push(c.to_be_bytes().to_vec());
                            lost_child = true;
                        }
                    }
                    if !ours.is_empty() {
                        resp.push(Payload::Delete(Delete { protocol: ProtocolId::ESP, spi_size: 4, spis: ours }));
                    }
                }
            }
        }
        self.send_response(req, if delete_ike { vec![] } else { resp });
        if delete_ike && self.ike_collision.as_ref().is_some_and(|c| !c.deleted_by_peer) {
            // Our IKE rekey collided with the peer's, and the peer, having resolved it in favour of its new IKE SA,
            // deletes the old one. That SA takes over; the answer to our rekey (if it still comes) finds the old SA
            // retired, and our redundant SA never exists on our side.
            if let Some(c) = self.ike_collision.take() {
                self.counters.rekey_collisions += 1;
                self.install_ike(now, c.sa);
            }
        } else if delete_ike {
            self.fail(now, DownReason::DeletedByPeer, "peer deleted the IKE SA".into());
        } else if lost_child {
            // Without its CHILD_SA the tunnel carries nothing: start over with a fresh IKE SA, and delete this one
            // (the peer would otherwise keep it beside the new one: two IKE SAs for one tunnel).
            self.close_and_restart(now, DownReason::DeletedByPeer, "peer deleted the CHILD_SA".into(), Vec::new());
        }
    }
}
