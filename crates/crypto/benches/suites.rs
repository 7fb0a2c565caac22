//! Measures the per-packet primitives of the ESP hot path on 1400-octet packets, RustCrypto against `ring` and `aws-lc-rs`,
//! plus [`SaCipher`] for every suite. A plain bench binary (no criterion): `cargo bench -p iotrelay-crypto`
//! or `scripts/bench.sh`. The two sides of each comparison run interleaved, round by round, and the fastest round
//! counts, so a busy shared machine disturbs both alike; the ratio column is time / time of the line's baseline,
//! measured in the same run (below 1.00 = faster than the baseline).
//!
//! Environment: `BENCH_MS` (time per round and candidate, default 200), `BENCH_ROUNDS` (default 5).

use std::hint::black_box;
use std::time::{Duration, Instant};

use aes_gcm::aead::{AeadInPlace, KeyInit};
use hmac::Mac;
use iotrelay_crypto::{Encr, Integ, SaCipher};

const PACKET: usize = 1400;

/// Seals a buffer in place, returns the tag.
type SealFn = dyn FnMut(&mut [u8]) -> [u8; 16];

/// Nanoseconds per call of `f`, the fastest of `rounds` rounds of about `per_round` each.
struct Bench {
    per_round: Duration,
    rounds: usize,
}

impl Bench {
    /// Runs the candidates interleaved and returns the best ns/op of each.
    fn compare(&self, fs: &mut [&mut dyn FnMut()]) -> Vec<f64> {
        let mut best = vec![f64::INFINITY; fs.len()];
        // Calibrate: iterations per round for each candidate.
        let mut iters = vec![0u64; fs.len()];
        for (i, f) in fs.iter_mut().enumerate() {
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed() < self.per_round / 10 {
                f();
                n += 1;
            }
            iters[i] = (n * 10).max(1);
        }
        for _ in 0..self.rounds {
            for (i, f) in fs.iter_mut().enumerate() {
                let start = Instant::now();
                for _ in 0..iters[i] {
                    f();
                }
                let ns = start.elapsed().as_nanos() as f64 / iters[i] as f64;
                if ns < best[i] {
                    best[i] = ns;
                }
            }
        }
        best
    }
}

