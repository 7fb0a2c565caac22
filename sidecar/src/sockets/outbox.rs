//! The send side: the owner task queues what it sends in an [`Outbox`] and sends it at the end of each pass, in
//! UDP GSO batches where consecutive datagrams share socket, destination and size; sends are non-blocking, so it
//! never waits on a socket. [`SocketSink`] is the datapath's [`Sink`] onto it.

use std::net::SocketAddr;

use iotrelay_relay::ForwardId;

use super::reader::BUF_LEN;
use super::{SockKey, Sockets};
use crate::datapath::{NATT_PORT, Out, Sink};
use crate::tun::{GatewayDevice, TunIo};
use crate::tun_gro::TunOutbox;

/// Most datagrams in one GSO send (the kernel's UDP_MAX_SEGMENTS is 64 before Linux 6.9).
pub(crate) const GSO_MAX_SEGMENTS: usize = 64;
/// Most octets in one GSO send: the whole must fit one IPv4 datagram (65535 minus headers).
const GSO_MAX_BYTES: usize = 65000;
/// Queued octets beyond which the outbox sends what it holds before taking more.
const OUTBOX_BYTES: usize = 1 << 20;

/// Consecutive queued datagrams from one socket to one destination, all `segment` octets long except possibly a
/// shorter last one: one sendmsg.
#[derive(Debug, Clone, Copy)]
struct Run {
    key: SockKey,
    to: SocketAddr,
    /// Octets `start..end` of the outbox buffer.
    start: usize,
    end: usize,
    segment: usize,
    /// Datagrams in the run; the first is `Outbox::tags[first]`.
    count: usize,
    first: usize,
    /// A shorter datagram ended it (GSO allows only the last segment to be short).
    closed: bool,
}

/// Outgoing datagrams of one pass of the owner loop, sent when the pass ends ([`SocketSink::flush`]). Consecutive
/// datagrams from the same socket to the same destination with the same length (a burst of relayed packets
/// sealed for one peer, or replies to one client) leave in one sendmsg with UDP GSO (quinn-udp) instead of one
/// syscall each. Order is kept: runs are sent in the order they were queued. With `batched` false every datagram
/// is sent at once with its own syscall (the baseline the bench compares against).
pub struct Outbox {
    batched: bool,
    buf: Vec<u8>,
    runs: Vec<Run>,
    /// For each queued datagram, the forward to count it against (`queueFull`) if its send fails.
    tags: Vec<Option<ForwardId>>,
    /// Forwards of datagrams whose send failed, one entry each.
    failed: Vec<ForwardId>,
}

impl Outbox {
    pub fn new(batched: bool) -> Outbox {
        Outbox {
            batched,
            buf: Vec::with_capacity(if batched { OUTBOX_BYTES + BUF_LEN } else { 0 }),
            runs: Vec::new(),
            tags: Vec::new(),
            failed: Vec::new(),
        }
    }

    /// Forwards of datagrams whose send failed at the last flushes (one entry each).
    pub fn take_failed(&mut self) -> std::vec::Drain<'_, ForwardId> {
        self.failed.drain(..)
    }

    fn push(&mut self, sockets: &Sockets, key: SockKey, to: SocketAddr, data: &[u8], tag: Option<ForwardId>) -> bool {
        let Some(sock) = sockets.get(key) else { return false };
        if !self.batched {
            // The path before batching, kept as the bench's baseline: one send (sendmsg) per datagram.
            return match sock.send(to, data, None) {
                Ok(()) => true,
                Err(e) => {
                    tracing::debug!(error = %e, %to, "send failed");
                    false
                }
            };
        }
        if self.buf.len() + data.len() > OUTBOX_BYTES {
            self.flush(sockets);
        }
        let max_segments = sock.max_segments();
        let start = self.buf.len();
        self.buf.extend_from_slice(data);
        self.tags.push(tag);
        if let Some(r) = self.runs.last_mut()
            && r.key == key
            && r.to == to
            && !r.closed
            && r.count < max_segments
            && !data.is_empty()
            && data.len() <= r.segment
            && r.end - r.start + data.len() <= GSO_MAX_BYTES
        {
            r.end += data.len();
            r.count += 1;
            r.closed = data.len() < r.segment;
            return true;
        }
        let first = self.tags.len() - 1;
        let closed = data.is_empty();
        self.runs.push(Run { key, to, start, end: self.buf.len(), segment: data.len(), count: 1, first, closed });
        true
    }

    /// Sends everything queued, in order; failed datagrams are noted for [`Outbox::take_failed`].
    fn flush(&mut self, sockets: &Sockets) {
        let Outbox { buf, runs, tags, failed, .. } = self;
        let mut fail = |first: usize, count: usize| {
            failed.extend(tags[first..first + count].iter().flatten());
        };
        for r in runs.drain(..) {
            let Some(sock) = sockets.get(r.key) else {
                fail(r.first, r.count);
                continue;
            };
            let data = &buf[r.start..r.end];
            let segment = (r.count > 1).then_some(r.segment);
            match sock.send(r.to, data, segment) {
                Ok(()) => {}
                Err(e) if segment.is_some() && e.kind() != std::io::ErrorKind::WouldBlock => {
                    // GSO refused (quinn-udp stops offering it on this socket after EIO/EINVAL): one by one.
                    tracing::debug!(error = %e, to = %r.to, "GSO send failed; sending the datagrams one by one");
                    for (k, d) in data.chunks(r.segment).enumerate() {
                        if let Err(e) = sock.send(r.to, d, None) {
                            tracing::debug!(error = %e, to = %r.to, "send failed");
                            fail(r.first + k, 1);
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, to = %r.to, datagrams = r.count, "send failed");
                    fail(r.first, r.count);
                }
            }
        }
        buf.clear();
        tags.clear();
    }
}

