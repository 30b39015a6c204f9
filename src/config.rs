//! The client's settings, fixed when it is built.

use std::path::PathBuf;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::record::Text;
use crate::spool::SpoolSync;
use crate::transport::Transport;

/// Settings shared by the client, the writer and the supervisor.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) service_tree_id: Text,
    pub(crate) transport: Transport,
    pub(crate) queue_capacity: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) backoff: Backoff,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) max_frame_size: usize,
    pub(crate) max_custom_depth: usize,
    pub(crate) wait_for_connection: bool,
    pub(crate) notification_capacity: usize,
    pub(crate) idle_poll: Duration,
    pub(crate) drop_timeout: Duration,
    pub(crate) replay_unread: bool,
    pub(crate) send_buffer: SendBuffer,
    pub(crate) spool: Option<SpoolConfig>,
}

/// Where and how the client spools records to disk.
#[derive(Debug, Clone)]
pub(crate) struct SpoolConfig {
    pub(crate) dir: PathBuf,
    pub(crate) limit: u64,
    pub(crate) sync: SpoolSync,
}

/// The spool's default size limit: 1 GiB.
pub(crate) const DEFAULT_SPOOL_LIMIT: u64 = 1 << 30;

/// The socket send buffer (`SO_SNDBUF`) to ask for on each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendBuffer {
    /// [`DEFAULT_UNIX_SEND_BUFFER`] on Unix sockets; TCP keeps the kernel's autotuning.
    Default,
    /// The kernel's default everywhere.
    Kernel,
    /// This many bytes everywhere.
    Bytes(usize),
}

/// The send buffer asked for on Unix sockets unless configured otherwise.
///
/// With the kernel's usual 208 KiB, a writer that outpaces the agent for a moment blocks
/// until the agent has read three quarters of it (Linux wakes a Unix socket's writer only
/// then), and writer and agent take turns instead of running side by side. The figures
/// are in docs/PERFORMANCE.md, Throughput, under "Send buffer".
pub(crate) const DEFAULT_UNIX_SEND_BUFFER: usize = 1 << 20;

impl SendBuffer {
    /// The size to set on a new connection, if any.
    pub(crate) fn for_unix(self) -> Option<usize> {
        match self {
            SendBuffer::Default => Some(DEFAULT_UNIX_SEND_BUFFER),
            SendBuffer::Kernel => None,
            SendBuffer::Bytes(n) => Some(n),
        }
    }

    pub(crate) fn for_tcp(self) -> Option<usize> {
        match self {
            SendBuffer::Default | SendBuffer::Kernel => None,
            SendBuffer::Bytes(n) => Some(n),
        }
    }
}
