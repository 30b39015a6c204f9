//! The whole pipeline on a real Unix socket, three ways, in one run:
//!
//! - `geneva_audit_try_send`: `Client::try_send` of golden's `bench_record` (a clone of a
//!   template built from static slices: no allocation) → queue → writer thread → socket →
//!   a reader thread draining into a 64 KiB buffer. Timed until `flush` reports every
//!   record written (`Stats::written` at the target; a condition wait, no sleeping).
//! - `socket_limit_64k_writes`: one thread writing the same frame, pre-encoded once with
//!   [`Encoder`] and replicated into a 64 KiB buffer, in 64 KiB writes: what the socket
//!   and the reader can take. (This and the reference's socket get the 1 MiB send buffer
//!   the client asks for on Unix sockets.)
//! - `reference_rmp_serde_write_per_record`: the reference design, one thread that
//!   encodes each record with `rmp_serde::to_vec_named` (a serde struct of the same wire
//!   shape) and makes one `write_all` per record.
//!
//! After criterion's figures the bench prints (lines starting `pipeline/`):
//! - interleaved rounds of the three, plus `geneva_audit_try_send_then_send_timeout` (the
//!   same pipeline with a producer that, on `QueueFull`, waits in `send_timeout` instead
//!   of yielding and retrying), with ratios per round (the machine's noise hits all alike)
//!   and each thread's CPU time per record (from /proc schedstat);
//! - `try_send` latency percentiles with a busy writer (records streaming) and an idle
//!   one (a record every ~2 ms, the writer parked), plus two controls: the same idle
//!   call after the caller pre-warmed validation and sizing, the same checks alone, the
//!   clock's own floor, and a bare crossbeam channel with an idle consumer (no code of
//!   this crate).
//!
//! `cargo bench --bench pipeline -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use geneva_audit::{Client, Encoder, Record, SendError, encoded_len_bound};

/// The reader's buffer, and the size of the limit's writes.
use discard::CHUNK;
/// How long any single wait in the bench may take before it is called a failure.
const PATIENCE: Duration = Duration::from_secs(60);

// Golden's `bench_record`, from static data, and the reference design's serde mirror of
// its frame, shared with the encode bench.
#[path = "support/bench_record.rs"]
mod bench_record;
#[path = "support/discard.rs"]
mod discard;
#[path = "support/latency.rs"]
mod latency;
#[path = "support/reference.rs"]
mod reference;
use bench_record::bench_record;
use reference::{SID, ref_frame};

/// Unix seconds, read per record as the client does.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

// ---------------------------------------------------------------------------------------
// The agent's stand-in: a Unix socket in a temp dir and a thread draining it.

struct Sink {
    dir: PathBuf,
    path: PathBuf,
    reader: Option<JoinHandle<u64>>,
}

