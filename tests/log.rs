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
}
