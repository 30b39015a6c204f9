//! The outbox's transitions, without sockets or threads.

use super::*;
use crate::encode::encoded_len_bound;
use crate::queue::Settled;
use crate::{OperationResult, OperationType};

const STI: &str = "e6c9fcb1-7f08-4c1d-9e7a-123456789abc";

fn record(name: &'static str) -> Record {
    Record::data_plane()
        .operation_name(name)
        .operation_type(OperationType::Read)
        .operation_result(OperationResult::Success)
}

/// An outbox holding `names`, taken and encoded.
fn outbox(names: &[&'static str]) -> Outbox {
    let mut o = Outbox::new();
    for (i, name) in names.iter().enumerate() {
        let r = record(name);
        o.take(i as i64, encoded_len_bound(STI, &r), r);
    }
    assert_eq!(o.encode(STI), 0);
    o
}

fn frame_len(name: &'static str, ts: i64) -> usize {
    let mut b = FrameBuf::with_capacity(256);
    assert!(append_record(&mut b, STI, ts, &record(name)));
    b.as_slice().len()
}

fn records(chunk: Option<Chunk<'_>>) -> Vec<u8> {
    match chunk {
        Some(Chunk::Records(b)) => b.to_vec(),
        other => panic!("expected record bytes, got {other:?}"),
    }
}

/// Writes everything there is, `step` bytes per write at most.
fn write_all(o: &mut Outbox, step: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = o.next_chunk(false) {
        let (hb, bytes) = match chunk {
            Chunk::Records(b) => (false, b),
            Chunk::Heartbeat(b) => (true, b),
        };
        let n = bytes.len().min(step);
        out.extend_from_slice(&bytes[..n]);
        o.on_written(hb, n);
    }
    out
}

fn names(records: Vec<Record>) -> Vec<String> {
    records
        .iter()
        .map(|r| r.get_operation_name().to_owned())
        .collect()
}

#[test]
fn records_move_from_taken_to_written_to_delivered() {
    let mut o = outbox(&["a", "b", "c"]);
    assert_eq!((o.unwritten(), o.unconfirmed()), (3, 0));
    let bytes = records(o.next_chunk(false));
    let total = bytes.len();
    assert_eq!(
        total,
        frame_len("a", 0) + frame_len("b", 1) + frame_len("c", 2)
    );
    assert_eq!(o.on_written(false, total).records, 3);
    assert_eq!((o.unwritten(), o.unconfirmed()), (0, 3));
    // The agent has read all but the last frame's last byte: two delivered.
    assert_eq!(o.on_read(1).records, 2);
    assert_eq!(o.unconfirmed(), 1);
    assert_eq!(o.on_read(0).records, 1);
    assert!(o.is_empty());
}

#[test]
fn a_partial_write_completes_only_whole_frames() {
    let mut o = outbox(&["a", "b"]);
    let first = frame_len("a", 0);
    assert_eq!(o.on_written(false, first - 1), Wrote::default());
    assert_eq!(o.on_written(false, 1).records, 1);
    assert_eq!(o.unconfirmed(), 1);
    // The rest of the buffer is what comes next.
    assert_eq!(records(o.next_chunk(false)).len(), frame_len("b", 1));
}

#[test]
fn writes_hold_whole_frames_up_to_64_kib() {
    let names: Vec<&'static str> = vec!["x"; 3000];
    let o = outbox(&names);
    let each = frame_len("x", 0);
    let chunk = records(o.next_chunk(false)).len();
    assert!(
        chunk <= WRITE_BYTES && chunk + each > WRITE_BYTES - 16,
        "{chunk}"
    );
}

#[test]
fn a_leftover_frame_joins_the_next_batch() {
    let names: Vec<&'static str> = vec!["x"; 300];
    let mut o = outbox(&names);
    let first = records(o.next_chunk(false)).len();
    o.on_written(false, first);
    let left = o.planned_bytes();
    assert!(left > 0 && left < WRITE_BYTES);
    o.compact();
    assert_eq!(o.planned_bytes(), left);
    let r = record("y");
    o.take(7, encoded_len_bound(STI, &r), r);
    o.encode(STI);
    let next = records(o.next_chunk(false));
    assert_eq!(next.len(), left + frame_len("y", 7), "one write for both");
    o.on_written(false, next.len());
    assert_eq!((o.unwritten(), o.unconfirmed()), (0, 301));
}

#[test]
fn the_first_frame_of_a_connection_goes_alone() {
    let mut o = outbox(&["a", "b"]);
    let first = records(o.next_chunk(true));
    assert_eq!(first.len(), frame_len("a", 0));
    o.on_written(false, 3);
    o.compact();
    // The rest of a cut first frame may still go.
    assert_eq!(records(o.next_chunk(true)).len(), first.len() - 3);
    o.on_written(false, first.len() - 3);
    assert_eq!(
        o.next_chunk(true),
        None,
        "nothing more until the first is read"
    );
    assert_eq!(records(o.next_chunk(false)).len(), frame_len("b", 1));
}

#[test]
fn a_heartbeat_goes_between_frames_never_inside_one() {
    let mut o = outbox(&["a", "b"]);
    o.on_written(false, 2);
    assert!(o.queue_heartbeat(|b| {
        b.extend_from_slice(b"HB");
        true
    }));
    assert!(!o.queue_heartbeat(|_| true), "one at a time");
    // Mid-frame: the frame is finished first.
    assert_eq!(
        records(o.next_chunk(false)).len(),
        frame_len("a", 0) + frame_len("b", 1) - 2
    );
    o.on_written(false, frame_len("a", 0) - 2);
    assert_eq!(o.next_chunk(false), Some(Chunk::Heartbeat(b"HB")));
    o.on_written(true, 1);
    assert_eq!(o.next_chunk(false), Some(Chunk::Heartbeat(b"B")));
    assert!(o.on_written(true, 1).heartbeat);
    assert!(!o.has_heartbeat());
    // The heartbeat's bytes count in the stream: `b` ends after them.
    o.on_written(false, frame_len("b", 1));
    assert_eq!(
        o.on_read(frame_len("b", 1)).records,
        1,
        "a read up to the heartbeat"
    );
    assert_eq!(o.on_read(0).records, 1);
}

#[test]
fn a_failure_replays_the_unconfirmed_in_order_before_the_rest() {
    let mut o = outbox(&["a", "b", "c", "d"]);
    let (a, b, c) = (frame_len("a", 0), frame_len("b", 1), frame_len("c", 2));
    // a and b written, c cut in two, d unwritten; the agent read a.
    o.on_written(false, a + b + 3);
    assert_eq!(o.on_read(b + 3).records, 1);
    let failure = o.on_failure(true, STI);
    assert_eq!(
        failure,
        Failure {
            unconfirmed: 1,
            cut_frame: true,
            heartbeat_dropped: false
        }
    );
    assert_eq!(o.stream_len(), 0);
    assert_eq!((o.unwritten(), o.unconfirmed()), (3, 0));
    // b, then c whole, then d: the same bytes as a fresh encoding of them.
    let again = write_all(&mut o, usize::MAX);
    let fresh = write_all(&mut outbox(&["x", "b", "c", "d"]), usize::MAX);
    assert_eq!(again.len(), b + c + frame_len("d", 3));
    assert_eq!(&again[..], &fresh[frame_len("x", 0)..]);
    assert_eq!(names(o.take_unsent()), ["b", "c", "d"]);
}

#[test]
fn without_the_replay_a_failure_drops_the_unconfirmed_and_flush_hears_of_it() {
    let mut o = outbox(&["a", "b"]);
    let signal = Arc::new(FlushSignal::default());
    o.mark(Arc::clone(&signal));
    o.on_written(false, frame_len("a", 0));
    let failure = o.on_failure(false, STI);
    assert_eq!(failure.unconfirmed, 1);
    assert_eq!(signal.state(), None, "b is still to come");
    o.on_written(false, frame_len("b", 1));
    o.on_read(0);
    assert_eq!(signal.state(), None, "settled once the writer has counted");
    o.settle_markers();
    assert_eq!(signal.state(), Some(Settled::Lost(1)));
}

#[test]
fn a_flush_settles_once_every_record_before_it_is_read() {
    let mut o = outbox(&["a"]);
    let signal = Arc::new(FlushSignal::default());
    o.mark(Arc::clone(&signal));
    // A record taken after the flush does not hold it up.
    let r = record("late");
    o.take(9, encoded_len_bound(STI, &r), r);
    o.encode(STI);
    write_all(&mut o, 7);
    o.settle_markers();
    assert_eq!(signal.state(), None, "written is not delivered");
    o.on_read(frame_len("late", 9));
    o.settle_markers();
    assert_eq!(signal.state(), Some(Settled::Delivered));
    // A flush with nothing before it settles at once.
    let empty = Arc::new(FlushSignal::default());
    Outbox::new().mark(Arc::clone(&empty));
    assert_eq!(empty.state(), Some(Settled::Delivered));
}

#[test]
fn a_failure_before_anything_was_read_replays_everything_written() {
    let mut o = outbox(&["a", "b", "c"]);
    let all = write_all(&mut o, 5);
    assert!(o.queue_heartbeat(|b| {
        b.extend_from_slice(b"HB");
        true
    }));
    let failure = o.on_failure(true, STI);
    assert_eq!(failure.unconfirmed, 3);
    assert!(failure.heartbeat_dropped && !failure.cut_frame);
    assert_eq!(write_all(&mut o, 64), all);
    assert_eq!(o.on_read(0).records, 3);
}

#[test]
fn close_hands_back_everything_in_order_and_cancels_flushes() {
    let mut o = outbox(&["a", "b"]);
    o.on_written(false, frame_len("a", 0));
    let r = record("c");
    o.take(2, encoded_len_bound(STI, &r), r);
    let signal = Arc::new(FlushSignal::default());
    o.mark(Arc::clone(&signal));
    assert_eq!(o.written_own(), 1);
    let records = o.take_unsent();
    let times: Vec<_> = records.iter().map(Record::get_event_time).collect();
    assert_eq!(
        times,
        [Some(0), Some(1), Some(2)],
        "stamped as they were sent"
    );
    let names: Vec<_> = records.iter().map(Record::get_operation_name).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(signal.state(), Some(Settled::Cancelled));
}

#[test]
fn close_finds_spooled_frames_and_records_in_the_order_they_were_sent() {
    let mut o = outbox(&["a"]);
    o.lend_buffer().extend_from_slice(b"spooled-1spooled-2");
    o.take_spooled(9, false);
    o.take_spooled(9, true);
    let r = record("b");
    o.take(3, encoded_len_bound(STI, &r), r);
    o.on_written(false, frame_len("a", 0));
    assert_eq!(o.written_own(), 1);
    // Its image, for the spool: every frame in order, each saying whether an earlier
    // client left it.
    let (mut image, mut ends) = (FrameBuf::with_capacity(256), Vec::new());
    assert_eq!(o.image(STI, &mut image, &mut ends), 0);
    let mut expected = FrameBuf::with_capacity(256);
    assert!(append_record(&mut expected, STI, 0, &record("a")));
    let a_end = expected.as_slice().len();
    expected.extend_from_slice(b"spooled-1spooled-2");
    assert!(append_record(&mut expected, STI, 3, &record("b")));
    assert_eq!(image.as_slice(), expected.as_slice());
    let flags: Vec<bool> = ends.iter().map(|e| e.1).collect();
    assert_eq!(flags, [false, false, true, false]);
    assert_eq!(
        ends[..3],
        [(a_end, false), (a_end + 9, false), (a_end + 18, true)]
    );
    // Handed back: the records; the spooled frames stay in the spool.
    assert_eq!(names(o.take_unsent()), ["a", "b"]);
}

#[test]
fn a_failure_writes_spooled_frames_again_from_their_kept_bytes() {
    let mut o = Outbox::new();
    o.lend_buffer().extend_from_slice(b"onetwo");
    o.take_spooled(3, false);
    o.take_spooled(3, true);
    assert_eq!(o.next_chunk(false), Some(Chunk::Records(b"onetwo")));
    o.on_written(false, 6);
    o.on_failure(true, STI);
    assert_eq!(o.next_chunk(false), Some(Chunk::Records(b"onetwo")));
}

#[test]
fn spooled_bytes_leave_with_their_frames_and_a_long_drain_stays_bounded() {
    let mut o = Outbox::new();
    let frame = vec![b'x'; 1000];
    let mut delivered = 0;
    // One frame always written and not yet read: the lent bytes are never all dead, so
    // they must be moved down now and then.
    for _ in 0..1000 {
        o.lend_buffer().extend_from_slice(&frame);
        o.take_spooled(frame.len(), false);
        let Some(Chunk::Records(bytes)) = o.next_chunk(false) else {
            panic!("nothing to write");
        };
        assert_eq!(bytes, &frame[..]);
        o.on_written(false, frame.len());
        delivered += o.on_read(frame.len()).spooled;
    }
    assert_eq!(delivered, 999);
    assert!(
        o.lent.len() <= 2 * WRITE_BYTES + frame.len(),
        "{} bytes kept for one frame",
        o.lent.len()
    );
    let (mut image, mut ends) = (FrameBuf::with_capacity(2048), Vec::new());
    o.image(STI, &mut image, &mut ends);
    assert_eq!(
        ends,
        [(frame.len(), false)],
        "the last frame is what is left"
    );
    assert_eq!(image.as_slice(), &frame[..]);
    assert!(o.take_unsent().is_empty());
}

#[test]
fn a_write_counts_every_frame_it_completed_and_its_own_records_apart() {
    let mut o = outbox(&["a"]);
    o.lend_buffer().extend_from_slice(b"inherited");
    o.take_spooled(9, true);
    let n = frame_len("a", 0) + 9;
    let wrote = o.on_written(false, n);
    assert_eq!(
        wrote,
        Wrote {
            frames: 2,
            records: 1,
            heartbeat: false
        }
    );
}
