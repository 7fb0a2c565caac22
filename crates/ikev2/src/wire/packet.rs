//! Zero-copy views over IKEv2 wire structures, smoltcp style: `new_checked` validates every length once, after
//! which no accessor can index out of bounds. Field offsets are named ranges from the RFC figures. The owned
//! `Repr` types in [`super`] are parsed from these views.

use super::WireError;
use core::ops::Range;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], r: Range<usize>) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[r]);
    u32::from_be_bytes(a)
}

fn u64_at(b: &[u8], r: Range<usize>) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[r]);
    u64::from_be_bytes(a)
}

/// The IKE header (RFC 7296 §3.1).
#[derive(Debug, Clone, Copy)]
pub struct HeaderPacket<T: AsRef<[u8]>> {
    buffer: T,
}

mod header {
    use core::ops::Range;
    pub const SPI_I: Range<usize> = 0..8;
    pub const SPI_R: Range<usize> = 8..16;
    pub const NEXT_PAYLOAD: usize = 16;
    pub const VERSION: usize = 17;
    pub const EXCHANGE: usize = 18;
    pub const FLAGS: usize = 19;
    pub const MESSAGE_ID: Range<usize> = 20..24;
    pub const LENGTH: Range<usize> = 24..28;
    pub const PAYLOADS: usize = 28;
}

impl<T: AsRef<[u8]>> HeaderPacket<T> {
    /// A view without checks: accessors panic if the buffer is shorter than 28 octets.
    pub fn new_unchecked(buffer: T) -> Self {
        HeaderPacket { buffer }
    }
    /// Checks only that the 28 header octets are present (the length field is the caller's to judge).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < header::PAYLOADS {
            return Err(WireError::Truncated("IKE header"));
        }
        Ok(HeaderPacket { buffer })
    }
    pub fn into_inner(self) -> T {
        self.buffer
    }
    pub fn spi_i(&self) -> u64 {
        u64_at(self.buffer.as_ref(), header::SPI_I)
    }
    pub fn spi_r(&self) -> u64 {
        u64_at(self.buffer.as_ref(), header::SPI_R)
    }
    pub fn next_payload(&self) -> u8 {
        self.buffer.as_ref()[header::NEXT_PAYLOAD]
    }
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[header::VERSION]
    }
    pub fn exchange(&self) -> u8 {
        self.buffer.as_ref()[header::EXCHANGE]
    }
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[header::FLAGS]
    }
    pub fn message_id(&self) -> u32 {
        u32_at(self.buffer.as_ref(), header::MESSAGE_ID)
    }
    pub fn length(&self) -> u32 {
        u32_at(self.buffer.as_ref(), header::LENGTH)
    }
    /// Everything after the header, up to the end of the buffer.
    pub fn payloads(&self) -> &[u8] {
        &self.buffer.as_ref()[header::PAYLOADS..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> HeaderPacket<T> {
    pub fn set_spi_i(&mut self, v: u64) {
        self.buffer.as_mut()[header::SPI_I].copy_from_slice(&v.to_be_bytes());
    }
    pub fn set_spi_r(&mut self, v: u64) {
        self.buffer.as_mut()[header::SPI_R].copy_from_slice(&v.to_be_bytes());
    }
    pub fn set_next_payload(&mut self, v: u8) {
        self.buffer.as_mut()[header::NEXT_PAYLOAD] = v;
    }
    pub fn set_version(&mut self, v: u8) {
        self.buffer.as_mut()[header::VERSION] = v;
    }
    pub fn set_exchange(&mut self, v: u8) {
        self.buffer.as_mut()[header::EXCHANGE] = v;
    }
    pub fn set_flags(&mut self, v: u8) {
        self.buffer.as_mut()[header::FLAGS] = v;
    }
    pub fn set_message_id(&mut self, v: u32) {
        self.buffer.as_mut()[header::MESSAGE_ID].copy_from_slice(&v.to_be_bytes());
    }
    pub fn set_length(&mut self, v: u32) {
        self.buffer.as_mut()[header::LENGTH].copy_from_slice(&v.to_be_bytes());
    }
}

/// A generic payload header and its body (RFC 7296 §3.2).
#[derive(Debug, Clone, Copy)]
pub struct GenericPayload<T: AsRef<[u8]>> {
    buffer: T,
}

mod generic {
    pub const NEXT_PAYLOAD: usize = 0;
    pub const FLAGS: usize = 1;
    pub const LENGTH: usize = 2;
    pub const BODY: usize = 4;
    pub const CRITICAL: u8 = 0x80;
}

impl<T: AsRef<[u8]>> GenericPayload<T> {
    /// The buffer starts with a payload; its length field must be at least 4 and fit in the buffer (which may
    /// hold further payloads).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < generic::BODY {
            return Err(WireError::Truncated("generic payload header"));
        }
        let len = u16_at(b, generic::LENGTH) as usize;
        if len < generic::BODY {
            return Err(WireError::BadLength("payload length below 4"));
        }
        if len > b.len() {
            return Err(WireError::Truncated("payload body"));
        }
        Ok(GenericPayload { buffer })
    }
    pub fn next_payload(&self) -> u8 {
        self.buffer.as_ref()[generic::NEXT_PAYLOAD]
    }
    pub fn critical(&self) -> bool {
        self.buffer.as_ref()[generic::FLAGS] & generic::CRITICAL != 0
    }
    pub fn payload_length(&self) -> usize {
        u16_at(self.buffer.as_ref(), generic::LENGTH) as usize
    }
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[generic::BODY..self.payload_length()]
    }
}

