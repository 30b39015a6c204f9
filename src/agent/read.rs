//! A connection's reader thread: reads at the pace the agent's faults allow, splits the
//! bytes into frames and records them.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use socket2::Socket;

use super::as_u64;
use super::frame::{FrameError, FrameErrorKind, ReceivedFrame};
use super::splitter::FrameSplitter;
use super::state::{Shared, State};

/// How much one `read` on a connection asks for.
const READ_CHUNK: usize = 64 * 1024;

/// Stack size of the connection reader threads: decoding recurses once per nesting level,
/// and [`MAX_NESTING`](super::MAX_NESTING) levels need well under this even in a debug
/// build.
pub(super) const READER_STACK: usize = 2 * 1024 * 1024;

/// Reads one connection until it closes or the agent closes it.
pub(super) fn read_loop(shared: &Shared, id: u64, socket: &Socket) {
    let mut splitter = FrameSplitter::for_connection(id, shared.max_frame_len);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut next_read: Option<Instant> = None;
    let mut received = 0u64;
    loop {
        let Some(len) = wait_to_read(shared, id, next_read) else {
            return;
        };
        let chunk = buf.get_mut(..len).unwrap_or_default();
        let outcome = match (&*socket).read(chunk) {
            Ok(0) => Outcome::Ended(None),
            Ok(n) => {
                received = received.saturating_add(as_u64(n));
                next_read = next_read_after(shared, n);
                Outcome::Results(splitter.push(chunk.get(..n).unwrap_or_default()))
            }
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => {
                    continue;
                }
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe => Outcome::Ended(None),
                _ => Outcome::Ended(Some(e)),
            },
        };
        let keep_reading = match outcome {
            Outcome::Results(results) => deliver(shared, id, results) && !splitter.is_failed(),
            Outcome::Ended(error) => {
                deliver_end(shared, id, &mut splitter, error, received);
                false
            }
        };
        if !keep_reading {
            let mut state = shared.state.lock();
            if let Some(connection) = state.connection(id) {
                connection.open = false;
                connection.socket = None;
            }
            drop(state);
            shared.changed.notify_all();
            return;
        }
    }
}

/// Waits while reading is stopped or the rate cap says not yet, then says how much to
/// read; `None` once the connection is closed.
fn wait_to_read(shared: &Shared, id: u64, next_read: Option<Instant>) -> Option<usize> {
    let mut state = shared.state.lock();
    loop {
        if !state.is_open(id) {
            return None;
        }
        if state.reading_paused() {
            shared.changed.wait(&mut state);
            continue;
        }
        match (state.read_rate, next_read) {
            (Some(_), Some(at)) if Instant::now() < at => {
                let _ = shared.changed.wait_until(&mut state, at);
            }
            (rate, _) => return Some(read_len(rate)),
        }
    }
}

/// When the rate cap allows the next read, after reading `n` bytes.
fn next_read_after(shared: &Shared, n: usize) -> Option<Instant> {
    let rate = shared.state.lock().read_rate;
    rate.filter(|&r| r > 0)
        .and_then(|rate| Duration::try_from_secs_f64(n as f64 / rate as f64).ok())
        .and_then(|pause| Instant::now().checked_add(pause))
}

/// The connection has ended: a frame cut off by its end, and a read error, are errors.
fn deliver_end(
    shared: &Shared,
    id: u64,
    splitter: &mut FrameSplitter,
    error: Option<io::Error>,
    received: u64,
) {
    let mut results: Vec<_> = splitter.finish().map(Err).into_iter().collect();
    if let Some(e) = error {
        results.push(Err(FrameError {
            kind: FrameErrorKind::Io,
            detail: format!("reading failed: {e}"),
            connection: id,
            frame_offset: received,
            offset: received,
        }));
    }
    deliver(shared, id, results);
}

enum Outcome {
    Results(Vec<Result<ReceivedFrame, FrameError>>),
    Ended(Option<io::Error>),
}

fn read_len(rate: Option<u64>) -> usize {
    match rate {
        None => READ_CHUNK,
        Some(rate) => usize::try_from(rate / 20)
            .unwrap_or(READ_CHUNK)
            .clamp(1, READ_CHUNK),
    }
}

/// Records a reader's results, unless the agent closed the connection meanwhile; holds
/// them back while reading is stopped. Returns whether to go on reading.
fn deliver(shared: &Shared, id: u64, results: Vec<Result<ReceivedFrame, FrameError>>) -> bool {
    if results.is_empty() {
        return true;
    }
    let mut state = shared.state.lock();
    loop {
        if !state.is_open(id) {
            // Frames the reader had already taken from the kernel when the agent was
            // killed were received: the kernel, not the agent, discards the rest. A frame
            // cut off by the kill is not an error of the stream.
            if state.connection(id).is_some_and(|c| c.killed) {
                let frames = results.into_iter().filter(Result::is_ok).collect();
                record(&mut state, id, frames);
                drop(state);
                shared.changed.notify_all();
            }
            return false;
        }
        if !state.reading_paused() {
            break;
        }
        shared.changed.wait(&mut state);
    }
    let keep = record(&mut state, id, results);
    drop(state);
    shared.changed.notify_all();
    keep
}

fn record(state: &mut State, id: u64, results: Vec<Result<ReceivedFrame, FrameError>>) -> bool {
    let limit = state.drop_after;
    for result in results {
        match result {
            Ok(frame) => {
                let Some(connection) = state.connection(id) else {
                    return false;
                };
                if limit.is_some_and(|limit| connection.frames >= limit) {
                    return false;
                }
                connection.frames = connection.frames.saturating_add(1);
                let reached = limit.is_some_and(|limit| connection.frames >= limit);
                state.total_frames = state.total_frames.saturating_add(1);
                state.frames.push(frame);
                if reached {
                    return false;
                }
            }
            Err(error) => state.errors.push(error),
        }
    }
    true
}
