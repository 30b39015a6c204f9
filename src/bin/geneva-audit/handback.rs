//! The records `send` could not deliver, written back as JSON lines in the input format
//! (with `env_ikey` and their event time as `ts`), so the same command can send them
//! again.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use geneva_audit::Record;

use crate::input::now;
use geneva_audit::json::to_value;
use serde_json::Value as Json;

/// Valid records that were never given to the client (it could not be started, or
/// sending had stopped); `close` hands back the ones it was given.
#[derive(Debug, Default)]
pub struct HandBack {
    never_sent: Vec<Record>,
}

impl HandBack {
    /// A record the client never had keeps the time it was read as its event time,
    /// as the client keeps a record's stamp when it hands it back.
    pub fn never_sent(&mut self, record: Record) {
        let record = match record.get_event_time() {
            Some(_) => record,
            None => record.event_time(now()),
        };
        self.never_sent.push(record);
    }

    /// How many records there are to hand back, with `unsent` from `close`.
    pub fn count(&self, unsent: &[Record]) -> u64 {
        (unsent.len() + self.never_sent.len()) as u64
    }

    /// The records to hand back as lines: close's first (they were accepted before
    /// any that was never sent), in order.
    pub fn lines<'a>(
        &'a self,
        unsent: &'a [Record],
        service_tree_id: Option<&'a str>,
    ) -> impl Iterator<Item = String> + 'a {
        unsent
            .iter()
            .chain(&self.never_sent)
            .map(move |record| line(record, service_tree_id))
    }

    /// Writes the lines into `file` (created before sending, so that a path that
    /// cannot be written is known at once).
    pub fn write(
        &self,
        unsent: &[Record],
        service_tree_id: Option<&str>,
        file: File,
        path: &Path,
    ) -> Result<(), String> {
        let mut out = BufWriter::new(file);
        let result: io::Result<()> = self
            .lines(unsent, service_tree_id)
            .try_for_each(|line| writeln!(out, "{line}"))
            .and_then(|()| out.flush());
        result.map_err(|e| {
            format!(
                "cannot write the undelivered records to {}: {e}",
                path.display()
            )
        })
    }
}

/// `json::to_line`, with the service tree id the record was sent under as `env_ikey`, so
/// the line needs no --service-tree-id to be sent again.
fn line(record: &Record, service_tree_id: Option<&str>) -> String {
    let mut value = to_value(record);
    if let (Some(id), Some(Json::Object(fields))) = (service_tree_id, value.get_mut("record")) {
        fields.insert("env_ikey".into(), Json::from(id));
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use geneva_audit::json::parse_line;

    const SVC: &str = "e6c9fcb1-7f08-4c1d-9e7a-123456789abc";

    #[test]
    fn a_handed_back_line_reads_back_with_its_id_and_time() {
        let record = Record::data_plane()
            .operation_name("op")
            .event_time(1_700_000_000);
        let line = line(&record, Some(SVC));
        let msg = parse_line(&line).unwrap();
        assert_eq!(msg.service_tree_id.as_deref(), Some(SVC));
        assert_eq!(msg.ts, Some(1_700_000_000));
        assert_eq!(msg.record(), Some(&record));
    }

    #[test]
    fn a_record_never_sent_gets_the_time_it_was_read() {
        let mut h = HandBack::default();
        h.never_sent(Record::control_plane());
        h.never_sent(Record::data_plane().event_time(5));
        assert!(h.never_sent[0].get_event_time().is_some());
        assert_eq!(h.never_sent[1].get_event_time(), Some(5));
        assert_eq!(h.count(&[Record::data_plane()]), 3);
    }
}
