//! Sends security audit records from a service to the Geneva monitoring agent on the same
//! host, over the agent's Unix domain socket (or TCP), in the agent's fluent frame format.
//!
//! It is the Rust counterpart of Microsoft's Go client go-otel-audit and writes the same
//! bytes, for services that must neither block on auditing nor lose an audit record
//! without being told. One [`Client`] per process: callers hand it [`Record`]s with
//! [`Client::try_send`], which validates them and puts them on a bounded queue; a writer
//! thread encodes them and writes them to the agent, and a supervisor thread keeps the
//! connection up. No async runtime, no allocation per record in steady state, and the
//! library never prints.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use geneva_audit::agent::TestAgent;
//! use geneva_audit::{Client, OperationCategory, OperationResult, OperationType, Record};
//!
//! # let dir = std::env::temp_dir().join(format!("geneva-audit-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! # let socket = dir.join("agent.sock");
//! // A local stand-in for the agent (the `test-agent` feature); a service leaves the
//! // transport at its default, the agent's own socket.
//! let agent = TestAgent::unix(&socket)?;
//! let client = Client::builder("e6c9fcb1-7f08-4c1d-9e7a-123456789abc")
//!     .unix_socket(&socket)
//!     .build()?;
//!
//! let record = Record::data_plane()
//!     .caller_ip("203.0.113.42".parse()?)
//!     .add_caller_identity(geneva_audit::CallerIdentityType::Upn, "alice@contoso.com", "user")
//!     .add_operation_category(OperationCategory::ResourceManagement)
//!     .add_target_resource("SubscriptionId", "4bb12743-2418-427f-92ae-96a11a4044fe")
//!     .add_caller_access_level("Contributor")
//!     .operation_access_level("Contributor")
//!     .operation_name("ListStorageAccounts")
//!     .caller_agent("azure-cli/2.61.0")
//!     .operation_type(OperationType::Read)
//!     .operation_result(OperationResult::Success);
//! // Never blocks: a full queue hands the record back in the error.
//! client.try_send(record)?;
//!
//! // At shutdown: whatever could not be handed over comes back.
//! let report = client.close(Duration::from_secs(5));
//! assert!(report.unsent.is_empty());
//! let frames = agent.wait_for_frames(1, Duration::from_secs(10))?;
//! assert_eq!(frames[0].body_str("OperationName"), Some("ListStorageAccounts"));
//! # drop(agent);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Guarantees
//!
//! A record's life is *queued* (accepted by [`Client::try_send`] or
//! [`Client::send_timeout`]) → *written* (handed to the kernel) → *delivered* (the agent
//! has read it). The protocol has no acknowledgements, so delivery is confirmed by the
//! kernel: on Unix sockets its count of bytes the agent has not read yet (`SIOCOUTQ`), on
//! TCP the peer's acknowledgements; on the memory and no-op transports a record counts as
//! delivered once written.
//!
//! - **Never blocks.** [`Client::try_send`] validates on the caller's thread and returns at
//!   once; a full queue or an invalid record is an error that hands the record back.
//!   [`Client::send_timeout`] waits for room, within its deadline.
//! - **In order, at least once.** Records are written in the order they were accepted. A
//!   failed write keeps its frames and sends them first on the next connection; records
//!   the agent had not read when it died are written again (on Linux), so an agent crash
//!   costs duplicates, not records.
//! - **Nothing lost silently.** [`Client::close`] writes what is queued, waits within its
//!   deadline for the agent to read it, and hands back in [`CloseReport::unsent`], in
//!   order, every record not confirmed read. Losses otherwise are counted in [`Stats`] and
//!   reported as [`Notification`]s.
//!
//! # Platforms
//!
//! Linux fully. Other Unix systems work without the replay of unread records and without
//! delivery confirmation, which need `SIOCOUTQ` on Unix sockets. Windows and other
//! non-Unix targets are not supported: building for them fails with an error that says
//! so.
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `test-agent` | [`agent`]: a local stand-in for the Geneva agent that decodes every frame with an independent MessagePack decoder and misbehaves on demand, for a service's own tests |
//! | `json` | [`json`]: records as JSON lines, read and written, in the shape of the reference client's golden file |
//! | `log` | every [`Notification`] also goes to the `log` facade (target `geneva_audit`) |
//! | `otel` | [`otel`]: the client's counters as OpenTelemetry instruments on a meter you pass |
//! | `cli` | the `geneva-audit` command (listen, send, check, encode); implies `json` and `test-agent` |
//!
//! # Where to start
//!
//! [`Client::builder`] and [`ClientBuilder`] for the settings; [`Record`] to build records
//! (it is its own builder, and its getters take the `get_` prefix); [`SendError`],
//! [`CloseReport`] and [`Stats`] for what happens to them; [`Transport`] and [`MemorySink`]
//! to test without an agent.
#![deny(missing_docs)]
#![deny(unsafe_code)]
// On docs.rs: a badge on every item that needs a feature.
#![cfg_attr(docsrs, feature(doc_cfg))]
// The whole crate is Unix-only (see the `compile_error!` below): badges name features only.
#![cfg_attr(docsrs, doc(auto_cfg(hide(unix))))]

