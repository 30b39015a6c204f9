//! Progress on long runs: a progress line on a terminal's stderr, else a plain line every
//! few seconds; and [`Console`], which prints messages without tearing the bar.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use crate::summary::count;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often the plain progress line is printed when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// Where messages for people go: stderr, above the progress bar if there is one.
#[derive(Clone, Default)]
pub struct Console {
    bar: Option<ProgressBar>,
}

impl Console {
    pub fn say(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}

/// The counts progress shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub lines: u64,
    pub delivered: u64,
    pub refused: u64,
}

pub struct Progress {
    bar: Option<ProgressBar>,
    started: Instant,
    next_plain: Instant,
}

impl Progress {
    /// A bar when stderr is a terminal, plain lines otherwise.
    pub fn new() -> Progress {
        let started = Instant::now();
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed}] {msg}") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            started,
            next_plain: started + PLAIN_EVERY,
        }
    }

    pub fn console(&self) -> Console {
        Console {
            bar: self.bar.clone(),
        }
    }

    /// Shows the counts: at once on the bar, or as a plain line when one is due.
    pub fn show(&mut self, counts: Counts) {
        let now = Instant::now();
        match &self.bar {
            Some(bar) => bar.set_message(describe(counts, now - self.started)),
            None if now >= self.next_plain => {
                self.next_plain = now + PLAIN_EVERY;
                eprintln!("geneva-audit: {}", describe(counts, now - self.started));
            }
            None => {}
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn describe(c: Counts, elapsed: Duration) -> String {
    let rate = c.delivered as f64 / elapsed.as_secs_f64().max(0.001);
    format!(
        "{} read, {} delivered, {} refused, {rate:.0} records/s",
        count(c.lines, "line"),
        count(c.delivered, "record"),
        count(c.refused, "line"),
    )
}
