//! iotrelay-esp: ESP tunnel mode (RFC 4303) carried in UDP on port 4500 (RFC 3948), sans-IO.
//!
//! - [`classify`] demultiplexes what arrives on UDP 4500: NAT-T keepalive, IKE (behind the non-ESP marker), ESP.
//! - [`OutboundSa::seal`] / [`InboundSa::open`] protect inner IPv4 packets in caller-provided buffers (no heap
//!   allocation per packet); the anti-replay window is checked before the ICV and updated after it.
//! - [`ipv4`] builds and parses the inner IPv4/UDP packets of the relay, with checksums; [`ipv4::Fragmenter`]
//!   fragments inner packets to [`tunnel_mtu`] BEFORE encryption; [`ipv4::Reassembler`] reassembles inbound
//!   fragments with bounded memory and time.
//! - Errors ([`EspError`]) map one-to-one to the `datapath.drops` counters of the status API.
//!
//! See `crates/esp/README.md` for how the sidecar wires this to its UDP 4500 socket.
//!
//! ```
//! use iotrelay_crypto::{Encr, SaCipher, SeededRandom};
//! use iotrelay_esp::{InboundSa, OutboundSa};
//! let key = [7u8; 20];
//! let mut out = OutboundSa::new(0x1000, SaCipher::new(Encr::AesGcm16_128, None, &key, &[]).unwrap());
//! let mut inn = InboundSa::new(0x1000, SaCipher::new(Encr::AesGcm16_128, None, &key, &[]).unwrap(), 1024);
//! let inner = iotrelay_esp::ipv4::build_udp_vec([100, 127, 0, 1].into(), 7000, [100, 64, 1, 10].into(), 7000, b"hi");
//! let mut buf = [0u8; 2048];
//! let n = out.seal(&inner, &mut SeededRandom::new(1), &mut buf).unwrap();
//! let plain = inn.open(&mut buf[..n]).unwrap();
//! assert_eq!(plain, &inner[..]);
//! ```

pub mod ipv4;
mod replay;

pub use replay::ReplayWindow;

/// Default anti-replay window (packets), as AWS; AWS accepts 64..=2048.
pub const DEFAULT_REPLAY_WINDOW: u32 = 1024;

use iotrelay_crypto::{Encr, Integ, RandomSource, SaCipher};

/// ESP header: SPI (4) + sequence number (4).
pub const ESP_HEADER_LEN: usize = 8;
/// Next header value for an IPv4 inner packet (tunnel mode).
pub const NEXT_HEADER_IPV4: u8 = 4;
/// AWS: inner packets of at most 1446 octets.
pub const AWS_MAX_INNER_MTU: usize = 1446;

/// What a datagram on UDP 4500 is (RFC 3948 §2).
#[derive(Debug, PartialEq, Eq)]
pub enum Demux<'a> {
    /// A NAT-T keepalive (one 0xFF octet): never taken as a sign of life.
    Keepalive,
    /// IKE: the message after the 4-octet non-ESP marker.
    Ike(&'a [u8]),
    /// ESP with this SPI.
    Esp { spi: u32 },
    /// Too short to be anything.
    Malformed,
}

pub fn classify(datagram: &[u8]) -> Demux<'_> {
    match datagram {
        [0xff] => Demux::Keepalive,
        [0, 0, 0, 0, rest @ ..] => Demux::Ike(rest),
        d if d.len() >= ESP_HEADER_LEN => Demux::Esp { spi: u32::from_be_bytes([d[0], d[1], d[2], d[3]]) },
        _ => Demux::Malformed,
    }
}

/// Why a packet was not sealed or opened. The variants map to the status drop counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EspError {
    /// `datapath.drops.malformed`
    #[error("malformed ESP packet")]
    Malformed,
    /// `datapath.drops.replay`
    #[error("replayed or too old sequence number")]
    Replay,
    /// `datapath.drops.integrity`
    #[error("integrity check failed")]
    Integrity,
    /// `datapath.drops.unknownSpi`
    #[error("unknown SPI")]
    UnknownSpi,
    /// The output buffer cannot hold the packet.
    #[error("buffer too small")]
    BufferTooSmall,
    /// The 32-bit sequence number would wrap: the SA must be rekeyed (RFC 4303 §3.3.3).
    #[error("sequence number exhausted")]
    SequenceExhausted,
}

