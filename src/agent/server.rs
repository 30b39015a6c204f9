//! The agent: where it listens, what it received, and waiting on it.

use std::error::Error;
use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use socket2::Socket;

use super::DEFAULT_MAX_FRAME_LEN;
use super::frame::{FrameError, ReceivedFrame};
use super::listen::{bind_tcp, spawn_listener};
use super::state::{Listener, Shared, State, Status};

/// Where a [`TestAgent`] listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix domain socket at this path.
    Unix(PathBuf),
    /// A TCP address (with the port actually bound, never port 0).
    Tcp(SocketAddr),
}

/// A wait on the agent that ran out of time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeout {
    /// What the wait was for, for example `"3 frames"`.
    pub wanted: String,
    /// How long it waited.
    pub waited: Duration,
    /// The agent's counts when it gave up.
    pub status: Status,
    /// The agent's errors when it gave up (often the reason frames never came).
    pub errors: Vec<FrameError>,
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.status;
        write!(
            f,
            "timed out after {:?} waiting for {}: the agent has {} frames ({} in all), {} \
             errors, {} connections ({} open), {} refused, {}",
            self.waited,
            self.wanted,
            s.frames,
            s.total_frames,
            s.errors,
            s.connections,
            s.open_connections,
            s.refused,
            if s.running { "running" } else { "killed" },
        )?;
        for error in self.errors.iter().take(3) {
            write!(f, "; {error}")?;
        }
        Ok(())
    }
}

impl Error for Timeout {}

/// Builds a [`TestAgent`] with settings other than the defaults.
///
/// ```
/// use geneva_audit::agent::TestAgent;
///
/// let agent = TestAgent::builder().max_frame_len(1024).tcp("127.0.0.1:0")?;
/// assert!(agent.is_running());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct TestAgentBuilder {
    max_frame_len: usize,
}

impl Default for TestAgentBuilder {
    fn default() -> Self {
        Self {
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
        }
    }
}

impl TestAgentBuilder {
    /// Frames longer than this many bytes are errors ([`FrameErrorKind::TooLarge`](super::FrameErrorKind::TooLarge));
    /// default [`DEFAULT_MAX_FRAME_LEN`].
    pub fn max_frame_len(mut self, bytes: usize) -> Self {
        self.max_frame_len = bytes;
        self
    }

    /// Starts an agent on a Unix domain socket; see [`TestAgent::unix`].
    pub fn unix(self, path: impl AsRef<Path>) -> io::Result<TestAgent> {
        TestAgent::start(Endpoint::Unix(path.as_ref().to_path_buf()), self)
    }

    /// Starts an agent on TCP; see [`TestAgent::tcp`].
    pub fn tcp(self, addr: impl ToSocketAddrs) -> io::Result<TestAgent> {
        let mut last = None;
        for addr in addr.to_socket_addrs()? {
            match bind_tcp(addr) {
                Ok(listener) => {
                    let local = listener
                        .local_addr()?
                        .as_socket()
                        .ok_or_else(|| io::Error::other("TCP listener without an IP address"))?;
                    return TestAgent::start_with(Endpoint::Tcp(local), self, listener);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on")
        }))
    }
}

/// A stand-in for the Geneva agent: listens, decodes every frame written to it, and can
/// be told to misbehave. See the [module documentation](super).
///
/// All methods take `&self`, so one agent can be shared between threads (for example in
/// an `Arc`). Dropping it closes the listener and every connection, joins all its threads
/// and removes its socket file.
pub struct TestAgent {
    pub(super) shared: Arc<Shared>,
    pub(super) endpoint: Endpoint,
    /// The running listener; `None` after [`kill`](Self::kill).
    pub(super) listener: Mutex<Option<Listener>>,
}

