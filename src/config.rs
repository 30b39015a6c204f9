//! The client's settings, fixed when it is built.

use std::time::Duration;

use crate::backoff::Backoff;
use crate::record::Text;
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
}