impl Sink {
    /// Listens, and drains the first connection into a 64 KiB buffer, counting bytes;
    /// the reader returns the count at EOF.
    fn new(name: &str) -> Sink {
        let dir = std::env::temp_dir().join(format!(
            "geneva-pipeline-bench-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("agent.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("bind");
        let reader = discard::spawn_reader(listener, name);
        Sink {
            dir,
            path,
            reader: Some(reader),
        }
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for the reader to see EOF; returns the bytes it read.
    fn join(mut self) -> u64 {
        self.reader
            .take()
            .expect("joined once")
            .join()
            .expect("reader")
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------------------
// The three pipelines.

fn send_one(client: &Client, record: Record) {
    send_with(client, record, WhenFull::Retry)
}

/// What the producer does when `try_send` finds the queue full.
#[derive(Clone, Copy, PartialEq)]
enum WhenFull {
    /// Yields and calls `try_send` again (validating again): keeps the producer
    /// runnable.
    Retry,
    /// Hands the record to `send_timeout`, which sleeps until the queue is half drained.
    Wait,
}

fn send_with(client: &Client, mut record: Record, when_full: WhenFull) {
    loop {
        match client.try_send(record) {
            Ok(()) => return,
            Err(SendError::QueueFull(back)) if when_full == WhenFull::Wait => {
                client.send_timeout(back, PATIENCE).expect("send_timeout");
                return;
            }
            Err(SendError::QueueFull(back)) => {
                record = back;
                thread::yield_now();
            }
            Err(e) => panic!("record refused: {e}"),
        }
    }
}

/// This crate: the caller's thread calls `try_send`, the client's writer writes.
struct Ours {
    client: Client,
    template: Record,
    sink: Sink,
}

impl Ours {
    fn new() -> Ours {
        let sink = Sink::new("ours");
        let client = Client::builder(SID)
            .unix_socket(sink.path())
            .wait_for_connection(true)
            .build()
            .expect("client");
        Ours {
            client,
            template: bench_record(),
            sink,
        }
    }

    /// Sends `n` records and waits until all are written; returns the time taken.
    fn run(&self, n: u64) -> Duration {
        self.run_with(n, WhenFull::Retry)
    }

    fn run_with(&self, n: u64, when_full: WhenFull) -> Duration {
        let target = self.client.stats().written + n;
        let start = Instant::now();
        for _ in 0..n {
            send_with(&self.client, self.template.clone(), when_full);
        }
        // `flush` is a condition wait (no polling) that returns once every record
        // accepted before it is written, i.e. once `written` reaches the target.
        self.client.flush(PATIENCE).expect("flush");
        let elapsed = start.elapsed();
        let written = self.client.stats().written;
        assert!(written >= target, "written {written} < target {target}");
        elapsed
    }

    /// Closes the client and checks the reader got every byte the client wrote.
    fn finish(self) -> (u64, u64) {
        let report = self.client.close(PATIENCE);
        assert!(report.unsent.is_empty(), "records left unsent");
        let read = self.sink.join();
        assert_eq!(
            read, report.stats.bytes_written,
            "reader and writer disagree"
        );
        (report.stats.written, read)
    }
}

/// A thread of our own that owns a connection and runs jobs of `n` frames on it.
struct Blocking {
    jobs: Option<mpsc::Sender<u64>>,
    done: mpsc::Receiver<u64>,
    thread: Option<JoinHandle<u64>>,
    sink: Sink,
}

impl Blocking {
    fn new(
        name: &str,
        mut job: impl FnMut(&mut UnixStream, u64) -> u64 + Send + 'static,
    ) -> Blocking {
        let sink = Sink::new(name);
        let mut stream = UnixStream::connect(sink.path()).expect("connect");
        // The send buffer the client asks for on Unix sockets, so the comparison is of
        // designs, not of socket settings.
        socket2::SockRef::from(&stream)
            .set_send_buffer_size(1 << 20)
            .expect("SO_SNDBUF");
        let (jobs, job_rx) = mpsc::channel::<u64>();
        let (done_tx, done) = mpsc::channel::<u64>();
        let thread = thread::Builder::new()
            .name(format!("wr-{name}"))
            .spawn(move || {
                let mut total = 0;
                for n in job_rx {
                    let bytes = job(&mut stream, n);
                    total += bytes;
                    if done_tx.send(bytes).is_err() {
                        break;
                    }
                }
                total
            })
            .expect("spawn writer");
        Blocking {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
            sink,
        }
    }

    /// Has the thread write `n` frames; returns the time until its last write returned.
    fn run(&self, n: u64) -> Duration {
        let start = Instant::now();
        self.jobs.as_ref().expect("open").send(n).expect("job");
        self.done.recv_timeout(PATIENCE).expect("job done");
        start.elapsed()
    }

    /// Stops the thread, closes the connection, checks the reader got every byte.
    fn finish(mut self) -> u64 {
        drop(self.jobs.take());
        let written = self.thread.take().expect("once").join().expect("writer");
        let read = self.sink.join();
        assert_eq!(read, written, "reader and writer disagree");
        read
    }
}

/// The socket's limit: pre-encoded frames in 64 KiB writes.
fn socket_limit(frame: &[u8]) -> Blocking {
    let frame_len = frame.len();
    let per_chunk = CHUNK / frame_len;
    let chunk: Vec<u8> = frame.repeat(per_chunk);
    Blocking::new("limit", move |stream, n| {
        let full = n / per_chunk as u64;
        let rest = (n % per_chunk as u64) as usize;
        for _ in 0..full {
            stream.write_all(&chunk).expect("write");
        }
        if rest > 0 {
            stream.write_all(&chunk[..rest * frame_len]).expect("write");
        }
        n * frame_len as u64
    })
}

/// The reference design: rmp-serde per record, one `write_all` per record.
fn reference() -> Blocking {
    Blocking::new("ref", |stream, n| {
        let mut bytes = 0u64;
        for _ in 0..n {
            let frame = rmp_serde::to_vec_named(&ref_frame(unix_now())).expect("serialize");
            stream.write_all(&frame).expect("write");
            bytes += frame.len() as u64;
        }
        bytes
    })
}

// ---------------------------------------------------------------------------------------
// Per-thread CPU time, from /proc (Linux schedstat): what each pipeline costs per record,
// whatever the neighbours on this shared machine are doing.

/// Every thread of this process: its name (`caller` for the main thread) and the CPU time
/// it has run, in ns. Empty where /proc has no schedstat.
fn cpu_snapshot() -> Vec<(String, u64)> {
    let pid = std::process::id().to_string();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        let dir = task.path();
        let name = if task.file_name().to_str() == Some(pid.as_str()) {
            "caller".to_owned()
        } else {
            std::fs::read_to_string(dir.join("comm"))
                .unwrap_or_default()
                .trim()
                .to_owned()
        };
        let ns = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok());
        if let Some(ns) = ns {
            out.push((name, ns));
        }
    }
    out
}

/// Adds the CPU time each thread ran between two snapshots to `acc`.
fn cpu_add(acc: &mut Vec<(String, u64)>, before: &[(String, u64)], after: &[(String, u64)]) {
    for (name, ns) in after {
        let was = before
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v);
        let d = ns.saturating_sub(was);
        match acc.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 += d,
            None => acc.push((name.clone(), d)),
        }
    }
}

fn print_cpu(what: &str, acc: &[(String, u64)], records: u64) {
    if acc.is_empty() || records == 0 {
        return;
    }
    let per = |ns: u64| ns as f64 / records as f64;
    let threads: Vec<String> = acc
        .iter()
        .filter(|(_, ns)| per(*ns) >= 1.0)
        .map(|(n, ns)| format!("{n}={:.0}", per(*ns)))
        .collect();
    let total: u64 = acc.iter().map(|(_, ns)| ns).sum();
    println!(
        "pipeline/cpu {what}: {:.0} ns CPU per record in total ({})",
        per(total),
        threads.join(" ")
    );
}

// ---------------------------------------------------------------------------------------

fn pipeline(c: &mut Criterion) {
    // Without `--bench` (e.g. `cargo test --benches`) criterion runs each bench once;
    // keep the extra reports short too.
    let quick = !std::env::args().any(|a| a == "--bench");

    let record = bench_record();
    record.validate().expect("bench_record is valid");
    let mut encoder = Encoder::new(SID).expect("valid id");
    let frame = encoder.encode(unix_now(), &record).to_vec();
    let theirs = rmp_serde::to_vec_named(&ref_frame(unix_now())).expect("serialize");
    let tree = |b: &[u8]| rmpv::decode::read_value(&mut &b[..]).expect("decodes");
    assert_eq!(
        tree(&frame),
        tree(&theirs),
        "the reference mirror has the wire shape"
    );
    eprintln!(
        "frame sizes: ours {} bytes ({} per 64 KiB write), rmp-serde {} bytes",
        frame.len(),
        CHUNK / frame.len(),
        theirs.len()
    );

    let ours = Ours::new();
    let limit = socket_limit(&frame);
    let refd = reference();
    // Warm-up: connections, heartbeat, buffers and queue slots at their working size.
    ours.run(20_000);
    limit.run(20_000);
    refd.run(20_000);

    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(1));
    g.bench_function("geneva_audit_try_send", |b| b.iter_custom(|n| ours.run(n)));
    g.bench_function("socket_limit_64k_writes", |b| {
        b.iter_custom(|n| limit.run(n))
    });
    g.bench_function("reference_rmp_serde_write_per_record", |b| {
        b.iter_custom(|n| refd.run(n))
    });
    g.finish();

