//! The agent's threads: binding the socket, accepting connections, reading each one.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::as_u64;
use super::frame::{FrameError, FrameErrorKind, ReceivedFrame};
use super::server::{Connection, Listener, Shared, State};
use super::splitter::FrameSplitter;

/// How long a blocked `accept` or `read` waits before it looks at the agent's flags again.
/// Shutting the agent down wakes them at once on Linux; this is the fallback.
const POLL: Duration = Duration::from_millis(100);

/// How much one `read` on a connection asks for.
const READ_CHUNK: usize = 64 * 1024;

const LISTEN_BACKLOG: i32 = 128;

/// Stack size of the connection reader threads: decoding recurses once per nesting level,
/// and [`MAX_NESTING`] levels need well under this even in a debug build.
pub(super) const READER_STACK: usize = 2 * 1024 * 1024;

pub(super) fn bind_tcp(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // So a restart can bind the port again while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket)
}

/// Binds and listens at `path`; returns the socket file's identity too.
pub(super) fn bind_unix(path: &Path) -> io::Result<(Socket, (u64, u64))> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("something is listening on {}", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(&SockAddr::unix(path)?)?;
    let file = std::fs::symlink_metadata(path).map(|meta| (meta.dev(), meta.ino()));
    let file = match file {
        Ok(file) => file,
        Err(e) => {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
    };
    // Owner only, before listen(): nobody can connect while the mode is still wider.
    let listening = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| socket.listen(LISTEN_BACKLOG));
    if let Err(e) = listening {
        remove_if_same(path, file);
        return Err(e);
    }
    Ok((socket, file))
}

/// Removes the socket file at `path` if it is still the one we created.
pub(super) fn remove_if_same(path: &Path, file: (u64, u64)) {
    let same = std::fs::symlink_metadata(path).is_ok_and(|meta| (meta.dev(), meta.ino()) == file);
    if same {
        let _ = std::fs::remove_file(path);
    }
}

pub(super) fn spawn_listener(
    shared: &Arc<Shared>,
    socket: Socket,
    file: Option<(u64, u64)>,
) -> io::Result<Listener> {
    // accept() gives up after this on Linux, so the thread can look at `stop`.
    socket.set_read_timeout(Some(POLL))?;
    let socket = Arc::new(socket);
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let shared = Arc::clone(shared);
        let socket = Arc::clone(&socket);
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("test-agent-accept".into())
            .spawn(move || accept_loop(&shared, &socket, &stop))?
    };
    Ok(Listener {
        socket,
        stop,
        thread: Some(thread),
        file,
    })
}

fn accept_loop(shared: &Arc<Shared>, listener: &Socket, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let socket = match listener.accept() {
            Ok((socket, _)) => socket,
            Err(e) => {
                if !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                        | io::ErrorKind::ConnectionAborted
                ) && !stop.load(Ordering::SeqCst)
                {
                    // A lasting error (out of file descriptors, say): don't spin on it.
                    let mut state = shared.state.lock();
                    let _ = shared.changed.wait_for(&mut state, POLL);
                }
                continue;
            }
        };
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let mut state = shared.state.lock();
        if state.refuse {
            state.refused = state.refused.saturating_add(1);
            drop(state);
            shared.changed.notify_all();
            drop(socket);
            continue;
        }
        // Reap the threads of connections that have ended.
        for connection in &mut state.connections {
            if connection
                .thread
                .as_ref()
                .is_some_and(JoinHandle::is_finished)
            {
                if let Some(thread) = connection.thread.take() {
                    let _ = thread.join();
                }
            }
        }
        let id = as_u64(state.connections.len());
        let socket = Arc::new(socket);
        let spawned = socket.set_read_timeout(Some(POLL)).and_then(|()| {
            let shared = Arc::clone(shared);
            let socket = Arc::clone(&socket);
            std::thread::Builder::new()
                .name(format!("test-agent-conn-{id}"))
                .stack_size(READER_STACK)
                .spawn(move || read_loop(&shared, id, &socket))
        });
        match spawned {
            Ok(thread) => state.connections.push(Connection {
                open: true,
                killed: false,
                frames: 0,
                socket: Some(socket),
                thread: Some(thread),
            }),
            Err(e) => {
                state.connections.push(Connection {
                    open: false,
                    killed: false,
                    frames: 0,
                    socket: None,
                    thread: None,
                });
                state.errors.push(FrameError {
                    kind: FrameErrorKind::Io,
                    detail: format!("could not serve the connection: {e}"),
                    connection: id,
                    frame_offset: 0,
                    offset: 0,
                });
            }
        }
        drop(state);
        shared.changed.notify_all();
    }
}

/// Reads one connection until it closes or the agent closes it.
fn read_loop(shared: &Shared, id: u64, socket: &Socket) {
    let mut splitter = FrameSplitter::for_connection(id, shared.max_frame_len);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut next_read: Option<Instant> = None;
    let mut received = 0u64;
    loop {
        // Wait while reading is stopped or the rate cap says not yet.
        let len = {
            let mut state = shared.state.lock();
            loop {
                if !state.is_open(id) {
                    return;
                }
                if state.reading_paused() {
                    shared.changed.wait(&mut state);
                    continue;
                }
                match (state.read_rate, next_read) {
                    (Some(_), Some(at)) if Instant::now() < at => {
                        let _ = shared.changed.wait_until(&mut state, at);
                    }
                    (rate, _) => break read_len(rate),
                }
            }
        };
        let chunk = buf.get_mut(..len).unwrap_or_default();
        let outcome = match (&*socket).read(chunk) {
            Ok(0) => Outcome::Ended(None),
            Ok(n) => {
                received = received.saturating_add(as_u64(n));
                next_read = {
                    let rate = shared.state.lock().read_rate;
                    rate.filter(|&r| r > 0)
                        .and_then(|rate| Duration::try_from_secs_f64(n as f64 / rate as f64).ok())
                        .and_then(|pause| Instant::now().checked_add(pause))
                };
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
