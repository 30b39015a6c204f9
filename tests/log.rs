//! With the `log` feature, every notification also goes to the `log` facade.
#![cfg(feature = "log")]

mod common;

use std::sync::Mutex;

use common::*;

struct Capture(Mutex<Vec<(log::Level, String)>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        if record.target() == "geneva_audit" {
            self.0
                .lock()
                .unwrap()
                .push((record.level(), record.args().to_string()));
        }
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

#[test]
fn notifications_are_logged() {
    log::set_logger(&CAPTURE).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    let dir = TempDir::new("log");
    let client = builder().unix_socket(dir.socket()).build().unwrap();
    let path = dir.socket().display().to_string();
    wait_until("a logged connect failure", || {
        CAPTURE.0.lock().unwrap().iter().any(|(level, text)| {
            *level == log::Level::Warn && text.contains(&path) && text.contains("connecting to")
        })
    });
    let _agent = geneva_audit::agent::TestAgent::unix(dir.socket()).unwrap();
    wait_until("a logged connection", || {
        CAPTURE
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|(level, text)| *level == log::Level::Info && text.starts_with("connected to"))
    });
    client.close(PATIENCE);

    // Failures are warnings; losses and death are errors.
    let sink = geneva_audit::MemorySink::new();
    let client = builder()
        .transport(geneva_audit::Transport::Memory(sink.clone()))
        .queue_capacity(16)
        .build()
        .unwrap();
    sink.fail_writes(std::io::ErrorKind::BrokenPipe);
    sink.hang_closes();
    let _ = client.try_send(record(0));
    let logged = |level: log::Level, start: &'static str| {
        move || {
            CAPTURE
                .0
                .lock()
                .unwrap()
                .iter()
                .any(|(l, text)| *l == level && text.starts_with(start))
        }
    };
    wait_until(
        "a logged write failure",
        logged(log::Level::Warn, "write failed"),
    );
    wait_until(
        "a logged death",
        logged(log::Level::Error, "the client is dead"),
    );
    client.close(PATIENCE);
    wait_until(
        "a logged loss",
        logged(
            log::Level::Error,
            "1 accepted records were not confirmed read",
        ),
    );
    sink.heal();
}
