//! The records `send` could not deliver, written back as JSON lines in the input format
//! with their original `ts`, so the same command can send them again.
//!
//! The client delivers records in the order it accepted them, so the undelivered ones
//! are always the last accepted: they are handed back as the lines they were read from.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

#[derive(Debug, Default)]
pub struct HandBack {
    /// Lines of accepted records, from the `first`-th on (counted from 0).
    accepted: VecDeque<String>,
    first: u64,
    /// Lines of valid records that were never given to the client.
    never_sent: Vec<String>,
}

impl HandBack {
    /// A record from this line was accepted by the client.
    pub fn accepted(&mut self, line: &[u8]) {
        self.accepted
            .push_back(String::from_utf8_lossy(line).into_owned());
    }

    /// A valid record from this line was never given to the client.
    pub fn never_sent(&mut self, line: &[u8]) {
        self.never_sent
            .push(String::from_utf8_lossy(line).into_owned());
    }

    /// Forgets the lines of delivered records (the client's delivered count only grows).
    pub fn delivered(&mut self, delivered: u64) {
        while self.first < delivered && self.accepted.pop_front().is_some() {
            self.first += 1;
        }
    }

    /// The lines to hand back when the first `delivered` accepted records were delivered.
    pub fn lines(&self, delivered: u64) -> impl Iterator<Item = &str> {
        let skip = usize::try_from(delivered.saturating_sub(self.first)).unwrap_or(usize::MAX);
        self.accepted
            .iter()
            .skip(skip)
            .chain(&self.never_sent)
            .map(String::as_str)
    }

    /// Writes the lines to hand back into `file` (created before sending, so that a
    /// path that cannot be written is known at once).
    pub fn write(&self, delivered: u64, file: File, path: &Path) -> Result<u64, String> {
        let mut out = BufWriter::new(file);
        let mut n = 0;
        let result: io::Result<()> = (|| {
            for line in self.lines(delivered) {
                writeln!(out, "{line}")?;
                n += 1;
            }
            out.flush()
        })();
        result.map(|()| n).map_err(|e| {
            format!(
                "cannot write the undelivered records to {}: {e}",
                path.display()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_undelivered_tail_and_the_never_sent_are_handed_back_in_order() {
        let mut h = HandBack::default();
        for line in ["a", "b", "c"] {
            h.accepted(line.as_bytes());
        }
        h.never_sent(b"d");
        assert_eq!(h.lines(1).collect::<Vec<_>>(), ["b", "c", "d"]);
        assert_eq!(h.lines(3).collect::<Vec<_>>(), ["d"]);
    }

    #[test]
    fn delivered_lines_are_forgotten() {
        let mut h = HandBack::default();
        for line in ["a", "b", "c"] {
            h.accepted(line.as_bytes());
        }
        h.delivered(2);
        assert_eq!((h.first, h.accepted.len()), (2, 1));
        assert_eq!(h.lines(2).collect::<Vec<_>>(), ["c"]);
    }
}
