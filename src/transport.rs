//! Transports: where frames go, and the connections the supervisor opens to them.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use socket2::{Domain, SockAddr, Socket, TcpKeepalive, Type};

use crate::send_buffer::SendBuffer;

/// The agent's socket on hosts with the ASA layout.
pub const ASA_SOCKET_PATH: &str = "/var/run/mdsd/asa/default_fluent.socket";
/// The agent's usual socket.
pub const DEFAULT_SOCKET_PATH: &str = "/var/run/mdsd/default_fluent.socket";
/// The agent's directory, which holds [`ASA_SOCKET_PATH`] and [`DEFAULT_SOCKET_PATH`].
pub const AGENT_DIR: &str = "/var/run/mdsd";

/// Where the client sends its frames.
#[derive(Debug, Clone)]
pub enum Transport {
    /// The agent's Unix domain stream socket at this path, and no other.
    Unix(PathBuf),
    /// The agent's default Unix socket in this directory, chosen anew at each connection
    /// attempt: `asa/default_fluent.socket` if it exists, else `default_fluent.socket`
    /// (as the reference client chooses). An agent that moves to the ASA socket is
    /// followed at the next reconnection. [`Transport::default_unix`] is this in
    /// [`AGENT_DIR`].
    AgentDir(PathBuf),
    /// The agent's TCP port, as `host:port` (resolved at each connection attempt).
    Tcp(String),
    /// Discards every frame (the heartbeat says `NoOP`).
    NoOp,
    /// Keeps every byte in memory, for a service's own tests.
    Memory(MemorySink),
}

impl Transport {
    /// The agent's default Unix socket, chosen at each connection attempt:
    /// [`ASA_SOCKET_PATH`] if it exists, else [`DEFAULT_SOCKET_PATH`]
    /// (`Transport::AgentDir(AGENT_DIR.into())`).
    pub fn default_unix() -> Transport {
        Transport::AgentDir(PathBuf::from(AGENT_DIR))
    }

    /// What the next connection attempt connects to: the agent's default socket chosen
    /// now, or the transport itself.
    pub(crate) fn resolve(&self) -> Cow<'_, Transport> {
        match self {
            Transport::AgentDir(dir) => Cow::Owned(Transport::Unix(agent_socket_in(dir))),
            other => Cow::Borrowed(other),
        }
    }

    /// The heartbeat's `Destination` value.
    pub(crate) fn destination(&self) -> &'static str {
        match self {
            Transport::Unix(_) | Transport::AgentDir(_) => "UnixDomainSocket",
            Transport::Tcp(_) => "TCP",
            Transport::NoOp | Transport::Memory(_) => "NoOP",
        }
    }

    /// Opens a connection. Sockets are close-on-exec (socket2 sets `SOCK_CLOEXEC`), have
    /// a send timeout of `write_timeout` and the configured send buffer, and writes never
    /// raise `SIGPIPE` (socket2 sends with `MSG_NOSIGNAL`).
    pub(crate) fn connect(
        &self,
        connect_timeout: Duration,
        write_timeout: Duration,
        send_buffer: SendBuffer,
    ) -> io::Result<Connection> {
        match self {
            Transport::AgentDir(_) => {
                self.resolve()
                    .connect(connect_timeout, write_timeout, send_buffer)
            }
            Transport::Unix(path) => {
                let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
                socket.connect_timeout(&SockAddr::unix(path)?, connect_timeout)?;
                socket.set_write_timeout(Some(write_timeout))?;
                if let Some(bytes) = send_buffer.for_unix() {
                    set_send_buffer(&socket, bytes);
                }
                Ok(Connection::Socket(socket))
            }
            Transport::Tcp(addr) => {
                let mut last =
                    io::Error::new(io::ErrorKind::NotFound, "address resolved to nothing");
                for sa in addr.to_socket_addrs()? {
                    match connect_tcp(sa, connect_timeout, write_timeout, send_buffer) {
                        Ok(socket) => return Ok(Connection::Socket(socket)),
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }
            Transport::NoOp => Ok(Connection::NoOp),
            Transport::Memory(sink) => Ok(Connection::Memory(MemoryConnection(sink.clone()))),
        }
    }
}

/// The agent's socket in `dir` as things stand: the ASA one if it exists, else the
/// usual one.
pub(crate) fn agent_socket_in(dir: &Path) -> PathBuf {
    let [asa, usual] = agent_sockets_in(dir);
    if asa.exists() { asa } else { usual }
}

/// The ASA socket and the usual socket in `dir`, in order of preference.
pub(crate) fn agent_sockets_in(dir: &Path) -> [PathBuf; 2] {
    let name = "default_fluent.socket";
    [dir.join("asa").join(name), dir.join(name)]
}

fn connect_tcp(
    addr: SocketAddr,
    connect_timeout: Duration,
    write_timeout: Duration,
    send_buffer: SendBuffer,
) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.connect_timeout(&addr.into(), connect_timeout)?;
    socket.set_write_timeout(Some(write_timeout))?;
    if let Some(bytes) = send_buffer.for_tcp() {
        set_send_buffer(&socket, bytes);
    }
    socket.set_tcp_nodelay(true)?;
    socket.set_tcp_keepalive(
        &TcpKeepalive::new()
            .with_time(Duration::from_secs(30))
            .with_interval(Duration::from_secs(10)),
    )?;
    Ok(socket)
}

