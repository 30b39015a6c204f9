//! The client's settings, fixed when it is built.

use std::path::PathBuf;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::record::Text;
use crate::spool::SpoolSync;
use crate::transport::Transport;

// src/client/ names the send buffer from here, beside the other settings.
use crate::send_buffer::SendBuffer;

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
