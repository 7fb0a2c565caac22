//! The parser and emitter. Parsing goes through the zero-copy views in [`super::packet`], whose `new_checked`
//! validates every length once, so no input can index out of bounds.

use super::packet::*;
use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

pub(super) fn parse_header(data: &[u8]) -> Result<Header, WireError> {
    let p = HeaderPacket::new_checked(data)?;
    let version = p.version();
    if version >> 4 != 2 {
        return Err(WireError::InvalidMajorVersion(version >> 4));
    }
    let length = p.length();
    if (length as usize) < HEADER_LEN {
        return Err(WireError::BadLength("IKE header length below 28"));
    }
    Ok(Header {
        spi_i: p.spi_i(),
        spi_r: p.spi_r(),
        next_payload: PayloadType(p.next_payload()),
        version,
        exchange: ExchangeType(p.exchange()),
        flags: p.flags(),
        message_id: p.message_id(),
        length,
    })
}

pub(super) fn emit_header(h: &Header, out: &mut [u8]) {
    let mut p = HeaderPacket::new_unchecked(&mut out[..HEADER_LEN]);
    p.set_spi_i(h.spi_i);
    p.set_spi_r(h.spi_r);
    p.set_next_payload(h.next_payload.0);
    p.set_version(h.version);
    p.set_exchange(h.exchange.0);
    p.set_flags(h.flags);
    p.set_message_id(h.message_id);
    p.set_length(h.length);
}

/// Walks a payload chain. `base` is the offset of `data` in the whole message (for `aad_len`).
pub(super) fn parse_chain(first: PayloadType, data: &[u8], base: usize) -> Result<Vec<Payload>, WireError> {
    let mut pos = 0;
    let mut next = first;
    let mut out = Vec::new();
    while next != PayloadType::NONE {
        let this = next;
        let g = GenericPayload::new_checked(&data[pos..])?;
        next = PayloadType(g.next_payload());
        let payload = parse_body(this, next, g.critical(), g.body(), base + pos)?;
        pos += g.payload_length();
        let encrypted = matches!(payload, Payload::Sk { .. } | Payload::Skf { .. });
        out.push(payload);
        if encrypted {
            // SK/SKF: "next payload" names the first inner payload; the chain ends here and nothing may follow.
            if pos != data.len() {
                return Err(WireError::InvalidSyntax("data after the encrypted payload"));
            }
            return Ok(out);
        }
    }
    if pos != data.len() {
        return Err(WireError::InvalidSyntax("trailing data after the last payload"));
    }
    Ok(out)
}