/// Asks for a send buffer, best effort: a system that refuses the size (macOS does above
/// `kern.ipc.maxsockbuf`; Linux caps it instead) keeps its default rather than leave the
/// client unable to connect.
fn set_send_buffer(socket: &Socket, bytes: usize) {
    let _refused = socket.set_send_buffer_size(bytes);
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Unix(path) => write!(f, "unix:{}", path.display()),
            Transport::AgentDir(dir) => {
                let [asa, usual] = agent_sockets_in(dir);
                write!(f, "unix:{} or else unix:{}", asa.display(), usual.display())
            }
            Transport::Tcp(addr) => write!(f, "tcp:{addr}"),
            Transport::NoOp => f.write_str("noop"),
            Transport::Memory(_) => f.write_str("memory"),
        }
    }
}

/// What the kernel knows of the agent's end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// The agent is there and has `unread` bytes of the stream left to read (an upper
    /// bound: on Unix sockets the kernel counts its buffers, not just their bytes).
    Reading { unread: usize },
    /// The connection is closed (by the agent after reading everything it was sent, or
    /// by our own shutdown) and `unread` bytes of the stream were left unread.
    Closed { unread: usize },
    /// The agent went away with bytes unread: which of them it read is unknown.
    Reset,
    /// The kernel cannot tell (not a socket it answers `SIOCOUTQ` for).
    Unknown,
}

/// An open connection to the agent.
pub(crate) enum Connection {
    Socket(Socket),
    NoOp,
    Memory(MemoryConnection),
}

/// A connection to a [`MemorySink`]; closing it (dropping it) can be made to hang.
pub(crate) struct MemoryConnection(MemorySink);

impl Drop for MemoryConnection {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl Connection {
    /// Writes some of `buf`, returning how many bytes the kernel took.
    pub(crate) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Connection::Socket(s) => s.send(buf),
            Connection::NoOp => Ok(buf.len()),
            Connection::Memory(conn) => conn.0.write(buf),
        }
    }

    /// Like [`Connection::write`], without waiting for room: `WouldBlock` when the
    /// socket's buffer is full.
    pub(crate) fn write_nowait(&mut self, buf: &[u8]) -> io::Result<usize> {
        #[cfg(target_os = "linux")]
        const FLAGS: libc::c_int = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        #[cfg(not(target_os = "linux"))]
        const FLAGS: libc::c_int = libc::MSG_DONTWAIT;
        match self {
            Connection::Socket(s) => s.send_with_flags(buf, FLAGS),
            other => other.write(buf),
        }
    }

    /// What the agent has read of this connection, as far as the kernel can tell.
    ///
    /// The unread count is asked first and the peer's state after: a peer that leaves
    /// with bytes unread discards them (so the count drops to zero) and leaves a reset
    /// behind, which the second look then sees.
    pub(crate) fn peer(&self) -> Peer {
        let Connection::Socket(s) = self else {
            return Peer::Unknown;
        };
        let Ok(unread) = outq(s) else {
            return Peer::Unknown;
        };
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        // The agent never sends anything: a live one leaves nothing to read. A reset is
        // reported (and cleared) by this read, ahead of any end of file.
        match s.recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT) {
            Ok(0) => Peer::Closed { unread },
            Ok(_) => Peer::Reading { unread },
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Peer::Reading { unread }
            }
            Err(_) => Peer::Reset,
        }
    }

    /// Waits up to `timeout` for room to write in the socket (or for it to fail, which
    /// the next write then tells). Returns at once on other connections.
    pub(crate) fn wait_writable(&self, timeout: Duration) {
        if let Connection::Socket(s) = self {
            poll_out(s, timeout);
        }
    }

    /// A second handle on the same socket, so another thread can shut it down and
    /// unblock a write stuck on it.
    pub(crate) fn shutdown_handle(&self) -> Option<Socket> {
        match self {
            Connection::Socket(s) => s.try_clone().ok(),
            _ => None,
        }
    }
}

