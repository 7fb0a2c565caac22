//! [`Ipv4Cidr`]: an IPv4 network in canonical form, for allow-lists, routes, BGP prefixes (announced and
//! learned; their wire form is in `iotrelay-bgp`) and IKE traffic selectors alike.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network in canonical form (host bits zero), e.g. `100.64.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    prefix_len: u8,
}

/// Why a CIDR string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("must be an IPv4 CIDR like 100.64.0.0/16")]
    Syntax,
    #[error("host bits must be zero (did you mean {0}?)")]
    HostBits(Ipv4Cidr),
}

impl Ipv4Cidr {
    /// Builds a CIDR, rejecting host bits and prefix lengths above 32.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Result<Self, CidrError> {
        if prefix_len > 32 {
            return Err(CidrError::Syntax);
        }
        let masked = Ipv4Addr::from(u32::from(addr) & mask(prefix_len));
        let c = Ipv4Cidr { addr: masked, prefix_len };
        if masked != addr {
            return Err(CidrError::HostBits(c));
        }
        Ok(c)
    }
    /// The network of `prefix_len` bits that contains `addr` (host bits cleared); None above 32. For input where
    /// host bits carry no meaning, such as a BGP prefix on the wire (RFC 4271 §4.3); configuration uses
    /// [`Ipv4Cidr::new`] or parsing, which refuse them.
    pub fn truncating(addr: Ipv4Addr, prefix_len: u8) -> Option<Self> {
        (prefix_len <= 32).then(|| Ipv4Cidr { addr: Ipv4Addr::from(u32::from(addr) & mask(prefix_len)), prefix_len })
    }
    /// The network of one address, `addr/32`.
    pub const fn host(addr: Ipv4Addr) -> Self {
        Ipv4Cidr { addr, prefix_len: 32 }
    }
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }
    /// Whether `ip` lies inside this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix_len) == u32::from(self.addr)
    }
    /// Whether `other` lies wholly inside this network.
    pub fn contains_cidr(&self, other: &Ipv4Cidr) -> bool {
        other.prefix_len >= self.prefix_len && self.contains(other.addr)
    }
    /// First and last address of the network.
    pub fn range(&self) -> (Ipv4Addr, Ipv4Addr) {
        let start = u32::from(self.addr);
        (self.addr, Ipv4Addr::from(start | !mask(self.prefix_len)))
    }
    /// The whole IPv4 space, `0.0.0.0/0`.
    pub const ANY: Ipv4Cidr = Ipv4Cidr { addr: Ipv4Addr::UNSPECIFIED, prefix_len: 0 };
}

fn mask(prefix_len: u8) -> u32 {
    if prefix_len == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix_len)) }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, CidrError> {
        let (a, p) = s.split_once('/').ok_or(CidrError::Syntax)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| CidrError::Syntax)?;
        if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CidrError::Syntax);
        }
        let prefix_len: u8 = p.parse().map_err(|_| CidrError::Syntax)?;
        Ipv4Cidr::new(addr, prefix_len)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_contains() {
        let c: Ipv4Cidr = "100.64.0.0/16".parse().unwrap();
        assert!(c.contains("100.64.1.10".parse().unwrap()));
        assert!(!c.contains("100.65.0.1".parse().unwrap()));
        assert!(Ipv4Cidr::ANY.contains("192.0.2.1".parse().unwrap()));
        let h: Ipv4Cidr = "203.0.113.10/32".parse().unwrap();
        assert!(h.contains("203.0.113.10".parse().unwrap()));
        assert!(c.contains_cidr(&"100.64.1.0/24".parse().unwrap()));
        assert!(c.contains_cidr(&c));
        assert!(!c.contains_cidr(&"100.0.0.0/8".parse().unwrap()));
        assert!(!c.contains_cidr(&"100.65.0.0/24".parse().unwrap()));
        assert_eq!(c.range(), ("100.64.0.0".parse().unwrap(), "100.64.255.255".parse().unwrap()));
        assert_eq!(h.range(), (h.addr(), h.addr()));
        assert_eq!(Ipv4Cidr::host(h.addr()), h);
        assert_eq!(Ipv4Cidr::truncating("10.1.2.3".parse().unwrap(), 16), "10.1.0.0/16".parse().ok());
        assert_eq!(Ipv4Cidr::truncating("10.1.2.3".parse().unwrap(), 0), Some(Ipv4Cidr::ANY));
        assert_eq!(Ipv4Cidr::truncating("10.1.2.3".parse().unwrap(), 33), None);
        assert_eq!(Ipv4Cidr::ANY.range(), (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST));
    }

    #[test]
    fn rejects_bad() {
        for s in ["100.64.0.0", "100.64.0.0/33", "100.64.0.0/", "x/8", "100.64.0.0/+8", "::/0"] {
            assert_eq!(s.parse::<Ipv4Cidr>(), Err(CidrError::Syntax), "{s}");
        }
        assert!(matches!("100.64.0.1/16".parse::<Ipv4Cidr>(), Err(CidrError::HostBits(_))));
    }
}
