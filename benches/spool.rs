//! The spool against the direct path, side by side in one run, through the public API
//! only (so it measures the same thing before and after the writer changes), with golden's
//! `bench_record` (about 1 KB a frame) and a reader that does not decode:
//!
//! - `direct`: `try_send` into a plain Unix-socket reader thread that reads 64 KiB at a
//!   time and discards; timed until `close` returns (every record delivered).
//! - `spill`: no agent; `try_send` into a client with a spool (`SpoolSync::Every(1 s)`,
//!   the default), timed until `Stats::spooled` reaches N. `spill_always` is the same
//!   with `SpoolSync::Always` (one `fdatasync` per batch the writer takes).
//! - `drain`: a new client on the spool `spill` left, connected to the same kind of
//!   reader; timed from `build` (which reads and checks every segment) until `close`
//!   returns after the last spooled record was delivered.
//! - `disk`: the disk's own limit: the same frames, each with its 8-byte spool prefix,
//!   in 64 KiB `pwrite`s to a file in the same directory as the spools, no sync.
//!
//! Rounds are interleaved (a neighbour's load hits every path alike) and each path's
//! rate is given as a ratio to `direct` in its round.
//!
//! `cargo bench --bench spool` (N records a round: `cargo bench --bench spool -- 200000`).

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use geneva_audit::{Client, Encoder, Record, SendError, SpoolSync};

#[path = "support/bench_record.rs"]
mod bench_record;
#[path = "support/discard.rs"]
mod discard;
use bench_record::bench_record;

const SID: &str = "e6c9fcb1-7f08-4c1d-9e7a-123456789abc";
/// The reader's buffer, and the size of the limit's writes.
use discard::CHUNK;
/// How long any single wait may take before the bench calls it a failure.
const PATIENCE: Duration = Duration::from_secs(120);
const ROUNDS: usize = 3;

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Waits until `done` holds, looking every 100 µs; panics past [`PATIENCE`].
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        thread::sleep(Duration::from_micros(100));
    }
}

/// A Unix socket and a thread that reads its first connection 64 KiB at a time and
/// discards, counting bytes until EOF.
struct Reader {
    path: PathBuf,
    thread: JoinHandle<u64>,
}

impl Reader {
    fn new(dir: &Path, name: &str) -> Reader {
        let path = dir.join(format!("{name}.sock"));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("bind");
        let thread = discard::spawn_reader(listener, name);
        Reader { path, thread }
    }

    fn bytes(self) -> u64 {
        self.thread.join().expect("reader")
    }
}

/// Sends `n` copies of `record`, yielding while the queue is full.
fn send_all(client: &Client, record: &Record, n: u64) {
    for _ in 0..n {
        let mut r = record.clone();
        loop {
            match client.try_send(r) {
                Ok(()) => break,
                Err(SendError::QueueFull(back)) => {
                    r = back;
                    thread::yield_now();
                }
                Err(e) => panic!("record refused: {e}"),
            }
        }
    }
}

fn direct(dir: &Path, record: &Record, n: u64, frame_len: usize) -> Duration {
    let reader = Reader::new(dir, "direct");
    let client = Client::builder(SID)
        .unix_socket(&reader.path)
        .wait_for_connection(true)
        .build()
        .expect("client");
    let start = Instant::now();
    send_all(&client, record, n);
    client.flush(PATIENCE).expect("flush");
    let report = client.close(PATIENCE);
    let took = start.elapsed();
    assert_eq!(report.delivered, n);
    assert!(reader.bytes() >= n * frame_len as u64);
    took
}

fn spill(spool: &Path, record: &Record, n: u64, sync: SpoolSync) -> Duration {
    let client = Client::builder(SID)
        .unix_socket(spool.with_extension("nobody.sock"))
        .spool(spool)
        .spool_sync(sync)
        .build()
        .expect("client");
    let start = Instant::now();
    send_all(&client, record, n);
    wait_for("every record spooled", || client.stats().spooled >= n);
    let took = start.elapsed();
    let report = client.close(Duration::from_millis(100));
    assert_eq!(report.stats.spooled, n);
    assert!(report.unsent.is_empty());
    took
}