/// Octets ESP adds around an inner packet of `inner_len`: header, IV, padding, pad length, next header, ICV.
pub fn overhead(cipher: &SaCipher, inner_len: usize) -> usize {
    let align = cipher.block_size().max(4);
    let padded = (inner_len + 2).div_ceil(align) * align;
    ESP_HEADER_LEN + cipher.iv_len() + padded + cipher.icv_len() - inner_len
}

/// The largest inner packet that fits in an ESP-in-UDP datagram within `outer_mtu` (IPv4 20 + UDP 8), capped at
/// AWS's 1446.
pub fn tunnel_mtu(encr: Encr, integ: Option<Integ>, outer_mtu: usize) -> usize {
    let icv = integ.map_or(encr.icv_len(), |i| i.icv_len());
    let align = encr.block_size().max(4);
    let avail = outer_mtu.saturating_sub(20 + 8 + ESP_HEADER_LEN + encr.iv_len() + icv);
    // Largest n with (n + 2) rounded up to `align` <= avail.
    let n = (avail / align * align).saturating_sub(2);
    n.min(AWS_MAX_INNER_MTU)
}

/// The sending half of a CHILD_SA.
pub struct OutboundSa {
    spi: u32,
    seq: u64,
    cipher: SaCipher,
    packets: u64,
    bytes: u64,
}

impl OutboundSa {
    pub fn new(spi: u32, cipher: SaCipher) -> Self {
        OutboundSa { spi, seq: 0, cipher, packets: 0, bytes: 0 }
    }
    pub fn spi(&self) -> u32 {
        self.spi
    }
    /// (packets, inner bytes) sent.
    pub fn counters(&self) -> (u64, u64) {
        (self.packets, self.bytes)
    }
    /// The last sequence number sent (0 before the first packet); at `u32::MAX` [`OutboundSa::seal`] refuses
    /// to continue. Rekey before that (e.g. when it passes `0xF000_0000`).
    pub fn sequence(&self) -> u64 {
        self.seq
    }

    /// Writes the ESP packet for `inner` (an IPv4 packet, at most the tunnel MTU: fragment first) into `out`;
    /// returns its length (`inner.len() + overhead(..)`). Layout: SPI | seq | IV | inner | padding 1, 2, 3, ... |
    /// pad length | next header 4 | ICV, padded so that the encrypted part is a multiple of the cipher block and
    /// of 4 octets (RFC 4303 §2.4).
    ///
    /// Sequence numbers: a 64-bit counter, 32 bits on the wire (no ESN). After 2^32 - 1 packets this returns
    /// [`EspError::SequenceExhausted`] instead of wrapping: rekey well before (the IKE engine does, by lifetime).
    ///
    /// IVs: GCM uses the 64-bit sequence counter (RFC 4106 §3.1 only requires uniqueness per key, and the
    /// counter never repeats because it never wraps). CBC needs an unpredictable IV (RFC 3602 §3), so it comes
    /// from `rng` (16 octets per packet). We chose fresh randomness over an AES-encrypted counter for
    /// simplicity and because it is the textbook construction; the sidecar should pass a fast userspace CSPRNG
    /// seeded from the OS (e.g. ChaCha20) rather than a syscall per packet. `rng` is unused for GCM.
    pub fn seal(&mut self, inner: &[u8], rng: &mut dyn RandomSource, out: &mut [u8]) -> Result<usize, EspError> {
        let head = self.headroom();
        if out.len() < head + inner.len() {
            return Err(EspError::BufferTooSmall);
        }
        out[head..head + inner.len()].copy_from_slice(inner);
        self.seal_in_place(out, inner.len(), rng)
    }

    /// Octets [`OutboundSa::seal_in_place`] needs in front of the inner packet: ESP header and IV.
    pub fn headroom(&self) -> usize {
        ESP_HEADER_LEN + self.cipher.iv_len()
    }