/// A proposal substructure (RFC 7296 §3.3.1).
#[derive(Debug, Clone, Copy)]
pub struct ProposalPacket<T: AsRef<[u8]>> {
    buffer: T,
}

mod proposal {
    pub const LAST: usize = 0;
    pub const LENGTH: usize = 2;
    pub const NUMBER: usize = 4;
    pub const PROTOCOL: usize = 5;
    pub const SPI_SIZE: usize = 6;
    pub const NUM_TRANSFORMS: usize = 7;
    pub const SPI: usize = 8;
}

impl<T: AsRef<[u8]>> ProposalPacket<T> {
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < proposal::SPI {
            return Err(WireError::Truncated("proposal header"));
        }
        let len = u16_at(b, proposal::LENGTH) as usize;
        if len < proposal::SPI {
            return Err(WireError::BadLength("proposal length below 8"));
        }
        if len > b.len() {
            return Err(WireError::Truncated("proposal"));
        }
        if proposal::SPI + b[proposal::SPI_SIZE] as usize > len {
            return Err(WireError::Truncated("proposal SPI"));
        }
        Ok(ProposalPacket { buffer })
    }
    /// 0 for the last proposal, 2 otherwise.
    pub fn last_substruc(&self) -> u8 {
        self.buffer.as_ref()[proposal::LAST]
    }
    pub fn proposal_length(&self) -> usize {
        u16_at(self.buffer.as_ref(), proposal::LENGTH) as usize
    }
    pub fn number(&self) -> u8 {
        self.buffer.as_ref()[proposal::NUMBER]
    }
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[proposal::PROTOCOL]
    }
    pub fn spi_size(&self) -> usize {
        self.buffer.as_ref()[proposal::SPI_SIZE] as usize
    }
    pub fn num_transforms(&self) -> u8 {
        self.buffer.as_ref()[proposal::NUM_TRANSFORMS]
    }
    pub fn spi(&self) -> &[u8] {
        &self.buffer.as_ref()[proposal::SPI..proposal::SPI + self.spi_size()]
    }
    /// The transform substructures.
    pub fn transforms(&self) -> &[u8] {
        &self.buffer.as_ref()[proposal::SPI + self.spi_size()..self.proposal_length()]
    }
}

/// A transform substructure (RFC 7296 §3.3.2).
#[derive(Debug, Clone, Copy)]
pub struct TransformPacket<T: AsRef<[u8]>> {
    buffer: T,
}

mod transform {
    pub const LAST: usize = 0;
    pub const LENGTH: usize = 2;
    pub const TYPE: usize = 4;
    pub const ID: usize = 6;
    pub const ATTRIBUTES: usize = 8;
}