fn parse_body(
    ty: PayloadType,
    next: PayloadType,
    critical: bool,
    body: &[u8],
    offset: usize,
) -> Result<Payload, WireError> {
    let fixed = |what| FixedHeaderBody::new_checked(body, what);
    let p = match ty {
        PayloadType::SA => Payload::Sa(parse_sa(body)?),
        PayloadType::KE => {
            let b = fixed("KE header")?;
            Payload::Ke { group: b.first_u16(), data: b.data().to_vec() }
        }
        PayloadType::IDI | PayloadType::IDR => {
            let b = fixed("ID header")?;
            let id = Identification { id_type: IdType(b.first_u8()), data: b.data().to_vec() };
            if ty == PayloadType::IDI { Payload::IdI(id) } else { Payload::IdR(id) }
        }
        PayloadType::CERT | PayloadType::CERTREQ => {
            let (&encoding, data) = body.split_first().ok_or(WireError::Truncated("certificate encoding"))?;
            let data = data.to_vec();
            if ty == PayloadType::CERT { Payload::Cert { encoding, data } } else { Payload::CertReq { encoding, data } }
        }
        PayloadType::AUTH => {
            let b = fixed("AUTH header")?;
            Payload::Auth { method: AuthMethod(b.first_u8()), data: b.data().to_vec() }
        }
        PayloadType::NONCE => Payload::Nonce(body.to_vec()),
        PayloadType::NOTIFY => {
            let n = NotifyPacket::new_checked(body)?;
            Payload::Notify(Notify {
                protocol: ProtocolId(n.protocol()),
                spi: n.spi().to_vec(),
                ty: NotifyType(n.notify_type()),
                data: n.data().to_vec(),
            })
        }
        PayloadType::DELETE => {
            let d = DeletePacket::new_checked(body)?;
            Payload::Delete(Delete {
                protocol: ProtocolId(d.protocol()),
                spi_size: d.spi_size(),
                spis: d.spis().map(<[u8]>::to_vec).collect(),
            })
        }
        PayloadType::VENDOR_ID => Payload::VendorId(body.to_vec()),
        PayloadType::TSI | PayloadType::TSR => {
            let ts = parse_ts(body)?;
            if ty == PayloadType::TSI { Payload::TsI(ts) } else { Payload::TsR(ts) }
        }
        PayloadType::CP => {
            let b = fixed("CP header")?;
            Payload::Cp { cfg_type: b.first_u8(), data: b.data().to_vec() }
        }
        PayloadType::SK => {
            Payload::Sk { next_inner: next, body: body.to_vec(), aad_len: offset + encrypted_header_len(false) }
        }
        PayloadType::SKF => {
            let b = fixed("SKF header")?;
            let (number, total) = (b.first_u16(), b.second_u16());
            if number == 0 || total == 0 || number > total {
                return Err(WireError::InvalidSyntax("SKF fragment number not in 1..=total"));
            }
            if number != 1 && next != PayloadType::NONE {
                return Err(WireError::InvalidSyntax("SKF next payload must be 0 after the first fragment"));
            }
            Payload::Skf {
                next_inner: next,
                number,
                total,
                body: b.data().to_vec(),
                aad_len: offset + encrypted_header_len(true),
            }
        }
        _ if critical => return Err(WireError::UnsupportedCriticalPayload(ty.0)),
        _ => Payload::Unknown { ty, critical, body: body.to_vec() },
    };
    Ok(p)
}

fn parse_sa(body: &[u8]) -> Result<Vec<Proposal>, WireError> {
    let mut pos = 0;
    let mut proposals = Vec::new();
    loop {
        let p = ProposalPacket::new_checked(&body[pos..])?;
        pos += p.proposal_length();
        let count = p.num_transforms();
        let t_bytes = p.transforms();
        let mut t_pos = 0;
        let mut transforms = Vec::with_capacity(count as usize);
        for i in 0..count {
            let t = TransformPacket::new_checked(&t_bytes[t_pos..])?;
            t_pos += t.transform_length();
            let t_last = t.last_substruc();
            if (t_last == 0) != (i + 1 == count) || (t_last != 0 && t_last != 3) {
                return Err(WireError::InvalidSyntax("transform 'last' flag inconsistent with the count"));
            }
            let attrs = t.attributes();
            let mut a_pos = 0;
            let mut key_length = None;
            let mut extra_attributes = Vec::new();
            while a_pos < attrs.len() {
                let a = AttributePacket::new_checked(&attrs[a_pos..])?;
                a_pos += a.total_len();
                if a.is_tv() && a.attribute_type() == 14 && key_length.is_none() {
                    key_length = Some(a.tv_value());
                } else {
                    extra_attributes.extend_from_slice(a.as_bytes());
                }
            }
            let unknown_attributes = !extra_attributes.is_empty();
            transforms.push(Transform {
                ty: TransformType(t.transform_type()),
                id: t.transform_id(),
                key_length,
                unknown_attributes,
                extra_attributes,
            });
        }
        if t_pos != t_bytes.len() {
            return Err(WireError::BadLength("proposal longer than its transforms"));
        }
        proposals.push(Proposal {
            number: p.number(),
            protocol: ProtocolId(p.protocol()),
            spi: p.spi().to_vec(),
            transforms,
        });
        match p.last_substruc() {
            0 => break,
            2 => continue,
            _ => return Err(WireError::InvalidSyntax("proposal 'last' field is neither 0 nor 2")),
        }
    }
    if pos != body.len() {
        return Err(WireError::InvalidSyntax("data after the last proposal"));
    }
    Ok(proposals)
}

