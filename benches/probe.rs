//! Probe wire format: encoding into a reused buffer, and decoding a valid probe and a garbage
//! record (what a foreign writer on the shared canary topic costs the verifier).
//!
//! Run: `cargo bench --bench probe -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use losswatch::probe::{decode, Probe, ProbeError};
use uuid::Uuid;

fn sample() -> Probe {
    Probe {
        instance: Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
        partition: 3,
        seq: 1_234_567,
        produced_at_us: 1_700_000_000_000_000,
    }
}

/// 100 bytes that are not a probe: a fixed pseudo-random pattern (xorshift64).
fn garbage() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..100)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_be_bytes()[0]
        })
        .collect()
}

fn probe(c: &mut Criterion) {
    let mut group = c.benchmark_group("probe");
    group.throughput(Throughput::Elements(1));

    for (name, len) in [("encode_into/100B", 100usize), ("encode_into/1KiB", 1024)] {
        let p = sample();
        let mut buf = Vec::with_capacity(len);
        p.encode_into(len, &mut buf);
        assert_eq!(buf.len(), len);
        assert_eq!(decode(Some(&buf)), Ok(p));
        group.bench_function(name, |b| {
            b.iter(|| {
                black_box(&p).encode_into(black_box(len), &mut buf);
                black_box(&buf);
            });
        });
    }

    let valid = sample().encode(100);
    assert_eq!(decode(Some(&valid)), Ok(sample()));
    group.bench_function("decode/valid_100B", |b| {
        b.iter(|| decode(black_box(Some(valid.as_slice()))));
    });

    let junk = garbage();
    assert_eq!(decode(Some(&junk)), Err(ProbeError::BadMagic));
    group.bench_function("decode/garbage_100B", |b| {
        b.iter(|| decode(black_box(Some(junk.as_slice()))));
    });

    group.finish();
}

criterion_group!(benches, probe);
criterion_main!(benches);
