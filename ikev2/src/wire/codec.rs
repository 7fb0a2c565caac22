//! The parser and emitter. Every read goes through [`Reader`], which checks the length before it slices, so
//! no input can index out of bounds.

use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A bounds-checked cursor over a byte slice.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }
    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.remaining() < n {
            return Err(WireError::Truncated(what));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn rest(&mut self) -> &'a [u8] {
        let s = &self.data[self.pos..];
        self.pos = self.data.len();
        s
    }
}

pub(super) fn parse_header(data: &[u8]) -> Result<Header, WireError> {
    if data.len() < HEADER_LEN {
        return Err(WireError::Truncated("IKE header"));
    }
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&data[i..i + 8]);
        u64::from_be_bytes(b)
    };
    let version = data[17];
    if version >> 4 != 2 {
        return Err(WireError::InvalidMajorVersion(version >> 4));
    }
    let length = u32::from_be_bytes([data[24], data[25], data[26], data[27]]);
    if (length as usize) < HEADER_LEN {
        return Err(WireError::BadLength("IKE header length below 28"));
    }
    Ok(Header {
        spi_i: u64_at(0),
        spi_r: u64_at(8),
        next_payload: PayloadType(data[16]),
        version,
        exchange: ExchangeType(data[18]),
        flags: data[19],
        message_id: u32::from_be_bytes([data[20], data[21], data[22], data[23]]),
        length,
    })
}

pub(super) fn emit_header(h: &Header, out: &mut [u8]) {
    out[0..8].copy_from_slice(&h.spi_i.to_be_bytes());
    out[8..16].copy_from_slice(&h.spi_r.to_be_bytes());
    out[16] = h.next_payload.0;
    out[17] = h.version;
    out[18] = h.exchange.0;
    out[19] = h.flags;
    out[20..24].copy_from_slice(&h.message_id.to_be_bytes());
    out[24..28].copy_from_slice(&h.length.to_be_bytes());
}

