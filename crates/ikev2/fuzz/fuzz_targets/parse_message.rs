//! `Message::parse` on arbitrary datagrams: never panics; whatever parses re-emits to something that parses to
//! the same message, re-emitting that is a fixed point, and `emit_into` agrees with `emit`.
#![no_main]

use iotrelay_ikev2::wire::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data) {
        let bytes = m.emit();
        let again = Message::parse(&bytes).expect("re-emitted message must parse");
        assert_eq!(m.payloads, again.payloads);
        let mut header = m.header;
        header.length = bytes.len() as u32;
        assert_eq!(header, again.header);
        assert_eq!(again.emit(), bytes, "emission is not a fixed point");
        // In-place emission into a junk-filled buffer gives the same octets.
        assert_eq!(m.buffer_len(), bytes.len());
        let mut buf = vec![0xa5; bytes.len()];
        assert_eq!(m.emit_into(&mut buf), Ok(bytes.len()));
        assert_eq!(buf, bytes);
    }
});
