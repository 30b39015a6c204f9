//! The test agent over real sockets, fed frames encoded by hand with rmpv (not with the
//! crate's encoder).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use geneva_audit::agent::{Endpoint, FrameErrorKind, TestAgent};
use rmpv::Value;

/// Generous: waits end as soon as their condition holds.
const WAIT: Duration = Duration::from_secs(20);

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("ga-agent-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    fn sock(&self) -> PathBuf {
        self.0.join("agent.sock")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn frame_value(tag: &str, ts: i64, name: &str) -> Value {
    Value::Array(vec![
        Value::from(tag),
        Value::Array(vec![Value::Array(vec![
            Value::from(ts),
            Value::Map(vec![
                (Value::from("OperationName"), Value::from(name)),
                (
                    Value::from("CustomData"),
                    Value::Map(vec![(Value::from("seq"), Value::from(ts))]),
                ),
            ]),
        ])]),
        Value::Map(vec![(Value::from("TimeFormat"), Value::from("DateTime"))]),
    ])
}

fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, value).expect("encode");
    out
}

fn frame(ts: i64) -> Vec<u8> {
    encode(&frame_value("AsmAuditDP", ts, &format!("op{ts}")))
}

fn unix_client(agent: &TestAgent) -> UnixStream {
    UnixStream::connect(agent.path().expect("unix agent")).expect("connect")
}

fn tcp_client(agent: &TestAgent) -> TcpStream {
    TcpStream::connect(agent.local_addr().expect("tcp agent")).expect("connect")
}

/// A client socket of either kind.
trait Client: Read {
    fn read_timeout(&self, timeout: Duration);
}

impl Client for UnixStream {
    fn read_timeout(&self, timeout: Duration) {
        self.set_read_timeout(Some(timeout)).expect("read timeout");
    }
}

impl Client for TcpStream {
    fn read_timeout(&self, timeout: Duration) {
        self.set_read_timeout(Some(timeout)).expect("read timeout");
    }
}

/// Waits (up to a deadline, with a socket read timeout) until the peer closes `stream`.
fn assert_closed_by_peer(stream: &mut impl Client) {
    stream.read_timeout(WAIT);
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionReset) => {}
        other => panic!("expected the agent to close the connection, got {other:?}"),
    }
}

#[test]
fn several_frames_in_one_write() {
    let dir = TempDir::new();
    let agent = TestAgent::unix(dir.sock()).expect("agent");
    let bytes: Vec<u8> = (0..5).flat_map(frame).collect();
    unix_client(&agent).write_all(&bytes).expect("write");

    let frames = agent.wait_for_frames(5, WAIT).expect("5 frames");
    assert_eq!(frames.len(), 5);
    for (ts, f) in (0..).zip(&frames) {
        assert_eq!(f.tag, "AsmAuditDP");
        assert_eq!(f.ts, ts);
        assert_eq!(
            f.body_str("OperationName"),
            Some(format!("op{ts}").as_str())
        );
        assert_eq!(f.custom("seq").and_then(Value::as_i64), Some(ts));
        assert_eq!(f.option_str("TimeFormat"), Some("DateTime"));
        assert_eq!(f.raw, frame(ts));
        assert_eq!(f.connection, 0);
    }
    assert!(agent.errors().is_empty());
}

#[test]
fn one_frame_written_byte_by_byte() {
    let agent = TestAgent::tcp("127.0.0.1:0").expect("agent");
    let mut client = tcp_client(&agent);
    client.set_nodelay(true).expect("nodelay");
    let bytes = frame(42);
    for b in &bytes {
        client.write_all(std::slice::from_ref(b)).expect("write");
    }
    let frames = agent.wait_for_frames(1, WAIT).expect("1 frame");
    assert_eq!(frames[0].ts, 42);
    assert_eq!(frames[0].raw, bytes);
    assert!(agent.errors().is_empty());
}

#[test]
fn two_connections_are_numbered() {
    let dir = TempDir::new();
    let agent = TestAgent::unix(dir.sock()).expect("agent");
    let mut first = unix_client(&agent);
    agent.wait_for_connections(1, WAIT).expect("first");
    let mut second = unix_client(&agent);
    agent.wait_for_connections(2, WAIT).expect("second");

    second.write_all(&frame(2)).expect("write");
    agent.wait_for_frames(1, WAIT).expect("frame from second");
    first.write_all(&frame(1)).expect("write");
    let frames = agent.wait_for_frames(2, WAIT).expect("frame from first");
    assert_eq!((frames[0].ts, frames[0].connection), (2, 1));
    assert_eq!((frames[1].ts, frames[1].connection), (1, 0));
    assert_eq!(agent.status().open_connections, 2);

    drop(first);
    agent
        .wait_for("1 open connection", WAIT, |s| s.open_connections == 1)
        .expect("first closed");
    assert!(agent.errors().is_empty());
}