// The transport needs Unix sockets and their ioctls; elsewhere say so, alone (every item
// below is gated too, so this is the only error a build on another target shows).
#[cfg(not(unix))]
compile_error!(
    "geneva-audit supports Unix only: Linux fully, other Unix systems without the \
     unread-data replay and delivery confirmation (they need SIOCOUTQ). Windows and other \
     non-Unix targets are not supported."
);

#[cfg(unix)]
mod backoff;
#[cfg(unix)]
mod client;
#[cfg(unix)]
mod closer;
#[cfg(unix)]
mod config;
#[cfg(unix)]
mod encode;
#[cfg(unix)]
mod kinds;
#[cfg(unix)]
mod link;
#[cfg(unix)]
mod notify;
#[cfg(unix)]
mod queue;
#[cfg(unix)]
mod record;
#[cfg(unix)]
mod room;
#[cfg(unix)]
mod send_buffer;
#[cfg(unix)]
pub mod spool;
#[cfg(unix)]
mod stats;
#[cfg(unix)]
mod supervisor;
#[cfg(unix)]
mod time;
#[cfg(unix)]
mod transport;
#[cfg(unix)]
mod validate;
#[cfg(unix)]
mod watch;
#[cfg(unix)]
mod worker;
#[cfg(unix)]
mod writer;

#[cfg(unix)]
pub use backoff::Backoff;
#[cfg(unix)]
pub use client::{BuildError, Client, ClientBuilder, CloseReport, FlushError, SendError};
#[cfg(unix)]
pub use encode::{Encoder, Heartbeat, encoded_len, encoded_len_bound};
#[cfg(unix)]
pub use kinds::{
    CallerIdentityType, MessageKind, OperationCategory, OperationResult, OperationType,
};
#[cfg(unix)]
pub use notify::{Event, LossReason, Notification, Notifications, RecvTimeoutError};
#[cfg(unix)]
pub use record::{CallerIdentity, OperationCategories, Record, TargetResource, Text, Value};
#[cfg(unix)]
pub use spool::{SpoolError, SpoolNotice, SpoolSync};
#[cfg(unix)]
pub use stats::Stats;
#[cfg(unix)]
pub use transport::{AGENT_DIR, ASA_SOCKET_PATH, DEFAULT_SOCKET_PATH, MemorySink, Transport};
#[cfg(unix)]
pub use validate::{
    DEFAULT_MAX_CUSTOM_DEPTH, MAX_CUSTOM_DEPTH, ValidationError, validate_service_tree_id,
};

#[cfg(all(unix, feature = "test-agent"))]
pub mod agent;
#[cfg(all(unix, feature = "json"))]
pub mod json;
#[cfg(all(unix, feature = "otel"))]
pub mod otel;

/// README's examples, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
