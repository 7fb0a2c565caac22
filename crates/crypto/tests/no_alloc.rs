//! SaCipher::seal_in_place / open_in_place allocate nothing on the heap (the ESP hot path), for every suite.
//! Counted with dhat's global allocator in testing mode. dhat counts every thread's allocations, so this test
//! runs without libtest (`harness = false` in Cargo.toml): no harness threads allocate while we measure.

use iotrelay_crypto::{Encr, Integ, SaCipher};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() {
    seal_and_open_do_not_allocate();
    println!("no_alloc: 1 passed, 0 failed");
}

fn seal_and_open_do_not_allocate() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let mut suites = vec![(Encr::AesGcm16_128, None), (Encr::AesGcm16_256, None)];
    for e in [Encr::AesCbc128, Encr::AesCbc256] {
        suites.extend(Integ::ALL.iter().map(|i| (e, Some(*i))));
    }
    for (encr, integ) in suites {
        let c = SaCipher::new(
            encr,
            integ,
            &vec![7u8; encr.key_material_len()],
            &vec![9u8; integ.map_or(0, |i| i.key_len())],
        )
        .unwrap();
        let mut data = vec![0x5au8; 1408];
        let mut icv = vec![0u8; c.icv_len()];
        let iv = vec![3u8; c.iv_len()];
        let aad = [1u8; 8];
        // Warm up once (lazy CPU feature detection and the like may allocate on first use).
        c.seal_in_place(&aad, &iv, &mut data, &mut icv).unwrap();
        c.open_in_place(&aad, &iv, &mut data, &icv).unwrap();
        let before = dhat::HeapStats::get();
        for _ in 0..100 {
            c.seal_in_place(&aad, &iv, &mut data, &mut icv).unwrap();
            c.open_in_place(&aad, &iv, &mut data, &icv).unwrap();
        }
        // A failed check must not allocate either.
        icv[0] ^= 1;
        assert!(c.open_in_place(&aad, &iv, &mut data, &icv).is_err());
        let after = dhat::HeapStats::get();
        assert_eq!(after.total_blocks, before.total_blocks, "{encr:?} {integ:?} allocated per packet");
    }
}