impl fmt::Debug for TestAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestAgent")
            .field("endpoint", &self.endpoint)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl TestAgent {
    /// Starts an agent listening on a Unix domain socket at `path`, with default settings.
    ///
    /// A stale socket file at `path` (one nobody listens on) is removed first; a live one
    /// is an [`io::ErrorKind::AddrInUse`] error, and anything that is not a socket an
    /// [`io::ErrorKind::AlreadyExists`] error. The socket file is made readable and
    /// writable by its owner only (0600) before the agent starts listening.
    ///
    /// ```
    /// use geneva_audit::agent::TestAgent;
    ///
    /// let path = std::env::temp_dir().join(format!("agent-doc-{}.sock", std::process::id()));
    /// let agent = TestAgent::unix(&path)?;
    /// assert!(path.exists());
    /// drop(agent);
    /// assert!(!path.exists());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn unix(path: impl AsRef<Path>) -> io::Result<TestAgent> {
        Self::builder().unix(path)
    }

    /// Starts an agent listening on TCP, with default settings; `"127.0.0.1:0"` picks a
    /// free port, which [`local_addr`](Self::local_addr) tells.
    pub fn tcp(addr: impl ToSocketAddrs) -> io::Result<TestAgent> {
        Self::builder().tcp(addr)
    }

    /// A builder, for settings other than the defaults.
    pub fn builder() -> TestAgentBuilder {
        TestAgentBuilder::default()
    }

    fn start(endpoint: Endpoint, config: TestAgentBuilder) -> io::Result<TestAgent> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            max_frame_len: config.max_frame_len,
        });
        let agent = TestAgent {
            shared,
            endpoint,
            listener: Mutex::new(None),
        };
        agent.restart()?;
        Ok(agent)
    }

    fn start_with(
        endpoint: Endpoint,
        config: TestAgentBuilder,
        socket: Socket,
    ) -> io::Result<TestAgent> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            max_frame_len: config.max_frame_len,
        });
        let listener = spawn_listener(&shared, socket, None)?;
        shared.state.lock().running = true;
        Ok(TestAgent {
            shared,
            endpoint,
            listener: Mutex::new(Some(listener)),
        })
    }

    /// Where the agent listens.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The socket file's path, for a Unix domain socket agent.
    pub fn path(&self) -> Option<&Path> {
        match &self.endpoint {
            Endpoint::Unix(path) => Some(path),
            Endpoint::Tcp(_) => None,
        }
    }

    /// The bound address, for a TCP agent.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self.endpoint {
            Endpoint::Unix(_) => None,
            Endpoint::Tcp(addr) => Some(addr),
        }
    }

    /// The largest frame the agent accepts, in bytes.
    pub fn max_frame_len(&self) -> usize {
        self.shared.max_frame_len
    }

    // --- What was received -------------------------------------------------------------

    /// A copy of the frames received so far, in arrival order.
    pub fn frames(&self) -> Vec<ReceivedFrame> {
        self.shared.state.lock().frames.clone()
    }

    /// Takes the frames received so far out of the list, leaving it empty.
    pub fn take_frames(&self) -> Vec<ReceivedFrame> {
        let frames = std::mem::take(&mut self.shared.state.lock().frames);
        self.shared.changed.notify_all();
        frames
    }

    /// A copy of the errors so far: bytes that were not well-formed frames.
    pub fn errors(&self) -> Vec<FrameError> {
        self.shared.state.lock().errors.clone()
    }

    /// Takes the errors so far out of the list, leaving it empty.
    pub fn take_errors(&self) -> Vec<FrameError> {
        let errors = std::mem::take(&mut self.shared.state.lock().errors);
        self.shared.changed.notify_all();
        errors
    }

    /// The agent's counts now.
    pub fn status(&self) -> Status {
        self.shared.state.lock().status()
    }

    /// How many connections the agent has accepted over its whole life.
    pub fn connection_count(&self) -> u64 {
        self.status().connections
    }

    /// How many connections are open now.
    pub fn open_connections(&self) -> usize {
        self.status().open_connections
    }

    /// Whether the agent is listening (it was not killed, or was restarted since).
    pub fn is_running(&self) -> bool {
        self.shared.state.lock().running
    }

    // --- Waiting -----------------------------------------------------------------------

    /// Waits until `condition` holds for the agent's [`Status`], or `timeout` passes.
    ///
    /// It wakes whenever the agent's state changes; it does not poll.
    ///
    /// ```
    /// # use geneva_audit::agent::TestAgent;
    /// # use std::time::Duration;
    /// let agent = TestAgent::tcp("127.0.0.1:0")?;
    /// let _client = std::net::TcpStream::connect(agent.local_addr().expect("TCP"))?;
    /// agent.wait_for("an open connection", Duration::from_secs(10), |s| s.open_connections == 1)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_for(
        &self,
        wanted: &str,
        timeout: Duration,
        condition: impl FnMut(&Status) -> bool,
    ) -> Result<Status, Timeout> {
        self.wait_with(wanted, timeout, condition, |state| state.status())
    }

    fn wait_with<T>(
        &self,
        wanted: &str,
        timeout: Duration,
        mut condition: impl FnMut(&Status) -> bool,
        result: impl FnOnce(&State) -> T,
    ) -> Result<T, Timeout> {
        let started = Instant::now();
        let deadline = started.checked_add(timeout);
        let mut state = self.shared.state.lock();
        loop {
            let status = state.status();
            if condition(&status) {
                return Ok(result(&state));
            }
            let timed_out = match deadline {
                Some(deadline) => {
                    Instant::now() >= deadline
                        || self
                            .shared
                            .changed
                            .wait_until(&mut state, deadline)
                            .timed_out()
                }
                // A timeout too long to represent: wait without one.
                None => {
                    self.shared.changed.wait(&mut state);
                    false
                }
            };
            if timed_out {
                let status = state.status();
                if condition(&status) {
                    return Ok(result(&state));
                }
                return Err(Timeout {
                    wanted: wanted.to_owned(),
                    waited: started.elapsed(),
                    status,
                    errors: state.errors.clone(),
                });
            }
        }
    }

    /// Waits until at least `n` frames are in the list, then returns a copy of all of them.
    pub fn wait_for_frames(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<ReceivedFrame>, Timeout> {
        self.wait_with(
            &format!("{n} frames"),
            timeout,
            |s| s.frames >= n,
            |state| state.frames.clone(),
        )
    }

    /// Waits until at least `n` errors are in the list, then returns a copy of all of them.
    pub fn wait_for_errors(&self, n: usize, timeout: Duration) -> Result<Vec<FrameError>, Timeout> {
        self.wait_with(
            &format!("{n} errors"),
            timeout,
            |s| s.errors >= n,
            |state| state.errors.clone(),
        )
    }

    /// Waits until the agent has accepted at least `n` connections over its life.
    pub fn wait_for_connections(&self, n: u64, timeout: Duration) -> Result<Status, Timeout> {
        self.wait_for(&format!("{n} connections"), timeout, |s| s.connections >= n)
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.kill();
    }
}
