//! UDP 4500 framing (RFC 3948 §2.2); classification is `iotrelay_esp::classify`.

/// The 4-octet non-ESP marker in front of IKE messages on port 4500.
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// A NAT-T keepalive: a single 0xFF octet (RFC 3948 §2.3).
pub const NATT_KEEPALIVE: [u8; 1] = [0xff];

/// Writes `marker || ike` into `out` and returns the length (None if `out` is too small).
pub fn frame_ike(ike: &[u8], out: &mut [u8]) -> Option<usize> {
    let n = ike.len() + 4;
    let dst = out.get_mut(..n)?;
    dst[..4].copy_from_slice(&NON_ESP_MARKER);
    dst[4..].copy_from_slice(ike);
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_round_trips() {
        let msg = [7u8; 40];
        let mut buf = [0xaau8; 64];
        let n = frame_ike(&msg, &mut buf).unwrap();
        assert_eq!(n, 44);
        assert_eq!(iotrelay_esp::classify(&buf[..n]), iotrelay_esp::Demux::Ike(&msg[..]));
        assert_eq!(frame_ike(&msg, &mut [0u8; 43]), None);
    }
}
