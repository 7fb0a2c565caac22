//! UPDATE for IPv4 unicast (RFC 4271 §4.3, §5) with the revised error handling of RFC 7606.
//!
//! AS numbers in AS_PATH and AGGREGATOR are always 4 octets: the speaker refuses peers that do not announce the
//! 4-octet AS capability (RFC 6793), so the 2-octet encoding never occurs on a session of ours.
//!
//! What ends the session (a [`WireError`]): Withdrawn Routes Length or Total Path Attribute Length inconsistent
//! with the message (Malformed Attribute List), a withdrawn route or NLRI prefix that does not parse (Invalid
//! Network Field, RFC 7606 §5.3), an unrecognized well-known attribute, MP_REACH_NLRI or MP_UNREACH_NLRI twice
//! (RFC 7606 §3 g). What only withdraws the UPDATE's routes ([`Update::treat_as_withdraw`]): a malformed ORIGIN,
//! AS_PATH, NEXT_HOP or MULTI_EXIT_DISC (wrong flags, length or value), an attribute overrunning the attribute
//! field (RFC 7606 §4), a missing well-known attribute when NLRI is present. What is dropped and counted
//! ([`PathAttributes::discarded`]): LOCAL_PREF from an external peer (RFC 7606 §7.5), a malformed
//! ATOMIC_AGGREGATE or AGGREGATOR (§7.6, §7.7), repeats of any other attribute (§3 g).

use super::codes::{attr, err, update};
use super::{Reader, WireError, emit_prefix, parse_prefix, prefix_wire_len};
use iotrelay_types::Ipv4Cidr;
use std::net::Ipv4Addr;

/// Attribute flag bits (RFC 4271 §4.3).
pub struct AttributeFlags;
impl AttributeFlags {
    pub const OPTIONAL: u8 = 0x80;
    pub const TRANSITIVE: u8 = 0x40;
    pub const PARTIAL: u8 = 0x20;
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

const WELL_KNOWN: u8 = AttributeFlags::TRANSITIVE;
const OPTIONAL_NON_TRANSITIVE: u8 = AttributeFlags::OPTIONAL;

/// An attribute kept as received: unrecognized optional ones, MP_REACH_NLRI and MP_UNREACH_NLRI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAttribute {
    pub flags: u8,
    pub type_code: u8,
    pub value: Vec<u8>,
}

/// One AS_PATH segment (RFC 4271 §4.3, with 4-octet ASNs per RFC 6793).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsPathSegment {
    /// [`AsPathSegment::AS_SET`] or [`AsPathSegment::AS_SEQUENCE`].
    pub kind: u8,
    pub asns: Vec<u32>,
}

impl AsPathSegment {
    pub const AS_SET: u8 = 1;
    pub const AS_SEQUENCE: u8 = 2;
    pub fn sequence(asns: Vec<u32>) -> AsPathSegment {
        AsPathSegment { kind: Self::AS_SEQUENCE, asns }
    }
}

/// The path attributes iotrelay understands, plus what it kept or dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathAttributes {
    /// 0 IGP, 1 EGP, 2 INCOMPLETE.
    pub origin: Option<u8>,
    pub as_path: Option<Vec<AsPathSegment>>,
    pub next_hop: Option<Ipv4Addr>,
    pub med: Option<u32>,
    /// Sent only inside an AS; from AWS (an external peer) it is discarded on receipt.
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    pub aggregator: Option<(u32, Ipv4Addr)>,
    /// Unrecognized optional attributes (transitive or not) and MP_REACH/MP_UNREACH, as received.
    pub other: Vec<RawAttribute>,
    /// Type codes of attributes dropped on receipt by RFC 7606 "attribute discard" or as repeats.
    pub discarded: Vec<u8>,
}

impl PathAttributes {
    /// Every ASN of the AS_PATH, left to right (sets included).
    pub fn as_path_asns(&self) -> impl Iterator<Item = u32> + '_ {
        self.as_path.iter().flatten().flat_map(|s| s.asns.iter().copied())
    }
    /// The leftmost ASN of the first AS_SEQUENCE: for an external peer, the peer's own AS (RFC 4271 §6.3).
    pub fn first_as(&self) -> Option<u32> {
        self.as_path.as_ref()?.first().filter(|s| s.kind == AsPathSegment::AS_SEQUENCE)?.asns.first().copied()
    }

    fn emit(&self, out: &mut Vec<u8>) {
        if let Some(o) = self.origin {
            emit_attr(out, WELL_KNOWN, attr::ORIGIN, &[o]);
        }
        if let Some(path) = &self.as_path {
            let mut v = Vec::new();
            for seg in path {
                // A segment holds at most 255 ASNs; longer lists are split into consecutive segments.
                for chunk in seg.asns.chunks(255) {
                    v.extend_from_slice(&[seg.kind, chunk.len() as u8]);
                    chunk.iter().for_each(|a| v.extend_from_slice(&a.to_be_bytes()));
                }
            }
            emit_attr(out, WELL_KNOWN, attr::AS_PATH, &v);
        }
        if let Some(nh) = self.next_hop {
            emit_attr(out, WELL_KNOWN, attr::NEXT_HOP, &nh.octets());
        }
        if let Some(m) = self.med {
            emit_attr(out, OPTIONAL_NON_TRANSITIVE, attr::MULTI_EXIT_DISC, &m.to_be_bytes());
        }
        if let Some(l) = self.local_pref {
            emit_attr(out, WELL_KNOWN, attr::LOCAL_PREF, &l.to_be_bytes());
        }
        if self.atomic_aggregate {
            emit_attr(out, WELL_KNOWN, attr::ATOMIC_AGGREGATE, &[]);
        }
        if let Some((asn, ip)) = self.aggregator {
            let mut v = asn.to_be_bytes().to_vec();
            v.extend_from_slice(&ip.octets());
            emit_attr(out, AttributeFlags::OPTIONAL | AttributeFlags::TRANSITIVE, attr::AGGREGATOR, &v);
        }
        for a in &self.other {
            emit_attr(out, a.flags, a.type_code, &a.value);
        }
    }
}