fn report(group: &str, names: &[&str], ns: &[f64]) {
    println!("{group}");
    for (name, t) in names.iter().zip(ns) {
        let mbps = PACKET as f64 / t * 1000.0;
        println!("  {name:<34} {t:>9.0} ns/op {mbps:>8.0} MB/s   ratio {:>5.2}", t / ns[0]);
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects groups by substring.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let b = Bench { per_round: Duration::from_millis(env("BENCH_MS", 200)), rounds: env("BENCH_ROUNDS", 5) as usize };
    let want = |g: &str| filter.as_deref().is_none_or(|f| g.contains(f));
    println!("packet {PACKET} octets; ratio = ns/op relative to the first line of each group (same run)");

    let aad = [0x11u8; 8];
    let nonce = [0x22u8; 12];
    let mut buf = vec![0x5au8; PACKET];

    for (name, key_len) in [("aes-gcm-128 seal", 16usize), ("aes-gcm-256 seal", 32)] {
        if !want(name) {
            continue;
        }
        let key = vec![0x42u8; key_len];
        let mut rc: Box<SealFn> = if key_len == 16 {
            let c = aes_gcm::Aes128Gcm::new_from_slice(&key).unwrap();
            Box::new(move |d| c.encrypt_in_place_detached((&nonce).into(), &aad, d).unwrap().into())
        } else {
            let c = aes_gcm::Aes256Gcm::new_from_slice(&key).unwrap();
            Box::new(move |d| c.encrypt_in_place_detached((&nonce).into(), &aad, d).unwrap().into())
        };
        let alg = if key_len == 16 { &ring::aead::AES_128_GCM } else { &ring::aead::AES_256_GCM };
        let rk = ring::aead::LessSafeKey::new(ring::aead::UnboundKey::new(alg, &key).unwrap());
        let lalg = if key_len == 16 { &aws_lc_rs::aead::AES_128_GCM } else { &aws_lc_rs::aead::AES_256_GCM };
        let lk = aws_lc_rs::aead::LessSafeKey::new(aws_lc_rs::aead::UnboundKey::new(lalg, &key).unwrap());
        let mut buf2 = buf.clone();
        let mut buf3 = buf.clone();
        let ns = b.compare(&mut [
            &mut || {
                black_box(rc(black_box(&mut buf)));
            },
            &mut || {
                let n = ring::aead::Nonce::assume_unique_for_key(nonce);
                let tag = rk.seal_in_place_separate_tag(n, ring::aead::Aad::from(&aad), black_box(&mut buf2)).unwrap();
                black_box(tag.as_ref()[0]);
            },
            &mut || {
                let n = aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce);
                let tag =
                    lk.seal_in_place_separate_tag(n, aws_lc_rs::aead::Aad::from(&aad), black_box(&mut buf3)).unwrap();
                black_box(tag.as_ref()[0]);
            },
        ]);
        report(name, &["RustCrypto aes-gcm (baseline)", "ring", "aws-lc-rs"], &ns);
    }

    if want("aes-gcm-128 open") {
        let key = [0x42u8; 16];
        let c = aes_gcm::Aes128Gcm::new_from_slice(&key).unwrap();
        let rk = ring::aead::LessSafeKey::new(ring::aead::UnboundKey::new(&ring::aead::AES_128_GCM, &key).unwrap());
        let plain = vec![0x5au8; PACKET];
        let mut ct = plain.clone();
        let tag = c.encrypt_in_place_detached((&nonce).into(), &aad, &mut ct).unwrap();
        let mut work = ct.clone();
        let lk = aws_lc_rs::aead::LessSafeKey::new(
            aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_128_GCM, &key).unwrap(),
        );
        let mut work2 = ct.clone();
        let mut work3 = ct.clone();
        let ns = b.compare(&mut [
            &mut || {
                work.copy_from_slice(&ct);
                c.decrypt_in_place_detached((&nonce).into(), &aad, black_box(&mut work), &tag).unwrap();
            },
            &mut || {
                work2.copy_from_slice(&ct);
                let n = ring::aead::Nonce::assume_unique_for_key(nonce);
                let t = ring::aead::Tag::try_from(&tag[..]).unwrap();
                rk.open_in_place_separate_tag(n, ring::aead::Aad::from(&aad), t, black_box(&mut work2), 0..).unwrap();
            },
            &mut || {
                work3.copy_from_slice(&ct);
                let n = aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce);
                lk.open_in_place_separate_tag(
                    n,
                    aws_lc_rs::aead::Aad::from(&aad),
                    tag.as_slice(),
                    black_box(&mut work3),
                )
                .unwrap();
            },
        ]);
        report(
            "aes-gcm-128 open (incl. 1400-octet copy)",
            &["RustCrypto aes-gcm (baseline)", "ring", "aws-lc-rs"],
            &ns,
        );
    }

    if want("aes-cbc-128 encrypt") {
        use aes::cipher::{BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
        let key = [0x42u8; 16];
        let iv = [0x33u8; 16];
        let mut b1 = vec![0x5au8; 1408];
        let mut b2 = b1.clone();
        let lk = aws_lc_rs::cipher::EncryptingKey::cbc(
            aws_lc_rs::cipher::UnboundCipherKey::new(&aws_lc_rs::cipher::AES_128, &key).unwrap(),
        )
        .unwrap();
        let ns = b.compare(&mut [
            &mut || {
                let n = b1.len();
                cbc::Encryptor::<aes::Aes128>::new(&key.into(), &iv.into())
                    .encrypt_padded_mut::<NoPadding>(black_box(&mut b1), n)
                    .unwrap();
            },
            &mut || {
                let ctx = aws_lc_rs::cipher::EncryptionContext::Iv128(iv.into());
                lk.less_safe_encrypt(black_box(&mut b2), ctx).unwrap();
            },
        ]);
        report("aes-cbc-128 encrypt (1408 octets)", &["RustCrypto aes+cbc (baseline)", "aws-lc-rs"], &ns);
    }

    macro_rules! hmac_group {
        ($name:expr, $h:ty, $ring:expr, $lc:expr) => {
            if want($name) {
                let key = [0x0bu8; 32];
                let keyed = <hmac::Hmac<$h> as Mac>::new_from_slice(&key).unwrap();
                let rk = ring::hmac::Key::new($ring, &key);
                let lk = aws_lc_rs::hmac::Key::new($lc, &key);
                let ns = b.compare(&mut [
                    &mut || {
                        let mut m = keyed.clone();
                        m.update(&aad);
                        m.update(black_box(&buf));
                        black_box(m.finalize().into_bytes());
                    },
                    &mut || {
                        let mut m = ring::hmac::Context::with_key(&rk);
                        m.update(&aad);
                        m.update(black_box(&buf));
                        black_box(m.sign());
                    },
                    &mut || {
                        let mut m = aws_lc_rs::hmac::Context::with_key(&lk);
                        m.update(&aad);
                        m.update(black_box(&buf));
                        black_box(m.sign());
                    },
                ]);
                report($name, &["RustCrypto hmac (baseline)", "ring", "aws-lc-rs"], &ns);
            }
        };
    }
    hmac_group!(
        "hmac-sha1",
        sha1::Sha1,
        ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY
    );
    hmac_group!("hmac-sha256", sha2::Sha256, ring::hmac::HMAC_SHA256, aws_lc_rs::hmac::HMAC_SHA256);
    hmac_group!("hmac-sha384", sha2::Sha384, ring::hmac::HMAC_SHA384, aws_lc_rs::hmac::HMAC_SHA384);
    hmac_group!("hmac-sha512", sha2::Sha512, ring::hmac::HMAC_SHA512, aws_lc_rs::hmac::HMAC_SHA512);

    if want("SaCipher") {
        // Every suite end to end (seal), relative to AES-GCM-16-128.
        let suites: Vec<(Encr, Option<Integ>)> = vec![
            (Encr::AesGcm16_128, None),
            (Encr::AesGcm16_256, None),
            (Encr::AesCbc128, Some(Integ::HmacSha1_96)),
            (Encr::AesCbc128, Some(Integ::HmacSha256_128)),
            (Encr::AesCbc256, Some(Integ::HmacSha256_128)),
            (Encr::AesCbc256, Some(Integ::HmacSha384_192)),
            (Encr::AesCbc256, Some(Integ::HmacSha512_256)),
        ];
        let ciphers: Vec<SaCipher> = suites
            .iter()
            .map(|(e, i)| {
                SaCipher::new(*e, *i, &vec![7u8; e.key_material_len()], &vec![9u8; i.map_or(0, |i| i.key_len())])
                    .unwrap()
            })
            .collect();
        let names: Vec<String> = suites
            .iter()
            .map(|(e, i)| {
                format!("{}{}", e.strongswan_name(), i.map_or(String::new(), |i| format!("/{}", i.strongswan_name())))
            })
            .collect();
        // CBC needs a multiple of 16: 1408 octets (what 1400 plus ESP padding becomes).
        let mut bufs: Vec<Vec<u8>> =
            suites.iter().map(|(e, _)| vec![0x5au8; PACKET.next_multiple_of(e.block_size())]).collect();
        let mut closures: Vec<Box<dyn FnMut() + '_>> = Vec::new();
        for (c, buf) in ciphers.iter().zip(bufs.iter_mut()) {
            let iv = vec![3u8; c.iv_len()];
            let mut icv = vec![0u8; c.icv_len()];
            closures.push(Box::new(move || {
                c.seal_in_place(&aad, &iv, black_box(buf), &mut icv).unwrap();
                black_box(&icv);
            }));
        }
        let mut refs: Vec<&mut dyn FnMut()> = closures.iter_mut().map(|c| &mut **c as &mut dyn FnMut()).collect();
        let ns = b.compare(&mut refs);
        let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        report("SaCipher seal (baseline: first line)", &names, &ns);
    }
}
