//! Small readers and builders of payloads shared by every exchange: nonces and SPIs from the RNG, notifies,
//! identities, NAT detection hashes, and the first payload of a kind in a message.

use super::*;

pub(super) const NONCE_LEN: usize = 32;
/// Nonces from the peer: at least 128 bits (RFC 7296 §2.10; more for larger PRFs, see [`nonce_fits`]), at most 256
/// octets.
pub(super) const MIN_NONCE: usize = 16;
pub(super) const MAX_NONCE: usize = 256;

pub(super) fn rand_u64(rng: &mut dyn RandomSource) -> u64 {
    let mut b = [0u8; 8];
    loop {
        rng.fill_bytes(&mut b);
        let v = u64::from_be_bytes(b);
        if v != 0 {
            return v;
        }
    }
}

pub(super) fn rand_u32(rng: &mut dyn RandomSource) -> u32 {
    let mut b = [0u8; 4];
    loop {
        rng.fill_bytes(&mut b);
        let v = u32::from_be_bytes(b);
        // SPIs 1..=255 are reserved by IANA (RFC 4303 §2.1).
        if v > 255 {
            return v;
        }
    }
}

/// RFC 7296 §2.10: a nonce is at least half the key size of the negotiated PRF, and at least 128 bits.
pub(super) fn nonce_fits(n: &[u8], prf: Prf) -> bool {
    (MIN_NONCE.max(prf.output_len() / 2)..=MAX_NONCE).contains(&n.len())
}

pub(super) fn nonce(rng: &mut dyn RandomSource) -> Vec<u8> {
    let mut n = vec![0u8; NONCE_LEN];
    rng.fill_bytes(&mut n);
    n
}

pub(super) fn identity_payload(id: &Identity) -> Identification {
    match id {
        Identity::Ipv4(a) => Identification { id_type: IdType::ID_IPV4_ADDR, data: a.octets().to_vec() },
        Identity::Fqdn(s) => Identification { id_type: IdType::ID_FQDN, data: s.as_bytes().to_vec() },
        Identity::KeyId(k) => Identification { id_type: IdType::ID_KEY_ID, data: k.clone() },
    }
}

/// RestOfIDPayload: ID type, 3 reserved octets, data (RFC 7296 §2.15).
pub(super) fn id_body(id: &Identification) -> Vec<u8> {
    let mut v = vec![id.id_type.0, 0, 0, 0];
    v.extend_from_slice(&id.data);
    v
}

pub(super) fn notify(ty: NotifyType, data: Vec<u8>) -> Payload {
    Payload::Notify(Notify { protocol: ProtocolId::NONE, spi: vec![], ty, data })
}

pub(super) fn find_notify(payloads: &[Payload], ty: NotifyType) -> Option<&Notify> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if n.ty == ty => Some(n),
        _ => None,
    })
}

pub(super) fn first_error_notify(payloads: &[Payload]) -> Option<&Notify> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if n.ty.is_error() => Some(n),
        _ => None,
    })
}

/// NAT detection hash (RFC 7296 §2.23): SHA1(SPIi | SPIr | IP | port).
pub(super) fn nat_hash(spi_i: u64, spi_r: u64, addr: SocketAddr) -> Vec<u8> {
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    h.update(spi_i.to_be_bytes());
    h.update(spi_r.to_be_bytes());
    match addr.ip() {
        IpAddr::V4(a) => h.update(a.octets()),
        IpAddr::V6(a) => h.update(a.octets()),
    }
    h.update(addr.port().to_be_bytes());
    h.finalize().to_vec()
}

pub(super) fn id_matches(expected: &Identity, got: &Identification) -> bool {
    identity_payload(expected) == *got
}

/// The nonce, if its length suits `prf` (the PRF of the IKE SA the exchange runs on, see [`nonce_fits`]).
pub(super) fn payload_nonce(p: &[Payload], prf: Prf) -> Option<Vec<u8>> {
    p.iter().find_map(|p| if let Payload::Nonce(n) = p { Some(n.clone()) } else { None }).filter(|n| nonce_fits(n, prf))
}

pub(super) fn payload_ke(p: &[Payload]) -> Option<(u16, Vec<u8>)> {
    p.iter().find_map(|p| if let Payload::Ke { group, data } = p { Some((*group, data.clone())) } else { None })
}

