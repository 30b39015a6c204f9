//! Encoding golden's `bench_record` (a typical ~1 KB frame): our encoder against
//! rmp-serde on a serde struct of the same wire shape, plus `encoded_len` and `validate`.
//!
//! `cargo bench --bench encode -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use geneva_audit::{Encoder, encoded_len};
use serde::Serialize;

#[path = "support/bench_record.rs"]
mod bench_record;
#[path = "support/reference.rs"]
mod reference;
use bench_record::bench_record_built as bench_record;
use reference::{SID, ref_frame};

const TS: i64 = 1_700_000_000;

fn main_bench(c: &mut Criterion) {
    let record = bench_record();
    record.validate().expect("bench_record is valid");
    let mut encoder = Encoder::new(SID).expect("valid id");
    let ours = encoder.encode(TS, &record).to_vec();

    let frame = ref_frame(TS);

    // Both sides write the same tree (rmp-serde with compact integers).
    let theirs = rmp_serde::to_vec_named(&frame).expect("serializes");
    let tree = |b: &[u8]| rmpv::decode::read_value(&mut &b[..]).expect("decodes");
    assert_eq!(
        tree(&ours),
        tree(&theirs),
        "rmp-serde mirror has the wire shape"
    );
    eprintln!(
        "frame sizes: ours {} bytes, rmp-serde {} bytes",
        ours.len(),
        theirs.len()
    );

    let mut g = c.benchmark_group("encode_bench_record");
    g.throughput(Throughput::Bytes(ours.len() as u64));
    g.bench_function("geneva_audit_encoder", |b| {
        b.iter(|| black_box(encoder.encode(black_box(TS), black_box(&record)).len()))
    });
    g.bench_function("rmp_serde_to_vec_named", |b| {
        b.iter(|| black_box(rmp_serde::to_vec_named(black_box(&frame)).map(|v| v.len())))
    });
    let mut buf = Vec::with_capacity(4096);
    g.bench_function("rmp_serde_reused_buffer", |b| {
        b.iter(|| {
            buf.clear();
            let mut ser = rmp_serde::Serializer::new(&mut buf).with_struct_map();
            black_box(black_box(&frame).serialize(&mut ser)).ok();
            black_box(buf.len())
        })
    });
    g.finish();

    c.bench_function("encoded_len_bench_record", |b| {
        b.iter(|| encoded_len(black_box(SID), black_box(&record)))
    });
    c.bench_function("validate_bench_record", |b| {
        b.iter(|| black_box(&record).validate())
    });
}

criterion_group!(benches, main_bench);
criterion_main!(benches);