#[test]
fn malformed_bytes_become_an_error_and_close_the_connection() {
    let agent = TestAgent::tcp("127.0.0.1:0").expect("agent");
    let mut client = tcp_client(&agent);
    let good = frame(1);
    let mut bytes = good.clone();
    bytes.extend([0x93, 0xa1, b'T', 0xc1, 0xff, 0xff]);
    client.write_all(&bytes).expect("write");

    let errors = agent.wait_for_errors(1, WAIT).expect("an error");
    assert_eq!(errors[0].kind, FrameErrorKind::Malformed);
    assert_eq!(errors[0].connection, 0);
    assert_eq!(errors[0].frame_offset, good.len() as u64);
    assert_eq!(errors[0].offset, good.len() as u64 + 3);
    assert_eq!(agent.frames().len(), 1, "the good frame before it counts");
    assert_closed_by_peer(&mut client);

    // The agent lives on.
    tcp_client(&agent).write_all(&frame(2)).expect("write");
    let frames = agent
        .wait_for_frames(2, WAIT)
        .expect("a new connection works");
    assert_eq!((frames[1].ts, frames[1].connection), (2, 1));
}

#[test]
fn frame_shape_errors_are_reported() {
    let agent = TestAgent::tcp("127.0.0.1:0").expect("agent");
    // Valid MessagePack, wrong shape: two entries instead of one.
    let value = Value::Array(vec![
        Value::from("AsmAuditDP"),
        Value::Array(vec![
            Value::Array(vec![Value::from(1), Value::Map(vec![])]),
            Value::Array(vec![Value::from(2), Value::Map(vec![])]),
        ]),
        Value::Map(vec![]),
    ]);
    tcp_client(&agent)
        .write_all(&encode(&value))
        .expect("write");
    let errors = agent.wait_for_errors(1, WAIT).expect("an error");
    assert_eq!(errors[0].kind, FrameErrorKind::Shape);
    assert!(
        errors[0].detail.contains("exactly 1 entry"),
        "{}",
        errors[0]
    );
    assert!(agent.frames().is_empty());
}

#[test]
fn frame_over_the_cap_is_an_error() {
    let agent = TestAgent::builder()
        .max_frame_len(1024)
        .tcp("127.0.0.1:0")
        .expect("agent");
    let big = encode(&frame_value("AsmAuditDP", 1, &"x".repeat(2000)));
    let mut client = tcp_client(&agent);
    // The agent may close the connection before all of it is written.
    let _ = client.write_all(&big);
    let errors = agent.wait_for_errors(1, WAIT).expect("an error");
    assert_eq!(errors[0].kind, FrameErrorKind::TooLarge, "{}", errors[0]);
    assert!(agent.frames().is_empty());

    let small = frame(3);
    tcp_client(&agent).write_all(&small).expect("write");
    agent
        .wait_for_frames(1, WAIT)
        .expect("small frames still pass");
}

#[test]
fn client_closing_mid_frame_is_truncated() {
    let dir = TempDir::new();
    let agent = TestAgent::unix(dir.sock()).expect("agent");
    let bytes = frame(9);
    unix_client(&agent)
        .write_all(&bytes[..bytes.len() / 2])
        .expect("write");
    let errors = agent.wait_for_errors(1, WAIT).expect("an error");
    assert_eq!(errors[0].kind, FrameErrorKind::Truncated, "{}", errors[0]);
}