fn parse_ts(body: &[u8]) -> Result<Vec<TrafficSelector>, WireError> {
    let b = FixedHeaderBody::new_checked(body, "TS header")?;
    let count = b.first_u8();
    let data = b.data();
    let mut pos = 0;
    let mut out = Vec::with_capacity(count as usize);
    let addr = |s: &[u8]| -> IpAddr {
        if let Ok(a) = <[u8; 4]>::try_from(s) {
            IpAddr::V4(Ipv4Addr::from(a))
        } else {
            let mut o = [0u8; 16];
            o.copy_from_slice(s);
            IpAddr::V6(Ipv6Addr::from(o))
        }
    };
    for _ in 0..count {
        let t = TrafficSelectorPacket::new_checked(&data[pos..])?;
        pos += t.selector_length();
        out.push(TrafficSelector {
            ts_type: TsType(t.ts_type()),
            ip_protocol: t.ip_protocol(),
            start_port: t.start_port(),
            end_port: t.end_port(),
            start_addr: addr(t.start_addr()),
            end_addr: addr(t.end_addr()),
        });
    }
    if pos != data.len() {
        return Err(WireError::BadLength("data after the last traffic selector"));
    }
    Ok(out)
}

/// Where emission writes. Every octet of the output is written explicitly (reserved fields as zeros), so the
/// result never depends on what the buffer held before.
pub(super) trait Sink {
    fn len(&self) -> usize;
    fn extend_from_slice(&mut self, b: &[u8]);
    fn push(&mut self, b: u8) {
        self.extend_from_slice(&[b]);
    }
    /// Overwrites two octets already written (a length field).
    fn patch_u16(&mut self, at: usize, v: u16);
}

impl Sink for Vec<u8> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn extend_from_slice(&mut self, b: &[u8]) {
        Vec::extend_from_slice(self, b)
    }
    fn patch_u16(&mut self, at: usize, v: u16) {
        self[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
}

/// Counts octets only: `buffer_len`.
#[derive(Default)]
pub(super) struct Counter(pub(super) usize);

impl Sink for Counter {
    fn len(&self) -> usize {
        self.0
    }
    fn extend_from_slice(&mut self, b: &[u8]) {
        self.0 += b.len();
    }
    fn patch_u16(&mut self, _: usize, _: u16) {}
}

/// Writes into a caller's buffer, which the caller sized with `buffer_len` (so no write can fall outside it).
pub(super) struct SliceSink<'a> {
    pub(super) buf: &'a mut [u8],
    pub(super) pos: usize,
}

