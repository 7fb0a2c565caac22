//! Cuts the TCP byte stream into BGP messages. Bytes arrive in arbitrary chunks; the buffer never holds more than
//! one message (at most 4096 octets, RFC 4271 §4.1), because it takes from the input only what the current
//! message still lacks. The header is checked as soon as its 19 octets are in, so a bad length or marker is
//! reported before any of the body is buffered.

use crate::wire::{HEADER_LEN, Header, MAX_MESSAGE_LEN, WireError};

/// Stream reassembler with a buffer bounded to one message.
#[derive(Debug, Default)]
pub struct Reassembler {
    buf: Vec<u8>,
    /// Total length of the message being assembled, once its header is in.
    want: Option<usize>,
}

impl Reassembler {
    pub fn new() -> Reassembler {
        Reassembler { buf: Vec::with_capacity(MAX_MESSAGE_LEN), want: None }
    }

    /// Takes octets from the front of `input` (advancing it) until one message is complete and returns it
    /// (header included). `None`: `input` is used up and the message is incomplete. `Some(Err)`: the header is
    /// invalid; the stream cannot be resynchronized, so the caller ends the session (and calls [`Self::reset`]).
    pub fn next_message(&mut self, input: &mut &[u8]) -> Option<Result<Vec<u8>, WireError>> {
        loop {
            let target = self.want.unwrap_or(HEADER_LEN);
            let n = (target - self.buf.len()).min(input.len());
            let (head, tail) = input.split_at(n);
            self.buf.extend_from_slice(head);
            *input = tail;
            if self.buf.len() < target {
                return None;
            }
            if self.want.is_none() {
                match Header::parse(&self.buf) {
                    Ok(h) => {
                        self.want = Some(usize::from(h.length));
                        // A 19-octet message (KEEPALIVE) is complete with its header; loop to return it.
                        continue;
                    }
                    Err(e) => return Some(Err(e)),
                }
            }
            self.want = None;
            let msg = std::mem::replace(&mut self.buf, Vec::with_capacity(MAX_MESSAGE_LEN));
            return Some(Ok(msg));
        }
    }

    /// Octets of an incomplete message held (at most 4096).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Forgets a partial message (a new TCP connection starts a new stream).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.want = None;
    }
}
