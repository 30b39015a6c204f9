//! Reading input lines as bytes, numbered from 1, so that invalid UTF-8 is refused
//! rather than quietly replaced.

use std::io::{self, BufRead, IsTerminal};
use std::time::{SystemTime, UNIX_EPOCH};

/// The lines of a reader; blank lines are skipped but still counted.
pub struct Lines<R> {
    reader: R,
    buf: Vec<u8>,
    number: usize,
}

impl<R: BufRead> Lines<R> {
    pub fn new(reader: R) -> Self {
        Lines {
            reader,
            buf: Vec::new(),
            number: 0,
        }
    }

    /// The next non-blank line and its number, without its line ending; `None` at the
    /// end of the input.
    pub fn next_line(&mut self) -> io::Result<Option<(usize, &[u8])>> {
        let len = loop {
            self.buf.clear();
            if self.reader.read_until(b'\n', &mut self.buf)? == 0 {
                return Ok(None);
            }
            self.number += 1;
            let mut len = self.buf.len();
            while len > 0 && matches!(self.buf[len - 1], b'\n' | b'\r') {
                len -= 1;
            }
            if !self.buf[..len].iter().all(u8::is_ascii_whitespace) {
                break len;
            }
        };
        Ok(Some((self.number, &self.buf[..len])))
    }
}

/// Says where the records are expected when stdin is a terminal, where a command
/// waiting for input would otherwise look stuck.
pub fn hint_if_terminal() {
    if io::stdin().is_terminal() {
        eprintln!("geneva-audit: reading JSON lines from stdin (Ctrl-D ends the input)");
    }
}

/// Calls `each(line_number, bytes)` for every non-blank line of stdin until it returns
/// false. Returns false if stdin could not be read to the end (and says so).
pub fn for_each_line(mut each: impl FnMut(usize, &[u8]) -> bool) -> bool {
    hint_if_terminal();
    let mut lines = Lines::new(io::stdin().lock());
    loop {
        match lines.next_line() {
            Ok(Some((n, line))) => {
                if !each(n, line) {
                    return true;
                }
            }
            Ok(None) => return true,
            Err(e) => {
                eprintln!("geneva-audit: reading stdin: {e}");
                return false;
            }
        }
    }
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_numbered_from_1_counting_blank_ones() {
        let mut lines = Lines::new(&b"a\r\n\n  \nb\xff\nc"[..]);
        let mut got = Vec::new();
        while let Some((n, line)) = lines.next_line().unwrap() {
            got.push((n, line.to_vec()));
        }
        assert_eq!(
            got,
            [
                (1, b"a".to_vec()),
                (4, b"b\xff".to_vec()),
                (5, b"c".to_vec())
            ]
        );
    }
}
