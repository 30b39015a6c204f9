//! A local stand-in for the Geneva monitoring agent, for tests.
//!
//! [`TestAgent`] listens on a Unix domain socket or a TCP port, accepts any number of
//! connections and decodes the fluent frames written to them with [`rmpv`], a MessagePack
//! decoder that shares no code with this crate's encoder. Every decoded frame is appended
//! to one list in arrival order; anything that is not a well-formed frame becomes a
//! [`FrameError`] in a second list, so a test can assert that there were none.
//!
//! The agent can also misbehave on purpose, to test a client against a slow, stuck,
//! picky or dying agent: see [`TestAgent::stop_reading`], [`TestAgent::set_read_rate`],
//! [`TestAgent::set_drop_after`], [`TestAgent::set_refuse_connections`],
//! [`TestAgent::disconnect_all`], [`TestAgent::kill`] and [`TestAgent::restart`].
//!
//! The frame splitting is available on its own as [`FrameSplitter`] (bytes in, frames
//! out, no sockets) and [`decode_frame`] (one complete frame).
//!
//! Every connection is read on its own thread. Shutting the agent down (dropping it, or
//! [`TestAgent::kill`]) wakes those threads and the accept thread at once on Linux by
//! shutting their sockets down, and joins them all; on other systems they notice within
//! about 100 ms.
//!
//! # Wire format
//!
//! Frames are MessagePack arrays `[tag, [[ts, body]], options]` written back to back on
//! the stream: no length prefix, no delimiter, no response. The agent finds where a frame
//! ends by walking the MessagePack structure, then decodes exactly those bytes.
//!
//! # Example
//!
//! ```
//! use std::io::Write;
//! use std::time::Duration;
//! use geneva_audit::agent::TestAgent;
//! use rmpv::Value;
//!
//! let agent = TestAgent::tcp("127.0.0.1:0")?;
//!
//! // Any client will do; here a frame encoded by hand.
//! let frame = Value::Array(vec![
//!     Value::from("AsmAuditDP"),
//!     Value::Array(vec![Value::Array(vec![
//!         Value::from(1_700_000_000_i64),
//!         Value::Map(vec![(Value::from("OperationName"), Value::from("Login"))]),
//!     ])]),
//!     Value::Map(vec![(Value::from("TimeFormat"), Value::from("DateTime"))]),
//! ]);
//! let mut bytes = Vec::new();
//! rmpv::encode::write_value(&mut bytes, &frame)?;
//! std::net::TcpStream::connect(agent.local_addr().expect("a TCP agent"))?.write_all(&bytes)?;
//!
//! let frames = agent.wait_for_frames(1, Duration::from_secs(10))?;
//! assert_eq!(frames[0].tag, "AsmAuditDP");
//! assert_eq!(frames[0].ts, 1_700_000_000);
//! assert_eq!(frames[0].body_str("OperationName"), Some("Login"));
//! assert!(agent.errors().is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod faults;
mod frame;
mod listen;
mod read;
mod server;
mod splitter;
mod state;
#[cfg(test)]
mod tests;

/// The MessagePack library the agent decodes with: [`ReceivedFrame`] holds its values.
pub use rmpv;

pub use frame::{FrameError, FrameErrorKind, ReceivedFrame};
pub use server::{Endpoint, TestAgent, TestAgentBuilder, Timeout};
pub use splitter::{FrameSplitter, decode_frame};
pub use state::Status;

/// The largest frame the agent accepts unless told otherwise: 16 MiB.
pub const DEFAULT_MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// How deeply arrays and maps may nest in one frame, the frame itself included (the
/// envelope uses 5 levels down to the record's values, leaving 123 for custom data).
/// Deeper frames are malformed: this bounds the recursive decoder's stack use, so a
/// hostile stream cannot overflow a thread's stack.
pub const MAX_NESTING: usize = 128;

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}
