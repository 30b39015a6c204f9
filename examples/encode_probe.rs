//! Encodes golden's `bench_record` N times into a reused buffer, for instruction counts:
//! `valgrind --tool=callgrind target/release/examples/encode_probe N` at two values of
//! N; the difference over the difference of N is the instructions per frame.

#[path = "../benches/support/bench_record.rs"]
mod bench_record;

use std::hint::black_box;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let record = bench_record::bench_record();
    let Ok(mut encoder) = geneva_audit::Encoder::new("e6c9fcb1-7f08-4c1d-9e7a-123456789abc") else {
        return;
    };
    let mut total = 0usize;
    for i in 0..n {
        total += black_box(encoder.encode(black_box(1_700_000_000 + i as i64), black_box(&record)))
            .len();
    }
    println!("{total}");
}
