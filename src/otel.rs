//! The client's counters as OpenTelemetry metrics.
//!
//! [`register`] puts observable instruments on a [`Meter`] you pass. Their callbacks read
//! [`Client::stats`] when your metrics pipeline collects, so they cost nothing on the
//! send path. The five counters go-otel-audit exports keep their names, so dashboards and
//! alerts built for Go services read these too; the rest follow the same pattern. Units
//! are OpenTelemetry's annotations (`{message}`), and no name carries a unit or `_total`.
//!
//! | instrument | kind | unit | value: [`Stats`] field |
//! |---|---|---|---|
//! | `messages_accepted` | counter | `{message}` | `accepted` |
//! | `messages_sent` (Go) | counter | `{message}` | `delivered`: records the agent has read (Go counts a record sent once written; one the agent died before reading is not counted here) |
//! | `messages_requeued` (Go) | counter | `{message}` | `retried + replayed`: records written again after a failure |
//! | `messages_dropped` (Go) | counter | `{message}` | `lost`: records the agent was not seen to read and that will not be written again (`close` hands them back) |
//! | `messages_errors` (Go) | counter | `{error}` | `write_errors` |
//! | `heartbeat_dropped` (Go) | counter | `{heartbeat}` | `heartbeats_dropped` |
//! | `messages_refused` | counter, attribute `error.type` = `queue_full`, `invalid`, `too_large` or `closed` | `{message}` | `refused_full`, `refused_invalid`, `refused_too_large`, `refused_closed` |
//! | `connections` | counter | `{connection}` | `connects` |
//! | `connection_failures` | counter | `{connection}` | `connect_failures` |
//! | `messages_in_flight` | gauge | `{message}` | `in_flight`: written, not yet confirmed read |
//! | `messages_pending` | gauge | `{message}` | `pending`: accepted, not yet written |
//! | `queue_length` | gauge | `{message}` | `queue_len` |
//! | `messages_spooled` | counter | `{message}` | `spooled`: records written to the spool |
//! | `spool_replayed` | counter | `{message}` | `spool_replayed`: an earlier client's spooled records delivered |
//! | `spool_corrupt` | counter | `{file}` | `spool_corrupt`: damaged spool files found at open |
//! | `spool_errors` | counter | `{error}` | `spool_errors`: faults of the spool's disk |
//! | `spool_size` | gauge | `By` | `spool_bytes` |
//!
//! The first counter and the next three instruments follow [`Stats`]' partition of every
//! accepted record: `messages_accepted` = `messages_sent` + `messages_in_flight` +
//! `messages_pending` + `messages_dropped`, up to records moving while they are read.
//!
//! Name the meter after this crate (`provider.meter("geneva-audit")`) so the instruments'
//! scope says where they come from, as Go's meter does.
//!
//! ```
//! use geneva_audit::{Client, MemorySink, Transport};
//!
//! // The meter provider your service set up (an `SdkMeterProvider` with your
//! // exporters, installed as the global one).
//! let meter = opentelemetry::global::meter("geneva-audit");
//! let client = Client::builder("e6c9fcb1-7f08-4c1d-9e7a-123456789abc")
//!     .transport(Transport::Memory(MemorySink::new()))
//!     .build()?;
//! let metrics = geneva_audit::otel::register(&client, &meter);
//! // ... send records; the pipeline reads the counters when it collects ...
//! drop(metrics); // with the client: the registration holds a handle to it
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::{Arc, Weak};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{AsyncInstrument, Meter};

use crate::{Client, Stats};

/// Instruments registered by [`register`]; they report while this lives.
///
/// It holds a handle to the client, and the instruments' callbacks only a weak one, so
/// the metrics pipeline (which keeps callbacks for its whole life) never keeps the client
/// alive. Drop it along with your other handles: the client's own drop, which writes what
/// is queued, runs once the last handle, this one included, is gone. [`Client::close`]
/// works whether it lives or not. Once it is dropped the instruments report nothing.
#[derive(Debug)]
pub struct Registration {
    _client: Arc<Client>,
}

