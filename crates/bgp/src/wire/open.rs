//! OPEN (RFC 4271 §4.2) and its capabilities optional parameter (RFC 5492): multiprotocol (RFC 4760), route
//! refresh (RFC 2918), 4-octet AS numbers (RFC 6793).
//!
//! The checks that need no configuration are here (version, hold time 1 or 2, BGP identifier 0, optional
//! parameter and capability syntax); the peer AS and the required capabilities are the speaker's to check.

use super::codes::{AFI_IPV4, SAFI_UNICAST, cap, err, open};
use super::{AS_TRANS, Reader, WireError};
use std::net::Ipv4Addr;

/// The optional parameter type that carries capabilities (RFC 5492 §4).
const PARAM_CAPABILITIES: u8 = 2;

/// A capability (RFC 5492 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    /// Multiprotocol extensions for one AFI/SAFI (RFC 4760 §8).
    Multiprotocol { afi: u16, safi: u8 },
    /// RFC 2918.
    RouteRefresh,
    /// The speaker's real (4-octet) AS number (RFC 6793 §3).
    FourOctetAs(u32),
    /// Anything else, kept as received.
    Unknown { code: u8, value: Vec<u8> },
}

impl Capability {
    /// IPv4 unicast, the only family iotrelay speaks.
    pub const IPV4_UNICAST: Capability = Capability::Multiprotocol { afi: AFI_IPV4, safi: SAFI_UNICAST };

    fn emit(&self, out: &mut Vec<u8>) {
        match self {
            Capability::Multiprotocol { afi, safi } => {
                out.extend_from_slice(&[cap::MULTIPROTOCOL, 4]);
                out.extend_from_slice(&afi.to_be_bytes());
                out.extend_from_slice(&[0, *safi]);
            }
            Capability::RouteRefresh => out.extend_from_slice(&[cap::ROUTE_REFRESH, 0]),
            Capability::FourOctetAs(asn) => {
                out.extend_from_slice(&[cap::FOUR_OCTET_AS, 4]);
                out.extend_from_slice(&asn.to_be_bytes());
            }
            Capability::Unknown { code, value } => {
                let v = &value[..value.len().min(255)];
                out.extend_from_slice(&[*code, v.len() as u8]);
                out.extend_from_slice(v);
            }
        }
    }

    fn parse(code: u8, value: &[u8]) -> Result<Capability, WireError> {
        let malformed = |what| WireError::new(err::OPEN_MESSAGE, open::UNSPECIFIC, what);
        Ok(match code {
            cap::MULTIPROTOCOL => {
                if value.len() != 4 {
                    return Err(malformed("multiprotocol capability not 4 octets"));
                }
                Capability::Multiprotocol { afi: u16::from_be_bytes([value[0], value[1]]), safi: value[3] }
            }
            cap::ROUTE_REFRESH => {
                if !value.is_empty() {
                    return Err(malformed("route refresh capability with a value"));
                }
                Capability::RouteRefresh
            }
            cap::FOUR_OCTET_AS => {
                if value.len() != 4 {
                    return Err(malformed("4-octet AS capability not 4 octets"));
                }
                Capability::FourOctetAs(u32::from_be_bytes([value[0], value[1], value[2], value[3]]))
            }
            _ => Capability::Unknown { code, value: value.to_vec() },
        })
    }
}

/// OPEN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub version: u8,
    /// The 2-octet "My Autonomous System" field: the ASN, or [`AS_TRANS`] when it needs 4 octets.
    pub my_as: u16,
    /// Seconds; 0 (no keepalives) or at least 3.
    pub hold_time: u16,
    pub bgp_id: Ipv4Addr,
    pub capabilities: Vec<Capability>,
}

