//! Reliability under faults: the client against an agent that crashes, is
//! absent, never reads, or whose socket path turns into something else; many producers;
//! reconnect churn; close races. Every scenario prints its figures (run with
//! `--nocapture`); RELIABILITY.md collects them.
//!
//! The scenarios measure process-wide things (the CPU time of the client's threads, the
//! resident memory, open descriptors, threads) and latencies, so they run one at a time
//! (`serial`). Debug builds (the CI run) send fewer records; the figures say which.

#[path = "../common/mod.rs"]
mod common;

mod absent;
mod absent_spooled;
mod churn;
mod close_races;
mod crashes;
mod never_reads;
mod producers;
mod socket_path;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use geneva_audit::agent::{FrameErrorKind, ReceivedFrame, TestAgent};
use geneva_audit::{Backoff, Client, Event, FlushError, LossReason, Record, SendError, Stats};

static SERIAL: Mutex<()> = Mutex::new(());

/// One scenario at a time: they measure the whole process.
fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

const DEBUG: bool = cfg!(debug_assertions);

fn build() -> &'static str {
    if DEBUG {
        "debug build: record counts scaled down"
    } else {
        "release build"
    }
}

/// Deadline for the long waits of the big scenarios (a debug build on a loaded 2-core
/// machine is slow).
const LONG: Duration = Duration::from_secs(120);

/// The longest `close(1 s)` may take: its deadline, the quarter second its threads get
/// to stop, and 1.75 s for a loaded 2-core machine's preemptions.
const CLOSE_1S_BOUND: Duration = Duration::from_secs(3);

/// The `t` custom value of a record frame (the producer thread), if any.
fn thread_of(frame: &ReceivedFrame) -> Option<u64> {
    frame.custom("t").and_then(|v| v.as_u64())
}

/// The `seq` custom value of a handed-back record.
fn record_seq(record: &Record) -> u64 {
    record
        .get_operation_name()
        .strip_prefix("Operation")
        .and_then(|n| n.parse().ok())
        .expect("a numbered record")
}

fn record_thread(record: &Record) -> Option<u64> {
    record.get_custom_data().iter().find_map(|(k, v)| {
        if k == "t" {
            match v {
                geneva_audit::Value::UInt(t) => Some(*t),
                geneva_audit::Value::Int(t) => u64::try_from(*t).ok(),
                _ => None,
            }
        } else {
            None
        }
    })
}

/// Takes frames off the agent until `done` says enough arrived, waiting on the agent's
/// state (not polling) up to `timeout`; returns the record seqs in arrival order.
fn collect_seqs(
    agent: &TestAgent,
    timeout: Duration,
    mut into: Vec<ReceivedFrame>,
    mut done: impl FnMut(&[ReceivedFrame]) -> bool,
) -> Vec<ReceivedFrame> {
    let deadline = Instant::now() + timeout;
    loop {
        into.extend(agent.take_frames());
        if done(&into) {
            return into;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if let Err(e) = agent.wait_for("more frames", left, |s| s.frames > 0) {
            panic!("{e}");
        }
    }
}

/// The records in the order they first arrived, and how many arrivals were repeats.
fn first_arrivals(seqs: &[u64]) -> (Vec<u64>, u64) {
    let mut seen = std::collections::HashSet::new();
    let firsts: Vec<u64> = seqs.iter().copied().filter(|s| seen.insert(*s)).collect();
    let repeats = (seqs.len() - firsts.len()) as u64;
    (firsts, repeats)
}
