//! The `otel` feature: instruments read back through the OpenTelemetry SDK after real
//! traffic through the test agent agree with `Client::stats`, and registering them does
//! not keep the client alive.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use geneva_audit::agent::TestAgent;
use geneva_audit::{Record, SendError, Stats};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{SdkMeterProvider, Temporality};

/// One reading of an instrument: its kind, unit and value per `error.type` (or "").
#[derive(Debug, PartialEq)]
struct Reading {
    kind: &'static str,
    unit: String,
    values: BTreeMap<String, u64>,
}

type Readings = BTreeMap<String, Reading>;

/// Keeps the last export's readings. (The SDK's own in-memory exporter needs its
/// `testing` feature, which brings tokio into every build of the examples.)
#[derive(Debug, Clone, Default)]
struct Exporter(Arc<Mutex<Option<Readings>>>);

impl PushMetricExporter for Exporter {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        *self.0.lock().unwrap() = Some(readings(metrics));
        Ok(())
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}

/// Collects now and returns every instrument of the `geneva-audit` meter by name.
fn collect(provider: &SdkMeterProvider, exporter: &Exporter) -> Readings {
    provider.force_flush().unwrap();
    exporter.0.lock().unwrap().take().expect("an export")
}

fn readings(resource: &ResourceMetrics) -> Readings {
    let mut readings = BTreeMap::new();
    for scope in resource.scope_metrics() {
        assert_eq!(scope.scope().name(), "geneva-audit");
        for metric in scope.metrics() {
            let AggregatedMetrics::U64(data) = metric.data() else {
                panic!("{} is not a u64 instrument", metric.name());
            };
            let (kind, points): (_, Vec<_>) = match data {
                MetricData::Sum(sum) => {
                    assert!(sum.is_monotonic(), "{} goes down", metric.name());
                    let points = sum.data_points().map(|p| (attr(p.attributes()), p.value()));
                    ("counter", points.collect())
                }
                MetricData::Gauge(gauge) => {
                    let points = gauge
                        .data_points()
                        .map(|p| (attr(p.attributes()), p.value()));
                    ("gauge", points.collect())
                }
                other => panic!("{}: unexpected {other:?}", metric.name()),
            };
            let reading = Reading {
                kind,
                unit: metric.unit().to_owned(),
                values: points.into_iter().collect(),
            };
            readings.insert(metric.name().to_owned(), reading);
        }
    }
    readings
}

fn attr<'a>(mut attributes: impl Iterator<Item = &'a opentelemetry::KeyValue>) -> String {
    match attributes.next() {
        None => String::new(),
        Some(kv) => {
            assert_eq!(kv.key.as_str(), "error.type");
            assert!(attributes.next().is_none());
            kv.value.to_string()
        }
    }
}

fn one(kind: &'static str, unit: &str, value: u64) -> Reading {
    Reading {
        kind,
        unit: unit.to_owned(),
        values: BTreeMap::from([(String::new(), value)]),
    }
}

/// What the instruments must say for `s`: the table in `geneva_audit::otel`'s docs.
fn expected(s: &Stats) -> Readings {
    let refused = BTreeMap::from([
        ("queue_full".to_owned(), s.refused_full),
        ("invalid".to_owned(), s.refused_invalid),
        ("too_large".to_owned(), s.refused_too_large),
        ("closed".to_owned(), s.refused_closed),
    ]);
    BTreeMap::from([
        (
            "messages_accepted".into(),
            one("counter", "{message}", s.accepted),
        ),
        (
            "messages_sent".into(),
            one("counter", "{message}", s.delivered),
        ),
        (
            "messages_requeued".into(),
            one("counter", "{message}", s.retried + s.replayed),
        ),
        (
            "messages_dropped".into(),
            one("counter", "{message}", s.lost),
        ),
        (
            "messages_errors".into(),
            one("counter", "{error}", s.write_errors),
        ),
        (
            "heartbeat_dropped".into(),
            one("counter", "{heartbeat}", s.heartbeats_dropped),
        ),
        (
            "connections".into(),
            one("counter", "{connection}", s.connects),
        ),
        (
            "connection_failures".into(),
            one("counter", "{connection}", s.connect_failures),
        ),
        (
            "messages_refused".into(),
            Reading {
                kind: "counter",
                unit: "{message}".into(),
                values: refused,
            },
        ),
        (
            "messages_in_flight".into(),
            one("gauge", "{message}", s.in_flight),
        ),
        (
            "queue_length".into(),
            one("gauge", "{message}", s.queue_len),
        ),
        (
            "messages_pending".into(),
            one("gauge", "{message}", s.pending),
        ),
        (
            "messages_spooled".into(),
            one("counter", "{message}", s.spooled),
        ),
        (
            "spool_replayed".into(),
            one("counter", "{message}", s.spool_replayed),
        ),
        (
            "spool_corrupt".into(),
            one("counter", "{file}", s.spool_corrupt),
        ),
        (
            "spool_errors".into(),
            one("counter", "{error}", s.spool_errors),
        ),
        ("spool_size".into(), one("gauge", "By", s.spool_bytes)),
    ])
}