/// Registers the instruments in the [module's table](self) on `meter`, reading `client`.
///
/// Each collection calls [`Client::stats`] once per instrument, so instruments may be a
/// few records apart from each other within one collection.
pub fn register(client: &Client, meter: &Meter) -> Registration {
    let client = Arc::new(client.clone());
    let source = Arc::downgrade(&client);
    for &(name, unit, description, value) in &COUNTERS {
        let source = source.clone();
        meter
            .u64_observable_counter(name)
            .with_unit(unit)
            .with_description(description)
            .with_callback(move |observer: &dyn AsyncInstrument<u64>| {
                if let Some(stats) = stats(&source) {
                    observer.observe(value(&stats), &[]);
                }
            })
            .build();
    }
    refused(meter, &source);
    for &(name, unit, description, value) in &GAUGES {
        let source = source.clone();
        meter
            .u64_observable_gauge(name)
            .with_unit(unit)
            .with_description(description)
            .with_callback(move |observer: &dyn AsyncInstrument<u64>| {
                if let Some(stats) = stats(&source) {
                    observer.observe(value(&stats), &[]);
                }
            })
            .build();
    }
    Registration { _client: client }
}

/// Where an instrument's value comes from.
type Read = fn(&Stats) -> u64;

/// Counters: name, unit, description, value. Every value only ever grows.
const COUNTERS: [(&str, &str, &str, Read); 12] = [
    (
        "messages_accepted",
        "{message}",
        "Records accepted by try_send or send_timeout.",
        |s| s.accepted,
    ),
    (
        "messages_sent",
        "{message}",
        "Records the agent has read.",
        |s| s.delivered,
    ),
    (
        "messages_requeued",
        "{message}",
        "Records written again after a failed write or an agent that died with them unread.",
        |s| s.retried.saturating_add(s.replayed),
    ),
    (
        "messages_dropped",
        "{message}",
        "Records the agent was not seen to read and that will not be written again.",
        |s| s.lost,
    ),
    (
        "messages_errors",
        "{error}",
        "Writes that failed (each drops the connection).",
        |s| s.write_errors,
    ),
    (
        "heartbeat_dropped",
        "{heartbeat}",
        "Heartbeat frames discarded unwritten.",
        |s| s.heartbeats_dropped,
    ),
    (
        "connections",
        "{connection}",
        "Connections to the agent that succeeded.",
        |s| s.connects,
    ),
    (
        "connection_failures",
        "{connection}",
        "Connection attempts that failed.",
        |s| s.connect_failures,
    ),
    (
        "messages_spooled",
        "{message}",
        "Records written to the spool while the agent was away or behind, and at close.",
        |s| s.spooled,
    ),
    (
        "spool_replayed",
        "{message}",
        "Records an earlier client left in the spool that this one delivered.",
        |s| s.spool_replayed,
    ),
    (
        "spool_corrupt",
        "{file}",
        "Spool files found damaged at open (a torn tail cut, a file moved aside).",
        |s| s.spool_corrupt,
    ),
    (
        "spool_errors",
        "{error}",
        "Faults of the spool's disk (full, refused, broken).",
        |s| s.spool_errors,
    ),
];

/// Gauges: name, unit, description, value.
const GAUGES: [(&str, &str, &str, Read); 4] = [
    (
        "messages_in_flight",
        "{message}",
        "Records written and not yet confirmed read by the agent.",
        |s| s.in_flight,
    ),
    (
        "messages_pending",
        "{message}",
        "Records accepted and not yet written.",
        |s| s.pending,
    ),
    (
        "queue_length",
        "{message}",
        "Records in the client's queue.",
        |s| s.queue_len,
    ),
    ("spool_size", "By", "Bytes the spool's files hold.", |s| {
        s.spool_bytes
    }),
];

/// The refusal reasons, as `error.type` values, and where `Stats` counts each.
const REFUSALS: [(&str, Read); 4] = [
    ("queue_full", |s| s.refused_full),
    ("invalid", |s| s.refused_invalid),
    ("too_large", |s| s.refused_too_large),
    ("closed", |s| s.refused_closed),
];

fn refused(meter: &Meter, source: &Weak<Client>) {
    let source = source.clone();
    meter
        .u64_observable_counter("messages_refused")
        .with_unit("{message}")
        .with_description("Records try_send or send_timeout refused, by reason (error.type).")
        .with_callback(move |observer: &dyn AsyncInstrument<u64>| {
            if let Some(stats) = stats(&source) {
                for (reason, value) in REFUSALS {
                    observer.observe(value(&stats), &[KeyValue::new("error.type", reason)]);
                }
            }
        })
        .build();
}

fn stats(source: &Weak<Client>) -> Option<Stats> {
    source.upgrade().map(|client| client.stats())
}