impl<T: AsRef<[u8]>> TransformPacket<T> {
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < transform::ATTRIBUTES {
            return Err(WireError::Truncated("transform header"));
        }
        let len = u16_at(b, transform::LENGTH) as usize;
        if len < transform::ATTRIBUTES {
            return Err(WireError::BadLength("transform length below 8"));
        }
        if len > b.len() {
            return Err(WireError::Truncated("transform"));
        }
        Ok(TransformPacket { buffer })
    }
    /// 0 for the last transform, 3 otherwise.
    pub fn last_substruc(&self) -> u8 {
        self.buffer.as_ref()[transform::LAST]
    }
    pub fn transform_length(&self) -> usize {
        u16_at(self.buffer.as_ref(), transform::LENGTH) as usize
    }
    pub fn transform_type(&self) -> u8 {
        self.buffer.as_ref()[transform::TYPE]
    }
    pub fn transform_id(&self) -> u16 {
        u16_at(self.buffer.as_ref(), transform::ID)
    }
    pub fn attributes(&self) -> &[u8] {
        &self.buffer.as_ref()[transform::ATTRIBUTES..self.transform_length()]
    }
}

/// A transform attribute (RFC 7296 §3.3.5): TV (AF bit set, 2-octet value) or TLV.
#[derive(Debug, Clone, Copy)]
pub struct AttributePacket<T: AsRef<[u8]>> {
    buffer: T,
}

mod attribute {
    pub const TYPE: usize = 0;
    pub const VALUE_OR_LENGTH: usize = 2;
    pub const TLV_VALUE: usize = 4;
    pub const AF: u16 = 0x8000;
}

impl<T: AsRef<[u8]>> AttributePacket<T> {
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < attribute::TLV_VALUE {
            return Err(WireError::Truncated("transform attribute"));
        }
        let a = AttributePacket { buffer };
        if a.total_len() > a.buffer.as_ref().len() {
            return Err(WireError::Truncated("attribute value"));
        }
        Ok(a)
    }
    /// True for the TV format (a 2-octet value in the header).
    pub fn is_tv(&self) -> bool {
        u16_at(self.buffer.as_ref(), attribute::TYPE) & attribute::AF != 0
    }
    /// The attribute type without the AF bit (14 = Key Length).
    pub fn attribute_type(&self) -> u16 {
        u16_at(self.buffer.as_ref(), attribute::TYPE) & !attribute::AF
    }
    /// The value of a TV attribute.
    pub fn tv_value(&self) -> u16 {
        u16_at(self.buffer.as_ref(), attribute::VALUE_OR_LENGTH)
    }
    /// Octets this attribute occupies.
    pub fn total_len(&self) -> usize {
        if self.is_tv() {
            attribute::TLV_VALUE
        } else {
            attribute::TLV_VALUE + u16_at(self.buffer.as_ref(), attribute::VALUE_OR_LENGTH) as usize
        }
    }
    /// The whole attribute, header included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.total_len()]
    }
}

/// A traffic selector (RFC 7296 §3.13.1) of type TS_IPV4_ADDR_RANGE (16 octets) or TS_IPV6_ADDR_RANGE (40).
#[derive(Debug, Clone, Copy)]
pub struct TrafficSelectorPacket<T: AsRef<[u8]>> {
    buffer: T,
}

mod ts {
    pub const TYPE: usize = 0;
    pub const IP_PROTOCOL: usize = 1;
    pub const LENGTH: usize = 2;
    pub const START_PORT: usize = 4;
    pub const END_PORT: usize = 6;
    pub const START_ADDR: usize = 8;
}

impl<T: AsRef<[u8]>> TrafficSelectorPacket<T> {
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < ts::START_ADDR {
            return Err(WireError::Truncated("traffic selector"));
        }
        let alen = match b[ts::TYPE] {
            7 => 4,
            8 => 16,
            _ => return Err(WireError::InvalidSyntax("unsupported traffic selector type")),
        };
        let len = u16_at(b, ts::LENGTH) as usize;
        if len != ts::START_ADDR + 2 * alen {
            return Err(WireError::BadLength("traffic selector length"));
        }
        if len > b.len() {
            return Err(WireError::Truncated("traffic selector addresses"));
        }
        Ok(TrafficSelectorPacket { buffer })
    }
    pub fn ts_type(&self) -> u8 {
        self.buffer.as_ref()[ts::TYPE]
    }
    pub fn ip_protocol(&self) -> u8 {
        self.buffer.as_ref()[ts::IP_PROTOCOL]
    }
    pub fn selector_length(&self) -> usize {
        u16_at(self.buffer.as_ref(), ts::LENGTH) as usize
    }
    pub fn start_port(&self) -> u16 {
        u16_at(self.buffer.as_ref(), ts::START_PORT)
    }
    pub fn end_port(&self) -> u16 {
        u16_at(self.buffer.as_ref(), ts::END_PORT)
    }
    fn addr_len(&self) -> usize {
        (self.selector_length() - ts::START_ADDR) / 2
    }
    /// 4 or 16 octets.
    pub fn start_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[ts::START_ADDR..ts::START_ADDR + self.addr_len()]
    }
    pub fn end_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[ts::START_ADDR + self.addr_len()..self.selector_length()]
    }
}

