//! Connecting and reconnecting: records wait for an absent agent, failed connects and
//! writes time out and are retried with a backoff, never in a hot loop, and an agent
//! whose socket appears is connected to at once.

mod common;

use std::time::{Duration, Instant};

use common::*;
use geneva_audit::agent::TestAgent;
use geneva_audit::{Backoff, Client, Event, FlushError, Transport};

#[test]
fn records_queue_while_the_agent_is_absent_and_arrive_in_order() {
    let dir = TempDir::new("absent");
    let client = builder().unix_socket(dir.socket()).build().unwrap();
    let notifications = client.notifications();
    send_range(&client, 0, 100);
    // The supervisor reports the failures, naming the path and the OS error.
    let n = notifications.recv_timeout(PATIENCE).unwrap();
    match n.event {
        Event::ConnectFailed {
            destination, kind, ..
        } => {
            assert!(destination.contains(dir.socket().to_str().unwrap()));
            assert_eq!(kind, std::io::ErrorKind::NotFound);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        client.flush(Duration::from_millis(50)),
        Err(FlushError::Timeout { pending: 100 })
    ));
    let agent = TestAgent::unix(dir.socket()).unwrap();
    client.flush(PATIENCE).unwrap();
    let frames = agent.wait_for_frames(101, PATIENCE).unwrap();
    assert_eq!(seqs(&frames), (0..100).collect::<Vec<_>>());
    let stats = client.stats();
    assert!(stats.connect_failures >= 1);
    assert_eq!(stats.connects, 1);
    client.close(PATIENCE);
}

#[test]
fn a_connect_that_hangs_fails_at_the_connect_timeout() {
    // A listener that never accepts, its backlog full: the kernel drops further SYNs, so
    // a connect to it hangs until the caller gives up.
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let mut queued = Vec::new();
    while let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
        queued.push(s);
        assert!(queued.len() < 100, "the backlog never filled");
    }
    let client = builder()
        .tcp(addr.to_string())
        .connect_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let notifications = client.notifications();
    let started = Instant::now();
    match notifications.recv_timeout(PATIENCE).unwrap().event {
        Event::ConnectFailed { kind, .. } => assert_eq!(kind, std::io::ErrorKind::TimedOut),
        other => panic!("expected ConnectFailed, got {other:?}"),
    }
    // Without the timeout the kernel would retry its SYN for minutes.
    assert!(started.elapsed() < Duration::from_secs(10));
    client.close(Duration::ZERO);
}

#[test]
fn a_write_to_an_agent_that_never_reads_times_out_and_reconnects() {
    let (_dir, _agent, client) = stalled_with("never-reads", |b| {
        b.queue_capacity(64)
            .write_timeout(Duration::from_millis(100))
    });
    let notifications = client.notifications();
    // Keep offering records until the socket buffers are full, a write times out and
    // the client drops the connection (records refused as QueueFull are not accepted).
    let mut n = 0u64;
    wait_until("a timed-out write", || {
        if client.try_send(record(n)).is_ok() {
            n += 1;
        }
        notifications.try_iter().any(|n| {
            matches!(
                n.event,
                Event::WriteFailed {
                    kind: std::io::ErrorKind::TimedOut,
                    ..
                }
            )
        })
    });
    wait_until("a reconnection", || client.stats().connects >= 2);
    // The agent still reads nothing: close gives up at its deadline.
    let s = client.close(Duration::from_millis(300)).stats;
    assert_eq!(s.accepted, s.written + s.lost);
    assert!(s.write_errors >= 1);
}

#[test]
fn an_agent_that_drops_every_connection_is_not_reconnected_to_in_a_hot_loop() {
    let dir = TempDir::new("crash-loop");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    agent.set_refuse_connections(true);
    let client = builder().unix_socket(dir.socket()).build().unwrap();
    send_range(&client, 0, 20);
    // The passage of time is what is measured here: a second (or more, on a loaded
    // machine) of a crash-looping agent.
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let s = client.stats();
    let window = started.elapsed().as_secs_f64();
    // Backoff from 5 ms to 50 ms allows about 25 attempts a second; a hot loop made
    // thousands.
    assert!(
        s.connects as f64 <= 60.0 * window.ceil(),
        "{} connections in {window:.2} s",
        s.connects
    );
    assert!(s.connects >= 3, "the client stopped trying: {s:?}");
    drop(agent);
    client.close(Duration::ZERO);
}

