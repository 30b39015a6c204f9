//! `try_send` latency percentiles (the bench's closing lines): a busy writer, an idle
//! one, and the controls beside them.

use super::*;

/// The nearest-rank percentile of sorted samples.
fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn print_latency(what: &str, samples: &mut [u64]) {
    samples.sort_unstable();
    println!(
        "pipeline/latency {what}: n={} p50={} ns p99={} ns p99.9={} ns max={} ns",
        samples.len(),
        pct(samples, 50.0),
        pct(samples, 99.0),
        pct(samples, 99.9),
        samples.last().copied().unwrap_or(0),
    );
}

/// The writer thread's scheduler state (`S` sleeping, `R` running), from /proc.
fn writer_state() -> Option<char> {
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let task = task.ok()?.path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if comm.trim() == "geneva-audit-wr" {
            let stat = std::fs::read_to_string(task.join("stat")).ok()?;
            return stat.rsplit_once(") ")?.1.chars().next();
        }
    }
    None
}

/// What the idle loop does right before the timed call.
#[derive(Clone, Copy, PartialEq)]
enum Idle {
    /// `try_send` after ~2 ms asleep: the measurement asked for.
    TrySend,
    /// Control: the caller first runs validation, the size bound and the clock on a
    /// copy, so only the queue hand-off (and the shared counters) can be cold.
    TrySendPrewarmed,
    /// Control: only what `try_send` does before the hand-off (validation, the size
    /// bound, the clock), no `try_send`.
    ChecksOnly,
    /// Floor: nothing between the two clock reads.
    Nothing,
}

/// One record per ~2 ms, so the writer has written the last one and parked; returns the
/// time of the call after each sleep.
fn idle_samples(ours: &Ours, n: usize, what: Idle) -> Vec<u64> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        thread::sleep(Duration::from_millis(2));
        let checks = |r: &Record| {
            black_box(r.validate().is_ok());
            black_box(encoded_len_bound(SID, r));
            black_box(unix_now());
        };
        if what == Idle::TrySendPrewarmed {
            checks(&black_box(ours.template.clone()));
        }
        let record = ours.template.clone();
        let t = Instant::now();
        match what {
            Idle::TrySend | Idle::TrySendPrewarmed => {
                let result = ours.client.try_send(record);
                samples.push(t.elapsed().as_nanos() as u64);
                result.expect("idle try_send");
            }
            Idle::ChecksOnly => {
                checks(&record);
                samples.push(t.elapsed().as_nanos() as u64);
            }
            Idle::Nothing => samples.push(t.elapsed().as_nanos() as u64),
        }
    }
    ours.client.flush(PATIENCE).expect("flush");
    samples
}

/// Controls for the idle case that leave this crate out: a bare crossbeam channel whose
/// consumer polls the way the writer does (takes what is there, yields, then parks for
/// 1 ms), with the producer timing one `try_send` of an item the size of ours ~2 ms after
/// the last; and, separately, one load of a counter the consumer last wrote. They show
/// what any hand-off through the chosen queue, and any one cache line the other core
/// wrote, costs a producer that has just woken on this machine.
fn bare_queue_samples(n: usize) -> (Vec<u64>, Vec<u64>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    type Item = (i64, [u64; 34]); // 280 bytes, about a queued `(i64, usize, Record)`
    let (tx, rx) = crossbeam_channel::bounded::<Item>(2048);
    let stop = Arc::new(AtomicBool::new(false));
    let taken = Arc::new(AtomicU64::new(0));
    let consumer = {
        let (stop, taken) = (Arc::clone(&stop), Arc::clone(&taken));
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match rx.try_recv() {
                    Ok(item) => {
                        black_box(item);
                        taken.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        for _ in 0..64 {
                            thread::yield_now();
                        }
                        thread::park_timeout(Duration::from_millis(1));
                    }
                }
            }
        })
    };
    let item: Item = (0, [7; 34]);
    let mut send = Vec::with_capacity(n);
    let mut load = Vec::with_capacity(n);
    for _ in 0..n {
        thread::sleep(Duration::from_millis(2));
        let t = Instant::now();
        let result = tx.try_send(black_box(item));
        send.push(t.elapsed().as_nanos() as u64);
        result.expect("bare try_send");
        thread::sleep(Duration::from_millis(2));
        let t = Instant::now();
        black_box(taken.load(Ordering::Relaxed));
        load.push(t.elapsed().as_nanos() as u64);
    }
    stop.store(true, Ordering::Relaxed);
    consumer.thread().unpark();
    consumer.join().expect("consumer");
    (send, load)
}

