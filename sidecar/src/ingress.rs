//! Ingress: the bounded, prioritised queues between the socket readers and the owner task.
//!
//! Readers classify each datagram first (`demux`: not-a-peer, keepalives and disallowed forward sources are
//! dropped there and never queued), then copy it into a buffer of the smallest size class that holds it (256 or
//! 2048 octets; a larger datagram gets a buffer of its exact length) and queue that in its lane. Buffers come from
//! a bounded pool the owner task returns them to ([`Ingress::recycle`]), so the steady state allocates nothing
//! per datagram. Each lane has a byte budget (the buffer's size plus a fixed per-entry overhead, [`charge`]) and
//! a datagram bound; a datagram that does not fit is dropped and counted against its lane. Memory is therefore
//! proportional to what is queued, never a 64 KiB buffer per datagram, and capped by the sum of the budgets plus
//! the pool ([`POOL_MAX`] buffers).
//!
//! The owner task serves the lanes in strict priority ([`Lane::Established`] first), a bounded number per pass
//! ([`QUOTAS`]), so a flood of forward datagrams or IKE_SA_INITs waits behind ESP and established IKE instead of
//! starving them, and a pass stays short enough for timers (DPD, retransmissions) to run on time.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

use crate::demux::Lane;
use iotrelay_relay::ForwardId;

/// Where a datagram was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Ike,
    NatT,
    /// A forward's listen socket, tagged with the forward's id by its reader.
    Forward(ForwardId),
}

/// One received datagram: `data` holds exactly its bytes (in a pooled buffer of [`charge`]'s size class).
#[derive(Debug)]
pub struct Datagram {
    pub source: Source,
    pub from: SocketAddr,
    pub data: Vec<u8>,
}

/// Bounds of one lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub bytes: usize,
    pub datagrams: usize,
}

/// Charged per queued datagram on top of its buffer (the `Datagram` and allocator overhead).
pub const ENTRY_OVERHEAD: usize = 64;

/// Buffer size classes: a datagram goes into the smallest that holds it; larger ones get their exact length and
/// are not pooled.
const SIZE_CLASSES: [usize; 2] = [256, 2048];

/// Most buffers kept for reuse per size class (about 4.6 MiB at most in all): more than one owner pass takes
/// ([`QUOTAS`]), so a steady stream reuses buffers; a backlog beyond it allocates and frees as before.
pub const POOL_MAX: usize = 2048;

/// The buffer size a datagram of `len` octets occupies while queued.
fn class_size(len: usize) -> usize {
    SIZE_CLASSES.into_iter().find(|&c| len <= c).unwrap_or(len)
}

/// What a queued datagram of `len` octets is charged against its lane's byte budget.
pub fn charge(len: usize) -> usize {
    class_size(len) + ENTRY_OVERHEAD
}

/// Default budgets by lane: established 4 MiB, forward 2 MiB, handshake 256 KiB (about 7 MiB in all).
pub const BUDGETS: [Budget; 3] = [
    Budget { bytes: 4 << 20, datagrams: 4096 },
    Budget { bytes: 2 << 20, datagrams: 2048 },
    Budget { bytes: 256 << 10, datagrams: 256 },
];

/// Most datagrams taken per owner pass, by lane.
pub const QUOTAS: [usize; 3] = [256, 64, 16];

#[derive(Default)]
struct Queue {
    q: VecDeque<Datagram>,
    bytes: usize,
}

/// The lanes and the buffer pools, under one lock (a push takes a buffer and queues it in one critical section).
#[derive(Default)]
struct Lanes {
    queues: [Queue; 3],
    /// Free buffers, one stack per size class.
    pool: [Vec<Vec<u8>>; SIZE_CLASSES.len()],
}

impl Lanes {
    /// A buffer holding a copy of `data`: a pooled one of its size class, or a new one.
    fn buffer(&mut self, data: &[u8]) -> Vec<u8> {
        let size = class_size(data.len());
        let mut b = match SIZE_CLASSES.iter().position(|&c| c == size) {
            Some(i) => self.pool[i].pop().unwrap_or_else(|| Vec::with_capacity(size)),
            None => Vec::with_capacity(size),
        };
        b.clear();
        b.extend_from_slice(data);
        b
    }
}