#[test]
fn a_connection_that_worked_starts_the_backoff_over() {
    let dir = TempDir::new("backoff-reset");
    let client = builder().unix_socket(dir.socket()).build().unwrap();
    let notifications = client.notifications();
    let failures = |n: geneva_audit::Notification| match n.event {
        Event::ConnectFailed { failures, .. } => Some(failures),
        _ => None,
    };
    // The agent is absent: failures pile up and the backoff grows.
    while failures(notifications.recv_timeout(PATIENCE).unwrap()).unwrap_or(0) < 3 {}
    let agent = TestAgent::unix(dir.socket()).unwrap();
    send_range(&client, 0, 1);
    client.flush(PATIENCE).unwrap();
    agent.wait_for_frames(2, PATIENCE).unwrap();
    // A connection counts as good once the agent read from it (or it lasted a second):
    // the flush returned, so the kernel showed the agent reading record 0 from it.
    assert_eq!(client.stats().delivered, 1);
    let _earlier: Vec<_> = notifications.try_iter().collect();
    agent.kill();
    // The idle writer learns of the death from its next write.
    send_range(&client, 1, 1);
    // The next failure is the first of a new run, not the fourth of the old one.
    let next = loop {
        if let Some(n) = failures(notifications.recv_timeout(PATIENCE).unwrap()) {
            break n;
        }
    };
    assert_eq!(next, 1);
    client.close(Duration::ZERO);
}

/// A client of `transport` whose backoff waits 20 s after the first failure, and 40 s
/// after the second.
fn client_with_a_long_backoff(transport: Transport) -> Client {
    builder()
        .transport(transport)
        .backoff(Backoff {
            initial: Duration::from_secs(20),
            max: Duration::from_secs(60),
            multiplier: 2.0,
            full_jitter: false,
        })
        .build()
        .unwrap()
}

#[test]
fn an_agent_whose_socket_appears_is_connected_to_at_once_not_after_the_backoff() {
    let dir = TempDir::new("appears");
    let client = client_with_a_long_backoff(Transport::Unix(dir.socket()));
    send_range(&client, 0, 1);
    wait_until("a failed attempt", || client.stats().connect_failures >= 1);
    let started = Instant::now();
    let agent = TestAgent::unix(dir.socket()).unwrap();
    agent.wait_for_frames(1, PATIENCE).unwrap();
    let took = started.elapsed();
    println!(
        "connected {took:?} after the socket appeared; {} failed attempts",
        client.stats().connect_failures
    );
    assert!(took < Duration::from_secs(5), "connected after {took:?}");
    assert_eq!(client.stats().connects, 1);
    client.close(PATIENCE);
}

#[test]
fn an_agent_appearing_in_a_directory_made_later_is_connected_to_at_once() {
    // The agent's directory exists, its ASA directory not yet: that one is made, and the
    // agent's socket appears in it.
    let dir = TempDir::new("appears-asa");
    let client = client_with_a_long_backoff(Transport::AgentDir(dir.0.clone()));
    send_range(&client, 0, 1);
    wait_until("a failed attempt", || client.stats().connect_failures >= 1);
    let started = Instant::now();
    std::fs::create_dir(dir.0.join("asa")).unwrap();
    let agent = TestAgent::unix(dir.0.join("asa/default_fluent.socket")).unwrap();
    agent.wait_for_frames(1, PATIENCE).unwrap();
    let took = started.elapsed();
    println!(
        "connected {took:?} after the socket appeared; {} failed attempts",
        client.stats().connect_failures
    );
    assert!(took < Duration::from_secs(5), "connected after {took:?}");
    client.close(PATIENCE);
}