fn meter_provider() -> (SdkMeterProvider, Exporter) {
    let exporter = Exporter::default();
    let provider = SdkMeterProvider::builder()
        .with_periodic_exporter(exporter.clone())
        .build();
    (provider, exporter)
}

#[test]
fn instruments_read_back_agree_with_stats_after_real_traffic() {
    let dir = TempDir::new("otel");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let client = builder().unix_socket(dir.socket()).build().unwrap();
    let (provider, exporter) = meter_provider();
    let _metrics = geneva_audit::otel::register(&client, &provider.meter("geneva-audit"));

    send_range(&client, 0, 40);
    // An empty record breaks validation: it shows as refused, with its reason.
    let refused = client.try_send(Record::data_plane());
    assert!(
        matches!(refused, Err(SendError::Invalid(..))),
        "{refused:?}"
    );
    client.flush(PATIENCE).unwrap();
    // 40 records and the connection's heartbeat.
    agent.wait_for_frames(41, PATIENCE).unwrap();

    let stats = client.stats();
    // flush waits until the agent has read them.
    assert_eq!(
        (stats.accepted, stats.delivered, stats.refused_invalid),
        (40, 40, 1)
    );
    assert_eq!(stats.connects, 1);
    assert_eq!(collect(&provider, &exporter), expected(&stats));

    // Later collections follow the counters.
    send_range(&client, 40, 10);
    client.flush(PATIENCE).unwrap();
    agent.wait_for_frames(51, PATIENCE).unwrap();
    let stats = client.stats();
    assert_eq!(stats.delivered, 50);
    assert_eq!(collect(&provider, &exporter), expected(&stats));
}

#[test]
fn behind_a_stuck_agent_the_gauges_show_the_backlog() {
    let (_dir, _agent, client) = stalled("otel-stuck");
    let (provider, exporter) = meter_provider();
    let _metrics = geneva_audit::otel::register(&client, &provider.meter("geneva-audit"));
    fill_until_blocked(&client, &_dir);
    assert!(client.try_send(record(u64::MAX)).is_err());

    // The writer sits in a blocked write: the counters hold still while we compare
    // (a collection taken while they moved is taken again).
    let deadline = std::time::Instant::now() + PATIENCE;
    let (stats, readings) = loop {
        let before = client.stats();
        let readings = collect(&provider, &exporter);
        if client.stats() == before {
            break (before, readings);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the counters never held still"
        );
    };
    assert!(
        stats.queue_len > 0 && stats.pending > stats.queue_len,
        "{stats:?}"
    );
    assert!(
        stats.refused_full > 0 && stats.in_flight > 0 && stats.accepted > stats.delivered,
        "{stats:?}"
    );
    assert_eq!(readings, expected(&stats));
    client.close(Duration::ZERO);
}

#[test]
fn the_metrics_pipeline_does_not_keep_the_client_alive() {
    let dir = TempDir::new("otel-drop");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let client = builder().unix_socket(dir.socket()).build().unwrap();
    let (provider, _exporter) = meter_provider();
    let metrics = geneva_audit::otel::register(&client, &provider.meter("geneva-audit"));
    send_range(&client, 0, 5);
    agent.wait_for_frames(6, PATIENCE).unwrap();
    agent
        .wait_for("one open connection", PATIENCE, |s| s.open_connections == 1)
        .unwrap();

    // The provider keeps the callbacks; dropping every handle still ends the client, which
    // closes its connection.
    drop(metrics);
    drop(client);
    agent
        .wait_for("the client to let go", PATIENCE, |s| {
            s.open_connections == 0
        })
        .unwrap();
    // Collecting afterwards does not fail.
    provider.force_flush().unwrap();
}