/// Walks a payload chain. `base` is the offset of `data` in the whole message (for `aad_len`).
pub(super) fn parse_chain(first: PayloadType, data: &[u8], base: usize) -> Result<Vec<Payload>, WireError> {
    let mut r = Reader::new(data);
    let mut next = first;
    let mut out = Vec::new();
    while next != PayloadType::NONE {
        let start = r.pos;
        let this = next;
        next = PayloadType(r.u8("generic payload header")?);
        let flags = r.u8("generic payload header")?;
        let len = r.u16("generic payload header")? as usize;
        if len < GENERIC_HEADER_LEN {
            return Err(WireError::BadLength("payload length below 4"));
        }
        let body = r.take(len - GENERIC_HEADER_LEN, "payload body")?;
        let critical = flags & 0x80 != 0;
        let payload = parse_body(this, next, critical, body, base + start)?;
        let encrypted = matches!(payload, Payload::Sk { .. } | Payload::Skf { .. });
        out.push(payload);
        if encrypted {
            // SK/SKF: "next payload" names the first inner payload; the chain ends here and nothing may follow.
            if r.remaining() != 0 {
                return Err(WireError::InvalidSyntax("data after the encrypted payload"));
            }
            return Ok(out);
        }
    }
    if r.remaining() != 0 {
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
    let mut r = Reader::new(body);
    let p = match ty {
        PayloadType::SA => Payload::Sa(parse_sa(body)?),
        PayloadType::KE => {
            let group = r.u16("KE group")?;
            r.take(2, "KE reserved")?;
            Payload::Ke { group, data: r.rest().to_vec() }
        }
        PayloadType::IDI | PayloadType::IDR => {
            let id_type = IdType(r.u8("ID type")?);
            r.take(3, "ID reserved")?;
            let id = Identification { id_type, data: r.rest().to_vec() };
            if ty == PayloadType::IDI { Payload::IdI(id) } else { Payload::IdR(id) }
        }
        PayloadType::CERT => Payload::Cert { encoding: r.u8("CERT encoding")?, data: r.rest().to_vec() },
        PayloadType::CERTREQ => Payload::CertReq { encoding: r.u8("CERTREQ encoding")?, data: r.rest().to_vec() },
        PayloadType::AUTH => {
            let method = AuthMethod(r.u8("AUTH method")?);
            r.take(3, "AUTH reserved")?;
            Payload::Auth { method, data: r.rest().to_vec() }
        }
        PayloadType::NONCE => Payload::Nonce(body.to_vec()),
        PayloadType::NOTIFY => {
            let protocol = ProtocolId(r.u8("Notify protocol")?);
            let spi_size = r.u8("Notify SPI size")? as usize;
            let ty = NotifyType(r.u16("Notify type")?);
            let spi = r.take(spi_size, "Notify SPI")?.to_vec();
            Payload::Notify(Notify { protocol, spi, ty, data: r.rest().to_vec() })
        }
        PayloadType::DELETE => {
            let protocol = ProtocolId(r.u8("Delete protocol")?);
            let spi_size = r.u8("Delete SPI size")?;
            let count = r.u16("Delete SPI count")? as usize;
            if spi_size == 0 && count != 0 {
                return Err(WireError::InvalidSyntax("Delete with SPI size 0 and SPIs"));
            }
            if count * spi_size as usize != r.remaining() {
                return Err(WireError::BadLength("Delete SPI count does not match the payload length"));
            }
            let mut spis = Vec::with_capacity(count);
            for _ in 0..count {
                spis.push(r.take(spi_size as usize, "Delete SPI")?.to_vec());
            }
            Payload::Delete(Delete { protocol, spi_size, spis })
        }
        PayloadType::VENDOR_ID => Payload::VendorId(body.to_vec()),
        PayloadType::TSI | PayloadType::TSR => {
            let ts = parse_ts(body)?;
            if ty == PayloadType::TSI { Payload::TsI(ts) } else { Payload::TsR(ts) }
        }
        PayloadType::CP => {
            let cfg_type = r.u8("CP type")?;
            r.take(3, "CP reserved")?;
            Payload::Cp { cfg_type, data: r.rest().to_vec() }
        }
        PayloadType::SK => Payload::Sk { next_inner: next, body: body.to_vec(), aad_len: offset + GENERIC_HEADER_LEN },
        PayloadType::SKF => {
            let number = r.u16("SKF fragment number")?;
            let total = r.u16("SKF total fragments")?;
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
                body: r.rest().to_vec(),
                aad_len: offset + GENERIC_HEADER_LEN + 4,
            }
        }
        _ if critical => return Err(WireError::UnsupportedCriticalPayload(ty.0)),
        _ => Payload::Unknown { ty, critical, body: body.to_vec() },
    };
    Ok(p)
}

