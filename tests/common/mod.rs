//! Helpers shared by the integration tests: records numbered through their custom data,
//! temporary socket paths, and condition waits with deadlines.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use geneva_audit::agent::{ReceivedFrame, TestAgent};
use geneva_audit::{
    Backoff, CallerIdentityType, Client, ClientBuilder, OperationCategory, OperationResult,
    OperationType, Record, SendError,
};

pub const STI: &str = "e6c9fcb1-7f08-4c1d-9e7a-123456789abc";

/// How long any wait in a test may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A fresh directory for a test's sockets, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "geneva-audit-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn socket(&self) -> PathBuf {
        self.0.join("agent.sock")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A valid record numbered `n` (custom data `seq`), with a bit of variety.
pub fn record(n: u64) -> Record {
    let r = if n % 2 == 0 {
        Record::data_plane()
    } else {
        Record::control_plane()
    };
    r.caller_ip("203.0.113.42".parse().unwrap())
        .add_caller_identity(CallerIdentityType::Upn, "alice@contoso.com", "primary user")
        .add_operation_category(OperationCategory::ResourceManagement)
        .add_target_resource("SubscriptionId", "4bb12743-2418-427f-92ae-96a11a4044fe")
        .add_caller_access_level("Contributor")
        .operation_access_level("Contributor")
        .operation_name(format!("Operation{n}"))
        .caller_agent("azure-cli/2.61.0")
        .operation_type(OperationType::Read)
        .operation_result(OperationResult::Success)
        .custom("seq", n)
}

/// The `seq` of a record frame, `None` for other frames.
pub fn seq(frame: &ReceivedFrame) -> Option<u64> {
    if frame.tag != "AsmAuditDP" && frame.tag != "AsmAuditCP" {
        return None;
    }
    frame.custom("seq").and_then(|v| v.as_u64())
}

pub fn seqs(frames: &[ReceivedFrame]) -> Vec<u64> {
    frames.iter().filter_map(seq).collect()
}

/// A builder with fast reconnects, for tests.
pub fn builder() -> ClientBuilder {
    Client::builder(STI).backoff(Backoff {
        initial: Duration::from_millis(5),
        max: Duration::from_millis(50),
        multiplier: 2.0,
        full_jitter: true,
    })
}

/// Sends `n` records from `from`, waiting for room when the queue is full.
pub fn send_range(client: &Client, from: u64, n: u64) {
    for i in from..from + n {
        client
            .send_timeout(record(i), PATIENCE)
            .unwrap_or_else(|e| panic!("record {i} refused: {e}"));
    }
}

/// Waits until `cond` holds or `PATIENCE` passes (then panics with `what`).
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    let mut pause = Pause::new();
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        pause.next();
    }
}

/// The pause between two looks at a condition: a yield first, then sleeps growing to
/// 4 ms, so a waiting test leaves the CPU to the threads it waits for (two cores are
/// shared with everything else) and still sees the condition soon after it holds.
pub struct Pause(u32);

impl Pause {
    pub fn new() -> Pause {
        Pause(0)
    }

    pub fn next(&mut self) {
        if self.0 == 0 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(50u64 << self.0.min(7)));
        }
        self.0 += 1;
    }
}

/// Sends records `0..` until the queue is full and the client's writer is blocked in a
/// write to the agent at `socket` (the kernel says so: the thread's system call, on the
/// descriptor connected to that agent). The socket buffers are then full too: the
/// writer takes nothing more from the queue until the agent reads. Returns how many
/// were accepted. Any refusal other than `QueueFull` fails the test.
pub fn fill_until_blocked_on(client: &Client, socket: &std::path::Path) -> u64 {
    fill_until(client, || writer_blocked_writing_to(socket))
}

/// Sends records `0..` until the queue is full and `writer_blocked` says the writer is
/// blocked in a write; returns how many were accepted.
pub fn fill_until(client: &Client, writer_blocked: impl Fn() -> bool) -> u64 {
    fill_until_from(client, 0, writer_blocked)
}

/// [`fill_until`] with records numbered from `from`; returns the number after the last
/// accepted.
pub fn fill_until_from(client: &Client, from: u64, writer_blocked: impl Fn() -> bool) -> u64 {
    let mut n = from;
    let deadline = Instant::now() + PATIENCE;
    let mut pause = Pause::new();
    loop {
        match client.try_send(record(n)) {
            Ok(()) => {
                n += 1;
                pause = Pause::new();
                continue;
            }
            Err(SendError::QueueFull(_)) => {}
            Err(e) => panic!("record {n} refused: {e}"),
        }
        // Full now. Blocked in a write, the writer cannot take from the queue: if it is
        // blocked after the queue was seen full, the queue is still full.
        if writer_blocked() {
            match client.try_send(record(n)) {
                Err(SendError::QueueFull(_)) => return n,
                Ok(()) => n += 1,
                Err(e) => panic!("record {n} refused: {e}"),
            }
        }
        assert!(
            Instant::now() < deadline,
            "the writer never blocked in a write: {:?}",
            client.stats()
        );
        pause.next();
    }
}

