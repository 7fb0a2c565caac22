//! The routes learned from the peer (Adj-RIB-In), bounded: once the table holds `max` prefixes, a new prefix is
//! dropped and counted, while routes already held can still be replaced or withdrawn. AWS announces the VPC's (or
//! transit gateway's) prefixes, a handful in practice; the bound keeps a misbehaving peer from growing it.

use iotrelay_types::Ipv4Cidr;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// A route learned from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub prefix: Ipv4Cidr,
    pub next_hop: Ipv4Addr,
    /// The AS_PATH flattened left to right (the peer's AS first).
    pub as_path: Vec<u32>,
    /// 0 IGP, 1 EGP, 2 INCOMPLETE.
    pub origin: u8,
    pub med: Option<u32>,
}

/// What [`Rib::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    Added,
    Replaced,
    /// The table was full and the prefix new: not stored.
    DroppedByBound,
}

/// Bounded table of learned routes, one per prefix.
#[derive(Debug, Clone)]
pub struct Rib {
    routes: BTreeMap<Ipv4Cidr, Route>,
    max: usize,
    dropped: u64,
}

impl Rib {
    pub fn new(max: usize) -> Rib {
        Rib { routes: BTreeMap::new(), max, dropped: 0 }
    }
    pub fn insert(&mut self, route: Route) -> Insert {
        if let Some(r) = self.routes.get_mut(&route.prefix) {
            *r = route;
            return Insert::Replaced;
        }
        if self.routes.len() >= self.max {
            self.dropped += 1;
            return Insert::DroppedByBound;
        }
        self.routes.insert(route.prefix, route);
        Insert::Added
    }
    pub fn remove(&mut self, prefix: &Ipv4Cidr) -> bool {
        self.routes.remove(prefix).is_some()
    }
    /// Empties the table (the session went down); returns how many routes it held.
    pub fn clear(&mut self) -> usize {
        let n = self.routes.len();
        self.routes.clear();
        n
    }
    pub fn get(&self, prefix: &Ipv4Cidr) -> Option<&Route> {
        self.routes.get(prefix)
    }
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.values()
    }
    pub fn len(&self) -> usize {
        self.routes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
    pub fn max(&self) -> usize {
        self.max
    }
    /// New prefixes refused because the table was full, over the table's life.
    pub fn dropped_by_bound(&self) -> u64 {
        self.dropped
    }
    /// The most specific learned prefix containing `ip` (what a forward's target is checked against).
    pub fn lookup(&self, ip: Ipv4Addr) -> Option<&Route> {
        self.routes.values().filter(|r| r.prefix.contains(ip)).max_by_key(|r| r.prefix.prefix_len())
    }
}
