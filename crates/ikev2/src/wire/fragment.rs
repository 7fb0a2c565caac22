//! Reassembly of IKE message fragments (RFC 7383 §2.6). Sans-IO and bounded: the caller decrypts each SKF
//! payload and hands in the plaintext; when every fragment of a message has arrived, the whole inner payload
//! chain comes out.

use super::{PayloadType, WireError};

/// At most this many fragments per message (strongSwan sends far fewer; bounds memory).
pub const MAX_FRAGMENTS: u16 = 64;
/// At most this many plaintext octets per reassembled message.
pub const MAX_BYTES: usize = 64 * 1024;

/// Collects the fragments of one message at a time, keyed by message ID: a newer ID starts over, an older one is
/// ignored. Use one per direction (the peer's requests and the peer's responses have separate message IDs).
#[derive(Debug, Default)]
pub struct Reassembler {
    message_id: Option<u32>,
    total: u16,
    next_inner: Option<PayloadType>,
    fragments: Vec<Option<Vec<u8>>>,
    bytes: usize,
    /// The message with `message_id` was already delivered: its late fragments are ignored.
    done: bool,
}

impl Reassembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds fragment `number` of `total` (already decrypted) for `message_id`. Returns the first inner payload type
    /// and the joined plaintext when the message is complete. A fragment of an older message than the one being
    /// collected is ignored (`Ok(None)`); a newer message ID starts over. Within one message, a fragment with a
    /// smaller total than the earlier ones is ignored and a larger total starts over (RFC 7383 §2.6).
    pub fn add(
        &mut self,
        message_id: u32,
        number: u16,
        total: u16,
        next_inner: PayloadType,
        plaintext: &[u8],
    ) -> Result<Option<(PayloadType, Vec<u8>)>, WireError> {
        if number == 0 || total == 0 || number > total {
            return Err(WireError::InvalidSyntax("SKF fragment number not in 1..=total"));
        }
        if total > MAX_FRAGMENTS {
            return Err(WireError::InvalidSyntax("too many fragments"));
        }
        match self.message_id {
            Some(id) if message_id < id => return Ok(None),
            Some(id) if message_id == id && self.done => return Ok(None),
            // RFC 7383 §2.6: fewer fragments than before is stale (discard it); more means the sender
            // re-fragmented smaller (PMTU discovery, §2.5.2): start over with this one, as strongSwan does.
            Some(id) if message_id == id && total < self.total => return Ok(None),
            Some(id) if message_id == id && total == self.total => {}
            _ => {
                *self = Reassembler {
                    message_id: Some(message_id),
                    total,
                    next_inner: None,
                    fragments: vec![None; total as usize],
                    bytes: 0,
                    done: false,
                };
            }
        }
        let slot = &mut self.fragments[(number - 1) as usize];
        if slot.is_some() {
            return Ok(None);
        }
        if self.bytes + plaintext.len() > MAX_BYTES {
            *self = Reassembler::default();
            return Err(WireError::BadLength("reassembled message too large"));
        }
        self.bytes += plaintext.len();
        *slot = Some(plaintext.to_vec());
        if number == 1 {
            self.next_inner = Some(next_inner);
        }
        if self.fragments.iter().all(Option::is_some) {
            let mut out = Vec::with_capacity(self.bytes);
            for f in self.fragments.iter().flatten() {
                out.extend_from_slice(f);
            }
            let first = self.next_inner.unwrap_or(PayloadType::NONE);
            *self = Reassembler { message_id: self.message_id, total, done: true, ..Reassembler::default() };
            return Ok(Some((first, out)));
        }
        Ok(None)
    }
}
