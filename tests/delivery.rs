//! Delivered means the agent read it: `flush`, `close` and the counters speak only of
//! records the kernel showed the agent reading, every record not shown read comes back
//! from `close`, and every connection the agent reads from moves the stream forward.
//!
//! Besides the crate's test agent, these tests use a [`Crasher`]: an agent that reads in
//! 64 KiB chunks, keeps every whole frame it read (as a real agent would have received
//! them) and drops the connection after a given number of frames, leaving the rest
//! unread in the kernel, as a crashing agent does. It splits frames with rmpv, not with
//! the crate's splitter: the judge is not the crate.

mod common;
#[path = "support/stream.rs"]
mod stream;

use std::collections::{BTreeSet, HashSet};
use std::io::Read;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::*;
use geneva_audit::agent::TestAgent;
use geneva_audit::{FlushError, Record};

/// An agent that drops each connection once it has read `every` frames or more.
struct Crasher {
    /// The `seq` of every record frame it read whole, with the connection it came on.
    received: Arc<Mutex<Vec<(u64, u64)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Crasher {
    fn start(path: &Path, every: u64) -> Crasher {
        let listener = UnixListener::bind(path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (received, stop) = (Arc::clone(&received), Arc::clone(&stop));
            thread::spawn(move || {
                let mut connection = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let Ok((mut socket, _)) = listener.accept() else {
                        thread::park_timeout(Duration::from_millis(1));
                        continue;
                    };
                    socket.set_nonblocking(false).unwrap();
                    socket
                        .set_read_timeout(Some(Duration::from_millis(20)))
                        .unwrap();
                    let mut splitter = stream::Frames::default();
                    let mut frames = 0u64;
                    let mut buf = vec![0u8; 64 * 1024];
                    while frames < every && !stop.load(Ordering::SeqCst) {
                        let n = match socket.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => n,
                            Err(_) => continue,
                        };
                        for frame in splitter.push(&buf[..n]) {
                            frames += 1;
                            if let Some(seq) = stream::record_seq(&frame) {
                                received.lock().unwrap().push((seq, connection));
                            }
                        }
                    }
                    // Dropped with whatever the client wrote after that still unread.
                    drop(socket);
                    connection += 1;
                }
            })
        };
        Crasher {
            received,
            stop,
            thread: Some(thread),
        }
    }

    fn received(&self) -> Vec<(u64, u64)> {
        self.received.lock().unwrap().clone()
    }

    /// Stops accepting and reading (a last crash).
    fn crash(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Crasher {
    fn drop(&mut self) {
        self.crash();
    }
}

fn seq_of(record: &Record) -> u64 {
    record.get_operation_name()["Operation".len()..]
        .parse()
        .unwrap()
}

/// Every record in `0..n` arrived at least once or was handed back, and the counters
/// add up with nothing in flight.
fn assert_none_missing_unreported(
    n: u64,
    received: &HashSet<u64>,
    unsent: &[Record],
    s: geneva_audit::Stats,
) {
    let unsent: Vec<u64> = unsent.iter().map(seq_of).collect();
    let back: HashSet<u64> = unsent.iter().copied().collect();
    let missing: BTreeSet<u64> = (0..n)
        .filter(|i| !received.contains(i) && !back.contains(i))
        .collect();
    assert!(
        missing.is_empty(),
        "{} neither read nor handed back, from {:?} to {:?}",
        missing.len(),
        missing.first(),
        missing.last()
    );
    assert!(unsent.windows(2).all(|w| w[0] < w[1]), "{unsent:?}");
    assert_eq!(s.accepted, n);
    assert_eq!(s.accepted, s.delivered + s.lost, "{s:?}");
    assert_eq!((s.pending, s.in_flight), (0, 0), "{s:?}");
    assert_eq!(s.lost, unsent.len() as u64, "{s:?}");
}

#[test]
fn an_agent_crashing_every_few_frames_loses_nothing_unreported_even_after_close() {
    let dir = TempDir::new("crash-every");
    let mut agent = Crasher::start(&dir.socket(), 5_000);
    let client = builder().unix_socket(dir.socket()).build().unwrap();
    let n = 30_000;
    send_range(&client, 0, n);
    let report = client.close(Duration::from_secs(2));
    // The agent crashes again the moment close returns.
    agent.crash();
    let received = agent.received();
    let distinct: HashSet<u64> = received.iter().map(|(s, _)| *s).collect();
    let crashes = received.iter().map(|(_, c)| *c).max().unwrap_or(0);
    println!(
        "[crash every 5,000 frames] {} connections, {} records read ({} duplicates, {:.1} per \
         crash), {} delivered, {} handed back, {} replayed",
        crashes + 1,
        received.len(),
        received.len() - distinct.len(),
        (received.len() - distinct.len()) as f64 / crashes.max(1) as f64,
        report.delivered,
        report.unsent.len(),
        report.stats.replayed,
    );
    assert_none_missing_unreported(n, &distinct, &report.unsent, report.stats);
    // Nothing counted delivered is missing: as many distinct records arrived.
    assert!(distinct.len() as u64 >= report.delivered);
}

#[test]
fn a_slow_agent_killed_the_moment_close_returns_misses_nothing_counted_delivered() {
    let dir = TempDir::new("slow-kill");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    agent.set_read_rate(Some(2_000_000));
    let client = builder().unix_socket(dir.socket()).build().unwrap();
    let n = 20_000;
    send_range(&client, 0, n);
    let report = client.close(Duration::from_millis(500));
    agent.kill();
    let received: HashSet<u64> = seqs(&agent.frames()).into_iter().collect();
    println!(
        "[slow agent, killed at close] {} read, {} delivered, {} handed back",
        received.len(),
        report.delivered,
        report.unsent.len()
    );
    assert!(
        !report.unsent.is_empty(),
        "the agent was too fast to test this"
    );
    assert_none_missing_unreported(n, &received, &report.unsent, report.stats);
}

#[test]
fn an_agent_closing_after_each_frame_still_gets_every_record_one_per_connection() {
    let dir = TempDir::new("one-frame");
    let agent = Crasher::start(&dir.socket(), 1);
    let client = builder().unix_socket(dir.socket()).build().unwrap();
    let n = 20;
    let started = Instant::now();
    for i in 0..n {
        // 20 a second.
        let due = started + Duration::from_millis(50 * i);
        while Instant::now() < due {
            thread::park_timeout(due - Instant::now());
        }
        client.send_timeout(record(i), PATIENCE).unwrap();
    }
    client.flush(PATIENCE).unwrap();
    let report = client.close(PATIENCE);
    let received = agent.received();
    println!(
        "[one frame per connection] {} records over {} connections",
        received.len(),
        received
            .iter()
            .map(|(_, c)| c)
            .collect::<HashSet<_>>()
            .len()
    );
    // Each connection read one frame, always a record not read before: the stream
    // moved forward on every connection, in order.
    let seqs: Vec<u64> = received.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (0..n).collect::<Vec<_>>());
    // One per connection: a new connection carries one record until the agent reads
    // it, so no connection delivered two (the agent drops it after its first frame).
    let connections: HashSet<u64> = received.iter().map(|(_, c)| *c).collect();
    assert_eq!(
        connections.len(),
        received.len(),
        "a connection carried more than one record: {received:?}"
    );
    let s = report.stats;
    assert_eq!((s.delivered, s.lost), (n, 0), "{s:?}");
}

