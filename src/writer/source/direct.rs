//! Records straight from the queue into the outbox: the only source without a spool,
//! and the spooled source's way while the spool has nothing to send first.

use crossbeam_channel::Receiver;

use super::super::outbox::{Outbox, WRITE_BYTES};
use crate::link::Link;
use crate::notify::LossReason;
use crate::queue::{Item, Queued};

/// Takes queued records into the outbox until it holds a write's worth, and encodes
/// them; returns whether it took any. Records are taken first, a batch at a time, and
/// encoded after: each arrives from the producers' cores in cache lines the writer must
/// fetch, and in a tight loop of takes those fetches overlap instead of waiting on
/// encoding.
pub(crate) fn take_from_queue(
    rx: &Receiver<Item>,
    outbox: &mut Outbox,
    link: &Link,
    service_tree_id: &str,
) -> bool {
    outbox.compact();
    let mut busy = false;
    loop {
        let mut flush = None;
        let mut took = false;
        while outbox.planned_bytes() < WRITE_BYTES {
            match rx.try_recv() {
                Ok(Item::Record(Queued {
                    ts,
                    size_bound,
                    record,
                })) => {
                    outbox.take(ts, size_bound, record);
                    took = true;
                }
                Ok(Item::Flush(signal)) => {
                    flush = Some(signal);
                    break;
                }
                Err(_) => break,
            }
        }
        // Producers waiting for room are woken once the queue is down to half: looked at
        // once per batch taken.
        link.room.taken(|| rx.len());
        if took {
            busy = true;
            let lost = outbox.encode(service_tree_id);
            if lost > 0 {
                link.lose(lost, LossReason::Unencodable);
                outbox.settle_markers();
            }
        }
        match flush {
            Some(signal) => outbox.mark(signal),
            None => return busy,
        }
    }
}