/// [`fill_until_blocked_on`] for a client of the agent at [`TempDir::socket`] of the
/// directory a [`stalled`] client was made in.
pub fn fill_until_blocked(client: &Client, dir: &TempDir) -> u64 {
    fill_until_blocked_on(client, &dir.socket())
}

/// The descriptors of this process connected to the Unix socket at `path` (their
/// peer's address is that path): the client's connections to that agent.
pub fn connected_to(path: &std::path::Path) -> Vec<i32> {
    use std::os::unix::net::UnixStream;
    sockets_where(|fd| {
        // SAFETY: the descriptor is only borrowed for `getpeername`, never closed (the
        // stream is forgotten); a descriptor closed meanwhile fails the call.
        #[allow(unsafe_code)]
        let stream = std::mem::ManuallyDrop::new(unsafe {
            <UnixStream as std::os::fd::FromRawFd>::from_raw_fd(fd)
        });
        stream
            .peer_addr()
            .is_ok_and(|a| a.as_pathname() == Some(path))
    })
}

/// The descriptors of this process connected to the TCP address `addr`.
pub fn connected_to_tcp(addr: std::net::SocketAddr) -> Vec<i32> {
    use std::net::TcpStream;
    sockets_where(|fd| {
        // SAFETY: as in `connected_to`.
        #[allow(unsafe_code)]
        let stream = std::mem::ManuallyDrop::new(unsafe {
            <TcpStream as std::os::fd::FromRawFd>::from_raw_fd(fd)
        });
        stream.peer_addr().is_ok_and(|a| a == addr)
    })
}

/// The socket descriptors of this process for which `keep` holds.
fn sockets_where(keep: impl Fn(i32) -> bool) -> Vec<i32> {
    let mut fds = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return fds;
    };
    for entry in entries.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        if is_socket && keep(fd) {
            fds.push(fd);
        }
    }
    fds
}

/// Whether a writer thread of this process is blocked in a write (`write`, `writev`,
/// `sendto` or `sendmsg`, from `/proc/self/task/*/syscall`) on a descriptor connected to
/// the Unix socket at `path`.
pub fn writer_blocked_writing_to(path: &std::path::Path) -> bool {
    writer_blocked_writing_on(&connected_to(path))
}

/// Whether a writer thread of this process is blocked in a write on one of `fds`.
pub fn writer_blocked_writing_on(fds: &[i32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    const WRITES: [u64; 4] = [1, 20, 44, 46];
    #[cfg(target_arch = "aarch64")]
    const WRITES: [u64; 4] = [64, 66, 206, 211];
    if fds.is_empty() {
        return false;
    }
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return false;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != "geneva-audit-wr" {
            continue;
        }
        let call = std::fs::read_to_string(task.path().join("syscall")).unwrap_or_default();
        let mut fields = call.split_whitespace();
        let nr = fields.next().and_then(|f| f.parse::<u64>().ok());
        let fd = fields
            .next()
            .and_then(|f| i64::from_str_radix(f.trim_start_matches("0x"), 16).ok());
        if let (Some(nr), Some(fd)) = (nr, fd) {
            if WRITES.contains(&nr) && fds.contains(&(fd as i32)) {
                return true;
            }
        }
    }
    false
}

/// Asserts `try_send` refused with `QueueFull` and gave back the record.
pub fn expect_full(result: Result<(), SendError>, original: &Record) {
    match result {
        Err(SendError::QueueFull(back)) => assert_eq!(&back, original),
        other => panic!("expected QueueFull, got {other:?}"),
    }
}

/// Asserts `seqs` is exactly `from..to`, reporting the first difference (not the lists).
pub fn assert_consecutive(seqs: &[u64], from: u64, to: u64) {
    for (i, (got, want)) in seqs.iter().zip(from..to).enumerate() {
        assert_eq!(*got, want, "position {i}: got {got}, wanted {want}");
    }
    assert_eq!(
        seqs.len() as u64,
        to - from,
        "got {} records, wanted {from}..{to}",
        seqs.len()
    );
}

/// How many file descriptors the process has open (entries of `/proc/self/fd`).
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The names of the process's threads (`/proc/self/task/*/comm`, at most 15 bytes each).
pub fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .collect()
}

/// CPU time consumed so far by the live threads whose name starts with `prefix`, from
/// `/proc/self/task/*/schedstat` (nanoseconds on a CPU).
pub fn threads_cpu(prefix: &str) -> Duration {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(name) = std::fs::read_to_string(task.path().join("comm")) else {
            continue;
        };
        if !name.starts_with(prefix) {
            continue;
        }
        if let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) {
            ns += stat
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(ns)
}

