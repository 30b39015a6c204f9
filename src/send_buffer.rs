//! The socket send buffer (`SO_SNDBUF`) asked for on each connection: set by the builder,
//! applied by the transport, so it lives apart from both.

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