/// A Notify payload body (RFC 7296 §3.10).
#[derive(Debug, Clone, Copy)]
pub struct NotifyPacket<T: AsRef<[u8]>> {
    buffer: T,
}

mod notify {
    pub const PROTOCOL: usize = 0;
    pub const SPI_SIZE: usize = 1;
    pub const TYPE: usize = 2;
    pub const SPI: usize = 4;
}

impl<T: AsRef<[u8]>> NotifyPacket<T> {
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < notify::SPI {
            return Err(WireError::Truncated("Notify header"));
        }
        if notify::SPI + b[notify::SPI_SIZE] as usize > b.len() {
            return Err(WireError::Truncated("Notify SPI"));
        }
        Ok(NotifyPacket { buffer })
    }
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[notify::PROTOCOL]
    }
    pub fn spi_size(&self) -> usize {
        self.buffer.as_ref()[notify::SPI_SIZE] as usize
    }
    pub fn notify_type(&self) -> u16 {
        u16_at(self.buffer.as_ref(), notify::TYPE)
    }
    pub fn spi(&self) -> &[u8] {
        &self.buffer.as_ref()[notify::SPI..notify::SPI + self.spi_size()]
    }
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[notify::SPI + self.spi_size()..]
    }
}

/// A Delete payload body (RFC 7296 §3.11).
#[derive(Debug, Clone, Copy)]
pub struct DeletePacket<T: AsRef<[u8]>> {
    buffer: T,
}

mod delete {
    pub const PROTOCOL: usize = 0;
    pub const SPI_SIZE: usize = 1;
    pub const NUM_SPIS: usize = 2;
    pub const SPIS: usize = 4;
}

impl<T: AsRef<[u8]>> DeletePacket<T> {
    /// The SPIs must fill the body exactly; SPI size 0 (IKE SA) admits no SPIs.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < delete::SPIS {
            return Err(WireError::Truncated("Delete header"));
        }
        let (size, count) = (b[delete::SPI_SIZE] as usize, u16_at(b, delete::NUM_SPIS) as usize);
        if size == 0 && count != 0 {
            return Err(WireError::InvalidSyntax("Delete with SPI size 0 and SPIs"));
        }
        if delete::SPIS + size * count != b.len() {
            return Err(WireError::BadLength("Delete SPI count does not match the payload length"));
        }
        Ok(DeletePacket { buffer })
    }
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[delete::PROTOCOL]
    }
    pub fn spi_size(&self) -> u8 {
        self.buffer.as_ref()[delete::SPI_SIZE]
    }
    pub fn num_spis(&self) -> usize {
        u16_at(self.buffer.as_ref(), delete::NUM_SPIS) as usize
    }
    /// The SPIs, each `spi_size` octets (none when the size is 0).
    pub fn spis(&self) -> impl Iterator<Item = &[u8]> {
        let size = self.spi_size() as usize;
        let b = &self.buffer.as_ref()[delete::SPIS..];
        (0..self.num_spis()).map(move |i| &b[i * size..(i + 1) * size])
    }
}

/// Fixed 4-octet headers followed by data: KE (group, reserved), ID/AUTH/CP (type, 3 reserved), and the
/// Encrypted Fragment payload (RFC 7383 §2.5: fragment number, total fragments).
#[derive(Debug, Clone, Copy)]
pub struct FixedHeaderBody<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> FixedHeaderBody<T> {
    pub const DATA: usize = 4;
    pub fn new_checked(buffer: T, what: &'static str) -> Result<Self, WireError> {
        if buffer.as_ref().len() < Self::DATA {
            return Err(WireError::Truncated(what));
        }
        Ok(FixedHeaderBody { buffer })
    }
    pub fn first_u8(&self) -> u8 {
        self.buffer.as_ref()[0]
    }
    pub fn first_u16(&self) -> u16 {
        u16_at(self.buffer.as_ref(), 0)
    }
    pub fn second_u16(&self) -> u16 {
        u16_at(self.buffer.as_ref(), 2)
    }
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[Self::DATA..]
    }
}