#[test]
fn close_of_a_client_whose_agent_never_reads_keeps_its_deadline_and_hands_everything_back() {
    let dir = TempDir::new("never-reads");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    agent.stop_reading();
    let client = builder()
        .unix_socket(dir.socket())
        .wait_for_connection(true)
        .build()
        .unwrap();
    send_range(&client, 0, 100);
    let started = Instant::now();
    let report = client.close(Duration::from_secs(1));
    let took = started.elapsed();
    println!("[agent never reads] close(1 s) took {took:?}");
    // Its deadline, the quarter second the threads get to stop, and a margin for a
    // loaded machine (the write timeout, 15 s, is what waiting on the agent would take).
    assert!(took < Duration::from_secs(3), "close took {took:?}");
    let back: Vec<u64> = report.unsent.iter().map(seq_of).collect();
    assert_eq!(back, (0..100).collect::<Vec<_>>());
    // Each keeps the time it was stamped with, to be sent again as it was.
    assert!(report.unsent.iter().all(|r| r.get_event_time().is_some()));
    assert_eq!((report.delivered, report.stats.lost), (0, 100));
}

#[test]
fn flush_across_an_agent_crash_returns_once_the_replayed_records_are_read() {
    let (_dir, agent, client) = stalled_with("flush-crash", |b| b);
    send_range(&client, 0, 200);
    // Written, not read: flush waits.
    assert!(matches!(
        client.flush(Duration::from_millis(200)),
        Err(FlushError::Timeout { pending }) if pending == 200 + 1
    ));
    agent.kill();
    agent.resume_reading();
    agent.restart().unwrap();
    client.flush(PATIENCE).unwrap();
    let s = client.stats();
    assert_eq!(s.delivered, s.accepted, "{s:?}");
    agent
        .wait_for("the replayed records", PATIENCE, |st| st.frames >= 201)
        .unwrap();
    let received: HashSet<u64> = seqs(&agent.frames()).into_iter().collect();
    assert!((0..200).all(|i| received.contains(&i)));
    client.close(PATIENCE);
}

