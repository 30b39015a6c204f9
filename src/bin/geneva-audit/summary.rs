//! What `send` did, in plain text for people or as one JSON object for scripts.

use std::path::PathBuf;

use serde_json::json;

#[derive(Debug, Default)]
pub struct Summary {
    /// Non-blank lines read.
    pub lines: u64,
    /// Lines refused by a rule.
    pub refused: u64,
    /// Records the agent received.
    pub delivered: u64,
    /// Valid records not delivered (written to the --unsent file, if given).
    pub handed_back: u64,
    /// Of the records handed back or spooled, those written to the agent and not seen
    /// read by the deadline: a live agent may still read them, so resending them may
    /// deliver them twice.
    pub written_unconfirmed: u64,
    /// Records lost without being handed back (held by a thread stuck in the OS).
    pub lost: u64,
    /// Where they were written.
    pub unsent_file: Option<PathBuf>,
    /// Why sending stopped early, if it did.
    pub stopped: Option<String>,
    /// Whether the input was read to its end.
    pub input_complete: bool,
    /// The spool directory (--spool), if any.
    pub spool: Option<PathBuf>,
    /// Records not delivered and kept in the spool for the next run.
    pub spooled: u64,
    /// Records an earlier run left in the spool, delivered by this one.
    pub spool_replayed: u64,
    /// Bytes the spool's files hold at the end.
    pub spool_bytes: u64,
    /// Damaged spool files found at open and set aside.
    pub spool_corrupt: u64,
}

impl Summary {
    pub fn success(&self) -> bool {
        self.refused == 0
            && self.handed_back == 0
            && self.spooled == 0
            && self.spool_corrupt == 0
            && self.lost == 0
            && self.stopped.is_none()
            && self.input_complete
    }

    pub fn text(&self) -> String {
        let mut s = format!(
            "geneva-audit: {} delivered, {} not delivered, {} refused ({} read)",
            count(self.delivered, "record"),
            count(self.handed_back + self.spooled, "record"),
            count(self.refused, "line"),
            count(self.lines, "line"),
        );
        if let Some(dir) = &self.spool {
            if self.spool_replayed > 0 {
                s.push_str(&format!(
                    "\ngeneva-audit: {} an earlier run left in {} delivered first",
                    count(self.spool_replayed, "record"),
                    dir.display()
                ));
            }
            if self.spooled > 0 {
                s.push_str(&format!(
                    "\ngeneva-audit: {} kept in {} ({}); the next run on it sends them first",
                    count(self.spooled, "record"),
                    dir.display(),
                    count(self.spool_bytes, "byte"),
                ));
            }
            if self.spool_corrupt > 0 {
                s.push_str(&format!(
                    "\ngeneva-audit: {} in {} damaged: the records after the damage were not \
                     sent; the file is kept, renamed *.corrupt-*",
                    count(self.spool_corrupt, "file"),
                    dir.display()
                ));
            }
        }
        if self.written_unconfirmed > 0 {
            s.push_str(&format!(
                "\ngeneva-audit: {} of those not delivered had been written to the agent, \
                 which may still read them: sent again, they may arrive twice",
                count(self.written_unconfirmed, "record"),
            ));
        }
        if self.lost > 0 {
            s.push_str(&format!(
                "\ngeneva-audit: {} lost: a thread stuck in the OS held them at close",
                count(self.lost, "record")
            ));
        }
        if let Some(why) = &self.stopped {
            s.push_str(&format!("\ngeneva-audit: stopped: {why}"));
        }
        if self.handed_back > 0 {
            match &self.unsent_file {
                Some(path) => s.push_str(&format!(
                    "\ngeneva-audit: the records not delivered are in {}; send that file to try again",
                    path.display()
                )),
                None => s.push_str(
                    "\ngeneva-audit: pass --unsent FILE to keep the records not delivered",
                ),
            }
        }
        if !self.input_complete {
            s.push_str("\ngeneva-audit: the input was not read to its end");
        }
        s
    }

    pub fn json(&self) -> String {
        json!({
            "lines": self.lines,
            "refused": self.refused,
            "delivered": self.delivered,
            "handed_back": self.handed_back,
            "written_unconfirmed": self.written_unconfirmed,
            "lost": self.lost,
            "unsent_file": self.unsent_file.as_ref().map(|p| p.display().to_string()),
            "stopped": self.stopped,
            "input_complete": self.input_complete,
            "spooled": self.spooled,
            "spool_replayed": self.spool_replayed,
            "spool_bytes": self.spool_bytes,
            "spool_corrupt": self.spool_corrupt,
            "success": self.success(),
        })
        .to_string()
    }
}

/// `1 record`, `2 records`.
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