/// `SIOCOUTQ`: on a Unix stream socket, the bytes sent and not yet read by the peer
/// (kernel buffer accounting, so an upper bound of the payload); on TCP, the bytes not yet
/// acknowledged by the peer's kernel.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn outq(socket: &Socket) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut unread: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ on Linux) writes one `c_int` through the pointer, which
    // points at a live local of that type; the descriptor is owned by `socket` and stays
    // open for the call. No safe wrapper exists in std or socket2, and delivery
    // confirmation rests on this count.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::TIOCOUTQ as _, &mut unread) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(unread).unwrap_or(0))
}

/// Waits for `POLLOUT` on `socket` for up to `timeout`; an error or a signal only ends
/// the wait early.
#[allow(unsafe_code)]
fn poll_out(socket: &Socket, timeout: Duration) {
    use std::os::fd::AsRawFd;
    let mut fd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
    // SAFETY: `fd` is a live local `pollfd` and the count is 1; the descriptor is owned
    // by `socket` and stays open for the call. std has no poll; the spooled writer must
    // wake when the agent makes room instead of sleeping a fixed slice.
    let _ready = unsafe { libc::poll(&mut fd, 1, ms) };
}

/// Elsewhere the count is not to be had: records count as delivered once written.
#[cfg(not(target_os = "linux"))]
fn outq(_socket: &Socket) -> io::Result<usize> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// The bytes written to a [`Transport::Memory`]: a service's tests read what its client
/// sent here, and can make the "agent" fail, to see how the service copes.
///
/// ```
/// use geneva_audit::MemorySink;
///
/// let sink = MemorySink::new();
/// assert!(sink.bytes().is_empty());
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    inner: Arc<(Mutex<SinkState>, Condvar)>,
}

#[derive(Debug, Default)]
struct SinkState {
    bytes: Vec<u8>,
    /// Set by [`MemorySink::fail_writes`]: every write fails with this.
    failing: Option<io::ErrorKind>,
    /// Set by [`MemorySink::hang_closes`]: closing a connection blocks until healed.
    closes_hang: bool,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    fn write(&self, bytes: &[u8]) -> io::Result<usize> {
        let mut st = self.inner.0.lock();
        if let Some(kind) = st.failing {
            return Err(io::Error::new(kind, "the memory sink fails writes"));
        }
        st.bytes.extend_from_slice(bytes);
        self.inner.1.notify_all();
        Ok(bytes.len())
    }

    /// A connection to the sink is closed: returns once closes no longer hang.
    fn close(&self) {
        let mut st = self.inner.0.lock();
        while st.closes_hang {
            self.inner.1.wait(&mut st);
        }
    }

    /// From now on every write fails with `kind`, as writes to an agent that died do,
    /// until [`MemorySink::heal`]. (Each failure makes the client reconnect and write the
    /// same frames again.)
    ///
    /// ```
    /// use geneva_audit::MemorySink;
    ///
    /// let sink = MemorySink::new();
    /// sink.fail_writes(std::io::ErrorKind::BrokenPipe);
    /// sink.heal();
    /// ```
    pub fn fail_writes(&self, kind: io::ErrorKind) {
        self.inner.0.lock().failing = Some(kind);
    }

    /// From now on closing a connection to the sink blocks until [`MemorySink::heal`],
    /// as closes of a bad host-mounted socket can. The client closes broken connections
    /// on a thread of their own; a close that has hung for longer than the write timeout
    /// makes the client declare itself dead; how many closes wait does not count.
    pub fn hang_closes(&self) {
        self.inner.0.lock().closes_hang = true;
    }

    /// Writes succeed again, and closes hanging now return.
    pub fn heal(&self) {
        let mut st = self.inner.0.lock();
        st.failing = None;
        st.closes_hang = false;
        self.inner.1.notify_all();
    }

