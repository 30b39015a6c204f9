//! # geneva-audit
//!
//! Sends security audit records to the Geneva monitoring agent on the same host, over
//! the agent's Unix domain socket or TCP, in the agent's fluent frame format.
//!
//! Data flows one way: caller → bounded queue → writer thread → encoder → socket.
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