fn emit_attr(out: &mut Vec<u8>, flags: u8, ty: u8, value: &[u8]) {
    let value = &value[..value.len().min(usize::from(u16::MAX))];
    if value.len() > 255 {
        out.extend_from_slice(&[(flags & 0xe0) | AttributeFlags::EXTENDED_LENGTH, ty]);
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    } else {
        out.extend_from_slice(&[flags & 0xe0, ty, value.len() as u8]);
    }
    out.extend_from_slice(value);
}

/// UPDATE.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    pub withdrawn: Vec<Ipv4Cidr>,
    pub attributes: PathAttributes,
    pub nlri: Vec<Ipv4Cidr>,
    /// Set by the parser when RFC 7606 says "treat-as-withdraw": the prefixes in `nlri` are to be handled as
    /// withdrawn, and the reason says which attribute was malformed. Ignored when emitting.
    pub treat_as_withdraw: Option<&'static str>,
}

impl Update {
    /// Octets of this UPDATE on the wire, header included (must stay within 4096).
    pub fn wire_len(&self) -> usize {
        let mut a = Vec::new();
        self.attributes.emit(&mut a);
        let p = |v: &[Ipv4Cidr]| v.iter().map(prefix_wire_len).sum::<usize>();
        super::HEADER_LEN + 4 + p(&self.withdrawn) + a.len() + p(&self.nlri)
    }