pub(super) fn payload_sa(p: &[Payload]) -> Option<Vec<wire::Proposal>> {
    p.iter().find_map(|p| if let Payload::Sa(s) = p { Some(s.clone()) } else { None })
}

pub(super) fn payload_ts(p: &[Payload], initiator_side: bool) -> Option<Vec<TrafficSelector>> {
    p.iter().find_map(|p| match p {
        Payload::TsI(t) if initiator_side => Some(t.clone()),
        Payload::TsR(t) if !initiator_side => Some(t.clone()),
        _ => None,
    })
}

pub(super) fn reason_for(ty: NotifyType, by_peer: bool) -> DownReason {
    match ty {
        NotifyType::AUTHENTICATION_FAILED => DownReason::AuthenticationFailed { by_peer },
        NotifyType::NO_PROPOSAL_CHOSEN => DownReason::NoProposalChosen { by_peer },
        NotifyType::TS_UNACCEPTABLE => DownReason::TsUnacceptable { by_peer },
        NotifyType::INVALID_SYNTAX => DownReason::InvalidSyntax,
        t => DownReason::PeerError { notify: t.0 },
    }
}

pub(super) fn deletes_ike(p: &[Payload]) -> bool {
    p.iter().any(|p| matches!(p, Payload::Delete(d) if d.protocol == ProtocolId::IKE))
}

pub(super) fn spi_bytes(p: &[u8]) -> Option<u32> {
    (p.len() == 4).then(|| u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
}

/// What every IKE_SA_INIT message must carry (RFC 7296 §1.2), request or response: SA, KE and Nonce. Read once,
/// by the responder (`half_open.rs`) and the initiator (`ike_init.rs`) alike.
pub(super) struct InitPayloads {
    pub(super) proposals: Vec<wire::Proposal>,
    /// The KE payload's group number and public value.
    pub(super) group: u16,
    pub(super) ke: Vec<u8>,
    /// The nonce, unchecked (the responder checks its length at once, the initiator once the suite is known,
    /// [`nonce_fits`]).
    pub(super) nonce: Vec<u8>,
}

impl InitPayloads {
    /// None when one of the three is missing.
    pub(super) fn find(payloads: &[Payload]) -> Option<InitPayloads> {
        let nonce = payloads.iter().find_map(|p| if let Payload::Nonce(n) = p { Some(n.clone()) } else { None })?;
        let (group, ke) = payload_ke(payloads)?;
        let proposals = payload_sa(payloads)?;
        Some(InitPayloads { proposals, group, ke, nonce })
    }
}

/// NAT_DETECTION_SOURCE_IP and NAT_DETECTION_DESTINATION_IP for an IKE_SA_INIT (RFC 7296 §2.23). With `force` the
/// source hash is random, so the peer always sees a NAT and both sides move to UDP 4500.
pub(super) fn nat_detection(
    force: bool,
    spi_i: u64,
    spi_r: u64,
    local: SocketAddr,
    remote: SocketAddr,
    rng: &mut dyn RandomSource,
) -> [Payload; 2] {
    let src = if force {
        let mut fake = vec![0u8; 20];
        rng.fill_bytes(&mut fake);
        fake
    } else {
        nat_hash(spi_i, spi_r, local)
    };
    [
        notify(NotifyType::NAT_DETECTION_SOURCE_IP, src),
        notify(NotifyType::NAT_DETECTION_DESTINATION_IP, nat_hash(spi_i, spi_r, remote)),
    ]
}

/// A DELETE of our whole IKE SA (RFC 7296 §3.11: no SPIs).
pub(super) fn delete_ike() -> Payload {
    Payload::Delete(Delete { protocol: ProtocolId::IKE, spi_size: 0, spis: vec![] })
}

/// A DELETE of ESP SAs by the SPIs the receiver of the DELETE knows them by (our inbound SPIs in our requests).
pub(super) fn delete_esp(spis: &[u32]) -> Payload {
    Payload::Delete(Delete {
        protocol: ProtocolId::ESP,
        spi_size: 4,
        spis: spis.iter().map(|s| s.to_be_bytes().to_vec()).collect(),
    })
}
