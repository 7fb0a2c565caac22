//! Proposals and traffic selectors: the SA payloads we offer, the responder's choice among the peer's proposals,
//! the check of the single proposal a responder chose, and traffic-selector narrowing (RFC 7296 §2.7, §2.9).

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IkeSuite {
    pub(super) encr: Encr,
    pub(super) integ: Option<Integ>,
    pub(super) prf: Prf,
    pub(super) dh: DhGroup,
}

impl IkeSuite {
    /// One of `ours` contains every algorithm of this suite (what a responder's single chosen proposal must be).
    pub(super) fn offered_in(&self, ours: &[IkeProposal]) -> bool {
        ours.iter().any(|p| {
            p.encr.contains(&self.encr)
                && p.prf.contains(&self.prf)
                && p.dh.contains(&self.dh)
                && self.integ.is_none_or(|i| p.integ.contains(&i))
        })
    }

    pub(super) fn name(&self) -> String {
        let mut s = self.encr.strongswan_name().to_string();
        if let Some(i) = self.integ {
            s.push('/');
            s.push_str(i.strongswan_name());
        }
        s.push('/');
        s.push_str(self.prf.strongswan_name());
        s.push('/');
        s.push_str(self.dh.strongswan_name());
        s
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct EspSuite {
    pub(super) encr: Encr,
    pub(super) integ: Option<Integ>,
    pub(super) dh: Option<DhGroup>,
}

impl EspSuite {
    /// One of `ours` contains every algorithm of this suite, its PFS group included when it has one.
    pub(super) fn offered_in(&self, ours: &[EspProposal]) -> bool {
        ours.iter().any(|p| {
            p.encr.contains(&self.encr)
                && self.integ.is_none_or(|i| p.integ.contains(&i))
                && self.dh.is_none_or(|g| p.dh.contains(&g))
        })
    }

    pub(super) fn name(&self) -> String {
        let mut s = self.encr.strongswan_name().to_string();
        if let Some(i) = self.integ {
            s.push('/');
            s.push_str(i.strongswan_name());
        }
        if let Some(g) = self.dh {
            s.push('/');
            s.push_str(g.strongswan_name());
        }
        s
    }
}

/// The transforms of one proposal in RFC 7296 §3.3.2's order: ENCR, PRF, INTEG, DH, and for ESP the ESN "no".
/// One builder for IKE and ESP offers and for the single proposal a responder answers with.
fn transforms(encr: &[Encr], prf: &[Prf], integ: &[Integ], dh: &[DhGroup], esp: bool) -> Vec<Transform> {
    let mut t: Vec<Transform> =
        encr.iter().map(|e| Transform::new(TransformType::ENCR, e.transform_id(), Some(e.key_bits()))).collect();
    t.extend(prf.iter().map(|f| Transform::new(TransformType::PRF, f.transform_id(), None)));
    t.extend(integ.iter().map(|i| Transform::new(TransformType::INTEG, i.transform_id(), None)));
    t.extend(dh.iter().map(|g| Transform::new(TransformType::DH, g.id(), None)));
    if esp {
        t.push(Transform::new(TransformType::ESN, 0, None));
    }
    t
}

/// An SA payload of proposals numbered from `first`, each with `spi` (empty for IKE_SA_INIT).
fn sa_payload(first: u8, protocol: ProtocolId, spi: &[u8], proposals: impl Iterator<Item = Vec<Transform>>) -> Payload {
    let props = proposals
        .zip(first..)
        .map(|(transforms, number)| wire::Proposal { number, protocol, spi: spi.to_vec(), transforms })
        .collect();
    Payload::Sa(props)
}

fn ike_spi(spi: Option<u64>) -> Vec<u8> {
    spi.map(|s| s.to_be_bytes().to_vec()).unwrap_or_default()
}

pub(super) fn ike_sa_payload(proposals: &[IkeProposal], spi: Option<u64>) -> Payload {
    let each = proposals.iter().map(|p| transforms(&p.encr, &p.prf, &p.integ, &p.dh, false));
    sa_payload(1, ProtocolId::IKE, &ike_spi(spi), each)
}

pub(super) fn esp_sa_payload(proposals: &[EspProposal], spi: u32, with_dh: bool) -> Payload {
    let each = proposals.iter().map(|p| transforms(&p.encr, &[], &p.integ, if with_dh { &p.dh } else { &[] }, true));
    sa_payload(1, ProtocolId::ESP, &spi.to_be_bytes(), each)
}

/// The algorithms of kind `ty` in a peer's proposal that we can use (known, no unknown attributes) and that `ours`
/// contains, in the peer's order: the one selection step for IKE and ESP.
fn acceptable<'a, T: PartialEq + 'a>(
    p: &'a wire::Proposal,
    ty: TransformType,
    ours: &'a [T],
    known: impl Fn(&Transform) -> Option<T> + 'a,
) -> impl Iterator<Item = T> + 'a {
    p.transforms
        .iter()
        .filter(move |t| t.ty == ty && !t.unknown_attributes)
        .filter_map(known)
        .filter(move |a| ours.contains(a))
}

/// Responder: pick the first peer proposal (peer's order) acceptable to one of ours. `ke_group`: the group of
/// the peer's KE payload, preferred when acceptable. Returns the chosen proposal number and suite.
pub(super) fn select_ike(
    ours: &[IkeProposal],
    theirs: &[wire::Proposal],
    ke_group: Option<u16>,
) -> Option<(u8, IkeSuite)> {
    for p in theirs.iter().filter(|p| p.protocol == ProtocolId::IKE) {
        for mine in ours {
            let encr =
                acceptable(p, TransformType::ENCR, &mine.encr, |t| Encr::from_transform(t.id, t.key_length)).next();
            let prf = acceptable(p, TransformType::PRF, &mine.prf, |t| Prf::from_transform(t.id)).next();
            let integs: Vec<Integ> =
                acceptable(p, TransformType::INTEG, &mine.integ, |t| Integ::from_transform(t.id)).collect();
            let groups: Vec<DhGroup> = acceptable(p, TransformType::DH, &mine.dh, |t| DhGroup::from_id(t.id)).collect();
            let (Some(encr), Some(prf)) = (encr, prf) else { continue };
            let integ = if encr.is_aead() {
                None
            } else {
                match integs.first() {
                    Some(i) => Some(*i),
                    None => continue,
                }
            };
            let dh = match ke_group.and_then(DhGroup::from_id).filter(|g| groups.contains(g)) {
                Some(g) => g,
                None => match groups.first() {
                    Some(g) => *g,
                    None => continue,
                },
            };
            return Some((p.number, IkeSuite { encr, integ, prf, dh }));
        }
    }
    None
}

pub(super) fn select_esp(ours: &[EspProposal], theirs: &[wire::Proposal], pfs: bool) -> Option<(u8, u32, EspSuite)> {
    for p in theirs.iter().filter(|p| p.protocol == ProtocolId::ESP && p.spi.len() == 4) {
        if p.transforms.iter().any(|t| t.ty == TransformType::ESN && t.id != 0)
            && !p.transforms.iter().any(|t| t.ty == TransformType::ESN && t.id == 0)
        {
            continue;
        }
        let spi = u32::from_be_bytes([p.spi[0], p.spi[1], p.spi[2], p.spi[3]]);
        for mine in ours {
            let mut encr = acceptable(p, TransformType::ENCR, &mine.encr, |t| Encr::from_transform(t.id, t.key_length));
            let Some(encr) = encr.next() else { continue };
            let integ = if encr.is_aead() {
                None
            } else {
                match acceptable(p, TransformType::INTEG, &mine.integ, |t| Integ::from_transform(t.id)).next() {
                    Some(i) => Some(i),
                    None => continue,
                }
            };
            let groups: Vec<DhGroup> = p
                .transforms
                .iter()
                .filter(|t| t.ty == TransformType::DH && t.id != 0)
                .filter_map(|t| DhGroup::from_id(t.id))
                .collect();
            let dh = if pfs && !groups.is_empty() {
                match groups.iter().find(|g| mine.dh.contains(g)) {
                    Some(g) => Some(*g),
                    None => continue,
                }
            } else {
                None
            };
            return Some((p.number, spi, EspSuite { encr, integ, dh }));
        }
    }
    None
}

/// The single chosen proposal of a response: exactly one transform of each kind.
pub(super) fn chosen_ike(p: &[wire::Proposal]) -> Option<IkeSuite> {
    let p = p.first()?;
    let get = |ty| p.transforms.iter().find(|t| t.ty == ty);
    let e = get(TransformType::ENCR)?;
    let encr = Encr::from_transform(e.id, e.key_length)?;
    let prf = Prf::from_transform(get(TransformType::PRF)?.id)?;
    let integ = match get(TransformType::INTEG) {
        Some(t) if t.id != 0 => Some(Integ::from_transform(t.id)?),
        _ => None,
    };
    let dh = DhGroup::from_id(get(TransformType::DH)?.id)?;
    if encr.is_aead() != integ.is_none() {
        return None;
    }
    Some(IkeSuite { encr, integ, prf, dh })
}

pub(super) fn chosen_esp(p: &[wire::Proposal]) -> Option<(u32, EspSuite)> {
    let p = p.first()?;
    if p.protocol != ProtocolId::ESP || p.spi.len() != 4 {
        return None;
    }
    let spi = u32::from_be_bytes([p.spi[0], p.spi[1], p.spi[2], p.spi[3]]);
    let get = |ty| p.transforms.iter().find(|t| t.ty == ty);
    let e = get(TransformType::ENCR)?;
    let encr = Encr::from_transform(e.id, e.key_length)?;
    let integ = match get(TransformType::INTEG) {
        Some(t) if t.id != 0 => Some(Integ::from_transform(t.id)?),
        _ => None,
    };
    let dh = match get(TransformType::DH) {
        Some(t) if t.id != 0 => Some(DhGroup::from_id(t.id)?),
        _ => None,
    };
    if encr.is_aead() != integ.is_none() {
        return None;
    }
    Some((spi, EspSuite { encr, integ, dh }))
}

pub(super) fn suite_proposal_ike(s: &IkeSuite, number: u8, spi: Option<u64>) -> Payload {
    let t = transforms(&[s.encr], &[s.prf], s.integ.as_slice(), &[s.dh], false);
    sa_payload(number, ProtocolId::IKE, &ike_spi(spi), std::iter::once(t))
}

pub(super) fn suite_proposal_esp(s: &EspSuite, number: u8, spi: u32) -> Payload {
    let t = transforms(&[s.encr], &[], s.integ.as_slice(), s.dh.as_slice(), true);
    sa_payload(number, ProtocolId::ESP, &spi.to_be_bytes(), std::iter::once(t))
}

pub(super) fn ts_payload(prefixes: &[Ipv4Cidr]) -> Vec<TrafficSelector> {
    prefixes
        .iter()
        .map(|p| {
            let (a, b) = p.range();
            TrafficSelector {
                ts_type: TsType::TS_IPV4_ADDR_RANGE,
                ip_protocol: 0,
                start_port: 0,
                end_port: 65535,
                start_addr: IpAddr::V4(a),
                end_addr: IpAddr::V4(b),
            }
        })
        .collect()
}

/// Largest prefixes covering exactly the range [a, b] would be exact; we only need the common cases: a range
/// that is a prefix maps back to it; other ranges are approximated by their covering start address /32 ... /0.
pub(super) fn range_to_prefix(a: Ipv4Addr, b: Ipv4Addr) -> Ipv4Cidr {
    let (a32, b32) = (u32::from(a), u32::from(b));
    for len in 0..=32u8 {
        // Host bits set: `a` does not start a network this long.
        let Ok(p) = Ipv4Cidr::new(a, len) else { continue };
        let (s, e) = p.range();
        if u32::from(s) == a32 && u32::from(e) == b32 {
            return p;
        }
    }
    Ipv4Cidr::host(a)
}

pub(super) fn ts_to_prefixes(ts: &[TrafficSelector]) -> Vec<Ipv4Cidr> {
    ts.iter()
        .filter_map(|t| match (t.start_addr, t.end_addr) {
            (IpAddr::V4(a), IpAddr::V4(b)) => Some(range_to_prefix(a, b)),
            _ => None,
        })
        .collect()
}

/// Responder narrowing (RFC 7296 §2.9): intersect each of the peer's IPv4 selectors with each of ours.
pub(super) fn narrow(theirs: &[TrafficSelector], ours: &[Ipv4Cidr]) -> Vec<TrafficSelector> {
    let mut out = Vec::new();
    for t in theirs {
        let (IpAddr::V4(ta), IpAddr::V4(tb)) = (t.start_addr, t.end_addr) else { continue };
        for o in ours {
            let (oa, ob) = o.range();
            let start = u32::from(ta).max(u32::from(oa));
            let end = u32::from(tb).min(u32::from(ob));
            if start <= end {
                out.push(TrafficSelector {
                    ts_type: TsType::TS_IPV4_ADDR_RANGE,
                    ip_protocol: t.ip_protocol,
                    start_port: t.start_port,
                    end_port: t.end_port,
                    start_addr: IpAddr::V4(Ipv4Addr::from(start)),
                    end_addr: IpAddr::V4(Ipv4Addr::from(end)),
                });
            }
        }
    }
    out
}

impl Tunnel {
    pub(super) fn local_ts(&self) -> Vec<Ipv4Cidr> {
        self.cfg.local_ts.clone()
    }
}
