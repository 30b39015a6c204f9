//! The client's counters as OpenTelemetry metrics.
//!
//! [`register`] puts observable instruments on a [`Meter`] you pass. Their callbacks read
//! [`Client::stats`] when your metrics pipeline collects, so they cost nothing on the
//! send path. The five counters go-otel-audit exports keep their names, so dashboards and
//! alerts built for Go services read these too; the rest follow the same pattern. Units
//! are OpenTelemetry's annotations (`{message}`), and no name carries a unit or `_total`.
//!
//! | instrument | kind | unit | value ([`Stats`] fields) |
//! |---|---|---|---|
//! | `messages_accepted` | counter | `{message}` | `accepted` |
//! | `messages_sent` (Go) | counter | `{message}` | `written + replayed`: record frames handed to the socket, resends included, as Go counts them |
//! | `messages_requeued` (Go) | counter | `{message}` | `retried + replayed`: records written again after a failure |
//! | `messages_dropped` (Go) | counter | `{message}` | `lost`: accepted records that were never written |
//! | `messages_errors` (Go) | counter | `{error}` | `write_errors` |
//! | `heartbeat_dropped` (Go) | counter | `{heartbeat}` | `heartbeats_dropped` |
//! | `messages_refused` | counter, attribute `error.type` = `queue_full`, `invalid`, `too_large` or `closed` | `{message}` | `refused_full`, `refused_invalid`, `refused_too_large`, `refused_closed` |
//! | `connections` | counter | `{connection}` | `connects` |
//! | `connection_failures` | counter | `{connection}` | `connect_failures` |
//! | `queue_length` | gauge | `{message}` | `queue_len` |
//! | `messages_pending` | gauge | `{message}` | `pending` |
//!
//! Name the meter after this crate (`provider.meter("geneva-audit")`) so the instruments'
//! scope says where they come from, as Go's meter does.
//!
//! ```
//! use geneva_audit::{Client, MemorySink, Transport};
//! use opentelemetry::metrics::MeterProvider as _;
//! use opentelemetry_sdk::metrics::SdkMeterProvider;
//!
//! let provider = SdkMeterProvider::builder().build(); // your exporters here
//! let client = Client::builder("e6c9fcb1-7f08-4c1d-9e7a-123456789abc")
//!     .transport(Transport::Memory(MemorySink::new()))
//!     .build()?;
//! let metrics = geneva_audit::otel::register(&client, &provider.meter("geneva-audit"));
//! // ... send records; the pipeline reads the counters when it collects ...
//! drop(metrics); // with the client: the registration holds a handle to it
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
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
/// few records apart from each other within one collection. Counters never go down, even
/// when two counters they add up are read between updates.
pub fn register(client: &Client, meter: &Meter) -> Registration {
    let client = Arc::new(client.clone());
    let source = Arc::downgrade(&client);

    counter(
        meter,
        &source,
        "messages_accepted",
        "{message}",
        "Records accepted by try_send or send_timeout.",
        |s| s.accepted,
    );
    counter(
        meter,
        &source,
        "messages_sent",
        "{message}",
        "Record frames handed to the agent's socket, resends included.",
        |s| s.written.saturating_add(s.replayed),
    );
    // delivered: `messages_delivered` from `Stats::delivered` once it exists.
    counter(
        meter,
        &source,
        "messages_requeued",
        "{message}",
        "Records written again after a failed write or an agent that died with them unread.",
        |s| s.retried.saturating_add(s.replayed),
    );
    counter(
        meter,
        &source,
        "messages_dropped",
        "{message}",
        "Accepted records that were never written (handed back by close, or the client died).",
        |s| s.lost,
    );
    counter(
        meter,
        &source,
        "messages_errors",
        "{error}",
        "Writes that failed (each drops the connection).",
        |s| s.write_errors,
    );
    counter(
        meter,
        &source,
        "heartbeat_dropped",
        "{heartbeat}",
        "Heartbeat frames discarded unwritten.",
        |s| s.heartbeats_dropped,
    );
    counter(
        meter,
        &source,
        "connections",
        "{connection}",
        "Connections to the agent that succeeded.",
        |s| s.connects,
    );
    counter(
        meter,
        &source,
        "connection_failures",
        "{connection}",
        "Connection attempts that failed.",
        |s| s.connect_failures,
    );
    refused(meter, &source);
    gauge(
        meter,
        &source,
        "queue_length",
        "Records in the client's queue.",
        |s| s.queue_len,
    );
    gauge(
        meter,
        &source,
        "messages_pending",
        "Records accepted and neither written nor lost yet.",
        |s| s.pending,
    );

    Registration { _client: client }
}

/// Where an instrument's value comes from.
type Read = fn(&Stats) -> u64;

/// The refusal reasons, as `error.type` values, and where `Stats` counts each.
const REFUSALS: [(&str, Read); 4] = [
    ("queue_full", |s| s.refused_full),
    ("invalid", |s| s.refused_invalid),
    ("too_large", |s| s.refused_too_large),
    ("closed", |s| s.refused_closed),
];

fn stats(source: &Weak<Client>) -> Option<Stats> {
    source.upgrade().map(|client| client.stats())
}

fn counter(
    meter: &Meter,
    source: &Weak<Client>,
    name: &'static str,
    unit: &'static str,
    description: &'static str,
    value: Read,
) {
    let source = source.clone();
    let high = Monotonic::default();
    meter
        .u64_observable_counter(name)
        .with_unit(unit)
        .with_description(description)
        .with_callback(move |observer: &dyn AsyncInstrument<u64>| {
            if let Some(stats) = stats(&source) {
                observer.observe(high.at_least(value(&stats)), &[]);
            }
        })
        .build();
}

fn refused(meter: &Meter, source: &Weak<Client>) {
    let source = source.clone();
    let highs: [Monotonic; 4] = Default::default();
    meter
        .u64_observable_counter("messages_refused")
        .with_unit("{message}")
        .with_description("Records try_send or send_timeout refused, by reason (error.type).")
        .with_callback(move |observer: &dyn AsyncInstrument<u64>| {
            if let Some(stats) = stats(&source) {
                for ((reason, value), high) in REFUSALS.iter().zip(&highs) {
                    let attributes = [KeyValue::new("error.type", *reason)];
                    observer.observe(high.at_least(value(&stats)), &attributes);
                }
            }
        })
        .build();
}

fn gauge(
    meter: &Meter,
    source: &Weak<Client>,
    name: &'static str,
    description: &'static str,
    value: Read,
) {
    let source = source.clone();
    meter
        .u64_observable_gauge(name)
        .with_unit("{message}")
        .with_description(description)
        .with_callback(move |observer: &dyn AsyncInstrument<u64>| {
            if let Some(stats) = stats(&source) {
                observer.observe(value(&stats), &[]);
            }
        })
        .build();
}

/// The highest value a counter has reported. `messages_sent` adds two counters the writer
/// updates one after the other; a read between them must not make the sum go back.
#[derive(Debug, Default)]
struct Monotonic(AtomicU64);

impl Monotonic {
    fn at_least(&self, value: u64) -> u64 {
        self.0.fetch_max(value, Ordering::Relaxed).max(value)
    }
}

#[cfg(test)]
mod tests {
    use super::Monotonic;

    #[test]
    fn a_counter_never_reports_less_than_before() {
        let high = Monotonic::default();
        assert_eq!(high.at_least(5), 5);
        assert_eq!(high.at_least(3), 5);
        assert_eq!(high.at_least(9), 9);
    }
}