#[test]
fn notifications_about_a_connection_come_in_the_order_things_happened() {
    let dir = TempDir::new("order");
    let agent = Crasher::start(&dir.socket(), 1);
    let client = builder().unix_socket(dir.socket()).build().unwrap();
    let events = client.notifications();
    for i in 0..5 {
        client.send_timeout(record(i), PATIENCE).unwrap();
        client.flush(PATIENCE).unwrap();
    }
    client.close(PATIENCE);
    drop(agent);
    // Each connection is told as it is made, then as it ends (the agent dropped it:
    // `WriteFailed`, or `AgentLeft` when the writer saw it go first), before the next
    // one is made: connected, ended, connected, ended, ..., the last one perhaps still
    // open at close.
    let mut story = String::new();
    for n in events.try_iter() {
        match n.event {
            geneva_audit::Event::Connected { .. } => story.push('C'),
            geneva_audit::Event::WriteFailed { .. } | geneva_audit::Event::AgentLeft { .. } => {
                story.push('E')
            }
            _ => {}
        }
    }
    let connected = story.matches('C').count();
    assert!(connected >= 5, "{story}");
    let want: String = "CE".repeat(connected);
    assert!(
        story == want || story == want[..want.len() - 1],
        "connections and their ends out of order: {story}"
    );
}

#[test]
fn over_tcp_only_acknowledged_records_count_delivered_and_the_rest_is_written_again_after_a_crash()
{
    // An agent on 127.0.0.1 whose reader stops: its kernel acknowledges what fits in its
    // receive buffer, the rest waits in the client's send buffer, unacknowledged.
    let agent = TestAgent::tcp("127.0.0.1:0").unwrap();
    let addr = agent.local_addr().unwrap();
    agent.stop_reading();
    let client = builder()
        .tcp(addr.to_string())
        .queue_capacity(64)
        .send_buffer_size(Some(64 * 1024))
        .write_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    // On TCP delivered means acknowledged by the agent's kernel: a flush returns once the
    // first record is, although the agent read nothing.
    client.try_send(record(0)).unwrap();
    client.flush(PATIENCE).unwrap();
    assert_eq!(agent.status().total_frames, 0);
    let n = fill_until_from(&client, 1, || {
        writer_blocked_writing_on(&connected_to_tcp(addr))
    });
    let before = client.stats();
    println!(
        "[tcp, agent not reading] {n} accepted, {} written, {} delivered (acknowledged, as \
         last seen), {} in flight",
        before.written, before.delivered, before.in_flight
    );
    // Written is not delivered: the records in the client's full send buffer, not
    // acknowledged, are in flight.
    assert!(before.delivered > 0, "{before:?}");
    assert!(before.in_flight > 0, "{before:?}");
    // The agent crashes (a reset): its kernel discards what it had acknowledged and the
    // agent had not read, and the client's unacknowledged bytes with it.
    agent.kill();
    assert_eq!(seqs(&agent.take_frames()), [] as [u64; 0]);
    agent.resume_reading();
    agent.restart().unwrap();
    client.flush(PATIENCE).unwrap();
    let s = client.stats();
    assert_eq!((s.delivered, s.accepted), (n, n), "{s:?}");
    // Everything not seen acknowledged is written again on the new connection, first,
    // in order, and every record after it follows: the new agent gets exactly the
    // records from the first one not seen acknowledged to the last. (Those acknowledged
    // and never read, the first one here, died with the agent's kernel: TCP's limit,
    // documented at `ClientBuilder::replay_unread`.)
    let frames = agent
        .wait_for("the records written again", PATIENCE, |st| {
            st.frames as u64 >= n - before.delivered
        })
        .map(|_| agent.frames())
        .unwrap();
    assert_consecutive(&seqs(&frames), before.delivered, n);
    // The records in flight, and those the blocked write finished handing over as the
    // reset ended it, were counted as written again.
    assert!(s.replayed >= before.in_flight, "{s:?}");
    let report = client.close(PATIENCE);
    assert!(report.unsent.is_empty());
    assert_eq!(report.stats.lost, 0);
}
