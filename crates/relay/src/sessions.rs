//! The bounded session table: `(forward, client)` ↔ inside port, with idle expiry in O(1) per operation.
//!
//! Each forward keeps its sessions in least-recently-used order (an `lru::LruCache`, unbounded: the bounds are
//! ours). All sessions of one forward share its idle timeout, so the least recently used one is the first to
//! expire: [`SessionTable::expire`] pops expired heads and [`SessionTable::next_expiry`] reads one head per
//! forward. Admission never scans the table: a full table or a source at its quota is refused after looking at
//! the heads only.
//!
//! Two bounds, each with its own refusal: `max_sessions` for the whole relay ([`Refused::TableFull`]) and
//! `max_per_source` sessions per client IP across all forwards ([`Refused::SourceLimit`]), so one allowed source
//! opening thousands of ports cannot take every slot and deny the other clients.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use lru::LruCache;

use crate::{FIRST_DYNAMIC_PORT, ForwardId};

/// One session, in its forward's LRU list (keyed by client).
#[derive(Debug, Clone, Copy)]
struct Entry {
    port: u16,
    last_seen: Duration,
}

/// Why a new session was not created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    TableFull,
    SourceLimit,
}

/// See the module docs.
#[derive(Debug)]
pub struct SessionTable {
    /// inside port → its session's forward and client.
    by_port: HashMap<u16, (ForwardId, SocketAddrV4)>,
    /// Per forward: client → session, least recently used first.
    by_forward: HashMap<ForwardId, LruCache<SocketAddrV4, Entry>>,
    /// Sessions per client IP (entries are removed at zero).
    per_source: HashMap<Ipv4Addr, usize>,
    max_sessions: usize,
    max_per_source: usize,
}

impl SessionTable {
    /// Both bounds at least 1; `max_sessions` at most the number of dynamic ports. The port map is allocated now.
    pub fn new(max_sessions: usize, max_per_source: usize) -> SessionTable {
        let max_sessions = max_sessions.clamp(1, 65536 - usize::from(FIRST_DYNAMIC_PORT));
        SessionTable {
            by_port: HashMap::with_capacity(max_sessions),
            by_forward: HashMap::new(),
            per_source: HashMap::new(),
            max_sessions,
            max_per_source: max_per_source.clamp(1, max_sessions),
        }
    }

    pub fn len(&self) -> usize {
        self.by_port.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_port.is_empty()
    }

    pub fn max_sessions(&self) -> usize {
        self.max_sessions
    }

    pub fn max_per_source(&self) -> usize {
        self.max_per_source
    }

    /// See `Relay::set_max_sessions_per_source`.
    pub fn set_max_per_source(&mut self, max_per_source: usize) {
        self.max_per_source = max_per_source.clamp(1, self.max_sessions);
    }

    /// Sessions of one forward.
    pub fn len_of(&self, forward: ForwardId) -> usize {
        self.by_forward.get(&forward).map_or(0, LruCache::len)
    }

    /// Sessions of one client IP.
    pub fn len_of_source(&self, ip: Ipv4Addr) -> usize {
        self.per_source.get(&ip).copied().unwrap_or(0)
    }

    /// The inside port of `client`'s session on `forward`, marked used at `now`.
    pub fn touch_client(&mut self, forward: ForwardId, client: SocketAddrV4, now: Duration) -> Option<u16> {
        let e = self.by_forward.get_mut(&forward)?.get_mut(&client)?;
        e.last_seen = now;
        Some(e.port)
    }

    /// The session on inside `port`: its forward, client and when it was last used (not marked used).
    pub fn by_port(&self, port: u16) -> Option<(ForwardId, SocketAddrV4, Duration)> {
        let (f, c) = *self.by_port.get(&port)?;
        let e = self.by_forward.get(&f)?.peek(&c)?;
        Some((f, c, e.last_seen))
    }

    /// Marks the session on inside `port` used at `now`.
    pub fn touch_port(&mut self, port: u16, now: Duration) {
        if let Some((f, c)) = self.by_port.get(&port).copied()
            && let Some(e) = self.by_forward.get_mut(&f).and_then(|l| l.get_mut(&c))
        {
            e.last_seen = now;
        }
    }

