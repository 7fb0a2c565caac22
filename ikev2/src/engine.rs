//! The IKEv2 state machine for one tunnel (RFC 7296), sans-IO.
//!
//! Structure: a [`Tunnel`] owns at most one IKE SA (plus, briefly, the one it replaces after an IKE rekey) and
//! exactly one CHILD_SA. Every request we send is tracked as a [`Pending`] exchange (window size 1) with
//! retransmission; every request we answer is cached so a retransmitted request gets the same reply.
//!
//! Fault classification (rustls style): [`classify`] decides whether a problem with a peer message earns an
//! error notify or a silent drop; only authenticated or IKE_SA_INIT messages are ever answered.
//!
//! The rule for hostile input (the relay's address is public, and anyone can send IKE datagrams with the AWS
//! endpoint's source address): *unauthenticated input can create or drop only half-open state; it never
//! changes, replaces or deletes an established or authenticating SA, and never moves the peer's address.* The
//! structure enforces it:
//! - An IKE_SA_INIT request only ever reaches `half_open.rs`, which answers it statelessly or adds an entry to the
//!   bounded half-open table; nothing there can reach `self.ike`, `self.child` or `self.remote`, except promotion
//!   after the peer's AUTH verified (`Tunnel::respond_auth`).
//! - Every other message is matched to an SA by its SPIs and decrypted with that SA's keys before anything looks
//!   at its content; the current SA accepts requests only once established (the peer's AUTH verified), and the
//!   peer's address is followed only on messages authenticated by an established SA.
//! - An IKE_SA_INIT response is only looked at while our own IKE_SA_INIT (with that initiator SPI) is in flight,
//!   and its COOKIE / INVALID_KE_PAYLOAD retries are bounded.
//! - A tunnel that is down always has a reconnect scheduled (`Tunnel::check_invariants`).

use crate::api::*;
use crate::wire::fragment::Reassembler;
use crate::wire::{self, *};
use iotrelay_crypto::kdf::{self, IkeSaKeys};
use iotrelay_crypto::proposal::{EspProposal, IkeProposal};
use iotrelay_crypto::{DhGroup, DhSecret, Encr, Integ, Prf, RandomSource, SaCipher};
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use zeroize::Zeroizing;

use cookie::{CookieJar, DhBudget};
pub use half_open::HalfOpenCount;
use half_open::HalfOpenTable;

const NONCE_LEN: usize = 32;
/// Nonces from the peer: at least 128 bits (RFC 7296 §2.10; more for larger PRFs, see [`nonce_fits`]), at most 256
/// octets.
const MIN_NONCE: usize = 16;
const MAX_NONCE: usize = 256;
/// At most this many IKE_SA_INIT resends on COOKIE or INVALID_KE_PAYLOAD answers per attempt (a hostile or broken
/// responder cannot keep us in a loop): then the attempt fails and the reconnect backoff applies.
const MAX_INIT_RETRIES: u8 = 4;
const IKE_PORT: u16 = 500;
const NATT_PORT: u16 = 4500;
/// Slow retry after a failure that needs a configuration change (auth failed, no proposal): never a hot loop.
const PERMANENT_RETRY_MIN: Duration = Duration::from_secs(30);
const PERMANENT_RETRY_MAX: Duration = Duration::from_secs(300);
const TRANSIENT_RETRY_MIN: Duration = Duration::from_secs(2);
const TRANSIENT_RETRY_MAX: Duration = Duration::from_secs(60);
/// Never cut a fragment's plaintext smaller than this, whatever `fragment_size` says.
const MIN_FRAGMENT_PLAINTEXT: usize = 64;
/// How long a replaced (or redundant) IKE SA is kept to answer the peer's DELETE on it.
const RETIRED_IKE_LINGER: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IkeSuite {
    encr: Encr,
    integ: Option<Integ>,
    prf: Prf,
    dh: DhGroup,
}

impl IkeSuite {
    fn name(&self) -> String {
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
struct EspSuite {
    encr: Encr,
    integ: Option<Integ>,
    dh: Option<DhGroup>,
}

impl EspSuite {
    fn name(&self) -> String {
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

/// The negotiated keys of an IKE SA.
struct IkeKeys {
    sk_d: Zeroizing<Vec<u8>>,
    sk_pi: Zeroizing<Vec<u8>>,
    sk_pr: Zeroizing<Vec<u8>>,
    /// Protects what we send / what we receive.
    out: SaCipher,
    inn: SaCipher,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IkeState {
    /// Initiator: IKE_SA_INIT sent.
    InitSent,
    /// Initiator: IKE_AUTH sent.
    AuthSent,
    /// Responder: IKE_SA_INIT answered, waiting for IKE_AUTH.
    RespInitDone,
    Established,
}

enum Req {
    Init,
    Auth,
    Dpd,
    DeleteIke,
    DeleteChild,
    RekeyChild { dh: Option<DhSecret>, ni: Vec<u8>, new_in_spi: u32 },
    RekeyIke { dh: DhSecret, ni: Vec<u8>, new_spi: u64 },
}

struct Pending {
    id: u32,
    /// The request as sent: one datagram, or its RFC 7383 fragments.
    datagrams: Vec<Vec<u8>>,
    first_sent: Duration,
    tries: u32,
    next_at: Duration,
    req: Req,
}

impl Pending {
    /// A request just sent for the first time; the first retransmission is due at `next_at`.
    fn new(id: u32, datagrams: Vec<Vec<u8>>, now: Duration, next_at: Duration, req: Req) -> Pending {
        Pending { id, datagrams, first_sent: now, tries: 1, next_at, req }
    }
}

struct IkeSa {
    /// We initiated this IKE SA (IKE_SA_INIT or the CREATE_CHILD_SA that rekeyed it).
    initiator: bool,
    spi_i: u64,
    spi_r: u64,
    state: IkeState,
    suite: Option<IkeSuite>,
    keys: Option<IkeKeys>,
    dh: Option<DhSecret>,
    ni: Vec<u8>,
    nr: Vec<u8>,
    /// The IKE_SA_INIT request and response octets (signed by AUTH).
    init_request: Vec<u8>,
    init_response: Vec<u8>,
    cookie: Option<Vec<u8>>,
    /// Initiator: SPI chosen for the first CHILD_SA.
    first_child_spi: u32,
    my_next_id: u32,
    peer_next_id: u32,
    pending: Option<Pending>,
    /// The last response we sent (its datagrams), by message ID, for retransmitted requests.
    last_response: Option<(u32, Vec<Vec<u8>>)>,
    /// The peer announced IKEV2_FRAGMENTATION_SUPPORTED (RFC 7383): large messages go out as SKF fragments.
    peer_fragmentation: bool,
    /// Fragments of the peer's requests and of its responses being reassembled (message IDs are per direction).
    frag_requests: Reassembler,
    frag_responses: Reassembler,
    created_at: Duration,
    established_at: Duration,
    rekey_at: Duration,
    /// The peer sent INITIAL_CONTACT.
    peer_initial_contact: bool,
    /// Initiator: IKE_SA_INIT resent on COOKIE / INVALID_KE_PAYLOAD answers so far.
    init_retries: u8,
    /// A NAT rewrites our address: the peer's NAT_DETECTION_DESTINATION_IP does not hash our address and port
    /// (RFC 7296 §2.23). Learned in IKE_SA_INIT; a rekeyed SA keeps it.
    nat_detected: bool,
}

impl IkeSa {
    /// An SA with no keys, no nonces and nothing in flight.
    fn blank(initiator: bool, spi_i: u64, state: IkeState, now: Duration) -> IkeSa {
        IkeSa {
            initiator,
            spi_i,
            spi_r: 0,
            state,
            suite: None,
            keys: None,
            dh: None,
            ni: Vec::new(),
            nr: Vec::new(),
            init_request: Vec::new(),
            init_response: Vec::new(),
            cookie: None,
            first_child_spi: 0,
            my_next_id: 0,
            peer_next_id: 0,
            pending: None,
            last_response: None,
            peer_fragmentation: false,
            frag_requests: Reassembler::new(),
            frag_responses: Reassembler::new(),
            created_at: now,
            established_at: now,
            rekey_at: now,
            peer_initial_contact: false,
            init_retries: 0,
            nat_detected: false,
        }
    }

    fn local_spi(&self) -> u64 {
        if self.initiator { self.spi_i } else { self.spi_r }
    }
    fn remote_spi(&self) -> u64 {
        if self.initiator { self.spi_r } else { self.spi_i }
    }
}

struct Child {
    inbound_spi: u32,
    outbound_spi: u32,
    suite: EspSuite,
    established_at: Duration,
    rekey_at: Duration,
    local_ts: Vec<Ipv4Prefix>,
    remote_ts: Vec<Ipv4Prefix>,
}

struct OldInbound {
    inbound_spi: u32,
    outbound_spi: u32,
    delete_at: Duration,
}

/// An IKE SA that no longer carries anything: replaced by a rekey, or the redundant result of a rekey collision.
/// Kept to send or answer its DELETE, then forgotten.
struct Retiring {
    sa: IkeSa,
    forget_at: Duration,
}

/// A CHILD_SA rekey collision (RFC 7296 §2.8.1): the peer's rekey request arrived while ours was in flight. We
/// answered it (its SA is our current CHILD_SA); which of the two new SAs survives is known when our own
/// exchange completes.
struct ChildCollision {
    /// Nonces of the peer's exchange.
    peer_ni: Vec<u8>,
    our_nr: Vec<u8>,
    /// SPIs of the SA the peer's exchange created.
    inbound_spi: u32,
    outbound_spi: u32,
    /// Inbound SPI of the SA both exchanges replace.
    old_inbound_spi: u32,
    /// The peer already deleted its SA (it resolved the collision first, in favour of ours).
    deleted_by_peer: bool,
}

/// Our last completed CHILD_SA rekey, while the SA it replaced still exists: a peer rekey of that SA which crossed
/// ours is a collision we answer and resolve at once (we hold all four nonces).
struct RecentRekey {
    ni: Vec<u8>,
    nr: Vec<u8>,
    replaced_inbound_spi: u32,
}

/// An IKE SA rekey collision (RFC 7296 §2.8.2): the IKE SA the peer's exchange created, held until ours completes.
struct IkeCollision {
    sa: IkeSa,
    peer_ni: Vec<u8>,
    our_nr: Vec<u8>,
    deleted_by_peer: bool,
}

/// RFC 7296 §2.8.1: of two colliding rekeys, the SA created with the lowest of the four nonces is redundant and
/// is closed by the endpoint that created it. Nonces compare octet by octet; a nonce that is a prefix of another is
/// the lower one (exactly the order of byte slices). True when the first exchange's SA is the redundant one.
fn first_exchange_is_redundant(first_i: &[u8], first_r: &[u8], second_i: &[u8], second_r: &[u8]) -> bool {
    first_i.min(first_r) < second_i.min(second_r)
}

/// What the answer to our CHILD_SA rekey chose: (its SPI, suite, Nr, g^ir when PFS).
type PeerChildChoice = (u32, EspSuite, Vec<u8>, Option<Zeroizing<Vec<u8>>>);

/// What the answer to our IKE SA rekey gives us.
enum IkeRekeyAnswer {
    /// The new IKE SA (keys derived, not installed) and the peer's nonce.
    Accepted(IkeSa, Vec<u8>),
    /// The peer refused with an error notify: it created nothing.
    Refused,
    /// An answer we do not accept although the peer created a new IKE SA for it (a suite we did not offer, an
    /// unusable nonce or key exchange). `Some` when that SA's keys could be derived.
    Unacceptable(Option<IkeSa>),
}

/// Which IKE SA an encrypted message belongs to.
#[derive(Debug, Clone, Copy)]
enum Which {
    Current,
    Retiring(usize),
    Collision,
    /// An entry of the half-open responder table.
    HalfOpen(usize),
}

/// Why a peer message is not processed, and whether it earns a notify.
#[derive(Debug)]
enum Fault {
    /// Drop silently (unauthenticated garbage, wrong SPI, replay...).
    Drop(#[allow(dead_code)] &'static str),
    /// Answer with this error notify and its notification data (only in reply to a request we can answer).
    Notify(NotifyType, Vec<u8>, #[allow(dead_code)] &'static str),
}

/// One decision point for "notify or silent drop": errors in unauthenticated messages other than IKE_SA_INIT
/// requests are dropped (anyone can forge them); syntax errors in IKE_SA_INIT get INVALID_SYNTAX only for
/// requests, and critical unknown payloads get UNSUPPORTED_CRITICAL_PAYLOAD, whose notification data is the
/// one-octet type of that payload (RFC 7296 §3.10.1).
fn classify(err: &WireError, is_request: bool) -> Fault {
    match err {
        WireError::UnsupportedCriticalPayload(ty) if is_request => {
            Fault::Notify(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, vec![*ty], "unsupported critical payload")
        }
        WireError::InvalidMajorVersion(_) => Fault::Drop("unsupported IKE version"),
        _ if is_request => Fault::Notify(NotifyType::INVALID_SYNTAX, vec![], "malformed message"),
        _ => Fault::Drop("malformed message"),
    }
}

/// One AWS tunnel: the IKE SA (initiator or responder) and its CHILD_SA.
pub struct Tunnel {
    cfg: Config,
    local: SocketAddr,
    remote: SocketAddr,
    /// Local port for IKE: 500, then 4500 once floated (always with forced encapsulation).
    local_port: u16,
    ike: Option<IkeSa>,
    /// After an IKE rekey: the replaced IKE SA (and after a collision, the redundant one) until its DELETE is
    /// answered or [`RETIRED_IKE_LINGER`] passes.
    retiring: Vec<Retiring>,
    child_collision: Option<ChildCollision>,
    ike_collision: Option<IkeCollision>,
    recent_rekey: Option<RecentRekey>,
    child: Option<Child>,
    old_inbound: Vec<OldInbound>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    counters: Counters,
    last_error: Option<String>,
    last_down: Option<DownReason>,
    ever_established: bool,
    reconnect_at: Option<Duration>,
    consecutive_failures: u32,
    closed: bool,
    last_recv: Duration,
    /// Responder IKE SAs between IKE_SA_INIT and a verified IKE_AUTH; apart from `ike` (see `half_open.rs`).
    half_open: HalfOpenTable,
    cookies: CookieJar,
    dh_budget: DhBudget,
    /// Outbound CHILD_SA SPIs the datapath holds, kept from the events as the datapath applies them.
    installed_outbound: Vec<u32>,
}

fn rand_u64(rng: &mut dyn RandomSource) -> u64 {
    let mut b = [0u8; 8];
    loop {
        rng.fill_bytes(&mut b);
        let v = u64::from_be_bytes(b);
        if v != 0 {
            return v;
        }
    }
}

fn rand_u32(rng: &mut dyn RandomSource) -> u32 {
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
fn nonce_fits(n: &[u8], prf: Prf) -> bool {
    (MIN_NONCE.max(prf.output_len() / 2)..=MAX_NONCE).contains(&n.len())
}

fn nonce(rng: &mut dyn RandomSource) -> Vec<u8> {
    let mut n = vec![0u8; NONCE_LEN];
    rng.fill_bytes(&mut n);
    n
}

fn identity_payload(id: &Identity) -> Identification {
    match id {
        Identity::Ipv4(a) => Identification { id_type: IdType::ID_IPV4_ADDR, data: a.octets().to_vec() },
        Identity::Fqdn(s) => Identification { id_type: IdType::ID_FQDN, data: s.as_bytes().to_vec() },
        Identity::KeyId(k) => Identification { id_type: IdType::ID_KEY_ID, data: k.clone() },
    }
}

/// RestOfIDPayload: ID type, 3 reserved octets, data (RFC 7296 §2.15).
fn id_body(id: &Identification) -> Vec<u8> {
    let mut v = vec![id.id_type.0, 0, 0, 0];
    v.extend_from_slice(&id.data);
    v
}

fn notify(ty: NotifyType, data: Vec<u8>) -> Payload {
    Payload::Notify(Notify { protocol: ProtocolId::NONE, spi: vec![], ty, data })
}

fn find_notify(payloads: &[Payload], ty: NotifyType) -> Option<&Notify> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if n.ty == ty => Some(n),
        _ => None,
    })
}

fn first_error_notify(payloads: &[Payload]) -> Option<&Notify> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if n.ty.is_error() => Some(n),
        _ => None,
    })
}

/// NAT detection hash (RFC 7296 §2.23): SHA1(SPIi | SPIr | IP | port).
fn nat_hash(spi_i: u64, spi_r: u64, addr: SocketAddr) -> Vec<u8> {
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

fn ike_sa_payload(proposals: &[IkeProposal], spi: Option<u64>) -> Payload {
    let props = proposals
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut t = Vec::new();
            for e in &p.encr {
                t.push(Transform::new(TransformType::ENCR, e.transform_id(), Some(e.key_bits())));
            }
            for f in &p.prf {
                t.push(Transform::new(TransformType::PRF, f.transform_id(), None));
            }
            for a in &p.integ {
                t.push(Transform::new(TransformType::INTEG, a.transform_id(), None));
            }
            for g in &p.dh {
                t.push(Transform::new(TransformType::DH, g.id(), None));
            }
            wire::Proposal {
                number: (i + 1) as u8,
                protocol: ProtocolId::IKE,
                spi: spi.map(|s| s.to_be_bytes().to_vec()).unwrap_or_default(),
                transforms: t,
            }
        })
        .collect();
    Payload::Sa(props)
}

fn esp_sa_payload(proposals: &[EspProposal], spi: u32, with_dh: bool) -> Payload {
    let props = proposals
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut t = Vec::new();
            for e in &p.encr {
                t.push(Transform::new(TransformType::ENCR, e.transform_id(), Some(e.key_bits())));
            }
            for a in &p.integ {
                t.push(Transform::new(TransformType::INTEG, a.transform_id(), None));
            }
            if with_dh {
                for g in &p.dh {
                    t.push(Transform::new(TransformType::DH, g.id(), None));
                }
            }
            t.push(Transform::new(TransformType::ESN, 0, None));
            wire::Proposal {
                number: (i + 1) as u8,
                protocol: ProtocolId::ESP,
                spi: spi.to_be_bytes().to_vec(),
                transforms: t,
            }
        })
        .collect();
    Payload::Sa(props)
}