    /// A copy of every byte written so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.inner.0.lock().bytes.clone()
    }

    /// Takes every byte written so far, leaving the sink empty.
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut self.inner.0.lock().bytes)
    }

    /// Waits until at least `len` bytes have been written or `timeout` passes; returns
    /// whether they were.
    pub fn wait_for_len(&self, len: usize, timeout: Duration) -> bool {
        let deadline = crate::time::after(timeout);
        let mut st = self.inner.0.lock();
        while st.bytes.len() < len {
            if self.inner.1.wait_until(&mut st, deadline).timed_out() {
                return st.bytes.len() >= len;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    use super::{Connection, Transport};
    use crate::send_buffer::SendBuffer;

    /// Whether a child process inherits descriptor `fd` (it does unless close-on-exec).
    fn inherited_by_a_child(fd: i32) -> bool {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("test -e /proc/self/fd/{fd}"))
            .status()
            .map(|s| s.success())
            .unwrap_or(true)
    }

    /// Connects as the supervisor does, with a 15 s write timeout.
    fn connect(transport: Transport) -> Connection {
        transport
            .connect(
                Duration::from_secs(5),
                Duration::from_secs(15),
                SendBuffer::Default,
            )
            .unwrap()
    }

    fn socket(conn: &Connection) -> &socket2::Socket {
        match conn {
            Connection::Socket(s) => s,
            _ => panic!("not a socket"),
        }
    }

    /// Close-on-exec, checked by what a child process gets; the check itself is shown to
    /// see a descriptor that lacks it.
    fn assert_close_on_exec(s: &socket2::Socket) {
        assert!(!inherited_by_a_child(s.as_raw_fd()), "inherited");
        let leaky = s.try_clone().unwrap();
        leaky.set_cloexec(false).unwrap();
        assert!(
            inherited_by_a_child(leaky.as_raw_fd()),
            "the check saw nothing"
        );
    }

    #[test]
    fn the_asa_socket_is_preferred_when_it_exists_and_chosen_at_each_attempt() {
        let dir = std::env::temp_dir().join(format!("ga-paths-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (asa, usual) = (
            dir.join("asa/default_fluent.socket"),
            dir.join("default_fluent.socket"),
        );
        let transport = Transport::AgentDir(dir.clone());
        let target = |t: &Transport| t.resolve().to_string();
        assert_eq!(target(&transport), format!("unix:{}", usual.display()));
        std::fs::write(&usual, b"").unwrap();
        assert_eq!(target(&transport), format!("unix:{}", usual.display()));
        std::fs::create_dir_all(dir.join("asa")).unwrap();
        std::fs::write(&asa, b"").unwrap();
        assert_eq!(target(&transport), format!("unix:{}", asa.display()));
        std::fs::remove_file(&asa).unwrap();
        assert_eq!(target(&transport), format!("unix:{}", usual.display()));
        // An explicit path is never swapped for another.
        let fixed = Transport::Unix(usual.clone());
        std::fs::write(&asa, b"").unwrap();
        assert_eq!(target(&fixed), format!("unix:{}", usual.display()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_default_transport_is_the_agents_directory_with_its_two_sockets() {
        let Transport::AgentDir(dir) = Transport::default_unix() else {
            panic!("not the agent's directory");
        };
        let [asa, usual] = super::agent_sockets_in(&dir);
        assert_eq!(asa, std::path::Path::new(super::ASA_SOCKET_PATH));
        assert_eq!(usual, std::path::Path::new(super::DEFAULT_SOCKET_PATH));
        assert_eq!(Transport::default_unix().destination(), "UnixDomainSocket");
    }

    #[test]
    fn tcp_connections_are_close_on_exec_with_nodelay_keepalive_and_a_send_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let conn = connect(Transport::Tcp(addr));
        let s = socket(&conn);
        assert!(s.tcp_nodelay().unwrap());
        assert!(s.keepalive().unwrap());
        assert_eq!(s.tcp_keepalive_time().unwrap(), Duration::from_secs(30));
        assert_eq!(s.tcp_keepalive_interval().unwrap(), Duration::from_secs(10));
        assert_eq!(s.write_timeout().unwrap(), Some(Duration::from_secs(15)));
        assert_close_on_exec(s);
    }

    #[test]
    fn unix_connections_are_close_on_exec_with_a_send_timeout() {
        let dir = std::env::temp_dir().join(format!("ga-transport-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agent.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let conn = connect(Transport::Unix(path.clone()));
        let s = socket(&conn);
        assert_eq!(s.write_timeout().unwrap(), Some(Duration::from_secs(15)));
        assert_close_on_exec(s);
        drop(conn);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
