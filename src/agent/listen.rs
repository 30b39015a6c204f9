//! Where the agent listens: binding the socket, and the thread that accepts connections
//! and starts a reader for each.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::as_u64;
use super::frame::{FrameError, FrameErrorKind};
use super::read::{READER_STACK, read_loop};
use super::state::{Connection, Listener, Shared, State};

/// How long a blocked `accept` or `read` waits before it looks at the agent's flags again.
/// Shutting the agent down wakes them at once on Linux; this is the fallback.
const POLL: Duration = Duration::from_millis(100);

const LISTEN_BACKLOG: i32 = 128;

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
        reap_ended(&mut state);
        start_reader(shared, &mut state, socket);
        drop(state);
        shared.changed.notify_all();
    }
}

/// Joins the reader threads of connections that have ended.
fn reap_ended(state: &mut State) {
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
}

/// Gives an accepted connection its id and a reader thread; one that cannot be served is
/// counted, closed, with an error that says why.
fn start_reader(shared: &Arc<Shared>, state: &mut State, socket: Socket) {
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
}