/// Counters of one lane (monotonic).
#[derive(Default)]
struct LaneCounters {
    queued: AtomicU64,
    dropped_full: AtomicU64,
}

/// A lane's numbers for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LaneStats {
    pub queued_total: u64,
    pub dropped_full: u64,
    pub depth: usize,
    pub bytes: usize,
    pub budget_bytes: usize,
}

/// Counters of what the readers dropped before queueing (monotonic).
#[derive(Default)]
pub struct EarlyDrops {
    pub not_peer: AtomicU64,
    pub source_not_allowed: AtomicU64,
}

/// See the module docs.
pub struct Ingress {
    lanes: Mutex<Lanes>,
    budgets: [Budget; 3],
    counters: [LaneCounters; 3],
    pub early: EarlyDrops,
    notify: Notify,
}

impl Ingress {
    pub fn new(budgets: [Budget; 3]) -> Ingress {
        Ingress {
            lanes: Mutex::new(Default::default()),
            budgets,
            counters: Default::default(),
            early: EarlyDrops::default(),
            notify: Notify::new(),
        }
    }

    /// Queues a copy of `data` in `lane`; false (and counted) when the lane's budget has no room for it.
    pub fn push(&self, lane: Lane, source: Source, from: SocketAddr, data: &[u8]) -> bool {
        let i = lane as usize;
        let cost = charge(data.len());
        let Ok(mut lanes) = self.lanes.lock() else { return false };
        let q = &lanes.queues[i];
        if q.q.len() >= self.budgets[i].datagrams || q.bytes + cost > self.budgets[i].bytes {
            drop(lanes);
            self.counters[i].dropped_full.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let data = lanes.buffer(data);
        let q = &mut lanes.queues[i];
        q.bytes += cost;
        q.q.push_back(Datagram { source, from, data });
        drop(lanes);
        self.counters[i].queued.fetch_add(1, Ordering::Relaxed);
        self.notify.notify_one();
        true
    }

    /// Moves up to `quotas[lane]` datagrams of each lane into `out`, highest priority first.
    pub fn pop_batch(&self, out: &mut Vec<Datagram>, quotas: [usize; 3]) {
        let Ok(mut lanes) = self.lanes.lock() else { return };
        for lane in Lane::ALL {
            let q = &mut lanes.queues[lane as usize];
            for _ in 0..quotas[lane as usize] {
                let Some(d) = q.q.pop_front() else { break };
                q.bytes -= charge(d.data.len());
                out.push(d);
            }
        }
    }

    /// Takes the buffers of handled datagrams back into the pool (up to [`POOL_MAX`] per size class; the rest,
    /// and buffers of no size class, are freed), leaving `done` empty.
    pub fn recycle(&self, done: &mut Vec<Datagram>) {
        let Ok(mut lanes) = self.lanes.lock() else {
            done.clear();
            return;
        };
        for d in done.drain(..) {
            if let Some(i) = SIZE_CLASSES.iter().position(|&c| c == d.data.capacity())
                && lanes.pool[i].len() < POOL_MAX
            {
                lanes.pool[i].push(d.data);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.lanes.lock().map(|l| l.queues.iter().all(|q| q.q.is_empty())).unwrap_or(true)
    }

    /// Returns once something is queued (at once if something is). Cancel-safe.
    pub async fn ready(&self) {
        loop {
            let notified = self.notify.notified();
            if !self.is_empty() {
                return;
            }
            notified.await;
        }
    }

    pub fn stats(&self) -> [LaneStats; 3] {
        let lanes = self.lanes.lock().ok();
        Lane::ALL.map(|lane| {
            let i = lane as usize;
            LaneStats {
                queued_total: self.counters[i].queued.load(Ordering::Relaxed),
                dropped_full: self.counters[i].dropped_full.load(Ordering::Relaxed),
                depth: lanes.as_ref().map_or(0, |l| l.queues[i].q.len()),
                bytes: lanes.as_ref().map_or(0, |l| l.queues[i].bytes),
                budget_bytes: self.budgets[i].bytes,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from() -> SocketAddr {
        "192.0.2.2:4500".parse().unwrap()
    }

    #[test]
    fn budgets_bound_bytes_and_count_drops() {
        let tiny = Budget { bytes: 3 * charge(100), datagrams: 10 };
        let ing = Ingress::new([tiny, Budget { bytes: 1 << 20, datagrams: 2 }, tiny]);
        for _ in 0..5 {
            ing.push(Lane::Established, Source::NatT, from(), &[0u8; 100]);
        }
        for _ in 0..5 {
            ing.push(Lane::Forward, Source::Forward(ForwardId(0)), from(), &[0u8; 10]);
        }
        let s = ing.stats();
        assert_eq!((s[0].depth, s[0].dropped_full, s[0].bytes), (3, 2, 3 * charge(100)));
        assert_eq!((s[1].depth, s[1].dropped_full), (2, 3), "the datagram bound holds too");
        // Charged by size class: a 64 KiB datagram costs 64 KiB, a 10-octet one 256 (plus the overhead).
        assert_eq!((charge(10), charge(1400), charge(65000)), (256 + 64, 2048 + 64, 65000 + 64));
        let mut out = Vec::new();
        ing.pop_batch(&mut out, QUOTAS);
        assert!(out.iter().all(|d| d.data.len() == 100 || d.data.len() == 10));
        assert_eq!(ing.stats()[0].bytes, 0);
        assert!(ing.is_empty());
    }

    #[test]
    fn buffers_are_reused_and_the_pool_is_bounded() {
        let ing = Ingress::new(BUDGETS);
        ing.push(Lane::Established, Source::NatT, from(), &[1u8; 1400]);
        ing.push(Lane::Established, Source::NatT, from(), &[2u8; 40000]);
        let mut out = Vec::new();
        ing.pop_batch(&mut out, QUOTAS);
        let first = out[0].data.as_ptr();
        ing.recycle(&mut out);
        assert!(out.is_empty());
        ing.push(Lane::Forward, Source::Forward(ForwardId(0)), from(), &[3u8; 1000]);
        ing.pop_batch(&mut out, QUOTAS);
        assert_eq!(out[0].data.as_ptr(), first, "the 2048-octet buffer came back from the pool");
        assert_eq!(&out[0].data[..], &[3u8; 1000][..], "holding exactly the new datagram");
        ing.recycle(&mut out);
        let pooled = |ing: &Ingress| ing.lanes.lock().unwrap().pool.iter().map(Vec::len).collect::<Vec<_>>();
        assert_eq!(pooled(&ing), vec![0, 1], "the 40000-octet buffer was freed, not pooled");
        let mut many: Vec<Datagram> = (0..POOL_MAX + 10)
            .map(|_| Datagram { source: Source::NatT, from: from(), data: Vec::with_capacity(256) })
            .collect();
        ing.recycle(&mut many);
        assert_eq!(pooled(&ing), vec![POOL_MAX, 1], "at most POOL_MAX buffers per class are kept");
    }

    #[test]
    fn established_lane_is_served_first_within_quotas() {
        let ing = Ingress::new(BUDGETS);
        for k in 0..100u8 {
            ing.push(Lane::Forward, Source::Forward(ForwardId(0)), from(), &[k]);
            ing.push(Lane::Handshake, Source::Ike, from(), &[k]);
        }
        ing.push(Lane::Established, Source::NatT, from(), &[0xee]);
        let mut out = Vec::new();
        ing.pop_batch(&mut out, [256, 4, 2]);
        let sources: Vec<Source> = out.iter().map(|d| d.source).collect();
        assert_eq!(sources[0], Source::NatT, "ESP first, though it arrived last");
        assert_eq!(sources.len(), 1 + 4 + 2);
        assert_eq!(ing.stats()[1].depth, 96);
    }
}