/// Responder: pick the first peer proposal (peer's order) acceptable to one of ours. `ke_group`: the group of
/// the peer's KE payload, preferred when acceptable. Returns the chosen proposal number and suite.
fn select_ike(ours: &[IkeProposal], theirs: &[wire::Proposal], ke_group: Option<u16>) -> Option<(u8, IkeSuite)> {
    for p in theirs.iter().filter(|p| p.protocol == ProtocolId::IKE) {
        for mine in ours {
            let usable = |t: &&Transform| !t.unknown_attributes;
            let encr = p
                .transforms
                .iter()
                .filter(usable)
                .filter(|t| t.ty == TransformType::ENCR)
                .filter_map(|t| Encr::from_transform(t.id, t.key_length))
                .find(|e| mine.encr.contains(e));
            let prf = p
                .transforms
                .iter()
                .filter(usable)
                .filter(|t| t.ty == TransformType::PRF)
                .filter_map(|t| Prf::from_transform(t.id))
                .find(|f| mine.prf.contains(f));
            let integs: Vec<Integ> = p
                .transforms
                .iter()
                .filter(usable)
                .filter(|t| t.ty == TransformType::INTEG && t.id != 0)
                .filter_map(|t| Integ::from_transform(t.id))
                .filter(|i| mine.integ.contains(i))
                .collect();
            let groups: Vec<DhGroup> = p
                .transforms
                .iter()
                .filter(usable)
                .filter(|t| t.ty == TransformType::DH)
                .filter_map(|t| DhGroup::from_id(t.id))
                .filter(|g| mine.dh.contains(g))
                .collect();
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

fn select_esp(ours: &[EspProposal], theirs: &[wire::Proposal], pfs: bool) -> Option<(u8, u32, EspSuite)> {
    for p in theirs.iter().filter(|p| p.protocol == ProtocolId::ESP && p.spi.len() == 4) {
        if p.transforms.iter().any(|t| t.ty == TransformType::ESN && t.id != 0)
            && !p.transforms.iter().any(|t| t.ty == TransformType::ESN && t.id == 0)
        {
            continue;
        }
        let spi = u32::from_be_bytes([p.spi[0], p.spi[1], p.spi[2], p.spi[3]]);
        for mine in ours {
            let usable = |t: &&Transform| !t.unknown_attributes;
            let Some(encr) = p
                .transforms
                .iter()
                .filter(usable)
                .filter(|t| t.ty == TransformType::ENCR)
                .filter_map(|t| Encr::from_transform(t.id, t.key_length))
                .find(|e| mine.encr.contains(e))
            else {
                continue;
            };
            let integ = if encr.is_aead() {
                None
            } else {
                match p
                    .transforms
                    .iter()
                    .filter(usable)
                    .filter(|t| t.ty == TransformType::INTEG)
                    .filter_map(|t| Integ::from_transform(t.id))
                    .find(|i| mine.integ.contains(i))
                {
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
fn chosen_ike(p: &[wire::Proposal]) -> Option<IkeSuite> {
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

fn chosen_esp(p: &[wire::Proposal]) -> Option<(u32, EspSuite)> {
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

fn suite_proposal_ike(s: &IkeSuite, number: u8, spi: Option<u64>) -> Payload {
    let mut t = vec![
        Transform::new(TransformType::ENCR, s.encr.transform_id(), Some(s.encr.key_bits())),
        Transform::new(TransformType::PRF, s.prf.transform_id(), None),
    ];
    if let Some(i) = s.integ {
        t.push(Transform::new(TransformType::INTEG, i.transform_id(), None));
    }
    t.push(Transform::new(TransformType::DH, s.dh.id(), None));
    Payload::Sa(vec![wire::Proposal {
        number,
        protocol: ProtocolId::IKE,
        spi: spi.map(|s| s.to_be_bytes().to_vec()).unwrap_or_default(),
        transforms: t,
    }])
}

fn suite_proposal_esp(s: &EspSuite, number: u8, spi: u32) -> Payload {
    let mut t = vec![Transform::new(TransformType::ENCR, s.encr.transform_id(), Some(s.encr.key_bits()))];
    if let Some(i) = s.integ {
        t.push(Transform::new(TransformType::INTEG, i.transform_id(), None));
    }
    if let Some(g) = s.dh {
        t.push(Transform::new(TransformType::DH, g.id(), None));
    }
    t.push(Transform::new(TransformType::ESN, 0, None));
    Payload::Sa(vec![wire::Proposal {
        number,
        protocol: ProtocolId::ESP,
        spi: spi.to_be_bytes().to_vec(),
        transforms: t,
    }])
}

fn ts_payload(prefixes: &[Ipv4Prefix]) -> Vec<TrafficSelector> {
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
fn range_to_prefix(a: Ipv4Addr, b: Ipv4Addr) -> Ipv4Prefix {
    let (a32, b32) = (u32::from(a), u32::from(b));
    for len in 0..=32u8 {
        let p = Ipv4Prefix { addr: a, len };
        let (s, e) = p.range();
        if u32::from(s) == a32 && u32::from(e) == b32 {
            return p;
        }
    }
    Ipv4Prefix { addr: a, len: 32 }
}

fn ts_to_prefixes(ts: &[TrafficSelector]) -> Vec<Ipv4Prefix> {
    ts.iter()
        .filter_map(|t| match (t.start_addr, t.end_addr) {
            (IpAddr::V4(a), IpAddr::V4(b)) => Some(range_to_prefix(a, b)),
            _ => None,
        })
        .collect()
}

/// Responder narrowing (RFC 7296 §2.9): intersect each of the peer's IPv4 selectors with each of ours.
fn narrow(theirs: &[TrafficSelector], ours: &[Ipv4Prefix]) -> Vec<TrafficSelector> {
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
    /// `local`/`remote`: the outside addresses (IKE starts on port 500 and moves to 4500).
    pub fn new(config: Config, local: SocketAddr, remote: SocketAddr, now: Duration) -> Tunnel {
        Tunnel {
            cfg: config,
            local,
            remote: SocketAddr::new(remote.ip(), if remote.port() == 0 { IKE_PORT } else { remote.port() }),
            local_port: IKE_PORT,
            ike: None,
            retiring: Vec::new(),
            child_collision: None,
            ike_collision: None,
            recent_rekey: None,
            child: None,
            old_inbound: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
            last_error: None,
            last_down: None,
            ever_established: false,
            reconnect_at: None,
            consecutive_failures: 0,
            closed: false,
            last_recv: now,
            half_open: HalfOpenTable::new(),
            cookies: CookieJar::new(),
            dh_budget: DhBudget::new(now),
            installed_outbound: Vec::new(),
        }
    }

    /// Starts (or restarts) the IKE SA as initiator.
    pub fn connect(&mut self, now: Duration, rng: &mut dyn RandomSource) {
        self.closed = false;
        self.reconnect_at = None;
        if self.ike.is_some() {
            return;
        }
        self.local_port = IKE_PORT;
        self.remote.set_port(IKE_PORT);
        let group = self.cfg.ike_proposals.first().and_then(|p| p.dh.first().copied()).unwrap_or(DhGroup::Modp2048);
        let mut sa = IkeSa::blank(true, rand_u64(rng), IkeState::InitSent, now);
        sa.dh = Some(group.generate(rng));
        sa.ni = nonce(rng);
        sa.first_child_spi = rand_u32(rng);
        self.ike = Some(sa);
        self.send_init(now, rng);
    }

    fn send_init(&mut self, now: Duration, rng: &mut dyn RandomSource) {
        let local = SocketAddr::new(self.local.ip(), self.local_port);
        let remote = self.remote;
        let force = self.cfg.force_encap;
        let proposals = self.cfg.ike_proposals.clone();
        let Some(sa) = self.ike.as_mut() else { return };
        let Some(dh) = sa.dh.as_ref() else { return };
        let mut payloads = Vec::new();
        if let Some(c) = &sa.cookie {
            payloads.push(notify(NotifyType::COOKIE, c.clone()));
        }
        payloads.push(ike_sa_payload(&proposals, None));
        payloads.push(Payload::Ke { group: dh.group().id(), data: dh.public_value().to_vec() });
        payloads.push(Payload::Nonce(sa.ni.clone()));
        let src = if force {
            let mut fake = vec![0u8; 20];
            rng.fill_bytes(&mut fake);
            fake
        } else {
            nat_hash(sa.spi_i, 0, local)
        };
        payloads.push(notify(NotifyType::NAT_DETECTION_SOURCE_IP, src));
        payloads.push(notify(NotifyType::NAT_DETECTION_DESTINATION_IP, nat_hash(sa.spi_i, 0, remote)));
        payloads.push(notify(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED, vec![]));
        let header = Header {
            spi_i: sa.spi_i,
            spi_r: 0,
            next_payload: PayloadType::NONE,
            version: 0x20,
            exchange: ExchangeType::IKE_SA_INIT,
            flags: flags::INITIATOR,
            message_id: 0,
            length: 0,
        };
        let bytes = Message { header, payloads }.emit();
        sa.init_request = bytes.clone();
        sa.my_next_id = 1;
        sa.pending = Some(Pending::new(0, vec![bytes.clone()], now, now + self.cfg.retransmit.initial, Req::Init));
        self.transmits.push_back(Transmit { local_port: self.local_port, remote: self.remote, data: bytes });
    }

    /// An IKE datagram from the peer (on port 4500 without the non-ESP marker).
    pub fn handle_datagram(
        &mut self,
        now: Duration,
        rng: &mut dyn RandomSource,
        local_port: u16,
        remote: SocketAddr,
        data: &[u8],
    ) {
        if remote.ip() != self.remote.ip() {
            self.counters.invalid_messages += 1;
            return;
        }
        let msg = match Message::parse(data) {
            Ok(m) => m,
            Err(e) => {
                self.counters.invalid_messages += 1;
                // Only an IKE_SA_INIT request can be answered without keys.
                if let Ok(h) = Header::parse(data)
                    && h.exchange == ExchangeType::IKE_SA_INIT
                    && !h.is_response()
                    && let Fault::Notify(ty, data, _) = classify(&e, true)
                {
                    self.send_unprotected_error(h, ty, data, local_port, remote);
                }
                return;
            }
        };
        let h = msg.header;
        if h.exchange == ExchangeType::IKE_SA_INIT {
            if h.is_response() {
                self.handle_init_response(now, rng, msg, data, local_port, remote);
            } else {
                self.handle_init_request(now, rng, msg, data, local_port, remote);
            }
            return;
        }
        // Encrypted exchanges: find the SA by SPIs.
        let matches = |s: &IkeSa| s.spi_i == h.spi_i && s.spi_r == h.spi_r;
        let which = if self.ike.as_ref().is_some_and(matches) {
            Which::Current
        } else if let Some(i) = self.retiring.iter().position(|r| matches(&r.sa)) {
            Which::Retiring(i)
        } else if self.ike_collision.as_ref().is_some_and(|c| matches(&c.sa)) {
            Which::Collision
        } else if let Some(i) = self.half_open.position(h.spi_i, h.spi_r).filter(|_| !h.is_response()) {
            // Decrypted with the half-open SA's own keys below; promoted only if the peer's AUTH verifies.
            Which::HalfOpen(i)
        } else {
            self.counters.invalid_messages += 1;
            return;
        };
        let Some(sa) = self.sa_mut(which) else { return };
        // Retransmitted request: answer from the cache, before decrypting anything.
        if !h.is_response() {
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
                return;
            }
            if h.message_id != sa.peer_next_id {
                self.counters.invalid_messages += 1;
                return;
            }
        } else if sa.pending.as_ref().map(|p| p.id) != Some(h.message_id) {
            self.counters.invalid_messages += 1;
            return;
        }
        let payloads = match decrypt(sa, &msg, data) {
            Ok(Decrypted::Message(p)) => p,
            // One fragment of a larger message (authenticated): wait for the rest.
            Ok(Decrypted::Fragment) => return,
            Err(_) => {
                self.counters.invalid_messages += 1;
                return;
            }
        };
        if let Which::HalfOpen(i) = which {
            // Keys from an unauthenticated IKE_SA_INIT prove nothing yet: only the AUTH inside may.
            self.respond_auth(now, rng, i, h, payloads, local_port, remote);
            return;
        }
        self.last_recv = now;
        // NAT may change the peer's port; follow it on messages authenticated by an established SA.
        if matches!(which, Which::Current) && self.ike.as_ref().is_some_and(|s| s.state == IkeState::Established) {
            self.remote = remote;
            self.local_port = local_port;
        }
        match which {
            Which::Current if h.is_response() => self.handle_response(now, rng, h, payloads),
            Which::Current => self.handle_request(now, rng, h, payloads, local_port, remote),
            Which::Retiring(i) => self.handle_retiring(i, rng, h, payloads, local_port, remote),
            Which::Collision => self.handle_collision_sa(rng, h, payloads, local_port, remote),
            Which::HalfOpen(_) => {}
        }
    }

    fn sa_mut(&mut self, which: Which) -> Option<&mut IkeSa> {
        match which {
            Which::Current => self.ike.as_mut(),
            Which::Retiring(i) => self.retiring.get_mut(i).map(|r| &mut r.sa),
            Which::Collision => self.ike_collision.as_mut().map(|c| &mut c.sa),
            Which::HalfOpen(i) => self.half_open.get_mut(i),
        }
    }

    fn send_unprotected_error(
        &mut self,
        h: Header,
        ty: NotifyType,
        data: Vec<u8>,
        local_port: u16,
        remote: SocketAddr,
    ) {
        let header = Header { spi_r: 0, flags: flags::RESPONSE, length: 0, next_payload: PayloadType::NONE, ..h };
        let bytes = Message { header, payloads: vec![notify(ty, data)] }.emit();
        self.transmits.push_back(Transmit { local_port, remote, data: bytes });
    }
}

/// Derives an IKE SA's keys; `initiator` = we are the initiator of this SA (decides which keys protect output).
fn derive_ike(
    suite: &IkeSuite,
    ni: &[u8],
    nr: &[u8],
    g_ir: &[u8],
    spi_i: u64,
    spi_r: u64,
    initiator: bool,
) -> Option<IkeKeys> {
    let skeyseed = kdf::skeyseed(suite.prf, ni, nr, g_ir);
    keys_from(suite, &skeyseed, ni, nr, spi_i, spi_r, initiator)
}

fn keys_from(
    suite: &IkeSuite,
    skeyseed: &[u8],
    ni: &[u8],
    nr: &[u8],
    spi_i: u64,
    spi_r: u64,
    initiator: bool,
) -> Option<IkeKeys> {
    let k: IkeSaKeys = kdf::ike_sa_keys(suite.prf, skeyseed, ni, nr, spi_i, spi_r, suite.encr, suite.integ);
    let ci = SaCipher::new(suite.encr, suite.integ, &k.sk_ei, &k.sk_ai).ok()?;
    let cr = SaCipher::new(suite.encr, suite.integ, &k.sk_er, &k.sk_ar).ok()?;
    let (out, inn) = if initiator { (ci, cr) } else { (cr, ci) };
    Some(IkeKeys { sk_d: k.sk_d, sk_pi: k.sk_pi, sk_pr: k.sk_pr, out, inn })
}

/// Decrypts and parses the SK payload of an authenticated exchange.
enum Decrypted {
    Message(Vec<Payload>),
    /// An SKF fragment was authenticated and stored; the message is not complete yet.
    Fragment,
}

/// Authenticates and decrypts an SK payload, or an SKF fragment (reassembled per direction, RFC 7383 §2.6).
fn decrypt(sa: &mut IkeSa, msg: &Message, data: &[u8]) -> Result<Decrypted, &'static str> {
    match msg.payloads.last() {
        Some(Payload::Sk { next_inner, body, aad_len }) => {
            let plain = open_body(sa, body, *aad_len, data)?;
            parse_payloads(*next_inner, &plain).map(Decrypted::Message).map_err(|_| "malformed inner payloads")
        }
        Some(Payload::Skf { next_inner, number, total, body, aad_len }) => {
            let plain = open_body(sa, body, *aad_len, data)?;
            let h = &msg.header;
            let r = if h.is_response() { &mut sa.frag_responses } else { &mut sa.frag_requests };
            match r.add(h.message_id, *number, *total, *next_inner, &plain) {
                Ok(Some((first, whole))) => {
                    parse_payloads(first, &whole).map(Decrypted::Message).map_err(|_| "malformed inner payloads")
                }
                Ok(None) => Ok(Decrypted::Fragment),
                Err(_) => Err("bad fragment"),
            }
        }
        _ => Err("no SK payload"),
    }
}

/// Checks the ICV over `data[..aad_len]` and the body, decrypts, and strips the padding.
fn open_body(sa: &IkeSa, body: &[u8], aad_len: usize, data: &[u8]) -> Result<Zeroizing<Vec<u8>>, &'static str> {
    let keys = sa.keys.as_ref().ok_or("no keys")?;
    let c = &keys.inn;
    let (iv_len, icv_len) = (c.iv_len(), c.icv_len());
    if body.len() < iv_len + icv_len + 1 || aad_len > data.len() {
        return Err("SK payload too short");
    }
    let iv = &body[..iv_len];
    let icv = &body[body.len() - icv_len..];
    let mut plain = Zeroizing::new(body[iv_len..body.len() - icv_len].to_vec());
    c.open_in_place(&data[..aad_len], iv, &mut plain, icv).map_err(|_| "integrity check failed")?;
    let pad = *plain.last().ok_or("empty")? as usize;
    if pad + 1 > plain.len() {
        return Err("bad padding");
    }
    let keep = plain.len() - pad - 1;
    plain.truncate(keep);
    Ok(plain)
}

/// Builds an encrypted message on `sa` as the datagrams to send: one, or RFC 7383 fragments when the peer
/// supports them and the message is larger than `fragment_size` octets.
#[allow(clippy::too_many_arguments)]
fn encrypt_all(
    sa: &IkeSa,
    exchange: ExchangeType,
    response: bool,
    message_id: u32,
    payloads: &[Payload],
    fragment_size: usize,
    rng: &mut dyn RandomSource,
) -> Vec<Vec<u8>> {
    let (first, plain) = emit_payloads(payloads);
    let plain = Zeroizing::new(plain);
    let whole = seal(sa, Sender::Us, exchange, response, message_id, first, &plain, None, rng);
    let Some(keys) = sa.keys.as_ref() else { return vec![whole] };
    if !sa.peer_fragmentation || whole.len() <= fragment_size {
        return vec![whole];
    }
    // Room for plaintext in one fragment: the datagram minus header, SKF header, IV, ICV and worst-case padding.
    let c = &keys.out;
    let overhead = HEADER_LEN + GENERIC_HEADER_LEN + 4 + c.iv_len() + c.icv_len() + c.block_size().max(1);
    let room = fragment_size.saturating_sub(overhead).max(MIN_FRAGMENT_PLAINTEXT);
    let chunks: Vec<&[u8]> = plain.chunks(room).collect();
    let total = u16::try_from(chunks.len()).unwrap_or(u16::MAX);
    chunks
        .iter()
        .zip(1u16..)
        .map(|(chunk, n)| {
            let next = if n == 1 { first } else { PayloadType::NONE };
            seal(sa, Sender::Us, exchange, response, message_id, next, chunk, Some((n, total)), rng)
        })
        .collect()
}

/// Builds an encrypted message on `sa` (small messages that are never fragmented).
fn encrypt(
    sa: &IkeSa,
    exchange: ExchangeType,
    response: bool,
    message_id: u32,
    payloads: &[Payload],
    rng: &mut dyn RandomSource,
) -> Vec<u8> {
    let (first, plain) = emit_payloads(payloads);
    seal(sa, Sender::Us, exchange, response, message_id, first, &Zeroizing::new(plain), None, rng)
}

/// Whose keys and role seal a message: ours, or (for fuzzing the engine with authenticated input) the peer's.
#[derive(Clone, Copy)]
enum Sender {
    Us,
    #[cfg_attr(not(fuzzing), allow(dead_code))]
    Peer,
}

/// Seals `plain` (inner payloads starting with `first`) into one SK message, or with `fragment` (number, total)
/// into one SKF fragment (RFC 7383 §2.5: the fragment fields are part of the authenticated header).
#[allow(clippy::too_many_arguments)]
fn seal(
    sa: &IkeSa,
    sender: Sender,
    exchange: ExchangeType,
    response: bool,
    message_id: u32,
    first: PayloadType,
    plain: &[u8],
    fragment: Option<(u16, u16)>,
    rng: &mut dyn RandomSource,
) -> Vec<u8> {
    let Some(keys) = sa.keys.as_ref() else { return Vec::new() };
    let (c, initiator) = match sender {
        Sender::Us => (&keys.out, sa.initiator),
        Sender::Peer => (&keys.inn, !sa.initiator),
    };
    let block = c.block_size().max(1);
    let pad = (block - (plain.len() + 1) % block) % block;
    let mut padded = Zeroizing::new(Vec::with_capacity(plain.len() + pad + 1));
    padded.extend_from_slice(plain);
    padded.resize(plain.len() + pad, 0);
    padded.push(pad as u8);
    let (iv_len, icv_len) = (c.iv_len(), c.icv_len());
    let frag_len = if fragment.is_some() { 4 } else { 0 };
    let body_len = iv_len + padded.len() + icv_len;
    let total = HEADER_LEN + GENERIC_HEADER_LEN + frag_len + body_len;
    let mut out = vec![0u8; total];
    let mut fl = if initiator { flags::INITIATOR } else { 0 };
    if response {
        fl |= flags::RESPONSE;
    }
    let header = Header {
        spi_i: sa.spi_i,
        spi_r: sa.spi_r,
        next_payload: if fragment.is_some() { PayloadType::SKF } else { PayloadType::SK },
        version: 0x20,
        exchange,
        flags: fl,
        message_id,
        length: total as u32,
    };
    header.emit(&mut out[..HEADER_LEN]);
    out[HEADER_LEN] = first.0;
    out[HEADER_LEN + 2..HEADER_LEN + 4]
        .copy_from_slice(&((GENERIC_HEADER_LEN + frag_len + body_len) as u16).to_be_bytes());
    if let Some((number, of)) = fragment {
        out[HEADER_LEN + 4..HEADER_LEN + 6].copy_from_slice(&number.to_be_bytes());
        out[HEADER_LEN + 6..HEADER_LEN + 8].copy_from_slice(&of.to_be_bytes());
    }
    let aad_end = HEADER_LEN + GENERIC_HEADER_LEN + frag_len;
    rng.fill_bytes(&mut out[aad_end..aad_end + iv_len]);
    let (aad, rest) = out.split_at_mut(aad_end);
    let (iv, rest) = rest.split_at_mut(iv_len);
    let (ct, icv) = rest.split_at_mut(padded.len());
    ct.copy_from_slice(&padded);
    // Lengths are ours and consistent, so sealing cannot fail.
    let _ = c.seal_in_place(aad, iv, ct, icv);
    out
}

impl Tunnel {
    fn local_ts(&self) -> Vec<Ipv4Prefix> {
        self.cfg.local_ts.clone()
    }

    /// Queues a request on the current IKE SA (window size 1: the caller checks nothing is pending).
    fn send_request(
        &mut self,
        now: Duration,
        rng: &mut dyn RandomSource,
        exchange: ExchangeType,
        payloads: Vec<Payload>,
        req: Req,
    ) {
        let initial = self.cfg.retransmit.initial;
        let Some(sa) = self.ike.as_mut() else { return };
        let id = sa.my_next_id;
        let datagrams = encrypt_all(sa, exchange, false, id, &payloads, self.cfg.fragment_size, rng);
        sa.my_next_id += 1;
        for d in &datagrams {
            self.transmits.push_back(Transmit { local_port: self.local_port, remote: self.remote, data: d.clone() });
        }
        sa.pending = Some(Pending::new(id, datagrams, now, now + initial, req));
    }

    fn send_response(
        &mut self,
        rng: &mut dyn RandomSource,
        h: Header,
        payloads: Vec<Payload>,
        local_port: u16,
        remote: SocketAddr,
    ) {
        self.respond_on(Which::Current, rng, h, payloads, local_port, remote);
    }

    /// Answers request `h` on the IKE SA `which`, and caches the answer for retransmissions of the request.
    fn respond_on(
        &mut self,
        which: Which,
        rng: &mut dyn RandomSource,
        h: Header,
        payloads: Vec<Payload>,
        local_port: u16,
        remote: SocketAddr,
    ) {
        let fragment_size = self.cfg.fragment_size;
        let Some(sa) = self.sa_mut(which) else { return };
        let datagrams = encrypt_all(sa, h.exchange, true, h.message_id, &payloads, fragment_size, rng);
        sa.peer_next_id = h.message_id.wrapping_add(1);
        sa.last_response = Some((h.message_id, datagrams.clone()));
        for data in datagrams {
            self.transmits.push_back(Transmit { local_port, remote, data });
        }
    }

    /// Ends the current IKE SA (and CHILD_SA) with `reason`, and plans a reconnect when we are the initiator.
    fn fail(&mut self, now: Duration, reason: DownReason, message: String) {
        let was_up = self.ike.as_ref().is_some_and(|s| s.state == IkeState::Established);
        self.ike = None;
        self.down(now, reason, message, was_up);
    }

    /// Closes the current IKE SA and `also` (IKE SAs the peer holds for us that we will not use) with a DELETE
    /// protected by each one's own keys, then ends the tunnel's SAs as [`Tunnel::fail`] does (reconnecting at
    /// once when it was up and `reason` is not permanent). Deleting an IKE SA deletes every CHILD_SA under it
    /// (RFC 7296 §1.4.1), so the peer keeps nothing of what we abandon, whichever SA it moved its CHILD_SAs to.
    /// The DELETEs stay tracked (retransmitted) as retiring SAs.
    fn close_and_restart(
        &mut self,
        now: Duration,
        rng: &mut dyn RandomSource,
        reason: DownReason,
        message: String,
        also: Vec<IkeSa>,
    ) {
        let current = self.ike.take();
        let was_up = current.as_ref().is_some_and(|s| s.state == IkeState::Established);
        let mut closing = also;
        closing.extend(current.filter(|s| s.state == IkeState::Established));
        for sa in closing.iter_mut().filter(|s| s.keys.is_some()) {
            sa.pending = None;
            self.send_delete_ike(now, rng, sa);
        }
        self.down(now, reason, message, was_up);
        for sa in closing.into_iter().filter(|s| s.pending.is_some()) {
            self.retiring.push(Retiring { sa, forget_at: now + RETIRED_IKE_LINGER });
        }
    }

    /// The rest of [`Tunnel::fail`], once the IKE SA is gone: `was_up` says whether it was established.
    fn down(&mut self, now: Duration, reason: DownReason, message: String, was_up: bool) {
        self.forget_rekeys();
        self.drop_child();
        self.local_port = IKE_PORT;
        self.remote.set_port(IKE_PORT);
        if reason == DownReason::DeadPeer && was_up {
            self.counters.dpd_misses += 1;
        }
        self.last_error = Some(message);
        self.last_down = Some(reason.clone());
        self.events.push_back(Event::IkeSaDown { reason: reason.clone() });
        if self.cfg.startup == StartupAction::Start && !self.closed {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            let (min, max) = if reason.is_permanent() {
                (PERMANENT_RETRY_MIN, PERMANENT_RETRY_MAX)
            } else if was_up {
                (Duration::ZERO, Duration::ZERO)
            } else {
                (TRANSIENT_RETRY_MIN, TRANSIENT_RETRY_MAX)
            };
            let shift = self.consecutive_failures.saturating_sub(1).min(8);
            let delay = (min * (1u32 << shift)).min(max);
            self.reconnect_at = Some(now + delay);
        }
    }

    /// Forgets retiring IKE SAs and unresolved rekey collisions (the IKE SA they belong to is gone).
    fn forget_rekeys(&mut self) {
        self.retiring.clear();
        self.child_collision = None;
        self.ike_collision = None;
        self.recent_rekey = None;
    }

    /// Queues an event, and keeps `installed_outbound` as the datapath will have it once the event is applied
    /// (install adds an outbound SA, a rekey switches from the old one to the new one, a delete removes it).
    fn emit(&mut self, e: Event) {
        match &e {
            Event::ChildSaInstalled(c) => self.installed_outbound.push(c.outbound_spi),
            Event::ChildSaRekeyed { old_outbound_spi, new, .. } => {
                self.installed_outbound.retain(|s| s != old_outbound_spi);
                self.installed_outbound.push(new.outbound_spi);
            }
            Event::ChildSaDeleted { outbound_spi, .. } => self.installed_outbound.retain(|s| s != outbound_spi),
            _ => {}
        }
        self.events.push_back(e);
    }

    fn drop_child(&mut self) {
        if let Some(c) = self.child.take() {
            self.emit(Event::ChildSaDeleted { inbound_spi: c.inbound_spi, outbound_spi: c.outbound_spi });
        }
        for o in std::mem::take(&mut self.old_inbound) {
            self.emit(Event::ChildSaDeleted { inbound_spi: o.inbound_spi, outbound_spi: o.outbound_spi });
        }
    }

    fn rekey_time(&self, now: Duration, lifetime: Duration, margin: Duration, rng: &mut dyn RandomSource) -> Duration {
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

    /// Builds the ChildSa for the datapath from negotiated parameters.
    #[allow(clippy::too_many_arguments)]
    fn make_child(
        &mut self,
        now: Duration,
        rng: &mut dyn RandomSource,
        inbound_spi: u32,
        outbound_spi: u32,
        suite: EspSuite,
        g_ir: Option<&[u8]>,
        ni: &[u8],
        nr: &[u8],
        we_initiated: bool,
        local_ts: Vec<Ipv4Prefix>,
        remote_ts: Vec<Ipv4Prefix>,
    ) -> Option<ChildSa> {
        let sa = self.ike.as_ref()?;
        let ike_suite = sa.suite?;
        let keys = sa.keys.as_ref()?;
        let k = kdf::child_sa_keys(ike_suite.prf, &keys.sk_d, g_ir, ni, nr, suite.encr, suite.integ);
        let (outbound_keys, inbound_keys) = if we_initiated {
            (k.initiator_to_responder, k.responder_to_initiator)
        } else {
            (k.responder_to_initiator, k.initiator_to_responder)
        };
        let rekey_at = self.rekey_time(now, self.cfg.child_lifetime, self.cfg.child_rekey_margin, rng);
        self.child = Some(Child {
            inbound_spi,
            outbound_spi,
            suite,
            established_at: now,
            rekey_at,
            local_ts: local_ts.clone(),
            remote_ts: remote_ts.clone(),
        });
        Some(ChildSa {
            inbound_spi,
            outbound_spi,
            encr: suite.encr,
            integ: suite.integ,
            inbound_keys,
            outbound_keys,
            proposal: suite.name(),
            local_ts,
            remote_ts,
            established_at: now,
            rekey_at,
        })
    }

    fn handle_init_response(
        &mut self,
        now: Duration,
        rng: &mut dyn RandomSource,
        msg: Message,
        data: &[u8],
        local_port: u16,
        remote: SocketAddr,
    ) {
        let h = msg.header;
        let Some(sa) = self.ike.as_mut() else { return };
        if !sa.initiator || sa.state != IkeState::InitSent || sa.spi_i != h.spi_i || h.message_id != 0 {
            self.counters.invalid_messages += 1;
            return;
        }
        let _ = (local_port, remote);
        let retry = [NotifyType::COOKIE, NotifyType::INVALID_KE_PAYLOAD]
            .into_iter()
            .find(|t| find_notify(&msg.payloads, *t).is_some());
        if let Some(ty) = retry
            && sa.init_retries >= MAX_INIT_RETRIES
        {
            self.fail(now, DownReason::PeerError { notify: ty.0 }, format!("peer keeps answering {ty}"));
            return;
        }
        if let Some(c) = find_notify(&msg.payloads, NotifyType::COOKIE) {
            if sa.cookie.as_deref() == Some(&c.data[..]) || c.data.is_empty() || c.data.len() > 64 {
                return;
            }
            sa.init_retries += 1;
            sa.cookie = Some(c.data.clone());
            self.send_init(now, rng);
            return;
        }
        if let Some(n) = find_notify(&msg.payloads, NotifyType::INVALID_KE_PAYLOAD) {
            let wanted =
                if n.data.len() == 2 { DhGroup::from_id(u16::from_be_bytes([n.data[0], n.data[1]])) } else { None };
            let offered = |g: &DhGroup| self.cfg.ike_proposals.iter().any(|p| p.dh.contains(g));
            match wanted.filter(|g| offered(g) && Some(*g) != sa.dh.as_ref().map(|d| d.group())) {
                Some(g) => {
                    let sa = self.ike.as_mut().expect("checked above");
                    sa.init_retries += 1;
                    sa.dh = Some(g.generate(rng));
                    self.send_init(now, rng);
                }
                None => self.fail(
                    now,
                    DownReason::NoProposalChosen { by_peer: true },
                    "peer asked for a DH group we do not offer (INVALID_KE_PAYLOAD)".into(),
                ),
            }
            return;
        }
        if let Some(n) = first_error_notify(&msg.payloads) {
            let reason = match n.ty {
                NotifyType::NO_PROPOSAL_CHOSEN => DownReason::NoProposalChosen { by_peer: true },
                t => DownReason::PeerError { notify: t.0 },
            };
            self.fail(now, reason, format!("peer sent {}", n.ty));
            return;
        }
        let proposals = msg.payloads.iter().find_map(|p| if let Payload::Sa(p) = p { Some(p.clone()) } else { None });
        let ke = msg
            .payloads
            .iter()
            .find_map(|p| if let Payload::Ke { group, data } = p { Some((*group, data.clone())) } else { None });
        let nr = msg.payloads.iter().find_map(|p| if let Payload::Nonce(n) = p { Some(n.clone()) } else { None });
        let suite = proposals.as_deref().and_then(chosen_ike);
        let (Some(suite), Some((group, ke_data)), Some(nr)) = (suite, ke, nr) else {
            self.fail(now, DownReason::InvalidSyntax, "malformed IKE_SA_INIT response".into());
            return;
        };
        let offered = self.cfg.ike_proposals.iter().any(|p| {
            p.encr.contains(&suite.encr)
                && p.prf.contains(&suite.prf)
                && p.dh.contains(&suite.dh)
                && suite.integ.is_none_or(|i| p.integ.contains(&i))
        });
        let Some(dh) = sa.dh.as_ref() else { return };
        if !offered || suite.dh.id() != group || dh.group() != suite.dh || !nonce_fits(&nr, suite.prf) {
            self.fail(
                now,
                DownReason::NoProposalChosen { by_peer: false },
                "peer chose a proposal we did not offer".into(),
            );
            return;
        }
        let shared = match dh.shared_secret(&ke_data) {
            Ok(s) => s,
            Err(_) => {
                self.fail(now, DownReason::InvalidSyntax, "peer's KE value is invalid".into());
                return;
            }
        };
        sa.spi_r = h.spi_r;
        sa.nr = nr;
        sa.suite = Some(suite);
        sa.peer_fragmentation = find_notify(&msg.payloads, NotifyType::IKEV2_FRAGMENTATION_SUPPORTED).is_some();
        sa.init_response = data.to_vec();
        sa.keys = derive_ike(&suite, &sa.ni, &sa.nr, &shared, sa.spi_i, sa.spi_r, true);
        sa.dh = None;
        sa.pending = None;
        sa.state = IkeState::AuthSent;
        self.last_recv = now;
        // Forced encapsulation (or a detected NAT): continue on 4500.
        let nat = find_notify(&msg.payloads, NotifyType::NAT_DETECTION_DESTINATION_IP)
            .is_some_and(|n| n.data != nat_hash(h.spi_i, h.spi_r, SocketAddr::new(self.local.ip(), self.local_port)));
        sa.nat_detected = nat;
        if self.cfg.force_encap || nat {
            self.local_port = NATT_PORT;
            self.remote.set_port(NATT_PORT);
        }
        self.send_auth(now, rng);
    }

    fn auth_octets(&self, sa: &IkeSa, ours: bool, id: &Identification) -> Option<Vec<u8>> {
        let keys = sa.keys.as_ref()?;
        let suite = sa.suite?;
        // The initiator signs its IKE_SA_INIT request, Nr and prf(SK_pi, IDi'); the responder its response, Ni
        // and prf(SK_pr, IDr') (RFC 7296 §2.15).
        let signer_is_initiator = ours == sa_is_original_initiator(sa);
        let (msg, nonce, skp) = if signer_is_initiator {
            (&sa.init_request, &sa.nr, &keys.sk_pi)
        } else {
            (&sa.init_response, &sa.ni, &keys.sk_pr)
        };
        let maced = suite.prf.compute(skp, &[&id_body(id)]);
        let mut octets = msg.clone();
        octets.extend_from_slice(nonce);
        octets.extend_from_slice(&maced);
        Some(kdf::psk_auth(suite.prf, &self.cfg.psk, &octets).to_vec())
    }

    /// Checks the peer's AUTH (PSK, constant-time compare) and, if configured, its identity. `None` when there
    /// is no IKE SA with keys. Returns (AUTH matches, identity acceptable).
    fn verify_peer_auth(
        &self,
        sa: &IkeSa,
        id: &Identification,
        method: AuthMethod,
        auth: &[u8],
    ) -> Option<(bool, bool)> {
        use subtle::ConstantTimeEq;
        let expected = self.auth_octets(sa, false, id)?;
        let id_ok = self.cfg.remote_id.as_ref().is_none_or(|r| id_matches(r, id));
        let auth_ok =
            method == AuthMethod::SHARED_KEY_MIC && expected.len() == auth.len() && bool::from(expected.ct_eq(auth));
        Some((auth_ok, id_ok))
    }

    fn send_auth(&mut self, now: Duration, rng: &mut dyn RandomSource) {
        let idi = identity_payload(&self.cfg.local_id);
        let Some(sa) = self.ike.as_ref() else { return };
        let Some(auth) = self.auth_octets(sa, true, &idi) else { return };
        let spi = sa.first_child_spi;
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
        self.send_request(now, rng, ExchangeType::IKE_AUTH, payloads, Req::Auth);
    }
}

/// Whether we were the initiator of the IKE_SA_INIT that created this SA's keys. After an IKE rekey the roles
/// of the new SA follow the rekey exchange, but AUTH is only computed on SAs created by IKE_SA_INIT.
fn sa_is_original_initiator(sa: &IkeSa) -> bool {
    sa.initiator
}

fn id_matches(expected: &Identity, got: &Identification) -> bool {
    identity_payload(expected) == *got
}

/// The nonce, if its length suits `prf` (the PRF of the IKE SA the exchange runs on, see [`nonce_fits`]).
fn payload_nonce(p: &[Payload], prf: Prf) -> Option<Vec<u8>> {
    p.iter().find_map(|p| if let Payload::Nonce(n) = p { Some(n.clone()) } else { None }).filter(|n| nonce_fits(n, prf))
}

fn payload_ke(p: &[Payload]) -> Option<(u16, Vec<u8>)> {
    p.iter().find_map(|p| if let Payload::Ke { group, data } = p { Some((*group, data.clone())) } else { None })
}

fn payload_sa(p: &[Payload]) -> Option<Vec<wire::Proposal>> {
    p.iter().find_map(|p| if let Payload::Sa(s) = p { Some(s.clone()) } else { None })
}

fn payload_ts(p: &[Payload], initiator_side: bool) -> Option<Vec<TrafficSelector>> {
    p.iter().find_map(|p| match p {
        Payload::TsI(t) if initiator_side => Some(t.clone()),
        Payload::TsR(t) if !initiator_side => Some(t.clone()),
        _ => None,
    })
}

fn reason_for(ty: NotifyType, by_peer: bool) -> DownReason {
    match ty {
        NotifyType::AUTHENTICATION_FAILED => DownReason::AuthenticationFailed { by_peer },
        NotifyType::NO_PROPOSAL_CHOSEN => DownReason::NoProposalChosen { by_peer },
        NotifyType::TS_UNACCEPTABLE => DownReason::TsUnacceptable { by_peer },
        NotifyType::INVALID_SYNTAX => DownReason::InvalidSyntax,
        t => DownReason::PeerError { notify: t.0 },
    }
}

/// When to retry a refused rekey: after TEMPORARY_FAILURE (a collision) soon, with random jitter so two peers
/// that collided do not collide again; after a refusal, in 30 s.
fn retry_delay(ty: NotifyType, rng: &mut dyn RandomSource) -> Duration {
    let mut b = [0u8; 2];
    rng.fill_bytes(&mut b);
    let jitter = Duration::from_millis(u64::from(u16::from_be_bytes(b)) % 4000);
    if ty == NotifyType::TEMPORARY_FAILURE { Duration::from_secs(1) + jitter } else { Duration::from_secs(30) + jitter }
}

fn deletes_ike(p: &[Payload]) -> bool {
    p.iter().any(|p| matches!(p, Payload::Delete(d) if d.protocol == ProtocolId::IKE))
}

fn spi_bytes(p: &[u8]) -> Option<u32> {
    (p.len() == 4).then(|| u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
}

impl Tunnel {
    fn handle_request(
        &mut self,
        now: Duration,
        rng: &mut dyn RandomSource,
        h: Header,
        payloads: Vec<Payload>,
        local_port: u16,
        remote: SocketAddr,
    ) {
        let Some(state) = self.ike.as_ref().map(|s| s.state) else { return };
        // Requests only on an established SA: before the peer's AUTH verified, nothing it asks for (a DELETE
        // included) is acted on. (The responder's IKE_AUTH is handled on the half-open table.)
        match (h.exchange, state) {
            (ExchangeType::CREATE_CHILD_SA, IkeState::Established) => {
                self.respond_create_child(now, rng, h, payloads, local_port, remote)
            }
            (ExchangeType::INFORMATIONAL, IkeState::Established) => {
                self.respond_informational(now, rng, h, payloads, local_port, remote)
            }
            _ => {
                self.counters.invalid_messages += 1;
            }
        }
    }

    /// The PRF of the current IKE SA (SHA-1, the smallest, before one is negotiated).
    fn ike_prf(&self) -> Prf {
        self.ike.as_ref().and_then(|s| s.suite).map_or(Prf::HmacSha1, |s| s.prf)
    }

    fn establish_ike(&mut self, now: Duration, rng: &mut dyn RandomSource) {
        let rekey_at = self.rekey_time(now, self.cfg.ike_lifetime, self.cfg.ike_rekey_margin, rng);
        let Some(sa) = self.ike.as_mut() else { return };
        sa.state = IkeState::Established;
        sa.established_at = now;
        sa.rekey_at = rekey_at;
        sa.init_request = Vec::new();
        sa.init_response = Vec::new();
        let proposal = sa.suite.map(|s| s.name()).unwrap_or_default();
        let (local_spi, remote_spi) = (sa.local_spi(), sa.remote_spi());
        self.ever_established = true;
        self.consecutive_failures = 0;
        self.last_error = None;
        self.last_down = None;
        self.last_recv = now;
        self.events.push_back(Event::IkeSaEstablished { local_spi, remote_spi, proposal });
    }

    fn respond_create_child(
        &mut self,
        now: Duration,
        rng: &mut dyn RandomSource,
        h: Header,
        payloads: Vec<Payload>,
        local_port: u16,
        remote: SocketAddr,
    ) {
        let in_flight = self.ike.as_ref().and_then(|s| s.pending.as_ref()).map(|p| match p.req {
            Req::RekeyChild { .. } => Some(false),
            Req::RekeyIke { .. } => Some(true),
            _ => None,
        });
        let proposals = payload_sa(&payloads).unwrap_or_default();
        let is_ike = proposals.first().is_some_and(|p| p.protocol == ProtocolId::IKE);
        let rekey = find_notify(&payloads, NotifyType::REKEY_SA).cloned();
        // The same kind of rekey in flight from both sides is a collision (RFC 7296 §2.8.1/§2.8.2): answer as
        // usual, and resolve by the nonces when ours completes. A CHILD_SA rekey and an IKE SA rekey at once, or a
        // second collision before the first is resolved, wait (§2.25).
        let collision = match in_flight.flatten() {
            Some(ours_is_ike) if ours_is_ike == is_ike => {
                let unresolved = self.child_collision.is_some() || self.ike_collision.is_some();
                if unresolved {
                    self.send_response(rng, h, vec![notify(NotifyType::TEMPORARY_FAILURE, vec![])], local_port, remote);
                    return;
                }
                true
            }
            Some(_) => {
                self.send_response(rng, h, vec![notify(NotifyType::TEMPORARY_FAILURE, vec![])], local_port, remote);
                return;
            }
            None => false,
        };
        let Some(ni) = payload_nonce(&payloads, self.ike_prf()) else {
            self.send_response(rng, h, vec![notify(NotifyType::INVALID_SYNTAX, vec![])], local_port, remote);
            return;
        };
        let ke = payload_ke(&payloads);
        if is_ike {
            self.respond_ike_rekey(now, rng, h, proposals, ni, ke, local_port, remote, collision);
            return;
        }
        let Some(rekey) = rekey else {
            // A second CHILD_SA would break AWS's one-SA-pair rule.
            self.send_response(rng, h, vec![notify(NotifyType::NO_ADDITIONAL_SAS, vec![])], local_port, remote);
            return;
        };
        let Some(child) = self.child.as_ref() else {
            self.send_response(rng, h, vec![notify(NotifyType::CHILD_SA_NOT_FOUND, vec![])], local_port, remote);
            return;
        };
        let named = spi_bytes(&rekey.spi);
        let names = |o: &OldInbound| Some(o.outbound_spi) == named || Some(o.inbound_spi) == named;
        let mut late = None;
        if named != Some(child.outbound_spi) && named != Some(child.inbound_spi) {
            let replaced = self.old_inbound.iter().find(|o| names(o)).map(|o| o.inbound_spi);
            match (replaced, self.recent_rekey.as_ref()) {
                // The peer's rekey crossed ours, which completed first: a collision, answered as usual and
                // resolved at once by the nonces (§2.8.1).
                (Some(r), Some(rec)) if rec.replaced_inbound_spi == r && !collision => {
                    late = self.recent_rekey.take();
                }
                // An SA being deleted: the peer retries on the new one if it still wants to (§2.25).
                (Some(_), _) => {
                    let busy = vec![notify(NotifyType::TEMPORARY_FAILURE, vec![])];
                    self.send_response(rng, h, busy, local_port, remote);
                    return;
                }
                (None, _) => {
                    let none = vec![notify(NotifyType::CHILD_SA_NOT_FOUND, vec![])];
                    self.send_response(rng, h, none, local_port, remote);
                    return;
                }
            }
        }
        let Some((number, outbound_spi, suite)) = select_esp(&self.cfg.esp_proposals, &proposals, true) else {
            self.send_response(rng, h, vec![notify(NotifyType::NO_PROPOSAL_CHOSEN, vec![])], local_port, remote);
            return;
        };
        let mut dh_pub = None;
        let mut g_ir = None;
        if let Some(g) = suite.dh {
            match &ke {
                Some((group, data)) if *group == g.id() => {
                    let dh = g.generate(rng);
                    match dh.shared_secret(data) {
                        Ok(s) => g_ir = Some(s),
                        Err(_) => {
                            self.send_response(
                                rng,
                                h,
                                vec![notify(NotifyType::INVALID_SYNTAX, vec![])],
                                local_port,
                                remote,
                            );
                            return;
                        }
                    }
                    dh_pub = Some(Payload::Ke { group: g.id(), data: dh.public_value().to_vec() });
                }
                _ => {
                    self.send_response(
                        rng,
                        h,
                        vec![notify(NotifyType::INVALID_KE_PAYLOAD, g.id().to_be_bytes().to_vec())],
                        local_port,
                        remote,
                    );
                    return;
                }
            }
        }
        let (local_ts, remote_ts) = (child.local_ts.clone(), child.remote_ts.clone());
        let (old_in, old_out) = (child.inbound_spi, child.outbound_spi);
        let inbound_spi = rand_u32(rng);
        let nr = nonce(rng);
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
        self.send_response(rng, h, resp, local_port, remote);
        let grace = self.cfg.old_inbound_grace;
        if let Some(rec) = &late {
            self.counters.rekey_collisions += 1;
            if !first_exchange_is_redundant(&rec.ni, &rec.nr, &ni, &nr) {
                // The peer's new SA holds the lowest nonce: the peer closes it. It never carries our traffic; it
                // is remembered only to answer that DELETE (or to delete it ourselves if the peer does not).
                self.old_inbound.push(OldInbound { inbound_spi, outbound_spi, delete_at: now + grace * 2 });
                return;
            }
            // Ours (the current SA) is redundant: we close it now, the peer's replaces it below, and the peer,
            // whose rekey survives, deletes the SA both replaced.
            if let Some(o) = self.old_inbound.iter_mut().find(|o| o.inbound_spi == rec.replaced_inbound_spi) {
                o.delete_at = o.delete_at.max(now + grace * 2);
            }
        }
        if let Some(new) = self.make_child(
            now,
            rng,
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
            self.old_inbound.push(OldInbound { inbound_spi: old_in, outbound_spi: old_out, delete_at });
            self.emit(Event::ChildSaRekeyed { old_inbound_spi: old_in, old_outbound_spi: old_out, new });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn respond_ike_rekey(
        &mut self,
        now: Duration,
        rng: &mut dyn RandomSource,
        h: Header,
        proposals: Vec<wire::Proposal>,
        ni: Vec<u8>,
        ke: Option<(u16, Vec<u8>)>,
        local_port: u16,
        remote: SocketAddr,
        collision: bool,
    ) {
        let Some((group, ke_data)) = ke else {
            self.send_response(rng, h, vec![notify(NotifyType::INVALID_SYNTAX, vec![])], local_port, remote);
            return;
        };
        let Some((number, suite)) = select_ike(&self.cfg.ike_proposals, &proposals, Some(group)) else {
            self.send_response(rng, h, vec![notify(NotifyType::NO_PROPOSAL_CHOSEN, vec![])], local_port, remote);
            return;
        };
        let peer_spi = proposals
            .iter()
            .find(|p| p.number == number)
            .and_then(|p| <[u8; 8]>::try_from(&p.spi[..]).ok())
            .map(u64::from_be_bytes);
        let Some(peer_spi) = peer_spi.filter(|s| *s != 0 && nonce_fits(&ni, suite.prf)) else {
            self.send_response(rng, h, vec![notify(NotifyType::INVALID_SYNTAX, vec![])], local_port, remote);
            return;
        };
        if suite.dh.id() != group {
            self.send_response(
                rng,
                h,
                vec![notify(NotifyType::INVALID_KE_PAYLOAD, suite.dh.id().to_be_bytes().to_vec())],
                local_port,
                remote,
            );
            return;
        }
        let dh = suite.dh.generate(rng);
        let Ok(g_ir) = dh.shared_secret(&ke_data) else {
            self.send_response(rng, h, vec![notify(NotifyType::INVALID_SYNTAX, vec![])], local_port, remote);
            return;
        };
        let Some(old) = self.ike.as_ref() else { return };
        let (Some(old_suite), Some(old_keys)) = (old.suite, old.keys.as_ref()) else { return };
        let our_spi = rand_u64(rng);
        let nr = nonce(rng);
        let skeyseed = kdf::skeyseed_rekey(old_suite.prf, &old_keys.sk_d, &g_ir, &ni, &nr);
        let Some(keys) = keys_from(&suite, &skeyseed, &ni, &nr, peer_spi, our_spi, false) else { return };
        let resp = vec![
            suite_proposal_ike(&suite, number, Some(our_spi)),
            Payload::Nonce(nr.clone()),
            Payload::Ke { group: suite.dh.id(), data: dh.public_value().to_vec() },
        ];
        self.send_response(rng, h, resp, local_port, remote);
        let new = self.rekeyed_sa(now, rng, false, peer_spi, our_spi, suite, keys);
        if collision {
            // Ours is in flight on the old IKE SA: which new SA survives is known when it completes.
            self.ike_collision = Some(IkeCollision { sa: new, peer_ni: ni, our_nr: nr, deleted_by_peer: false });
        } else {
            self.install_ike(now, rng, new);
        }
    }

    /// A new IKE SA from a rekey exchange (keys derived), not yet installed.
    #[allow(clippy::too_many_arguments)]
    fn rekeyed_sa(
        &self,
        now: Duration,
        rng: &mut dyn RandomSource,
        initiator: bool,
        spi_i: u64,
        spi_r: u64,
        suite: IkeSuite,
        keys: IkeKeys,
    ) -> IkeSa {
        let mut sa = IkeSa::blank(initiator, spi_i, IkeState::Established, now);
        sa.spi_r = spi_r;
        sa.suite = Some(suite);
        sa.keys = Some(keys);
        // Negotiated in IKE_SA_INIT; the rekeyed SA keeps it (as strongSwan does).
        sa.peer_fragmentation = self.ike.as_ref().is_some_and(|s| s.peer_fragmentation);
        sa.nat_detected = self.ike.as_ref().is_some_and(|s| s.nat_detected);
        sa.rekey_at = self.rekey_time(now, self.cfg.ike_lifetime, self.cfg.ike_rekey_margin, rng);
        sa
    }

    /// Makes `new` the current IKE SA (the CHILD_SA moves to it); the old one retires. The initiator of the
    /// surviving rekey deletes the old IKE SA; otherwise the peer does and we answer.
    fn install_ike(&mut self, now: Duration, rng: &mut dyn RandomSource, new: IkeSa) {
        let (local_spi, remote_spi, initiator) = (new.local_spi(), new.remote_spi(), new.initiator);
        let proposal = new.suite.map(|s| s.name()).unwrap_or_default();
        if let Some(mut old) = self.ike.replace(new) {
            old.pending = None;
            if initiator {
                self.send_delete_ike(now, rng, &mut old);
            }
            self.retiring.push(Retiring { sa: old, forget_at: now + RETIRED_IKE_LINGER });
        }
        self.counters.ike_rekeys += 1;
        self.events.push_back(Event::IkeSaRekeyed { local_spi, remote_spi, proposal });
    }

    /// Sends DELETE for `sa`, an IKE SA that is not the current one, as a tracked (retransmitted) request on it.
    fn send_delete_ike(&mut self, now: Duration, rng: &mut dyn RandomSource, sa: &mut IkeSa) {
        let id = sa.my_next_id;
        let del = Payload::Delete(Delete { protocol: ProtocolId::IKE, spi_size: 0, spis: vec![] });
        let bytes = encrypt(sa, ExchangeType::INFORMATIONAL, false, id, &[del], rng);
        sa.my_next_id += 1;
        sa.pending =
            Some(Pending::new(id, vec![bytes.clone()], now, now + self.cfg.retransmit.initial, Req::DeleteIke));
        self.transmits.push_back(Transmit { local_port: self.local_port, remote: self.remote, data: bytes });
    }

    fn respond_informational(
        &mut self,
        now: Duration,
        rng: &mut dyn RandomSource,
        h: Header,
        payloads: Vec<Payload>,
        local_port: u16,
        remote: SocketAddr,
    ) {
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
        self.send_response(rng, h, if delete_ike { vec![] } else { resp }, local_port, remote);
        if delete_ike && self.ike_collision.as_ref().is_some_and(|c| !c.deleted_by_peer) {
            // Our IKE rekey collided with the peer's, and the peer, having resolved it in favour of its new IKE SA,
            // deletes the old one. That SA takes over; the answer to our rekey (if it still comes) finds the old SA
            // retired, and our redundant SA never exists on our side.
            if let Some(c) = self.ike_collision.take() {
                self.counters.rekey_collisions += 1;
                self.install_ike(now, rng, c.sa);
            }
        } else if delete_ike {
            self.fail(now, DownReason::DeletedByPeer, "peer deleted the IKE SA".into());
        } else if lost_child {
            // Without its CHILD_SA the tunnel carries nothing: start over with a fresh IKE SA.
            self.fail(now, DownReason::DeletedByPeer, "peer deleted the CHILD_SA".into());
        }
    }

    fn handle_response(&mut self, now: Duration, rng: &mut dyn RandomSource, h: Header, payloads: Vec<Payload>) {
        let _ = h;
        let Some(sa) = self.ike.as_mut() else { return };
        let Some(pending) = sa.pending.take() else { return };
        match pending.req {
            Req::Init => {}
            Req::Auth => self.auth_response(now, rng, payloads),
            Req::Dpd => {}
            Req::DeleteIke => {
                self.ike = None;
            }
            // The old inbound SA was removed when its DELETE was sent (handle_timeout); nothing is left to do.
            Req::DeleteChild => {}
            Req::RekeyChild { dh, ni, new_in_spi } => self.child_rekey_response(now, rng, payloads, dh, ni, new_in_spi),
            Req::RekeyIke { dh, ni, new_spi } => self.ike_rekey_response(now, rng, payloads, dh, ni, new_spi),
        }
    }

    fn auth_response(&mut self, now: Duration, rng: &mut dyn RandomSource, payloads: Vec<Payload>) {
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
        let Some(sa) = self.ike.as_ref() else { return };
        let Some((ok, id_ok)) = self.verify_peer_auth(sa, &idr, method, &auth) else { return };
        if !(ok && id_ok) {
            self.fail(
                now,
                DownReason::AuthenticationFailed { by_peer: false },
                "authentication of the peer failed: its AUTH does not match our pre-shared key".into(),
            );
            return;
        }
        let chosen = payload_sa(&payloads).as_deref().and_then(chosen_esp);
        let offered = |s: &EspSuite| {
            self.cfg
                .esp_proposals
                .iter()
                .any(|p| p.encr.contains(&s.encr) && s.integ.is_none_or(|i| p.integ.contains(&i)))
        };
        let Some((outbound_spi, suite)) = chosen.filter(|(_, s)| offered(s)) else {
            self.fail(
                now,
                DownReason::NoProposalChosen { by_peer: false },
                "peer chose an ESP proposal we did not offer".into(),
            );
            return;
        };
        let tsi = payload_ts(&payloads, true).unwrap_or_default();
        let tsr = payload_ts(&payloads, false).unwrap_or_default();
        let (ni, nr, inbound_spi) = (sa.ni.clone(), sa.nr.clone(), sa.first_child_spi);
        self.establish_ike(now, rng);
        let suite = EspSuite { dh: None, ..suite };
        if let Some(c) = self.make_child(
            now,
            rng,
            inbound_spi,
            outbound_spi,
            suite,
            None,
            &ni,
            &nr,
            true,
            ts_to_prefixes(&tsi),
            ts_to_prefixes(&tsr),
        ) {
            self.emit(Event::ChildSaInstalled(c));
        }
    }

    fn child_rekey_response(
        &mut self,
        now: Duration,
        rng: &mut dyn RandomSource,
        payloads: Vec<Payload>,
        dh: Option<DhSecret>,
        ni: Vec<u8>,
        new_in_spi: u32,
    ) {
        let collision = self.child_collision.take();
        let Some((outbound_spi, suite, nr, g_ir)) = self.child_from_response(&payloads, dh.as_ref()) else {
            let refusal = first_error_notify(&payloads).map(|n| n.ty);
            match collision {
                // A refusal (TEMPORARY_FAILURE after a collision, or another error notify) created nothing.
                // With a collision the peer's rekey (already our CHILD_SA) stands; without one, keep the current
                // CHILD_SA and try again shortly.
                Some(c) if refusal.is_some() && !c.deleted_by_peer => self.counters.rekey_collisions += 1,
                None if refusal.is_some() => {
                    let delay = refusal.map_or(Duration::from_secs(30), |ty| retry_delay(ty, rng));
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
                    self.close_and_restart(now, rng, reason, message, Vec::new());
                }
            }
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
            let del = Payload::Delete(Delete {
                protocol: ProtocolId::ESP,
                spi_size: 4,
                spis: vec![new_in_spi.to_be_bytes().to_vec()],
            });
            self.send_request(now, rng, ExchangeType::INFORMATIONAL, vec![del], Req::DeleteChild);
            return;
        }
        // Ours survives. Without a collision `child` is the SA we rekeyed; with one, it is the peer's redundant SA.
        let (old_in, old_out) = (child.inbound_spi, child.outbound_spi);
        let (local_ts, remote_ts) = (child.local_ts.clone(), child.remote_ts.clone());
        let Some(new) = self.make_child(
            now,
            rng,
            new_in_spi,
            outbound_spi,
            suite,
            g_ir.as_deref().map(|v| &v[..]),
            &ni,
            &nr,
            true,
            local_ts,
            remote_ts,
        ) else {
            return;
        };
        let grace = self.cfg.old_inbound_grace;
        let peer_deleted = collision.as_ref().is_some_and(|c| c.deleted_by_peer);
        match collision {
            None => {
                self.counters.child_rekeys += 1;
                self.old_inbound.push(OldInbound {
                    inbound_spi: old_in,
                    outbound_spi: old_out,
                    delete_at: now + grace,
                });
                self.recent_rekey = Some(RecentRekey { ni: ni.clone(), nr: nr.clone(), replaced_inbound_spi: old_in });
            }
            Some(c) => {
                self.counters.rekey_collisions += 1;
                // We initiated the surviving rekey, so we delete the SA both rekeys replaced.
                if let Some(o) = self.old_inbound.iter_mut().find(|o| o.inbound_spi == c.old_inbound_spi) {
                    o.delete_at = o.delete_at.min(now + grace);
                }
                if !c.deleted_by_peer {
                    // The peer closes its redundant SA; we keep its inbound half until then.
                    self.old_inbound.push(OldInbound {
                        inbound_spi: old_in,
                        outbound_spi: old_out,
                        delete_at: now + grace * 2,
                    });
                }
            }
        }
        self.emit(Event::ChildSaRekeyed { old_inbound_spi: old_in, old_outbound_spi: old_out, new });
        if peer_deleted {
            self.emit(Event::ChildSaDeleted { inbound_spi: old_in, outbound_spi: old_out });
        }
    }

    /// The peer's choice from the answer to our CHILD_SA rekey: (its SPI, suite, Nr, g^ir); None (with
    /// `last_error` set) when it refused or the answer is unusable.
    fn child_from_response(&mut self, payloads: &[Payload], dh: Option<&DhSecret>) -> Option<PeerChildChoice> {
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
        let offered = self.cfg.esp_proposals.iter().any(|p| {
            p.encr.contains(&suite.encr)
                && suite.integ.is_none_or(|i| p.integ.contains(&i))
                && suite.dh == ours
                && ours.is_none_or(|g| p.dh.contains(&g))
        });
        if !offered {
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

    fn ike_rekey_response(
        &mut self,
        now: Duration,
        rng: &mut dyn RandomSource,
        payloads: Vec<Payload>,
        dh: DhSecret,
        ni: Vec<u8>,
        new_spi: u64,
    ) {
        let collision = self.ike_collision.take();
        let (mut ours, nr) = match self.rekeyed_ike_from_response(now, rng, &payloads, dh, &ni, new_spi) {
            IkeRekeyAnswer::Accepted(sa, nr) => (sa, nr),
            IkeRekeyAnswer::Refused => {
                match collision {
                    // The peer refused ours; its own rekey (already answered) stands unless it deleted it.
                    Some(c) if !c.deleted_by_peer => {
                        self.counters.rekey_collisions += 1;
                        self.install_ike(now, rng, c.sa)
                    }
                    _ => {
                        let delay =
                            first_error_notify(&payloads).map_or(Duration::from_secs(30), |n| retry_delay(n.ty, rng));
                        if let Some(s) = self.ike.as_mut() {
                            s.rekey_at = now + delay;
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
                self.close_and_restart(now, rng, DownReason::InvalidSyntax, message, abandoned);
                return;
            }
        };
        let Some(c) = collision else {
            self.install_ike(now, rng, ours);
            return;
        };
        self.counters.rekey_collisions += 1;
        if !c.deleted_by_peer && first_exchange_is_redundant(&ni, &nr, &c.peer_ni, &c.our_nr) {
            // Ours holds the lowest nonce: the peer's IKE SA survives (the CHILD_SA moves to it, and the peer
            // deletes the old one); we close ours (§2.8.2).
            self.install_ike(now, rng, c.sa);
            self.send_delete_ike(now, rng, &mut ours);
            self.retiring.push(Retiring { sa: ours, forget_at: now + RETIRED_IKE_LINGER });
        } else {
            // Ours survives: we delete the old IKE SA; the peer closes its redundant one and we answer.
            self.install_ike(now, rng, ours);
            if !c.deleted_by_peer {
                self.retiring.push(Retiring { sa: c.sa, forget_at: now + RETIRED_IKE_LINGER });
            }
        }
    }

    /// What the answer to our IKE rekey gives us (`last_error` set unless accepted).
    #[allow(clippy::too_many_arguments)]
    fn rekeyed_ike_from_response(
        &mut self,
        now: Duration,
        rng: &mut dyn RandomSource,
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
        let old = self.ike.as_ref();
        let (old_prf, old_sk_d) = match old.and_then(|o| Some((o.suite?, o.keys.as_ref()?))) {
            Some((s, k)) => (s.prf, k.sk_d.clone()),
            None => return IkeRekeyAnswer::Refused,
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
        let created = keys.map(|k| self.rekeyed_sa(now, rng, true, new_spi, peer_spi, suite, k));
        // The suite must be one we offered, with the group of our KE, and the nonce must suit its PRF too.
        let offered = self.cfg.ike_proposals.iter().any(|p| {
            p.encr.contains(&suite.encr)
                && p.prf.contains(&suite.prf)
                && p.dh.contains(&suite.dh)
                && suite.integ.is_none_or(|i| p.integ.contains(&i))
        });
        if !offered || suite.dh != dh.group() || !nonce_fits(&nr, suite.prf) || !nonce_fits(&nr, old_prf) {
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

    /// A message on a retiring IKE SA: the answer to our DELETE on it, or the peer's DELETE (or a late request).
    fn handle_retiring(
        &mut self,
        i: usize,
        rng: &mut dyn RandomSource,
        h: Header,
        payloads: Vec<Payload>,
        local_port: u16,
        remote: SocketAddr,
    ) {
        if h.is_response() {
            // The answer to our DELETE of this IKE SA: it is gone on both sides.
            self.retiring.remove(i);
            return;
        }
        // A DELETE is answered with nothing. A rekey of this SA crossed ours, which completed first: the peer
        // waits (§2.25); with a collision on its side it keeps our new SA.
        let answer = if h.exchange == ExchangeType::CREATE_CHILD_SA {
            vec![notify(NotifyType::TEMPORARY_FAILURE, vec![])]
        } else {
            vec![]
        };
        self.respond_on(Which::Retiring(i), rng, h, answer, local_port, remote);
        if deletes_ike(&payloads) {
            self.retiring.remove(i);
        }
    }

    /// A message on the IKE SA the peer's colliding rekey created, before our own rekey completed. A DELETE means
    /// the peer resolved the collision first and closes its SA; anything else waits (the peer retransmits, and by
    /// then the SA is either current or gone).
    fn handle_collision_sa(
        &mut self,
        rng: &mut dyn RandomSource,
        h: Header,
        payloads: Vec<Payload>,
        local_port: u16,
        remote: SocketAddr,
    ) {
        if h.is_response() || !deletes_ike(&payloads) {
            return;
        }
        let Some(c) = self.ike_collision.as_mut() else { return };
        c.deleted_by_peer = true;
        self.respond_on(Which::Collision, rng, h, vec![], local_port, remote);
    }

    fn start_child_rekey(&mut self, now: Duration, rng: &mut dyn RandomSource) {
        let Some(child) = self.child.as_ref() else { return };
        let old_in = child.inbound_spi;
        let (local_ts, remote_ts) = (child.local_ts.clone(), child.remote_ts.clone());
        let group = child.suite.dh.or_else(|| self.cfg.esp_proposals.iter().find_map(|p| p.dh.first().copied()));
        let new_in_spi = rand_u32(rng);
        let ni = nonce(rng);
        let dh = group.map(|g| g.generate(rng));
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
        self.send_request(now, rng, ExchangeType::CREATE_CHILD_SA, payloads, Req::RekeyChild { dh, ni, new_in_spi });
    }

    fn start_ike_rekey(&mut self, now: Duration, rng: &mut dyn RandomSource) {
        let Some(sa) = self.ike.as_ref() else { return };
        let group = sa.suite.map(|s| s.dh).unwrap_or(DhGroup::Modp2048);
        let new_spi = rand_u64(rng);
        let ni = nonce(rng);
        let dh = group.generate(rng);
        let payloads = vec![
            ike_sa_payload(&self.cfg.ike_proposals, Some(new_spi)),
            Payload::Nonce(ni.clone()),
            Payload::Ke { group: dh.group().id(), data: dh.public_value().to_vec() },
        ];
        self.send_request(now, rng, ExchangeType::CREATE_CHILD_SA, payloads, Req::RekeyIke { dh, ni, new_spi });
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

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Rekey the CHILD_SA now (or as soon as the request window is free).
    pub fn rekey_child(&mut self, now: Duration, rng: &mut dyn RandomSource) {
        if let Some(c) = self.child.as_mut() {
            c.rekey_at = now;
        }
        self.handle_timeout(now, rng);
    }

    /// Rekey the IKE SA now (or as soon as the request window is free).
    pub fn rekey_ike(&mut self, now: Duration, rng: &mut dyn RandomSource) {
        if let Some(s) = self.ike.as_mut()
            && s.state == IkeState::Established
        {
            s.rekey_at = now;
        }
        self.handle_timeout(now, rng);
    }

    /// Sends DELETE for the IKE SA (which takes the CHILD_SA with it) and stops. Poll transmits after calling.
    pub fn close(&mut self, now: Duration, rng: &mut dyn RandomSource) {
        self.closed = true;
        self.reconnect_at = None;
        self.half_open.clear();
        let established = self.ike.as_ref().is_some_and(|s| s.state == IkeState::Established);
        if established {
            if let Some(s) = self.ike.as_mut() {
                s.pending = None;
            }
            let del = Payload::Delete(Delete { protocol: ProtocolId::IKE, spi_size: 0, spis: vec![] });
            self.send_request(now, rng, ExchangeType::INFORMATIONAL, vec![del], Req::DeleteIke);
        } else {
            self.ike = None;
        }
        self.forget_rekeys();
        self.drop_child();
        self.last_down = Some(DownReason::Closed);
        self.events.push_back(Event::IkeSaDown { reason: DownReason::Closed });
    }

    /// A new PSK (Secret changed): used from the next IKE SA on.
    pub fn set_psk(&mut self, psk: Zeroizing<Vec<u8>>) {
        self.cfg.psk = psk;
    }

    /// The peer's address as the engine trusts it: the configured one, moved only by authenticated IKE messages
    /// (RFC 7296 §2.23). The I/O shell follows it for ESP; a datagram from another port never moves it.
    pub fn peer_address(&self) -> SocketAddr {
        self.remote
    }

    pub fn status(&self) -> TunnelStatus {
        let est = self.ike.as_ref().filter(|s| s.state == IkeState::Established);
        let state = if est.is_some() && self.child.is_some() {
            TunnelState::Established
        } else if self.ike.is_some()
            || (self.reconnect_at.is_some() && !self.closed)
            || (self.cfg.startup == StartupAction::Add && !self.closed)
        {
            TunnelState::Connecting
        } else {
            TunnelState::Down
        };
        TunnelStatus {
            state,
            ike_local_spi: est.map(|s| s.local_spi()),
            ike_remote_spi: est.map(|s| s.remote_spi()),
            ike_proposal: est.and_then(|s| s.suite.map(|x| x.name())),
            ike_established_at: est.map(|s| s.established_at),
            ike_rekey_at: est.map(|s| s.rekey_at),
            child_inbound_spi: self.child.as_ref().map(|c| c.inbound_spi),
            child_outbound_spi: self.child.as_ref().map(|c| c.outbound_spi),
            child_proposal: self.child.as_ref().map(|c| c.suite.name()),
            child_established_at: self.child.as_ref().map(|c| c.established_at),
            child_rekey_at: self.child.as_ref().map(|c| c.rekey_at),
            ike_expires_at: est.map(|s| s.established_at + self.cfg.ike_lifetime),
            child_expires_at: self.child.as_ref().map(|c| c.established_at + self.cfg.child_lifetime),
            nat_detected: est.map(|s| s.nat_detected),
            last_error: self.last_error.clone(),
            last_down_reason: self.last_down.clone(),
            counters: self.counters,
        }
    }

    /// Fuzzing only (`--cfg fuzzing`, set by cargo-fuzz): seals `plain`, inner payloads beginning with payload type
    /// `first`, as the peer would send it on the current IKE SA: a request with the message ID we expect next, or
    /// the response to our request in flight. Lets a fuzz target reach every handler with authenticated but
    /// arbitrary content. None while the IKE SA has no keys.
    #[cfg(fuzzing)]
    pub fn seal_as_peer(
        &self,
        exchange: u8,
        response: bool,
        first: u8,
        plain: &[u8],
        rng: &mut dyn RandomSource,
    ) -> Option<Vec<u8>> {
        let sa = self.ike.as_ref().filter(|s| s.keys.is_some())?;
        let id = if response { sa.pending.as_ref().map_or(0, |p| p.id) } else { sa.peer_next_id };
        let (ex, first) = (ExchangeType(exchange), PayloadType(first));
        Some(seal(sa, Sender::Peer, ex, response, id, first, plain, None, rng))
    }

    /// Number of outbound CHILD_SAs the datapath holds after applying every event so far (installed and not yet
    /// replaced by a rekey or deleted), whichever exchange (a rekey, a collision, a new IKE SA) installed them. The
    /// invariant says at most one. For tests, fuzzing and metrics.
    pub fn outbound_child_sas(&self) -> usize {
        self.installed_outbound.len()
    }

    /// Checks the engine's invariants; for tests and fuzzing (cheap: no crypto). Err names the first broken one.
    /// - at most one outbound CHILD_SA ([`Tunnel::outbound_child_sas`]), and it is the current CHILD_SA;
    /// - a tunnel that should be up but has no IKE SA has a reconnect scheduled (and so a timer);
    /// - the current IKE SA is never a half-open responder SA, and the half-open table stays within its bound.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.installed_outbound.len() > 1 {
            return Err(format!("{} outbound CHILD_SAs installed", self.installed_outbound.len()));
        }
        if self.installed_outbound.first() != self.child.as_ref().map(|c| &c.outbound_spi) {
            return Err("the installed outbound CHILD_SA is not the current CHILD_SA".into());
        }
        let should_run = self.cfg.startup == StartupAction::Start && !self.closed;
        if should_run && self.ike.is_none() && (self.reconnect_at.is_none() || self.poll_timeout().is_none()) {
            return Err("the tunnel is down and no reconnect is scheduled".into());
        }
        if self.ike.as_ref().is_some_and(|s| s.state == IkeState::RespInitDone) {
            return Err("the current IKE SA is a half-open responder SA".into());
        }
        if self.half_open.len() > self.cfg.half_open_limit {
            return Err(format!("{} half-open IKE SAs (limit {})", self.half_open.len(), self.cfg.half_open_limit));
        }
        Ok(())
    }

    /// How urgent an IKE datagram (without the non-ESP marker) is for this tunnel, from its header alone: for the
    /// sidecar's ingress priority. Nothing is decrypted or changed.
    pub fn ingress_class(&self, data: &[u8]) -> IkeIngress {
        let Ok(h) = Header::parse(data) else { return IkeIngress::Unknown };
        if h.exchange == ExchangeType::IKE_SA_INIT && !h.is_response() {
            return IkeIngress::NewInit;
        }
        let ours = |s: &IkeSa| s.spi_i == h.spi_i && (s.spi_r == h.spi_r || s.state == IkeState::InitSent);
        let known = self.ike.as_ref().is_some_and(ours)
            || self.retiring.iter().any(|r| ours(&r.sa))
            || self.ike_collision.as_ref().is_some_and(|c| ours(&c.sa));
        if known {
            IkeIngress::Established
        } else if self.half_open.position(h.spi_i, h.spi_r).is_some() {
            IkeIngress::HalfOpen
        } else {
            IkeIngress::Unknown
        }
    }
}

#[cfg(test)]
mod collision_tests;
mod cookie;
mod half_open;
#[cfg(test)]
mod hostile_tests;
