//! The supervisor thread: it owns connecting. When the writer has no connection it says
//! so on the link, the supervisor connects (retrying with jittered exponential backoff)
//! and hands the connection over. Every wait here gives way to shutdown.

use std::sync::Arc;

use crate::backoff::BackoffState;
use crate::config::Config;
use crate::link::{Link, LinkState};
use crate::notify::Event;
use crate::stats::Counters;
use crate::watch::Watch;

/// A connection that lasted this long (or on which the agent was seen reading) was a
/// good one: the next reconnection comes without backoff.
const HEALTHY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// The supervisor's loop: connect when the writer wants a connection, back off after
/// failures, stop when told.
pub(crate) fn run(shared: Arc<Link>, config: Arc<Config>) {
    let mut backoff = BackoffState::new(config.backoff);
    // Backoff waits end early when the agent's socket appears.
    let watch = Watch::new(&config.transport, &shared);
    let mut connected_before = false;
    let mut handed_over: Option<std::time::Instant> = None;
    loop {
        {
            let mut st = shared.lock();
            let needed = |st: &LinkState| st.want && st.ready.is_none();
            while !st.lifecycle.stopping() && !needed(&st) {
                shared.cond.wait(&mut st);
            }
            if st.lifecycle.stopping() {
                break;
            }
            // Asked again after handing a connection over: it has failed.
            if let Some(at) = handed_over.take() {
                let lasted = at.elapsed() >= HEALTHY_AFTER;
                if std::mem::take(&mut st.healthy) || lasted {
                    backoff.reset();
                } else {
                    // It carried nothing before it failed: back off as after a failed
                    // connect.
                    let until = crate::time::after(backoff.next_delay());
                    while !st.lifecycle.stopping() {
                        if watch.wait(&shared, &mut st, until) {
                            break;
                        }
                    }
                    if st.lifecycle.stopping() {
                        break;
                    }
                }
            }
        }
        // The agent's default socket is chosen anew at each attempt.
        let target = config.transport.resolve();
        let destination = target.to_string();
        match target.connect(
            config.connect_timeout,
            config.write_timeout,
            config.send_buffer,
        ) {
            Ok(conn) => {
                Counters::add(&shared.counters.connects, 1);
                // Said before the writer can have the connection, so that its
                // `WriteFailed` never comes before this.
                shared.notifier.publish(Event::Connected {
                    destination: destination.clone(),
                    reconnect: connected_before,
                });
                connected_before = true;
                let mut st = shared.lock();
                if st.lifecycle.stopping() {
                    drop(st);
                    shared.close_in_background(conn, None);
                    break;
                }
                st.ready = Some(conn);
                st.last_error = None;
                shared.cond.notify_all();
                handed_over = Some(std::time::Instant::now());
            }
            Err(e) => {
                Counters::add(&shared.counters.connect_failures, 1);
                let retry_in = backoff.next_delay();
                shared.notifier.publish(Event::ConnectFailed {
                    destination: destination.clone(),
                    kind: e.kind(),
                    error: e.to_string(),
                    failures: backoff.failures(),
                    retry_in,
                });
                let until = crate::time::after(retry_in);
                let mut st = shared.lock();
                st.last_error = Some((e.kind(), e.to_string()));
                shared.cond.notify_all();
                while !st.lifecycle.stopping() {
                    if watch.wait(&shared, &mut st, until) {
                        break;
                    }
                }
            }
        }
    }
    let ready = shared.lock().ready.take();
    if let Some(conn) = ready {
        shared.close_in_background(conn, None);
    }
}