    /// As [`OutboundSa::seal`] for an inner packet the caller already wrote at `buf[self.headroom()..]`
    /// (`inner_len` octets): header, IV, padding and ICV are written around it and the packet is encrypted where
    /// it lies, so the hot path builds each packet once and copies nothing. Returns the ESP packet's length; it
    /// starts at `buf[0]`. `buf` must also hold the trailer ([`overhead`] minus the headroom).
    pub fn seal_in_place(
        &mut self,
        buf: &mut [u8],
        inner_len: usize,
        rng: &mut dyn RandomSource,
    ) -> Result<usize, EspError> {
        let total = inner_len + overhead(&self.cipher, inner_len);
        if buf.len() < total {
            return Err(EspError::BufferTooSmall);
        }
        if self.seq >= u64::from(u32::MAX) {
            return Err(EspError::SequenceExhausted);
        }
        self.seq += 1;
        let seq = self.seq as u32;
        let (iv_len, icv_len) = (self.cipher.iv_len(), self.cipher.icv_len());
        let out = &mut buf[..total];
        out[..4].copy_from_slice(&self.spi.to_be_bytes());
        out[4..8].copy_from_slice(&seq.to_be_bytes());
        let iv_end = ESP_HEADER_LEN + iv_len;
        if self.cipher.encr().is_aead() {
            out[ESP_HEADER_LEN..iv_end].copy_from_slice(&self.seq.to_be_bytes());
        } else {
            rng.fill_bytes(&mut out[ESP_HEADER_LEN..iv_end]);
        }
        let ct_end = total - icv_len;
        let payload = &mut out[iv_end..ct_end];
        let pad = payload.len() - inner_len - 2;
        for (i, b) in payload[inner_len..inner_len + pad].iter_mut().enumerate() {
            *b = (i + 1) as u8;
        }
        let n = payload.len();
        payload[n - 2] = pad as u8;
        payload[n - 1] = NEXT_HEADER_IPV4;
        let (head, rest) = out.split_at_mut(iv_end);
        let (ct, icv) = rest.split_at_mut(ct_end - iv_end);
        let (aad, iv) = head.split_at(ESP_HEADER_LEN);
        self.cipher.seal_in_place(aad, iv, ct, icv).map_err(|_| EspError::Malformed)?;
        self.packets += 1;
        self.bytes += inner_len as u64;
        Ok(total)
    }
}

/// The receiving half of a CHILD_SA.
pub struct InboundSa {
    spi: u32,
    cipher: SaCipher,
    replay: ReplayWindow,
    packets: u64,
    bytes: u64,
}

impl InboundSa {
    /// `replay_window`: packets (AWS: 64..2048, default 1024).
    pub fn new(spi: u32, cipher: SaCipher, replay_window: u32) -> Self {
        InboundSa { spi, cipher, replay: ReplayWindow::new(replay_window), packets: 0, bytes: 0 }
    }
    pub fn spi(&self) -> u32 {
        self.spi
    }
    /// (packets, inner bytes) received.
    pub fn counters(&self) -> (u64, u64) {
        (self.packets, self.bytes)
    }

