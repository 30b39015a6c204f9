//! Why a record, a flush or a build was refused.

// A refused record travels back to the caller by value inside the error: boxing it
// would allocate on the path that must not.
#![allow(clippy::result_large_err)]

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::record::Record;
use crate::spool::SpoolError;
use crate::validate::ValidationError;

/// Why `try_send` or `send_timeout` refused a record. Every variant hands the record
/// back: nothing is lost behind the caller's back.
///
/// Its `Debug` names the refusal and the record by its operation, not every field:
/// `QueueFull(Record { operation_name: "ListStorageAccounts", operation_type: Some(Read), .. })`.
#[allow(clippy::large_enum_variant)] // The record comes back by value: no allocation.
#[non_exhaustive]
pub enum SendError {
    /// The queue is full (for `send_timeout`: stayed full for the whole timeout).
    QueueFull(Record),
    /// The record breaks a validation rule.
    Invalid(ValidationError, Record),
    /// The record's frame is larger than the maximum frame size.
    TooLarge {
        /// The frame's size in bytes.
        size: usize,
        /// The configured maximum.
        max: usize,
        /// The record.
        record: Record,
    },
    /// The client is closed.
    Closed(Record),
    /// The client died (see [`Event::ClientDead`](crate::Event::ClientDead) for what ends
    /// a client) and refuses records.
    Dead(Record),
}

impl SendError {
    /// The refused record.
    pub fn record(&self) -> &Record {
        match self {
            SendError::QueueFull(r)
            | SendError::Invalid(_, r)
            | SendError::TooLarge { record: r, .. }
            | SendError::Closed(r)
            | SendError::Dead(r) => r,
        }
    }

    /// Takes the refused record back.
    pub fn into_record(self) -> Record {
        match self {
            SendError::QueueFull(r)
            | SendError::Invalid(_, r)
            | SendError::TooLarge { record: r, .. }
            | SendError::Closed(r)
            | SendError::Dead(r) => r,
        }
    }
}

impl fmt::Debug for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let record = RecordName(self.record());
        match self {
            SendError::QueueFull(_) => f.debug_tuple("QueueFull").field(&record).finish(),
            SendError::Invalid(e, _) => f.debug_tuple("Invalid").field(e).field(&record).finish(),
            SendError::TooLarge { size, max, .. } => f
                .debug_struct("TooLarge")
                .field("size", size)
                .field("max", max)
                .field("record", &record)
                .finish(),
            SendError::Closed(_) => f.debug_tuple("Closed").field(&record).finish(),
            SendError::Dead(_) => f.debug_tuple("Dead").field(&record).finish(),
        }
    }
}

/// A record in an error's `Debug`: what it is about, not its every field (which could
/// fill a log line with caller identities and custom data).
struct RecordName<'a>(&'a Record);

impl fmt::Debug for RecordName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("operation_name", &self.0.get_operation_name())
            .field("operation_type", &self.0.operation_type)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::QueueFull(_) => f.write_str("the queue is full"),
            SendError::Invalid(e, _) => write!(f, "invalid record: {e}"),
            SendError::TooLarge { size, max, .. } => {
                write!(
                    f,
                    "the record's frame is {size} bytes, over the maximum of {max}"
                )
            }
            SendError::Closed(_) => f.write_str("the client is closed"),
            SendError::Dead(_) => f.write_str("the client is dead"),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Invalid(e, _) => Some(e),
            _ => None,
        }
    }
}

/// Why `flush` returned before every record accepted before it was delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlushError {
    /// The timeout passed; `pending` accepted records were not delivered yet.
    Timeout {
        /// Records accepted and not yet delivered or lost, client-wide.
        pending: u64,
    },
    /// Every record accepted before the flush was dealt with, but `count` of them were
    /// lost instead of delivered (see [`Event::RecordsLost`](crate::Event::RecordsLost) for why).
    Lost {
        /// How many.
        count: u64,
    },
    /// The client is closed or dead.
    Closed,
}

impl fmt::Display for FlushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlushError::Timeout { pending } => {
                write!(
                    f,
                    "flush timed out with {pending} records not yet delivered"
                )
            }
            FlushError::Lost { count } => {
                write!(f, "{count} records accepted before the flush were lost")
            }
            FlushError::Closed => f.write_str("the client is closed"),
        }
    }
}

impl std::error::Error for FlushError {}

/// Why a client could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// The service tree id is blank, not a UUID, or the nil UUID.
    ServiceTreeId(ValidationError),
    /// A setting is out of range.
    Config(&'static str),
    /// A thread could not be started.
    Spawn(io::Error),
    /// The builder was asked to wait for a first connection, and none came within the
    /// connect timeout.
    Connect {
        /// Where the client tried to connect, e.g. `unix:/var/run/mdsd/default_fluent.socket`.
        destination: String,
        /// The last attempt's error (`TimedOut` when no attempt had finished).
        source: io::Error,
    },
    /// The spool's directory is in use by another client (its lock is held): two
    /// clients on one spool would send each other's records.
    SpoolLocked(SpoolError),
    /// The spool's directory cannot be used: it cannot be created or read, is a file,
    /// is not private to the user the client runs as ([`SpoolError::NotPrivate`]), or
    /// holds a spool of a newer format. A service that asked for a spool hears at once
    /// that it has none, instead of running on memory alone.
    SpoolUnusable {
        /// The spool directory, as given to [`ClientBuilder::spool`](crate::ClientBuilder::spool).
        path: PathBuf,
        /// Why, with the file or directory at fault.
        error: SpoolError,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::ServiceTreeId(e) => write!(f, "{e}"),
            BuildError::Config(what) => write!(f, "invalid setting: {what}"),
            BuildError::Spawn(e) => write!(f, "could not start a thread: {e}"),
            BuildError::Connect {
                destination,
                source,
            } => write!(
                f,
                "could not connect to the agent at {destination}: {source}"
            ),
            BuildError::SpoolLocked(e) => write!(f, "{e}"),
            BuildError::SpoolUnusable { path, error } => {
                write!(f, "cannot use {} as the spool: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::ServiceTreeId(e) => Some(e),
            BuildError::Spawn(e) | BuildError::Connect { source: e, .. } => Some(e),
            BuildError::Config(_) => None,
            BuildError::SpoolLocked(e) | BuildError::SpoolUnusable { error: e, .. } => Some(e),
        }
    }
}