/// The process's resident memory in KiB (`VmRSS` in `/proc/self/status`).
pub fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Waits until `cond` holds or `timeout` passes; returns whether it held.
pub fn wait_until_within(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Pause::new();
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return cond();
        }
        pause.next();
    }
}

/// Runs `f` on its own thread and fails the test if it has not returned within
/// `deadline` (a hang), returning its result and how long it took otherwise.
pub fn within<T: Send + 'static>(
    what: &str,
    deadline: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> (T, Duration) {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let started = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(deadline) {
        Ok(value) => (value, started.elapsed()),
        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
            panic!("{what} did not return within {deadline:?}")
        }
        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

/// Percentile `p` (0..=100) of `sorted`, which must be sorted and not empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() - 1) as f64 * p / 100.0).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The records in `seqs` seen for the first time (updating `seen`), in arrival order,
/// and how many were duplicates.
pub fn first_arrivals(seqs: &[u64], seen: &mut std::collections::HashSet<u64>) -> (Vec<u64>, u64) {
    let mut first = Vec::new();
    let mut dups = 0;
    for &s in seqs {
        if seen.insert(s) {
            first.push(s);
        } else {
            dups += 1;
        }
    }
    (first, dups)
}

/// The scheduler state (`S` asleep, `R` running) of this process's thread `name`.
pub fn thread_state(name: &str) -> Option<char> {
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            return stat.rsplit_once(") ")?.1.chars().next();
        }
    }
    None
}

/// An agent that reads nothing, and a client with a 16-record queue sending to it.
pub fn stalled(name: &str) -> (TempDir, TestAgent, Client) {
    stalled_with(name, |b| b.queue_capacity(16))
}

/// An agent that reads nothing more, and a client sending to it, built from [`builder`]
/// with `settings` on top.
///
/// The agent first reads an opening record (records without a `seq`): a new connection
/// carries one record until the agent reads it. Then reading stops, and a second opening
/// record larger than one read of the agent's goes out: a reader already waiting in `read`
/// takes part of it and nothing after it, so everything the test sends stays in the
/// kernel.
pub fn stalled_with(
    name: &str,
    settings: impl FnOnce(ClientBuilder) -> ClientBuilder,
) -> (TempDir, TestAgent, Client) {
    let dir = TempDir::new(name);
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let client = settings(builder().unix_socket(dir.socket()))
        .build()
        .unwrap();
    client.send_timeout(opening(0), PATIENCE).unwrap();
    client.flush(PATIENCE).unwrap();
    agent.stop_reading();
    client.send_timeout(opening(100_000), PATIENCE).unwrap();
    (dir, agent, client)
}

/// Whether `got` are the test records `seqs`, in order, each handed back with the time it
/// was stamped with.
pub fn handed_back(got: &[Record], seqs: impl IntoIterator<Item = u64>) -> bool {
    let want: Vec<Record> = seqs.into_iter().map(record).collect();
    got.len() == want.len()
        && got.iter().zip(want).all(|(g, w)| {
            g.get_event_time()
                .is_some_and(|stamped| *g == w.event_time(stamped))
        })
}

/// How many records without a `seq` [`stalled_with`] sends first.
pub const OPENING: u64 = 2;

/// A record without a `seq`, with a blob of `bytes` bytes.
pub fn opening(bytes: usize) -> Record {
    record(0)
        .custom_data_from(Vec::new())
        .custom("blob", "o".repeat(bytes))
        .operation_name("Opening")
}

/// Fills a 16-record queue behind an agent that does not read; returns how many the
/// client accepted.
pub fn fill_queue(client: &Client) -> u64 {
    let mut accepted = 0u64;
    while client.try_send(record(accepted)).is_ok() {
        accepted += 1;
        assert!(accepted < 1_000_000, "the queue never filled");
    }
    accepted
}

/// A child process killed and reaped when the test ends, however it ends (a panic
/// included): no test leaves a process behind.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits up to `timeout` for `child` to exit; kills it and fails the test otherwise.
pub fn wait_within(child: &mut std::process::Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    let mut pause = Pause::new();
    loop {
        if let Some(status) = child.try_wait().expect("wait for a child") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child {} did not exit within {timeout:?}", child.id());
        }
        pause.next();
    }
}

/// Collects `child`'s stdout and stderr (when piped) until it exits, within `timeout`;
/// kills it and fails the test otherwise.
pub fn output_within(mut child: std::process::Child, timeout: Duration) -> std::process::Output {
    use std::io::Read;
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = wait_within(&mut child, timeout);
    std::process::Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Runs the ignored test `name` of this test binary in a child process, with `var` set
/// to `value`; returns the child (killed if the test fails) and its stdout's lines, read
/// on a thread of their own so that every wait on them can have a deadline.
pub fn child_test(
    name: &str,
    var: &str,
    value: &std::path::Path,
) -> (ChildGuard, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--ignored", "--nocapture"])
        .env(var, value)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut child = ChildGuard(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, lines)
}