    /// A new session for `client` on `forward` (which must not have one). Expired sessions are removed first
    /// when a bound is reached (`idle_of` gives each forward's idle timeout); then the bounds are checked.
    pub fn insert(
        &mut self,
        forward: ForwardId,
        client: SocketAddrV4,
        now: Duration,
        idle_of: impl Fn(ForwardId) -> Option<Duration>,
    ) -> Result<u16, Refused> {
        let at_bound =
            |t: &SessionTable| t.by_port.len() >= t.max_sessions || t.len_of_source(*client.ip()) >= t.max_per_source;
        if at_bound(self) {
            self.expire(now, &idle_of);
        }
        if self.len_of_source(*client.ip()) >= self.max_per_source {
            return Err(Refused::SourceLimit);
        }
        if self.by_port.len() >= self.max_sessions {
            return Err(Refused::TableFull);
        }
        // At most `max_sessions` ports are taken, so this finds one within `max_sessions + 1` probes.
        let port = self.free_port(client.port()).ok_or(Refused::TableFull)?;
        self.by_port.insert(port, (forward, client));
        self.by_forward.entry(forward).or_insert_with(LruCache::unbounded).put(client, Entry { port, last_seen: now });
        *self.per_source.entry(*client.ip()).or_insert(0) += 1;
        Ok(port)
    }

    /// The client's port if free (and not 0), else the next free one upwards, wrapping within 1024..=65535.
    fn free_port(&self, wanted: u16) -> Option<u16> {
        if wanted != 0 && !self.by_port.contains_key(&wanted) {
            return Some(wanted);
        }
        let lo = u32::from(FIRST_DYNAMIC_PORT);
        let span = 65536 - lo;
        let start = u32::from(wanted.max(FIRST_DYNAMIC_PORT)) - lo;
        (1..=span).map(|k| ((start + k) % span + lo) as u16).find(|p| !self.by_port.contains_key(p))
    }

    fn forget(&mut self, client: SocketAddrV4, port: u16) {
        self.by_port.remove(&port);
        if let Some(n) = self.per_source.get_mut(client.ip()) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(client.ip());
            }
        }
    }

    /// Removes sessions idle for at least their forward's timeout (all of a forward `idle_of` does not know);
    /// returns how many. O(forwards + removed).
    pub fn expire(&mut self, now: Duration, idle_of: impl Fn(ForwardId) -> Option<Duration>) -> usize {
        let mut gone = Vec::new();
        for (f, lru) in &mut self.by_forward {
            let idle = idle_of(*f);
            while let Some((_, e)) = lru.peek_lru() {
                if idle.is_some_and(|idle| now.saturating_sub(e.last_seen) < idle) {
                    break;
                }
                if let Some((c, e)) = lru.pop_lru() {
                    gone.push((c, e.port));
                }
            }
        }
        self.by_forward.retain(|_, l| !l.is_empty());
        for (c, p) in &gone {
            self.forget(*c, *p);
        }
        gone.len()
    }

    /// When the next session expires; `None` without sessions. O(forwards).
    pub fn next_expiry(&self, idle_of: impl Fn(ForwardId) -> Option<Duration>) -> Option<Duration> {
        self.by_forward
            .iter()
            .filter_map(|(f, l)| {
                let (_, e) = l.peek_lru()?;
                Some(idle_of(*f).map_or(e.last_seen, |i| e.last_seen.saturating_add(i)))
            })
            .min()
    }

    /// Removes the sessions of `forward` for which `keep` is false (all of them with `|_| false`).
    pub fn retain(&mut self, forward: ForwardId, keep: impl Fn(SocketAddrV4) -> bool) {
        let Some(lru) = self.by_forward.get_mut(&forward) else { return };
        let gone: Vec<(SocketAddrV4, u16)> =
            lru.iter().filter(|(c, _)| !keep(**c)).map(|(c, e)| (*c, e.port)).collect();
        for (c, _) in &gone {
            lru.pop(c);
        }
        if lru.is_empty() {
            self.by_forward.remove(&forward);
        }
        for (c, p) in gone {
            self.forget(c, p);
        }
    }

    /// Forwards that have sessions.
    pub fn forwards(&self) -> impl Iterator<Item = ForwardId> + '_ {
        self.by_forward.keys().copied()
    }
}