#[test]
fn kill_discards_unread_data_and_restart_serves_new_clients() {
    let dir = TempDir::new();
    let path = dir.sock();
    let agent = TestAgent::unix(&path).expect("agent");
    agent.stop_reading();
    let mut client = unix_client(&agent);
    agent.wait_for_connections(1, WAIT).expect("connected");
    for ts in 0..3 {
        client.write_all(&frame(ts)).expect("write");
    }
    agent.kill();
    assert!(!agent.is_running());
    assert!(agent.frames().is_empty(), "unread data must not be decoded");
    assert!(!path.exists(), "kill removes the socket file");
    assert_eq!(agent.status().open_connections, 0);
    assert!(
        client.write_all(&frame(3)).is_err(),
        "writing to a dead agent fails"
    );
    assert!(UnixStream::connect(&path).is_err());

    agent.resume_reading();
    agent.restart().expect("restart");
    assert!(agent.is_running());
    let mode = std::fs::metadata(&path)
        .expect("socket file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    unix_client(&agent).write_all(&frame(10)).expect("write");
    let frames = agent
        .wait_for_frames(1, WAIT)
        .expect("a frame after restart");
    assert_eq!((frames[0].ts, frames[0].connection), (10, 1));
    assert!(agent.errors().is_empty());
}

#[test]
fn kill_and_restart_twenty_times() {
    let dir = TempDir::new();
    let agent = TestAgent::unix(dir.sock()).expect("agent");
    let tcp = TestAgent::tcp("127.0.0.1:0").expect("agent");
    let port = tcp.local_addr().expect("addr");
    let started = Instant::now();
    for round in 0..20 {
        let mut client = unix_client(&agent);
        client.write_all(&frame(round)).expect("write");
        let mut tcp_stream = tcp_client(&tcp);
        tcp_stream.write_all(&frame(round)).expect("write");
        let frames = agent.wait_for_frames(1, WAIT).expect("frame");
        assert_eq!(agent.take_frames().len(), 1);
        assert_eq!(frames[0].connection, round as u64);
        let frames = tcp.wait_for_frames(1, WAIT).expect("frame");
        assert_eq!(tcp.take_frames().len(), 1);
        assert_eq!(frames[0].connection, round as u64);
        // Leave the clients connected: kill must not wait for them.
        agent.kill();
        tcp.kill();
        agent.restart().expect("restart unix");
        tcp.restart().expect("restart tcp");
        assert_eq!(tcp.local_addr(), Some(port));
    }
    assert_eq!(agent.connection_count(), 20);
    assert!(agent.errors().is_empty() && tcp.errors().is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "20 kill/restart rounds took {:?}",
        started.elapsed()
    );
}

#[test]
fn killed_tcp_agent_resets_its_clients() {
    let agent = TestAgent::tcp("127.0.0.1:0").expect("agent");
    agent.stop_reading();
    let mut client = tcp_client(&agent);
    agent.wait_for_connections(1, WAIT).expect("connected");
    client.write_all(&frame(1)).expect("write");
    agent.kill();
    assert!(agent.frames().is_empty());
    assert_closed_by_peer(&mut client);
    assert!(TcpStream::connect(agent.local_addr().expect("addr")).is_err());
    // Settings outlive a restart.
    agent.resume_reading();
    agent.restart().expect("restart");
    tcp_client(&agent).write_all(&frame(2)).expect("write");
    assert_eq!(agent.wait_for_frames(1, WAIT).expect("frame")[0].ts, 2);
}

#[test]
fn stopped_reading_fills_the_client_buffer() {
    let dir = TempDir::new();
    let agent = TestAgent::unix(dir.sock()).expect("agent");
    agent.stop_reading();
    let mut client = unix_client(&agent);
    client.set_nonblocking(true).expect("nonblocking");
    let one = frame(0);
    let mut frames_started = 0usize;
    let mut written_of_last = one.len();
    let limit = 256 * 1024 * 1024;
    let mut total = 0usize;
    let blocked = loop {
        assert!(total < limit, "wrote {total} bytes without blocking");
        if written_of_last == one.len() {
            frames_started += 1;
            written_of_last = 0;
        }
        match client.write(&one[written_of_last..]) {
            Ok(n) => {
                written_of_last += n;
                total += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break true,
            Err(e) => panic!("write failed: {e}"),
        }
    };
    assert!(blocked);
    assert!(
        agent.frames().is_empty(),
        "nothing is recorded while stopped"
    );
    let status = agent
        .wait_for_connections(1, WAIT)
        .expect("accepted while stopped");
    assert_eq!(status.open_connections, 1);

    agent.resume_reading();
    client.set_nonblocking(false).expect("blocking");
    client
        .write_all(&one[written_of_last..])
        .expect("finish the last frame");
    let frames = agent
        .wait_for_frames(frames_started, WAIT)
        .expect("everything arrives after resuming");
    assert_eq!(frames.len(), frames_started);
    assert!(agent.errors().is_empty());
}

#[test]
fn drop_after_n_frames_closes_the_connection() {
    let dir = TempDir::new();
    let agent = TestAgent::unix(dir.sock()).expect("agent");
    agent.set_drop_after(Some(2));
    let mut client = unix_client(&agent);
    let bytes: Vec<u8> = (0..4).flat_map(frame).collect();
    client.write_all(&bytes).expect("write");
    agent.wait_for_frames(2, WAIT).expect("two frames");
    assert_closed_by_peer(&mut client);
    agent
        .wait_for("no open connection", WAIT, |s| s.open_connections == 0)
        .expect("closed");
    let frames = agent.frames();
    assert_eq!(frames.iter().map(|f| f.ts).collect::<Vec<_>>(), [0, 1]);

    // The next connection gets two frames as well.
    unix_client(&agent).write_all(&bytes).expect("write");
    let frames = agent.wait_for_frames(4, WAIT).expect("two more");
    assert_eq!(frames[2].connection, 1);
    agent
        .wait_for("no open connection", WAIT, |s| s.open_connections == 0)
        .expect("closed");
    assert_eq!(agent.status().total_frames, 4);

    // Lifting the limit lets a connection deliver everything.
    agent.set_drop_after(None);
    unix_client(&agent).write_all(&bytes).expect("write");
    agent.wait_for_frames(8, WAIT).expect("all four");
    assert!(agent.errors().is_empty());
}

#[test]
fn refused_connections_are_closed_at_once() {
    let agent = TestAgent::tcp("127.0.0.1:0").expect("agent");
    agent.set_refuse_connections(true);
    assert_closed_by_peer(&mut tcp_client(&agent));
    let status = agent
        .wait_for("a refusal", WAIT, |s| s.refused == 1)
        .expect("refused");
    assert_eq!(status.connections, 0);

    agent.set_refuse_connections(false);
    tcp_client(&agent).write_all(&frame(5)).expect("write");
    let frames = agent.wait_for_frames(1, WAIT).expect("frame");
    assert_eq!(frames[0].connection, 0);
}

#[test]
fn disconnect_all_keeps_listening() {
    let agent = TestAgent::tcp("127.0.0.1:0").expect("agent");
    let mut a = tcp_client(&agent);
    let mut b = tcp_client(&agent);
    agent.wait_for_connections(2, WAIT).expect("connected");
    agent.disconnect_all();
    for client in [&mut a, &mut b] {
        client.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut buf = [0u8; 8];
        assert!(matches!(client.read(&mut buf), Ok(0)));
    }
    assert_eq!(agent.status().open_connections, 0);
    tcp_client(&agent).write_all(&frame(1)).expect("write");
    assert_eq!(
        agent.wait_for_frames(1, WAIT).expect("frame")[0].connection,
        2
    );
}

#[test]
fn read_rate_caps_throughput() {
    let agent = TestAgent::tcp("127.0.0.1:0").expect("agent");
    agent.set_read_rate(Some(20_000));
    let bytes: Vec<u8> = (0..300).flat_map(frame).collect();
    assert!(bytes.len() > 15_000);
    let started = Instant::now();
    tcp_client(&agent).write_all(&bytes).expect("write");
    agent.wait_for_frames(300, WAIT).expect("all frames");
    // At 20 kB/s, 15 kB cannot take less than about 0.75 s.
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "read {} bytes in {:?}",
        bytes.len(),
        started.elapsed()
    );
    agent.set_read_rate(None);
    assert!(agent.errors().is_empty());
}

#[test]
fn socket_file_is_owner_only_and_removed_on_drop() {
    let dir = TempDir::new();
    let path = dir.sock();
    let agent = TestAgent::unix(&path).expect("agent");
    assert_eq!(agent.endpoint(), &Endpoint::Unix(path.clone()));
    let mode = std::fs::metadata(&path)
        .expect("socket file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");

    // Dropping with a connected client and stopped reading must not hang.
    agent.stop_reading();
    let _client = unix_client(&agent);
    agent.wait_for_connections(1, WAIT).expect("connected");
    drop(agent);
    assert!(!path.exists());
}

#[test]
fn stale_socket_files_are_replaced_and_live_ones_are_not() {
    let dir = TempDir::new();
    let path = dir.sock();
    drop(UnixListener::bind(&path).expect("listener"));
    assert!(path.exists(), "a stale socket file");
    let agent = TestAgent::unix(&path).expect("replaces a stale socket");

    let err = TestAgent::unix(&path).expect_err("a live agent is there");
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    drop(agent);

    let file = dir.0.join("not-a-socket");
    std::fs::write(&file, b"keep me").expect("file");
    let err = TestAgent::unix(&file).expect_err("not a socket");
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read(&file).expect("still there"), b"keep me");
}

#[test]
fn timeouts_describe_the_agent() {
    let agent = TestAgent::tcp("127.0.0.1:0").expect("agent");
    let timeout = agent
        .wait_for_frames(1, Duration::from_millis(20))
        .expect_err("no frames come");
    assert_eq!(timeout.status.frames, 0);
    assert!(timeout.waited >= Duration::from_millis(20));
    assert!(timeout.to_string().contains("1 frames"), "{timeout}");
}
