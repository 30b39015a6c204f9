//! # geneva-audit
//!
//! Sends security audit records to the Geneva monitoring agent on the same host, over
//! the agent's Unix domain socket or TCP, in the agent's fluent frame format.
//!
//! Data flows one way: caller → bounded queue → writer thread → encoder → socket.
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod backoff;
mod client;
mod closer;
mod config;
mod encode;
mod kinds;
mod link;
mod notify;
mod queue;
mod record;
mod room;
mod stats;
mod supervisor;
mod time;
mod transport;
mod validate;
mod watch;
mod worker;
mod writer;

pub use backoff::Backoff;
pub use client::{BuildError, Client, ClientBuilder, CloseReport, FlushError, SendError};
pub use encode::{Encoder, Heartbeat, encoded_len, encoded_len_bound};
pub use kinds::{
    CallerIdentityType, MessageKind, OperationCategory, OperationResult, OperationType,
};
pub use notify::{Event, LossReason, Notification, Notifications, RecvTimeoutError};
pub use record::{CallerIdentity, OperationCategories, Record, TargetResource, Text, Value};
pub use stats::Stats;
pub use transport::{AGENT_DIR, ASA_SOCKET_PATH, DEFAULT_SOCKET_PATH, MemorySink, Transport};
pub use validate::{
    DEFAULT_MAX_CUSTOM_DEPTH, MAX_CUSTOM_DEPTH, ValidationError, validate_service_tree_id,
};

#[cfg(feature = "test-agent")]
pub mod agent;
#[cfg(feature = "json")]
pub mod json;

/// README's examples, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