impl Open {
    /// Our OPEN: version 4, `asn` (AS_TRANS in the 2-octet field when it does not fit), the 4-octet AS, route
    /// refresh and IPv4 unicast capabilities.
    pub fn new(asn: u32, hold_time: u16, bgp_id: Ipv4Addr) -> Open {
        Open {
            version: 4,
            my_as: u16::try_from(asn).unwrap_or(AS_TRANS),
            hold_time,
            bgp_id,
            capabilities: vec![Capability::IPV4_UNICAST, Capability::RouteRefresh, Capability::FourOctetAs(asn)],
        }
    }

    /// The sender's AS: the 4-octet AS capability if present (RFC 6793 §4.1), else the 2-octet field.
    pub fn asn(&self) -> u32 {
        self.four_octet_as().unwrap_or(u32::from(self.my_as))
    }

    pub fn four_octet_as(&self) -> Option<u32> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::FourOctetAs(a) => Some(*a),
            _ => None,
        })
    }

    pub(super) fn parse(body: &[u8]) -> Result<Open, WireError> {
        let malformed = |what| move || WireError::new(err::OPEN_MESSAGE, open::UNSPECIFIC, what);
        let mut r = Reader::new(body);
        let version = r.u8(malformed("truncated"))?;
        if version != 4 {
            // Data: the largest version we support (RFC 4271 §6.2).
            return Err(WireError::with_data(
                err::OPEN_MESSAGE,
                open::UNSUPPORTED_VERSION_NUMBER,
                vec![0, 4],
                "BGP version not 4",
            ));
        }
        let my_as = r.u16(malformed("truncated"))?;
        let hold_time = r.u16(malformed("truncated"))?;
        if hold_time == 1 || hold_time == 2 {
            return Err(WireError::new(err::OPEN_MESSAGE, open::UNACCEPTABLE_HOLD_TIME, "hold time 1 or 2 seconds"));
        }
        let bgp_id = Ipv4Addr::from(r.u32(malformed("truncated"))?);
        if bgp_id.is_unspecified() {
            return Err(WireError::new(err::OPEN_MESSAGE, open::BAD_BGP_IDENTIFIER, "BGP identifier 0"));
        }
        let opt_len = r.u8(malformed("truncated"))?;
        if usize::from(opt_len) != r.remaining() {
            return Err(malformed("optional parameters length differs from the message")());
        }
        let mut capabilities = Vec::new();
        while !r.is_empty() {
            let ty = r.u8(malformed("truncated optional parameter"))?;
            let len = r.u8(malformed("truncated optional parameter"))?;
            let value = r.take(usize::from(len), malformed("optional parameter overruns the message"))?;
            if ty != PARAM_CAPABILITIES {
                return Err(WireError::new(
                    err::OPEN_MESSAGE,
                    open::UNSUPPORTED_OPTIONAL_PARAMETER,
                    "optional parameter other than capabilities",
                ));
            }
            let mut c = Reader::new(value);
            while !c.is_empty() {
                let code = c.u8(malformed("truncated capability"))?;
                let clen = c.u8(malformed("truncated capability"))?;
                let cval = c.take(usize::from(clen), malformed("capability overruns its parameter"))?;
                capabilities.push(Capability::parse(code, cval)?);
            }
        }
        Ok(Open { version, my_as, hold_time, bgp_id, capabilities })
    }

    pub(super) fn emit(&self, out: &mut Vec<u8>) {
        out.push(self.version);
        out.extend_from_slice(&self.my_as.to_be_bytes());
        out.extend_from_slice(&self.hold_time.to_be_bytes());
        out.extend_from_slice(&self.bgp_id.octets());
        // One capabilities parameter; its length octet bounds it to 255 octets (we send three small ones), so
        // capabilities that would not fit are left out whole.
        let mut caps = Vec::new();
        for c in &self.capabilities {
            let mut one = Vec::new();
            c.emit(&mut one);
            if caps.len() + one.len() <= 253 {
                caps.extend_from_slice(&one);
            }
        }
        if caps.is_empty() {
            out.push(0);
            return;
        }
        out.push(caps.len() as u8 + 2);
        out.extend_from_slice(&[PARAM_CAPABILITIES, caps.len() as u8]);
        out.extend_from_slice(&caps);
    }
}