    /// Verifies and decrypts `packet` (SPI | seq | IV | ciphertext | ICV, i.e. the UDP 4500 payload) in place and
    /// returns the inner IPv4 packet, a sub-slice of `packet`. A next header other than 4 (IPv4), e.g. 59 for a
    /// dummy packet, is [`EspError::Malformed`]; use [`InboundSa::open_packet`] to see it.
    pub fn open<'a>(&mut self, packet: &'a mut [u8]) -> Result<&'a [u8], EspError> {
        let opened = self.open_packet(packet)?;
        if opened.next_header != NEXT_HEADER_IPV4 {
            return Err(EspError::Malformed);
        }
        Ok(opened.inner)
    }

    /// As [`InboundSa::open`], returning the next header too. Order (RFC 4303 §3.4): length and SPI checks, the
    /// replay window check (cheap, before the ICV), ICV verification + decryption in place, only then the window
    /// update, then the padding check (1, 2, 3, ...; §2.4). Errors map to drop counters, see [`EspError`].
    pub fn open_packet<'a>(&mut self, packet: &'a mut [u8]) -> Result<Opened<'a>, EspError> {
        let (iv_len, icv_len) = (self.cipher.iv_len(), self.cipher.icv_len());
        let min = ESP_HEADER_LEN + iv_len + 2 + icv_len;
        if packet.len() < min {
            return Err(EspError::Malformed);
        }
        if u32::from_be_bytes([packet[0], packet[1], packet[2], packet[3]]) != self.spi {
            return Err(EspError::UnknownSpi);
        }
        let seq = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        // Replay check before the (expensive) ICV; the window moves only after the ICV is verified.
        if !self.replay.check(seq) {
            return Err(EspError::Replay);
        }
        let len = packet.len();
        let iv_end = ESP_HEADER_LEN + iv_len;
        let (head, rest) = packet.split_at_mut(iv_end);
        let (ct, icv) = rest.split_at_mut(len - icv_len - iv_end);
        let (aad, iv) = head.split_at(ESP_HEADER_LEN);
        self.cipher.open_in_place(aad, iv, ct, icv).map_err(|e| match e {
            iotrelay_crypto::CryptoError::IntegrityCheckFailed => EspError::Integrity,
            _ => EspError::Malformed,
        })?;
        self.replay.update(seq);
        let n = ct.len();
        let (pad, next_header) = (ct[n - 2] as usize, ct[n - 1]);
        if pad + 2 > n {
            return Err(EspError::Malformed);
        }
        // RFC 4303 §2.4: padding is 1, 2, 3, ...
        if ct[n - 2 - pad..n - 2].iter().enumerate().any(|(i, b)| *b != (i + 1) as u8) {
            return Err(EspError::Malformed);
        }
        let inner_len = n - 2 - pad;
        self.packets += 1;
        self.bytes += inner_len as u64;
        Ok(Opened { next_header, inner: &packet[iv_end..iv_end + inner_len] })
    }
}

/// A verified, decrypted ESP packet.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened<'a> {
    /// 4 for IPv4 (tunnel mode), 59 for a dummy packet (RFC 4303 §2.6).
    pub next_header: u8,
    /// The inner packet (without padding, pad length and next header).
    pub inner: &'a [u8],
}

#[cfg(test)]
mod tests {
    use super::*;
    use iotrelay_crypto::SeededRandom;

    #[test]
    fn sequence_number_never_wraps() {
        let c = SaCipher::new(Encr::AesGcm16_128, None, &[0u8; 20], &[]).unwrap();
        let mut sa = OutboundSa::new(9, c);
        sa.seq = u64::from(u32::MAX) - 1;
        let mut buf = [0u8; 128];
        let mut rng = SeededRandom::new(0);
        let n = sa.seal(&[0x45; 20], &mut rng, &mut buf).unwrap();
        assert_eq!(&buf[4..8], &[0xff; 4], "the last sequence number is 2^32 - 1");
        assert_eq!(&buf[8..16], &u64::from(u32::MAX).to_be_bytes(), "GCM IV = the counter");
        assert!(n > 0);
        assert_eq!(sa.seal(&[0x45; 20], &mut rng, &mut buf), Err(EspError::SequenceExhausted));
        assert_eq!(sa.sequence(), u64::from(u32::MAX));
        assert_eq!(sa.counters().0, 1);
    }

    #[test]
    fn seal_in_place_matches_seal() {
        for (encr, integ, ek, ik) in [
            (Encr::AesGcm16_128, None, vec![7u8; 20], vec![]),
            (Encr::AesCbc128, Some(Integ::HmacSha1_96), vec![7u8; 16], vec![9u8; 20]),
        ] {
            let c = || SaCipher::new(encr, integ, &ek, &ik).unwrap();
            let (mut a, mut b) = (OutboundSa::new(5, c()), OutboundSa::new(5, c()));
            let inner: Vec<u8> = (0..1021u32).map(|i| i as u8).collect();
            let mut copied = [0u8; 1200];
            let n = a.seal(&inner, &mut SeededRandom::new(3), &mut copied).unwrap();
            let mut in_place = [0u8; 1200];
            let h = b.headroom();
            assert_eq!(h, ESP_HEADER_LEN + c().iv_len());
            in_place[h..h + inner.len()].copy_from_slice(&inner);
            let m = b.seal_in_place(&mut in_place, inner.len(), &mut SeededRandom::new(3)).unwrap();
            assert_eq!(copied[..n], in_place[..m], "{encr:?}");
            assert_eq!(
                b.seal_in_place(&mut in_place[..m - 1], inner.len(), &mut SeededRandom::new(3)),
                Err(EspError::BufferTooSmall)
            );
        }
    }
}
