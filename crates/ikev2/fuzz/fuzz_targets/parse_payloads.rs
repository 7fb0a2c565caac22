//! `parse_payloads` (the walk used on decrypted SK contents): first octet = first payload type, the rest the
//! chain. Never panics; what parses re-emits to an equal chain.
#![no_main]

use iotrelay_ikev2::wire::{PayloadType, emit_payloads, parse_payloads};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    if let Ok(payloads) = parse_payloads(PayloadType(first), rest) {
        let (ty, bytes) = emit_payloads(&payloads);
        let again = parse_payloads(ty, &bytes).expect("re-emitted chain must parse");
        assert_eq!(payloads, again);
    }
});