impl Sink for SliceSink<'_> {
    fn len(&self) -> usize {
        self.pos
    }
    fn extend_from_slice(&mut self, b: &[u8]) {
        self.buf[self.pos..self.pos + b.len()].copy_from_slice(b);
        self.pos += b.len();
    }
    fn patch_u16(&mut self, at: usize, v: u16) {
        self.buf[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
}

/// Appends the chain to `out`; returns the first payload's type.
pub(super) fn emit_chain<S: Sink>(payloads: &[Payload], out: &mut S) -> PayloadType {
    for (i, p) in payloads.iter().enumerate() {
        let next = match p {
            Payload::Sk { next_inner, .. } | Payload::Skf { next_inner, .. } => *next_inner,
            _ => payloads.get(i + 1).map_or(PayloadType::NONE, |n| n.payload_type()),
        };
        let start = out.len();
        let critical = matches!(p, Payload::Unknown { critical: true, .. });
        out.extend_from_slice(&[next.0, if critical { 0x80 } else { 0 }, 0, 0]);
        emit_body(p, out);
        let len = (out.len() - start) as u16;
        out.patch_u16(start + 2, len);
    }
    payloads.first().map_or(PayloadType::NONE, |p| p.payload_type())
}

fn emit_body<S: Sink>(p: &Payload, out: &mut S) {
    match p {
        Payload::Sa(proposals) => {
            for (i, prop) in proposals.iter().enumerate() {
                let start = out.len();
                let last = if i + 1 == proposals.len() { 0 } else { 2 };
                out.extend_from_slice(&[last, 0, 0, 0, prop.number, prop.protocol.0, prop.spi.len() as u8]);
                out.push(prop.transforms.len() as u8);
                out.extend_from_slice(&prop.spi);
                for (j, t) in prop.transforms.iter().enumerate() {
                    let t_start = out.len();
                    let t_last = if j + 1 == prop.transforms.len() { 0 } else { 3 };
                    out.extend_from_slice(&[t_last, 0, 0, 0, t.ty.0, 0]);
                    out.extend_from_slice(&t.id.to_be_bytes());
                    if let Some(k) = t.key_length {
                        out.extend_from_slice(&(0x8000u16 | 14).to_be_bytes());
                        out.extend_from_slice(&k.to_be_bytes());
                    }
                    out.extend_from_slice(&t.extra_attributes);
                    let l = (out.len() - t_start) as u16;
                    out.patch_u16(t_start + 2, l);
                }
                let l = (out.len() - start) as u16;
                out.patch_u16(start + 2, l);
            }
        }
        Payload::Ke { group, data } => {
            out.extend_from_slice(&group.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(data);
        }
        Payload::IdI(id) | Payload::IdR(id) => {
            out.extend_from_slice(&[id.id_type.0, 0, 0, 0]);
            out.extend_from_slice(&id.data);
        }
        Payload::Cert { encoding, data } | Payload::CertReq { encoding, data } => {
            out.push(*encoding);
            out.extend_from_slice(data);
        }
        Payload::Auth { method, data } => {
            out.extend_from_slice(&[method.0, 0, 0, 0]);
            out.extend_from_slice(data);
        }
        Payload::Nonce(d) | Payload::VendorId(d) => out.extend_from_slice(d),
        Payload::Notify(n) => {
            out.extend_from_slice(&[n.protocol.0, n.spi.len() as u8]);
            out.extend_from_slice(&n.ty.0.to_be_bytes());
            out.extend_from_slice(&n.spi);
            out.extend_from_slice(&n.data);
        }
        Payload::Delete(d) => {
            out.extend_from_slice(&[d.protocol.0, d.spi_size]);
            out.extend_from_slice(&(d.spis.len() as u16).to_be_bytes());
            for s in &d.spis {
                out.extend_from_slice(s);
            }
        }
        Payload::TsI(ts) | Payload::TsR(ts) => {
            out.extend_from_slice(&[ts.len() as u8, 0, 0, 0]);
            for t in ts {
                let alen = if matches!(t.start_addr, IpAddr::V4(_)) { 4 } else { 16 };
                out.extend_from_slice(&[t.ts_type.0, t.ip_protocol]);
                out.extend_from_slice(&((8 + 2 * alen) as u16).to_be_bytes());
                out.extend_from_slice(&t.start_port.to_be_bytes());
                out.extend_from_slice(&t.end_port.to_be_bytes());
                for a in [t.start_addr, t.end_addr] {
                    match a {
                        IpAddr::V4(v) => out.extend_from_slice(&v.octets()),
                        IpAddr::V6(v) => out.extend_from_slice(&v.octets()),
                    }
                }
            }
        }
        Payload::Cp { cfg_type, data } => {
            out.extend_from_slice(&[*cfg_type, 0, 0, 0]);
            out.extend_from_slice(data);
        }
        Payload::Sk { body, .. } => out.extend_from_slice(body),
        Payload::Skf { number, total, body, .. } => {
            out.extend_from_slice(&number.to_be_bytes());
            out.extend_from_slice(&total.to_be_bytes());
            out.extend_from_slice(body);
        }
        Payload::Unknown { body, .. } => out.extend_from_slice(body),
    }
}