/// `try_send` latency, busy and idle writer; percentiles computed here, since criterion
/// reports means.
pub(crate) fn latency_report(ours: &Ours, quick: bool) {
    let (busy_n, idle_n, control_n) = if quick {
        (2_000, 20, 10)
    } else {
        (200_000, 3_000, 1_000)
    };
    let client = &ours.client;

    // The clock's own cost, hot: two back-to-back reads.
    let mut clock: Vec<u64> = (0..10_000)
        .map(|_| {
            let t = Instant::now();
            t.elapsed().as_nanos() as u64
        })
        .collect();
    print_latency("clock floor, hot (Instant pair)", &mut clock);

    // (a) Busy writer: records streaming back to back. Every call is timed; accepted
    // and refused (QueueFull) calls are kept apart.
    let mut accepted = Vec::with_capacity(busy_n);
    let mut refused = Vec::with_capacity(busy_n);
    for _ in 0..busy_n {
        let mut record = ours.template.clone();
        loop {
            let t = Instant::now();
            let result = client.try_send(record);
            let dt = t.elapsed().as_nanos() as u64;
            match result {
                Ok(()) => {
                    accepted.push(dt);
                    break;
                }
                Err(SendError::QueueFull(back)) => {
                    if refused.len() < refused.capacity() {
                        refused.push(dt);
                    }
                    record = back;
                    thread::yield_now();
                }
                Err(e) => panic!("record refused: {e}"),
            }
        }
    }
    client.flush(PATIENCE).expect("flush");
    print_latency("try_send busy writer, accepted", &mut accepted);
    print_latency("try_send busy writer, QueueFull", &mut refused);

    // (b) Idle writer, and two controls that tell a cold caller from a slow hand-off.
    let mut idle = idle_samples(ours, idle_n, Idle::TrySend);
    print_latency("try_send idle writer (2 ms apart)", &mut idle);
    let mut warm = idle_samples(ours, control_n, Idle::TrySendPrewarmed);
    print_latency(
        "control: try_send idle writer, caller pre-warmed",
        &mut warm,
    );
    let mut checks = idle_samples(ours, control_n, Idle::ChecksOnly);
    print_latency(
        "control: validation, size bound and clock alone, after 2 ms asleep",
        &mut checks,
    );
    let mut floor = idle_samples(ours, control_n, Idle::Nothing);
    print_latency("control: clock floor after 2 ms asleep", &mut floor);
    let (mut bare, mut load) = bare_queue_samples(control_n);
    print_latency(
        "control: bare crossbeam try_send, 280-byte item, idle consumer",
        &mut bare,
    );
    print_latency(
        "control: one load of a counter the idle consumer last wrote",
        &mut load,
    );

    // Checks that "idle" means parked: the writer's state right before a send, in a
    // separate pass (reading /proc would disturb the timed pass).
    let checks = if quick { 5 } else { 200 };
    let mut sleeping = 0;
    for _ in 0..checks {
        thread::sleep(Duration::from_millis(2));
        if writer_state() == Some('S') {
            sleeping += 1;
        }
        send_one(client, ours.template.clone());
    }
    client.flush(PATIENCE).expect("flush");
    println!(
        "pipeline/latency idle check: writer thread asleep before {sleeping} of {checks} sends"
    );
}