fn parse_sa(body: &[u8]) -> Result<Vec<Proposal>, WireError> {
    let mut r = Reader::new(body);
    let mut proposals = Vec::new();
    loop {
        let last = r.u8("proposal header")?;
        r.take(1, "proposal reserved")?;
        let len = r.u16("proposal length")? as usize;
        if len < 8 {
            return Err(WireError::BadLength("proposal length below 8"));
        }
        let mut p = Reader::new(r.take(len - 4, "proposal")?);
        let number = p.u8("proposal number")?;
        let protocol = ProtocolId(p.u8("protocol ID")?);
        let spi_size = p.u8("SPI size")? as usize;
        let count = p.u8("number of transforms")?;
        let spi = p.take(spi_size, "proposal SPI")?.to_vec();
        let mut transforms = Vec::with_capacity(count as usize);
        for i in 0..count {
            let t_last = p.u8("transform header")?;
            if (t_last == 0) != (i + 1 == count) || (t_last != 0 && t_last != 3) {
                return Err(WireError::InvalidSyntax("transform 'last' flag inconsistent with the count"));
            }
            p.take(1, "transform reserved")?;
            let t_len = p.u16("transform length")? as usize;
            if t_len < 8 {
                return Err(WireError::BadLength("transform length below 8"));
            }
            let mut t = Reader::new(p.take(t_len - 4, "transform")?);
            let ty = TransformType(t.u8("transform type")?);
            t.take(1, "transform reserved")?;
            let id = t.u16("transform ID")?;
            let mut key_length = None;
            let mut extra_attributes = Vec::new();
            while t.remaining() > 0 {
                let start = t.pos;
                let at = t.u16("attribute type")?;
                if at & 0x8000 != 0 {
                    let v = t.u16("attribute value")?;
                    if at & 0x7fff == 14 && key_length.is_none() {
                        key_length = Some(v);
                        continue;
                    }
                } else {
                    let l = t.u16("attribute length")? as usize;
                    t.take(l, "attribute value")?;
                }
                extra_attributes.extend_from_slice(&t.data[start..t.pos]);
            }
            let unknown_attributes = !extra_attributes.is_empty();
            transforms.push(Transform { ty, id, key_length, unknown_attributes, extra_attributes });
        }
        if p.remaining() != 0 {
            return Err(WireError::BadLength("proposal longer than its transforms"));
        }
        proposals.push(Proposal { number, protocol, spi, transforms });
        match last {
            0 => break,
            2 => continue,
            _ => return Err(WireError::InvalidSyntax("proposal 'last' field is neither 0 nor 2")),
        }
    }
    if r.remaining() != 0 {
        return Err(WireError::InvalidSyntax("data after the last proposal"));
    }
    Ok(proposals)
}

fn parse_ts(body: &[u8]) -> Result<Vec<TrafficSelector>, WireError> {
    let mut r = Reader::new(body);
    let count = r.u8("number of TSs")?;
    r.take(3, "TS reserved")?;
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let ts_type = TsType(r.u8("TS type")?);
        let ip_protocol = r.u8("TS IP protocol")?;
        let len = r.u16("TS length")? as usize;
        let alen = match ts_type {
            TsType::TS_IPV4_ADDR_RANGE => 4,
            TsType::TS_IPV6_ADDR_RANGE => 16,
            _ => return Err(WireError::InvalidSyntax("unsupported traffic selector type")),
        };
        if len != 8 + 2 * alen {
            return Err(WireError::BadLength("traffic selector length"));
        }
        let start_port = r.u16("TS start port")?;
        let end_port = r.u16("TS end port")?;
        let a = r.take(alen, "TS start address")?;
        let b = r.take(alen, "TS end address")?;
        let addr = |s: &[u8]| -> IpAddr {
            if alen == 4 {
                IpAddr::V4(Ipv4Addr::new(s[0], s[1], s[2], s[3]))
            } else {
                let mut o = [0u8; 16];
                o.copy_from_slice(s);
                IpAddr::V6(Ipv6Addr::from(o))
            }
        };
        out.push(TrafficSelector {
            ts_type,
            ip_protocol,
            start_port,
            end_port,
            start_addr: addr(a),
            end_addr: addr(b),
        });
    }
    if r.remaining() != 0 {
        return Err(WireError::BadLength("data after the last traffic selector"));
    }
    Ok(out)
}

/// Appends the chain to `out`; returns the first payload's type.
pub(super) fn emit_chain(payloads: &[Payload], out: &mut Vec<u8>) -> PayloadType {
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
        out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
    }
    payloads.first().map_or(PayloadType::NONE, |p| p.payload_type())
}

fn emit_body(p: &Payload, out: &mut Vec<u8>) {
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
                    out[t_start + 2..t_start + 4].copy_from_slice(&l.to_be_bytes());
                }
                let l = (out.len() - start) as u16;
                out[start + 2..start + 4].copy_from_slice(&l.to_be_bytes());
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