fn drain(dir: &Path, spool: &Path, n: u64, frame_len: usize) -> Duration {
    let reader = Reader::new(dir, "drain");
    let start = Instant::now();
    let client = Client::builder(SID)
        .unix_socket(&reader.path)
        .spool(spool)
        .build()
        .expect("client");
    wait_for("every spooled record delivered", || {
        client.stats().spool_replayed >= n
    });
    let report = client.close(PATIENCE);
    let took = start.elapsed();
    assert_eq!(report.stats.spool_replayed, n);
    assert_eq!(report.stats.spool_bytes, 0);
    assert!(reader.bytes() >= n * frame_len as u64);
    took
}

/// The frames with their spool prefix, in 64 KiB `pwrite`s, no sync.
fn disk(path: &Path, frame: &[u8], n: u64) -> Duration {
    let mut one = (frame.len() as u32).to_le_bytes().to_vec();
    one.extend_from_slice(&crc32c::crc32c(frame).to_le_bytes());
    one.extend_from_slice(frame);
    let per_chunk = (CHUNK / one.len()) as u64;
    let chunk = one.repeat(per_chunk as usize);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .expect("disk file");
    let start = Instant::now();
    let mut at = 0u64;
    let mut left = n;
    while left > 0 {
        let k = left.min(per_chunk);
        let bytes = &chunk[..k as usize * one.len()];
        file.write_all_at(bytes, at).expect("pwrite");
        at += bytes.len() as u64;
        left -= k;
    }
    let took = start.elapsed();
    drop(file);
    let _ = std::fs::remove_file(path);
    took
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo test --benches` runs this too: keep it short there.
    let bench = std::env::args().any(|a| a == "--bench");
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(if bench { 100_000 } else { 2_000 });
    let dir = std::env::temp_dir().join(format!("geneva-spool-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");

    let record = bench_record();
    record.validate().expect("bench_record is valid");
    let frame = Encoder::new(SID)
        .expect("valid id")
        .encode(unix_now(), &record)
        .to_vec();
    println!(
        "spool/setup: {n} records a path a round, {ROUNDS} rounds, frame {} bytes, in {}",
        frame.len(),
        dir.display()
    );
    // Warm-up: page cache, allocator, thread start.
    direct(&dir, &record, n / 10, frame.len());

    let names = ["direct", "spill", "spill_always", "drain", "disk"];
    let mut rates: [Vec<f64>; 5] = Default::default();
    for round in 0..ROUNDS {
        let spool = dir.join(format!("spool-{round}"));
        let always = dir.join(format!("spool-always-{round}"));
        let times = [
            direct(&dir, &record, n, frame.len()),
            spill(&spool, &record, n, SpoolSync::default()),
            spill(&always, &record, n, SpoolSync::Always),
            drain(&dir, &spool, n, frame.len()),
            disk(&dir.join(format!("disk-{round}")), &frame, n),
        ];
        let _ = std::fs::remove_dir_all(&spool);
        let _ = std::fs::remove_dir_all(&always);
        let line: Vec<String> = names
            .iter()
            .zip(times)
            .enumerate()
            .map(|(i, (name, t))| {
                let rate = n as f64 / t.as_secs_f64();
                rates[i].push(rate);
                format!("{name} {rate:.0}/s ({:.2})", rate / rates[0][round])
            })
            .collect();
        println!("spool/round {}: {}", round + 1, line.join("; "));
    }
    for (name, r) in names.iter().zip(&rates) {
        let ratios: Vec<String> = r
            .iter()
            .zip(&rates[0])
            .map(|(x, d)| format!("{:.2}", x / d))
            .collect();
        let all: Vec<String> = r.iter().map(|x| format!("{x:.0}")).collect();
        println!(
            "spool/{name}: median {:.0} records/s [{}]; to direct [{}]",
            median(r),
            all.join(", "),
            ratios.join(", ")
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