    pub(super) fn emit(&self, out: &mut Vec<u8>) {
        let mut w = Vec::new();
        self.withdrawn.iter().for_each(|p| emit_prefix(p, &mut w));
        let mut a = Vec::new();
        self.attributes.emit(&mut a);
        out.extend_from_slice(&(w.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
        out.extend_from_slice(&w);
        out.extend_from_slice(&(a.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
        out.extend_from_slice(&a);
        self.nlri.iter().for_each(|p| emit_prefix(p, out));
    }

    pub(super) fn parse(body: &[u8]) -> Result<Update, WireError> {
        let malformed =
            || WireError::new(err::UPDATE_MESSAGE, update::MALFORMED_ATTRIBUTE_LIST, "lengths exceed the message");
        let mut r = Reader::new(body);
        let wlen = r.u16(malformed)?;
        let wbytes = r.take(usize::from(wlen), malformed)?;
        let alen = r.u16(malformed)?;
        let abytes = r.take(usize::from(alen), malformed)?;
        let withdrawn = parse_prefixes(wbytes, "malformed withdrawn route")?;
        let nlri = parse_prefixes(r.rest(), "malformed NLRI prefix")?;
        let mut u = Update { withdrawn, nlri, ..Update::default() };
        parse_attributes(abytes, &mut u)?;
        if !u.nlri.is_empty() && u.treat_as_withdraw.is_none() {
            let a = &u.attributes;
            if a.origin.is_none() || a.as_path.is_none() || a.next_hop.is_none() {
                // RFC 7606 §3 d: missing well-known mandatory attribute.
                u.treat_as_withdraw = Some("missing ORIGIN, AS_PATH or NEXT_HOP");
            }
        }
        Ok(u)
    }
}

fn parse_prefixes(data: &[u8], what: &'static str) -> Result<Vec<Ipv4Cidr>, WireError> {
    let mut r = Reader::new(data);
    let mut out = Vec::new();
    while !r.is_empty() {
        out.push(parse_prefix(&mut r, || WireError::new(err::UPDATE_MESSAGE, update::INVALID_NETWORK_FIELD, what))?);
    }
    Ok(out)
}

fn parse_attributes(data: &[u8], u: &mut Update) -> Result<(), WireError> {
    let mut r = Reader::new(data);
    let mut seen = [false; 256];
    let a = &mut u.attributes;
    let mut withdraw = |why: &'static str| {
        u.treat_as_withdraw.get_or_insert(why);
    };
    let trunc = || WireError::new(0, 0, "");
    while !r.is_empty() {
        // RFC 7606 §4: an attribute header or value overrunning the field is treat-as-withdraw; the Total Path
        // Attribute Length still locates the NLRI.
        let min = if r.rest()[0] & AttributeFlags::EXTENDED_LENGTH != 0 { 4 } else { 3 };
        if r.remaining() < min {
            withdraw("attribute header overruns the attribute field");
            break;
        }
        let flags = r.u8(trunc)?;
        let ty = r.u8(trunc)?;
        let len = if flags & AttributeFlags::EXTENDED_LENGTH != 0 { r.u16(trunc)? } else { u16::from(r.u8(trunc)?) };
        let Ok(value) = r.take(usize::from(len), trunc) else {
            withdraw("attribute overruns the attribute field");
            break;
        };
        if seen[usize::from(ty)] {
            if ty == attr::MP_REACH_NLRI || ty == attr::MP_UNREACH_NLRI {
                return Err(WireError::new(
                    err::UPDATE_MESSAGE,
                    update::MALFORMED_ATTRIBUTE_LIST,
                    "MP_REACH_NLRI or MP_UNREACH_NLRI repeated",
                ));
            }
            a.discarded.push(ty);
            continue;
        }
        seen[usize::from(ty)] = true;
        let class = flags & (AttributeFlags::OPTIONAL | AttributeFlags::TRANSITIVE | AttributeFlags::PARTIAL);
        match ty {
            attr::ORIGIN => match value {
                _ if class != WELL_KNOWN => withdraw("ORIGIN attribute flags"),
                [o @ 0..=2] => a.origin = Some(*o),
                [_] => withdraw("ORIGIN value not 0, 1 or 2"),
                _ => withdraw("ORIGIN length not 1"),
            },
            attr::AS_PATH if class != WELL_KNOWN => withdraw("AS_PATH attribute flags"),
            attr::AS_PATH => match parse_as_path(value) {
                Some(p) => a.as_path = Some(p),
                None => withdraw("malformed AS_PATH"),
            },
            attr::NEXT_HOP => match <[u8; 4]>::try_from(value) {
                _ if class != WELL_KNOWN => withdraw("NEXT_HOP attribute flags"),
                Ok(b) => {
                    let nh = Ipv4Addr::from(b);
                    // Not a host address (RFC 4271 §6.3): the route cannot be used.
                    if nh.is_unspecified() || nh.is_multicast() || nh.is_broadcast() {
                        withdraw("NEXT_HOP not a host address");
                    } else {
                        a.next_hop = Some(nh);
                    }
                }
                Err(_) => withdraw("NEXT_HOP length not 4"),
            },
            attr::MULTI_EXIT_DISC => match <[u8; 4]>::try_from(value) {
                _ if class != OPTIONAL_NON_TRANSITIVE => withdraw("MULTI_EXIT_DISC attribute flags"),
                Ok(b) => a.med = Some(u32::from_be_bytes(b)),
                Err(_) => withdraw("MULTI_EXIT_DISC length not 4"),
            },
            // RFC 7606 §7.5: from an external neighbor, LOCAL_PREF is disregarded.
            attr::LOCAL_PREF => a.discarded.push(ty),
            attr::ATOMIC_AGGREGATE if class == WELL_KNOWN && value.is_empty() => a.atomic_aggregate = true,
            attr::AGGREGATOR if class & 0xc0 == 0xc0 && value.len() == 8 => {
                let asn = u32::from_be_bytes([value[0], value[1], value[2], value[3]]);
                a.aggregator = Some((asn, Ipv4Addr::new(value[4], value[5], value[6], value[7])));
            }
            attr::ATOMIC_AGGREGATE | attr::AGGREGATOR => a.discarded.push(ty),
            _ if flags & AttributeFlags::OPTIONAL == 0 && ty != attr::MP_REACH_NLRI && ty != attr::MP_UNREACH_NLRI => {
                // RFC 4271 §6.3: data is the unrecognized attribute (type, length and value).
                let mut data = vec![flags, ty];
                if flags & AttributeFlags::EXTENDED_LENGTH != 0 {
                    data.extend_from_slice(&len.to_be_bytes());
                } else {
                    data.push(len as u8);
                }
                data.extend_from_slice(value);
                return Err(WireError::with_data(
                    err::UPDATE_MESSAGE,
                    update::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
                    data,
                    "unrecognized well-known attribute",
                ));
            }
            _ => a.other.push(RawAttribute { flags: flags & 0xe0, type_code: ty, value: value.to_vec() }),
        }
    }
    Ok(())
}

/// 4-octet AS_PATH segments; `None` if malformed (RFC 7606 §7.2: unknown or confederation segment type from an
/// external peer, a zero segment length, or a segment overrunning the attribute).
fn parse_as_path(value: &[u8]) -> Option<Vec<AsPathSegment>> {
    let mut r = Reader::new(value);
    let e = || WireError::new(0, 0, "");
    let mut out = Vec::new();
    while !r.is_empty() {
        let kind = r.u8(e).ok()?;
        let count = r.u8(e).ok()?;
        if !(AsPathSegment::AS_SET..=AsPathSegment::AS_SEQUENCE).contains(&kind) || count == 0 {
            return None;
        }
        let b = r.take(usize::from(count) * 4, e).ok()?;
        let asns = b.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect();
        out.push(AsPathSegment { kind, asns });
    }
    Some(out)
}