/// The datapath's [`Sink`] onto the sockets, through an [`Outbox`].
pub struct SocketSink<'a> {
    sockets: &'a Sockets,
    outbox: &'a mut Outbox,
    /// Gateway mode's TUN device and its outbox: inner packets are queued (consecutive TCP segments of one flow
    /// coalesced when the device has offloads) and written at [`SocketSink::flush`], non-blocking.
    tun: Option<TunSide<'a>>,
}

/// The device, its outbox and its I/O counters, for the time of one sink.
pub struct TunSide<'a> {
    pub dev: &'a GatewayDevice,
    pub outbox: &'a mut TunOutbox,
    pub io: &'a mut TunIo,
    /// Packets the device refused at a flush (the datapath counts them as `sendFailed`).
    pub failed: &'a mut u64,
}

impl TunSide<'_> {
    fn flush(&mut self) {
        let dev = self.dev;
        let f = self.outbox.flush(&mut |frame| dev.try_send(frame));
        self.io.writes += f.writes;
        self.io.packets_written += f.packets;
        *self.failed += f.failed;
    }

    fn push(&mut self, p: &[u8]) -> bool {
        if self.outbox.push(p) {
            return true;
        }
        self.flush();
        self.outbox.push(p)
    }
}

impl<'a> SocketSink<'a> {
    pub fn new(sockets: &'a Sockets, outbox: &'a mut Outbox) -> Self {
        SocketSink { sockets, outbox, tun: None }
    }

    /// With gateway mode's device.
    pub fn with_tun(mut self, tun: Option<TunSide<'a>>) -> Self {
        self.tun = tun;
        self
    }

    /// Sends what the outbox holds and writes what the device's outbox holds.
    pub fn flush(&mut self) {
        self.outbox.flush(self.sockets);
        if let Some(t) = self.tun.as_mut() {
            t.flush();
        }
    }

    fn queue(&mut self, out: Out, data: &[u8], tag: Option<ForwardId>) -> bool {
        let (key, to) = match out {
            Out::Outside { local_port: NATT_PORT, remote } => (SockKey::NatT, remote),
            Out::Outside { remote, .. } => (SockKey::Ike, remote),
            Out::Forward { forward, client } => (SockKey::Forward(forward), SocketAddr::V4(client)),
            Out::Tun => return self.tun.as_mut().is_some_and(|t| t.push(data)),
        };
        self.outbox.push(self.sockets, key, to, data, tag)
    }
}

impl Sink for SocketSink<'_> {
    fn send(&mut self, out: Out, data: &[u8]) -> bool {
        let tag = match out {
            Out::Forward { forward, .. } => Some(forward),
            Out::Outside { .. } | Out::Tun => None,
        };
        self.queue(out, data, tag)
    }

    fn send_for(&mut self, forward: ForwardId, out: Out, data: &[u8]) -> bool {
        self.queue(out, data, Some(forward))
    }
}
