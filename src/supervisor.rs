//! The supervisor thread: it owns connecting. When the writer has no connection it says
//! so on the link, the supervisor connects (retrying with jittered exponential backoff)
//! and hands the connection over. Every wait here gives way to shutdown.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::MutexGuard;

use crate::backoff::BackoffState;
use crate::config::Config;
use crate::link::{Link, LinkState};
use crate::notify::Event;
use crate::stats::Counters;
use crate::transport::Connection;
use crate::watch::Watch;

/// A connection that lasted this long (or on which the agent was seen reading) was a
/// good one: the next reconnection comes without backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(1);

/// The supervisor's loop: connect when the writer wants a connection, back off after
/// failures, stop when told.
pub(crate) fn run(link: Arc<Link>, config: Arc<Config>) {
    let mut supervisor = Supervisor::new(link, config);
    while supervisor.wait_until_wanted() && supervisor.connect() {}
    supervisor.let_go_unused();
}

/// What the supervisor remembers from one connection attempt to the next.
struct Supervisor {
    link: Arc<Link>,
    config: Arc<Config>,
    backoff: BackoffState,
    /// Backoff waits end early when the agent's socket appears.
    watch: Watch,
    connected_before: bool,
    /// When the last connection was handed to the writer, until it asks again.
    handed_over: Option<Instant>,
}

impl Supervisor {
    fn new(link: Arc<Link>, config: Arc<Config>) -> Supervisor {
        let backoff = BackoffState::new(config.backoff);
        let watch = Watch::new(&config.transport, &link);
        Supervisor {
            link,
            config,
            backoff,
            watch,
            connected_before: false,
            handed_over: None,
        }
    }

    /// Waits until the writer wants a connection, backing off first if the one handed
    /// over last failed before carrying anything. False once the client is stopping.
    fn wait_until_wanted(&mut self) -> bool {
        let link = &self.link;
        let mut st = link.lock();
        let needed = |st: &LinkState| st.want && st.ready.is_none();
        while !self.link.lifecycle().stopping() && !needed(&st) {
            link.cond.wait(&mut st);
        }
        if self.link.lifecycle().stopping() {
            return false;
        }
        // Asked again after handing a connection over: it has failed.
        if let Some(at) = self.handed_over.take() {
            let lasted = at.elapsed() >= HEALTHY_AFTER;
            if std::mem::take(&mut st.healthy) || lasted {
                self.backoff.reset();
            } else {
                // It carried nothing before it failed: back off as after a failed
                // connect.
                let until = crate::time::after(self.backoff.next_delay());
                self.wait_out(&mut st, until);
                if self.link.lifecycle().stopping() {
                    return false;
                }
            }
        }
        true
    }

    /// Waits until `until`, the agent's socket appears, or the client stops.
    fn wait_out(&self, st: &mut MutexGuard<'_, LinkState>, until: Instant) {
        while !self.link.lifecycle().stopping() {
            if self.watch.wait(&self.link, st, until) {
                break;
            }
        }
    }

    /// One attempt: hands a new connection to the writer, or backs off after a failure.
    /// False once the client is stopping.
    fn connect(&mut self) -> bool {
        // The agent's default socket is chosen anew at each attempt.
        let target = self.config.transport.resolve();
        let destination = target.to_string();
        match target.connect(
            self.config.connect_timeout,
            self.config.write_timeout,
            self.config.send_buffer,
        ) {
            Ok(conn) => self.hand_over(conn, destination),
            Err(e) => {
                self.back_off(&e, destination);
                true
            }
        }
    }

    fn hand_over(&mut self, conn: Connection, destination: String) -> bool {
        let link = &self.link;
        // Said before the writer can have the connection, so that its `WriteFailed`
        // never comes before this; counted after, so whoever sees the count can find
        // the event.
        link.notifier.publish(Event::Connected {
            destination,
            reconnect: self.connected_before,
        });
        Counters::add(&link.counters.connects, 1);
        self.connected_before = true;
        let mut st = link.lock();
        if self.link.lifecycle().stopping() {
            drop(st);
            link.close_in_background(conn, None);
            return false;
        }
        st.ready = Some(conn);
        st.last_error = None;
        link.cond.notify_all();
        self.handed_over = Some(Instant::now());
        true
    }

    fn back_off(&mut self, e: &io::Error, destination: String) {
        let link = &self.link;
        let retry_in = self.backoff.next_delay();
        link.notifier.publish(Event::ConnectFailed {
            destination,
            kind: e.kind(),
            error: e.to_string(),
            failures: self.backoff.failures(),
            retry_in,
        });
        Counters::add(&link.counters.connect_failures, 1);
        let until = crate::time::after(retry_in);
        let mut st = link.lock();
        st.last_error = Some((e.kind(), e.to_string()));
        link.cond.notify_all();
        self.wait_out(&mut st, until);
    }

    /// A connection made but not yet taken by the writer is closed with the client.
    fn let_go_unused(&self) {
        let ready = self.link.lock().ready.take();
        if let Some(conn) = ready {
            self.link.close_in_background(conn, None);
        }
    }
}