    // Interleaved rounds: the three alternate, so a noisy neighbour hits all of them;
    // per-thread CPU time is summed for each.
    // Rounds long enough that starting and draining the queue and the socket do not
    // weigh; the reference, ten times slower, sends a fifth as many.
    let (rounds, n) = if quick { (1, 2_000) } else { (11, 400_000) };
    let ns = [n, n, n / 5, n];
    let names = [
        "geneva_audit_try_send",
        "socket_limit_64k_writes",
        "reference_rmp_serde_write_per_record",
        "geneva_audit_try_send_then_send_timeout",
    ];
    let mut rates: [Vec<f64>; 4] = Default::default();
    let mut cpu: [Vec<(String, u64)>; 4] = Default::default();
    for _ in 0..rounds {
        for (i, acc) in cpu.iter_mut().enumerate() {
            let before = cpu_snapshot();
            let n = ns[i];
            let d = match i {
                0 => ours.run(n),
                1 => limit.run(n),
                2 => refd.run(n),
                _ => ours.run_with(n, WhenFull::Wait),
            };
            cpu_add(acc, &before, &cpu_snapshot());
            rates[i].push(n as f64 / d.as_secs_f64());
        }
    }
    let list = |v: &[f64], prec: usize| {
        v.iter()
            .map(|x| format!("{x:.prec$}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for ((name, r), n) in names.into_iter().zip(&rates).zip(ns) {
        println!(
            "pipeline/interleaved {name}: median {:.0} records/s over {rounds} rounds of {n} [{}]",
            median(r),
            list(r, 0)
        );
    }
    for (ours_name, i) in [("ours", 0), ("ours_waiting", 3)] {
        for (other, j) in [("socket_limit", 1), ("reference", 2)] {
            let ratios: Vec<f64> = (0..rounds).map(|r| rates[i][r] / rates[j][r]).collect();
            println!(
                "pipeline/interleaved ratio {ours_name}/{other}: median {:.3} [{}]",
                median(&ratios),
                list(&ratios, 3)
            );
        }
    }
    for ((name, acc), n) in names.into_iter().zip(&cpu).zip(ns) {
        print_cpu(name, acc, rounds as u64 * n);
    }

    latency::latency_report(&ours, quick);

    let stats = ours.client.stats();
    println!(
        "pipeline/ours stats: written {} refused_full {} write_errors {} heartbeats {}",
        stats.written, stats.refused_full, stats.write_errors, stats.heartbeats_sent
    );
    let (written, bytes) = ours.finish();
    let limit_bytes = limit.finish();
    let ref_bytes = refd.finish();
    eprintln!(
        "checked: ours wrote {written} records ({bytes} bytes, all read); socket limit \
         {limit_bytes} bytes and reference {ref_bytes} bytes, all read"
    );
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
