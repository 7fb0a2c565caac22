//! The SK and SKF payloads (RFC 7296 §3.14, RFC 7383): key derivation for an IKE SA, sealing our messages (as
//! one datagram or as fragments) and authenticating and decrypting the peer's (reassembling fragments).

use super::*;

/// Never cut a fragment's plaintext smaller than this, whatever `fragment_size` says.
pub(super) const MIN_FRAGMENT_PLAINTEXT: usize = 64;

/// Derives an IKE SA's keys; `initiator` = we are the initiator of this SA (decides which keys protect output).
pub(super) fn derive_ike(
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

pub(super) fn keys_from(
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
pub(super) enum Decrypted {
    Message(Vec<Payload>),
    /// An SKF fragment was authenticated and stored; the message is not complete yet.
    Fragment,
}

/// Authenticates and decrypts an SK payload, or an SKF fragment (reassembled per direction, RFC 7383 §2.6).
pub(super) fn decrypt<S>(sa: &mut IkeSa<S>, msg: &Message, data: &[u8]) -> Result<Decrypted, DropReason> {
    match msg.payloads.last() {
        Some(Payload::Sk { next_inner, body, aad_len }) => {
            let plain = open_body(sa, body, *aad_len, data)?;
            parse_payloads(*next_inner, &plain).map(Decrypted::Message).map_err(|_| DropReason::Malformed)
        }
        Some(Payload::Skf { next_inner, number, total, body, aad_len }) => {
            let plain = open_body(sa, body, *aad_len, data)?;
            let h = &msg.header;
            let r = if h.is_response() { &mut sa.frag_responses } else { &mut sa.frag_requests };
            match r.add(h.message_id, *number, *total, *next_inner, &plain) {
                Ok(Some((first, whole))) => {
                    parse_payloads(first, &whole).map(Decrypted::Message).map_err(|_| DropReason::Malformed)
                }
                Ok(None) => Ok(Decrypted::Fragment),
                Err(_) => Err(DropReason::Malformed),
            }
        }
        _ => Err(DropReason::Malformed),
    }
}

/// Checks the ICV over `data[..aad_len]` and the body, decrypts, and strips the padding.
pub(super) fn open_body<S>(
    sa: &IkeSa<S>,
    body: &[u8],
    aad_len: usize,
    data: &[u8],
) -> Result<Zeroizing<Vec<u8>>, DropReason> {
    let c = &sa.keys.inn;
    let (iv_len, icv_len) = (c.iv_len(), c.icv_len());
    if body.len() < iv_len + icv_len + 1 || aad_len > data.len() {
        return Err(DropReason::Unauthenticated);
    }
    let iv = &body[..iv_len];
    let icv = &body[body.len() - icv_len..];
    let mut plain = Zeroizing::new(body[iv_len..body.len() - icv_len].to_vec());
    c.open_in_place(&data[..aad_len], iv, &mut plain, icv).map_err(|_| DropReason::Unauthenticated)?;
    let pad = *plain.last().ok_or(DropReason::Malformed)? as usize;
    if pad + 1 > plain.len() {
        return Err(DropReason::Malformed);
    }
    let keep = plain.len() - pad - 1;
    plain.truncate(keep);
    Ok(plain)
}

/// Builds an encrypted message on `sa` as the datagrams to send: one, or RFC 7383 fragments when the peer
/// supports them and the message is larger than `fragment_size` octets.
#[allow(clippy::too_many_arguments)]
pub(super) fn encrypt_all<S>(
    sa: &IkeSa<S>,
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
    if !sa.peer_fragmentation || whole.len() <= fragment_size {
        return vec![whole];
    }
    // Room for plaintext in one fragment: the datagram minus header, SKF header, IV, ICV and worst-case padding.
    let c = &sa.keys.out;
    let overhead = HEADER_LEN + wire::encrypted_header_len(true) + c.iv_len() + c.icv_len() + c.block_size().max(1);
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
pub(super) fn encrypt<S>(
    sa: &IkeSa<S>,
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
pub(super) enum Sender {
    Us,
    #[cfg_attr(not(fuzzing), allow(dead_code))]
    Peer,
}

/// Seals `plain` (inner payloads starting with `first`) into one SK message, or with `fragment` (number, total)
/// into one SKF fragment (RFC 7383 §2.5: the fragment fields are part of the authenticated header).
#[allow(clippy::too_many_arguments)]
pub(super) fn seal<S>(
    sa: &IkeSa<S>,
    sender: Sender,
    exchange: ExchangeType,
    response: bool,
    message_id: u32,
    first: PayloadType,
    plain: &[u8],
    fragment: Option<(u16, u16)>,
    rng: &mut dyn RandomSource,
) -> Vec<u8> {
    let (c, initiator) = match sender {
        Sender::Us => (&sa.keys.out, sa.initiator),
        Sender::Peer => (&sa.keys.inn, !sa.initiator),
    };
    let block = c.block_size().max(1);
    let pad = (block - (plain.len() + 1) % block) % block;
    let mut padded = Zeroizing::new(Vec::with_capacity(plain.len() + pad + 1));
    padded.extend_from_slice(plain);
    padded.resize(plain.len() + pad, 0);
    padded.push(pad as u8);
    let (iv_len, icv_len) = (c.iv_len(), c.icv_len());
    let sk_header_len = wire::encrypted_header_len(fragment.is_some());
    let sk_len = sk_header_len + iv_len + padded.len() + icv_len;
    let total = HEADER_LEN + sk_len;
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
    let aad_end = HEADER_LEN + sk_header_len;
    wire::emit_encrypted_header(&mut out[HEADER_LEN..aad_end], first, sk_len as u16, fragment);
    rng.fill_bytes(&mut out[aad_end..aad_end + iv_len]);
    let (aad, rest) = out.split_at_mut(aad_end);
    let (iv, rest) = rest.split_at_mut(iv_len);
    let (ct, icv) = rest.split_at_mut(padded.len());
    ct.copy_from_slice(&padded);
    // Lengths are ours and consistent, so sealing cannot fail.
    let _ = c.seal_in_place(aad, iv, ct, icv);
    out
}
